"""The tantivy engine (default): one tantivy index per account under ``<root>/<account_id>/``.

Text reaches tantivy already normalised and tokenised by analysis.py, joined by spaces, and is
indexed with tantivy's "whitespace" tokenizer, which splits on whitespace and changes nothing
else (no lower-casing, no length limit, unlike "default" which drops tokens > 40 bytes and
splits on non-alphanumerics). Positions are recorded for phrase queries. Queries are built
from Query objects, never parsed from strings.

Ids: a search can match most of a mailbox, and reading 100k stored documents costs ~90 ms. So
each document also carries its id packed into two u64 fast fields (ids of up to 16 UTF-8 bytes,
which covers the store's ids), read in bulk with ``fast_field_values``; longer ids are stored
with (0, 0) there and read from the stored ``id`` field.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import tantivy

from .base import (
    INDEX_FIELDS,
    AllOf,
    AnyOf,
    Everything,
    IndexDamaged,
    IndexDoc,
    Nothing,
    PhraseIn,
    Plan,
    SearchIndex,
    TextQuery,
    Without,
    account_dir,
    check_account_id,
    disk_trouble,
    lower,
    remove_account_dir,
)

ENGINE = "tantivy"
SCHEMA_VERSION = 2
_Occur = tantivy.Occur



def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_unsigned_field("k0", fast=True)
    sb.add_unsigned_field("k1", fast=True)
    sb.add_unsigned_field("rk", fast=True)  # IndexDoc.sort_key, for search_top
    for name in INDEX_FIELDS:
        sb.add_text_field(name, stored=False, tokenizer_name="whitespace", index_option="position")
    return sb.build()


def pack_id(email_id: str) -> tuple[int, int]:
    """The id as two u64 (big-endian UTF-8, zero padded), or (0, 0) if it doesn't fit."""
    raw = email_id.encode()
    if not 0 < len(raw) <= 16 or b"\0" in raw:
        return 0, 0
    raw = raw.ljust(16, b"\0")
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


def unpack_id(k0: int, k1: int) -> str:
    return (k0.to_bytes(8, "big") + k1.to_bytes(8, "big")).rstrip(b"\0").decode()


