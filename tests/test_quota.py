"""Quotas (RFC 9425): Quota/get, /changes, /query and /queryChanges against a live server whose limits
are set with the real `tidings quota` while it runs, and every path that stores mail refusing what
would go over a limit (overQuota, LMTP 552 5.2.2, `tidings deliver` exit 73, `tidings import`
stopping) without storing anything of the refused message."""

from __future__ import annotations

import mailbox
import smtplib
import subprocess
import sys

import pytest

from tests.conftest import CORE, MAIL, Jmap, Server, free_port, tidings, unique

QUOTA = "urn:ietf:params:jmap:quota"
USING = [CORE, MAIL, QUOTA]
LMTP_PORT = free_port()
USERS = ("qa", "qb", "qc", "qd", "qe", "qf")


@pytest.fixture(scope="module")
def qserver(tmp_path_factory):
    data = tmp_path_factory.mktemp("quota")
    for name in USERS:
        tidings("user", "add", name, "--password", name + "-pw", "--email", f"{name}@example.com", data=data)
    srv = Server(data, extra=("--lmtp-port", str(LMTP_PORT)))
    yield srv
    srv.stop()


def client(srv: Server, name: str) -> Jmap:
    return Jmap(srv, name, name + "-pw")


def quota(srv: Server, *args: str) -> subprocess.CompletedProcess:
    return tidings("quota", *args, data=srv.data)


def message(body: str = "Hello.", to: str = "qa@example.com") -> bytes:
    return (f"From: Sender <sender@example.org>\r\nTo: {to}\r\nSubject: {unique('s')}\r\n"
            f"Message-ID: <{unique('m')}@example.org>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}\r\n").encode()


def call(c: Jmap, method: str, **args) -> tuple[str, dict]:
    args.setdefault("accountId", c.account_id)
    name, result, _ = c.request([[method, args, "q"]], using=USING)["methodResponses"][0]
    return name, result


def ok(c: Jmap, method: str, **args) -> dict:
    name, result = call(c, method, **args)
    assert name == method, (name, result)
    return result


def quotas(c: Jmap) -> dict[str, dict]:
    return {q["resourceType"]: q for q in ok(c, "Quota/get", ids=None)["list"]}


def email_count(c: Jmap) -> int:
    return c.ok("Email/query", calculateTotal=True)["total"]


def import_raw(c: Jmap, raw: bytes) -> tuple[str, dict]:
    blob = c.upload(raw)
    name, result = call(c, "Email/import", emails={"m": {"blobId": blob["blobId"],
                                                          "mailboxIds": {c.mailbox("inbox"): True}}})
    assert name == "Email/import", result
    return ("created", result["created"]["m"]) if result["created"] else ("notCreated", result["notCreated"]["m"])


# ------------------------------------------------------------------------------------------- reading
def test_capability_and_no_quota_objects_without_limits(qserver):
    c = client(qserver, "qa")
    assert c.session["capabilities"][QUOTA] == {}
    assert c.session["accounts"][c.account_id]["accountCapabilities"][QUOTA] == {}
    assert ok(c, "Quota/get", ids=None)["list"] == []


