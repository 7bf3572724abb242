"""Full-text search for the JMAP layer: the background indexer and the bridge from Email/query
filters to the index (`indexer/`).

The store records every message that needs (re)indexing in a durable queue, in the same transaction
as the message. The writer process indexes a batch, commits the index, and only then removes the
batch from the queue: a crash at any moment loses no entry, and the next start resumes from the
queue. Searches first make sure the account's queue is indexed (read-your-writes: a client that
imports and then searches finds what it imported).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

from indexer import (
    And,
    HeaderMatch,
    IndexDoc,
    IndexMismatch,
    Match,
    Not,
    Or,
    TextQuery,
    UnsupportedQuery,
    open_index,
)
from store import StorageFull, StorageUnavailable, disk_nearly_full, ids, storage_error
from store.mapped import drop_mappings

from . import ipc
from .mail import headers as header_forms
from .mail import mime

log = logging.getLogger("tidings.search")

TEXT_FIELDS = ("text", "from", "to", "cc", "bcc", "subject", "body")
BATCH = 500
RELEASE_SECONDS = 300


def sort_key(record: dict) -> int:
    """The index's order for a page of results: receivedAt, then id, as the store's date index.
    34 bits of seconds (to the year 2514), then the low 30 bits of the id's number."""
    seconds = max(0, min(int(record.get("receivedAt") or 0), (1 << 34) - 1))
    number = ids.email_number(record["id"])
    return (seconds << 30) | (number & ((1 << 30) - 1))


def document(record: dict, raw: bytes) -> IndexDoc:
    """The searchable text of a stored message."""
    text = mime.message_text(raw)
    raw_fields = text["headers"]
    if raw_fields is None:
        raw_fields = [(h["name"], h["value"]) for h in mime.parse_headers(raw)]
    fields = [(name, header_forms.parse_text(value)) for name, value in raw_fields]
    return IndexDoc(record["id"], subject=text["subject"], from_=text["from"], to=text["to"], cc=text["cc"],
                    bcc=text["bcc"], body=text["body"], headers=fields, sort_key=sort_key(record))


def condition_query(cond: dict) -> TextQuery | None:
    """The text part of one FilterCondition (RFC 8621 §4.4.1) as an index query; None if it has none.
    All its text properties must match, so they are ANDed."""
    parts: list[TextQuery] = [Match(name, cond[name]) for name in TEXT_FIELDS if name in cond]
    if "header" in cond:
        header = cond["header"]
        parts.append(HeaderMatch(header[0], header[1] if len(header) > 1 else None))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(parts)


def filter_text_query(flt: dict | None) -> TextQuery | None:
    """The text conditions of a whole filter, keeping its AND/OR/NOT shape, for SearchSnippet/get:
    non-text conditions are dropped (they decide which emails, not which words are marked)."""
    if not flt:
        return None
    if "operator" not in flt:
        return condition_query(flt)
    children = [q for q in (filter_text_query(c) for c in flt["conditions"]) if q is not None]
    if not children:
        return None
    if flt["operator"] == "AND":
        return And(children)
    if flt["operator"] == "OR":
        return Or(children)
    return Not(Or(children))


class IndexBehind(Exception):
    """The account's queue was not indexed in time (another process holds the writer role)."""


