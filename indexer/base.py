"""The search index interface: documents, the text-query model, and the engine contract.

The app's query planner answers the non-text conditions of Email/query itself and hands the
index only the text part as a ``TextQuery`` tree. Engines never see the user's query syntax:
queries are lowered here (``lower``) into a tiny plan of phrases over fields combined with
all-of / any-of / without, which each engine translates into its own query objects. So the two
engines implement the same semantics and nothing can be injected into an engine's query parser.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from . import analysis

# Match.field -> the index fields it searches ("text" is RFC 8621's: addresses, subject, bodies)
FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("subject", "from", "to", "cc", "bcc", "body"),
    "subject": ("subject",),
    "from": ("from",),
    "to": ("to",),
    "cc": ("cc",),
    "bcc": ("bcc",),
    "body": ("body",),
}
# every field an engine indexes (besides the id)
INDEX_FIELDS = ("subject", "from", "to", "cc", "bcc", "body", "headers")

_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class UnsupportedQuery(ValueError):
    """The engine cannot answer this query exactly (the app answers ``unsupportedFilter``)."""


@dataclass
class IndexDoc:
    """The searchable text of one Email.

    ``from_``/``to``/``cc``/``bcc``: the decoded header values as "Name <local@domain>, ..." (the
    display names and the addresses are both searchable). ``body``: the text of all text body
    parts, HTML converted to text, text attachments included, joined by newlines. ``headers``:
    every header field as (name, decoded value), for the ``header`` filter.
    """

    email_id: str
    subject: str = ""
    from_: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""
    body: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    # the order of search_top: an unsigned 64-bit key the caller derives (tidings: receivedAt, then id)
    sort_key: int = 0

    def index_fields(self) -> dict[str, str]:
        """Field name -> index text (normalised tokens joined by spaces), for the engines."""
        return {
            "subject": analysis.index_text(self.subject),
            "from": analysis.index_text(self.from_),
            "to": analysis.index_text(self.to),
            "cc": analysis.index_text(self.cc),
            "bcc": analysis.index_text(self.bcc),
            "body": analysis.index_text(self.body),
            "headers": analysis.header_index_text(self.headers),
        }


# ------------------------------------------------------------------------------ query model
@dataclass(frozen=True)
class Match:
    """A text condition of Email/query: ``field`` is one of FIELDS, ``text`` the user's string.
    Every word and every "quoted phrase" of ``text`` must match (a string with no word matches
    nothing)."""

    field: str
    text: str


@dataclass(frozen=True)
class HeaderMatch:
    """The ``header`` condition: the Email has a header field ``name`` (case-insensitive), and if
    ``value`` has words, one such field whose value contains them adjacent and in order."""

    name: str
    value: str | None = None


@dataclass(frozen=True)
class And:
    children: tuple[TextQuery, ...]

    def __init__(self, children: Iterable[TextQuery]):
        object.__setattr__(self, "children", tuple(children))


@dataclass(frozen=True)
class Or:
    children: tuple[TextQuery, ...]

    def __init__(self, children: Iterable[TextQuery]):
        object.__setattr__(self, "children", tuple(children))


@dataclass(frozen=True)
class Not:
    """All documents of the account except those matching ``child``."""

    child: TextQuery


TextQuery: TypeAlias = Match | HeaderMatch | And | Or | Not


# ------------------------------------------------------------------------------ lowered plan
@dataclass(frozen=True)
class PhraseIn:
    """Tokens adjacent and in order (one token: a term) in at least one of ``fields``."""

    fields: tuple[str, ...]
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class AllOf:
    children: tuple[Plan, ...]


@dataclass(frozen=True)
class AnyOf:
    children: tuple[Plan, ...]


@dataclass(frozen=True)
class Without:
    """Every document minus ``child``."""

    child: Plan


@dataclass(frozen=True)
class Everything:
    pass


@dataclass(frozen=True)
class Nothing:
    pass


Plan: TypeAlias = PhraseIn | AllOf | AnyOf | Without | Everything | Nothing
EVERYTHING = Everything()
NOTHING = Nothing()


def lower(query: TextQuery) -> Plan:
    """Validate ``query`` and lower it into a simplified Plan; UnsupportedQuery if malformed."""
    if isinstance(query, Match):
        fields = FIELDS.get(query.field) if isinstance(query.field, str) else None
        if fields is None:
            raise UnsupportedQuery(f"unsupported text field {query.field!r}")
        if not isinstance(query.text, str):
            raise UnsupportedQuery(f"text of {query.field!r} must be a string")
        phrases = analysis.parse_query_text(query.text)
        if not phrases:
            return NOTHING
        return _all([PhraseIn(fields, p) for p in phrases])
    if isinstance(query, HeaderMatch):
        if not isinstance(query.name, str) or not (query.value is None or isinstance(query.value, str)):
            raise UnsupportedQuery("header filter needs a name and an optional value, both strings")
        tokens = analysis.header_query_tokens(query.name, query.value)
        return PhraseIn(("headers",), tokens) if tokens else NOTHING
    if isinstance(query, And):
        return _all([lower(c) for c in query.children])
    if isinstance(query, Or):
        return _any([lower(c) for c in query.children])
    if isinstance(query, Not):
        child = lower(query.child)
        if isinstance(child, Nothing):
            return EVERYTHING
        if isinstance(child, Everything):
            return NOTHING
        if isinstance(child, Without):
            return child.child
        return Without(child)
    raise UnsupportedQuery(f"unsupported query node {type(query).__name__}")


def _all(children: list[Plan]) -> Plan:
    if any(isinstance(c, Nothing) for c in children):
        return NOTHING
    kept = tuple(c for c in children if not isinstance(c, Everything))
    if not kept:
        return EVERYTHING
    return kept[0] if len(kept) == 1 else AllOf(kept)


def _any(children: list[Plan]) -> Plan:
    if any(isinstance(c, Everything) for c in children):
        return EVERYTHING
    kept = tuple(c for c in children if not isinstance(c, Nothing))
    if not kept:
        return NOTHING
    return kept[0] if len(kept) == 1 else AnyOf(kept)


def highlight_phrases(query: TextQuery) -> tuple[list[analysis.Phrase], list[analysis.Phrase]]:
    """The phrases a snippet marks: (for the subject, for the body). Only positive conditions
    count (a word under NOT is never "matched text"); ``header`` conditions never do."""
    subject: list[analysis.Phrase] = []
    body: list[analysis.Phrase] = []

    def walk(q: TextQuery, positive: bool) -> None:
        if isinstance(q, Match):
            if positive and q.field in ("text", "subject", "body"):
                phrases = analysis.parse_query_text(q.text)
                if q.field != "body":
                    subject.extend(p for p in phrases if p not in subject)
                if q.field != "subject":
                    body.extend(p for p in phrases if p not in body)
        elif isinstance(q, And | Or):
            for c in q.children:
                walk(c, positive)
        elif isinstance(q, Not):
            walk(q.child, not positive)

    lower(query)        # validates
    walk(query, True)
    return subject, body


MARKER = "tidings-index.json"  # in each account directory: which engine and schema wrote it


class IndexMismatch(RuntimeError):
    """An account directory holds another engine's (or schema's) index: reindex the account."""


class IndexDamaged(IndexMismatch):
    """An account's index cannot be read: an empty or garbled marker, a directory with files but
    no marker, index files the engine refuses (a write cut short by a full disk or a crash of an
    older version).  Like a mismatch, it is repaired by rebuilding the account's index."""


