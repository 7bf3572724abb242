"""The pre-RFC calls (a bare JSON array of [name, arguments, callId]), answered in the same form with
the old method and response names (README "Legacy calls"); RFC requests are untouched."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import unique


def legacy(client, calls: list) -> list:
    r = client.http.post(client.api_url, content=json.dumps(calls), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list)
    return body


def raw(subject: str, flagged: bool = False) -> bytes:
    return (f"From: Dora <dora@example.net>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
            f"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}@example.net>\r\n"
            f"\r\nhello {subject}\r\n").encode()


def test_get_mailboxes_answers_mailboxes_with_the_drafts_shape(alice):
    [[name, result, call_id]] = legacy(alice, [["getMailboxes", {}, "#1"]])
    assert (name, call_id) == ("mailboxes", "#1")
    assert result["accountId"] == alice.account_id and result["notFound"] == [] and result["state"]
    inbox = next(mb for mb in result["list"] if mb["role"] == "inbox")
    assert {"totalMessages", "unreadMessages", "mayReadItems", "mustBeOnlyMailbox"} <= set(inbox)
    assert "totalEmails" not in inbox and "myRights" not in inbox


def test_message_list_messages_and_updates_with_old_filters_and_flags(alice):
    subject = unique("legacy ")
    inbox = alice.mailbox("inbox")
    state = alice.ok("Email/get", ids=[])["state"]
    email = alice.import_message(raw(subject), mailbox=inbox)
    res = legacy(alice, [
        ["getMessageList", {"filter": {"inMailboxes": [inbox], "isUnread": True, "subject": subject},
                            "sort": ["date desc"]}, "l"],
        ["getMessages", {"ids": [email["id"]], "properties": ["subject", "isUnread", "from", "textBody",
                                                               "mailboxIds"]}, "m"],
        ["getMessageUpdates", {"sinceState": state}, "u"],
    ])
    (n1, lst, _), (n2, msgs, _), (n3, upd, _) = res
    assert (n1, n2, n3) == ("messageList", "messages", "messageUpdates")
    assert lst["messageIds"] == [email["id"]] and lst["threadIds"] == [email["threadId"]] and lst["total"] == 1
    assert msgs["list"] == [{"id": email["id"], "subject": subject, "isUnread": True,
                             "from": {"name": "Dora", "email": "dora@example.net"},
                             "textBody": f"hello {subject}\n", "mailboxIds": [inbox]}]
    assert email["id"] in upd["changed"] and upd["removed"] == []
    # setMessages: the draft's flags become keywords
    [[name, result, _]] = legacy(alice, [["setMessages", {"update": {email["id"]: {"isUnread": False,
                                                                                  "isFlagged": True}}}, "s"]])
    assert name == "messagesSet" and result["updated"] == [email["id"]]
    got = alice.ok("Email/get", ids=[email["id"]], properties=["keywords"])["list"][0]
    assert got["keywords"] == {"$seen": True, "$flagged": True}
    [[name, result, _]] = legacy(alice, [["getMessageList", {"filter": {"isFlagged": True, "subject": subject}}, "f"]])
    assert result["messageIds"] == [email["id"]]


def test_set_messages_creates_a_draft_from_the_old_shape(alice):
    drafts = alice.mailbox("drafts")
    subject = unique("old create ")
    [[name, result, _]] = legacy(alice, [["setMessages", {"create": {"k": {
        "mailboxIds": [drafts], "isDraft": True, "from": {"name": "Alice", "email": "alice@example.com"},
        "to": [{"name": "Bob", "email": "bob@example.com"}], "subject": subject, "textBody": "hi there"}}}, "c"]])
    assert name == "messagesSet" and result["created"]["k"]["id"]
    got = alice.ok("Email/get", ids=[result["created"]["k"]["id"]],
                   properties=["subject", "keywords", "mailboxIds", "from"], fetchTextBodyValues=True)["list"][0]
    assert got["subject"] == subject and got["keywords"] == {"$draft": True, "$seen": True}
    assert got["mailboxIds"] == {drafts: True} and got["from"] == [{"name": "Alice", "email": "alice@example.com"}]


def test_an_unknown_old_method_is_unknown_method_and_the_others_still_answer(alice):
    res = legacy(alice, [["getFrobnicators", {}, "#1"], ["getMailboxes", {"ids": []}, "#2"]])
    assert res[0] == ["error", {"type": "unknownMethod", "description": "unknown method 'getFrobnicators'"}, "#1"]
    assert res[1][0] == "mailboxes" and res[1][2] == "#2"


def test_an_empty_array_is_still_not_a_request(alice):
    r = alice.http.post(alice.api_url, content=b"[]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == "urn:ietf:params:jmap:error:notRequest"


def test_the_documented_curl_request_for_calendars(alice, server):
    """The first example of the reference server's documentation, sent with curl exactly."""
    done = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json", "-H", "Accept: application/json",
         "--user", "alice:alice-pw", "-d", '[["getCalendars", {}, "#1"]]', alice.api_url],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    [[name, result, call_id]] = json.loads(done.stdout)
    assert (name, call_id) == ("calendars", "#1")
    assert set(result) >= {"accountId", "list", "notFound", "state"} and result["accountId"] == alice.account_id
    assert [c["name"] for c in result["list"]] == ["Calendar"] and result["notFound"] == []


def test_old_calendar_and_contact_calls_map_onto_the_rfc_methods(alice):
    using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:calendars", "urn:ietf:params:jmap:contacts"]
    res = alice.request([
        ["CalendarEvent/set", {"accountId": alice.account_id, "create": {"e": {
            "calendarIds": {"Cdefault": True}, "title": "Standup", "start": "2026-03-02T09:00:00",
            "timeZone": "Europe/Berlin", "duration": "PT15M"}}}, "e"],
        ["ContactCard/set", {"accountId": alice.account_id, "create": {
            "c": {"addressBookIds": {"Bdefault": True}, "name": {"full": "Dora Old"}},
            "g": {"addressBookIds": {"Bdefault": True}, "kind": "group", "name": {"full": "Team"}}}}, "c"],
    ], using=using)["methodResponses"]
    event = res[0][1]["created"]["e"]["id"]
    card, group = res[1][1]["created"]["c"]["id"], res[1][1]["created"]["g"]["id"]
    answers = legacy(alice, [["getCalendarEvents", {"ids": [event]}, "1"], ["getContacts", {"ids": [card]}, "2"],
                             ["getContactGroups", {}, "3"],
                             ["setContacts", {"update": {card: {"name/full": "Dora New"}}}, "4"]])
    assert [a[0] for a in answers] == ["calendarEvents", "contacts", "contactGroups", "contactsSet"]
    assert answers[0][1]["list"][0]["title"] == "Standup"
    assert answers[1][1]["list"][0]["name"]["full"] == "Dora Old"
    assert [c["id"] for c in answers[2][1]["list"]] == [group]
    assert answers[3][1]["updated"] == [card]
