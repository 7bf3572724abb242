"""jmapc 0.4 driven the way its own examples and README use it (examples/recent_threads.py,
mailbox.py, create_send_email.py, event_source.py, debug_log.py, identity_get.py, search.py), plus the
paging, sorting and result-reference patterns those examples are built from. Every test checks the
values tidings answers (ids, order, subjects), not only that no error came back."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from jmapc import (
    Address,
    Client,
    ClientError,
    Comparator,
    Email,
    EmailAddress,
    EmailBodyPart,
    EmailBodyValue,
    EmailQueryFilterCondition,
    EmailQueryFilterOperator,
    EmailSubmission,
    EmailSubmissionQueryFilterCondition,
    Envelope,
    Mailbox,
    MailboxQueryFilterCondition,
    Operator,
    Ref,
    ResultReference,
)
from jmapc.errors import Error
from jmapc.logging import log as jmapc_log
from jmapc.methods import (
    CoreEcho,
    CoreEchoResponse,
    EmailChanges,
    EmailChangesResponse,
    EmailGet,
    EmailGetResponse,
    EmailQuery,
    EmailQueryChanges,
    EmailQueryChangesResponse,
    EmailQueryResponse,
    EmailSet,
    EmailSetResponse,
    EmailSubmissionChanges,
    EmailSubmissionChangesResponse,
    EmailSubmissionGet,
    EmailSubmissionGetResponse,
    EmailSubmissionQuery,
    EmailSubmissionQueryChanges,
    EmailSubmissionQueryChangesResponse,
    EmailSubmissionQueryResponse,
    EmailSubmissionSet,
    EmailSubmissionSetResponse,
    IdentityChanges,
    IdentityChangesResponse,
    IdentityGet,
    IdentityGetResponse,
    IdentitySet,
    IdentitySetResponse,
    Invocation,
    MailboxChanges,
    MailboxChangesResponse,
    MailboxGet,
    MailboxGetResponse,
    MailboxQuery,
    MailboxQueryChanges,
    MailboxQueryChangesResponse,
    MailboxQueryResponse,
    MailboxSet,
    MailboxSetResponse,
    SearchSnippetGet,
    SearchSnippetGetResponse,
    ThreadChanges,
    ThreadChangesResponse,
    ThreadGet,
    ThreadGetResponse,
)

from tests.compat.jmapc_support import (
    EMAIL,
    USER,
    api,
    hours_ago,
    import_over_http,
    mailbox_with_role,
    message,
    new_mailbox,
)
from tests.conftest import unique


def msgid(prefix: str = "m") -> str:
    return f"<{unique(prefix)}@example.net>"


def fill(client: Client, http, mailbox_id: str, ages_in_hours: list[float], prefix: str = "msg ") -> list[dict]:
    """One message per age into mailbox_id, each its own thread; returns the imports in the given order
    with their subjects."""
    out = []
    for age in ages_in_hours:
        subject = unique(prefix)
        created = import_over_http(http, client.account_id, message(subject, msgid()), mailbox_id,
                                   received_at=hours_ago(age))
        out.append({**created, "subject": subject})
    return out


# ------------------------------------------------------------------ r04: sorted queries, recent_threads
def test_comparator_in_jmapc_shape_sorts_the_query(client, http):
    """Case r04 on the wire: jmapc 0.4 serialises every Comparator with anchorOffset, calculateTotal and
    position (fields of its dataclass); RFC 8620 §5.5 lets a Comparator carry more properties."""
    box, _ = new_mailbox(client)
    old, new = fill(client, http, box, [5, 1])
    sort = [{"property": "receivedAt", "isAscending": False, "anchorOffset": 0, "calculateTotal": False,
             "position": 0}]
    [(name, result, _)] = api(http, [["Email/query", {"accountId": client.account_id,
                                                      "filter": {"inMailbox": box}, "sort": sort}, "q"]])
    assert name == "Email/query", result
    assert result["ids"] == [new["id"], old["id"]]

    res = client.request(EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=box),
                                    sort=[Comparator(property="receivedAt", is_ascending=True)]))
    assert isinstance(res, EmailQueryResponse), res
    assert res.ids == [old["id"], new["id"]]


def test_recent_threads_example_end_to_end(client, http):
    """examples/recent_threads.py: find the mailbox by name (Mailbox/query + Mailbox/get by Ref), then
    Email/query collapsed by thread, received in the last 7 days, newest first, limit 5 -> Email/get of
    threadId by Ref("/ids") -> Thread/get by Ref("/list/*/threadId")."""
    box, name = new_mailbox(client, "recent ")
    parent_id = msgid("p")
    parent = import_over_http(http, client.account_id, message(unique("parent "), parent_id), box,
                              received_at=hours_ago(5))
    single = import_over_http(http, client.account_id, message(unique("single "), msgid()), box,
                              received_at=hours_ago(3))
    other = import_over_http(http, client.account_id, message(unique("other "), msgid()), box,
                             received_at=hours_ago(2))
    reply = import_over_http(http, client.account_id, message(unique("re "), msgid("r"), in_reply_to=parent_id),
                             box, received_at=hours_ago(1))
    import_over_http(http, client.account_id, message(unique("old "), msgid()), box,
                     received_at=hours_ago(24 * 10))  # outside the 7 days

    results = client.request([MailboxQuery(filter=MailboxQueryFilterCondition(name=name)),
                              MailboxGet(ids=Ref("/ids"))])
    assert isinstance(results[1].response, MailboxGetResponse), results[1]
    [found] = results[1].response.data
    assert (found.id, found.name, found.total_emails) == (box, name, 5)

    results = client.request([
        EmailQuery(collapse_threads=True,
                   filter=EmailQueryFilterCondition(in_mailbox=found.id,
                                                    after=datetime.now(tz=UTC) - timedelta(days=7)),
                   sort=[Comparator(property="receivedAt", is_ascending=False)],
                   limit=5),
        EmailGet(ids=Ref("/ids"), properties=["threadId"]),
        ThreadGet(ids=Ref("/list/*/threadId")),
    ])
    query, emails, threads = (r.response for r in results)
    assert isinstance(query, EmailQueryResponse), query
    assert query.ids == [reply["id"], other["id"], single["id"]]
    assert isinstance(emails, EmailGetResponse), emails
    assert [e.thread_id for e in emails.data] == [reply["threadId"], other["threadId"], single["threadId"]]
    assert isinstance(threads, ThreadGetResponse), threads
    assert [(t.id, t.email_ids) for t in threads.data] == [
        (parent["threadId"], [parent["id"], reply["id"]]),
        (other["threadId"], [other["id"]]),
        (single["threadId"], [single["id"]]),
    ]


def test_sort_by_several_comparators_with_collation(client, http):
    box, _ = new_mailbox(client)
    a_old = import_over_http(http, client.account_id, message("alpha", msgid()), box, received_at=hours_ago(4))
    b = import_over_http(http, client.account_id, message("Bravo", msgid()), box, received_at=hours_ago(3))
    a_new = import_over_http(http, client.account_id, message("Alpha", msgid()), box, received_at=hours_ago(2))
    res = client.request(EmailQuery(
        filter=EmailQueryFilterCondition(in_mailbox=box),
        sort=[Comparator(property="subject", collation="i;unicode-casemap"),
              Comparator(property="receivedAt", is_ascending=False)]))
    assert isinstance(res, EmailQueryResponse), res
    assert res.ids == [a_new["id"], a_old["id"], b["id"]]


def test_unknown_sort_property_is_unsupported_sort(client):
    res = client.request(EmailQuery(sort=[Comparator(property="nosuchproperty")]))
    assert isinstance(res, Error) and res.type == "unsupportedSort", res


# ------------------------------------------------------------------ paging: position, anchor, limit
def test_paging_by_position_limit_and_total(client, http):
    box, _ = new_mailbox(client)
    ids = [m["id"] for m in fill(client, http, box, [5, 4, 3, 2, 1])]  # oldest first
    ascending = [Comparator(property="receivedAt")]
    in_box = EmailQueryFilterCondition(in_mailbox=box)

    res = client.request(EmailQuery(filter=in_box, sort=ascending, position=1, limit=2, calculate_total=True))
    assert isinstance(res, EmailQueryResponse), res
    assert (res.ids, res.position, res.total) == (ids[1:3], 1, 5)

    res = client.request(EmailQuery(filter=in_box, sort=ascending, position=-2))
    assert (res.ids, res.position) == (ids[3:], 3)

    res = client.request(EmailQuery(filter=in_box, sort=ascending, position=9, limit=2))
    assert (res.ids, res.position) == ([], 5)

    # a client walking the pages until a short one
    pages, position = [], 0
    while True:
        page = client.request(EmailQuery(filter=in_box, sort=ascending, position=position, limit=2))
        assert isinstance(page, EmailQueryResponse), page
        pages.append(page.ids)
        if len(page.ids) < 2:
            break
        position += len(page.ids)
    assert pages == [ids[0:2], ids[2:4], ids[4:]]


def test_paging_by_anchor_and_anchor_offset(client, http):
    box, _ = new_mailbox(client)
    ids = [m["id"] for m in fill(client, http, box, [5, 4, 3, 2, 1])]
    ascending = [Comparator(property="receivedAt")]
    in_box = EmailQueryFilterCondition(in_mailbox=box)

    res = client.request(EmailQuery(filter=in_box, sort=ascending, anchor=ids[2], anchor_offset=-1, limit=2))
    assert isinstance(res, EmailQueryResponse), res
    assert (res.ids, res.position) == (ids[1:3], 1)

    # position is ignored when an anchor is given (RFC 8620 §5.5)
    res = client.request(EmailQuery(filter=in_box, sort=ascending, anchor=ids[3], position=0, limit=5))
    assert (res.ids, res.position) == (ids[3:], 3)

    res = client.request(EmailQuery(filter=in_box, sort=ascending, anchor=ids[0], anchor_offset=-3))
    assert (res.ids, res.position) == (ids, 0)  # clamped to 0

    res = client.request(EmailQuery(filter=in_box, sort=ascending, anchor="Mnosuchemail"))
    assert isinstance(res, Error) and res.type == "anchorNotFound", res


def test_filter_operator_combines_conditions(client, http):
    box, _ = new_mailbox(client)
    flagged, plain, seen = fill(client, http, box, [3, 2, 1])
    api(http, [["Email/set", {"accountId": client.account_id, "update": {
        flagged["id"]: {"keywords/$flagged": True}, seen["id"]: {"keywords/$seen": True}}}, "s"]])
    res = client.request(EmailQuery(
        filter=EmailQueryFilterOperator(operator=Operator.AND, conditions=[
            EmailQueryFilterCondition(in_mailbox=box),
            EmailQueryFilterOperator(operator=Operator.NOT, conditions=[
                EmailQueryFilterCondition(has_keyword="$seen")])]),
        sort=[Comparator(property="receivedAt", is_ascending=False)]))
    assert isinstance(res, EmailQueryResponse), res
    assert res.ids == [plain["id"], flagged["id"]]


# ------------------------------------------------------------------ result references
def test_result_references_by_previous_call_index_call_id_and_explicit_reference(client, http):
    box, _ = new_mailbox(client)
    first, second = fill(client, http, box, [2, 1], prefix="ref ")
    query = EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=box),
                       sort=[Comparator(property="receivedAt", is_ascending=False)])
    expected = [second["subject"], first["subject"]]

    # Ref("/ids") points at the call just before; Ref(path, method=0) at the first call
    results = client.request([query, EmailGet(ids=Ref("/ids"), properties=["subject"]),
                              EmailGet(ids=Ref("/ids", method=0), properties=["subject"])])
    assert [e.subject for e in results[1].response.data] == expected
    assert [e.subject for e in results[2].response.data] == expected

    # named calls: Ref by call id, and the explicit ResultReference of the older examples
    results = client.request([
        Invocation(id="find", method=query),
        Invocation(id="echo", method=CoreEcho(data={"between": True})),
        Invocation(id="byref", method=EmailGet(ids=Ref("/ids", method="find"), properties=["subject"])),
        Invocation(id="explicit", method=EmailGet(
            ids=ResultReference(name=EmailQuery.get_method_name(), path="/ids", result_of="find"),
            properties=["subject"])),
    ])
    assert [r.id for r in results] == ["find", "echo", "byref", "explicit"]
    assert [e.subject for e in results[2].response.data] == expected
    assert [e.subject for e in results[3].response.data] == expected


def test_star_paths_map_and_flatten_through_threads(client, http):
    """Thread/get by Ref("/list/*/threadId") and back to Email/get by Ref("/list/*/emailIds"): "*" maps
    over the list and flattens the emailIds arrays into one id list (RFC 8620 §3.7)."""
    box, _ = new_mailbox(client)
    root = msgid("p")
    parent = import_over_http(http, client.account_id, message(unique("star "), root), box,
                              received_at=hours_ago(3))
    reply = import_over_http(http, client.account_id, message(unique("re star "), msgid(), in_reply_to=root),
                             box, received_at=hours_ago(2))
    alone = import_over_http(http, client.account_id, message(unique("alone "), msgid()), box,
                             received_at=hours_ago(1))
    results = client.request([
        EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=box), collapse_threads=True,
                   sort=[Comparator(property="receivedAt")]),
        EmailGet(ids=Ref("/ids"), properties=["threadId"]),
        ThreadGet(ids=Ref("/list/*/threadId")),
        EmailGet(ids=Ref("/list/*/emailIds"), properties=["subject", "threadId"]),
    ], raise_errors=True)
    assert results[0].response.ids == [parent["id"], alone["id"]]
    assert [t.id for t in results[2].response.data] == [parent["threadId"], alone["threadId"]]
    assert [e.id for e in results[3].response.data] == [parent["id"], reply["id"], alone["id"]]


def test_bad_result_reference_is_invalid_result_reference(client):
    results = client.request([MailboxQuery(), MailboxGet(ids=Ref("/nosuchmember"))])
    assert isinstance(results[0].response, MailboxQueryResponse), results[0]
    assert isinstance(results[1].response, Error), results[1]
    assert results[1].response.type == "invalidResultReference"
    with pytest.raises(ClientError):
        client.request([MailboxQuery(), MailboxGet(ids=Ref("/nosuchmember"))], raise_errors=True)


# ------------------------------------------------------------------ Email/set (create_send_email.py)
def test_create_draft_update_keywords_move_and_destroy(client):
    drafts, archive = mailbox_with_role(client, "drafts"), mailbox_with_role(client, "archive")
    identity = client.request(IdentityGet()).data[0]
    subject = unique("draft ")
    text = "Hello from a jmapc draft.\nSecond line."
    before = client.request(EmailGet(ids=[])).state

    results = client.request([
        EmailSet(create={"draft": Email(
            mail_from=[EmailAddress(name=identity.name, email=identity.email)],
            to=[EmailAddress(name="Dave", email="dave@example.net")],
            subject=subject,
            keywords={"$draft": True},
            mailbox_ids={drafts: True},
            body_values={"body": EmailBodyValue(value=text)},
            text_body=[EmailBodyPart(part_id="body", type="text/plain")])}),
        EmailGet(ids=Ref("/created/*/id"), properties=["subject", "from", "to", "keywords", "mailboxIds",
                                                       "textBody", "bodyValues", "threadId"],
                 fetch_text_body_values=True),
    ], raise_errors=True)
    created = results[0].response
    assert isinstance(created, EmailSetResponse), created
    draft = created.created["draft"]
    assert draft.id and draft.thread_id and draft.blob_id and draft.size
    [got] = results[1].response.data
    assert got.id == draft.id and got.subject == subject
    assert [(a.name, a.email) for a in got.mail_from] == [(identity.name, EMAIL)]
    assert [(a.name, a.email) for a in got.to] == [("Dave", "dave@example.net")]
    assert got.keywords == {"$draft": True}
    assert got.mailbox_ids == {drafts: True}
    [part] = got.text_body
    assert part.type == "text/plain"
    assert got.body_values[part.part_id].value == text

    changes = client.request(EmailChanges(since_state=before))
    assert isinstance(changes, EmailChangesResponse), changes
    assert draft.id in changes.created

    res = client.request(EmailSet(update={draft.id: {"keywords/$seen": True, "keywords/$draft": None,
                                                     f"mailboxIds/{drafts}": None,
                                                     f"mailboxIds/{archive}": True}}))
    assert isinstance(res, EmailSetResponse) and draft.id in (res.updated or {}), res
    got = client.request(EmailGet(ids=[draft.id], properties=["keywords", "mailboxIds"])).data[0]
    assert (got.keywords, got.mailbox_ids) == ({"$seen": True}, {archive: True})

    res = client.request(EmailSet(update={draft.id: {"keywords": {"$flagged": True, "work": True}}}))
    assert isinstance(res, EmailSetResponse) and draft.id in (res.updated or {}), res
    got = client.request(EmailGet(ids=[draft.id], properties=["keywords"])).data[0]
    assert got.keywords == {"$flagged": True, "work": True}

    res = client.request(EmailSet(destroy=[draft.id]))
    assert isinstance(res, EmailSetResponse), res
    assert res.destroyed == [draft.id]
    gone = client.request(EmailGet(ids=[draft.id]))
    assert isinstance(gone, EmailGetResponse), gone
    assert (gone.data, gone.not_found) == ([], [draft.id])


def test_email_set_reports_not_created_for_an_unknown_mailbox(client):
    res = client.request(EmailSet(create={"bad": Email(subject="x", mailbox_ids={"Mnosuchmailbox": True})}))
    assert isinstance(res, EmailSetResponse), res
    assert res.created is None
    assert res.not_created["bad"].type == "invalidProperties"
    assert "mailboxIds" in (res.not_created["bad"].properties or [])


def test_the_send_example_sends_the_draft_and_destroys_it(client):
    """create_send_email.py as it is: a draft, then an EmailSubmission with onSuccessDestroyEmail.
    The recipient is the user (a local address), so the message arrives in their Inbox."""
    drafts = mailbox_with_role(client, "drafts")
    identity = client.request(IdentityGet()).data[0]
    subject = unique("send ")
    results = client.request([
        EmailSet(create={"draft": Email(mail_from=[EmailAddress(email=identity.email)],
                                        to=[EmailAddress(email=identity.email)], subject=subject,
                                        keywords={"$draft": True}, mailbox_ids={drafts: True},
                                        body_values={"body": EmailBodyValue(value="hi")},
                                        text_body=[EmailBodyPart(part_id="body", type="text/plain")])}),
        EmailSubmissionSet(on_success_destroy_email=["#emailToSend"], create={"emailToSend": EmailSubmission(
            email_id="#draft", identity_id=identity.id,
            envelope=Envelope(mail_from=Address(email=identity.email), rcpt_to=[Address(email=identity.email)]))}),
    ])
    assert isinstance(results[0].response, EmailSetResponse) and results[0].response.created["draft"].id
    draft_id = results[0].response.created["draft"].id
    assert isinstance(results[1].response, EmailSubmissionSetResponse), results[1]
    submission = results[1].response.created["emailToSend"]
    assert submission.id and submission.undo_status.value == "pending"
    assert isinstance(results[2].response, EmailSetResponse) and results[2].response.destroyed == [draft_id]
    inbox = mailbox_with_role(client, "inbox")
    deadline = time.time() + 15
    while time.time() < deadline:
        found = client.request(EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=inbox, header=["Subject", subject])))
        if found.ids:
            break
        time.sleep(0.1)
    assert len(found.ids) == 1
    # the submission as jmapc reads it back: query by email, then get
    listed = client.request(EmailSubmissionQuery(filter=EmailSubmissionQueryFilterCondition(email_ids=[draft_id])))
    assert isinstance(listed, EmailSubmissionQueryResponse) and listed.ids == [submission.id]
    deadline = time.time() + 15
    while True:  # the outcome is recorded right after the delivery it reports
        got = client.request(EmailSubmissionGet(ids=[submission.id]))
        assert isinstance(got, EmailSubmissionGetResponse), got
        sent = got.data[0]
        if sent.undo_status.value == "final" or time.time() > deadline:
            break
        time.sleep(0.1)
    assert (sent.email_id, sent.identity_id, sent.undo_status.value) == (draft_id, identity.id, "final")
    assert sent.delivery_status[identity.email].delivered.value == "yes"


# ------------------------------------------------------------------ Mailbox/set, Mailbox/query
def test_mailbox_set_create_tree_rename_query_and_destroy(client, http):
    parent_name, child_name = unique("Projects "), unique("Child ")
    before = client.request(MailboxGet(ids=[])).state
    res = client.request(MailboxSet(create={
        "child": Mailbox(name=child_name, parent_id="#parent"),  # refers to a creation later in the map
        "parent": Mailbox(name=parent_name, sort_order=5)}))
    assert isinstance(res, MailboxSetResponse), res
    parent, child = res.created["parent"].id, res.created["child"].id
    assert parent and child and parent != child

    got = client.request(MailboxGet(ids=[parent, child]))
    assert isinstance(got, MailboxGetResponse), got
    by_id = {mb.id: mb for mb in got.data}
    assert (by_id[parent].name, by_id[parent].parent_id, by_id[parent].sort_order) == (parent_name, None, 5)
    assert (by_id[child].name, by_id[child].parent_id, by_id[child].sort_order) == (child_name, parent, 0)
    assert by_id[child].is_subscribed is False and by_id[child].role is None

    changes = client.request(MailboxChanges(since_state=before))
    assert isinstance(changes, MailboxChangesResponse), changes
    assert set(changes.created) == {parent, child}

    renamed = child_name + " renamed"
    res = client.request(MailboxSet(update={child: {"name": renamed}}))
    assert isinstance(res, MailboxSetResponse) and child in (res.updated or {}), res

    results = client.request([
        MailboxQuery(filter=MailboxQueryFilterCondition(parent_id=parent),
                     sort=[Comparator(property="name")]),
        MailboxGet(ids=Ref("/ids"), properties=["name"]),
    ], raise_errors=True)
    assert results[0].response.ids == [child]
    assert [mb.name for mb in results[1].response.data] == [renamed]

    results = client.request(MailboxQuery(sort=[Comparator(property="sortOrder"), Comparator(property="name")],
                                          sort_as_tree=True, filter_as_tree=True))
    assert isinstance(results, MailboxQueryResponse), results
    assert results.ids.index(parent) + 1 == results.ids.index(child)  # a child right after its parent

    # an email in the child: destroying it needs onDestroyRemoveEmails
    email = import_over_http(http, client.account_id, message(unique("in child "), msgid()), child)
    res = client.request(MailboxSet(destroy=[child]))
    assert res.not_destroyed[child].type == "mailboxHasEmail", res
    res = client.request(MailboxSet(destroy=[child], on_destroy_remove_emails=True))
    assert res.destroyed == [child], res
    assert client.request(EmailGet(ids=[email["id"]])).not_found == [email["id"]]
    res = client.request(MailboxSet(destroy=[parent]))
    assert res.destroyed == [parent], res


def test_query_changes_with_jmapc_comparators(client, http):
    box, _ = new_mailbox(client)
    [first] = fill(client, http, box, [2])
    sort = [Comparator(property="receivedAt", is_ascending=False)]
    in_box = EmailQueryFilterCondition(in_mailbox=box)
    q = client.request(EmailQuery(filter=in_box, sort=sort))
    assert isinstance(q, EmailQueryResponse) and q.ids == [first["id"]], q
    [second] = fill(client, http, box, [1])
    ch = client.request(EmailQueryChanges(filter=in_box, sort=sort, since_query_state=q.query_state))
    assert isinstance(ch, EmailQueryChangesResponse), ch
    assert [(a.id, a.index) for a in ch.added] == [(second["id"], 0)]
    assert ch.old_query_state == q.query_state

    mq = client.request(MailboxQuery(sort=[Comparator(property="name")]))
    assert isinstance(mq, MailboxQueryResponse), mq
    new_box, _ = new_mailbox(client)
    mch = client.request(MailboxQueryChanges(sort=[Comparator(property="name")],
                                             since_query_state=mq.query_state))
    assert isinstance(mch, MailboxQueryChangesResponse), mch
    assert new_box in [a.id for a in mch.added]


def test_methods_with_only_jmapc_defaults_are_accepted(client):
    """jmapc always sends its non-null defaults (sortAsTree/filterAsTree: false, onDestroyRemoveEmails:
    false, calculateTotal: false); each is a defined argument, so the calls succeed and change nothing."""
    mailbox_state = client.request(MailboxGet(ids=[])).state
    email_state = client.request(EmailGet(ids=[])).state
    res = client.request(MailboxSet())
    assert isinstance(res, MailboxSetResponse), res
    assert (res.old_state, res.new_state, res.created, res.destroyed) == (mailbox_state, mailbox_state, None, None)
    res = client.request(EmailSet())
    assert isinstance(res, EmailSetResponse), res
    assert (res.old_state, res.new_state, res.updated) == (email_state, email_state, None)
    res = client.request(MailboxQuery())
    assert isinstance(res, MailboxQueryResponse), res
    assert mailbox_with_role(client, "inbox") in res.ids
    res = client.request(MailboxQueryChanges(since_query_state=res.query_state))
    assert isinstance(res, MailboxQueryChangesResponse), res
    assert (res.removed, res.added) == ([], [])


# ------------------------------------------------------------------ changes, identity, echo, search
def test_changes_then_get_created_and_updated_by_reference(client, http):
    box, _ = new_mailbox(client)
    state = client.request(EmailGet(ids=[])).state
    thread_state = client.request(ThreadGet(ids=[])).state
    [new] = fill(client, http, box, [1], prefix="changed ")
    results = client.request([EmailChanges(since_state=state), EmailGet(ids=Ref("/created"))],
                             raise_errors=True)
    assert results[0].response.created == [new["id"]]
    assert [e.subject for e in results[1].response.data] == [new["subject"]]

    threads = client.request(ThreadChanges(since_state=thread_state))
    assert isinstance(threads, ThreadChangesResponse), threads
    assert new["threadId"] in threads.created

    state = results[0].response.new_state
    api(http, [["Email/set", {"accountId": client.account_id,
                              "update": {new["id"]: {"keywords/$seen": True}}}, "s"]])
    results = client.request([EmailChanges(since_state=state),
                              EmailGet(ids=Ref("/updated"), properties=["keywords"])], raise_errors=True)
    assert (results[0].response.created, results[0].response.updated) == ([], [new["id"]])
    assert results[1].response.data[0].keywords == {"$seen": True}


def test_changes_in_pages_with_max_changes(client, http):
    box, _ = new_mailbox(client)
    state = client.request(EmailGet(ids=[])).state
    made = [m["id"] for m in fill(client, http, box, [3, 2, 1])]
    seen: list[str] = []
    while True:
        page = client.request(EmailChanges(since_state=state, max_changes=2))
        assert isinstance(page, EmailChangesResponse), page
        assert len(page.created) + len(page.updated) + len(page.destroyed) <= 2
        seen += page.created
        state = page.new_state
        if not page.has_more_changes:
            break
    assert sorted(seen) == sorted(made)


def test_identity_get_example(client):
    res = client.request(IdentityGet())
    assert isinstance(res, IdentityGetResponse), res
    [identity] = res.data
    assert identity.email == EMAIL and identity.name is not None
    again = client.request(IdentityGet(ids=[identity.id]))
    assert [i.id for i in again.data] == [identity.id]


def test_debug_log_example_logs_the_echo_request_and_response(client, caplog):
    caplog.set_level(logging.DEBUG, logger=jmapc_log.name)
    res = client.request(CoreEcho(data={"hello": "world"}))
    assert isinstance(res, CoreEchoResponse) and res.data == {"hello": "world"}, res
    sent = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Sending JMAP request "))
    received = next(r.getMessage() for r in caplog.records
                    if r.getMessage().startswith("Received JMAP response "))
    assert json.loads(sent.removeprefix("Sending JMAP request "))["methodCalls"] == [
        ["Core/echo", {"hello": "world"}, "single.Core/echo"]]
    assert json.loads(received.removeprefix("Received JMAP response "))["methodResponses"] == [
        ["Core/echo", {"hello": "world"}, "single.Core/echo"]]


def test_search_example_and_snippets_by_reference(client, http):
    box, _ = new_mailbox(client)
    word = unique("zebrafinch")
    hit = import_over_http(http, client.account_id,
                           message(unique("search "), msgid(), body=f"The {word} sang at dawn."), box)
    import_over_http(http, client.account_id, message(unique("search "), msgid(), body="Nothing here."), box)
    text = EmailQueryFilterCondition(text=word)
    results = client.request([EmailQuery(filter=text), SearchSnippetGet(ids=Ref("/ids"), filter=text)])
    query, snippets = results[0].response, results[1].response
    assert isinstance(query, EmailQueryResponse), query
    assert query.ids == [hit["id"]]
    assert isinstance(snippets, SearchSnippetGetResponse), snippets
    [snippet] = snippets.data
    assert snippet.email_id == hit["id"]
    assert f"<mark>{word}</mark>" in (snippet.preview or "")


# ------------------------------------------------------------------ EventSource (event_source.py)
def test_event_source_example_reads_new_emails_from_state_changes(client, http, tls_server):
    """client.events on tidings' eventSourceUrl: each StateChange carries the account's new Email
    state; the example's callback (Email/changes since the previous state + Email/get by
    Ref("/created")) then names the new message."""
    box, _ = new_mailbox(client)
    listener = Client.create_with_password(host=f"127.0.0.1:{tls_server.port}", user=USER, password="carol-pw")
    listener.requests_session.verify = str(tls_server.ca_file)
    arrived: queue.Queue = queue.Queue()
    last = threading.Event()

    def listen():
        for event in listener.events:
            arrived.put(event)
            if last.is_set():
                return  # leaves the stream unread, so the main thread may close it

    def email_state(event) -> str | None:
        return event.data.changed[client.account_id].email

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    try:
        # the first event only gives the example its starting state; until the stream is up a change
        # may go unseen, so keep making one until an event comes, then take events up to the present
        for _ in range(10):
            fill(client, http, box, [0], prefix="warm-up ")
            try:
                first = arrived.get(timeout=2)
                break
            except queue.Empty:
                continue
        else:
            pytest.fail("no StateChange arrived on the event source")
        current = client.request(EmailGet(ids=[])).state
        while email_state(first) != current:
            first = arrived.get(timeout=5)
        last.set()
        [made] = fill(client, http, box, [0], prefix="pushed ")
        second = arrived.get(timeout=10)
        assert email_state(second) and email_state(second) != email_state(first)
        results = client.request([EmailChanges(since_state=email_state(first)), EmailGet(ids=Ref("/created"))],
                                 raise_errors=True)
        assert [(e.id, e.subject) for e in results[1].response.data] == [(made["id"], made["subject"])]
        assert results[0].response.new_state == email_state(second)
    finally:
        last.set()
        reader.join(5)
        if not reader.is_alive() and listener._events is not None:
            listener._events.resp.close()  # only once nobody reads it: close() waits for a reader


def test_identity_set_and_changes_and_submission_changes_through_jmapc(client):
    identity = client.request(IdentityGet()).data[0]
    state = client.request(IdentityGet(ids=[])).state
    res = client.request(IdentitySet(update={identity.id: {"textSignature": "-- \ncarol"}}))
    assert isinstance(res, IdentitySetResponse) and identity.id in res.updated, res
    changes = client.request(IdentityChanges(since_state=state))
    assert isinstance(changes, IdentityChangesResponse), changes
    assert (changes.created, changes.updated, changes.destroyed) == ([], [identity.id], [])
    assert client.request(IdentityGet(ids=[identity.id])).data[0].text_signature == "-- \ncarol"

    sub_state = client.request(EmailSubmissionGet(ids=[])).state
    query_state = client.request(EmailSubmissionQuery()).query_state
    drafts = mailbox_with_role(client, "drafts")
    results = client.request([
        EmailSet(create={"d": Email(mail_from=[EmailAddress(email=identity.email)],
                                    to=[EmailAddress(email=identity.email)], subject=unique("changes "),
                                    mailbox_ids={drafts: True},
                                    body_values={"b": EmailBodyValue(value="hi")},
                                    text_body=[EmailBodyPart(part_id="b", type="text/plain")])}),
        EmailSubmissionSet(create={"s": EmailSubmission(email_id="#d", identity_id=identity.id)})])
    created = results[1].response.created["s"].id
    changes = client.request(EmailSubmissionChanges(since_state=sub_state))
    assert isinstance(changes, EmailSubmissionChangesResponse), changes
    assert created in changes.created
    moved = client.request(EmailSubmissionQueryChanges(since_query_state=query_state))
    assert isinstance(moved, EmailSubmissionQueryChangesResponse), moved
    assert created in [item.id for item in moved.added]
