"""The Whoosh engine (whoosh-reloaded): one Whoosh index per account under ``<root>/<account_id>/``.

Fields receive the same space-joined, already-normalised tokens as the tantivy engine and a
tokenizer that only splits on spaces (so no stop words, no stemming, no lower-casing here:
Whoosh's StandardAnalyzer would drop stop words and break phrases such as "end of the day").

Whoosh holds one writer lock per index and its writer cannot delete documents it added in the
same session, so changes are buffered here and applied in one writer session at ``commit``,
with ``commit(merge=False)`` (a merge inside commit takes tens of seconds on large indexes).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from whoosh import fields, index
from whoosh import query as wq
from whoosh.analysis import Token, Tokenizer

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

ENGINE = "whoosh"
SCHEMA_VERSION = 2
_LOCK_TIMEOUT = 30.0



class SpaceTokenizer(Tokenizer):
    """Splits pre-normalised index text (analysis.index_text) on single spaces; positions count
    tokens. Part of the pickled schema: keep the class at this import path."""

    def __call__(self, value: str, positions: bool = False, chars: bool = False, keeporiginal: bool = False,
                 removestops: bool = True, start_pos: int = 0, start_char: int = 0, tokenize: bool = True,
                 mode: str = "", **kwargs: Any) -> Iterator[Token]:
        t = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        words = value.split(" ") if tokenize else [value]
        for pos, word in enumerate(filter(None, words), start_pos):
            t.text = word
            t.boost = 1.0
            t.stopped = False
            if keeporiginal:
                t.original = word
            if positions:
                t.pos = pos
            yield t


def _schema() -> fields.Schema:
    text = {name: fields.TEXT(analyzer=SpaceTokenizer(), phrase=True, stored=False) for name in INDEX_FIELDS}
    # sortable: a column, to read the ids of many hits without loading stored documents
    return fields.Schema(id=fields.ID(stored=True, unique=True, sortable=True),
                         rk=fields.NUMERIC(numtype=int, bits=64, signed=False, sortable=True),
                         **text)


class WhooshIndex(SearchIndex):
    engine = ENGINE

    def __init__(self, path: str | Path):
        self.root = Path(path)
        self.root.mkdir(parents=True, exist_ok=True)
        self.schema = _schema()
        self._indexes: dict[str, index.Index] = {}
        self._searchers: dict[str, Any] = {}
        # account -> email_id -> fields to add (a dict) or None (delete), applied at commit
        self._pending: dict[str, dict[str, dict[str, str] | None]] = {}
        self._lock = threading.RLock()

    # --------------------------------------------------------------------------- plumbing
    def _index(self, account_id: str, create: bool) -> index.Index | None:
        check_account_id(account_id)
        with self._lock:
            ix = self._indexes.get(account_id)
            if ix is not None:
                return ix
            d = account_dir(self.root, account_id, ENGINE, SCHEMA_VERSION,
                            (lambda path: index.create_in(str(path), self.schema)) if create else None)
            if d is None:
                return None
            try:
                ix = index.open_dir(str(d))
            except Exception as exc:  # a table of contents cut short: EOFError, an unpickling error
                if disk_trouble(exc):
                    raise
                raise IndexDamaged(f"the index of account {account_id} cannot be opened ({exc!r})") from exc
            self._indexes[account_id] = ix
            return ix

    def _searcher(self, account_id: str) -> Any | None:
        """The cached searcher (callers hold self._lock: Whoosh searchers aren't thread-safe)."""
        s = self._searchers.get(account_id)
        if s is None:
            ix = self._index(account_id, create=False)
            if ix is None:
                return None
            s = self._searchers[account_id] = ix.searcher()
        return s

    # --------------------------------------------------------------------------- writing
    def add(self, account_id: str, docs: Sequence[IndexDoc]) -> None:
        check_account_id(account_id)
        built = [(doc.email_id, {**doc.index_fields(), "rk": doc.sort_key}) for doc in docs]  # outside the lock
        with self._lock:
            pending = self._pending.setdefault(account_id, {})
            for email_id, f in built:
                pending[email_id] = f

    def delete(self, account_id: str, email_ids: Iterable[str]) -> None:
        check_account_id(account_id)
        with self._lock:
            pending = self._pending.setdefault(account_id, {})
            for email_id in email_ids:
                pending[email_id] = None

    def commit(self, account_id: str) -> None:
        with self._lock:
            pending = self._pending.pop(account_id, None)
            if not pending:
                return
            ix = self._index(account_id, create=True)
            assert ix is not None
            writer = ix.writer(timeout=_LOCK_TIMEOUT)
            try:
                with writer.searcher() as s:      # one searcher for all deletes, not one per delete
                    reader = s.reader()
                    for email_id in pending:
                        if ("id", email_id) in reader:
                            writer.delete_by_term("id", email_id, searcher=s)
                for email_id, f in pending.items():
                    if f is not None:
                        writer.add_document(id=email_id, **{k: v for k, v in f.items() if v or k == "rk"})
                writer.commit(merge=False)
            except BaseException:
                with contextlib.suppress(Exception):
                    writer.cancel()
                self._pending[account_id] = pending     # nothing was applied: retry at the next commit
                raise
            self._refresh_locked(account_id)

    # --------------------------------------------------------------------------- reading
    def _compile(self, plan: Plan) -> wq.Query:
        if isinstance(plan, PhraseIn):
            toks = list(plan.tokens)
            subs = [wq.Term(f, toks[0]) if len(toks) == 1 else wq.Phrase(f, toks) for f in plan.fields]
            return subs[0] if len(subs) == 1 else wq.Or(subs)
        if isinstance(plan, AllOf):
            pos = [self._compile(c) for c in plan.children if not isinstance(c, Without)]
            neg = [self._compile(c.child) for c in plan.children if isinstance(c, Without)]
            q = wq.And(pos) if len(pos) > 1 else pos[0] if pos else wq.Every()
            return wq.AndNot(q, wq.Or(neg)) if neg else q
        if isinstance(plan, AnyOf):
            return wq.Or([self._compile(c) for c in plan.children])
        if isinstance(plan, Without):
            return wq.AndNot(wq.Every(), self._compile(plan.child))
        if isinstance(plan, Everything):
            return wq.Every()
        if isinstance(plan, Nothing):
            return wq.NullQuery
        raise TypeError(plan)

    def search(self, account_id: str, query: TextQuery) -> set[str]:
        plan = lower(query)
        if isinstance(plan, Nothing):
            self._index(account_id, create=False)   # still validates the account id
            return set()
        q = self._compile(plan)
        with self._lock:
            s = self._searcher(account_id)
            if s is None:
                return set()
            docnums = list(s.docs_for_query(q))
            if not docnums:
                return set()
            ids = s.reader().column_reader("id")
            return {ids[n] for n in docnums}

    def search_top(self, account_id: str, query: TextQuery, offset: int, limit: int,
                   descending: bool = True) -> tuple[int, list[str]]:
        plan = lower(query)
        if isinstance(plan, Nothing):
            self._index(account_id, create=False)
            return 0, []
        q = self._compile(plan)
        with self._lock:
            s = self._searcher(account_id)
            if s is None:
                return 0, []
            docnums = list(s.docs_for_query(q))
            keys = s.reader().column_reader("rk")
            docnums.sort(key=keys.__getitem__, reverse=descending)
            ids = s.reader().column_reader("id")
            return len(docnums), [ids[n] for n in docnums[offset:offset + limit]]

    def doc_count(self, account_id: str) -> int:
        with self._lock:
            s = self._searcher(account_id)
            return 0 if s is None else s.doc_count()

    def refresh(self, account_id: str) -> None:
        with self._lock:
            self._refresh_locked(account_id)

    def _refresh_locked(self, account_id: str) -> None:
        s = self._searchers.get(account_id)
        if s is None:
            return
        ix = self._indexes[account_id]
        if ix.latest_generation() != s.reader().generation():
            # not Searcher.refresh(): it reuses segment readers, which keep stale deletions
            s.close()
            self._searchers[account_id] = ix.searcher()

    def abandon(self, account_id: str) -> None:
        check_account_id(account_id)
        with self._lock:
            # a failed commit cancelled its writer (and released the lock) already
            self._pending.pop(account_id, None)

    def verify(self, account_id: str) -> None:
        self._index(account_id, create=False)

    # --------------------------------------------------------------------------- lifecycle
    def drop(self, account_id: str) -> None:
        check_account_id(account_id)
        with self._lock:
            self._pending.pop(account_id, None)
            s = self._searchers.pop(account_id, None)
            if s is not None:
                s.close()
            ix = self._indexes.pop(account_id, None)
            if ix is not None:
                ix.close()
            remove_account_dir(self.root, account_id)

    def close(self) -> None:
        with self._lock:
            for s in self._searchers.values():
                s.close()
            for ix in self._indexes.values():
                ix.close()
            self._searchers.clear()
            self._indexes.clear()
            self._pending.clear()
