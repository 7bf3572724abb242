"""Email/query and Email/queryChanges (RFC 8621 §4.4, §4.5) against a real LMDB store."""

from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cmp_to_key

import pytest

from app.email import query as q
from app.protocol.errors import MethodError
from app.protocol.registry import CORE, MAIL
from app.protocol.request import CallContext, Limits
from store import open_store

T0 = 1_700_000_000


def iso(seconds: int, fraction: str = "") -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


class Mail:
    """A store with one account, and shortcuts to add emails and call the methods."""

    def __init__(self, tmp_path):
        self.store = open_store(str(tmp_path / "data"), map_size=1 << 28)
        self.acc = self.store.create_user("u", "x", "u@x")["accountId"]
        with self.store.read(self.acc) as r:
            self.box = {m["role"]: m["id"] for m in r.mailboxes()}
        self.ctx = CallContext(store=self.store, user={"accountId": self.acc, "name": "u"},
                               limits=Limits(), using={CORE, MAIL})
        self.ids: dict[object, str] = {}  # test name -> email id
        self.names: dict[str, object] = {}

    def add(self, name, boxes=("inbox",), keywords=(), received=None, subject="", frm=None, to=None,
            size=1000, sent_at=None, attachment=False, parent=None) -> str:
        raw = f"Message-ID: <{name}@test>\r\nSubject: {subject}\r\n\r\nbody {name}\r\n".encode()
        guid = hashlib.sha256(raw).hexdigest()
        thread_ids = [f"<{name}@test>"] + ([f"<{parent}@test>"] if parent is not None else [])
        summary = {"size": size, "subject": subject, "normalized_subject": subject, "from": frm,
                   "to": to, "cc": None, "bcc": None, "replyTo": None, "sender": None,
                   "messageId": [f"{name}@test"], "inReplyTo": None, "references": None,
                   "sentAt": sent_at, "hasAttachment": attachment, "preview": "",
                   "thread_ids": thread_ids}
        with self.store.write(self.acc) as w:
            w.put_blob(raw, "message/rfc822")
            record, created = w.add_email(summary, guid, {self.box[b]: True for b in boxes},
                                          dict.fromkeys(keywords, True),
                                          received if received is not None else T0)
        assert created
        self.ids[name] = record["id"]
        self.names[record["id"]] = name
        return record["id"]

    def set_keywords(self, name, *keywords) -> None:
        with self.store.write(self.acc) as w:
            w.update_email(self.ids[name], keywords=dict.fromkeys(keywords, True))

    def move(self, name, *boxes) -> None:
        with self.store.write(self.acc) as w:
            w.update_email(self.ids[name], mailbox_ids={self.box[b]: True for b in boxes})

    def destroy(self, name) -> None:
        with self.store.write(self.acc) as w:
            w.destroy_email(self.ids[name])

    def query(self, **args) -> dict:
        return q.email_query(self.ctx, {"accountId": self.acc, **args})

    def changes(self, **args) -> dict:
        return q.email_query_changes(self.ctx, {"accountId": self.acc, **args})

    def names_of(self, ids: list[str]) -> list:
        return [self.names[i] for i in ids]

    def find(self, **args) -> list:
        """The result as test names, checked to be the same with and without calculateTotal (the
        streaming and the full-list paths)."""
        streamed = self.query(**args)
        full = self.query(calculateTotal=True, **args)
        assert streamed["ids"] == full["ids"]
        assert "total" not in streamed
        return self.names_of(full["ids"])

    def error(self, method=None, **args) -> MethodError:
        with pytest.raises(MethodError) as info:
            (method or self.query)(**args)
        return info.value


@pytest.fixture
def mail(tmp_path):
    m = Mail(tmp_path)
    yield m
    m.store.close()


@pytest.fixture
def six(mail):
    """Six emails in three threads: A = 1, 2, 6; B = 3, 5; C = 4."""
    mail.add(1, ["inbox"], ["$seen"], T0 + 10, "banana", [{"name": "Zed", "email": "z@x"}],
             [{"name": None, "email": "b@x"}], 500, "2024-01-01T08:30:00+02:00")
    mail.add(2, ["inbox"], ["$seen", "$flagged"], T0 + 20, "Apple", [{"name": None, "email": "alice@x"}],
             [{"name": "Carol", "email": "c@x"}], 100, "2024-01-01T07:00:00Z", True, parent=1)
    mail.add(3, ["inbox", "archive"], [], T0 + 30, "cherry", [{"name": "bob", "email": "bob@x"}],
             None, 300)
    mail.add(4, ["archive"], ["$seen"], T0 + 40, "apple", [{"name": "Ann", "email": "ann@x"}],
             [{"name": "aaron", "email": "a@x"}], 200, "2023-12-31T00:00:00Z")
    mail.add(5, ["trash"], ["$draft"], T0 + 50, "date", None, [], 400, "2024-02-01T00:00:00Z", True,
             parent=3)
    mail.add(6, ["inbox"], ["$flagged"], T0 + 60, "", [{"name": "", "email": "Émile@x"}], None, 600,
             parent=1)
    return mail


