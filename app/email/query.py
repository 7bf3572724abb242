"""Email/query and Email/queryChanges (RFC 8621 §4.4, §4.5).

How a query runs
----------------
1. Parse: the filter is validated (`check_filter` + `_check_condition`: unknown condition names are
   unsupportedFilter, badly typed values invalidArguments) and compiled into the same tree with its
   values normalised (UTCDates -> epoch seconds, keywords lower-cased, "#creationId" mailbox ids
   resolved). The sort is validated by `check_sort`; keyword sorts must carry a `keyword`.
2. Text: conditions that need a full-text index (text, from, to, cc, bcc, subject, body, header) go
   to `text_hits`, the plug-in point for a search engine. It answers, for each FilterCondition that has
   text properties, the set of email ids matching them; until an engine is wired in it refuses with
   unsupportedFilter, so a text query never gets a wrong answer.
3. Plan (`_plan`): the conditions every result must meet (the filter itself, or the members of a
   top-level AND, recursively) choose the candidate source: the date index of their `inMailbox`, else
   of the whole account, with `after`/`before` pushed into the index range; a text condition among
   them restricts the candidates to its hits. A mailbox that does not exist gives no candidates: an
   unknown id in a filter is simply matched by no email (RFC 8620 §5.5 defines no error for it).
4. Match: each candidate record is loaded and the whole filter evaluated on it. Thread keyword
   conditions read the thread's emails once per thread and query.
5. Order: when the sort is receivedAt only (or absent: newest first), the candidate order is the
   result order, so results stream and reading stops as soon as the requested window is filled,
   unless the total is needed and cannot come from the mailbox counters (filter exactly
   {inMailbox: X}, or no filter without collapseThreads). Otherwise all matches are sorted in
   Python by the comparators; ties are broken by id, in the direction of the last comparator (the
   same as the date index does for a receivedAt-only sort), so the order is stable between calls.
6. collapseThreads keeps the first email of each thread in that order; then position or
   anchor/anchorOffset and limit (capped at MAX_LIMIT) cut the window.

Email/queryChanges recomputes the current list and reports every email changed since the old state
(`query_changes`). When the results depend on other emails of a thread (collapseThreads, or thread
keyword conditions or sorts), the changes are widened to every email of each affected thread.
"""

from __future__ import annotations

import heapq
import itertools
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from app.protocol.errors import MethodError, invalid_arguments
from app.protocol.query import check_filter, check_sort, evaluate_filter, query_changes
from app.protocol.registry import MAIL, method
from app.protocol.standard import bool_arg, check_known_args, query_window, slice_results
from app.search import IndexBehind, UnsupportedQuery, condition_query
from indexer import IndexMismatch
from store import CannotCalculateChanges

from .model import is_valid_keyword

MAX_LIMIT = 10_000

QUERY_ARGS = {"accountId", "filter", "sort", "position", "anchor", "anchorOffset", "limit",
              "calculateTotal", "collapseThreads"}
EXTRA_ARGS = {"collapseThreads"}

THREAD_CONDITIONS = {"allInThreadHaveKeyword", "someInThreadHaveKeyword", "noneInThreadHaveKeyword"}
TEXT_CONDITIONS = {"text", "from", "to", "cc", "bcc", "subject", "body", "header"}
# condition name -> kind of value it takes (RFC 8621 §4.4.1)
CONDITION_TYPES = {
    "inMailbox": "id", "inMailboxOtherThan": "ids", "before": "date", "after": "date",
    "minSize": "uint", "maxSize": "uint", "hasKeyword": "keyword", "notKeyword": "keyword",
    **dict.fromkeys(THREAD_CONDITIONS, "keyword"), "hasAttachment": "bool",
    **dict.fromkeys(TEXT_CONDITIONS - {"header"}, "string"), "header": "header",
}

KEYWORD_SORTS = {"hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"}
THREAD_SORTS = {"allInThreadHaveKeyword", "someInThreadHaveKeyword"}
SORTS = {"receivedAt", "sentAt", "size", "from", "to", "subject", *KEYWORD_SORTS}
DEFAULT_SORT = [{"property": "receivedAt", "isAscending": False}]

