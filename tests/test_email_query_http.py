"""RFC 8621 §4.4 Email/query and §4.5 Email/queryChanges, black-box over HTTP: every non-text filter
condition, AND/OR/NOT, every sort property, collapseThreads, the result window (position, anchor,
anchorOffset, limit, calculateTotal), the errors (unsupportedSort, unsupportedFilter; the text
conditions are unsupportedFilter while full-text search is off and must be answered right once it is
on: never a wrong result), and queryChanges replayed on an old result list giving the new one.

Each test builds its own small corpus in mailboxes of its own and filters with inMailbox, so the tests
share one server and account."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.conftest import Jmap, unique

# ----------------------------------------------------------------------------------------- corpus


def new_mailbox(client: Jmap) -> str:
    r = client.ok("Mailbox/set", create={"mb": {"name": unique("mb")}})
    assert r["created"], r
    return r["created"]["mb"]["id"]


def message(subject: str, sender: str, date: str | None, message_id: str, *, pad: int = 0,
            in_reply_to: str | None = None, references: str | None = None, attachment: bool = False) -> bytes:
    head = [f"From: {sender}", "To: Receiver <receiver@example.com>", f"Subject: {subject}",
            f"Message-ID: {message_id}", "MIME-Version: 1.0"]
    if date:
        head.append(f"Date: {date}")
    if in_reply_to:
        head.append(f"In-Reply-To: {in_reply_to}")
    if references:
        head.append(f"References: {references}")
    text = "Body of " + subject + "\r\n" + ("padding line for size\r\n" * pad)
    if not attachment:
        head.append("Content-Type: text/plain; charset=us-ascii")
        return ("\r\n".join(head) + "\r\n\r\n" + text).encode()
    head.append('Content-Type: multipart/mixed; boundary="b"')
    body = (f"--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n"
            "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJSVFT0YK\r\n--b--\r\n")
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


@dataclass
class Corpus:
    client: Jmap
    m: str  # the mailbox holding e1..e5
    o: str  # a second mailbox holding e4 too
    ids: dict[str, str]  # name -> email id
    sizes: dict[str, int]
    threads: dict[str, str]

    def name(self, email_id: str) -> str:
        by_id = {v: k for k, v in self.ids.items()}
        return by_id.get(email_id, email_id)

    def names(self, ids: list[str]) -> list[str]:
        return [self.name(i) for i in ids]

    def query(self, filter: dict | None = None, sort: list | None = None, in_mailbox: bool = True,
              **args) -> dict:
        flt = dict(filter or {})
        if in_mailbox:
            flt = {"operator": "AND", "conditions": [{"inMailbox": self.m}, flt]} if "operator" in flt \
                else {"inMailbox": self.m, **flt}
        if sort is not None:
            args["sort"] = sort
        return self.client.ok("Email/query", filter=flt, **args)

    def q(self, filter: dict | None = None, sort: list | None = None, **args) -> list[str]:
        return self.names(self.query(filter, sort, **args)["ids"])


def build_corpus(client: Jmap) -> Corpus:
    """Five emails in mailbox m (e4 also in o), received on consecutive days:

    | name | subject          | from                  | Date (sentAt)           | keywords          | thread | other          |
    |------|------------------|-----------------------|-------------------------|-------------------|--------|----------------|
    | e1   | Alpha report     | Zed <zed@>            | 2024-01-05 10:00Z       | $seen             | T1     |                |
    | e2   | Re: Alpha report | anna@ (no name)       | 2024-01-06 10:00Z       | $flagged          | T1     |                |
    | e3   | beta news        | Bob <bob@>            | 2024-01-01 10:00Z       | -                 | T3     | attachment     |
    | e4   | Gamma            | Carl <carl@>          | 2024-01-03 23:30-05:00  | $seen $flagged    | T4     | also in o      |
    | e5   | [list] Delta     | Dora <dora@>          | 2024-01-04 02:00Z       | $seen             | T1     |                |

    e4's sentAt is 2024-01-04 04:30Z, after e5's, though its local date is earlier."""
    m, o = new_mailbox(client), new_mailbox(client)
    tag = unique("q")
    root = f"<{tag}-root@example.com>"
    specs = {
        "e1": (message("Alpha report", "Zed <zed@example.com>", "Fri, 05 Jan 2024 10:00:00 +0000", root, pad=5),
               "2024-02-01T10:00:00Z", {"$seen": True}, [m]),
        "e2": (message("Re: Alpha report", "anna@example.com", "Sat, 06 Jan 2024 10:00:00 +0000",
                       f"<{tag}-2@example.com>", pad=40, in_reply_to=root, references=root),
               "2024-02-02T10:00:00Z", {"$flagged": True}, [m]),
        "e3": (message("beta news", "Bob <bob@example.com>", "Mon, 01 Jan 2024 10:00:00 +0000",
                       f"<{tag}-3@example.com>", pad=80, attachment=True),
               "2024-02-03T10:00:00Z", {}, [m]),
        "e4": (message("Gamma", "Carl <carl@example.com>", "Wed, 03 Jan 2024 23:30:00 -0500",
                       f"<{tag}-4@example.com>", pad=12),
               "2024-02-04T10:00:00Z", {"$seen": True, "$flagged": True}, [m, o]),
        "e5": (message("[list] Delta", "Dora <dora@example.com>", "Thu, 04 Jan 2024 02:00:00 +0000",
                       f"<{tag}-5@example.com>", pad=25, references=root),
               "2024-02-05T10:00:00Z", {"$seen": True}, [m]),
    }
    emails = {}
    for name, (raw, received, keywords, boxes) in specs.items():
        blob = client.upload(raw)
        emails[name] = {"blobId": blob["blobId"], "mailboxIds": {b: True for b in boxes}, "keywords": keywords,
                        "receivedAt": received}
    r = client.ok("Email/import", emails=emails)
    assert r["notCreated"] is None and len(r["created"]) == 5, r
    created = r["created"]
    corpus = Corpus(client, m, o, {k: v["id"] for k, v in created.items()},
                    {k: v["size"] for k, v in created.items()}, {k: v["threadId"] for k, v in created.items()})
    # preconditions the thread tests rely on: e1, e2, e5 share a thread, e3 and e4 have their own
    t = corpus.threads
    assert t["e1"] == t["e2"] == t["e5"] and len({t["e1"], t["e3"], t["e4"]}) == 3, t
    assert len(set(corpus.sizes.values())) == 5, corpus.sizes
    return corpus


@pytest.fixture
def corpus(alice) -> Corpus:
    return build_corpus(alice)


def method_error(client: Jmap, method: str, **args) -> dict:
    name, result = client.call(method, args)
    assert name == "error", (name, result)
    return result


NEWEST_FIRST = ["e5", "e4", "e3", "e2", "e1"]


# ---------------------------------------------------------------- filters (§4.4.1)
def test_in_mailbox_lists_its_emails_newest_first(corpus):
    r = corpus.query(calculateTotal=True)
    assert corpus.names(r["ids"]) == NEWEST_FIRST
    assert r["total"] == 5 and r["position"] == 0
    assert r["canCalculateChanges"] is True and isinstance(r["queryState"], str)
    assert corpus.q({"inMailbox": corpus.o}, in_mailbox=False) == ["e4"]


def test_in_mailbox_other_than(corpus):
    m, o = corpus.m, corpus.o
    assert corpus.q({"inMailboxOtherThan": [m]}) == ["e4"]  # only e4 is also elsewhere
    assert corpus.q({"inMailboxOtherThan": [o]}) == NEWEST_FIRST
    assert corpus.q({"inMailboxOtherThan": [m, o]}) == []
    assert corpus.q({"inMailboxOtherThan": []}) == NEWEST_FIRST
    assert corpus.q({"inMailbox": o, "inMailboxOtherThan": [o]}, in_mailbox=False) == ["e4"]


def test_unknown_mailbox_matches_nothing(corpus):
    assert corpus.q({"inMailbox": "no-such-mailbox"}, in_mailbox=False) == []


def test_before_is_strict_and_after_is_inclusive(corpus):
    assert corpus.q({"after": "2024-02-02T10:00:00Z"}) == ["e5", "e4", "e3", "e2"]
    assert corpus.q({"before": "2024-02-04T10:00:00Z"}) == ["e3", "e2", "e1"]
    assert corpus.q({"after": "2024-02-02T10:00:00Z", "before": "2024-02-04T10:00:00Z"}) == ["e3", "e2"]
    assert corpus.q({"after": "2024-02-02T10:00:00.500Z"}) == ["e5", "e4", "e3"]
    assert corpus.q({"before": "2024-02-02T10:00:00.500Z"}) == ["e2", "e1"]
    assert corpus.q({"after": "2030-01-01T00:00:00Z"}) == []


def test_min_size_is_inclusive_and_max_size_is_strict(corpus):
    s = corpus.sizes
    by_size = sorted(s, key=s.get)
    middle = s[by_size[2]]
    assert set(corpus.q({"minSize": middle})) == set(by_size[2:])
    assert set(corpus.q({"maxSize": middle})) == set(by_size[:2])
    assert corpus.q({"minSize": middle, "maxSize": middle + 1}) == [by_size[2]]
    assert corpus.q({"minSize": 0}) == NEWEST_FIRST


def test_has_keyword_and_not_keyword(corpus):
    assert corpus.q({"hasKeyword": "$flagged"}) == ["e4", "e2"]
    assert corpus.q({"notKeyword": "$seen"}) == ["e3", "e2"]
    assert corpus.q({"hasKeyword": "$seen", "notKeyword": "$flagged"}) == ["e5", "e1"]
    # keywords are case-insensitive (§4.1.1)
    assert corpus.q({"hasKeyword": "$FLAGGED"}) == ["e4", "e2"]
    assert corpus.q({"hasKeyword": "never-set"}) == []


def test_mailbox_and_keyword_pages_read_from_the_indexes_equal_those_found_by_matching(corpus):
    """{inMailbox} and {inMailbox, hasKeyword} sorted by receivedAt are answered from date indexes
    and stored counts; a condition that needs the records (minSize: 0, true of every email) makes
    the same query go the long way, and both must agree on every window and direction."""
    for keyword in (None, "$seen", "$flagged", "$FLAGGED", "never-set"):
        fast = {"hasKeyword": keyword} if keyword else {}
        slow = {**fast, "minSize": 0}
        for ascending in (False, True):
            sort = [{"property": "receivedAt", "isAscending": ascending}]
            for position, limit in ((0, 50), (1, 2), (2, 1), (4, 10), (9, 3)):
                args = dict(sort=sort, position=position, limit=limit, calculateTotal=True)
                a, b = corpus.query(fast, **args), corpus.query(slow, **args)
                assert (a["ids"], a["total"], a["position"]) == (b["ids"], b["total"], b["position"]), \
                    (keyword, ascending, position)


def test_thread_keyword_conditions(corpus):
    # T1 = e1 ($seen), e2 ($flagged), e5 ($seen); T3 = e3 (none); T4 = e4 ($seen $flagged)
    assert corpus.q({"allInThreadHaveKeyword": "$seen"}) == ["e4"]
    assert corpus.q({"someInThreadHaveKeyword": "$flagged"}) == ["e5", "e4", "e2", "e1"]
    assert corpus.q({"noneInThreadHaveKeyword": "$flagged"}) == ["e3"]
    assert corpus.q({"noneInThreadHaveKeyword": "$seen"}) == ["e3"]
    assert corpus.q({"someInThreadHaveKeyword": "$seen"}) == ["e5", "e4", "e2", "e1"]


def test_thread_keyword_conditions_follow_keyword_changes(corpus):
    corpus.client.ok("Email/set", update={corpus.ids["e2"]: {"keywords/$seen": True}})
    assert corpus.q({"allInThreadHaveKeyword": "$seen"}) == ["e5", "e4", "e2", "e1"]
    corpus.client.ok("Email/set", update={corpus.ids["e4"]: {"keywords/$flagged": None},
                                          corpus.ids["e2"]: {"keywords/$flagged": None}})
    assert corpus.q({"noneInThreadHaveKeyword": "$flagged"}) == NEWEST_FIRST
    # a reply in another mailbox still belongs to the thread
    root = corpus.client.ok("Email/get", ids=[corpus.ids["e4"]], properties=["messageId"])["list"][0]
    raw = message("Re: Gamma", "Gus <gus@example.com>", None, f"<{unique('g')}@example.com>",
                  in_reply_to=f"<{root['messageId'][0]}>")
    corpus.client.import_message(raw, mailbox=new_mailbox(corpus.client), keywords={"$flagged": True})
    assert corpus.q({"allInThreadHaveKeyword": "$seen"}) == ["e5", "e2", "e1"]
    assert corpus.q({"someInThreadHaveKeyword": "$flagged"}) == ["e4"]


def test_has_attachment(corpus):
    assert corpus.q({"hasAttachment": True}) == ["e3"]
    assert corpus.q({"hasAttachment": False}) == ["e5", "e4", "e2", "e1"]


def test_and_or_not_operators(corpus):
    flagged, attachment, seen = {"hasKeyword": "$flagged"}, {"hasAttachment": True}, {"hasKeyword": "$seen"}
    assert corpus.q({"operator": "OR", "conditions": [flagged, attachment]}) == ["e4", "e3", "e2"]
    assert corpus.q({"operator": "AND", "conditions": [flagged, seen]}) == ["e4"]
    assert corpus.q({"operator": "NOT", "conditions": [seen]}) == ["e3", "e2"]
    # NOT is "none of": NOT(a, b) = NOT(a OR b)
    assert corpus.q({"operator": "NOT", "conditions": [flagged, attachment]}) == ["e5", "e1"]
    assert corpus.q({"operator": "OR", "conditions": [
        {"operator": "AND", "conditions": [seen, {"operator": "NOT", "conditions": [flagged]}]},
        attachment]}) == ["e5", "e3", "e1"]
    assert corpus.q({"operator": "OR", "conditions": []}) == []
    assert corpus.q({"operator": "AND", "conditions": []}) == NEWEST_FIRST
    # an empty FilterCondition is always true
    assert corpus.q({}) == NEWEST_FIRST


def test_filter_on_a_mailbox_inside_or(corpus):
    flt = {"operator": "OR", "conditions": [{"inMailbox": corpus.o}, {"hasAttachment": True}]}
    assert corpus.q(flt) == ["e4", "e3"]
    assert corpus.q({"operator": "OR", "conditions": [{"inMailbox": corpus.o}, {"inMailbox": corpus.m}]},
                    in_mailbox=False) == NEWEST_FIRST


# ---------------------------------------------------------------- sorting (§4.4.2)
def test_sort_by_received_at(corpus):
    assert corpus.q(sort=[{"property": "receivedAt", "isAscending": True}]) == ["e1", "e2", "e3", "e4", "e5"]
    assert corpus.q(sort=[{"property": "receivedAt", "isAscending": False}]) == NEWEST_FIRST
    # isAscending defaults to true
    assert corpus.q(sort=[{"property": "receivedAt"}]) == ["e1", "e2", "e3", "e4", "e5"]


def test_sort_by_size(corpus):
    by_size = sorted(corpus.sizes, key=corpus.sizes.get)
    assert corpus.q(sort=[{"property": "size"}]) == by_size
    assert corpus.q(sort=[{"property": "size", "isAscending": False}]) == by_size[::-1]


def test_sort_by_base_subject(corpus):
    """RFC 5256 base subject: "Re:" and "[list]" prefixes are not part of it; ties broken by the next
    comparator."""
    sort = [{"property": "subject"}, {"property": "receivedAt", "isAscending": True}]
    assert corpus.q(sort=sort) == ["e1", "e2", "e3", "e5", "e4"]
    sort = [{"property": "subject", "isAscending": False}, {"property": "receivedAt", "isAscending": False}]
    assert corpus.q(sort=sort) == ["e4", "e5", "e3", "e2", "e1"]


def test_sort_by_subject_follows_rfc_5256_base_subject_edge_cases(alice):
    """RFC 5256 §2.1: a leading [blob] is removed only if that leaves a non-empty subject (step 4), and a
    "[fwd: ...]" wrapper is unwrapped (step 6). So "[Zulu]" has the base subject "[zulu]" (sorting before
    letters) and "[Fwd: Beta]" the base subject "beta"."""
    mb = new_mailbox(alice)
    subjects = {"fwd": "[Fwd: Beta]", "zulu": "[Zulu]", "alpha": "Alpha", "gamma": "Gamma", "re": "Re: Delta"}
    ids = {}
    for day, (name, subject) in enumerate(subjects.items(), 1):
        raw = message(subject, "S <s@example.com>", None, f"<{unique('s')}@example.com>")
        ids[alice.import_message(raw, mailbox=mb, received_at=f"2024-03-0{day}T00:00:00Z")["id"]] = name
    r = alice.ok("Email/query", filter={"inMailbox": mb},
                 sort=[{"property": "subject"}, {"property": "receivedAt", "isAscending": True}])
    assert [ids[i] for i in r["ids"]] == ["zulu", "alpha", "fwd", "re", "gamma"]


def test_sort_by_from_name_or_email(corpus):
    """§4.4.2: the first From address' name, else its email; the default collation is case-insensitive."""
    assert corpus.q(sort=[{"property": "from"}]) == ["e2", "e3", "e4", "e5", "e1"]
    assert corpus.q(sort=[{"property": "from", "isAscending": False}]) == ["e1", "e5", "e4", "e3", "e2"]
    assert corpus.q(sort=[{"property": "from", "collation": "i;ascii-casemap"}]) == ["e2", "e3", "e4", "e5", "e1"]


