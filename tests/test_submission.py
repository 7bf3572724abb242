"""Sending mail (RFC 8621 §6 Identity, §7 EmailSubmission) through a real tidings server and a real
SMTP relay on loopback (aiosmtpd): what the relay receives, byte for byte; local delivery; the
implicit Email/set; delayed send and cancel; retries, permanent failures and a restart mid-queue."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Jmap, Server, free_port, tidings, unique
from tests.smtp_relay import Relay

RETRY = {"TIDINGS_SMTP_RETRY_BASE": "0.3"}




@pytest.fixture(scope="module")
def server(tmp_path_factory, relay):
    data = tmp_path_factory.mktemp("submission")
    tidings("user", "add", "alice", "--password", "alice-pw", "--email", "alice@example.org", data=data)
    tidings("user", "add", "bob", "--password", "bob-pw", "--email", "bob@example.org", data=data)
    tidings("user", "alias", "alice", "@example.net", "al@example.com", data=data)
    srv = Server(data, extra=("--smtp-relay", f"127.0.0.1:{relay.port}", "--smtp-security", "none"), env=RETRY)
    yield srv
    srv.stop()


@pytest.fixture
def alice(server) -> Jmap:
    return Jmap(server, "alice", "alice-pw")


@pytest.fixture
def bob(server) -> Jmap:
    return Jmap(server, "bob", "bob-pw")


@pytest.fixture(autouse=True)
def fresh_relay(relay, server):
    relay.handler.received.clear()
    relay.handler.rcpt_replies.clear()
    relay.handler.data_failures.clear()
    yield
    # what a test sent must not arrive during the next one: wait until every submission that is
    # due has its outcome (held ones and canceled ones aside)
    client = Jmap(server, "alice", "alice-pw")
    deadline = time.time() + 20
    while time.time() < deadline:
        subs = client.ok("EmailSubmission/get", ids=None)["list"]
        due = [s for s in subs if s["undoStatus"] != "canceled"
               and s["sendAt"] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())]
        if all(settled(s) for s in due):
            return
        time.sleep(0.1)


def identity_id(client: Jmap) -> str:
    return client.ok("Identity/get", ids=None)["list"][0]["id"]


def draft(client: Jmap, subject: str, **headers) -> str:
    """An Email/set-created draft; returns its id."""
    obj = {"mailboxIds": {client.mailbox("drafts"): True}, "keywords": {"$draft": True},
           "from": [{"email": "alice@example.org"}], "subject": subject,
           "bodyValues": {"b": {"value": f"body of {subject}"}}, "textBody": [{"partId": "b", "type": "text/plain"}]}
    obj.update(headers)
    res = client.ok("Email/set", create={"d": obj})
    assert res["created"], res
    return res["created"]["d"]["id"]


def submit(client: Jmap, email_id: str, **extra) -> dict:
    res = client.ok("EmailSubmission/set", create={"s": {"emailId": email_id, "identityId": identity_id(client),
                                                         **extra}})
    return res


def wait_status(client: Jmap, submission_id: str, done, timeout: float = 15) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        sub = client.ok("EmailSubmission/get", ids=[submission_id])["list"][0]
        if done(sub):
            return sub
        time.sleep(0.1)
    raise AssertionError(f"submission never reached the state: {sub}")


def settled(sub: dict) -> bool:
    return all(s["delivered"] != "queued" for s in sub["deliveryStatus"].values())


def download(client: Jmap, blob_id: str) -> bytes:
    url = client.session["downloadUrl"].replace("{accountId}", client.account_id).replace(
        "{blobId}", blob_id).replace("{name}", "m.eml").replace("{type}", "message/rfc822")
    r = client.http.get(url)
    assert r.status_code == 200
    return r.content


# ------------------------------------------------------------------------------------ sending
def test_the_relay_receives_the_stored_message_byte_for_byte_without_its_bcc(alice, relay):
    email_id = draft(alice, unique("bytes "), to=[{"email": "carol@remote.test"}],
                     bcc=[{"name": "Hidden", "email": "dave@remote.test"}])
    stored = download(alice, alice.ok("Email/get", ids=[email_id], properties=["blobId"])["list"][0]["blobId"])
    bcc_line = b"Bcc: Hidden <dave@remote.test>\r\n"
    assert bcc_line in stored
    res = submit(alice, email_id)
    created = res["created"]["s"]
    # §7: the envelope is derived from the headers, Bcc recipients included
    assert created["envelope"] == {"mailFrom": {"email": "alice@example.org", "parameters": None},
                                   "rcptTo": [{"email": "carol@remote.test", "parameters": None},
                                              {"email": "dave@remote.test", "parameters": None}]}
    assert created["undoStatus"] == "pending" and created["threadId"]
    got = relay.handler.wait_for(1)[0]
    assert got.mail_from == "alice@example.org"
    assert got.rcpt_tos == ["carol@remote.test", "dave@remote.test"]
    expected = stored.replace(bcc_line, b"")
    # RFC 5321 §4.1.1.4: the data ends with a line break before the final "."; one is added only
    # when the message has none
    assert got.data == (expected if expected.endswith(b"\r\n") else expected + b"\r\n")
    sub = wait_status(alice, created["id"], settled)
    assert sub["undoStatus"] == "final"
    assert sub["deliveryStatus"] == {
        a: {"smtpReply": "250 2.0.0 Ok: queued as 4711", "delivered": "unknown", "displayed": "unknown"}
        for a in ("carol@remote.test", "dave@remote.test")}


def test_a_given_envelope_is_used_as_it_is(alice, relay):
    email_id = draft(alice, unique("envelope "), to=[{"email": "carol@remote.test"}])
    envelope = {"mailFrom": {"email": "alice@example.net", "parameters": {"BODY": "8BITMIME"}},
                "rcptTo": [{"email": "erin@remote.test", "parameters": None}]}
    created = submit(alice, email_id, envelope=envelope)["created"]["s"]
    assert "envelope" not in created  # stored as sent (§5.3: only what differs is returned)
    got = relay.handler.wait_for(1)[0]
    assert (got.mail_from, got.rcpt_tos, got.mail_options) == ("alice@example.net", ["erin@remote.test"],
                                                               ["BODY=8BITMIME"])


def test_mail_for_a_local_user_is_delivered_to_their_inbox_without_the_relay(alice, bob, relay):
    subject = unique("local ")
    email_id = draft(alice, subject, to=[{"email": "BOB@example.org"}])
    created = submit(alice, email_id)["created"]["s"]
    sub = wait_status(alice, created["id"], settled)
    assert sub["deliveryStatus"]["BOB@example.org"] == {"smtpReply": "250 2.0.0 delivered", "delivered": "yes",
                                                        "displayed": "unknown"}
    found = bob.ok("Email/query", filter={"inMailbox": bob.mailbox("inbox"), "header": ["Subject", subject]})
    assert len(found["ids"]) == 1
    got = bob.ok("Email/get", ids=found["ids"], properties=["subject", "from", "header:Return-Path"])["list"][0]
    assert got["subject"] == subject and got["from"] == [{"name": None, "email": "alice@example.org"}]
    assert got["header:Return-Path"] == " <alice@example.org>"
    assert relay.handler.received == []


def test_an_unknown_local_address_fails_for_good_and_the_others_still_go(alice, relay):
    email_id = draft(alice, unique("mixed "), to=[{"email": "nobody@example.org"}, {"email": "carol@remote.test"}])
    created = submit(alice, email_id)["created"]["s"]
    sub = wait_status(alice, created["id"], settled)
    assert sub["deliveryStatus"]["nobody@example.org"]["delivered"] == "no"
    assert sub["deliveryStatus"]["nobody@example.org"]["smtpReply"].startswith("550 5.1.1 ")
    assert sub["deliveryStatus"]["carol@remote.test"]["delivered"] == "unknown"
    assert relay.handler.wait_for(1)[0].rcpt_tos == ["carol@remote.test"]


def test_local_delivery_to_a_user_over_quota_fails_for_good_with_552(alice, bob, server):
    """The recipient's quota (RFC 9425) refuses the local copy as LMTP does: 552 5.2.2, not retried."""
    total = bob.ok("Email/query", calculateTotal=True)["total"]
    tidings("quota", "set", "bob", "--messages", str(total), data=server.data)
    try:
        email_id = draft(alice, unique("full "), to=[{"email": "bob@example.org"}])
        sub = wait_status(alice, submit(alice, email_id)["created"]["s"]["id"], settled)
        status = sub["deliveryStatus"]["bob@example.org"]
        assert status["delivered"] == "no" and status["smtpReply"].startswith("552 5.2.2 "), status
        assert bob.ok("Email/query", calculateTotal=True)["total"] == total
    finally:
        tidings("quota", "set", "bob", "--messages", "none", data=server.data)