# ---------------------------------------------------------------- filters
def test_no_filter_is_every_email_newest_first(six):
    assert six.find() == [6, 5, 4, 3, 2, 1]
    assert six.find(filter={}) == [6, 5, 4, 3, 2, 1]
    res = six.query(calculateTotal=True)
    assert res["total"] == 6 and res["position"] == 0 and res["canCalculateChanges"] is True
    assert res["accountId"] == six.acc
    with six.store.read(six.acc) as r:
        assert res["queryState"] == r.state("Email")


def test_in_mailbox(six):
    assert six.find(filter={"inMailbox": six.box["inbox"]}) == [6, 3, 2, 1]
    assert six.find(filter={"inMailbox": six.box["archive"]}) == [4, 3]
    assert six.find(filter={"inMailbox": six.box["junk"]}) == []


def test_in_mailbox_unknown_is_empty(six):
    res = six.query(filter={"inMailbox": "Bnope"}, calculateTotal=True)
    assert res["ids"] == [] and res["total"] == 0
    assert six.find(filter={"operator": "OR", "conditions": [{"inMailbox": "Bnope"}, {"minSize": 550}]}) == [6]


def test_in_mailbox_creation_reference(six):
    six.ctx.created_ids["new"] = six.box["archive"]
    assert six.find(filter={"inMailbox": "#new"}) == [4, 3]


def test_in_mailbox_other_than(six):
    assert six.find(filter={"inMailboxOtherThan": [six.box["inbox"]]}) == [5, 4, 3]
    assert six.find(filter={"inMailboxOtherThan": [six.box["trash"], six.box["junk"]]}) == [6, 4, 3, 2, 1]
    assert six.find(filter={"inMailboxOtherThan": []}) == [6, 5, 4, 3, 2, 1]


def test_before_after(six):
    assert six.find(filter={"after": iso(T0 + 20)}) == [6, 5, 4, 3, 2]
    assert six.find(filter={"before": iso(T0 + 30)}) == [2, 1]
    assert six.find(filter={"after": iso(T0 + 20), "before": iso(T0 + 50)}) == [4, 3, 2]
    assert six.find(filter={"after": iso(T0 + 50), "before": iso(T0 + 20)}) == []
    # fractions: receivedAt >= 20.5 means >= 21; receivedAt < 30.5 means <= 30
    assert six.find(filter={"after": iso(T0 + 20, ".5")}) == [6, 5, 4, 3]
    assert six.find(filter={"before": iso(T0 + 30, ".5")}) == [3, 2, 1]
    assert six.find(filter={"before": iso(T0 + 30, ".000")}) == [2, 1]
    # in an OR (not pushed into the index range) and in a nested AND (pushed)
    assert six.find(filter={"operator": "OR", "conditions": [{"before": iso(T0 + 20)},
                                                              {"after": iso(T0 + 60)}]}) == [6, 1]
    assert six.find(filter={"operator": "AND", "conditions": [
        {"operator": "AND", "conditions": [{"after": iso(T0 + 20)}]},
        {"before": iso(T0 + 40)}, {"before": iso(T0 + 60)}]}) == [3, 2]


def test_size(six):
    assert six.find(filter={"minSize": 300}) == [6, 5, 3, 1]
    assert six.find(filter={"maxSize": 300}) == [4, 2]
    assert six.find(filter={"minSize": 200, "maxSize": 400}) == [4, 3]
    assert six.find(filter={"minSize": 0}) == [6, 5, 4, 3, 2, 1]


def test_keywords(six):
    assert six.find(filter={"hasKeyword": "$seen"}) == [4, 2, 1]
    assert six.find(filter={"hasKeyword": "$SEEN"}) == [4, 2, 1]
    assert six.find(filter={"notKeyword": "$seen"}) == [6, 5, 3]
    assert six.find(filter={"notKeyword": "$Flagged"}) == [5, 4, 3, 1]
    assert six.find(filter={"hasKeyword": "unknown"}) == []


def test_has_attachment(six):
    assert six.find(filter={"hasAttachment": True}) == [5, 2]
    assert six.find(filter={"hasAttachment": False}) == [6, 4, 3, 1]


def test_thread_keywords(six):
    assert six.find(filter={"allInThreadHaveKeyword": "$seen"}) == [4]
    assert six.find(filter={"someInThreadHaveKeyword": "$flagged"}) == [6, 2, 1]
    assert six.find(filter={"someInThreadHaveKeyword": "$SEEN"}) == [6, 4, 2, 1]
    assert six.find(filter={"noneInThreadHaveKeyword": "$seen"}) == [5, 3]
    assert six.find(filter={"noneInThreadHaveKeyword": "$flagged", "inMailbox": six.box["inbox"]}) == [3]
    # the thread is the whole thread, not only the emails in the queried mailbox
    assert six.find(filter={"inMailbox": six.box["inbox"], "allInThreadHaveKeyword": "$seen"}) == []


