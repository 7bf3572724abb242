"""Full-text search for tidings: one index per account, two engines behind one interface.

    from indexer import open_index, IndexDoc, Match, And, Not

    idx = open_index("tantivy", "/var/lib/tidings/index/tantivy")
    idx.add(account_id, [IndexDoc("M1", subject="Quarterly report", body="...")])
    idx.commit(account_id)
    ids = idx.search(account_id, And([Match("text", '"quarterly report"'), Not(Match("from", "bob"))]))

Use a separate directory per engine (each account directory records which engine wrote it and
refuses to be opened by the other).
"""

from __future__ import annotations

import os

from .base import (
    FIELDS,
    And,
    HeaderMatch,
    IndexDamaged,
    IndexDoc,
    IndexMismatch,
    Match,
    Not,
    Or,
    SearchIndex,
    Snippet,
    TextQuery,
    UnsupportedQuery,
)

ENGINES = ("tantivy", "whoosh")
DEFAULT_ENGINE = "tantivy"

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "FIELDS",
    "And",
    "HeaderMatch",
    "IndexDamaged",
    "IndexDoc",
    "IndexMismatch",
    "Match",
    "Not",
    "Or",
    "SearchIndex",
    "Snippet",
    "TextQuery",
    "UnsupportedQuery",
    "open_index",
]


def open_index(engine: str | None, path: str | os.PathLike[str]) -> SearchIndex:
    """Open (creating it if needed) the index root ``path`` with ``engine`` ("tantivy", the default
    when ``engine`` is None or empty, or "whoosh")."""
    name = (engine or DEFAULT_ENGINE).strip().lower()
    if name == "tantivy":
        from .tantivy_engine import TantivyIndex  # imported lazily: each pulls in its library

        return TantivyIndex(path)
    if name == "whoosh":
        from .whoosh_engine import WhooshIndex

        return WhooshIndex(path)
    raise ValueError(f"unknown search engine {engine!r}: choose one of {', '.join(ENGINES)}")
