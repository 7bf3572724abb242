"""Bad input to EmailSubmission, PushSubscription, Identity, patches and result references gets a
clear error and no traceback (cases o04, o06, o09 of ../shared/cases/operations/README.md), through
a real `tidings serve` with a real SMTP relay (aiosmtpd) and a real push receiver on loopback.

What the relay receives is checked byte for byte: a parameter is one parameter, never a second one
or a second command; a recipient the relay cannot take ends as a failed delivery with one log line."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from app.submission import deliverer as deliverer_module
from tests.conftest import CORE, MAIL, Jmap, Server, tidings, unique
from tests.test_pushsubscription import Receiver

ENV = {"TIDINGS_SMTP_RETRY_BASE": "0.3", "TIDINGS_PUSH_RETRY_BASE": "0.05"}




@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, relay):
    data = tmp_path_factory.mktemp("hardening")
    for name in ("alice", "pushy"):
        tidings("user", "add", name, "--password", f"{name}-pw", "--email", f"{name}@example.org", data=data)
    srv = Server(data, extra=("--smtp-relay", f"127.0.0.1:{relay.port}", "--smtp-security", "none",
                              "--push-allow-http"), env=ENV)
    yield srv
    srv.stop()


@pytest.fixture
def alice(server, relay) -> Jmap:
    relay.handler.received.clear()
    relay.handler.taken = 0
    return Jmap(server, "alice", "alice-pw")


def log_text(server: Server) -> str:
    return server.log_path.read_text()


# ------------------------------------------------------------------------------------ helpers
def identity_id(client: Jmap) -> str:
    return client.ok("Identity/get", ids=None)["list"][0]["id"]


def draft(client: Jmap, to: list[str]) -> str:
    res = client.ok("Email/set", create={"d": {
        "mailboxIds": {client.mailbox("drafts"): True}, "keywords": {"$draft": True},
        "from": [{"email": "alice@example.org"}], "to": [{"email": a} for a in to], "subject": unique("h "),
        "bodyValues": {"b": {"value": "body"}}, "textBody": [{"partId": "b", "type": "text/plain"}]}})
    assert res["created"], res
    return res["created"]["d"]["id"]


def submit(client: Jmap, envelope: dict | None, to: list[str] | None = None) -> dict:
    """The EmailSubmission/set response of one create (envelope None: derived from the message)."""
    rcpts = to or [r["email"] for r in (envelope or {}).get("rcptTo", [])] or ["carol@remote.test"]
    sub = {"emailId": draft(client, rcpts), "identityId": identity_id(client)}
    if envelope is not None:
        sub["envelope"] = envelope
    return client.ok("EmailSubmission/set", create={"s": sub})


def envelope(mail_params=None, rcpt_params=None, mail_from="alice@example.org",
             rcpt="carol@remote.test") -> dict:
    return {"mailFrom": {"email": mail_from, "parameters": mail_params},
            "rcptTo": [{"email": rcpt, "parameters": rcpt_params}]}


def wait_settled(client: Jmap, sid: str, timeout: float = 20) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        sub = client.ok("EmailSubmission/get", ids=[sid])["list"][0]
        if all(s["delivered"] != "queued" for s in sub["deliveryStatus"].values()):
            return sub
        time.sleep(0.1)
    raise AssertionError(f"never settled: {sub}")


# ------------------------------------------------------------------- envelope parameters (o04)
@pytest.mark.parametrize("mail_params, rcpt_params", [
    ({"BODY": "8BITMIME AUTH=<ceo@example.org>"}, None),  # a space would start a second parameter
    (None, {"NOTIFY": "NEVER ORCPT=rfc822;evil@x.y"}),
    ({"BODY": "8BITMIME\r\nRCPT TO:<evil@x.y>"}, None),  # a second command
    (None, {"NOTIFY": "NEVER\nRCPT TO:<evil@x.y>"}),
    ({"ENVID": "ü"}, None),  # esmtp-value is ASCII
    ({"ENVID": "a=b"}, None),  # "=" is not in esmtp-value
    ({"ENVID": ""}, None),  # 1*: an empty value is no value (null is)
    ({"ENVID": "x" * 501}, None),
    ({"BO DY": "8BITMIME"}, None),  # esmtp-keyword
    ({"-X": None}, None),
    ({"": None}, None),
    ({"X" * 65: None}, None),
    ({"BODY": "8BITMIME", "body": "7BIT"}, None),  # the same parameter twice
    ({f"X-{i}": None for i in range(17)}, None),
    ({"AUTH": "<ceo@example.org>"}, None),  # the submitter is the server's to assert (RFC 4954 §5)
    ({"BODY": 5}, None),
    (["BODY"], None),
])
def test_envelope_parameters_that_cannot_be_one_smtp_parameter_are_refused(alice, mail_params, rcpt_params):
    before = alice.ok("EmailSubmission/get", ids=[])["state"]
    res = submit(alice, envelope(mail_params, rcpt_params))
    err = res["notCreated"]["s"]
    assert err["type"] == "invalidProperties" and err["properties"] == ["envelope"], err
    assert "Traceback" not in err["description"] and len(err["description"]) < 400
    assert alice.ok("EmailSubmission/get", ids=[])["state"] == before


@pytest.mark.parametrize("mail_from", [" alice@example.org", "alice@example.org\r\n", "alice@example.org ",
                                       "<alice@example.org>", "alice@example.org\r\nRCPT TO:<evil@x.y>"])
def test_an_envelope_sender_that_is_not_one_address_is_refused(alice, mail_from):
    err = submit(alice, envelope(mail_from=mail_from))["notCreated"]["s"]
    assert err["type"] == "invalidProperties" and err["properties"] == ["envelope"], err


def test_valid_parameters_reach_the_relay_as_sent_and_a_keyword_alone_is_allowed(alice, relay):
    sid = submit(alice, envelope({"BODY": "8BITMIME", "SIZE": "1000"}))["created"]["s"]["id"]
    got = relay.handler.wait_for(1)[0]
    assert got.mail_options == ["BODY=8BITMIME", "SIZE=1000"]
    assert wait_settled(alice, sid)["deliveryStatus"]["carol@remote.test"]["delivered"] == "unknown"
    # RFC 8621 §7: a parameter's value may be null, the keyword alone; aiosmtpd does not know this
    # RCPT parameter and says so (555), which shows it arrived as one parameter
    sid = submit(alice, envelope(None, {"XTEST": None}))["created"]["s"]["id"]
    status = wait_settled(alice, sid)["deliveryStatus"]["carol@remote.test"]
    assert status["delivered"] == "no" and status["smtpReply"].startswith("555 "), status


# ----------------------------------------------------------------------- FUTURERELEASE (o09)
@pytest.mark.parametrize("params", [
    {"HOLDFOR": "²"}, {"HOLDFOR": "٣٠"}, {"HOLDFOR": "1234567890"}, {"HOLDFOR": None}, {"HOLDFOR": "-5"},
    {"HOLDFOR": "30", "HOLDUNTIL": "2026-12-02T10:00:00Z"},
    {"HOLDUNTIL": "2026-12-02"}, {"HOLDUNTIL": "2026-12-02T10:00:00"}, {"HOLDUNTIL": "2026-13-02T10:00:00Z"},
    {"HOLDUNTIL": "٢٠٢٦-12-02T10:00:00Z"}, {"HOLDUNTIL": "2026-12-02T10:00Z"},
])
def test_futurerelease_values_other_than_rfc4865_are_invalid_properties(alice, params):
    name, res = alice.call("EmailSubmission/set", create={"s": {
        "emailId": draft(alice, ["carol@remote.test"]), "identityId": identity_id(alice),
        "envelope": envelope(params)}})
    assert name == "EmailSubmission/set", res  # never serverFail
    err = res["notCreated"]["s"]
    assert err["type"] == "invalidProperties" and err["properties"] == ["envelope"], err


def test_a_holduntil_with_a_zone_is_accepted(alice):
    at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 600))
    created = submit(alice, envelope({"holduntil": at.replace("T", "t")}))["created"]["s"]
    assert created["sendAt"] == at.replace("+00:00", "Z")
    assert alice.ok("EmailSubmission/set", update={created["id"]: {"undoStatus": "canceled"}})["updated"]


# ------------------------------------------------------------------ non-ASCII addresses (SMTPUTF8)
@pytest.fixture
def no_smtputf8(relay):
    """The relay without the SMTPUTF8 extension (aiosmtpd's Controller offers it by default)."""
    relay._kwargs["enable_SMTPUTF8"] = False
    relay.restart()  # tidings' idle connection breaks; the next one learns the extensions again
    yield relay
    relay._kwargs.pop("enable_SMTPUTF8")
    relay.restart()


def test_a_non_ascii_recipient_fails_for_good_at_a_relay_without_smtputf8(alice, no_smtputf8, server):
    sid = submit(alice, None, to=["jörg@bücher.example", "carol@remote.test"])["created"]["s"]["id"]
    sub = wait_settled(alice, sid)
    status = sub["deliveryStatus"]["jörg@bücher.example"]
    assert status["delivered"] == "no" and status["smtpReply"].startswith("553 5.6.7 "), status
    assert sub["deliveryStatus"]["carol@remote.test"]["delivered"] == "unknown"
    assert sub["undoStatus"] == "final"
    got = no_smtputf8.handler.wait_for(1)[0]
    assert got.rcpt_tos == ["carol@remote.test"] and "SMTPUTF8" not in got.mail_options
    log = log_text(server)
    assert "Traceback" not in log and "UnicodeEncodeError" not in log
    assert sum("jörg@bücher.example" in line for line in log.splitlines()) == 1  # one warning line


def test_every_recipient_failing_for_good_makes_the_submission_final(alice, no_smtputf8):
    sid = submit(alice, None, to=["jörg@bücher.example"])["created"]["s"]["id"]
    sub = wait_settled(alice, sid)
    assert sub["deliveryStatus"]["jörg@bücher.example"]["delivered"] == "no"
    assert sub["undoStatus"] == "final"  # not pending for ever: nothing is left to cancel
    err = alice.ok("EmailSubmission/set", update={sid: {"undoStatus": "canceled"}})["notUpdated"][sid]
    assert err["type"] == "cannotUnsend"


def test_non_ascii_addresses_go_with_smtputf8_when_the_relay_offers_it(alice, relay):
    sid = submit(alice, None, to=["jörg@bücher.example", "carol@remote.test"])["created"]["s"]["id"]
    got = relay.handler.wait_for(1)[0]
    assert got.rcpt_tos == ["jörg@bücher.example", "carol@remote.test"] and "SMTPUTF8" in got.mail_options
    status = wait_settled(alice, sid)["deliveryStatus"]
    assert {s["delivered"] for s in status.values()} == {"unknown"}


# --------------------------------------------------------- an attempt that fails inside tidings
class _Writer:
    def __init__(self, records: dict):
        self.records = records
        self.account_id = "A1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def record(self, _collection, record_id):
        return self.records.get(record_id)

    def update_record(self, _collection, record_id, record):
        self.records[record_id] = record

    def destroy_record(self, _collection, record_id):
        self.records.pop(record_id, None)

    def release_blob(self, *_):
        pass


class _Store:
    def __init__(self, entry: dict):
        self.records = {entry["id"]: entry}

    def write(self, _account):
        return _Writer(self.records)


def test_an_attempt_that_fails_inside_tidings_logs_one_line_and_ends_as_a_failed_delivery(
        tmp_path, caplog, monkeypatch):
    entry = {"id": "Q1", "mailFrom": "a@example.org", "rcptTo": [{"email": "b@remote.test", "parameters": None}],
             "blobId": "G1", "submissionId": None, "due": 0, "attempts": 0, "created": time.time(),
             "status": {"b@remote.test": {"smtpReply": "250 2.0.0 queued", "delivered": "queued"}}}
    store = _Store(entry)
    d = deliverer_module.Deliverer(store, str(tmp_path), bus=None, relay_config=None)
    monkeypatch.setattr(deliverer_module, "RETRY_BASE", 0.0)

    def take(account_id, entry_id):
        current = store.records.get(entry_id)
        if current is None:
            return None
        current.update(leased=True, attempts=current["attempts"] + 1)
        return current, b"raw"

    async def send(_entry, _raw):
        raise ValueError("Address contains characters that are not allowed")

    monkeypatch.setattr(d, "_take", take)
    monkeypatch.setattr(d, "_send", send)
    caplog.set_level(logging.INFO, logger="tidings.submission")
    for attempt in range(deliverer_module.MAX_INTERNAL_FAILURES):
        assert "Q1" in store.records, attempt
        asyncio.run(d._attempt("A1", "Q1"))
    assert "Q1" not in store.records  # given up: removed, the recipient's outcome recorded
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == deliverer_module.MAX_INTERNAL_FAILURES  # one line an attempt
    assert all(r.exc_info is None for r in errors)
    assert "given up" in errors[-1].getMessage() and "tried again" in errors[0].getMessage()
    assert entry["status"]["b@remote.test"]["delivered"] == "no"
    assert entry["status"]["b@remote.test"]["smtpReply"].startswith("554 5.3.0 ")


# ----------------------------------------------------------------------------- patch paths (o06)
def test_a_huge_patch_path_is_a_quick_invalid_patch_with_a_short_description(alice):
    email_id = draft(alice, ["carol@remote.test"])
    for path in ("keywords/" + "a/" * 40000 + "b", "keywords/" + "a/" * 150 + "b", "keywords/" + "x" * 5000):
        started = time.monotonic()
        res = alice.ok("Email/set", update={email_id: {path: True}})
        assert time.monotonic() - started < 2.0
        err = res["notUpdated"][email_id]
        assert err["type"] == "invalidPatch", err
        assert len(err["description"]) < 300, len(err["description"])
    mailbox = alice.ok("Mailbox/set", create={"m": {"name": unique("box")}})["created"]["m"]["id"]
    err = alice.ok("Mailbox/set", update={mailbox: {"name/" + "a/" * 40000: 1}})["notUpdated"][mailbox]
    assert err["type"] == "invalidPatch" and len(err["description"]) < 300
    # an ordinary patch still works
    assert email_id in alice.ok("Email/set", update={email_id: {"keywords/$seen": True}})["updated"]


# ------------------------------------------------------------------ result references (o09)
@pytest.mark.parametrize("index", ["²", "٠", "01", "00", "-1", "+0", " 0", "1e0", "9" * 40])
def test_a_result_reference_index_must_be_an_rfc6901_array_index(alice, index):
    calls = [["Mailbox/query", {"accountId": alice.account_id}, "q"],
             ["Mailbox/get", {"accountId": alice.account_id,
                              "#ids": {"resultOf": "q", "name": "Mailbox/query", "path": f"/ids/{index}"}}, "g"]]
    name, args, _ = alice.request(calls)["methodResponses"][1]
    assert (name, args["type"]) == ("error", "invalidResultReference"), args


def test_a_result_reference_index_zero_works(alice):
    calls = [["Mailbox/query", {"accountId": alice.account_id}, "q"],
             ["Mailbox/get", {"accountId": alice.account_id, "properties": ["id"],
                              "#ids": {"resultOf": "q", "name": "Mailbox/query", "path": "/ids/0"}}, "g"]]
    responses = alice.request(calls)["methodResponses"]
    # a single id, not a list: Mailbox/get answers invalidArguments, not a reference error
    assert responses[1][0] == "error" and responses[1][1]["type"] == "invalidArguments", responses[1]


def test_a_collation_of_the_wrong_type_is_invalid_arguments(alice):
    name, args = alice.call("Mailbox/query", sort=[{"property": "name", "collation": 1}])
    assert (name, args["type"]) == ("error", "invalidArguments"), args
    name, args = alice.call("Mailbox/query", sort=[{"property": "name", "collation": "i;nonexistent"}])
    assert (name, args["type"]) == ("error", "unsupportedSort"), args


# ------------------------------------------------------------------------------ Identity (o04)
def test_identity_values_are_held_to_what_email_set_writes(alice):
    before = alice.ok("Identity/get", ids=[])["state"]
    res = alice.ok("Identity/set", create={"x": {
        "email": "alice@example.org", "name": "N\r\nBcc: x",
        "replyTo": [{"email": "a@b.c>, <evil@x.y"}, {"email": "ok@example.org", "name": "R\nX: y"}],
        "bcc": [{"email": "x\r\ny"}]}})
    err = res["notCreated"]["x"]
    assert err["type"] == "invalidProperties"
    assert sorted(err["properties"]) == ["bcc/0/email", "name", "replyTo/0/email", "replyTo/1/name"], err
    assert alice.ok("Identity/get", ids=[])["state"] == before
    err = alice.ok("Identity/set", update={identity_id(alice): {"bcc": [{"email": " a@b.c"}]}})
    assert err["notUpdated"][identity_id(alice)]["properties"] == ["bcc/0/email"]
    res = alice.ok("Identity/set", create={"ok": {
        "email": "alice@example.org", "name": "Alice Ünicode",
        "replyTo": [{"name": "Quoted", "email": '"a b"@example.org'}, {"email": "jörg@bücher.example"}]}})
    assert "ok" in res["created"], res
    alice.ok("Identity/set", destroy=[res["created"]["ok"]["id"]])


# ---------------------------------------------------------------------- PushSubscription (o06)
def push_set(client: Jmap, **args) -> dict:
    name, res, _ = client.request([["PushSubscription/set", args, "c"]], using=[CORE, MAIL])["methodResponses"][0]
    assert name == "PushSubscription/set", res
    return res


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/a\r\nX-Injected: 1", "http://127.0.0.1:9/a b", "http://" + "h" * 100_000 + "/x",
    "http://[::1", "https://x:99999/", "ftp://example.org/x", "https:///x", "/relative", "https://é.example/x",
])
def test_a_push_url_that_cannot_be_posted_to_is_refused_at_create(server, url):
    client = Jmap(server, "pushy", "pushy-pw")
    err = push_set(client, create={"s": {"deviceClientId": unique("d"), "url": url}})["notCreated"]["s"]
    assert err["type"] == "invalidProperties" and err["properties"] == ["url"], err
    assert len(err["description"]) < 300