class TantivyIndex(SearchIndex):
    engine = ENGINE

    def __init__(self, path: str | Path, *, writer_heap: int = 50_000_000, writer_threads: int = 1,
                 max_writers: int = 4):
        self.root = Path(path)
        self.root.mkdir(parents=True, exist_ok=True)
        self.schema = _schema()
        self.writer_heap = writer_heap
        self.writer_threads = writer_threads
        self._indexes: dict[str, tantivy.Index] = {}
        # open writers, least recently used first: each holds up to writer_heap bytes of memory,
        # so a server of many accounts keeps only max_writers open (closing one that has nothing
        # uncommitted; `_dirty` are those with added or deleted documents not yet committed)
        self._writers: OrderedDict[str, tantivy.IndexWriter] = OrderedDict()
        self._dirty: set[str] = set()
        self.max_writers = max(1, max_writers)
        self._lock = threading.RLock()

    # --------------------------------------------------------------------------- plumbing
    def _index(self, account_id: str, create: bool) -> tantivy.Index | None:
        check_account_id(account_id)
        with self._lock:
            idx = self._indexes.get(account_id)
            if idx is not None:
                return idx
            d = account_dir(self.root, account_id, ENGINE, SCHEMA_VERSION,
                            (lambda path: tantivy.Index(self.schema, path=str(path), reuse=False)) if create else None)
            if d is None:
                return None
            # reuse: also an index whose marker an older version wrote before the index was made
            try:
                idx = tantivy.Index(self.schema, path=str(d), reuse=True)
            except ValueError as exc:  # a meta.json cut short, a missing segment file
                if disk_trouble(exc):
                    raise
                raise IndexDamaged(f"the index of account {account_id} cannot be opened ({exc})") from exc
            self._indexes[account_id] = idx
            return idx

    def _writer(self, account_id: str) -> tantivy.IndexWriter:
        with self._lock:
            w = self._writers.get(account_id)
            if w is not None:
                self._writers.move_to_end(account_id)
            else:
                self._close_idle_writers(self.max_writers - 1)
                idx = self._index(account_id, create=True)
                assert idx is not None
                # kept open between commits: opening a writer takes the index's writer lock
                w = self._writers[account_id] = idx.writer(heap_size=self.writer_heap,
                                                           num_threads=self.writer_threads)
            return w

    def _close_idle_writers(self, keep: int) -> None:
        """Closes least recently used writers with nothing uncommitted until at most keep are open."""
        for account_id in [a for a in self._writers if a not in self._dirty]:
            if len(self._writers) <= keep:
                return
            self._writers.pop(account_id).wait_merging_threads()  # ends it and frees its lock

    def _document(self, doc: IndexDoc) -> tantivy.Document:
        d = tantivy.Document()
        d.add_text("id", doc.email_id)
        k0, k1 = pack_id(doc.email_id)
        d.add_unsigned("k0", k0)
        d.add_unsigned("k1", k1)
        d.add_unsigned("rk", doc.sort_key)
        for name, text in doc.index_fields().items():
            if text:
                d.add_text(name, text)
        return d

    # --------------------------------------------------------------------------- writing
    def add(self, account_id: str, docs: Sequence[IndexDoc]) -> None:
        if not docs:
            return
        built = [(doc.email_id, self._document(doc)) for doc in docs]   # analysis outside the lock
        with self._lock:
            w = self._writer(account_id)
            self._dirty.add(account_id)
            for email_id, d in built:
                # a delete applies to documents added before it, so re-adding within a batch works
                w.delete_documents_by_term("id", email_id)
                w.add_document(d)

    def delete(self, account_id: str, email_ids: Iterable[str]) -> None:
        with self._lock:
            w = self._writer(account_id)
            self._dirty.add(account_id)
            for email_id in email_ids:
                w.delete_documents_by_term("id", email_id)

    def commit(self, account_id: str) -> None:
        with self._lock:
            w = self._writers.get(account_id)
            if w is None:
                return
            try:
                w.commit()
            except BaseException:
                # a writer whose commit failed (ENOSPC) refuses every later operation: drop it,
                # so that the next batch opens a new one on the last good commit
                self.abandon(account_id)
                raise
            self._dirty.discard(account_id)
            self._indexes[account_id].reload()     # read-your-writes in this process

    def abandon(self, account_id: str) -> None:
        check_account_id(account_id)
        with self._lock:
            w = self._writers.pop(account_id, None)
            self._dirty.discard(account_id)
            if w is not None:
                with contextlib.suppress(Exception):
                    w.rollback()
                # frees the writer lock now: the failed call's traceback still refers to the
                # writer, so dropping our reference would not
                with contextlib.suppress(Exception):
                    w.wait_merging_threads()
            self._indexes.pop(account_id, None)  # reopened: it sees the index's last commit

    def verify(self, account_id: str) -> None:
        self._index(account_id, create=False)

    # --------------------------------------------------------------------------- reading
    def _compile(self, plan: Plan) -> tantivy.Query:
        Q = tantivy.Query
        if isinstance(plan, PhraseIn):
            if len(plan.tokens) == 1:
                subs = [Q.term_query(self.schema, f, plan.tokens[0]) for f in plan.fields]
            else:    # phrase_query panics on a single term: term_query above
                subs = [Q.phrase_query(self.schema, f, list(plan.tokens)) for f in plan.fields]
            if len(subs) == 1:
                return subs[0]
            return Q.boolean_query([(_Occur.Should, s) for s in subs])
        if isinstance(plan, AllOf):
            clauses = [(_Occur.MustNot, self._compile(c.child)) if isinstance(c, Without)
                       else (_Occur.Must, self._compile(c)) for c in plan.children]
            if all(o == _Occur.MustNot for o, _ in clauses):
                clauses.append((_Occur.Must, Q.all_query()))
            return Q.boolean_query(clauses)
        if isinstance(plan, AnyOf):
            return Q.boolean_query([(_Occur.Should, self._compile(c)) for c in plan.children])
        if isinstance(plan, Without):
            # a boolean query of MustNot clauses only matches nothing: subtract from all docs
            return Q.boolean_query([(_Occur.Must, Q.all_query()), (_Occur.MustNot, self._compile(plan.child))])
        if isinstance(plan, Everything):
            return Q.all_query()
        if isinstance(plan, Nothing):
            return Q.empty_query()
        raise TypeError(plan)

    def search(self, account_id: str, query: TextQuery) -> set[str]:
        plan = lower(query)                 # validates first: UnsupportedQuery even for empty indexes
        idx = self._index(account_id, create=False)
        if idx is None or isinstance(plan, Nothing):
            return set()
        searcher = idx.searcher()
        n = searcher.num_docs
        if n == 0:
            return set()
        # constant score: no scoring work, we want the set, not a ranking
        q = tantivy.Query.const_score_query(self._compile(plan), 1.0)
        addrs = [addr for _, addr in searcher.search(q, limit=n, count=False).hits]
        return set(self._ids(searcher, addrs))

    @staticmethod
    def _ids(searcher: tantivy.Searcher, addrs: list) -> list[str]:
        """The email ids of these documents, in order, from the packed fast fields."""
        if not addrs:
            return []
        k0s = searcher.fast_field_values("k0", addrs)
        k1s = searcher.fast_field_values("k1", addrs)
        # ids too long to pack are read from the stored field
        return [unpack_id(a, b) if a else searcher.doc(addr)["id"][0]
                for addr, a, b in zip(addrs, k0s, k1s, strict=True)]

    def search_top(self, account_id: str, query: TextQuery, offset: int, limit: int,
                   descending: bool = True) -> tuple[int, list[str]]:
        plan = lower(query)
        idx = self._index(account_id, create=False)
        if idx is None or isinstance(plan, Nothing):
            return 0, []
        searcher = idx.searcher()
        if searcher.num_docs == 0:
            return 0, []
        q = tantivy.Query.const_score_query(self._compile(plan), 1.0)
        result = searcher.search(q, limit=max(1, limit), count=True, order_by_field="rk", offset=offset,
                                 order=tantivy.Order.Desc if descending else tantivy.Order.Asc)
        addrs = [addr for _, addr in result.hits][:limit]
        return result.count, self._ids(searcher, addrs)

    def doc_count(self, account_id: str) -> int:
        idx = self._index(account_id, create=False)
        return 0 if idx is None else idx.searcher().num_docs

    def refresh(self, account_id: str) -> None:
        idx = self._index(account_id, create=False)
        if idx is not None:
            idx.reload()

    # --------------------------------------------------------------------------- lifecycle
    def drop(self, account_id: str) -> None:
        check_account_id(account_id)
        with self._lock:
            w = self._writers.pop(account_id, None)
            self._dirty.discard(account_id)
            if w is not None:
                w.rollback()
                del w                       # frees the writer lock
            self._indexes.pop(account_id, None)
            remove_account_dir(self.root, account_id)

    def close(self) -> None:
        with self._lock:
            for w in self._writers.values():
                w.rollback()
                w.wait_merging_threads()
            self._writers.clear()
            self._dirty.clear()
            self._indexes.clear()