def test_sort_by_sent_at_compares_instants(corpus):
    assert corpus.q(sort=[{"property": "sentAt"}]) == ["e3", "e5", "e4", "e1", "e2"]
    assert corpus.q(sort=[{"property": "sentAt", "isAscending": False}]) == ["e2", "e1", "e4", "e5", "e3"]


def test_sort_by_keywords(corpus):
    sort = [{"property": "hasKeyword", "keyword": "$flagged", "isAscending": False},
            {"property": "receivedAt", "isAscending": False}]
    assert corpus.q(sort=sort) == ["e4", "e2", "e5", "e3", "e1"]
    sort = [{"property": "someInThreadHaveKeyword", "keyword": "$flagged", "isAscending": False},
            {"property": "receivedAt", "isAscending": True}]
    assert corpus.q(sort=sort) == ["e1", "e2", "e4", "e5", "e3"]
    sort = [{"property": "allInThreadHaveKeyword", "keyword": "$seen", "isAscending": False},
            {"property": "receivedAt", "isAscending": True}]
    assert corpus.q(sort=sort) == ["e4", "e1", "e2", "e3", "e5"]


def test_sort_with_several_comparators(corpus):
    sort = [{"property": "hasKeyword", "keyword": "$seen", "isAscending": True},
            {"property": "size", "isAscending": False}]
    unseen = sorted(["e2", "e3"], key=corpus.sizes.get, reverse=True)
    seen = sorted(["e1", "e4", "e5"], key=corpus.sizes.get, reverse=True)
    assert corpus.q(sort=sort) == unseen + seen