_UTC_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?Z", re.ASCII)


# ---------------------------------------------------------------- parsing
def utc_seconds(value: object, name: str) -> int:
    """A UTCDate (RFC 8620 §1.4) as the smallest whole second not before it: receivedAt is whole
    seconds, so `receivedAt >= t` and `receivedAt < t` hold exactly when they hold for ceil(t)."""
    match = _UTC_DATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise invalid_arguments(f"filter {name} must be a UTCDate like 2024-01-02T03:04:05Z")
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                          tzinfo=UTC)
    except ValueError:
        raise invalid_arguments(f"filter {name} is not a valid date-time: {value!r}") from None
    seconds = int(moment.timestamp())
    return seconds + 1 if fraction and int(fraction) else seconds


def _check_keyword(value: object, where: str) -> str:
    if not is_valid_keyword(value):
        raise invalid_arguments(f"{where} must be a keyword (1-255 printable ASCII characters, none of "
                                "( ) { ] % * \" \\ or space)")
    return value.lower()


def _check_condition(cond: dict) -> None:
    unknown = set(cond) - set(CONDITION_TYPES)
    if unknown:
        raise MethodError("unsupportedFilter",
                          f"unknown Email filter condition(s): {', '.join(sorted(unknown))}")
    for name, value in cond.items():
        kind = CONDITION_TYPES[name]
        if kind == "id":
            ok = isinstance(value, str) and value != ""
        elif kind == "ids":
            ok = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
        elif kind == "date":
            utc_seconds(value, name)
            ok = True
        elif kind == "uint":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif kind == "keyword":
            _check_keyword(value, f"filter {name}")
            ok = True
        elif kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "string":
            ok = isinstance(value, str)
        else:  # header: [name] or [name, text]
            ok = (isinstance(value, list) and len(value) in (1, 2)
                  and all(isinstance(v, str) for v in value) and value[0] != "")
        if not ok:
            expected = {"id": "a Mailbox id", "ids": "an array of Mailbox ids",
                        "uint": "an unsigned integer", "bool": "a boolean", "string": "a string",
                        "header": "an array of a header name and an optional text"}[kind]
            raise invalid_arguments(f"filter {name} must be {expected}")


def _resolve(ctx, value: str) -> str:
    return ctx.resolve_id(value) or value


def _compile(ctx, flt: object) -> dict | None:
    """The validated filter with its values normalised for matching and planning."""
    if flt is None:
        return None
    if "operator" in flt:
        subs = []
        for sub in flt["conditions"]:
            if not isinstance(sub, dict):
                raise invalid_arguments("each filter condition must be an object")
            subs.append(_compile(ctx, sub))
        return {"operator": flt["operator"], "conditions": subs}
    out = {}
    for name, value in flt.items():
        if name == "inMailbox":
            value = _resolve(ctx, value)
        elif name == "inMailboxOtherThan":
            value = frozenset(_resolve(ctx, v) for v in value)
        elif name in ("before", "after"):
            value = utc_seconds(value, name)
        elif CONDITION_TYPES[name] == "keyword":
            value = value.lower()
        out[name] = value
    return out


def _walk_conditions(flt: dict | None) -> Iterator[dict]:
    """Every FilterCondition of a (compiled) filter, at any depth."""
    if not flt:
        return
    if "operator" in flt:
        for sub in flt["conditions"]:
            yield from _walk_conditions(sub)
    else:
        yield flt


def _required_conditions(flt: dict | None) -> list[dict]:
    """The conditions every result must meet: the filter itself, or the members of a top-level AND
    (recursively). OR and NOT branches constrain nothing for planning."""
    if not flt:
        return []
    if "operator" not in flt:
        return [flt]
    if flt["operator"] != "AND":
        return []
    out: list[dict] = []
    for sub in flt["conditions"]:
        out.extend(_required_conditions(sub))
    return out


def _parse_sort(args: dict) -> list[dict]:
    sort = check_sort(args.get("sort"), SORTS)
    out = []
    for comp in sort:
        comp = dict(comp)
        if comp["property"] in KEYWORD_SORTS:
            comp["keyword"] = _check_keyword(comp.get("keyword"), f"the keyword of a {comp['property']} sort")
        out.append(comp)
    return out or [dict(c) for c in DEFAULT_SORT]