def test_get_and_changes_follow_imports_destroys_and_cli_limits(qserver):
    c = client(qserver, "qa")
    s0 = ok(c, "Quota/get", ids=None)["state"]
    out = quota(qserver, "set", "qa", "--storage", "1M", "--messages", "100").stdout
    assert "of 100" in out and "1048576 octets" in out
    ch = ok(c, "Quota/changes", sinceState=s0)
    assert sorted(ch["created"]) == ["Qmessages", "Qstorage"] and ch["updatedProperties"] is None
    q = quotas(c)
    assert q["count"] == {"id": "Qmessages", "resourceType": "count", "used": 0, "hardLimit": 100,
                          "warnLimit": None, "softLimit": None, "scope": "account",
                          "name": "qa@example.com messages", "types": ["Email"],
                          "description": q["count"]["description"]}
    assert q["octets"]["hardLimit"] == 1 << 20 and q["octets"]["used"] == 0
    s1 = ok(c, "Quota/get", ids=None)["state"]

    raws = [message(), message("x" * 500)]
    created = [import_raw(c, raw)[1] for raw in raws]
    q = quotas(c)
    assert q["count"]["used"] == 2
    assert q["octets"]["used"] == sum(len(r) for r in raws) == sum(e["size"] for e in created)
    # RFC 9425 §4.2: only `used` changed, and the changes feed a Quota/get by back-reference
    resp = c.request([["Quota/changes", {"accountId": c.account_id, "sinceState": s1}, "0"],
                      ["Quota/get", {"accountId": c.account_id,
                                     "#ids": {"resultOf": "0", "name": "Quota/changes", "path": "/updated"},
                                     "#properties": {"resultOf": "0", "name": "Quota/changes",
                                                     "path": "/updatedProperties"}}, "1"]],
                     using=USING)["methodResponses"]
    assert sorted(resp[0][1]["updated"]) == ["Qmessages", "Qstorage"]
    assert resp[0][1]["updatedProperties"] == ["used"]
    assert sorted((x["id"], x["used"]) for x in resp[1][1]["list"]) == [
        ("Qmessages", 2), ("Qstorage", sum(len(r) for r in raws))]

    s2 = ok(c, "Quota/get", ids=None)["state"]
    c.ok("Email/set", destroy=[created[1]["id"]])
    q = quotas(c)
    assert (q["count"]["used"], q["octets"]["used"]) == (1, len(raws[0]))
    assert ok(c, "Quota/changes", sinceState=s2)["updatedProperties"] == ["used"]

    # a limit changed (not only `used`): updatedProperties null; removed: destroyed
    s3 = ok(c, "Quota/get", ids=None)["state"]
    quota(qserver, "set", "qa", "--messages", "50")
    ch = ok(c, "Quota/changes", sinceState=s3)
    assert ch["updated"] == ["Qmessages"] and ch["updatedProperties"] is None
    assert quotas(c)["count"]["hardLimit"] == 50
    s4 = ok(c, "Quota/get", ids=None)["state"]
    quota(qserver, "set", "qa", "--messages", "none")
    ch = ok(c, "Quota/changes", sinceState=s4)
    assert ch["destroyed"] == ["Qmessages"] and not ch["created"] and not ch["updated"]
    assert set(quotas(c)) == {"octets"}
    assert ok(c, "Quota/get", ids=["Qmessages"])["notFound"] == ["Qmessages"]
    # set again: there again, an update to a client that saw it destroyed (ids are not reused otherwise)
    quota(qserver, "set", "qa", "--messages", "100")
    ch = ok(c, "Quota/changes", sinceState=s4)
    assert ch["updated"] == ["Qmessages"] and not ch["destroyed"]

    # §4.1: without the mail capability no type is known, so no Quota is returned
    name, result, _ = c.request([["Quota/get", {"accountId": c.account_id, "ids": None}, "0"]],
                                using=[CORE, QUOTA])["methodResponses"][0]
    assert result["list"] == []


def test_query_filters_sorts_and_query_changes(qserver):
    c = client(qserver, "qb")
    quota(qserver, "set", "qb", "--storage", "10M", "--messages", "1000")

    def q(**args) -> list[str]:
        return ok(c, "Quota/query", **args)["ids"]

    assert q() == ["Qmessages", "Qstorage"]
    assert q(filter={"resourceType": "octets"}) == ["Qstorage"]
    assert q(filter={"name": "MESSAGES"}) == ["Qmessages"]
    assert q(filter={"type": "Email"}) == ["Qmessages", "Qstorage"]
    assert q(filter={"type": "Calendar"}) == []
    assert q(filter={"scope": "account", "resourceType": "count"}) == ["Qmessages"]
    assert q(filter={"scope": "domain"}) == []
    assert q(filter={"operator": "NOT", "conditions": [{"resourceType": "count"}]}) == ["Qstorage"]
    import_raw(c, message())
    assert q(sort=[{"property": "used", "isAscending": False}]) == ["Qstorage", "Qmessages"]
    assert q(sort=[{"property": "name", "isAscending": False}]) == ["Qstorage", "Qmessages"]
    assert call(c, "Quota/query", filter={"foo": 1})[1]["type"] == "unsupportedFilter"
    assert call(c, "Quota/query", sort=[{"property": "hardLimit"}])[1]["type"] == "unsupportedSort"

    state = ok(c, "Quota/query", filter={"resourceType": "octets"})["queryState"]
    import_raw(c, message())
    qc = ok(c, "Quota/queryChanges", sinceQueryState=state, filter={"resourceType": "octets"})
    # RFC 8620 §5.6 allows extra removed ids (the generic queryChanges reports every changed object)
    assert "Qstorage" in qc["removed"] and qc["added"] == [{"id": "Qstorage", "index": 0}]