def test_on_success_update_email_moves_the_draft_to_sent(alice):
    drafts, sent = alice.mailbox("drafts"), alice.mailbox("sent")
    email_id = draft(alice, unique("move "), to=[{"email": "carol@remote.test"}])
    resp = alice.request([["EmailSubmission/set", {
        "accountId": alice.account_id,
        "create": {"k": {"emailId": email_id, "identityId": identity_id(alice)}},
        "onSuccessUpdateEmail": {"#k": {f"mailboxIds/{drafts}": None, f"mailboxIds/{sent}": True,
                                        "keywords/$draft": None}}}, "0"]])["methodResponses"]
    assert [r[0] for r in resp] == ["EmailSubmission/set", "Email/set"]
    assert resp[1][2] == "0"  # §7.5: the implicit call answers with the same call id
    assert resp[1][1]["updated"] == {email_id: None}
    got = alice.ok("Email/get", ids=[email_id], properties=["mailboxIds", "keywords"])["list"][0]
    assert got == {"id": email_id, "mailboxIds": {sent: True}, "keywords": {}}


def test_on_success_destroy_email_destroys_it_and_the_send_goes_on(alice, relay):
    email_id = draft(alice, unique("destroy "), to=[{"email": "carol@remote.test"}])
    resp = alice.request([["EmailSubmission/set", {
        "accountId": alice.account_id, "create": {"k": {"emailId": email_id, "identityId": identity_id(alice)}},
        "onSuccessDestroyEmail": ["#k"]}, "0"]])["methodResponses"]
    assert resp[1][0] == "Email/set" and resp[1][1]["destroyed"] == [email_id]
    assert alice.ok("Email/get", ids=[email_id])["notFound"] == [email_id]
    assert len(relay.handler.wait_for(1)) == 1