@pytest.mark.parametrize("sort", [[{"property": "bogus"}], [{"property": "subject", "collation": "i;nonexistent"}],
                                  [{"property": "receivedAt"}, {"property": "id"}]])
def test_unsupported_sort(corpus, sort):
    err = method_error(corpus.client, "Email/query", filter={"inMailbox": corpus.m}, sort=sort)
    assert err["type"] == "unsupportedSort", err


def test_keyword_sort_without_keyword_is_an_error(corpus):
    err = method_error(corpus.client, "Email/query", filter={"inMailbox": corpus.m},
                       sort=[{"property": "hasKeyword"}])
    assert err["type"] in ("invalidArguments", "unsupportedSort"), err


# ---------------------------------------------------------------- collapseThreads (§4.4.3)
def test_collapse_threads_keeps_the_first_email_of_each_thread(corpus):
    r = corpus.query(collapseThreads=True, calculateTotal=True)
    assert corpus.names(r["ids"]) == ["e5", "e4", "e3"]
    assert r["total"] == 3
    asc = [{"property": "receivedAt", "isAscending": True}]
    assert corpus.q(sort=asc, collapseThreads=True) == ["e1", "e3", "e4"]
    # filtering happens before collapsing
    assert corpus.q({"notKeyword": "$seen"}, collapseThreads=True) == ["e3", "e2"]
    assert corpus.q(sort=[{"property": "size", "isAscending": False}], collapseThreads=True) == \
        [n for n in sorted(corpus.sizes, key=corpus.sizes.get, reverse=True)
         if n in ("e3", "e4") or n == max(("e1", "e2", "e5"), key=corpus.sizes.get)]


