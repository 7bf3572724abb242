"""Receiving mail: the LMTP listener (RFC 2033) of `tidings serve --lmtp-port` driven by the stdlib
LMTP client over loopback, and `tidings deliver` as an MTA's pipe runs it; black-box against a
real server, plus the per-recipient failure isolation of the LMTP handler against a real store."""

from __future__ import annotations

import email
import email.policy
import errno
import json
import smtplib
import time

import pytest

from tests.conftest import Jmap, Server, free_port, tidings, unique
from tests.smtp_relay import Relay
from tests.test_blob_thread_identity import EventStream

LMTP_PORT = free_port()


@pytest.fixture(scope="module")
def rserver(tmp_path_factory):
    data = tmp_path_factory.mktemp("recv")
    tidings("user", "add", "alice", "--password", "alice-pw", "--email", "alice@example.com", data=data)
    tidings("user", "add", "bob", "--password", "bob-pw", "--email", "bob@example.com", data=data)
    tidings("user", "alias", "alice", "al@example.com", "@alice.example", data=data)
    srv = Server(data, extra=("--lmtp-port", str(LMTP_PORT)))
    yield srv
    srv.stop()


@pytest.fixture
def alice(rserver) -> Jmap:
    return Jmap(rserver, "alice", "alice-pw")


@pytest.fixture
def bob(rserver) -> Jmap:
    return Jmap(rserver, "bob", "bob-pw")


def lmtp() -> smtplib.LMTP:
    client = smtplib.LMTP("127.0.0.1", LMTP_PORT, timeout=30)
    client.ehlo("mx.test.example")
    return client


