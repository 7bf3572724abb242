"""Large blobs as files: a content-addressed directory beside the LMDB files.

A blob larger than `INLINE_MAX` octets lives in ``<data>/blobs/<first two hex digits>/<sha256>``;
smaller ones (most mail) stay in LMDB, where a read is a copy out of the map.  A file is written as
``<data>/blobs/tmp/<random>`` while it is hashed (`BlobSink`), fsync'd, and renamed to its content
address, with its directory fsync'd, inside the write transaction that records it and before that
transaction commits: an acknowledged blob survives kill -9 and power loss, and a file whose
transaction never committed is an orphan the garbage collector removes (`sweep_orphans`).

Files are immutable once renamed: a reader opens them without any lock, and an open descriptor
keeps reading a file the collector has since unlinked.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import time
from collections.abc import Iterator

INLINE_MAX = 1 << 20  # blobs above this many octets are files
TMP_MAX_AGE = 24 * 3600  # an unfinished upload's temp file is removed by GC after this long


def blob_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "blobs")


def path_of(data_dir: str, guid: str) -> str:
    return os.path.join(data_dir, "blobs", guid[:2], guid)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_synced(path: str) -> None:
    """Creates path (and parents) so that the new directory entries are durable."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    _makedirs_synced(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    fsync_dir(parent)


class BlobSink:
    """Bytes of one new blob, written in pieces: hashed as they come, kept in memory up to
    `inline_max` octets and spilled to a temp file beyond.  `finish` fsyncs the file; a sink that
    was not stored is removed by `close` (use it as a context manager)."""

    def __init__(self, data_dir: str, inline_max: int = INLINE_MAX):
        self.data_dir = data_dir
        self.inline_max = inline_max
        self._hash = hashlib.sha256()
        self._buf: bytearray | None = bytearray()
        self._file = None
        self.tmp_path: str | None = None
        self.size = 0
        self.guid: str | None = None
        self.stored = False  # set by the store once the file is renamed to its content address

    def write(self, chunk: bytes) -> None:
        if self.guid is not None:
            raise ValueError("blob already finished")
        self._hash.update(chunk)
        self.size += len(chunk)
        if self._buf is not None and self.size <= self.inline_max:
            self._buf += chunk
            return
        if self._file is None:
            tmp = os.path.join(blob_dir(self.data_dir), "tmp")
            _makedirs_synced(tmp)
            self.tmp_path = os.path.join(tmp, secrets.token_hex(12))
            self._file = open(self.tmp_path, "xb", buffering=0)  # noqa: SIM115 - closed in finish/close
            if self._buf:
                self._file.write(self._buf)
            self._buf = None
        view = memoryview(chunk)
        while view:
            view = view[self._file.write(view):]

    def finish(self) -> str:
        """Ends the blob: its file (if any) is synced; returns the guid (sha256 hex)."""
        if self.guid is None:
            if self._file is not None:
                os.fsync(self._file.fileno())
                self._file.close()
            self.guid = self._hash.hexdigest()
        return self.guid

    @property
    def in_memory(self) -> bool:
        return self._buf is not None

    def data(self) -> bytes:
        """The bytes of a blob small enough to be kept in memory."""
        if self._buf is None:
            raise ValueError("a large blob has no in-memory data")
        return bytes(self._buf)

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self.tmp_path and not self.stored:
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> BlobSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sink_of(data_dir: str, data: bytes, inline_max: int = INLINE_MAX) -> BlobSink:
    sink = BlobSink(data_dir, inline_max)
    try:
        sink.write(data)
        sink.finish()
    except BaseException:
        sink.close()
        raise
    return sink


def install(sink: BlobSink) -> str:
    """Renames a finished, spilled sink's file to its content address (directory synced).
    Called inside the write transaction that records the blob."""
    final = path_of(sink.data_dir, sink.finish())
    _makedirs_synced(os.path.dirname(final))
    os.rename(sink.tmp_path, final)
    fsync_dir(os.path.dirname(final))
    sink.stored = True
    return final


def install_bytes(data_dir: str, guid: str, data: bytes) -> None:
    """Writes data (already known by its guid) as a file at its content address, durably."""
    with sink_of(data_dir, data, inline_max=-1) as sink:
        if sink.guid != guid:
            raise ValueError("data does not match its guid")
        install(sink)


def open_file(data_dir: str, guid: str) -> io.BufferedReader | None:
    try:
        return open(path_of(data_dir, guid), "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        return None


def stored_files(data_dir: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(guid, path, stat) of every file at a content address (a scan: GC and check only)."""
    root = blob_dir(data_dir)
    try:
        subdirs = os.listdir(root)
    except FileNotFoundError:
        return
    for sub in subdirs:
        if len(sub) != 2 or sub == "tmp":
            continue
        d = os.path.join(root, sub)
        try:
            names = os.listdir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            path = os.path.join(d, name)
            try:
                yield name, path, os.stat(path)
            except FileNotFoundError:
                continue


def stale_temp_files(data_dir: str, max_age: float) -> Iterator[tuple[str, int]]:
    """(path, size) of upload temp files untouched for max_age seconds."""
    tmp = os.path.join(blob_dir(data_dir), "tmp")
    try:
        names = os.listdir(tmp)
    except FileNotFoundError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(tmp, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if now - st.st_mtime > max_age:
            yield path, st.st_size


# ------------------------------------------------------------------------------- backup and restore
PIN_PREFIX = "backup-"  # <data>/blobs/backup-<pid>-<random>/: a backup's hard links (not 2 letters: GC skips it)


def pin_all(data_dir: str, pin_dir: str) -> int:
    """Hard-links every file at a content address into pin_dir (flat, by guid); returns how many.
    Called under the writer lock by a backup: a file the snapshot refers to is then kept (an
    unlink by the collector removes a name, not the linked file) whatever happens next.  A file
    system without hard links gets byte copies instead."""
    os.makedirs(pin_dir, 0o700)
    n = 0
    for guid, path, _st in stored_files(data_dir):
        target = os.path.join(pin_dir, guid)
        try:
            os.link(path, target)
        except FileNotFoundError:
            continue
        except OSError:
            _copy_file(path, target)
        n += 1
    return n


def sweep_pins(data_dir: str) -> None:
    """Removes the pin directories of backups whose process is gone (killed mid-way)."""
    root = blob_dir(data_dir)
    try:
        names = [n for n in os.listdir(root) if n.startswith(PIN_PREFIX)]
    except FileNotFoundError:
        return
    for name in names:
        try:
            pid = int(name[len(PIN_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and _alive(pid):
            continue
        remove_tree(os.path.join(root, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _copy_file(src: str, dst: str, progress=None) -> int:
    """Copies src to dst (which must not exist) and fsyncs it; progress(n) after each piece."""
    total = 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while True:
            chunk = fin.read(1 << 20)
            if not chunk:
                break
            fout.write(chunk)
            total += len(chunk)
            if progress:
                progress(len(chunk))
        fout.flush()
        os.fsync(fout.fileno())
    return total


def place(src: str, dst: str, progress=None) -> bool:
    """Puts the immutable blob file src at dst: a hard link when both are on one file system (no
    bytes copied), else a synced byte copy.  Returns whether it was linked.  The caller syncs
    the directories."""
    try:
        os.link(src, dst)
        if progress:
            progress(os.stat(dst).st_size)
        return True
    except OSError:
        _copy_file(src, dst, progress)
        return False


def verify(path: str, guid: str, progress=None) -> bool:
    """Whether the file's bytes hash to its guid (sha256 hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest() == guid