def test_on_success_arguments_apply_to_updated_and_destroyed_submissions_by_id(alice):
    kept, gone = draft(alice, unique("kept ")), draft(alice, unique("gone "))
    hold = {"mailFrom": {"email": "alice@example.org", "parameters": {"HOLDFOR": "600"}},
            "rcptTo": [{"email": "carol@remote.test"}]}
    s1 = submit(alice, kept, envelope=hold)["created"]["s"]["id"]
    s2 = submit(alice, gone, envelope=hold)["created"]["s"]["id"]
    resp = alice.request([["EmailSubmission/set", {
        "accountId": alice.account_id, "update": {s1: {"undoStatus": "canceled"}}, "destroy": [s2],
        "onSuccessUpdateEmail": {s1: {"keywords/$canceled": True}}, "onSuccessDestroyEmail": [s2, "Unope"]},
        "0"]])["methodResponses"]
    assert resp[0][1]["updated"] == {s1: {"deliveryStatus": {"carol@remote.test": {
        "smtpReply": "554 5.0.0 canceled by the sender before delivery", "delivered": "no",
        "displayed": "unknown"}}}}
    assert resp[0][1]["destroyed"] == [s2]
    assert resp[1][0] == "Email/set"
    assert resp[1][1]["updated"] == {kept: None} and resp[1][1]["destroyed"] == [gone]
    assert alice.ok("Email/get", ids=[kept], properties=["keywords"])["list"][0]["keywords"] == {
        "$draft": True, "$canceled": True}


def test_nothing_is_done_to_the_email_when_the_submission_fails(alice):
    email_id = draft(alice, unique("kept "), **{"from": [{"email": "mallory@evil.test"}]},
                     to=[{"email": "carol@remote.test"}])
    resp = alice.request([["EmailSubmission/set", {
        "accountId": alice.account_id, "create": {"k": {"emailId": email_id, "identityId": identity_id(alice)}},
        "onSuccessDestroyEmail": ["#k"]}, "0"]])["methodResponses"]
    assert resp[0][1]["notCreated"]["k"]["type"] == "forbiddenFrom"
    assert [r[0] for r in resp] == ["EmailSubmission/set", "Email/set"]
    assert resp[1][1]["destroyed"] is None
    assert alice.ok("Email/get", ids=[email_id])["list"]