def message(subject: str | None = None, body: str = "Hello.", to: str = "alice@example.com",
            extra: str = "") -> tuple[bytes, str]:
    subject = subject or unique("subj")
    raw = (f"From: Sender <sender@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{unique('m')}@example.org>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n{extra}"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n")
    return raw.encode(), subject


def send(raw: bytes, rcpts: list[str], sender: str = "sender@example.org") -> list[tuple[int, bytes]]:
    """One LMTP transaction; returns the reply to each RCPT TO, then one reply per accepted
    recipient after DATA (RFC 2033 §4.2)."""
    client = lmtp()
    try:
        assert client.mail(sender)[0] == 250
        rcpt_replies = [client.rcpt(r) for r in rcpts]
        accepted = sum(1 for code, _ in rcpt_replies if code == 250)
        if not accepted:
            return rcpt_replies
        client.putcmd("data")
        code, msg = client.getreply()
        assert code == 354, (code, msg)
        client.send(_dot_stuff(raw) + b".\r\n")
        return rcpt_replies + [client.getreply() for _ in range(accepted)]
    finally:
        client.close()


def _dot_stuff(raw: bytes) -> bytes:
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def find_by_subject(client: Jmap, subject: str) -> list[str]:
    return client.ok("Email/query", filter={"subject": subject})["ids"]


def search_until(client: Jmap, word: str, timeout: float = 10) -> list[str]:
    deadline = time.time() + timeout
    while True:
        ids = client.ok("Email/query", filter={"text": word})["ids"]
        if ids or time.time() > deadline:
            return ids
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------- RCPT TO
def test_lhlo_advertises_the_size_limit_and_helo_is_not_lmtp(rserver):
    client = smtplib.LMTP("127.0.0.1", LMTP_PORT, timeout=30)
    try:
        code, text = client.ehlo("mx.test.example")  # smtplib's LMTP sends LHLO
        assert code == 250
        assert client.has_extn("size") and int(client.esmtp_features["size"]) == 50_000_000
        # RFC 2033 §5: an LMTP server MUST offer PIPELINING and ENHANCEDSTATUSCODES
        assert client.has_extn("pipelining") and client.has_extn("enhancedstatuscodes")
        assert client.docmd("HELO", "mx.test.example") == (500, b'5.0.0 Error: command "HELO" not recognized')
        assert client.mail("bob@remote.example") == (250, b"2.1.0 sender ok")
        assert client.docmd("NOOP") == (250, b"2.0.0 OK")
        assert client.rset() == (250, b"2.0.0 OK")
    finally:
        client.close()


def test_rcpt_to_accepts_users_and_aliases_and_refuses_unknown_users_with_550_5_1_1(rserver):
    client = lmtp()
    try:
        client.mail("sender@example.org")
        assert client.rcpt("alice@example.com")[0] == 250
        assert client.rcpt("ALICE@Example.COM")[0] == 250  # addresses compare case-insensitively
        assert client.rcpt("al@example.com")[0] == 250  # an alias
        assert client.rcpt("anything@alice.example")[0] == 250  # a whole aliased domain
        code, text = client.rcpt("nobody@example.com")
        assert (code, text.split()[0]) == (550, b"5.1.1")
        code, text = client.rcpt("someone@elsewhere.example")
        assert code == 550 and text.startswith(b"5.1.")
    finally:
        client.close()


def test_data_without_an_accepted_recipient_is_refused(rserver):
    client = lmtp()
    try:
        client.mail("sender@example.org")
        assert client.rcpt("nobody@example.com")[0] == 550
        assert client.docmd("DATA")[0] == 503
    finally:
        client.close()


# -------------------------------------------------------------------------------------- delivering
def test_each_accepted_recipient_gets_its_own_reply_and_each_user_one_copy(alice, bob):
    raw, subject = message(to="alice@example.com, bob@example.com")
    replies = send(raw, ["alice@example.com", "nobody@example.com", "bob@example.com", "al@example.com"])
    assert [code for code, _ in replies[:4]] == [250, 550, 250, 250]
    after_data = replies[4:]
    assert len(after_data) == 3, after_data  # one per accepted recipient, in RCPT order
    assert [code for code, _ in after_data] == [250, 250, 250]
    assert b"<alice@example.com>" in after_data[0][1] and b"<bob@example.com>" in after_data[1][1]
    assert b"<al@example.com>" in after_data[2][1]
    assert len(find_by_subject(alice, subject)) == 1  # alice's two addresses: one copy
    assert len(find_by_subject(bob, subject)) == 1


def test_delivered_mail_is_in_the_inbox_with_return_path_and_received_first(alice):
    raw, subject = message()
    replies = send(raw, ["alice@example.com"], sender="bounces+x@example.org")
    assert replies[-1][0] == 250
    [email_id] = find_by_subject(alice, subject)
    email = alice.ok("Email/get", ids=[email_id], properties=["mailboxIds", "headers", "keywords", "threadId",
                                                               "blobId", "receivedAt"])["list"][0]
    assert email["mailboxIds"] == {alice.mailbox("inbox"): True}
    assert email["keywords"] == {}
    names = [h["name"] for h in email["headers"]]
    assert names[:3] == ["Return-Path", "Received", "From"]
    assert email["headers"][0]["value"] == " <bounces+x@example.org>"
    received = email["headers"][1]["value"]
    assert "from mx.test.example ([127.0.0.1])" in received and "with LMTP" in received
    assert "for <alice@example.com>" in received
    # the stored message is the trace fields followed by the bytes as sent
    blob = alice.http.get(alice.session["downloadUrl"].replace("{accountId}", alice.account_id)
                          .replace("{blobId}", email["blobId"]).replace("{name}", "m.eml")
                          .replace("{type}", "message/rfc822"))
    assert blob.status_code == 200 and blob.content.endswith(raw)


def test_delivered_mail_is_found_by_text_search(alice):
    word = unique("zebra")
    raw, _ = message(body=f"The word is {word} today.")
    assert send(raw, ["alice@example.com"])[-1][0] == 250
    assert len(search_until(alice, word)) == 1


def test_delivery_is_pushed_on_eventsource_and_in_email_changes(alice):
    before = alice.ok("Email/get", ids=[])["state"]
    stream = EventStream(alice, types="Email", closeafter="state", ping=0)
    raw, subject = message()
    assert send(raw, ["alice@example.com"])[-1][0] == 250
    item = stream.next(10)
    assert item[0] == "state", item
    changed = json.loads(item[1])["changed"][alice.account_id]
    changes = alice.ok("Email/changes", sinceState=before)
    assert changed["Email"] == changes["newState"]
    assert find_by_subject(alice, subject)[0] in changes["created"]


def test_the_same_message_delivered_twice_answers_250_and_is_stored_once(alice):
    raw, subject = message()
    first = send(raw, ["alice@example.com"])[-1]
    again = send(raw, ["alice@example.com"])[-1]
    assert first[0] == again[0] == 250
    assert b"already there" in again[1]
    assert len(find_by_subject(alice, subject)) == 1


def test_malformed_mail_is_delivered_and_the_listener_goes_on(alice):
    subject = unique("broken")
    raw = (f"From: <<<not an address\r\nSubject: {subject}\r\nDate: yesterday-ish\r\n"
           "Content-Type: multipart/mixed; boundary=\"nope\"\r\nContent-Transfer-Encoding: base64\r\n"
           "X-Bytes: \xff\xfe\x80 raw 8-bit in a header\r\n\r\n--nope\r\nContent-Type: text/plain\r\n\r\n"
           "never closed ").encode("latin-1") + b"x" * 5000 + b"\r\n"  # a 5000-octet line too
    replies = send(raw, ["alice@example.com"])
    assert replies[-1][0] == 250, replies
    assert len(find_by_subject(alice, subject)) == 1
    ok, subject2 = message()
    assert send(ok, ["alice@example.com"])[-1][0] == 250  # the listener still works
    assert len(find_by_subject(alice, subject2)) == 1


def test_what_is_not_a_message_is_refused_per_recipient_with_554(alice, bob):
    replies = send(b"just some text\r\nwithout any header\r\n", ["alice@example.com", "bob@example.com"])
    assert [code for code, _ in replies[2:]] == [554, 554]


def test_a_declared_size_over_the_limit_is_refused_at_mail_from(rserver):
    client = lmtp()
    try:
        code, _ = client.mail("sender@example.org", ["SIZE=50000001"])
        assert code == 552
    finally:
        client.close()


def test_data_over_the_limit_is_refused_with_552_for_every_recipient(alice, bob):
    raw, subject = message(body=("y" * 1023 + "\r\n") * (50_000_000 // 1025 + 10))
    replies = send(raw, ["alice@example.com", "bob@example.com"])
    assert [code for code, _ in replies[2:]] == [552, 552], replies[2:]
    assert find_by_subject(alice, subject) == []
    # and the next transaction is answered normally
    ok, subject2 = message()
    assert send(ok, ["alice@example.com"])[-1][0] == 250


def test_null_sender_is_accepted_and_recorded_in_return_path(alice):
    raw, subject = message()
    assert send(raw, ["alice@example.com"], sender="")[-1][0] == 250
    [email_id] = find_by_subject(alice, subject)
    headers = alice.ok("Email/get", ids=[email_id], properties=["headers"])["list"][0]["headers"]
    assert headers[0] == {"name": "Return-Path", "value": " <>"}


# ------------------------------------------------------------------------- one failure, not the others
def test_one_accounts_storage_failure_fails_only_its_recipients(tmp_path):
    from app.lmtp import LmtpHandler
    from store import open_store

    store = open_store(str(tmp_path))
    try:
        alice = store.create_user("alice", "x", "alice@example.com")
        bob = store.create_user("bob", "x", "bob@example.com")
        real_write = store.write

        def write(account_id):
            if account_id == bob["accountId"]:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(account_id)

        store.write = write
        raw, subject = message()
        replies = LmtpHandler(store, by="test").deliver_all(
            raw, "s@example.org", [("alice@example.com", alice), ("bob@example.com", bob)], "mx", "127.0.0.1")
        assert replies[0].startswith("250 2.0.0 <alice@example.com>")
        assert replies[1].startswith("452 4.3.1 <bob@example.com>")
        store.write = real_write
        with store.read(alice["accountId"]) as r:
            assert r.email_count() == 1
        with store.read(bob["accountId"]) as r:
            assert r.email_count() == 0
    finally:
        store.close()


# --------------------------------------------------------------------------------- tidings deliver
def deliver(data, *args: str, raw: bytes) -> tuple[int, str]:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "app", "deliver", *args, "--data", str(data)], input=raw,
                          capture_output=True, timeout=60)
    return proc.returncode, proc.stderr.decode()


def test_deliver_puts_mail_in_the_inbox_of_a_running_server_and_pushes_it(rserver, alice):
    stream = EventStream(alice, types="Email", closeafter="state", ping=0)
    word = unique("piped")
    raw, subject = message(body=word)
    code, err = deliver(rserver.data, "--user", "alice", "--sender", "pipe@example.org", raw=raw)
    assert code == 0, err
    assert stream.next(10)[0] == "state"
    [email_id] = find_by_subject(alice, subject)
    email = alice.ok("Email/get", ids=[email_id], properties=["mailboxIds", "headers"])["list"][0]
    assert email["mailboxIds"] == {alice.mailbox("inbox"): True}
    assert email["headers"][0] == {"name": "Return-Path", "value": " <pipe@example.org>"}
    assert email["headers"][1]["name"] == "Received"
    assert search_until(alice, word) == [email_id]


def test_deliver_by_recipient_address_into_a_named_mailbox_created_if_missing(rserver, alice):
    raw, subject = message()
    box = unique("Lists")
    code, err = deliver(rserver.data, "--recipient", "someone@alice.example", "--mailbox", box, raw=raw)
    assert code == 0, err
    [email_id] = find_by_subject(alice, subject)
    [mailbox_id] = alice.ok("Email/get", ids=[email_id], properties=["mailboxIds"])["list"][0]["mailboxIds"]
    assert alice.ok("Mailbox/get", ids=[mailbox_id])["list"][0]["name"] == box


def test_deliver_takes_the_sender_from_a_leading_from_line_and_keeps_a_return_path(rserver, alice):
    raw, subject = message()
    code, err = deliver(rserver.data, "--user", "alice",
                        raw=b"From lead@example.org Mon Jan  1 10:00:00 2024\n" + raw)
    assert code == 0, err
    [email_id] = find_by_subject(alice, subject)
    headers = alice.ok("Email/get", ids=[email_id], properties=["headers"])["list"][0]["headers"]
    assert headers[0] == {"name": "Return-Path", "value": " <lead@example.org>"}
    raw, subject = message()
    code, err = deliver(rserver.data, "--user", "alice", raw=b"Return-Path: <rp@example.org>\r\n" + raw)
    assert code == 0, err
    [email_id] = find_by_subject(alice, subject)
    headers = alice.ok("Email/get", ids=[email_id], properties=["headers"])["list"][0]["headers"]
    assert [h["name"] for h in headers].count("Return-Path") == 1  # the MTA's, not a second one
    assert headers[0] == {"name": "Return-Path", "value": " <rp@example.org>"}


def test_deliver_exit_codes_follow_sysexits(rserver, tmp_path):
    raw, subject = message()
    assert deliver(rserver.data, "--user", "alice", raw=raw)[0] == 0
    assert deliver(rserver.data, "--user", "alice", raw=raw)[0] == 0  # already there: still delivered
    assert deliver(rserver.data, "--user", "nobody", raw=raw)[0] == 67  # EX_NOUSER
    assert deliver(rserver.data, "--recipient", "nobody@example.com", raw=raw)[0] == 67
    assert deliver(rserver.data, "--user", "alice", raw=b"")[0] == 65  # EX_DATAERR
    assert deliver(rserver.data, "--user", "alice", raw=b"no header here\n")[0] == 65
    assert deliver(tmp_path / "no-data-here", "--user", "alice", raw=raw)[0] == 75  # EX_TEMPFAIL


# ------------------------------------------------------------------------ one listener per data dir
def test_with_two_workers_exactly_one_process_owns_the_lmtp_port(tmp_path):
    tidings("user", "add", "carol", "--password", "pw", "--email", "carol@example.com", data=tmp_path)
    port = free_port()
    srv = Server(tmp_path, extra=("--workers", "2", "--lmtp-port", str(port), "--log-level", "info"))
    try:
        deadline = time.time() + 20
        log = tmp_path / f"server-{srv.port}.log"
        while time.time() < deadline and log.read_text().count("this one stands by") < 1:
            time.sleep(0.2)
        text = log.read_text()
        assert text.count("LMTP listening on") == 1, text
        assert text.count("another process owns the LMTP port") == 1, text
        client = smtplib.LMTP("127.0.0.1", port, timeout=30)
        try:
            client.ehlo("mx.test.example")
            client.mail("s@example.org")
            assert client.rcpt("carol@example.com")[0] == 250
            raw, subject = message(to="carol@example.com")
            assert client.data(raw)[0] == 250
        finally:
            client.close()
        carol = Jmap(srv, "carol", "pw")
        assert len(find_by_subject(carol, subject)) == 1
    finally:
        srv.stop()


# ------------------------------------------------------------------- automatic replies (RFC 3834)
@pytest.fixture(scope="module")
def relayed(tmp_path_factory):
    """A server with LMTP and an SMTP relay (the sink), and a user on vacation."""
    data = tmp_path_factory.mktemp("vacation-live")
    tidings("user", "add", "vic", "--password", "pw", "--email", "vic@example.com", data=data)
    sink = Relay(free_port())
    port = free_port()
    srv = Server(data, extra=("--lmtp-port", str(port), "--smtp-relay", f"127.0.0.1:{sink.port}",
                              "--smtp-security", "none"))
    vic = Jmap(srv, "vic", "pw")
    name, res, _ = vic.request([["VacationResponse/set", {"accountId": vic.account_id, "update": {"singleton": {
        "isEnabled": True, "textBody": "Back next week."}}}, "0"]],
        using=["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:vacationresponse"])["methodResponses"][0]
    assert res["updated"] == {"singleton": None}, res
    yield srv, port, sink.handler, vic
    srv.stop()
    sink.stop()


def test_a_vacation_reply_to_lmtp_mail_reaches_the_relay_with_the_null_sender(relayed):
    srv, port, sink, vic = relayed
    raw, subject = message(to="Vic <vic@example.com>")
    client = smtplib.LMTP("127.0.0.1", port, timeout=30)
    try:
        client.ehlo("mx.test.example")
        assert client.mail("bob@remote.example")[0] == 250
        assert client.rcpt("vic@example.com")[0] == 250
        assert client.data(raw)[0] == 250
    finally:
        client.close()
    got = sink.next(15)
    assert got is not None, "no automatic reply reached the relay"
    mail_from, rcpt_tos, content = got.mail_from, got.rcpt_tos, got.data
    # RFC 3834 §3.3: MAIL FROM:<> (aiosmtpd shows the null reverse-path as "<>"), to the Return-Path
    assert mail_from == "<>" and rcpt_tos == ["bob@remote.example"]
    reply = email.message_from_bytes(content, policy=email.policy.default)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Subject"] == f"Auto: {subject}"
    assert reply["From"].addresses[0].addr_spec == "vic@example.com"
    original_id = raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
    assert reply["In-Reply-To"] == original_id
    assert reply.get_content().strip() == "Back next week."
    # the same sender again within the period: delivered, not answered again
    raw2, subject2 = message(to="vic@example.com")
    client = smtplib.LMTP("127.0.0.1", port, timeout=30)
    try:
        client.ehlo("mx.test.example")
        client.mail("bob@remote.example")
        client.rcpt("vic@example.com")
        assert client.data(raw2)[0] == 250
    finally:
        client.close()
    assert len(find_by_subject(vic, subject2)) == 1
    assert sink.next(3) is None
    # a new vacation message is news to everyone: the same sender is answered again
    res = vic.request([["VacationResponse/set", {"accountId": vic.account_id, "update": {"singleton": {
        "textBody": "Back on Monday."}}}, "0"]],
        using=["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:vacationresponse"])["methodResponses"][0][1]
    assert res["updated"] == {"singleton": None}, res
    raw3, _ = message(to="vic@example.com")
    client = smtplib.LMTP("127.0.0.1", port, timeout=30)
    try:
        client.ehlo("mx.test.example")
        client.mail("bob@remote.example")
        client.rcpt("vic@example.com")
        assert client.data(raw3)[0] == 250
    finally:
        client.close()
    again = sink.next(15)
    assert again is not None and again.rcpt_tos == ["bob@remote.example"]
    assert b"Back on Monday." in again.data


def test_a_vacation_reply_to_piped_mail_goes_out_through_the_running_server(relayed):
    srv, port, sink, vic = relayed
    raw, subject = message(to="vic@example.com")
    code, err = deliver(srv.data, "--user", "vic", "--sender", "carol@remote.example", raw=raw)
    assert code == 0 and "automatic reply queued" in err, err
    got = sink.next(15)
    assert got is not None, "no automatic reply reached the relay"
    assert got.mail_from == "<>" and got.rcpt_tos == ["carol@remote.example"]
    assert b"Auto-Submitted: auto-replied" in got.data


def test_no_vacation_reply_to_list_mail(relayed):
    srv, port, sink, vic = relayed
    raw, subject = message(to="vic@example.com", extra="List-Id: <announce.remote.example>\r\n")
    code, err = deliver(srv.data, "--user", "vic", "--sender", "announce-bounces@remote.example", raw=raw)
    assert code == 0 and "automatic reply" not in err, err
    assert sink.next(3) is None
