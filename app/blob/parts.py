"""Body parts of large messages, decoded as they are read (issue 8: a 1 GB attachment never loads
whole into memory).

A part blob ``P<guid>.<partId>`` of a message kept in memory by the store (LMDB, up to
``store.blobfiles.INLINE_MAX``) is decoded whole by ``mime.extract_part``, the fast common case.
A message the store keeps as a file is handled here:

* its MIME structure is parsed over a read-only ``mmap`` of the file (`_Mapped`), which the parser
  treats as bytes.  The boundary scans (``find`` over whole bodies) touch every page of the
  message; `_Mapped.find` searches in windows and drops each window's pages from the process with
  MADV_DONTNEED (they stay in the page cache), so the resident size stays about one window instead
  of the message (VmHWM counts mapped file pages).  The map is closed once the part is located.
* the part's encoded octets are then read with ``pread`` in chunks and decoded piecewise by
  ``mime.transfer_decoder`` (same octets as ``extract_part``) in `PartFile`, a read-only file.

Sizes: the decoded size is known only after decoding.  `PartFile.size` decodes once without keeping
the output and remembers the size per part blob id (ids are immutable, so the cache never goes
stale); any complete read remembers it too.  The download route asks for the size only when it
needs one (a Range request); a plain download of a part not yet measured streams without
Content-Length (chunked) and so costs one decoding pass, not two.
"""

from __future__ import annotations

import io
import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator

from ..mail import mime

CHUNK = 1 << 20  # encoded octets read and decoded at a time
WINDOW = 2 << 20  # octets of the map a find scans before releasing them
_SIZES_MAX = 4096


class _Mapped(mmap.mmap):
    """A read-only map of a message file for the parser: bytes' ``startswith``, and a ``find`` that
    releases the pages it scanned."""

    def startswith(self, prefix: bytes, start: int = 0, end: int | None = None) -> bool:
        end = len(self) if end is None else min(end, len(self))
        return start + len(prefix) <= end and self[start : start + len(prefix)] == prefix

    def find(self, sub: bytes, start: int | None = None, end: int | None = None) -> int:  # type: ignore[override]
        start = 0 if start is None else start
        end = len(self) if end is None else min(end, len(self))
        if end - start <= WINDOW:
            return super().find(sub, start, end)
        pos = start
        while pos < end:
            stop = min(end, pos + WINDOW)  # matches starting before stop
            i = super().find(sub, pos, min(end, stop + len(sub) - 1))
            if i >= 0 or stop == end:
                return i
            self.release(pos, stop)
            pos = stop
        return -1

    def release(self, start: int, end: int) -> None:
        """Drops the whole pages of [start, end) from the process (not from the page cache)."""
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = end // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            self.madvise(mmap.MADV_DONTNEED, first, last - first)


_sizes: OrderedDict[str, int] = OrderedDict()
_sizes_lock = threading.Lock()


def _known_size(blob_id: str) -> int | None:
    with _sizes_lock:
        size = _sizes.get(blob_id)
        if size is not None:
            _sizes.move_to_end(blob_id)
        return size


def _remember_size(blob_id: str, size: int) -> None:
    with _sizes_lock:
        _sizes[blob_id] = size
        _sizes.move_to_end(blob_id)
        while len(_sizes) > _SIZES_MAX:
            _sizes.popitem(last=False)


def _decoded(fd: int, start: int, end: int, cte: str, blob_id: str) -> Iterator[bytes]:
    """The decoded octets of the file's [start, end), in pieces (some may be empty)."""
    decoder = mime.transfer_decoder(cte)
    at = start
    while at < end:
        piece = os.pread(fd, min(CHUNK, end - at), at)
        if not piece:
            raise OSError(f"{blob_id}: message file shorter than its structure")
        at += len(piece)
        yield decoder.feed(piece)
    yield decoder.finish()


class PartFile(io.RawIOBase):
    """The decoded octets of raw[start:end] of the message file ``f`` (which it owns and closes),
    read sequentially.  ``seek`` forwards decodes and drops; backwards starts over."""

    def __init__(self, f, blob_id: str, start: int, end: int, cte: str) -> None:
        self.f, self.fd = f, f.fileno()
        self.blob_id, self.start, self.end, self.cte = blob_id, start, end, cte
        self._rewind()

    def _rewind(self) -> None:
        self._pieces = _decoded(self.fd, self.start, self.end, self.cte, self.blob_id)
        self._pending = b""  # decoded, not yet returned from _taken on
        self._taken = 0
        self._pos = 0  # decoded octets returned so far

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _more(self) -> bool:
        """Decodes into _pending; False at the end."""
        while self._taken >= len(self._pending):
            piece = next(self._pieces, None)
            if piece is None:
                return False
            self._pending, self._taken = piece, 0
        return True

    def read(self, n: int = -1) -> bytes:
        out = []
        while n != 0:
            if not self._more():
                _remember_size(self.blob_id, self._pos)
                break
            left = len(self._pending) - self._taken
            take = left if n < 0 or n >= left else n
            if take == len(self._pending):
                piece = self._pending  # a whole piece: no copy
            else:
                piece = self._pending[self._taken : self._taken + take]
            self._taken += take
            self._pos += take
            out.append(piece)
            if n > 0:
                n -= take
        return out[0] if len(out) == 1 else b"".join(out)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or offset < 0:
            raise io.UnsupportedOperation("PartFile seeks to absolute positions only")
        if offset < self._pos:
            self._rewind()
        while self._pos < offset:
            if not self.read(min(CHUNK, offset - self._pos)):
                break
        return self._pos

    def size(self) -> int:
        """The decoded size: remembered, else measured by one decoding pass of its own."""
        known = _known_size(self.blob_id)
        if known is None:
            known = sum(len(p) for p in _decoded(self.fd, self.start, self.end, self.cte, self.blob_id))
            _remember_size(self.blob_id, known)
        return known

    def close(self) -> None:
        if not self.closed:
            self.f.close()
        super().close()


def open_part(f, blob_id: str, part_id: str) -> tuple[PartFile, str, str | None] | None:
    """(the decoded part as a file, type, name) of body part ``part_id`` of the message file ``f``
    (real file with a descriptor), or None; ``f`` is closed unless handed over in the PartFile."""
    try:
        size = os.fstat(f.fileno()).st_size
        found = None
        if size:
            with _Mapped(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                found = mime.locate_part(m, part_id)
    except BaseException:
        f.close()
        raise
    if found is None:
        f.close()
        return None
    start, end, cte, media_type, name = found
    return PartFile(f, blob_id, start, end, cte), media_type, name


def known_size(blob_id: str) -> int | None:
    """The decoded size of a part blob if a complete read or `PartFile.size` measured it."""
    return _known_size(blob_id)