# ---------------------------------------------------------------- the result window (RFC 8620 §5.5)
def test_position_and_limit(corpus):
    r = corpus.query(position=1, limit=2, calculateTotal=True)
    assert corpus.names(r["ids"]) == ["e4", "e3"] and r["position"] == 1 and r["total"] == 5
    r = corpus.query(position=4, limit=10)
    assert corpus.names(r["ids"]) == ["e1"] and r["position"] == 4
    assert corpus.query(position=5)["ids"] == []
    assert corpus.query(position=50)["ids"] == []
    assert corpus.query(limit=0)["ids"] == []
    assert "total" not in corpus.query()


def test_negative_position_counts_from_the_end(corpus):
    r = corpus.query(position=-2)
    assert corpus.names(r["ids"]) == ["e2", "e1"] and r["position"] == 3
    r = corpus.query(position=-50, limit=1)
    assert corpus.names(r["ids"]) == ["e5"] and r["position"] == 0
    r = corpus.query({"hasKeyword": "$seen"}, position=-1, sort=[{"property": "size"}])
    assert corpus.names(r["ids"]) == [max(("e1", "e4", "e5"), key=corpus.sizes.get)] and r["position"] == 2


def test_anchor_and_anchor_offset(corpus):
    e3 = corpus.ids["e3"]
    r = corpus.query(anchor=e3, anchorOffset=-1, limit=2)
    assert corpus.names(r["ids"]) == ["e4", "e3"] and r["position"] == 1
    r = corpus.query(anchor=e3)
    assert corpus.names(r["ids"]) == ["e3", "e2", "e1"] and r["position"] == 2
    r = corpus.query(anchor=e3, anchorOffset=-10, limit=1)  # clamped to 0
    assert corpus.names(r["ids"]) == ["e5"] and r["position"] == 0
    r = corpus.query(anchor=e3, anchorOffset=1, sort=[{"property": "size"}])
    by_size = sorted(corpus.sizes, key=corpus.sizes.get)
    assert corpus.names(r["ids"]) == by_size[by_size.index("e3") + 1:]