def test_operators(six):
    inbox = six.box["inbox"]
    assert six.find(filter={"operator": "OR", "conditions": [{"hasAttachment": True},
                                                              {"minSize": 550}]}) == [6, 5, 2]
    assert six.find(filter={"operator": "NOT", "conditions": [{"inMailbox": inbox}]}) == [5, 4]
    assert six.find(filter={"operator": "NOT", "conditions": [{"inMailbox": inbox},
                                                               {"hasKeyword": "$draft"}]}) == [4]
    assert six.find(filter={"operator": "AND", "conditions": [
        {"inMailbox": inbox},
        {"operator": "NOT", "conditions": [{"hasKeyword": "$seen"}]}]}) == [6, 3]
    assert six.find(filter={"operator": "AND", "conditions": [
        {"inMailbox": inbox},
        {"operator": "OR", "conditions": [{"maxSize": 200}, {"minSize": 550}]}]}) == [6, 2]
    # two different required mailboxes: nothing is in both inbox and trash
    assert six.find(filter={"operator": "AND", "conditions": [{"inMailbox": inbox},
                                                               {"inMailbox": six.box["trash"]}]}) == []
    assert six.find(filter={"operator": "AND", "conditions": [{"inMailbox": inbox},
                                                               {"inMailbox": six.box["archive"]}]}) == [3]
    assert six.find(filter={"operator": "AND", "conditions": []}) == [6, 5, 4, 3, 2, 1]
    assert six.find(filter={"operator": "OR", "conditions": []}) == []
    assert six.find(filter={"operator": "NOT", "conditions": []}) == [6, 5, 4, 3, 2, 1]


# ---------------------------------------------------------------- sorting
def sort(prop, asc=True, **extra):
    return [{"property": prop, "isAscending": asc, **extra}]


def test_sort_received_at(six):
    assert six.find(sort=sort("receivedAt")) == [1, 2, 3, 4, 5, 6]
    assert six.find(sort=sort("receivedAt", False)) == [6, 5, 4, 3, 2, 1]
    assert six.find(sort=[]) == [6, 5, 4, 3, 2, 1]


def test_sort_size(six):
    assert six.find(sort=sort("size")) == [2, 4, 3, 5, 1, 6]
    assert six.find(sort=sort("size", False)) == [6, 1, 5, 3, 4, 2]
    assert six.find(sort=sort("size"), filter={"inMailbox": six.box["inbox"]}) == [2, 3, 1, 6]


def test_sort_subject(six):
    # base subjects: "" < apple = Apple < banana < cherry < date; ties by id
    assert six.find(sort=sort("subject")) == [6, 2, 4, 1, 3, 5]
    assert six.find(sort=sort("subject", collation="i;ascii-casemap")) == [6, 2, 4, 1, 3, 5]
    assert six.find(sort=sort("subject") + sort("receivedAt", False)) == [6, 4, 2, 1, 3, 5]
    assert six.find(sort=sort("subject", False)) == [5, 3, 1, 4, 2, 6]


def test_sort_from_and_to(six):
    # from: Zed, alice@x (no name), bob, Ann, "" (none), Émile@x (empty name)
    assert six.find(sort=sort("from")) == [5, 2, 4, 3, 6, 1]
    assert six.find(sort=sort("from", False)) == [1, 6, 3, 4, 2, 5]
    # to: b@x (no name), Carol, "", aaron, "" (empty list), ""
    assert six.find(sort=sort("to")) == [3, 5, 6, 4, 1, 2]


def test_sort_sent_at(six):
    # UTC: 1 = 06:30Z, 2 = 07:00Z on Jan 1, 4 = Dec 31, 5 = Feb 1; 3 and 6 have none (first)
    assert six.find(sort=sort("sentAt")) == [3, 6, 4, 1, 2, 5]
    assert six.find(sort=sort("sentAt", False)) == [5, 2, 1, 4, 6, 3]


def test_sort_keywords(six):
    assert six.find(sort=sort("hasKeyword", False, keyword="$flagged") + sort("receivedAt", False)) \
        == [6, 2, 5, 4, 3, 1]
    assert six.find(sort=sort("hasKeyword", keyword="$FLAGGED") + sort("receivedAt")) == [1, 3, 4, 5, 2, 6]
    assert six.find(sort=sort("someInThreadHaveKeyword", False, keyword="$flagged")
                    + sort("receivedAt")) == [1, 2, 6, 3, 4, 5]
    assert six.find(sort=sort("allInThreadHaveKeyword", False, keyword="$seen")
                    + sort("receivedAt", False)) == [4, 6, 5, 3, 2, 1]