# -------------------------------------------------------------------------------------- enforcement
def test_email_import_and_set_over_quota_store_nothing(qserver):
    c = client(qserver, "qc")
    quota(qserver, "set", "qc", "--messages", "1")
    assert import_raw(c, message())[0] == "created"
    state = c.ok("Email/get", ids=[])["state"]

    kind, err = import_raw(c, message())  # the messages limit
    assert kind == "notCreated" and err["type"] == "overQuota" and err["resource"] == "messages"

    # the storage limit, lowered (while the server runs) after the blob was uploaded
    quota(qserver, "set", "qc", "--messages", "none", "--storage", "1M")
    raw = message("y" * 200)
    blob = c.upload(raw)
    used = quotas(c)["octets"]["used"]
    quota(qserver, "set", "qc", "--storage", str(used + len(raw) - 1))
    before = quotas(c)
    result = c.ok("Email/import", emails={"m": {"blobId": blob["blobId"], "mailboxIds": {c.mailbox("inbox"): True}}})
    err = result["notCreated"]["m"]
    assert err["type"] == "overQuota" and err["resource"] == "storage" and result["newState"] == state

    result = c.ok("Email/set", create={"d": {"mailboxIds": {c.mailbox("drafts"): True}, "subject": "draft",
                                             "bodyValues": {"1": {"value": "z" * 300}},
                                             "textBody": [{"partId": "1", "type": "text/plain"}]}})
    assert result["notCreated"]["d"]["type"] == "overQuota" and not result["created"]
    assert result["newState"] == state

    assert email_count(c) == 1 and quotas(c) == before
    assert c.ok("Email/get", ids=[])["state"] == state

    quota(qserver, "set", "qc", "--storage", str(used + len(raw)))  # exactly room: it goes in
    result = c.ok("Email/import", emails={"m": {"blobId": blob["blobId"], "mailboxIds": {c.mailbox("inbox"): True}}})
    assert result["created"]["m"]["size"] == len(raw)
    assert quotas(c)["octets"]["used"] == used + len(raw)


def test_set_creates_are_judged_together(qserver):
    """Two creates in one Email/set when there is room for one: the first is created, the second
    refused (creates are counted in order against the limit)."""
    c = client(qserver, "qf")
    quota(qserver, "set", "qf", "--messages", "1")
    box = c.mailbox("drafts")
    create = {cid: {"mailboxIds": {box: True}, "subject": cid, "bodyValues": {"1": {"value": "hi"}},
                    "textBody": [{"partId": "1", "type": "text/plain"}]} for cid in ("a", "b")}
    result = c.ok("Email/set", create=create)
    assert list(result["created"]) == ["a"] and result["notCreated"]["b"]["type"] == "overQuota"
    assert email_count(c) == 1