# ------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("headers, envelope, error", [
    ({"from": [{"email": "mallory@evil.test"}], "to": [{"email": "c@remote.test"}]}, None, "forbiddenFrom"),
    ({"to": [{"email": "c@remote.test"}]}, {"mailFrom": {"email": "boss@evil.test"},
                                           "rcptTo": [{"email": "c@remote.test"}]}, "forbiddenMailFrom"),
    ({"to": [{"email": "c@remote.test"}]}, {"mailFrom": {"email": ""}, "rcptTo": [{"email": "c@remote.test"}]},
     "forbiddenMailFrom"),
    ({}, None, "noRecipients"),
    ({"to": [{"email": "c@remote.test"}]}, {"mailFrom": {"email": "alice@example.org"}, "rcptTo": []},
     "noRecipients"),
])
def test_a_submission_that_may_not_be_sent_is_refused_with_the_rfc_error(alice, relay, headers, envelope, error):
    email_id = draft(alice, unique("refused "), **headers)
    extra = {"envelope": envelope} if envelope is not None else {}
    res = submit(alice, email_id, **extra)
    assert res["created"] is None
    assert res["notCreated"]["s"]["type"] == error, res
    assert res["notCreated"]["s"]["description"]
    time.sleep(0.3)
    assert relay.handler.received == []


def test_invalid_recipients_are_listed(alice):
    email_id = draft(alice, unique("badrcpt "), to=[{"email": "c@remote.test"}])
    res = submit(alice, email_id, envelope={"mailFrom": {"email": "alice@example.org"},
                                            "rcptTo": [{"email": "ok@remote.test"}, {"email": "no spaces@x.test"},
                                                       {"email": "noat"}]})
    err = res["notCreated"]["s"]
    assert err["type"] == "invalidRecipients" and err["invalidRecipients"] == ["no spaces@x.test", "noat"]


def test_too_many_recipients_names_the_maximum(alice):
    email_id = draft(alice, unique("many "), to=[{"email": "c@remote.test"}])
    rcpts = [{"email": f"r{i}@remote.test"} for i in range(101)]
    err = submit(alice, email_id, envelope={"mailFrom": {"email": "alice@example.org"}, "rcptTo": rcpts})[
        "notCreated"]["s"]
    assert err["type"] == "tooManyRecipients" and err["maxRecipients"] == 100


def test_unknown_email_and_identity_are_both_listed_as_invalid_properties(alice):
    res = alice.ok("EmailSubmission/set", create={"s": {"emailId": "M00000fffff", "identityId": "Inope",
                                                        "envelope": {"mailFrom": "x"}}})
    err = res["notCreated"]["s"]
    assert err["type"] == "invalidProperties"
    assert sorted(err["properties"]) == ["emailId", "envelope", "identityId"]


def test_server_set_and_immutable_properties_cannot_be_changed(alice):
    email_id = draft(alice, unique("immutable "), to=[{"email": "c@remote.test"}])
    sid = submit(alice, email_id)["created"]["s"]["id"]
    res = alice.ok("EmailSubmission/set", update={sid: {"emailId": "M0000000001", "threadId": "T1",
                                                        "undoStatus": "pending"}})
    err = res["notUpdated"][sid]
    assert err["type"] == "invalidProperties" and sorted(err["properties"]) == ["emailId", "threadId", "undoStatus"]


