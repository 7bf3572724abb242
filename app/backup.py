"""`tidings backup` and `tidings restore`: a consistent copy of a data directory taken while the
server runs, and bringing it back.

A backup is a directory holding what the store needs to come back as it was at one instant
(`Store.copy_to`: the compacted database of one snapshot, and the blob files stored outside it
that the snapshot refers to), the server's Web Push key (`vapid.pem`, so that existing push
subscriptions keep working) and `manifest.json` (what it is, when it was taken, counts, and the
size and SHA-256 of each file but the blob files, which are named by their SHA-256).

The full-text index is not in it: it is derived data, rebuilt from the messages by `tidings
restore` (with progress), so that a backup is never an index inconsistent with its messages and
is the same whatever --search-engine the restored server uses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import textwrap
import time

MANIFEST = "manifest.json"
FORMAT = "tidings-backup"
FORMAT_VERSION = 1
EXTRA_FILES = ("vapid.pem",)  # files of the data directory besides the store's that a backup keeps
# what a data directory holds (so that --force only removes what tidings made)
DATA_ENTRIES = ("data.mdb", "lock.mdb", "blobs", "index", "vapid.pem", "push", "bus", "outbox", "lmtp",
                "blob-gc.lock")


def register(sub, common: argparse.ArgumentParser, formatter, parser_class, examples) -> None:
    """Adds `backup` and `restore` to the CLI's subcommands."""
    from app.cli import _engine_option

    p = sub.add_parser(
        "backup", parents=[common], formatter_class=formatter,
        help="copy the data directory consistently, also while the server runs",
        description=textwrap.dedent("""
            Writes a backup of the data directory into DEST (a new or empty folder), safely while
            the server runs and mail arrives: every message, mailbox, user, token and setting as
            they were at one instant. DEST gets the database of that instant, compacted (free
            space left out), the blob files over 1 MiB that it refers to (hard links when DEST is
            on the same file system: blob files never change; else copies), the Web Push key, and
            manifest.json (tidings version, time, counts, checksums). Everything is synced to
            disk before the command ends. Writers wait only while the blob files are being
            hard-linked aside, not during the copy.

            The full-text index is not copied: it is derived from the messages, and `tidings
            restore` rebuilds it. On a terminal a progress bar follows the blob files. Exit
            status 0 when the backup is complete, 1 otherwise (the message says why)."""),
        epilog=examples("""
            tidings backup /backups/tidings-$(date +%F)
            tidings backup --data /srv/tidings /mnt/usb/tidings
            tidings restore /backups/tidings-2024-05-01 --data /srv/tidings-new
        """))
    p.add_argument("dest", metavar="DEST", help="the backup folder to write (must not exist, or be empty)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser(
        "restore", parents=[common], formatter_class=formatter,
        help="bring a backup back into a data directory and rebuild its index",
        description=textwrap.dedent("""
            Restores the backup in SRC (made by `tidings backup`) into the data directory
            (--data), which must be empty or not exist; --force replaces the tidings data in it,
            and is refused while a server or another command uses it. The manifest and every
            file are checked first (sizes, SHA-256), so a damaged backup is refused before
            anything is written. Then the database and blob files are put in place and the
            full-text index is rebuilt from the messages (with --search-engine; progress on a
            terminal). A server started on the data directory then answers as the original did
            when the backup was taken."""),
        epilog=examples("""
            tidings restore /backups/tidings-2024-05-01 --data /srv/tidings
            tidings restore /mnt/usb/tidings --data ./data --force
        """))
    p.add_argument("src", metavar="SRC", help="a folder written by tidings backup")
    p.add_argument("--force", action="store_true",
                   help="replace the tidings data already in the data directory (no server may be running on it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    _engine_option(p)
    p.set_defaults(func=cmd_restore)


# ------------------------------------------------------------------------------------------ helpers
class _Progress:
    """A tqdm bar of octets on a terminal; nothing otherwise."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                            file=sys.stderr, dynamic_ncols=True)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _fsync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    from store.blobfiles import fsync_dir

    fsync_dir(path)


def _empty_or_new(path: str, what: str) -> None:
    from app.cli import CliError

    if os.path.lexists(path) and not os.path.isdir(path):
        raise CliError(f"{path} exists and is not a folder: the {what} must be a new or empty folder")
    if os.path.isdir(path) and os.listdir(path):
        raise CliError(f"{path} is not empty: the {what} must be a new or empty folder")


def accounts_summary(store) -> list[dict]:
    """Per user: name, accountId, emails and mailboxes (what the manifest records and restore checks)."""
    out = []
    for user in sorted(store.users(), key=lambda u: u["name"]):
        with store.read(user["accountId"]) as r:
            out.append({"name": user["name"], "accountId": user["accountId"], "emails": r.email_count(),
                        "mailboxes": len(r.mailboxes())})
    return out


# ------------------------------------------------------------------------------------------- backup
def cmd_backup(args: argparse.Namespace) -> int:
    from app.cli import CliError, _data_dir, _open, version
    from store import StoreError, open_store

    data = os.path.abspath(_data_dir(args))
    dest = os.path.abspath(args.dest)
    if dest == data or dest.startswith(data + os.sep):
        raise CliError(f"{dest} is inside the data directory: back up to a folder outside it")
    _empty_or_new(dest, "backup folder")
    store = _open(data)
    started = time.time()
    created_dest = not os.path.exists(dest)
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as exc:
        store.close()
        raise CliError(f"cannot create {dest}: {exc.strerror or exc}") from exc
    show = not args.no_progress and sys.stderr.isatty()
    try:
        try:
            if show:
                print("copying the database (one consistent snapshot)...", file=sys.stderr, flush=True)
            planned = sum(st.st_size for _g, _p, st in _stored_files(data))
            bar = _Progress(planned, "blob files", show)
            try:
                report = store.copy_to(dest, compact=True, progress=bar)
            finally:
                bar.close()
        finally:
            store.close()
        for name in EXTRA_FILES:
            src = os.path.join(data, name)
            if os.path.isfile(src):
                shutil.copy2(src, os.path.join(dest, name))
                _fsync_file(os.path.join(dest, name))
        # counts from the copy itself: exactly the snapshot's
        copy = open_store(dest)
        try:
            accounts = accounts_summary(copy)
        finally:
            copy.close()
        lock = os.path.join(dest, "lock.mdb")
        if os.path.exists(lock):
            os.unlink(lock)
        files = {}
        for root, _dirs, names in os.walk(dest):
            for name in names:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, dest)
                if rel == MANIFEST or rel.split(os.sep)[0] == "blobs":
                    continue
                files[rel] = {"size": os.path.getsize(full), "sha256": _sha256(full)}
        manifest = {
            "format": FORMAT, "formatVersion": FORMAT_VERSION, "tidingsVersion": version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "createdUnix": int(started),
            "source": data, "files": files,
            "blobFiles": {"count": report["blobFiles"], "bytes": report["blobBytes"], "directory": "blobs",
                          "missing": report["missing"]},
            "users": len(accounts), "emails": sum(a["emails"] for a in accounts), "accounts": accounts,
            "index": "not included: derived from the messages, rebuilt by tidings restore",
        }
        partial = os.path.join(dest, MANIFEST + ".tmp")
        with open(partial, "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(partial, os.path.join(dest, MANIFEST))
        _fsync_dir(dest)
    except (StoreError, OSError) as exc:
        _discard(dest, created_dest)
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"backup failed, nothing kept in {dest}: {detail}") from exc
    except BaseException:
        _discard(dest, created_dest)
        raise
    seconds = time.time() - started
    size = _tree_bytes(dest)
    linked = f", {report['linked']} hard-linked" if report["linked"] else ""
    print(f"backed up {_count(manifest['users'], 'user')}, {_count(manifest['emails'], 'email')}, "
          f"{_count(report['blobFiles'], 'blob file')}"
          f"{linked} into {dest} ({size / 1e6:.1f} MB) in {seconds:.1f} s")
    print("the full-text index is not in the backup: tidings restore rebuilds it")
    if report["missing"]:
        raise CliError(f"{len(report['missing'])} blob files the database refers to are missing from "
                       f"{data}/blobs (listed in the manifest): the backup lacks them too")
    return 0


def _stored_files(data: str):
    from store.blobfiles import stored_files

    return stored_files(data)


def _discard(dest: str, created: bool) -> None:
    """Removes what a failed backup wrote (the folder itself only if the backup made it)."""
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for name in os.listdir(dest):
        full = os.path.join(dest, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            os.unlink(full)


# ------------------------------------------------------------------------------------------ restore
def read_manifest(src: str) -> dict:
    """The manifest of a backup folder, checked: its format, and every file's size and SHA-256
    (blob files are checked against their names when they are installed)."""
    from app.cli import CliError

    path = os.path.join(src, MANIFEST)
    if not os.path.isdir(src):
        raise CliError(f"{src}: no such folder")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise CliError(f"{src} is not a tidings backup: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CliError(f"{path} is not a tidings backup manifest")
    if manifest.get("formatVersion") != FORMAT_VERSION:
        raise CliError(f"{src} is a backup of format {manifest.get('formatVersion')!r}; this tidings reads "
                       f"format {FORMAT_VERSION}")
    for rel, want in (manifest.get("files") or {}).items():
        full = os.path.join(src, rel)
        if not os.path.isfile(full):
            raise CliError(f"the backup is incomplete: {rel} is missing")
        if os.path.getsize(full) != want["size"] or _sha256(full) != want["sha256"]:
            raise CliError(f"the backup is damaged: {rel} does not match its checksum in the manifest")
    if "data.mdb" not in (manifest.get("files") or {}):
        raise CliError("the backup's manifest lists no database (data.mdb)")
    return manifest


def _server_running(data: str) -> bool:
    """Whether a process holds the index writer role on data (a server, an import or a reindex)."""
    from app import ipc

    lock = os.path.join(data, "index", "writer.lock")
    if not os.path.exists(lock):
        return False
    fd = ipc.try_lock(lock)
    if fd is None:
        return True
    ipc.unlock(fd)
    return False


def _clear_data_dir(data: str) -> None:
    from app.cli import CliError

    names = os.listdir(data)
    if "data.mdb" not in names:
        raise CliError(f"{data} is not empty and holds no tidings data: --force replaces tidings data only; "
                       "restore into an empty folder")
    if _server_running(data):
        raise CliError(f"a tidings server (or import or reindex) is using {data}: stop it first")
    for name in names:
        if name not in DATA_ENTRIES:
            continue
        full = os.path.join(data, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)


def cmd_restore(args: argparse.Namespace) -> int:
    from app.cli import CliError, _data_dir, _open
    from store import StoreError, restore_copy

    src = os.path.abspath(args.src)
    data = os.path.abspath(_data_dir(args))
    if data == src:
        raise CliError("the data directory is the backup folder itself")
    show = not args.no_progress and sys.stderr.isatty()
    started = time.monotonic()
    manifest = read_manifest(src)
    if os.path.isdir(data) and os.listdir(data):
        if not args.force:
            raise CliError(f"{data} is not empty: restore into an empty data directory, or give --force to "
                           "replace the tidings data in it")
        _clear_data_dir(data)
    elif os.path.lexists(data) and not os.path.isdir(data):
        raise CliError(f"{data} exists and is not a folder")
    blobs = manifest.get("blobFiles") or {}
    bar = _Progress(int(blobs.get("bytes") or 0), "blob files", show)
    try:
        report = restore_copy(src, data, progress=bar)
    except StoreError as exc:
        raise CliError(f"cannot restore: {exc}") from exc
    except OSError as exc:
        raise CliError(f"cannot restore into {data}: {exc.strerror or exc}") from exc
    finally:
        bar.close()
    if report["blobFiles"] != blobs.get("count", report["blobFiles"]):
        raise CliError(f"the backup is incomplete: {report['blobFiles']} blob files, the manifest lists "
                       f"{blobs.get('count')}")
    for name in EXTRA_FILES:
        if os.path.isfile(os.path.join(src, name)):
            shutil.copy2(os.path.join(src, name), os.path.join(data, name))
            os.chmod(os.path.join(data, name), 0o600)
    store = _open(data)
    try:
        accounts = accounts_summary(store)
        if [(a["accountId"], a["emails"]) for a in accounts] != \
                [(a["accountId"], a["emails"]) for a in manifest.get("accounts", [])]:
            raise CliError("the restored data does not match the manifest's counts")
        copied = time.monotonic() - started
        indexed = _rebuild_index(store, data, args.search_engine, accounts, show)
    finally:
        store.close()
    print(f"restored {_count(len(accounts), 'user')}, {_count(sum(a['emails'] for a in accounts), 'email')} and "
          f"{_count(report['blobFiles'], 'blob file')} from the backup of {manifest.get('created')} into {data} "
          f"(files in {copied:.1f} s, index of {indexed} messages rebuilt with {args.search_engine} in "
          f"{time.monotonic() - started - copied:.1f} s)")
    return 0


def _rebuild_index(store, data: str, engine: str, accounts: list[dict], show: bool) -> int:
    """Indexes every account from scratch (the data directory is new: no one else writes it)."""
    from app.cli import CliError
    from app.search import SearchService

    search = SearchService(store, data, engine)
    total = 0
    try:
        if not search.try_become_writer():
            raise CliError(f"another process uses {data} already: stop it, then run tidings reindex")
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=sum(a["emails"] for a in accounts), unit="msg", desc="indexing", file=sys.stderr,
                       dynamic_ncols=True)
        try:
            for account in accounts:
                search.index.drop(account["accountId"])
                store.queue_reindex(account["accountId"])

                def progress(n: int) -> None:
                    store.release_memory()
                    if bar is not None:
                        bar.update(n)

                # the queue holds a reset entry besides the messages: count what was indexed
                search.drain(account["accountId"], progress=progress)
                total += account["emails"]
        finally:
            if bar is not None:
                bar.close()
    finally:
        search.close()
    return total


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