_DISK_TEXTS = tuple(os.strerror(n) for n in (errno.ENOSPC, errno.EDQUOT, errno.EIO))


def disk_trouble(exc: BaseException) -> bool:
    """Whether an engine's error is the disk's (full, I/O error): the engines keep only the text."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO)
    return any(text in str(exc) for text in _DISK_TEXTS)


def write_marker(directory: Path, content: dict) -> None:
    """Writes the marker atomically: a temp file, fsync'd, renamed over the marker, the directory
    fsync'd; a full disk or a crash leaves the old marker or none, never a part of one."""
    tmp = directory / f".{MARKER}.tmp"
    with open(tmp, "wb") as f:
        f.write(json.dumps(content).encode())
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, directory / MARKER)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_marker(directory: Path) -> dict:
    """The marker's content; IndexDamaged if it cannot be read as a JSON object."""
    try:
        found = json.loads((directory / MARKER).read_bytes())
    except (OSError, ValueError) as exc:
        raise IndexDamaged(f"{directory / MARKER} cannot be read ({exc}): the index is rebuilt") from exc
    if not isinstance(found, dict):
        raise IndexDamaged(f"{directory / MARKER} is not an index marker: the index is rebuilt")
    return found


def account_dir(root: Path, account_id: str, engine: str, schema: int,
                create: Callable[[Path], object] | None = None) -> Path | None:
    """The account's index directory, checked to be this engine's; None if there is none and
    create is None. create(path) makes an empty index in an empty directory: a missing index is
    made that way in a staging directory, marked, and only then renamed into place, so a kill -9
    or a full disk while an index is created leaves the staging directory (removed at the next
    try), never a half-made index or an empty marker under the account's name.  IndexDamaged if
    the directory has files but no readable marker, IndexMismatch if another engine or schema
    wrote it."""
    d = root / check_account_id(account_id)
    marker = d / MARKER
    expected = {"engine": engine, "schema": schema}
    if not marker.exists():
        if d.exists() and any(d.iterdir()):
            raise IndexDamaged(f"{d} has no index marker: the index is rebuilt")
        if create is None:
            return None
        staging = root / f".{account_id}.new"  # "." is never in an account id
        shutil.rmtree(staging, ignore_errors=True)  # left by a kill during an earlier creation
        staging.mkdir(parents=True)
        create(staging)
        write_marker(staging, expected)
        if d.exists():
            d.rmdir()  # an empty directory
        os.rename(staging, d)
        _fsync_dir(root)
        return d
    found = read_marker(d)
    if found != expected:
        raise IndexMismatch(f"index of account {account_id} is {found}, expected {expected}: "
                            "reindex the account")
    return d