def test_anchor_not_in_the_results_is_anchor_not_found(corpus):
    err = method_error(corpus.client, "Email/query", filter={"inMailbox": corpus.m, "hasAttachment": False},
                       anchor=corpus.ids["e3"])
    assert err["type"] == "anchorNotFound", err


@pytest.mark.parametrize("args", [{"limit": -1}, {"position": "1"}, {"calculateTotal": "yes"},
                                  {"anchorOffset": 1.5}, {"collapseThreads": 1},
                                  {"filter": {"inMailbox": 5}}, {"filter": {"before": "yesterday"}},
                                  {"filter": {"minSize": -1}}, {"filter": {"hasAttachment": "yes"}},
                                  {"filter": {"hasKeyword": "bad keyword"}}, {"filter": {"inMailboxOtherThan": "x"}},
                                  {"filter": []}, {"sort": {"property": "size"}}, {"bogusArgument": 1}])
def test_badly_typed_arguments_are_invalid_arguments(alice, args):
    err = method_error(alice, "Email/query", **args)
    assert err["type"] == "invalidArguments", err


# ---------------------------------------------------------------- text conditions: an error or the truth
# Until full-text search is enabled the text conditions must be refused with unsupportedFilter; once a
# server answers them, the answer must be right. Either way never a wrong result.
TEXT_CASES = [
    ({"text": "alpha"}, ["e2", "e1"]), ({"text": "ALPHA"}, ["e2", "e1"]), ({"from": "zed"}, ["e1"]),
    ({"to": "receiver"}, NEWEST_FIRST), ({"cc": "receiver"}, []), ({"bcc": "receiver"}, []),
    ({"subject": "Alpha"}, ["e2", "e1"]), ({"body": "padding"}, NEWEST_FIRST), ({"body": "zed"}, []),
    ({"header": ["Subject"]}, NEWEST_FIRST), ({"header": ["X-Not-There"]}, []),
    ({"header": ["Subject", "Alpha"]}, ["e2", "e1"]),
]