def test_sort_collations(mail):
    mail.add("a", subject="item 10", received=T0 + 1)
    mail.add("b", subject="item 9", received=T0 + 2)
    mail.add("c", subject="9 items", received=T0 + 3)
    mail.add("d", subject="10 items", received=T0 + 4)
    mail.add("e", subject="Item 1", received=T0 + 5)
    assert mail.find(sort=sort("subject", collation="i;ascii-numeric")) == ["c", "d", "a", "b", "e"]
    assert mail.find(sort=sort("subject", collation="i;unicode-casemap")) == ["d", "c", "e", "a", "b"]
    assert mail.find(sort=sort("subject", collation="i;ascii-casemap")) == ["d", "c", "e", "a", "b"]


def test_sort_ties_are_stable(mail):
    for name in range(5):
        mail.add(name, received=T0)  # all equal
    assert mail.find() == [4, 3, 2, 1, 0]
    assert mail.find(sort=sort("receivedAt")) == [0, 1, 2, 3, 4]
    assert mail.find(sort=sort("size")) == [0, 1, 2, 3, 4]
    assert mail.find(sort=sort("size", False)) == [4, 3, 2, 1, 0]
    # mixed directions of receivedAt: in-memory sort, ids follow the last comparator
    assert mail.find(sort=sort("receivedAt") + sort("receivedAt", False)) == [4, 3, 2, 1, 0]


# ---------------------------------------------------------------- collapseThreads
def test_collapse_threads(six):
    assert six.find(collapseThreads=True) == [6, 5, 4]
    assert six.find(collapseThreads=True, sort=sort("receivedAt")) == [1, 3, 4]
    assert six.find(collapseThreads=True, sort=sort("size")) == [2, 4, 3]
    assert six.find(collapseThreads=True, filter={"hasKeyword": "$seen"}) == [4, 2]
    res = six.query(collapseThreads=True, filter={"inMailbox": six.box["inbox"]}, calculateTotal=True)
    assert six.names_of(res["ids"]) == [6, 3] and res["total"] == 2
    res = six.query(collapseThreads=True, calculateTotal=True, limit=1)
    assert six.names_of(res["ids"]) == [6] and res["total"] == 3
    res = six.query(collapseThreads=True, position=-1)
    assert six.names_of(res["ids"]) == [4] and res["position"] == 2


# ---------------------------------------------------------------- windows
@pytest.mark.parametrize("sorting", [None, sort("receivedAt", False) + sort("size")])
def test_position_and_limit(six, sorting):
    # the same windows from the date index and from an in-memory sort
    extra = {"sort": sorting} if sorting else {}
    res = six.query(position=2, limit=2, **extra)
    assert six.names_of(res["ids"]) == [4, 3] and res["position"] == 2 and "limit" not in res
    res = six.query(position=-2, **extra)
    assert six.names_of(res["ids"]) == [2, 1] and res["position"] == 4
    res = six.query(position=-2, limit=1, calculateTotal=True, **extra)
    assert six.names_of(res["ids"]) == [2] and res["position"] == 4 and res["total"] == 6
    res = six.query(position=-100, limit=1, **extra)
    assert six.names_of(res["ids"]) == [6] and res["position"] == 0
    res = six.query(position=10, **extra)
    assert res["ids"] == [] and res["position"] == 6
    res = six.query(position=6, limit=0, **extra)
    assert res["ids"] == []
    res = six.query(limit=0, calculateTotal=True, **extra)
    assert res["ids"] == [] and res["total"] == 6
    res = six.query(position=-2, filter={"inMailbox": six.box["inbox"]}, **extra)
    assert six.names_of(res["ids"]) == [2, 1] and res["position"] == 2


@pytest.mark.parametrize("sorting", [None, sort("receivedAt", False) + sort("size")])
def test_anchor(six, sorting):
    extra = {"sort": sorting} if sorting else {}
    e = six.ids
    res = six.query(anchor=e[4], **extra)
    assert six.names_of(res["ids"]) == [4, 3, 2, 1] and res["position"] == 2
    res = six.query(anchor=e[4], anchorOffset=-1, limit=2, position=5, **extra)
    assert six.names_of(res["ids"]) == [5, 4] and res["position"] == 1
    res = six.query(anchor=e[5], anchorOffset=-10, limit=1, **extra)
    assert six.names_of(res["ids"]) == [6] and res["position"] == 0
    res = six.query(anchor=e[2], anchorOffset=1, **extra)
    assert six.names_of(res["ids"]) == [1] and res["position"] == 5
    res = six.query(anchor=e[2], anchorOffset=5, calculateTotal=True, **extra)
    assert res["ids"] == [] and res["total"] == 6
    res = six.query(anchor=e[2], anchorOffset=2, limit=0, **extra)
    assert res["ids"] == [] and res["position"] == 6
    assert six.error(anchor=e[4], filter={"inMailbox": six.box["inbox"]}, **extra).type == "anchorNotFound"
    assert six.error(anchor="Mnope", **extra).type == "anchorNotFound"
    # a collapsed-away email is not in the results
    assert six.error(anchor=e[1], collapseThreads=True, **extra).type == "anchorNotFound"