# ------------------------------------------------------------------------------ delayed send, cancel
def test_a_held_submission_is_sent_at_its_release_time_not_before(alice, relay):
    email_id = draft(alice, unique("hold "), to=[{"email": "carol@remote.test"}])
    before = time.time()
    created = submit(alice, email_id, envelope={"mailFrom": {"email": "alice@example.org",
                                                             "parameters": {"HOLDFOR": "2"}},
                                                "rcptTo": [{"email": "carol@remote.test"}]})["created"]["s"]
    send_at = time.mktime(time.strptime(created["sendAt"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert before + 1 <= send_at <= before + 3
    time.sleep(1.0)
    assert relay.handler.received == []
    assert alice.ok("EmailSubmission/get", ids=[created["id"]])["list"][0]["undoStatus"] == "pending"
    got = relay.handler.wait_for(1)[0]
    assert time.time() >= send_at - 0.5
    assert got.mail_options == []  # HOLDFOR is done here, not passed on


def test_a_pending_submission_can_be_canceled_and_is_never_sent(alice, relay):
    email_id = draft(alice, unique("cancel "), to=[{"email": "carol@remote.test"}])
    sid = submit(alice, email_id, envelope={"mailFrom": {"email": "alice@example.org",
                                                         "parameters": {"HOLDFOR": "1"}},
                                            "rcptTo": [{"email": "carol@remote.test"}]})["created"]["s"]["id"]
    res = alice.ok("EmailSubmission/set", update={sid: {"undoStatus": "canceled"}})
    assert sid in res["updated"]
    sub = alice.ok("EmailSubmission/get", ids=[sid])["list"][0]
    assert sub["undoStatus"] == "canceled" and sub["deliveryStatus"]["carol@remote.test"]["delivered"] == "no"
    time.sleep(2.0)
    assert relay.handler.received == []


def test_a_submission_waiting_for_a_retry_is_still_pending_and_can_be_canceled(alice, relay):
    relay.handler.rcpt_replies["later@remote.test"] = "450 4.2.0 try later"
    email_id = draft(alice, unique("retry cancel "), to=[{"email": "later@remote.test"}])
    sid = submit(alice, email_id)["created"]["s"]["id"]
    sub = wait_status(alice, sid, lambda s: s["deliveryStatus"]["later@remote.test"]["smtpReply"].startswith("450"))
    assert sub["undoStatus"] == "pending"  # nobody has the message yet (§7 final)
    deadline = time.time() + 10
    while True:  # an attempt may be under way at this very moment: then cannotUnsend, and again
        res = alice.ok("EmailSubmission/set", update={sid: {"undoStatus": "canceled"}})
        if res["updated"]:
            break
        assert res["notUpdated"][sid]["type"] == "cannotUnsend" and time.time() < deadline
        time.sleep(0.05)
    del relay.handler.rcpt_replies["later@remote.test"]
    time.sleep(1.5)
    assert relay.handler.received == []
    sub = alice.ok("EmailSubmission/get", ids=[sid])["list"][0]
    assert sub["undoStatus"] == "canceled"
    assert sub["deliveryStatus"]["later@remote.test"]["smtpReply"].startswith("554 5.0.0 ")


def test_a_foreign_sender_field_is_forbidden_like_a_foreign_from(alice, relay):
    email_id = draft(alice, unique("sender "), to=[{"email": "carol@remote.test"}],
                     sender=[{"email": "bob@example.org"}])
    err = submit(alice, email_id)["notCreated"]["s"]
    assert err["type"] == "forbiddenFrom" and "bob@example.org" in err["description"]
    email_id = draft(alice, unique("own sender "), to=[{"email": "carol@remote.test"}],
                     sender=[{"email": "alice@example.net"}])
    created = submit(alice, email_id)["created"]["s"]
    # §7: the Sender address, unless the identity does not allow it: then the identity's
    assert created["envelope"]["mailFrom"]["email"] == "alice@example.org"
    assert relay.handler.wait_for(1)[0].mail_from == "alice@example.org"


def test_an_envelope_names_each_recipient_once(alice, relay):
    email_id = draft(alice, unique("dups "), to=[{"email": "dup@remote.test"}])
    created = submit(alice, email_id, envelope={"mailFrom": {"email": "alice@example.org"}, "rcptTo": [
        {"email": "dup@remote.test"}, {"email": "DUP@remote.test"}, {"email": "other@remote.test"},
        {"email": "dup@remote.test"}]})["created"]["s"]
    assert [r["email"] for r in created["envelope"]["rcptTo"]] == ["dup@remote.test", "other@remote.test"]
    assert relay.handler.wait_for(1)[0].rcpt_tos == ["dup@remote.test", "other@remote.test"]


def test_an_unknown_undo_status_in_a_filter_is_invalid_arguments(alice):
    name, res = alice.call("EmailSubmission/query", filter={"undoStatus": "bogus"})
    assert name == "error" and res["type"] == "invalidArguments"


def test_a_sent_submission_cannot_be_unsent(alice, relay):
    email_id = draft(alice, unique("unsend "), to=[{"email": "carol@remote.test"}])
    sid = submit(alice, email_id)["created"]["s"]["id"]
    wait_status(alice, sid, lambda s: s["undoStatus"] == "final")
    err = alice.ok("EmailSubmission/set", update={sid: {"undoStatus": "canceled"}})["notUpdated"][sid]
    assert err["type"] == "cannotUnsend"


def test_a_release_beyond_max_delayed_send_is_refused(alice):
    cap = alice.session["accounts"][alice.account_id]["accountCapabilities"]["urn:ietf:params:jmap:submission"]
    email_id = draft(alice, unique("far "), to=[{"email": "carol@remote.test"}])
    err = submit(alice, email_id, envelope={"mailFrom": {"email": "alice@example.org",
                                                         "parameters": {"HOLDFOR": str(cap["maxDelayedSend"] + 60)}},
                                            "rcptTo": [{"email": "carol@remote.test"}]})["notCreated"]["s"]
    assert err["type"] == "invalidProperties" and err["properties"] == ["envelope"]


# ------------------------------------------------------------------------------ retries and failures
def test_temporary_failures_are_retried_until_the_relay_accepts(alice, relay, server):
    relay.handler.data_failures[:] = ["451 4.3.0 try later", "421 4.3.2 busy"]
    email_id = draft(alice, unique("retry "), to=[{"email": "carol@remote.test"}])
    sid = submit(alice, email_id)["created"]["s"]["id"]
    try:
        got = relay.handler.wait_for(1, timeout=20)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {alice.ok('EmailSubmission/get', ids=[sid])}; server log:\n"
                             + (server.data / f"server-{server.port}.log").read_text()[-3000:]) from None
    assert len(got) == 1 and relay.handler.data_failures == []
    sub = wait_status(alice, sid, settled)
    assert sub["deliveryStatus"]["carol@remote.test"]["delivered"] == "unknown"


def test_a_permanent_refusal_of_one_recipient_is_final_for_it_only(alice, relay):
    relay.handler.rcpt_replies["gone@remote.test"] = "550 5.1.1 <gone@remote.test>: user unknown"
    email_id = draft(alice, unique("perm "), to=[{"email": "gone@remote.test"}, {"email": "carol@remote.test"}])
    sid = submit(alice, email_id)["created"]["s"]["id"]
    sub = wait_status(alice, sid, settled)
    assert sub["deliveryStatus"]["gone@remote.test"] == {
        "smtpReply": "550 5.1.1 <gone@remote.test>: user unknown", "delivered": "no", "displayed": "unknown"}
    assert sub["deliveryStatus"]["carol@remote.test"]["delivered"] == "unknown"
    assert relay.handler.wait_for(1)[0].rcpt_tos == ["carol@remote.test"]


def test_a_temporary_refusal_shows_in_delivery_status_while_it_is_retried(alice, relay):
    relay.handler.rcpt_replies["slow@remote.test"] = "450 4.2.0 mailbox busy"
    email_id = draft(alice, unique("busy "), to=[{"email": "slow@remote.test"}])
    sid = submit(alice, email_id)["created"]["s"]["id"]
    sub = wait_status(alice, sid, lambda s: s["deliveryStatus"]["slow@remote.test"]["smtpReply"].startswith("450"))
    assert sub["deliveryStatus"]["slow@remote.test"]["delivered"] == "queued"
    del relay.handler.rcpt_replies["slow@remote.test"]
    wait_status(alice, sid, settled, timeout=20)
    assert relay.handler.wait_for(1)[0].rcpt_tos == ["slow@remote.test"]


def test_messages_in_a_row_share_one_relay_connection_and_a_closed_one_is_replaced(alice, relay):
    before = relay.handler.greetings
    for i in range(3):
        sid = submit(alice, draft(alice, unique(f"row{i} "), to=[{"email": "carol@remote.test"}]))["created"]["s"]["id"]
        wait_status(alice, sid, settled)
    assert len(relay.handler.wait_for(3)) == 3
    assert relay.handler.greetings - before <= 1  # 0 when a connection of an earlier test was still open
    # the relay restarts: the idle connection is dead, the next message goes on a new one
    relay.restart()
    sid = submit(alice, draft(alice, unique("after restart "), to=[{"email": "carol@remote.test"}]))["created"]["s"]
    assert wait_status(alice, sid["id"], settled)["deliveryStatus"]["carol@remote.test"]["delivered"] == "unknown"
    assert len(relay.handler.wait_for(4)) == 4


def test_the_queue_survives_a_kill_and_sends_each_message_exactly_once(tmp_path):
    port = free_port()
    tidings("user", "add", "alice", "--password", "pw", "--email", "alice@example.org", data=tmp_path)
    extra = ("--smtp-relay", f"127.0.0.1:{port}", "--smtp-security", "none")
    srv = Server(tmp_path, extra=extra, env={"TIDINGS_SMTP_RETRY_BASE": "0.3"})
    try:
        client = Jmap(srv, "alice", "pw")
        subjects = [unique("queued ") for _ in range(5)]
        ids = [submit(client, draft(client, s, to=[{"email": "carol@remote.test"}]))["created"]["s"]["id"]
               for s in subjects]
        # no relay is listening: every attempt fails temporarily and the entries wait in the queue
        wait_status(client, ids[-1], lambda s: s["deliveryStatus"]["carol@remote.test"]["smtpReply"].startswith("451"))
    finally:
        srv.stop(kill=True)
    relay = Relay(port)
    try:
        srv = Server(tmp_path, extra=extra, env={"TIDINGS_SMTP_RETRY_BASE": "0.3"})
        try:
            client = Jmap(srv, "alice", "pw")
            got = relay.handler.wait_for(5, timeout=20)
            time.sleep(1.5)  # anything sent twice would arrive by now
            assert len(relay.handler.received) == 5
            assert sorted(g.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for g in got) == sorted(subjects)
            for sid in ids:
                wait_status(client, sid, settled)
        finally:
            srv.stop()
    finally:
        relay.stop()


def test_without_a_relay_only_local_recipients_are_accepted(tmp_path):
    tidings("user", "add", "alice", "--password", "pw", "--email", "alice@example.org", data=tmp_path)
    tidings("user", "add", "bob", "--password", "pw", "--email", "bob@example.org", data=tmp_path)
    srv = Server(tmp_path)
    try:
        client = Jmap(srv, "alice", "pw")
        email_id = draft(client, unique("norelay "), to=[{"email": "carol@remote.test"}, {"email": "bob@example.org"}])
        err = submit(client, email_id)["notCreated"]["s"]
        assert err["type"] == "invalidRecipients" and err["invalidRecipients"] == ["carol@remote.test"]
        email_id = draft(client, unique("local only "), to=[{"email": "bob@example.org"}])
        sid = submit(client, email_id)["created"]["s"]["id"]
        assert wait_status(client, sid, settled)["deliveryStatus"]["bob@example.org"]["delivered"] == "yes"
    finally:
        srv.stop()


# ------------------------------------------------------------------------------ get, query, changes
def test_query_filters_and_sorts_submissions_and_changes_reports_them(alice):
    state = alice.ok("EmailSubmission/get", ids=[])["state"]
    first = draft(alice, unique("q1 "), to=[{"email": "carol@remote.test"}])
    second = draft(alice, unique("q2 "), to=[{"email": "carol@remote.test"}])
    s1 = submit(alice, first)["created"]["s"]["id"]
    s2 = submit(alice, second, envelope={"mailFrom": {"email": "alice@example.org", "parameters": {"HOLDFOR": "600"}},
                                         "rcptTo": [{"email": "carol@remote.test"}]})["created"]["s"]["id"]
    assert alice.ok("EmailSubmission/query", filter={"emailIds": [second]})["ids"] == [s2]
    wait_status(alice, s1, lambda s: s["undoStatus"] == "final")  # once the relay has it
    assert alice.ok("EmailSubmission/query", filter={"undoStatus": "pending", "emailIds": [first, second]})["ids"] \
        == [s2]
    ordered = alice.ok("EmailSubmission/query", filter={"emailIds": [first, second]},
                       sort=[{"property": "sentAt", "isAscending": False}])["ids"]
    assert ordered == [s2, s1]
    changes = alice.ok("EmailSubmission/changes", sinceState=state)
    assert set(changes["created"]) == {s1, s2}
    alice.ok("EmailSubmission/set", update={s2: {"undoStatus": "canceled"}})
    assert alice.ok("EmailSubmission/query", filter={"undoStatus": "canceled", "emailIds": [second]})["ids"] == [s2]
    res = alice.ok("EmailSubmission/set", destroy=[s2])
    assert res["destroyed"] == [s2]


def test_an_unknown_filter_is_unsupported_filter(alice):
    name, res = alice.call("EmailSubmission/query", filter={"subject": "x"})
    assert name == "error" and res["type"] == "unsupportedFilter"


# ------------------------------------------------------------------------------------ Identity
def test_identity_for_an_alias_or_a_whole_domain_can_be_created(alice):
    res = alice.ok("Identity/set", create={
        "a": {"name": "Al", "email": "al@example.com"},
        "d": {"email": "*@example.net", "replyTo": [{"name": "Desk", "email": "desk@example.net"}]},
        "x": {"email": "alice@evil.test"}})
    assert res["created"]["a"]["mayDelete"] is True and res["created"]["a"]["id"].startswith("I")
    assert res["created"]["d"]["textSignature"] == "" and res["created"]["d"]["bcc"] is None
    assert res["notCreated"]["x"]["type"] == "forbiddenFrom"
    got = alice.ok("Identity/get", ids=[res["created"]["a"]["id"]])["list"][0]
    assert (got["name"], got["email"]) == ("Al", "al@example.com")
    assert alice.ok("Identity/set", destroy=[got["id"]])["destroyed"] == [got["id"]]


def test_identity_create_lists_every_bad_property(alice):
    err = alice.ok("Identity/set", create={"a": {"email": 5, "replyTo": [{"mail": "x"}], "bcc": "no",
                                                 "mayDelete": True, "colour": "red"}})["notCreated"]["a"]
    assert err["type"] == "invalidProperties"
    assert sorted(err["properties"]) == ["bcc", "colour", "email", "mayDelete", "replyTo"]


def test_the_default_identity_can_be_edited_but_not_destroyed(alice, bob):
    default = identity_id(bob)
    state = bob.ok("Identity/get", ids=[])["state"]
    res = bob.ok("Identity/set", update={default: {"name": "Robert", "textSignature": "-- \nBob"}})
    assert res["updated"] == {default: None}
    got = bob.ok("Identity/get", ids=[default])["list"][0]
    assert (got["name"], got["textSignature"], got["email"], got["mayDelete"]) == (
        "Robert", "-- \nBob", "bob@example.org", False)
    changes = bob.ok("Identity/changes", sinceState=state)
    assert (changes["created"], changes["updated"]) == ([], [default])  # it existed before it was stored
    err = bob.ok("Identity/set", destroy=[default])["notDestroyed"][default]
    assert err["type"] == "forbidden"
    err = bob.ok("Identity/set", update={default: {"email": "robert@example.org"}})["notUpdated"][default]
    assert err["type"] == "invalidProperties" and err["properties"] == ["email"]


def test_identities_of_another_user_are_not_visible(alice, bob):
    created = alice.ok("Identity/set", create={"a": {"email": "alice@example.net"}})["created"]["a"]["id"]
    assert bob.ok("Identity/get", ids=[created])["notFound"] == [created]
    name, res = bob.call("Identity/get", accountId=alice.account_id)
    assert name == "error" and res["type"] == "accountNotFound"


def test_the_session_advertises_delayed_send(alice):
    cap = alice.session["accounts"][alice.account_id]["accountCapabilities"]["urn:ietf:params:jmap:submission"]
    assert cap["maxDelayedSend"] == 30 * 86400
    assert "FUTURERELEASE" in cap["submissionExtensions"]


def test_relay_over_starttls_with_login(tmp_path):
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    relay = Relay(free_port(), tls_context=context, logins={"tidings": "relay-secret"})
    (tmp_path / "pw").write_text("relay-secret\n")
    data = tmp_path / "data"
    data.mkdir()
    tidings("user", "add", "alice", "--password", "pw", "--email", "alice@example.org", data=data)
    srv = Server(data, extra=("--smtp-relay", f"127.0.0.1:{relay.port}", "--smtp-security", "starttls",
                              "--smtp-user", "tidings", "--smtp-password-file", str(tmp_path / "pw"),
                              "--smtp-ca-file", str(ca_file)))
    try:
        client = Jmap(srv, "alice", "pw")
        sid = submit(client, draft(client, unique("tls "), to=[{"email": "carol@remote.test"}]))["created"]["s"]["id"]
        assert relay.handler.wait_for(1)[0].rcpt_tos == ["carol@remote.test"]
        assert relay.logins == ["tidings"]
        assert wait_status(client, sid, settled)["deliveryStatus"]["carol@remote.test"]["delivered"] == "unknown"
    finally:
        srv.stop()
        relay.stop()


def test_serve_refuses_a_malformed_relay_address(tmp_path):
    res = tidings("serve", "--smtp-relay", "host:notaport", "--port", str(free_port()), data=tmp_path, check=False)
    assert res.returncode != 0 and "relay" in res.stderr


def test_user_alias_lists_adds_and_removes(tmp_path):
    tidings("user", "add", "carol", "--password", "pw", "--email", "carol@example.org", data=tmp_path)
    out = tidings("user", "alias", "carol", "c@example.org", "@example.info", data=tmp_path).stdout
    assert "alias c@example.org" in out and "alias @example.info" in out
    out = tidings("user", "alias", "carol", "--remove", "c@example.org", data=tmp_path).stdout
    assert "c@example.org" not in out and "@example.info" in out
    res = tidings("user", "alias", "carol", "--remove", "nope@example.org", data=tmp_path, check=False)
    assert res.returncode == 1 and "not an alias" in res.stderr
    tidings("user", "add", "dan", "--password", "pw", "--email", "dan@example.org", data=tmp_path)
    res = tidings("user", "alias", "dan", "@example.info", data=tmp_path, check=False)
    assert res.returncode == 1 and "carol" in res.stderr


def test_http_client_is_available():
    assert httpx  # the module-level import is used by the helpers above