@dataclass
class Query:
    filter: dict | None
    sort: list[dict]
    collapse: bool

    def text_conditions(self) -> list[dict]:
        return [c for c in _walk_conditions(self.filter) if not TEXT_CONDITIONS.isdisjoint(c)]

    def date_order(self) -> bool | None:
        """For a receivedAt-only sort, whether it is descending (the date index order is then the
        result order); None when the comparators need an in-memory sort."""
        directions = {c.get("isAscending", True) for c in self.sort}
        if len(directions) == 1 and all(c["property"] == "receivedAt" for c in self.sort):
            return not directions.pop()
        return None

    def depends_on_threads(self) -> bool:
        """Whether an email's presence or place in the results can change when another email of its
        thread changes."""
        return (self.collapse or any(c["property"] in THREAD_SORTS for c in self.sort)
                or any(not THREAD_CONDITIONS.isdisjoint(c) for c in _walk_conditions(self.filter)))


def parse_query(ctx, args: dict) -> Query:
    flt = args.get("filter")
    check_filter(flt, _check_condition)
    compiled = _compile(ctx, flt)
    sort = _parse_sort(args)
    return Query(compiled, sort, bool_arg(args, "collapseThreads"))


# ---------------------------------------------------------------- full-text plug-in point
def text_hits(ctx, reader, conditions: list[dict]) -> dict[int, set[str]]:
    """Full-text search (`ctx.search`, see app/search.py and indexer/).

    conditions are the compiled FilterConditions that have text properties (text, from, to, cc, bcc,
    subject, body, header). The answer maps id() of each such condition to the set of email ids that
    match all of its text properties; its other properties are still checked on the email record, and
    the planner iterates the hits of a required text condition instead of a date index. The caller
    has made the index current for the account (read-your-writes) before opening the reader."""
    if ctx.search is None:
        names = sorted({name for cond in conditions for name in cond if name in TEXT_CONDITIONS})
        raise MethodError("unsupportedFilter",
                          f"filter condition(s) {', '.join(names)} need full-text search, "
                          "which is not enabled on this server")
    hits: dict[int, set[str]] = {}
    with _engine_errors(ctx, reader.account_id):
        for cond in conditions:
            hits[id(cond)] = ctx.search.index.search(reader.account_id, condition_query(cond))
    return hits


@contextmanager
def _engine_errors(ctx, account_id: str):
    try:
        yield
    except UnsupportedQuery as exc:
        raise MethodError("unsupportedFilter", f"the search engine cannot answer this filter: {exc}") \
            from None
    except IndexMismatch as exc:
        # unreadable (a file cut short) or another schema's: ensure_fresh found it sound a moment
        # ago, so it broke since; queue its rebuild and let the client try again
        ctx.search.request_rebuild(account_id, exc)
        raise MethodError("serverUnavailable", f"the search index of the account is being rebuilt ({exc}); "
                          "try again shortly") from None


def _top_from_index(ctx, reader, query: Query, position: int, limit: int) -> tuple[int, list[str]] | None:
    """A text-only filter sorted by receivedAt is one page of the index, ordered by its sort key
    (receivedAt, then id, as the date index): no need to turn every match into an id."""
    flt = query.filter
    descending = query.date_order()
    if (ctx.search is None or not flt or "operator" in flt or not set(flt) <= TEXT_CONDITIONS
            or descending is None or query.collapse or position < 0 or not ctx.access(reader.account_id).owner):
        return None
    with _engine_errors(ctx, reader.account_id):
        total, ids = ctx.search.index.search_top(reader.account_id, condition_query(flt), position, limit,
                                                 descending)
    # an email destroyed since the index caught up is not shown
    return total, [i for i in ids if reader.has_email(i)]