def test_limit_is_capped(six, monkeypatch):
    monkeypatch.setattr(q, "MAX_LIMIT", 4)
    res = six.query(limit=100)
    assert len(res["ids"]) == 4 and res["limit"] == 4
    res = six.query()
    assert len(res["ids"]) == 4 and res["limit"] == 4
    res = six.query(limit=4)
    assert len(res["ids"]) == 4 and "limit" not in res
    res = six.query(limit=100, sort=sort("size"), calculateTotal=True)
    assert six.names_of(res["ids"]) == [2, 4, 3, 5] and res["limit"] == 4 and res["total"] == 6


# ---------------------------------------------------------------- the planner reads little
class CountingReader:
    def __init__(self, reader, counts):
        self._reader = reader
        self._counts = counts

    def __getattr__(self, name):
        attr = getattr(self._reader, name)
        if name in ("email", "email_ids_by_date"):
            def counted(*args, **kwargs):
                self._counts[name] = self._counts.get(name, 0) + 1
                if name == "email_ids_by_date":
                    self._counts["ranges"].append((args, kwargs))
                return attr(*args, **kwargs)

            return counted
        return attr


class CountingStore:
    def __init__(self, store):
        self.store = store
        self.counts: dict = {"ranges": []}

    @contextmanager
    def read(self, account_id):
        with self.store.read(account_id) as reader:
            yield CountingReader(reader, self.counts)

    def grants_to(self, grantee: str) -> dict:
        return self.store.grants_to(grantee)

    def account(self, account_id: str) -> dict | None:
        return self.store.account(account_id)


def counted(mail, **args) -> tuple[dict, dict]:
    counting = CountingStore(mail.store)
    ctx = CallContext(store=counting, user=mail.ctx.user, limits=Limits(), using=mail.ctx.using)
    res = q.email_query(ctx, {"accountId": mail.acc, **args})
    return res, counting.counts


def test_streams_and_stops_early(mail):
    for n in range(50):
        mail.add(n, ["inbox"] if n % 2 else ["archive"], received=T0 + n)
    inbox = mail.box["inbox"]
    res, counts = counted(mail, limit=3)
    assert mail.names_of(res["ids"]) == [49, 48, 47] and counts["email"] == 3
    # {inMailbox} and {inMailbox, hasKeyword}: a page of a date index, the total from the counts,
    # no email record read
    res, counts = counted(mail, filter={"inMailbox": inbox}, limit=2, position=1, calculateTotal=True)
    assert mail.names_of(res["ids"]) == [47, 45] and res["total"] == 25 and "email" not in counts
    assert counts["ranges"][0][0][0] == inbox
    res, counts = counted(mail, filter={"inMailbox": inbox, "hasKeyword": "$seen"}, calculateTotal=True)
    assert res["ids"] == [] and res["total"] == 0 and "email" not in counts
    # with the one condition more that needs the records, the mailbox streams and stops early
    res, counts = counted(mail, filter={"inMailbox": inbox, "maxSize": 10**6}, limit=2, position=1)
    assert mail.names_of(res["ids"]) == [47, 45] and counts["email"] == 3
    res, counts = counted(mail, calculateTotal=True, position=-2)
    assert mail.names_of(res["ids"]) == [1, 0] and res["total"] == 50 and counts["email"] == 50
    res, counts = counted(mail, anchor=mail.ids[40], anchorOffset=-1, limit=2)
    assert mail.names_of(res["ids"]) == [41, 40] and counts["email"] == 10
    # the total of a filter the counters cannot answer needs every candidate of the mailbox
    res, counts = counted(mail, filter={"inMailbox": inbox, "minSize": 1}, limit=1,
                          calculateTotal=True)
    assert res["total"] == 25 and counts["email"] == 25
    # {inMailbox, notKeyword} is answered by the per-mailbox keyword tallies
    res, counts = counted(mail, filter={"inMailbox": inbox, "notKeyword": "$seen"}, limit=1,
                          calculateTotal=True)
    assert res["total"] == 25 and counts["email"] == 1


def test_dates_are_an_index_range(mail):
    for n in range(20):
        mail.add(n, received=T0 + n)
    res, counts = counted(mail, filter={"operator": "AND", "conditions": [
        {"after": iso(T0 + 5)}, {"before": iso(T0 + 8)}, {"inMailbox": mail.box["inbox"]}]})
    assert mail.names_of(res["ids"]) == [7, 6, 5] and counts["email"] == 3
    assert counts["ranges"][0][1] == {"descending": True, "after": T0 + 5, "before": T0 + 8}