def remove_account_dir(root: Path, account_id: str) -> None:
    """Deletes the account's index: renamed away first, so a kill -9 during the deletion leaves
    no directory with part of an index (and maybe no marker) under the account's name."""
    d = root / check_account_id(account_id)
    trash = root / f".{account_id}.dropped"
    shutil.rmtree(trash, ignore_errors=True)
    if d.exists():
        os.rename(d, trash)
        shutil.rmtree(trash, ignore_errors=True)


def check_account_id(account_id: str) -> str:
    """Account ids name index directories: refuse anything that could escape the index root."""
    if not isinstance(account_id, str) or not _ACCOUNT_RE.match(account_id):
        raise ValueError(f"invalid account id {account_id!r}")
    return account_id


# ------------------------------------------------------------------------------ the contract
Snippet: TypeAlias = dict[str, str | None]


class SearchIndex(ABC):
    """One full-text index per account, under a root directory.

    Changes (``add``/``delete``) become visible to ``search`` and ``doc_count`` at ``commit``.
    One process at a time may write an account's index; any number may search it and call
    ``refresh`` to see the other process's commits at once. Methods are thread-safe.
    """

    engine: str = ""

    @abstractmethod
    def add(self, account_id: str, docs: Sequence[IndexDoc]) -> None:
        """Index ``docs``, replacing any document with the same email_id (also within the batch:
        the last one wins)."""

    @abstractmethod
    def delete(self, account_id: str, email_ids: Iterable[str]) -> None:
        """Remove these Emails (unknown ids are ignored)."""

    @abstractmethod
    def commit(self, account_id: str) -> None:
        """Make the account's pending changes durable and visible to searches."""

    @abstractmethod
    def search(self, account_id: str, query: TextQuery) -> set[str]:
        """Email ids of the account matching ``query`` (UnsupportedQuery if it can't be answered)."""

    @abstractmethod
    def search_top(self, account_id: str, query: TextQuery, offset: int, limit: int,
                   descending: bool = True) -> tuple[int, list[str]]:
        """(number of matches, the ids at [offset, offset + limit) in sort_key order): a page of
        results without turning every match into an id."""

    def snippets(
        self,
        account_id: str,
        query: TextQuery,
        email_ids: Iterable[str],
        previews: Mapping[str, tuple[str | None, str | None]],
    ) -> dict[str, Snippet]:
        """SearchSnippet objects (RFC 8621 §5) for ``email_ids``.

        ``previews[id]`` is (subject, body text) of the Email; ids missing from it are left out
        of the result (the caller reports them ``notFound``). Each value is ``{"subject": ...,
        "preview": ...}``: HTML-escaped text with the matched words in ``<mark></mark>``, or None
        where the query matched nothing in that part; ``preview`` is at most 255 octets.
        """
        from .snippets import make_snippet  # lazy: engines that never make snippets skip it

        check_account_id(account_id)
        subj_phrases, body_phrases = highlight_phrases(query)
        out: dict[str, Snippet] = {}
        for email_id in email_ids:
            texts = previews.get(email_id)
            if texts is None:
                continue
            subject, body = texts
            out[email_id] = make_snippet(subject, body, subj_phrases, body_phrases)
        return out

    @abstractmethod
    def doc_count(self, account_id: str) -> int:
        """Number of committed documents in the account's index."""

    @abstractmethod
    def refresh(self, account_id: str) -> None:
        """See commits made by other processes now (they also appear by themselves, later)."""

    def verify(self, account_id: str) -> None:
        """Opens the account's index if it has one: IndexDamaged (IndexMismatch) if it cannot be
        read, so that a caller repairs it before a search depends on it."""
        self.doc_count(account_id)

    @abstractmethod
    def abandon(self, account_id: str) -> None:
        """Forgets the account's uncommitted changes and its writer after a failed write (a full
        disk): the next change opens a new writer on the last commit, so indexing goes on once
        the disk has room, without a restart.  The caller indexes the changes again."""

    @abstractmethod
    def drop(self, account_id: str) -> None:
        """Delete the account's index entirely, pending changes included (before a rebuild)."""

    @abstractmethod
    def close(self) -> None:
        """Release files, locks and writers; uncommitted changes are discarded."""

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
