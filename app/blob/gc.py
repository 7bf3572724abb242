"""When blobs are collected: the grace period and the server's background collector.

An unreferenced blob (an upload no email uses, the message of a destroyed email, a blob whose
holder released it) is removed once it has been unreferenced for the grace period:
``TIDINGS_BLOB_GRACE_SECONDS``, default 3600 (RFC 8620 §6: an upload is kept at least an hour).
`tidings serve` runs the collector every ``TIDINGS_BLOB_GC_INTERVAL`` seconds (default 600; 0
turns it off), one process at a time (a flock on ``<data>/blob-gc.lock``, which `tidings gc` takes
too); `tidings gc` runs it at once and `tidings check` reports what it would reclaim.  The store
collects in short batches (`Store.collect_garbage`), so imports and Email/set are not held up."""

from __future__ import annotations

import asyncio
import logging
import os

from starlette.concurrency import run_in_threadpool

from ..ipc import try_lock, unlock

log = logging.getLogger("tidings.blob")

DEFAULT_GRACE = 3600.0
DEFAULT_INTERVAL = 600.0


def grace_seconds() -> float:
    return float(os.environ.get("TIDINGS_BLOB_GRACE_SECONDS") or DEFAULT_GRACE)


def interval_seconds() -> float:
    value = os.environ.get("TIDINGS_BLOB_GC_INTERVAL")
    return float(value) if value else DEFAULT_INTERVAL


def lock_path(data_dir: str) -> str:
    return os.path.join(data_dir, "blob-gc.lock")


def collect(store, data_dir: str, grace: float | None = None, dry_run: bool = False) -> dict | None:
    """One collection (None when another process is collecting right now)."""
    fd = try_lock(lock_path(data_dir))
    if fd is None:
        return None
    try:
        return store.collect_garbage(grace_seconds() if grace is None else grace, dry_run=dry_run)
    finally:
        unlock(fd)


async def run_periodically(store, data_dir: str) -> None:
    interval = interval_seconds()
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            report = await run_in_threadpool(collect, store, data_dir)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("blob collection failed")
            continue
        if report and (report["blobs"] or report["files"]):
            log.info("blob collection: %d blobs, %d files, %d octets reclaimed",
                     report["blobs"], report["files"], report["bytes"])