def test_a_huge_device_client_id_is_refused(server, receiver):
    client = Jmap(server, "pushy", "pushy-pw")
    err = push_set(client, create={"s": {"deviceClientId": "d" * 200_000,
                                         "url": receiver.url(unique("p"))}})["notCreated"]["s"]
    assert err["type"] == "invalidProperties" and err["properties"] == ["deviceClientId"], err


def test_the_subscription_limit_counts_the_creates_of_one_call(server, receiver):
    client = Jmap(server, "pushy", "pushy-pw")
    existing = push_set(client, destroy=[s["id"] for s in client.request(
        [["PushSubscription/get", {}, "g"]], using=[CORE])["methodResponses"][0][1]["list"]])
    assert not existing.get("notDestroyed")
    create = {f"s{i}": {"deviceClientId": unique("d"), "url": receiver.url(unique("p"))} for i in range(60)}
    res = push_set(client, create=create)
    assert len(res["created"]) == 50 and len(res["notCreated"]) == 10
    assert {e["type"] for e in res["notCreated"].values()} == {"invalidProperties"}
    assert all(e["properties"] == ["deviceClientId"] for e in res["notCreated"].values())
    # the final state counts: one destroyed makes room for exactly one of two created
    one = next(iter(res["created"].values()))["id"]
    res = push_set(client, destroy=[one], create={
        f"t{i}": {"deviceClientId": unique("d"), "url": receiver.url(unique("p"))} for i in range(2)})
    assert res["destroyed"] == [one] and len(res["created"]) == 1 and len(res["notCreated"]) == 1
    ids = [s["id"] for s in client.request([["PushSubscription/get", {}, "g"]],
                                           using=[CORE])["methodResponses"][0][1]["list"]]
    assert len(ids) == 50
    push_set(client, destroy=ids)


def test_a_bad_retry_after_is_ignored_and_the_verification_retried(server, receiver):
    client = Jmap(server, "pushy", "pushy-pw")
    path = unique("ra")
    # "²" (the byte 0xB2), then "٣" (its UTF-8 bytes, which httpx decodes as UTF-8)
    receiver.script[path] = [(429, {"Retry-After": "\xb2"}), (503, {"Retry-After": "٣".encode().decode("latin-1")})]
    res = push_set(client, create={"s": {"deviceClientId": unique("d"), "url": receiver.url(path)}})
    sid = res["created"]["s"]["id"]
    got = receiver.wait(path, 3)
    assert [r.status for r in got] == [429, 503, 201]
    assert got[2].json()["@type"] == "PushVerification"
    log = log_text(server)
    assert "a task failed" not in log and "Traceback" not in log
    assert sum("Retry-After" in line for line in log.splitlines()) == 2  # one warning each
    push_set(client, destroy=[sid])