def test_uploads_larger_than_the_room_left_are_refused(qserver):
    c = client(qserver, "qd")
    quota(qserver, "set", "qd", "--storage", "2K")
    url = c.session["uploadUrl"].replace("{accountId}", c.account_id)
    r = c.http.post(url, content=b"a" * 4000, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 507 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:ietf:params:jmap:error:overQuota"
    # chunked (no Content-Length): refused once the body is in, before it is stored
    r = c.http.post(url, content=iter([b"b" * 3000]), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 507, r.text
    assert c.upload(b"small", "text/plain")["size"] == 5  # fits: accepted (uploads do not count)
    name, result, _ = c.request([["Blob/upload", {"accountId": c.account_id, "create": {
        "big": {"data": [{"data:asText": "c" * 3000}]}, "ok": {"data": [{"data:asText": "fine"}]}}}, "0"]],
        using=[CORE, "urn:ietf:params:jmap:blob"])["methodResponses"][0]
    assert result["notCreated"]["big"]["type"] == "overQuota" and "ok" in result["created"]
    assert quotas(c)["octets"]["used"] == 0


def lmtp_send(raw: bytes, rcpts: list[str]) -> list[tuple[int, bytes]]:
    with smtplib.LMTP("127.0.0.1", LMTP_PORT, timeout=30) as lm:
        lm.ehlo("mx.test.example")
        assert lm.mail("sender@example.org")[0] == 250
        for r in rcpts:
            assert lm.rcpt(r)[0] == 250
        lm.putcmd("data")
        assert lm.getreply()[0] == 354
        lm.send(raw + b".\r\n")
        return [lm.getreply() for _ in rcpts]


def test_lmtp_and_deliver_refuse_over_quota_per_recipient(qserver):
    full, free = client(qserver, "qe"), client(qserver, "qa")
    quota(qserver, "set", "qe", "--messages", "0")
    before_free = email_count(free)
    replies = lmtp_send(message(to="qe@example.com"), ["qe@example.com", "qa@example.com"])
    assert replies[0][0] == 552 and replies[0][1].startswith(b"5.2.2"), replies
    assert replies[1][0] == 250, replies
    assert email_count(full) == 0 and email_count(free) == before_free + 1
    assert quotas(full)["count"]["used"] == 0
    # alone, the recipient gets the same reply (not the engine's size refusal)
    [(code, text)] = lmtp_send(message("alone", to="qe@example.com"), ["qe@example.com"])
    assert code == 552 and text.startswith(b"5.2.2") and b"over quota" in text, text

    proc = subprocess.run([sys.executable, "-m", "app", "deliver", "--user", "qe", "--data", str(qserver.data)],
                          input=message(to="qe@example.com"), capture_output=True, timeout=60)
    assert proc.returncode == 73, proc.stderr
    assert b"5.2.2 mailbox full" in proc.stderr and b"over quota" in proc.stderr
    assert email_count(full) == 0
    quota(qserver, "set", "qe", "--messages", "none")


def test_cli_import_stops_at_the_limit_and_says_how_many(qserver, tmp_path):
    box = mailbox.mbox(tmp_path / "five.mbox")
    for i in range(5):
        box.add(message(f"message {i}", to="qd@example.com"))
    box.close()
    c = client(qserver, "qd")
    before = email_count(c)
    quota(qserver, "set", "qd", "--messages", str(before + 3), "--storage", "none")
    r = tidings("import", "--user", "qd", "--no-progress", str(tmp_path / "five.mbox"), data=qserver.data,
                check=False)
    assert r.returncode != 0
    assert "over quota: messages" in r.stderr and "after storing 3 messages" in r.stderr, r.stderr
    assert "five.mbox" in r.stderr and "tidings quota set qd" in r.stderr
    assert email_count(c) == before + 3 and quotas(c)["count"]["used"] == before + 3
    # room again: the same command goes on, skipping what is stored
    quota(qserver, "set", "qd", "--messages", "none")
    r = tidings("import", "--user", "qd", "--no-progress", str(tmp_path / "five.mbox"), data=qserver.data)
    assert email_count(c) == before + 5


def test_quota_show_and_list(qserver):
    out = quota(qserver, "show", "qb").stdout
    assert "qb (" in out and "messages" in out and "of 1000" in out and "10 MiB" in out
    lines = quota(qserver, "list").stdout.splitlines()
    assert lines[0].split() == ["NAME", "MESSAGES", "LIMIT", "STORAGE", "LIMIT"]
    assert any(line.split()[:3] == ["qb", "2", "1000"] for line in lines), lines
    bad = tidings("quota", "set", "qb", "--storage", "5X", data=qserver.data, check=False)
    assert bad.returncode != 0 and "bad size" in bad.stderr


# ---------------------------------------------------------------------------- the store, directly
def test_storage_is_counted_once_for_a_data_directory_made_before_quotas(tmp_path):
    """The migration: an older data directory (no storage counter) gets it counted when opened."""
    from app.mail.ingest import ingest
    from store import open_store
    from store.lmdb_store import _QUOTAS_COUNTED, SEP

    store = open_store(str(tmp_path))
    user = store.create_user("u", "x", "u@example.com")
    acct = user["accountId"]
    with store.write(acct) as w:
        inbox = next(m["id"] for m in w.mailboxes() if m["role"] == "inbox")
        raws = [message(), message("z" * 1000)]
        for raw in raws:
            ingest(w, raw, {inbox: True}, {}, 0)
    with store.read(acct) as r:
        assert r.quota()["storage"] == {"used": sum(map(len, raws)), "limit": None}
    with store.env.begin(write=True) as txn:  # as a data directory of the previous version was
        txn.delete(_QUOTAS_COUNTED, db=store.db["counters"])
        txn.delete(acct.encode() + SEP + b"octets", db=store.db["counters"])
    store.close()
    store = open_store(str(tmp_path))
    with store.read(acct) as r:
        assert r.quota()["storage"]["used"] == sum(map(len, raws))
        assert r.quota()["messages"]["used"] == 2
    store.close()