def _top_from_dates(ctx, reader, query: Query, position: int, limit: int) -> tuple[int, list[str]] | None:
    """{inMailbox} or {inMailbox, hasKeyword} sorted by receivedAt, for the account's owner: one
    page of a date index (of the mailbox, or of the mailbox's emails with the keyword), the total
    from the stored counts; no email record is read.  None when the query is not of that shape."""
    flt = query.filter
    descending = query.date_order()
    if (not flt or descending is None or query.collapse or position < 0
            or not ctx.access(reader.account_id).owner):
        return None
    flt = _merged_conditions(flt)
    if flt is None or "inMailbox" not in flt or not set(flt) <= {"inMailbox", "hasKeyword"}:
        return None
    mailbox = reader.mailbox(flt["inMailbox"])
    if mailbox is None:
        return 0, []
    if "hasKeyword" in flt:
        total = reader.mailbox_keyword_count(flt["inMailbox"], flt["hasKeyword"])
        ids = reader.email_ids_by_keyword(flt["inMailbox"], flt["hasKeyword"], descending)
    else:
        total = mailbox["totalEmails"]
        ids = reader.email_ids_by_date(flt["inMailbox"], descending)
    return total, list(itertools.islice(ids, position, position + limit))


# ---------------------------------------------------------------- planning and matching
@dataclass
class Plan:
    mailbox_id: str | None = None  # iterate this mailbox's date index, else the account's
    after: int | None = None  # receivedAt >= after
    before: int | None = None  # receivedAt < before
    candidate_ids: set[str] | None = None  # restricted to these (hits of a required text condition)


def _plan(flt: dict | None, hits: dict[int, set[str]]) -> Plan:
    plan = Plan()
    for cond in _required_conditions(flt):
        if "inMailbox" in cond and plan.mailbox_id is None:
            plan.mailbox_id = cond["inMailbox"]  # another, different inMailbox fails on evaluation
        if "after" in cond:
            plan.after = cond["after"] if plan.after is None else max(plan.after, cond["after"])
        if "before" in cond:
            plan.before = cond["before"] if plan.before is None else min(plan.before, cond["before"])
        if id(cond) in hits:
            found = hits[id(cond)]
            plan.candidate_ids = set(found) if plan.candidate_ids is None else plan.candidate_ids & found
    return plan


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_DIGITS = re.compile(r"[0-9]+")


def _collation(name: str | None) -> Callable[[str], object]:
    if name == "i;ascii-casemap":
        return lambda s: s.translate(_ASCII_LOWER)
    if name == "i;ascii-numeric":  # RFC 4790 §9.1: leading digits by value; the rest after, equal
        def numeric(s: str) -> tuple[int, int, str]:
            # ASCII digits only ("٣" is no digit here), compared by length then digits: no int(), whose
            # 4300-digit limit a subject of 5000 digits would pass
            digits = _ASCII_DIGITS.match(s)
            if digits is None:
                return (1, 0, "")
            value = digits.group().lstrip("0") or "0"
            return (0, len(value), value)

        return numeric
    # i;unicode-casemap (RFC 5051), the default: case-folded, compatibility-decomposed
    return lambda s: unicodedata.normalize("NFKD", s.casefold())


def _first_address(addresses: list[dict] | None) -> str:
    """RFC 8621 §4.4.2: the first address' name, or if null/empty its email, else ""."""
    if not addresses:
        return ""
    first = addresses[0]
    return first.get("name") or first.get("email") or ""