class SearchService:
    """The index of every account of a data directory, and its one writer.

    Exactly one process at a time is the index writer: the one holding an flock on
    `index/writer.lock` (the server takes it at start and keeps it; `tidings import` and
    `tidings reindex` take it when no server runs). The writer drains the queue in the background
    and before each search; other processes only search, waiting for the writer to catch up.
    """

    def __init__(self, store, data_dir: str, engine: str | None = None):
        self.store = store
        self.engine = (engine or "tantivy").lower()
        self.root = os.path.join(data_dir, "index")
        os.makedirs(self.root, exist_ok=True)
        self.index = open_index(self.engine, os.path.join(self.root, self.engine))
        self._lock_fd: int | None = None
        self._drain_lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._seen_generation: dict[str, int] = {}
        self._rebuild_queued: set[str] = set()  # accounts whose rebuild this process queued
        # queue keys whose documents the engine has but not committed yet (they stay in the queue
        # until the commit), and when each account's index was last committed
        self._pending: dict[str, list[bytes]] = {}
        self._committed: dict[str, float] = {}
        self._wake = threading.Event()  # new mail: the background indexer starts at once

    # -- the writer role
    @property
    def is_writer(self) -> bool:
        return self._lock_fd is not None

    def try_become_writer(self) -> bool:
        if self._lock_fd is not None:
            return True
        self._lock_fd = ipc.try_lock(os.path.join(self.root, "writer.lock"))
        return self._lock_fd is not None

    def resign_writer(self) -> None:
        if self._lock_fd is not None:
            self.index.close()  # commits are done; frees the engines' writers
            ipc.unlock(self._lock_fd)
            self._lock_fd = None

    # -- indexing
    def drain(self, account_id: str, progress: Callable[[int], None] | None = None,
              known: Mapping[str, bytes] | None = None, commit: bool = True) -> int:
        """As the writer, indexes the account's queue until it is empty; returns the entries done.
        known: raw messages the caller still holds by email id (checked against the stored
        guid), so a bulk import need not read every message back through the memory map.
        With commit=False the documents are only added (the background indexer, as mail
        arrives): a later drain commits them, at the latest when BATCH are waiting.  Entries leave
        the queue only once their documents are committed.

        A batch that fails is abandoned with the engine's writer (the queue keeps it, so the next
        drain indexes it again with a new writer): StorageUnavailable when the disk refused it.
        An index that cannot be read (IndexMismatch, IndexDamaged) is rebuilt: dropped, and every
        message of the account queued again."""
        if not self.is_writer:
            raise RuntimeError("only the index writer drains the queue")
        done = 0
        repaired = False
        with self._drain_lock:
            while True:
                pending = self._pending.setdefault(account_id, [])
                entries = self.store.index_queue(account_id, BATCH, pending[-1] if pending else None)
                if not entries and not (pending and commit):
                    break
                pending.extend(key for key, _ in entries)
                try:
                    if entries:
                        self._index_batch(account_id, entries, known or {})
                    if commit or len(pending) >= BATCH:
                        self.index.commit(account_id)
                        # acknowledged only after the index commit: a crash in between indexes
                        # them again
                        self.store.index_queue_ack(account_id, pending)
                        del self._pending[account_id]
                        self._committed[account_id] = time.monotonic()
                except IndexMismatch as exc:
                    if repaired:  # a fresh index refused again: not something a rebuild mends
                        self._abandon(account_id)
                        raise
                    repaired = True
                    keys = self._abandon(account_id)
                    self._rebuild(account_id, exc)
                    # the rebuild's queue entries cover every email: these need no indexing
                    self.store.index_queue_ack(account_id, keys)
                    continue
                except Exception as exc:
                    self._abandon(account_id)
                    failure = storage_error(exc, self.root)
                    if failure is None and disk_nearly_full(self.root):
                        # tantivy reports a worker's ENOSPC as "an index writer was killed"
                        failure = StorageFull("the server's disk is full", detail=str(exc))
                    if failure is not None and failure is not exc:
                        raise failure from exc
                    raise
                done += len(entries)
                if progress and entries:
                    progress(len(entries))
        self._rebuild_queued.discard(account_id)  # done: a later fault may queue another rebuild
        self._seen_generation[account_id] = self.store.index_generation(account_id)
        return done

    def _abandon(self, account_id: str) -> list[bytes]:
        """Drops the engine's uncommitted work for the account; returns the queue keys it held
        (they stay queued)."""
        self.index.abandon(account_id)
        return self._pending.pop(account_id, [])

    def _rebuild(self, account_id: str, why: Exception) -> None:
        """Repairs an index that cannot be read: the writer drops it; either process queues a
        reset and every email of the account (the reset makes the writer drop it too)."""
        log.warning("the search index of account %s cannot be used (%s): rebuilding it", account_id, why)
        if self.is_writer:
            self.index.drop(account_id)
        self.store.queue_reindex(account_id)
        self._rebuild_queued.add(account_id)

    def request_rebuild(self, account_id: str, why: Exception) -> None:
        """A search found the account's index unreadable: queue its rebuild once per process (the
        writer drains it at the next search or in the background)."""
        if account_id not in self._rebuild_queued:
            self._rebuild(account_id, why)

    def _index_batch(self, account_id: str, entries: list, known: Mapping[str, bytes]) -> None:
        latest: dict[str, str] = {}  # the last entry for an email wins
        for _, entry in entries:
            if entry["op"] == "reset":  # `tidings reindex`: start the account's index afresh
                self.index.drop(account_id)
                latest.clear()
            else:
                latest[entry["id"]] = entry["op"]
        docs, gone = [], []
        with self.store.read(account_id) as reader:
            for email_id, op in latest.items():
                record = reader.email(email_id) if op == "add" else None
                raw = known.get(email_id) if record else None
                if raw is not None and ids.blob_id(ids.content_address(raw)) != record["blobId"]:
                    raw = None
                if record and raw is None:
                    raw = reader.blob(record["blobId"])
                if raw is None:
                    gone.append(email_id)
                else:
                    docs.append(document(record, raw))
        if gone:
            self.index.delete(account_id, gone)
        if docs:
            self.index.add(account_id, docs)

    def ensure_fresh(self, account_id: str, timeout: float = 10.0) -> None:
        """Read-your-writes: what is queued for the account is indexed before it is searched (by
        us if we are the writer, else by waiting for the writer), and commits made by another
        process are picked up."""
        deadline = time.monotonic() + timeout
        try:
            self.index.verify(account_id)
        except IndexMismatch as exc:  # rebuilt first, so that the search below reads a good index
            self.request_rebuild(account_id, exc)
        while self.store.index_queue(account_id, 1):
            if self.is_writer or self.try_become_writer():
                try:
                    self.drain(account_id)
                except StorageUnavailable as exc:
                    # searching the index as it is would miss the account's own latest mail
                    log.warning("account %s: search refused, its index cannot be updated: %s", account_id,
                                exc.logged())
                    why = "the server's disk is full" if isinstance(exc, StorageFull) else "a disk error"
                    raise IndexBehind(f"search is paused: the newest mail cannot be indexed ({why}); "
                                      "try again later") from exc
                break
            if time.monotonic() > deadline:
                # never answer from an index that misses the account's own writes
                raise IndexBehind(f"the index writer has not indexed account {account_id} for {timeout:.0f} s")
            time.sleep(0.01)
        generation = self.store.index_generation(account_id)
        if self._seen_generation.get(account_id) != generation:
            self.index.refresh(account_id)
            self._seen_generation[account_id] = generation

    # -- reading (searches go to self.index after ensure_fresh)
    def snippets(self, account_id: str, query: TextQuery, email_ids: list[str],
                 previews: dict[str, tuple[str | None, str | None]]) -> dict:
        return self.index.snippets(account_id, query, email_ids, previews)

    # -- the background indexer
    def start(self, interval: float = 0.2) -> None:
        """Runs the background indexer: it becomes the writer as soon as no other process is, then
        indexes every account's queue as it fills: new mail at once (a commit that changed Emails
        wakes it), committed at most every `interval` seconds (a search commits at once)."""
        if self._worker is None:
            self.store.on_commit(self._new_mail)
            self._worker = threading.Thread(target=self._run, args=(interval,), name="indexer",
                                            daemon=True)
            self._worker.start()

    def _run(self, interval: float) -> None:
        announced = False
        released = time.monotonic()
        failing: str | None = None  # what the last failed round logged, said once until it changes
        backoff = 2.0
        while not self._stop.is_set():
            if time.monotonic() - released > RELEASE_SECONDS:
                # what the store's memory map holds only grows with what was read: give it back
                # now and then (rarely: pages that the kernel dropped meanwhile cost a disk read)
                self.store.release_memory()
                self.release_memory()
                released = time.monotonic()
            try:
                if self.try_become_writer():
                    if not announced:
                        log.info("this process is the index writer (%s)", self.engine)
                        announced = True
                    for account_id in self.store.accounts_with_index_queue():
                        if self._stop.is_set():
                            break
                        # added as it comes (a search then only needs the commit), committed
                        # now and then: each commit is a segment the engine merges later
                        due = time.monotonic() - self._committed.get(account_id, float("-inf")) >= interval
                        n = self.drain(account_id, commit=due)
                        if n:
                            log.info("indexed %d change(s) for account %s", n, account_id)
                if failing is not None:
                    log.warning("background indexing works again")
                    failing, backoff = None, 2.0
            except Exception as exc:
                # a full disk fails every round until there is room: one line when it starts (and
                # when the error changes), no traceback, and rounds further apart meanwhile
                # by kind, not text: the engine's text names a new temporary file every time
                said = type(exc).__name__ if isinstance(exc, StorageUnavailable) else f"{type(exc).__name__}: {exc}"
                if said != failing:
                    if isinstance(exc, StorageUnavailable):
                        log.warning("background indexing paused: %s; retrying", exc.logged())
                    else:
                        log.exception("background indexing failed; retrying")
                    failing = said
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            # new mail wakes us; so does the time to commit what was added
            self._wake.wait(interval if self.is_writer else 1.0)
            self._wake.clear()

    def _new_mail(self, entries: list) -> None:
        if any("Email" in changed for _, _, changed in entries):
            self._wake.set()

    def stop(self) -> None:
        """Stops the background indexer; what it added is committed (or stays queued if the
        disk refuses it)."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        for account_id in [a for a, keys in self._pending.items() if keys]:
            try:
                self.drain(account_id)
            except Exception as exc:  # noqa: BLE001 - the queue keeps the entries for the next start
                log.warning("account %s: indexing stopped with work queued: %s", account_id, exc)

    def release_memory(self) -> None:
        """Drops this process's mappings of the index files (`store.mapped`): the engine's merges
        read whole segments through its memory maps, and RSS would count every page they read."""
        root = os.path.realpath(self.root) + os.sep
        drop_mappings(lambda path: path.startswith(root))

    def close(self) -> None:
        """Stops the background indexer and closes the index, after its last merges (which read
        every segment they merge: meanwhile their pages are given back every half second)."""
        self.stop()
        done = threading.Event()

        def release_while_merging() -> None:
            while not done.wait(0.5):
                self.release_memory()

        releaser = threading.Thread(target=release_while_merging, name="index-release", daemon=True)
        releaser.start()
        try:
            self.resign_writer()
            self.index.close()
        finally:
            done.set()
            releaser.join()
        self.release_memory()


__all__ = ["IndexBehind", "SearchService", "UnsupportedQuery", "condition_query", "document", "filter_text_query"]