# ---------------------------------------------------------------- text search
def test_text_conditions_are_unsupported(six):
    for flt in ({"text": "x"}, {"from": "x"}, {"to": "x"}, {"cc": "x"}, {"bcc": "x"},
                {"subject": "x"}, {"body": "x"}, {"header": ["X-Spam"]}, {"header": ["Subject", "hi"]},
                {"operator": "NOT", "conditions": [{"subject": "x"}]},
                {"operator": "OR", "conditions": [{"inMailbox": six.box["inbox"]},
                                                  {"operator": "AND", "conditions": [{"body": "x"}]}]}):
        err = six.error(filter=flt)
        assert err.type == "unsupportedFilter" and "full-text search" in err.description
        assert six.error(six.changes, filter=flt, sinceQueryState="0").type == "unsupportedFilter"


def test_text_search_plug_in(six, monkeypatch):
    """A search engine answers text conditions with id sets; the rest of the filter still applies."""
    e = six.ids
    index = {"subject": {"apple": {e[2], e[4]}}, "body": {"fruit": {e[1], e[2], e[3], e[4], e[5]}}}
    asked = []

    def fake_hits(ctx, reader, conditions):
        asked.append(conditions)
        out = {}
        for cond in conditions:
            sets = [index[k][v] for k, v in cond.items() if k in q.TEXT_CONDITIONS]
            out[id(cond)] = set.intersection(*sets)
        return out

    monkeypatch.setattr(q, "text_hits", fake_hits)
    assert six.find(filter={"subject": "apple"}) == [4, 2]
    assert six.find(filter={"subject": "apple", "inMailbox": six.box["inbox"]}) == [2]
    assert six.find(filter={"subject": "apple", "body": "fruit"}, sort=sort("receivedAt")) == [2, 4]
    assert six.find(filter={"operator": "OR", "conditions": [{"subject": "apple"}, {"minSize": 550}]}) \
        == [6, 4, 2]
    assert six.find(filter={"operator": "NOT", "conditions": [{"body": "fruit"}]}) == [6]
    assert six.find(filter={"operator": "AND", "conditions": [{"body": "fruit"}, {"subject": "apple"}]},
                    sort=sort("size")) == [2, 4]
    assert asked and all(isinstance(c, dict) for conds in asked for c in conds)


# ---------------------------------------------------------------- errors
def test_invalid_arguments(six):
    cases = [
        {"unknownArg": 1},
        {"filter": "x"},
        {"filter": {"inMailbox": 5}},
        {"filter": {"inMailbox": None}},
        {"filter": {"inMailboxOtherThan": "B1"}},
        {"filter": {"inMailboxOtherThan": [1]}},
        {"filter": {"before": "2024-01-01"}},
        {"filter": {"before": "2024-13-01T00:00:00Z"}},
        {"filter": {"after": "2024-01-01T00:00:00+01:00"}},
        {"filter": {"after": 1700000000}},
        {"filter": {"minSize": -1}},
        {"filter": {"maxSize": True}},
        {"filter": {"minSize": "5"}},
        {"filter": {"hasKeyword": 5}},
        {"filter": {"notKeyword": "a b"}},
        {"filter": {"someInThreadHaveKeyword": ""}},
        {"filter": {"hasAttachment": "yes"}},
        {"filter": {"text": 5}},
        {"filter": {"header": []}},
        {"filter": {"header": ["a", "b", "c"]}},
        {"filter": {"operator": "AND", "conditions": [None]}},
        {"filter": {"operator": "AND", "conditions": [{"minSize": "x"}]}},
        {"sort": "receivedAt"},
        {"sort": [{"property": "hasKeyword"}]},
        {"sort": [{"property": "someInThreadHaveKeyword", "keyword": 3}]},
        {"sort": [{"property": "size", "isAscending": "yes"}]},
        {"limit": -1},
        {"position": "1"},
        {"anchor": 5},
        {"calculateTotal": "yes"},
        {"collapseThreads": 1},
    ]
    for args in cases:
        err = six.error(**args)
        assert err.type == "invalidArguments", args
        assert err.description, args


def test_unsupported(six):
    assert six.error(filter={"bogus": 1}).type == "unsupportedFilter"
    assert six.error(filter={"operator": "XOR", "conditions": []}).type == "unsupportedFilter"
    assert six.error(sort=sort("id")).type == "unsupportedSort"
    assert six.error(sort=sort("subject", collation="i;octet")).type == "unsupportedSort"
    assert six.error(accountId="Anope").type == "accountNotFound"


# ---------------------------------------------------------------- queryChanges
def apply_changes(old: list[str], res: dict) -> list[str]:
    """RFC 8620 §5.6: splice out the removed ids, then splice in the added ones by index."""
    removed = set(res["removed"])
    out = [i for i in old if i not in removed]
    for item in res["added"]:
        out.insert(item["index"], item["id"])
    return out