def _sent_at(value: str | None) -> tuple[int, float]:
    if value:
        try:
            return (1, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return (0, 0.0)  # no (valid) Date header: before every dated email


class Run:
    """One evaluation of a Query against a reader snapshot."""

    def __init__(self, ctx, reader, query: Query):
        self.reader = reader
        self.query = query
        self.access = ctx.access(reader.account_id)  # a shared account: only readable emails
        text = query.text_conditions()
        self.hits = text_hits(ctx, reader, text) if text else {}
        self._threads: dict[str, list] = {}

    # -- thread keywords
    def _thread_keywords(self, thread_id: str) -> list:
        sets = self._threads.get(thread_id)
        if sets is None:
            sets = []
            for email_id in self.reader.thread(thread_id) or ():
                record = self.reader.email(email_id)
                if record is not None and self.access.may_read_email(record):  # the thread as they see it
                    sets.append(record["keywords"])
            self._threads[thread_id] = sets
        return sets

    def all_in_thread(self, thread_id: str, keyword: str) -> bool:
        return all(keyword in kws for kws in self._thread_keywords(thread_id))

    def some_in_thread(self, thread_id: str, keyword: str) -> bool:
        return any(keyword in kws for kws in self._thread_keywords(thread_id))

    # -- matching
    def match(self, cond: dict, rec: dict) -> bool:
        for name, value in cond.items():
            if name == "inMailbox":
                ok = value in rec["mailboxIds"]
            elif name == "inMailboxOtherThan":
                ok = any(m not in value for m in rec["mailboxIds"])
            elif name == "before":
                ok = rec["receivedAt"] < value
            elif name == "after":
                ok = rec["receivedAt"] >= value
            elif name == "minSize":
                ok = rec["size"] >= value
            elif name == "maxSize":
                ok = rec["size"] < value
            elif name == "hasKeyword":
                ok = value in rec["keywords"]
            elif name == "notKeyword":
                ok = value not in rec["keywords"]
            elif name == "allInThreadHaveKeyword":
                ok = self.all_in_thread(rec["threadId"], value)
            elif name == "someInThreadHaveKeyword":
                ok = self.some_in_thread(rec["threadId"], value)
            elif name == "noneInThreadHaveKeyword":
                ok = not self.some_in_thread(rec["threadId"], value)
            elif name == "hasAttachment":
                ok = bool(rec.get("hasAttachment")) == value
            else:  # a text property: answered for the whole condition by the text index
                ok = rec["id"] in self.hits[id(cond)]
            if not ok:
                return False
        return True

    def _source(self, plan: Plan, descending: bool) -> Iterator[dict]:
        """Candidate records in receivedAt order (ties by id, the same direction)."""
        reader = self.reader
        if plan.mailbox_id is not None:
            mailbox = reader.mailbox(plan.mailbox_id)
            if mailbox is None:
                return
            index_size = mailbox["totalEmails"]
        else:
            index_size = reader.email_count()
        # loading and sorting the hits costs ~10x a date-index step: do it only for few hits
        if plan.candidate_ids is not None and len(plan.candidate_ids) * 10 < index_size:
            records = [r for r in map(reader.email, plan.candidate_ids) if r is not None]
            records.sort(key=lambda r: (r["receivedAt"], r["id"]), reverse=descending)
            yield from records
            return
        for email_id, record in self._dated(plan, descending):
            if plan.candidate_ids is not None and email_id not in plan.candidate_ids:
                continue
            record = record or reader.email(email_id)
            if record is not None:
                yield record

    def _dated(self, plan: Plan, descending: bool) -> Iterator[tuple[str, dict | None]]:
        """(email id, its record when already read) in receivedAt order from the date indexes: of
        one mailbox, of the account, or for a grantee of a shared account of the mailboxes they may
        read, merged (not the whole account, most of which they may not see)."""
        reader = self.reader
        readable = self.access.readable()
        if plan.mailbox_id is not None or readable is None:
            for email_id in reader.email_ids_by_date(plan.mailbox_id, descending=descending,
                                                     after=plan.after, before=plan.before):
                yield email_id, None
            return

        def keyed(mailbox_id: str) -> Iterator[tuple[int, str, dict]]:
            for email_id in reader.email_ids_by_date(mailbox_id, descending=descending,
                                                     after=plan.after, before=plan.before):
                record = reader.email(email_id)
                if record is not None:
                    yield record["receivedAt"], email_id, record

        last = None
        merged = heapq.merge(*(keyed(m) for m in sorted(readable)), key=lambda e: e[:2], reverse=descending)
        for _, email_id, record in merged:
            if email_id != last:  # an email in two readable mailboxes comes out of both, side by side
                last = email_id
                yield email_id, record

    def matches(self, descending: bool = True) -> Iterator[dict]:
        flt = self.query.filter
        for record in self._source(_plan(flt, self.hits), descending):
            if self.access.may_read_email(record) and evaluate_filter(flt, record, self.match):
                yield record

    # -- ordering
    def _sort_key(self, comp: dict) -> Callable[[dict], object]:
        prop = comp["property"]
        if prop == "receivedAt":
            return lambda r: r["receivedAt"]
        if prop == "size":
            return lambda r: r["size"]
        if prop == "sentAt":
            return lambda r: _sent_at(r.get("sentAt"))
        if prop in ("from", "to"):
            collate = _collation(comp.get("collation"))
            return lambda r: collate(_first_address(r.get(prop)))
        if prop == "subject":  # the base subject (RFC 5256 §2.1), computed at ingest
            collate = _collation(comp.get("collation"))

            def base_subject(r: dict) -> object:
                subject = r.get("normalized_subject")
                return collate(subject if subject is not None else (r.get("subject") or ""))

            return base_subject
        keyword = comp["keyword"]
        if prop == "hasKeyword":
            return lambda r: keyword in r["keywords"]
        if prop == "allInThreadHaveKeyword":
            return lambda r: self.all_in_thread(r["threadId"], keyword)
        return lambda r: self.some_in_thread(r["threadId"], keyword)

    def ordered(self) -> Iterator[str]:
        """The full result list, lazily when it comes straight from a date index."""
        sort = self.query.sort
        descending = self.query.date_order()
        if descending is not None:
            entries: Iterable[tuple[str, str]] = ((r["id"], r["threadId"]) for r in self.matches(descending))
        else:
            keys = [self._sort_key(comp) for comp in sort]
            rows = [(r["id"], r["threadId"], [key(r) for key in keys]) for r in self.matches()]
            # stable sorts from the least significant key: id, then the comparators last to first
            rows.sort(key=lambda row: row[0], reverse=not sort[-1].get("isAscending", True))
            for i in reversed(range(len(sort))):
                rows.sort(key=lambda row, i=i: row[2][i], reverse=not sort[i].get("isAscending", True))
            entries = ((row[0], row[1]) for row in rows)
        if self.query.collapse:
            entries = _collapse(entries)
        return (email_id for email_id, _ in entries)

    def counted_total(self) -> int | None:
        """The number of results from the stored counters, when the filter allows (RFC 8621 §4.4)."""
        flt = self.query.filter
        if not self.access.owner:
            return None  # the counters count emails a grantee may not see
        if not flt:
            return None if self.query.collapse else self.reader.email_count()
        if "operator" not in flt and set(flt) <= TEXT_CONDITIONS and not self.query.collapse:
            return len(self.hits[id(flt)])  # a text-only filter: the index counted it
        flt = _merged_conditions(flt)
        if flt is None or "inMailbox" not in flt:
            return None
        mailbox = self.reader.mailbox(flt["inMailbox"])
        if mailbox is None:
            return 0
        if set(flt) == {"inMailbox"}:
            return mailbox["totalThreads" if self.query.collapse else "totalEmails"]
        if self.query.collapse or len(flt) != 2:
            return None
        # per-mailbox keyword tallies answer {inMailbox, hasKeyword|notKeyword} without a scan
        if "hasKeyword" in flt:
            return self.reader.mailbox_keyword_count(flt["inMailbox"], flt["hasKeyword"])
        if "notKeyword" in flt:
            return mailbox["totalEmails"] - self.reader.mailbox_keyword_count(flt["inMailbox"],
                                                                              flt["notKeyword"])
        return None


def _merged_conditions(flt: dict) -> dict | None:
    """A condition, or an AND of conditions with distinct properties, as one condition; else None."""
    if "operator" not in flt:
        return flt
    if flt["operator"] != "AND":
        return None
    merged: dict = {}
    for cond in flt["conditions"]:
        if "operator" in cond or set(cond) & set(merged):
            return None
        merged.update(cond)
    return merged


def _collapse(entries: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for email_id, thread_id in entries:
        if thread_id not in seen:
            seen.add(thread_id)
            yield email_id, thread_id


def _take(ids: Iterator[str], position: int, anchor: str | None, anchor_offset: int,
          limit: int) -> list[str]:
    """The head of the result list that holds the window (or all of it, if shorter)."""
    out: list[str] = []
    anchor_at = None

    def filled() -> bool:
        if anchor is None:
            return len(out) >= position + limit
        return anchor_at is not None and len(out) >= max(0, anchor_at + anchor_offset) + limit

    while not filled():
        email_id = next(ids, None)
        if email_id is None:
            break
        if email_id == anchor and anchor_at is None:
            anchor_at = len(out)
        out.append(email_id)
    return out


# ---------------------------------------------------------------- methods
def _index_current(ctx, account_id: str, query: Query) -> None:
    """Read-your-writes for text queries: the index holds every message stored so far."""
    if ctx.search is not None and query.text_conditions():
        try:
            ctx.search.ensure_fresh(account_id)
        except (IndexBehind, IndexMismatch) as exc:
            # the disk refused the index's update, the writer is busy, or a rebuilt index was
            # refused again: never answer from an index that misses the account's mail
            raise MethodError("serverUnavailable", f"{exc}; try again shortly") from None


@method("Email/query", MAIL)
def email_query(ctx, args: dict) -> dict:
    check_known_args(args, QUERY_ARGS)
    account_id = ctx.account_id(args)
    query = parse_query(ctx, args)
    position, anchor, anchor_offset, limit = query_window(args)
    if anchor is not None:
        anchor = _resolve(ctx, anchor)
    calculate_total = bool_arg(args, "calculateTotal")
    capped = limit is None or limit > MAX_LIMIT  # RFC 8620 §5.5: a null limit is clamped too
    if capped:
        limit = MAX_LIMIT
    total = None
    _index_current(ctx, account_id, query)
    with ctx.store.read(account_id) as reader:
        state = reader.state("Email")
        top = None
        if anchor is None:
            top = _top_from_dates(ctx, reader, query, position, limit) or \
                _top_from_index(ctx, reader, query, position, limit)
        if top is not None:
            total, page = top
            out = {"accountId": account_id, "queryState": state, "canCalculateChanges": True,
                   "position": min(position, total), "ids": page}
            if calculate_total:
                out["total"] = total
            if capped:
                out["limit"] = MAX_LIMIT
            return out
        run = Run(ctx, reader, query)
        ids = run.ordered()
        if query.date_order() is not None and (calculate_total or (position < 0 and anchor is None)):
            total = run.counted_total()
        if position < 0 and anchor is None and total is not None:
            position = max(0, total + position)
        needs_all = (query.date_order() is None or (calculate_total and total is None)
                     or (position < 0 and anchor is None))
        if needs_all:
            ids = list(ids)
            total = len(ids)
        else:
            ids = _take(ids, position, anchor, anchor_offset, limit)
        page, start, _ = slice_results(ids, position, anchor, anchor_offset, limit, MAX_LIMIT)
    out = {"accountId": account_id, "queryState": state, "canCalculateChanges": True,
           "position": start, "ids": page}
    if calculate_total:
        out["total"] = total
    if capped:
        out["limit"] = MAX_LIMIT
    return out


def _thread_expander(since: object) -> Callable[[object, set[str]], set[str]]:
    """Widens the changed emails to every email of the threads they (or destroyed emails) are in."""

    def expand(reader, changed: set[str]) -> set[str]:
        threads = set()
        for email_id in changed:
            record = reader.email(email_id)
            if record is not None:
                threads.add(record["threadId"])
        # a destroyed email's thread is known only from the Thread log (same state sequence)
        try:
            thread_changes = reader.changes("Thread", since, None)
            threads.update(thread_changes.created, thread_changes.updated)
        except CannotCalculateChanges:
            # the Email log already accepted this state, so it is only newer than the last Thread
            # change: no thread changed since
            pass
        out = set(changed)
        for thread_id in threads:
            out.update(reader.thread(thread_id) or ())
        return out

    return expand


@method("Email/queryChanges", MAIL)
def email_query_changes(ctx, args: dict) -> dict:
    query = parse_query(ctx, args)
    _index_current(ctx, ctx.account_id(args), query)
    expand = _thread_expander(args.get("sinceQueryState")) if query.depends_on_threads() else None
    return query_changes(ctx, args, "Email", EXTRA_ARGS,
                         lambda reader: list(Run(ctx, reader, query).ordered()), expand)