@pytest.mark.parametrize("condition, expected", TEXT_CASES, ids=[json.dumps(c) for c, _ in TEXT_CASES])
def test_text_conditions_are_unsupported_filter_or_answered_right(corpus, condition, expected):
    seen = {"e1", "e4", "e5"}
    for flt, want in ((condition, expected),
                      ({"operator": "NOT", "conditions": [condition]}, [n for n in NEWEST_FIRST if n not in expected]),
                      ({"operator": "OR", "conditions": [{"hasKeyword": "$seen"}, condition]},
                       [n for n in NEWEST_FIRST if n in expected or n in seen])):
        name, r = corpus.client.call("Email/query", filter={"operator": "AND", "conditions": [
            {"inMailbox": corpus.m}, flt]})
        if name == "error":
            assert r["type"] == "unsupportedFilter", (flt, r)
        else:
            assert corpus.names(r["ids"]) == want, flt


def test_unknown_filter_condition_is_unsupported_filter(corpus):
    err = method_error(corpus.client, "Email/query", filter={"inMailbox": corpus.m, "isImportant": True})
    assert err["type"] == "unsupportedFilter", err


# ---------------------------------------------------------------- Email/queryChanges (§4.5)
def apply_changes(old: list[str], removed: list[str], added: list[dict]) -> list[str]:
    """RFC 8620 §5.6: splice out every removed id, then splice in the added ones by increasing index."""
    gone = set(removed)
    out = [i for i in old if i not in gone]
    for item in sorted(added, key=lambda a: a["index"]):
        out.insert(item["index"], item["id"])
    return out