QUERIES = [
    {},
    {"filter": {"inMailbox": "inbox"}},
    {"filter": {"notKeyword": "$seen"}},
    {"filter": {"someInThreadHaveKeyword": "$flagged"}},
    {"filter": {"noneInThreadHaveKeyword": "$seen"}},
    {"sort": sort("size")},
    {"sort": sort("someInThreadHaveKeyword", False, keyword="$flagged") + sort("receivedAt")},
    {"collapseThreads": True},
    {"collapseThreads": True, "sort": sort("receivedAt")},
    {"collapseThreads": True, "filter": {"notKeyword": "$seen"}},
    {"collapseThreads": True, "filter": {"inMailbox": "inbox"}, "sort": sort("size", False)},
]


def resolve(mail, args: dict) -> dict:
    args = dict(args)
    if "filter" in args and "inMailbox" in args["filter"]:
        args["filter"] = {**args["filter"], "inMailbox": mail.box[args["filter"]["inMailbox"]]}
    return args


def check_changes(mail, change) -> None:
    before = [(args, mail.query(**resolve(mail, args))) for args in QUERIES]
    change()
    for args, old in before:
        args = resolve(mail, args)
        new = mail.query(calculateTotal=True, **args)
        res = mail.changes(sinceQueryState=old["queryState"], calculateTotal=True, **args)
        assert res["oldQueryState"] == old["queryState"]
        assert res["newQueryState"] == new["queryState"]
        assert res["total"] == new["total"]
        assert apply_changes(old["ids"], res) == new["ids"], args
        assert [a["index"] for a in res["added"]] == sorted(a["index"] for a in res["added"])


def test_query_changes_keywords(six):
    check_changes(six, lambda: six.set_keywords(3, "$seen"))
    check_changes(six, lambda: six.set_keywords(6, "$seen"))  # thread A is now all $seen
    check_changes(six, lambda: six.set_keywords(2))  # thread A loses its $flagged email's flag


def test_query_changes_create(six):
    check_changes(six, lambda: six.add(7, ["inbox"], [], T0 + 5, size=50, parent=1))  # new first of A
    check_changes(six, lambda: six.add(8, ["inbox"], ["$flagged"], T0 + 100, size=700, parent=3))
    check_changes(six, lambda: six.add(9, ["archive"], [], T0 + 15))


def test_query_changes_destroy(six):
    check_changes(six, lambda: six.destroy(1))  # the oldest of thread A
    check_changes(six, lambda: six.destroy(6))  # the newest of A
    check_changes(six, lambda: six.destroy(4))  # thread C disappears


def test_query_changes_moves_and_batches(six):
    check_changes(six, lambda: six.move(3, "trash"))

    def batch():
        six.destroy(2)
        six.add(10, ["inbox"], ["$seen"], T0 + 65, parent=3)
        six.set_keywords(5, "$flagged")
        six.move(4, "inbox")

    check_changes(six, batch)


def test_query_changes_nothing_changed(six):
    old = six.query()
    res = six.changes(sinceQueryState=old["queryState"])
    assert res["removed"] == [] and res["added"] == [] and "total" not in res
    assert res["newQueryState"] == old["queryState"]


def test_query_changes_errors(six):
    old = six.query()
    six.set_keywords(1)
    six.set_keywords(2)
    err = six.error(six.changes, sinceQueryState=old["queryState"], maxChanges=1)
    assert err.type == "tooManyChanges"
    assert six.error(six.changes, sinceQueryState="bogus").type == "cannotCalculateChanges"
    assert six.error(six.changes, sinceQueryState="99999").type == "cannotCalculateChanges"
    assert six.error(six.changes).type == "invalidArguments"
    assert six.error(six.changes, sinceQueryState=old["queryState"], position=0).type == "invalidArguments"
    assert six.error(six.changes, sinceQueryState=old["queryState"],
                     sort=sort("nope")).type == "unsupportedSort"


