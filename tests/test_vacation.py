"""VacationResponse/get and /set (RFC 8621 §8) against a live server, and the RFC 3834 rules of the
automatic reply (`app.vacation`) as unit tests, one per rule, plus the once-per-sender memory on a
real store."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from app.vacation import PERIOD, auto_reply, reply_for, why_not
from tests.conftest import CORE, MAIL, Jmap, Server, tidings

VACATION = "urn:ietf:params:jmap:vacationresponse"
USING = [CORE, MAIL, VACATION]


@pytest.fixture(scope="module")
def vserver(tmp_path_factory):
    data = tmp_path_factory.mktemp("vacation")
    for name in ("vera", "walt", "xena"):
        tidings("user", "add", name, "--password", "pw", "--email", f"{name}@example.com", data=data)
    srv = Server(data)
    yield srv
    srv.stop()


def client(srv: Server, name: str) -> Jmap:
    return Jmap(srv, name, "pw")


def call(c: Jmap, method: str, **args) -> tuple[str, dict]:
    args.setdefault("accountId", c.account_id)
    name, result, _ = c.request([[method, args, "0"]], using=USING)["methodResponses"][0]
    return name, result


# ------------------------------------------------------------------------------------------- JMAP
def test_session_declares_the_vacationresponse_capability(vserver):
    c = client(vserver, "vera")
    assert c.session["capabilities"][VACATION] == {}
    assert c.session["accounts"][c.account_id]["accountCapabilities"][VACATION] == {}
    assert c.session["primaryAccounts"][VACATION] == c.account_id


def test_get_returns_the_disabled_singleton_before_anything_is_set(vserver):
    c = client(vserver, "walt")
    name, res = call(c, "VacationResponse/get", ids=None)
    assert name == "VacationResponse/get"
    assert res["list"] == [{"id": "singleton", "isEnabled": False, "fromDate": None, "toDate": None,
                            "subject": None, "textBody": None, "htmlBody": None}]
    assert res["notFound"] == []
    _, res = call(c, "VacationResponse/get", ids=["singleton", "other"], properties=["isEnabled"])
    assert res["list"] == [{"id": "singleton", "isEnabled": False}]
    assert res["notFound"] == ["other"]


def test_update_is_stored_returned_by_get_and_changes_the_state(vserver):
    c = client(vserver, "vera")
    _, before = call(c, "VacationResponse/get", ids=["singleton"])
    update = {"isEnabled": True, "fromDate": "2030-01-01T00:00:00Z", "toDate": "2030-01-15T00:00:00Z",
              "subject": "Out of office", "textBody": "Back on the 15th.", "htmlBody": "<p>Back on the 15th.</p>"}
    name, res = call(c, "VacationResponse/set", ifInState=before["state"], update={"singleton": update})
    assert name == "VacationResponse/set"
    assert res["updated"] == {"singleton": None}
    assert res["oldState"] == before["state"] != res["newState"]
    _, after = call(c, "VacationResponse/get", ids=["singleton"])
    assert after["list"] == [{"id": "singleton", **update}]
    assert after["state"] == res["newState"]
    # a patch of one property leaves the others
    _, res = call(c, "VacationResponse/set", update={"singleton": {"isEnabled": False}})
    assert res["updated"] == {"singleton": None}
    _, after = call(c, "VacationResponse/get", ids=["singleton"])
    assert after["list"][0] == {"id": "singleton", **update, "isEnabled": False}
    # another user's is their own
    _, other = call(client(vserver, "xena"), "VacationResponse/get", ids=["singleton"])
    assert other["list"][0]["isEnabled"] is False and other["list"][0]["subject"] is None


def test_create_and_destroy_answer_the_singleton_error(vserver):
    c = client(vserver, "walt")
    _, res = call(c, "VacationResponse/set", create={"v": {"isEnabled": True}}, destroy=["singleton"])
    assert res["notCreated"]["v"]["type"] == "singleton"
    assert res["notDestroyed"]["singleton"]["type"] == "singleton"
    assert res["created"] is None and res["destroyed"] is None
    assert res["oldState"] == res["newState"]


def test_an_invalid_update_lists_every_bad_property(vserver):
    c = client(vserver, "walt")
    _, res = call(c, "VacationResponse/set", update={"singleton": {
        "isEnabled": "yes", "fromDate": "tomorrow", "toDate": "2030-01-01T00:00:00+02:00", "subject": 5,
        "textBody": "fine", "id": "other", "color": "red"}})
    err = res["notUpdated"]["singleton"]
    assert err["type"] == "invalidProperties"
    assert sorted(err["properties"]) == ["color", "fromDate", "id", "isEnabled", "subject", "toDate"]
    _, after = call(c, "VacationResponse/get", ids=["singleton"])
    assert after["list"][0]["textBody"] is None  # nothing of a refused update is stored


def test_a_subject_with_a_line_break_is_refused_not_silently_never_sent(vserver):
    c = client(vserver, "walt")
    for subject in ("Away\r\nBcc: vera@example.com", "Away\nX", "Away\x00"):
        _, res = call(c, "VacationResponse/set", update={"singleton": {"isEnabled": True, "subject": subject}})
        err = res["notUpdated"]["singleton"]
        assert (err["type"], err["properties"]) == ("invalidProperties", ["subject"])
    _, res = call(c, "VacationResponse/set", update={"singleton": {"subject": "Away, back on Monday"}})
    assert "singleton" in res["updated"]


def test_update_of_another_id_is_not_found(vserver):
    c = client(vserver, "walt")
    _, res = call(c, "VacationResponse/set", update={"V1": {"isEnabled": True}})
    assert res["notUpdated"]["V1"]["type"] == "notFound"


def test_the_methods_need_the_capability_in_using(vserver):
    c = client(vserver, "walt")
    name, res, _ = c.request([["VacationResponse/get", {"accountId": c.account_id}, "0"]],
                             using=[CORE, MAIL])["methodResponses"][0]
    assert (name, res["type"]) == ("error", "unknownMethod")


# --------------------------------------------------------------------------- RFC 3834 reply rules
USER = {"name": "alice", "accountId": "A1", "email": "alice@example.com", "aliases": ["al@example.com",
                                                                                     "@alice.example"]}
ON = {"id": "singleton", "isEnabled": True, "fromDate": None, "toDate": None, "subject": None,
      "textBody": "I am away.", "htmlBody": None}
NOW = datetime(2030, 1, 10, 12, 0, tzinfo=UTC).timestamp()


def msg(extra: str = "", to: str = "Alice <alice@example.com>", subject: str = "Lunch?") -> bytes:
    return (f"From: Bob <bob@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <m1@example.org>\r\nReferences: <r0@example.org>\r\n{extra}\r\nHi.\r\n").encode()


def parsed(reply: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(reply, policy=email.policy.default)


def test_the_reply_has_the_rfc_3834_fields():
    reply = parsed(auto_reply(USER, ON, "bob@example.org", msg(), NOW))
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["To"] == "bob@example.org"
    assert reply["From"].addresses[0].addr_spec == "alice@example.com"
    assert reply["Subject"] == "Auto: Lunch?"
    assert reply["In-Reply-To"] == "<m1@example.org>"
    assert reply["References"].split() == ["<r0@example.org>", "<m1@example.org>"]
    assert reply.get_content_type() == "text/plain"
    assert reply.get_content().strip() == "I am away."


def test_the_reply_is_sent_to_the_envelope_sender_not_the_from_field():
    reply = parsed(auto_reply(USER, ON, "bounces-77@lists.example.org", msg(), NOW))
    assert reply["To"] == "bounces-77@lists.example.org"


def test_the_reply_comes_from_the_alias_the_message_was_sent_to():
    reply = parsed(auto_reply(USER, ON, "bob@example.org", msg(to="x@alice.example"), NOW))
    assert reply["From"].addresses[0].addr_spec == "x@alice.example"


def test_the_configured_subject_and_html_body_are_used():
    vacation = {**ON, "subject": "Gone fishing", "htmlBody": "<p>Gone <b>fishing</b></p>"}
    reply = parsed(auto_reply(USER, vacation, "bob@example.org", msg(), NOW))
    assert reply["Subject"] == "Gone fishing"
    assert reply.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content().strip() for p in reply.iter_parts()}
    assert parts == {"text/plain": "I am away.", "text/html": "<p>Gone <b>fishing</b></p>"}


def test_an_html_only_response_gets_a_text_body_made_from_it():
    vacation = {**ON, "textBody": None, "htmlBody": "<p>Gone&nbsp;fishing</p>"}
    reply = parsed(auto_reply(USER, vacation, "bob@example.org", msg(), NOW))
    parts = {p.get_content_type(): p.get_content().strip() for p in reply.iter_parts()}
    assert parts["text/plain"] == "Gone\xa0fishing"


def test_no_body_configured_gets_a_default_text():
    reply = parsed(auto_reply(USER, {**ON, "textBody": None}, "bob@example.org", msg(), NOW))
    assert "away" in reply.get_content()


def test_a_message_without_subject_gets_auto_no_subject():
    raw = b"From: bob@example.org\r\nTo: alice@example.com\r\nMessage-ID: <m2@x>\r\n\r\nHi.\r\n"
    assert parsed(auto_reply(USER, ON, "bob@example.org", raw, NOW))["Subject"] == "Auto: (no subject)"


@pytest.mark.parametrize("vacation", [
    {**ON, "isEnabled": False},
    {**ON, "fromDate": "2030-01-11T00:00:00Z"},  # not yet
    {**ON, "toDate": "2030-01-10T12:00:00Z"},  # toDate is exclusive
    {**ON, "fromDate": "2029-12-01T00:00:00Z", "toDate": "2030-01-01T00:00:00Z"},  # over
])
def test_no_reply_outside_the_enabled_period(vacation):
    assert auto_reply(USER, vacation, "bob@example.org", msg(), NOW) is None


def test_a_reply_on_fromdate_itself_and_inside_the_period():
    assert auto_reply(USER, {**ON, "fromDate": "2030-01-10T12:00:00Z"}, "bob@example.org", msg(), NOW)
    assert auto_reply(USER, {**ON, "fromDate": "2030-01-01T00:00:00Z", "toDate": "2030-02-01T00:00:00Z"},
                      "bob@example.org", msg(), NOW)


@pytest.mark.parametrize("sender", ["", "<>", "MAILER-DAEMON@example.org", "mailer-daemon@x.org",
                                    "owner-python-list@example.org", "python-list-request@example.org",
                                    "list-owner@example.org", "LISTSERV@example.org", "majordomo@example.org",
                                    "not-an-address"])
def test_no_reply_to_null_mailer_or_list_senders(sender):
    assert auto_reply(USER, ON, sender, msg(), NOW) is None


@pytest.mark.parametrize("sender", ["alice@example.com", "AL@example.com", "anyone@alice.example"])
def test_no_reply_to_the_users_own_addresses(sender):
    assert why_not(USER, ON, sender, msg(), NOW) == "sent by the user"


@pytest.mark.parametrize("extra", ["Auto-Submitted: auto-generated\r\n", "Auto-Submitted: auto-replied\r\n",
                                   "Auto-Submitted: Auto-Notified (x)\r\n"])
def test_no_reply_to_automatic_messages(extra):
    assert why_not(USER, ON, "bob@example.org", msg(extra), NOW) == "Auto-Submitted message"


def test_auto_submitted_no_is_answered():
    assert auto_reply(USER, ON, "bob@example.org", msg("Auto-Submitted: no (a person wrote this)\r\n"), NOW)


@pytest.mark.parametrize("extra", ["List-Id: <python.example.org>\r\n",
                                   "List-Unsubscribe: <mailto:leave@example.org>\r\n",
                                   "list-post: <mailto:py@example.org>\r\n"])
def test_no_reply_to_list_mail(extra):
    assert why_not(USER, ON, "bob@example.org", msg(extra), NOW) == "mailing list message"


@pytest.mark.parametrize("value", ["bulk", "list", "junk", "Bulk"])
def test_no_reply_to_bulk_precedence(value):
    assert why_not(USER, ON, "bob@example.org", msg(f"Precedence: {value}\r\n"), NOW) == "bulk message"


def test_no_reply_when_none_of_the_users_addresses_is_a_recipient_field():
    raw = msg(to="some-list@example.org")
    assert why_not(USER, ON, "bob@example.org", raw, NOW) == "none of the user's addresses in To or Cc"
    assert auto_reply(USER, ON, "bob@example.org", msg(extra="Cc: al@example.com\r\n", to="x@example.org"), NOW)


# ------------------------------------------------------------------------- once per sender, durably
def test_a_sender_is_answered_once_per_period_remembered_in_the_store(tmp_path):
    from store import open_store

    store = open_store(str(tmp_path))
    try:
        user = store.create_user("alice", "x", "alice@example.com")
        account = user["accountId"]
        with store.write(account) as w:
            from app.vacation import VACATION_RESPONSE

            w.create_record(VACATION_RESPONSE.collection, {k: v for k, v in ON.items() if k != "id"})

        def reply(sender: str, when: float) -> bytes | None:
            with store.write(account) as w:
                return reply_for(w, user, sender, msg(), when)

        assert reply("bob@example.org", NOW) is not None
        assert reply("bob@example.org", NOW + 60) is None
        assert reply("BOB@example.org", NOW + PERIOD - 1) is None  # addresses compare case-insensitively
        assert reply("carol@example.org", NOW + 60) is not None  # another sender
        assert reply("bob@example.org", NOW + PERIOD) is not None  # the period is over
        assert reply("bob@example.org", NOW + PERIOD + 60) is None
    finally:
        store.close()
    store = open_store(str(tmp_path))  # durable: a restart remembers
    try:
        with store.write(account) as w:
            assert reply_for(w, user, "bob@example.org", msg(), NOW + PERIOD + 120) is None
    finally:
        store.close()


def test_a_disabled_response_remembers_nobody(tmp_path):
    from app.vacation import REPLIES
    from store import open_store

    store = open_store(str(tmp_path))
    try:
        user = store.create_user("alice", "x", "alice@example.com")
        with store.write(user["accountId"]) as w:
            assert reply_for(w, user, "bob@example.org", msg(), NOW) is None
            assert list(w.record_ids(REPLIES)) == []
    finally:
        store.close()