def query_changes(corpus: Corpus, old: dict, filter: dict, sort: list | None = None, **args) -> dict:
    args = {"filter": filter, "sinceQueryState": old["queryState"], **args}
    if sort is not None:
        args["sort"] = sort
    return corpus.client.ok("Email/queryChanges", **args)


def check_replay(corpus: Corpus, filter: dict, sort: list | None, old: dict, **extra) -> list[str]:
    new = corpus.client.ok("Email/query", filter=filter, **({"sort": sort} if sort else {}), **extra)
    r = query_changes(corpus, old, filter, sort, **extra)
    assert r["oldQueryState"] == old["queryState"]
    assert r["newQueryState"] == new["queryState"]
    replayed = apply_changes(old["ids"], r["removed"], r["added"])
    assert corpus.names(replayed) == corpus.names(new["ids"]), (r, corpus.names(old["ids"]))
    return corpus.names(new["ids"])


def test_query_changes_after_a_keyword_change_gives_the_new_list(corpus):
    c, ids = corpus.client, corpus.ids
    flt = {"inMailbox": corpus.m, "notKeyword": "$seen"}
    sort = [{"property": "receivedAt", "isAscending": False}]
    old = c.ok("Email/query", filter=flt, sort=sort)
    assert corpus.names(old["ids"]) == ["e3", "e2"]
    c.ok("Email/set", update={ids["e2"]: {"keywords/$seen": True}, ids["e1"]: {"keywords/$seen": None}})
    assert check_replay(corpus, flt, sort, old) == ["e3", "e1"]


def test_query_changes_after_import_and_destroy(corpus):
    c = corpus.client
    flt = {"inMailbox": corpus.m}
    old = c.ok("Email/query", filter=flt)
    raw = message("Late arrival", "Eve <eve@example.com>", "Sat, 03 Feb 2024 12:00:00 +0000",
                  f"<{unique('late')}@example.com>")
    blob = c.upload(raw)
    r = c.ok("Email/import", emails={"e6": {"blobId": blob["blobId"], "mailboxIds": {corpus.m: True},
                                            "receivedAt": "2024-02-03T12:00:00Z"}})
    corpus.ids["e6"] = r["created"]["e6"]["id"]
    c.ok("Email/set", destroy=[corpus.ids["e1"]])
    assert check_replay(corpus, flt, None, old) == ["e5", "e4", "e6", "e3", "e2"]
    r = query_changes(corpus, old, flt, calculateTotal=True)
    assert r["total"] == 5
    assert corpus.ids["e1"] in r["removed"]