# ---------------------------------------------------------------- against a brute-force oracle
def oracle(records: list[dict], flt, sorting, collapse) -> list[str]:
    threads: dict[str, list[dict]] = {}
    for r in records:
        threads.setdefault(r["threadId"], []).append(r)

    def matches(f, r) -> bool:
        if "operator" in f:
            results = [matches(c, r) for c in f["conditions"]]
            return {"AND": all, "OR": any}.get(f["operator"], lambda x: not any(x))(results)
        return all(condition_holds(k, v, r) for k, v in f.items())

    def condition_holds(k, v, r) -> bool:
        kws = [set(t["keywords"]) for t in threads[r["threadId"]]]
        if k == "inMailbox":
            return v in r["mailboxIds"]
        if k == "inMailboxOtherThan":
            return bool(set(r["mailboxIds"]) - set(v))
        if k == "after":
            return r["receivedAt"] >= datetime.fromisoformat(v).timestamp()
        if k == "before":
            return r["receivedAt"] < datetime.fromisoformat(v).timestamp()
        if k == "minSize":
            return r["size"] >= v
        if k == "maxSize":
            return r["size"] < v
        if k == "hasAttachment":
            return r["hasAttachment"] == v
        v = v.lower()
        if k == "hasKeyword":
            return v in r["keywords"]
        if k == "notKeyword":
            return v not in r["keywords"]
        if k == "allInThreadHaveKeyword":
            return all(v in s for s in kws)
        if k == "someInThreadHaveKeyword":
            return any(v in s for s in kws)
        assert k == "noneInThreadHaveKeyword"
        return not any(v in s for s in kws)

    def value(c, r):
        p = c["property"]
        if p in ("receivedAt", "size"):
            return r[p]
        if p == "subject":
            return r["normalized_subject"].casefold()
        if p == "hasKeyword":
            return c["keyword"] in r["keywords"]
        kws = [set(t["keywords"]) for t in threads[r["threadId"]]]
        return (all if p == "allInThreadHaveKeyword" else any)(c["keyword"] in s for s in kws)

    comparators = sorting or [{"property": "receivedAt", "isAscending": False}]

    def cmp(a, b):
        for c in comparators:
            x, y = value(c, a), value(c, b)
            if x != y:
                return (-1 if x < y else 1) * (1 if c.get("isAscending", True) else -1)
        last_asc = comparators[-1].get("isAscending", True)
        return (-1 if a["id"] < b["id"] else 1) * (1 if last_asc else -1)

    out, seen = [], set()
    for r in sorted((r for r in records if flt is None or matches(flt, r)), key=cmp_to_key(cmp)):
        if collapse and r["threadId"] in seen:
            continue
        seen.add(r["threadId"])
        out.append(r["id"])
    return out


def test_against_oracle(mail):
    rng = random.Random(8621)
    roles = ["inbox", "archive", "trash", "junk"]
    words = ["$seen", "$flagged", "$draft", "work"]
    for n in range(60):
        parent = rng.randrange(n) if n and rng.random() < 0.4 else None
        mail.add(n, rng.sample(roles, rng.choice([1, 1, 2])), rng.sample(words, rng.randrange(3)),
                 T0 + rng.randrange(40) * 3600, rng.choice(["a", "B", "c", "Re"]),
                 size=rng.randrange(1, 6) * 100, attachment=rng.random() < 0.3, parent=parent)
    with mail.store.read(mail.acc) as r:
        records = [r.email(i) for i in mail.ids.values()]

    def condition():
        k = rng.choice(["inMailbox", "inMailboxOtherThan", "after", "before", "minSize", "maxSize",
                        "hasKeyword", "notKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword",
                        "noneInThreadHaveKeyword", "hasAttachment"])
        v = {"inMailbox": lambda: mail.box[rng.choice(roles)],
             "inMailboxOtherThan": lambda: [mail.box[b] for b in rng.sample(roles, 2)],
             "after": lambda: iso(T0 + rng.randrange(40) * 3600),
             "before": lambda: iso(T0 + rng.randrange(40) * 3600),
             "minSize": lambda: rng.randrange(7) * 100, "maxSize": lambda: rng.randrange(7) * 100,
             "hasAttachment": lambda: rng.random() < 0.5}.get(k, lambda: rng.choice(words).upper())()
        return {k: v}

    def make_filter(depth=0):
        if depth < 2 and rng.random() < 0.5:
            return {"operator": rng.choice(["AND", "AND", "OR", "NOT"]),
                    "conditions": [make_filter(depth + 1) for _ in range(rng.randrange(1, 4))]}
        cond = condition()
        if rng.random() < 0.3:
            cond.update(condition())
        return cond

    sort_choices = [None, sort("receivedAt"), sort("receivedAt", False), sort("size") + sort("receivedAt"),
                    sort("subject", False), sort("hasKeyword", False, keyword="$flagged"),
                    sort("someInThreadHaveKeyword", keyword="$seen") + sort("size", False),
                    sort("allInThreadHaveKeyword", False, keyword="$seen")]
    for _ in range(250):
        flt = rng.choice([None, make_filter()])
        sorting = rng.choice(sort_choices)
        collapse = rng.random() < 0.3
        args = {"filter": flt, "sort": sorting, "collapseThreads": collapse}
        expected = oracle(records, flt, sorting, collapse)
        res = mail.query(calculateTotal=True, **args)
        assert res["ids"] == expected and res["total"] == len(expected), args
        # windows of the streamed list agree with the full list
        position, limit = rng.randrange(len(expected) + 2), rng.randrange(1, 10)
        page = mail.query(position=position, limit=limit, **args)
        assert page["ids"] == expected[position:position + limit], args
        if expected:
            anchor = rng.choice(expected)
            offset = rng.randrange(-3, 4)
            page = mail.query(anchor=anchor, anchorOffset=offset, limit=limit, **args)
            start = max(0, expected.index(anchor) + offset)
            assert page["ids"] == expected[start:start + limit], args