def test_query_changes_for_a_sort_on_a_mutable_property(corpus):
    c, ids = corpus.client, corpus.ids
    flt = {"inMailbox": corpus.m}
    sort = [{"property": "hasKeyword", "keyword": "$flagged", "isAscending": False},
            {"property": "receivedAt", "isAscending": False}]
    old = c.ok("Email/query", filter=flt, sort=sort)
    c.ok("Email/set", update={ids["e1"]: {"keywords/$flagged": True}, ids["e4"]: {"keywords/$flagged": None}})
    assert check_replay(corpus, flt, sort, old) == ["e2", "e1", "e5", "e4", "e3"]


def test_query_changes_with_collapsed_threads(corpus):
    c, ids = corpus.client, corpus.ids
    flt = {"inMailbox": corpus.m}
    old = c.ok("Email/query", filter=flt, collapseThreads=True)
    assert corpus.names(old["ids"]) == ["e5", "e4", "e3"]
    c.ok("Email/set", destroy=[ids["e5"]])  # e2 now represents the thread
    assert check_replay(corpus, flt, None, old, collapseThreads=True) == ["e4", "e3", "e2"]
    # a new reply in e3's thread becomes that thread's first email
    old = c.ok("Email/query", filter=flt, collapseThreads=True)
    root = c.ok("Email/get", ids=[ids["e3"]], properties=["messageId"])["list"][0]["messageId"][0]
    raw = message("Re: beta news", "Fay <fay@example.com>", None, f"<{unique('r')}@example.com>",
                  in_reply_to=f"<{root}>")
    corpus.ids["e6"] = c.import_message(raw, mailbox=corpus.m, received_at="2024-02-06T10:00:00Z")["id"]
    assert check_replay(corpus, flt, None, old, collapseThreads=True) == ["e6", "e4", "e2"]


def test_query_changes_with_a_thread_keyword_filter(corpus):
    c, ids = corpus.client, corpus.ids
    flt = {"inMailbox": corpus.m, "allInThreadHaveKeyword": "$seen"}
    old = c.ok("Email/query", filter=flt)
    assert corpus.names(old["ids"]) == ["e4"]
    c.ok("Email/set", update={ids["e2"]: {"keywords/$seen": True}})  # e1 and e5 now match too
    assert check_replay(corpus, flt, None, old) == ["e5", "e4", "e2", "e1"]


def test_query_changes_without_changes_is_empty(corpus):
    flt = {"inMailbox": corpus.m}
    old = corpus.client.ok("Email/query", filter=flt)
    r = query_changes(corpus, old, flt)
    assert r["removed"] == [] and r["added"] == []
    assert r["newQueryState"] == old["queryState"]


def test_query_changes_with_too_small_max_changes_is_too_many_changes(corpus):
    c, ids = corpus.client, corpus.ids
    flt = {"inMailbox": corpus.m}
    old = c.ok("Email/query", filter=flt)
    c.ok("Email/set", destroy=[ids["e1"], ids["e2"]])
    err = method_error(c, "Email/queryChanges", filter=flt, sinceQueryState=old["queryState"], maxChanges=1)
    assert err["type"] == "tooManyChanges", err


def test_query_changes_from_an_unknown_state_is_cannot_calculate_changes(corpus):
    err = method_error(corpus.client, "Email/queryChanges", filter={"inMailbox": corpus.m},
                       sinceQueryState="bogus-state")
    assert err["type"] == "cannotCalculateChanges", err


def test_query_changes_with_a_text_filter_is_unsupported_filter_or_right(corpus):
    flt = {"inMailbox": corpus.m, "text": "alpha"}
    name, old = corpus.client.call("Email/query", filter=flt)
    if name == "error":
        assert old["type"] == "unsupportedFilter", old
        current = corpus.client.ok("Email/query", filter={"inMailbox": corpus.m})
        err = method_error(corpus.client, "Email/queryChanges", filter=flt, sinceQueryState=current["queryState"])
        assert err["type"] == "unsupportedFilter", err
        return
    assert corpus.names(old["ids"]) == ["e2", "e1"]
    corpus.client.ok("Email/set", destroy=[corpus.ids["e1"]])
    assert check_replay(corpus, flt, None, old) == ["e2"]
