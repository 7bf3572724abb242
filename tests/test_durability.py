"""Durability and robustness, black-box: acknowledged writes survive `kill -9` of the server; the
`tidings import` CLI works while the server runs and the server sees its messages without a restart;
and after a flood of bad requests (malformed JSON, a 20 MB body, JSON nested 100,000 deep, wrong
types, another user's account) the server still answers normally."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import CORE, MAIL, Jmap, Server, tidings, unique


def message(subject: str, body: str = "Some body text.", **headers: str) -> bytes:
    fields = {"From": "Sender <sender@example.com>", "To": "rcpt@example.com", "Subject": subject,
              "Date": "Mon, 15 Jan 2024 10:00:00 +0000", "Message-ID": f"<{unique('d')}@example.com>",
              **{k.replace("_", "-"): v for k, v in headers.items()}}
    return ("".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n" + body + "\r\n").encode()


def new_mailbox(client: Jmap, name: str | None = None) -> str:
    r = client.ok("Mailbox/set", create={"mb": {"name": name or unique("mb")}})
    assert r["created"], r
    return r["created"]["mb"]["id"]


COUNTS = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]


def counts(client: Jmap, mailbox_id: str) -> dict:
    [mb] = client.ok("Mailbox/get", ids=[mailbox_id], properties=COUNTS)["list"]
    return {k: mb[k] for k in COUNTS}


def state(client: Jmap, type_name: str) -> str:
    return client.ok(f"{type_name}/get", ids=[])["state"]


def new_data_dir(tmp_path: Path, *users: str) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for user in users:
        tidings("user", "add", user, "--password", f"{user}-pw", "--email", f"{user}@example.com", data=data)
    return data


# ---------------------------------------------------------------- kill -9
def test_acknowledged_writes_survive_kill_9(tmp_path):
    data = new_data_dir(tmp_path, "carol")
    srv = Server(data)
    try:
        c = Jmap(srv, "carol", "carol-pw")
        inbox = c.mailbox("inbox")
        email_state0, mailbox_state0 = state(c, "Email"), state(c, "Mailbox")
        keep = new_mailbox(c, "Keep")
        kept = c.import_message(message("kept"), mailbox=keep, keywords={"$seen": True},
                                received_at="2024-03-01T08:00:00Z")
        unread = c.import_message(message("unread"), mailbox=inbox)
        doomed = c.import_message(message("doomed"), mailbox=inbox)
        r = c.ok("Email/set", update={kept["id"]: {"keywords/$flagged": True},
                                      unread["id"]: {f"mailboxIds/{keep}": True}},
                 destroy=[doomed["id"]])
        assert set(r["updated"]) == {kept["id"], unread["id"]} and r["destroyed"] == [doomed["id"]], r
        props = ["blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "subject"]
        before = {
            "emails": c.ok("Email/get", ids=[kept["id"], unread["id"], doomed["id"]], properties=props),
            "keep": counts(c, keep), "inbox": counts(c, inbox),
            "query": c.ok("Email/query", filter={"inMailbox": keep})["ids"],
            "mailbox_state": state(c, "Mailbox"),
        }
        # the last write is acknowledged, then the server is killed at once
        last = c.ok("Email/set", update={kept["id"]: {"keywords/$answered": True}})
        assert last["updated"] and kept["id"] in last["updated"], last
    finally:
        srv.stop(kill=True)  # SIGKILL right after the last acknowledged write
    assert srv.proc.returncode == -9

    srv = Server(data)
    try:
        c = Jmap(srv, "carol", "carol-pw")
        emails = c.ok("Email/get", ids=[kept["id"], unread["id"], doomed["id"]], properties=props)
        before["emails"]["list"][0]["keywords"]["$answered"] = True
        assert emails["list"] == before["emails"]["list"]
        assert emails["notFound"] == [doomed["id"]]
        assert emails["state"] == last["newState"]
        by_id = {e["id"]: e for e in emails["list"]}
        assert by_id[kept["id"]]["keywords"] == {"$seen": True, "$flagged": True, "$answered": True}
        assert by_id[kept["id"]]["receivedAt"] == "2024-03-01T08:00:00Z"
        assert by_id[unread["id"]]["mailboxIds"] == {inbox: True, keep: True}
        assert counts(c, keep) == before["keep"] == {"totalEmails": 2, "unreadEmails": 1, "totalThreads": 2,
                                                     "unreadThreads": 1}
        assert counts(c, inbox) == before["inbox"] == {"totalEmails": 1, "unreadEmails": 1, "totalThreads": 1,
                                                       "unreadThreads": 1}
        assert c.ok("Email/query", filter={"inMailbox": keep})["ids"] == before["query"]
        assert state(c, "Mailbox") == before["mailbox_state"]
        # the change logs survived too
        ch = c.ok("Email/changes", sinceState=email_state0)
        assert ch["hasMoreChanges"] is False and ch["newState"] == last["newState"]
        assert set(ch["created"]) | set(ch["updated"]) == {kept["id"], unread["id"]}
        assert doomed["id"] not in set(ch["created"]) | set(ch["updated"])
        assert keep in c.ok("Mailbox/changes", sinceState=mailbox_state0)["created"]
        assert c.ok("Email/get", ids=[kept["id"]], properties=["id"])["list"]
        # the restarted server takes writes again
        again = c.import_message(message("after restart"), mailbox=keep)
        assert counts(c, keep)["totalEmails"] == 3
        assert c.ok("Email/changes", sinceState=last["newState"])["created"] == [again["id"]]
    finally:
        srv.stop()


# ---------------------------------------------------------------- tidings import while serving
def _mbox(subjects: list[str], tag: str) -> bytes:
    out = []
    for i, subject in enumerate(subjects):
        status = "Status: RO\nX-Status: F\n" if i == 0 else ""
        out.append(f"From sender@example.com Mon Jan 15 10:0{i}:00 2024\n"
                   f"From: Sender <sender@example.com>\nTo: alice@example.com\nSubject: {subject}\n"
                   f"Date: Mon, 15 Jan 2024 10:0{i}:00 +0000\nMessage-ID: <{tag}-{i}@example.com>\n{status}\n"
                   f"Body of {subject}.\n\n")
    return "".join(out).encode()


def test_cli_import_while_the_server_runs_is_seen_without_restart(server, alice, tmp_path):
    name = unique("Imported")
    tag = unique("cli")
    subjects = [f"cli message {i} {tag}" for i in range(3)]
    mbox = tmp_path / "archive.mbox"
    mbox.write_bytes(_mbox(subjects, tag))
    email_state0, mailbox_state0 = state(alice, "Email"), state(alice, "Mailbox")
    assert alice.ok("Email/query", filter={"inMailbox": "nothing-yet"})["ids"] == []

    result = tidings("import", "--user", "alice", "--mailbox", name, "--no-progress", str(mbox), data=server.data)
    assert result.returncode == 0, result.stderr

    mailboxes = [mb for mb in alice.ok("Mailbox/get", ids=None)["list"] if mb["name"] == name]
    assert len(mailboxes) == 1, "the CLI creates the mailbox and the running server sees it"
    mb = mailboxes[0]
    assert mb["totalEmails"] == 3 and mb["unreadEmails"] == 2
    assert mb["id"] in alice.ok("Mailbox/changes", sinceState=mailbox_state0)["created"]
    r = alice.ok("Email/query", filter={"inMailbox": mb["id"]}, sort=[{"property": "receivedAt",
                                                                       "isAscending": True}],
                 calculateTotal=True)
    assert r["total"] == 3
    emails = alice.ok("Email/get", ids=r["ids"], properties=["subject", "receivedAt", "keywords",
                                                             "mailboxIds"])["list"]
    assert [e["subject"] for e in emails] == subjects
    assert [e["receivedAt"] for e in emails] == [f"2024-01-15T10:0{i}:00Z" for i in range(3)]
    assert emails[0]["keywords"] == {"$seen": True, "$flagged": True}
    assert emails[1]["keywords"] == {}
    assert all(e["mailboxIds"] == {mb["id"]: True} for e in emails)
    assert set(alice.ok("Email/changes", sinceState=email_state0)["created"]) >= set(r["ids"])

    # idempotent: a second run imports nothing, and the server still sees exactly three
    again = tidings("import", "--user", "alice", "--mailbox", name, "--no-progress", str(mbox), data=server.data)
    assert again.returncode == 0, again.stderr
    assert alice.ok("Email/query", filter={"inMailbox": mb["id"]}, calculateTotal=True)["total"] == 3
    # and the server's own writes still work next to the CLI's
    alice.ok("Email/set", update={r["ids"][1]: {"keywords/$seen": True}})
    [after] = alice.ok("Mailbox/get", ids=[mb["id"]], properties=["unreadEmails"])["list"]
    assert after["unreadEmails"] == 1


def test_cli_import_and_api_writes_interleave(server, alice, tmp_path):
    """CLI imports into the same account while the API imports: nothing is lost on either side."""
    mb_name = unique("Mixed")
    tag = unique("mix")
    mbox = tmp_path / "mixed.mbox"
    mbox.write_bytes(_mbox([f"cli {tag} {i}" for i in range(3)], tag))
    target = new_mailbox(alice)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(tidings, "import", "--user", "alice", "--mailbox", mb_name, "--no-progress",
                             str(mbox), data=server.data)
        api_ids = [alice.import_message(message(f"api {tag} {i}"), mailbox=target)["id"] for i in range(5)]
        assert future.result().returncode == 0
    assert sorted(alice.ok("Email/query", filter={"inMailbox": target})["ids"]) == sorted(api_ids)
    [mb] = [m for m in alice.ok("Mailbox/get", ids=None)["list"] if m["name"] == mb_name]
    assert alice.ok("Email/query", filter={"inMailbox": mb["id"]}, calculateTotal=True)["total"] == 3
    assert counts(alice, target)["totalEmails"] == 5


# ---------------------------------------------------------------- a flood of bad requests
def _post(client: Jmap, body: bytes) -> httpx.Response | None:
    try:
        return client.http.post(client.api_url, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError:
        return None  # the server may close the connection on a huge body: that is fine


def _request(calls: list) -> bytes:
    return json.dumps({"using": [CORE, MAIL], "methodCalls": calls}).encode()


def test_server_answers_normally_after_a_flood_of_bad_requests(tmp_path):
    data = new_data_dir(tmp_path, "dave", "erin")
    srv = Server(data)
    try:
        dave, erin = Jmap(srv, "dave", "dave-pw"), Jmap(srv, "erin", "erin-pw")
        inbox = dave.mailbox("inbox")
        first = dave.import_message(message("before the flood"), mailbox=inbox)
        baseline = dave.ok("Email/query", filter={"inMailbox": inbox})

        acc = dave.account_id
        nested = b"[" * 100_000 + b"]" * 100_000
        # bodies that are no JMAP request: a request-level problem (RFC 8620 §3.6.1)
        not_requests = [
            b"{", b"", b"null", b"[]", b'{"using": 5}', b"\xff\xfe\x00garbage", b'{"using": [], "methodCalls": {}}',
            nested,
            b'{"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", ' + nested + b', "c"]]}',
            b'{"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {"a": ' + b'{"a": ' * 50_000
            + b"1" + b"}" * 50_000 + b'}, "c"]]}',
            b'{"using": ["urn:ietf:params:jmap:core"], "methodCalls": [' + b'["Core/echo", {}, "c"],' * 1000
            + b'["Core/echo", {}, "c"]]}',
        ]
        for body in not_requests:
            r = _post(dave, body)
            assert r is not None and r.status_code == 400, (body[:80], r)
            kind = r.json()["type"].rsplit(":", 1)[-1]
            assert kind in ("notJSON", "notRequest", "limit"), (body[:80], r.json())

        # well-formed requests with wrong types: method-level errors or SetErrors, never serverFail
        wrong_types = [
            [["Email/get", {"accountId": acc, "ids": "not-a-list"}, "c"]],
            [["Email/get", {"accountId": acc, "ids": [1, 2, {}]}, "c"]],
            [["Email/get", {"accountId": acc, "properties": {"a": 1}}, "c"]],
            [["Email/get", {"accountId": acc, "ids": [], "bodyProperties": "x", "maxBodyValueBytes": "7"}, "c"]],
            [["Email/set", {"accountId": acc, "update": [], "create": "x", "destroy": {}}, "c"]],
            [["Email/set", {"accountId": acc, "update": {first["id"]: {"keywords": 5, "mailboxIds": "x"}}}, "c"]],
            [["Email/set", {"accountId": acc, "create": {"x": {"mailboxIds": {inbox: True}, "bodyStructure": 5,
                                                               "from": "me", "sentAt": 7}}}, "c"]],
            [["Email/query", {"accountId": acc, "filter": {"operator": "AND", "conditions": 5}}, "c"]],
            [["Email/query", {"accountId": acc, "sort": [5], "position": "x"}, "c"]],
            [["Email/queryChanges", {"accountId": acc, "sinceQueryState": None, "filter": 5}, "c"]],
            [["Email/import", {"accountId": acc, "emails": {"x": {"blobId": 5, "mailboxIds": []}}}, "c"]],
            [["Email/import", {"accountId": acc, "emails": ["x"]}, "c"]],
            [["Email/changes", {"accountId": acc, "sinceState": 5, "maxChanges": "x"}, "c"]],
            [["Email/parse", {"accountId": acc, "blobIds": "x"}, "c"]],
            [["Mailbox/set", {"accountId": acc, "create": {"m": {"name": 5, "parentId": []}}}, "c"]],
            [["Email/get", {"accountId": 12345, "ids": []}, "c"]],
            [["Email/get", {"ids": []}, "c"]],
        ]
        for calls in wrong_types:
            r = _post(dave, _request(calls + [["Core/echo", {"still": "here"}, "d"]]))
            assert r is not None and r.status_code == 200, (calls, r)
            *answers, echo = r.json()["methodResponses"]
            assert echo == ["Core/echo", {"still": "here"}, "d"]
            for name, args, _ in answers:
                if name == "error":
                    assert args["type"] in ("invalidArguments", "accountNotFound", "unsupportedFilter",
                                            "unsupportedSort"), (calls, args)
                else:  # /set and /import answer per object, with nothing done
                    assert name.endswith(("/set", "/import")), (calls, name)
                    assert not args.get("created") and not args.get("updated"), (calls, args)

        # a 20 MB body: refused with a limit problem (or the connection is closed), never accepted
        big = b'{"using": [], "methodCalls": [], "pad": "' + b"x" * 20_000_000 + b'"}'
        r = _post(dave, big)
        assert r is None or (r.status_code == 400 and r.json()["type"].endswith(":limit")), r

        # another user's account: accountNotFound for every method, and nothing of erin's leaks
        erin_inbox = erin.mailbox("inbox")
        secret = erin.import_message(message("erin's secret"), mailbox=erin_inbox)
        for method, args in (("Email/get", {"ids": [secret["id"]]}), ("Email/query", {}),
                             ("Email/set", {"destroy": [secret["id"]]}),
                             ("Mailbox/get", {"ids": None}), ("Email/changes", {"sinceState": "0"})):
            name, result = dave.call(method, {**args, "accountId": erin.account_id})
            assert (name, result["type"]) == ("error", "accountNotFound"), (method, result)
        # (ids are per account: the same id may name one of dave's own emails)
        seen = dave.ok("Email/get", ids=[secret["id"]], properties=["subject"])["list"]
        assert all(e["subject"] != "erin's secret" for e in seen)
        url = dave.session["uploadUrl"].replace("{accountId}", erin.account_id)
        assert dave.http.post(url, content=b"x").status_code in (403, 404)

        # many bad requests at once
        def hammer(i: int) -> int:
            r = _post(dave, [b"{", nested, b'{"using": 1}', _request([["Email/get", {"ids": 5}, "c"]])][i % 4])
            return r.status_code if r is not None else 0

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(hammer, range(200)))
        assert set(statuses) <= {200, 400, 429}, set(statuses)

        # ... and the server still answers normally
        assert srv.proc.poll() is None, "the server died"
        assert dave.request([["Core/echo", {"hello": "world"}, "e"]])["methodResponses"] == \
            [["Core/echo", {"hello": "world"}, "e"]]
        assert dave.ok("Email/query", filter={"inMailbox": inbox}) == baseline
        assert erin.ok("Email/get", ids=[secret["id"]], properties=["subject"])["list"][0]["subject"] == \
            "erin's secret"
        after = dave.import_message(message("after the flood"), mailbox=inbox)
        assert dave.ok("Email/get", ids=[after["id"]], properties=["subject"])["list"][0]["subject"] == \
            "after the flood"
        assert counts(dave, inbox)["totalEmails"] == 2
        log = (data / f"server-{srv.port}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        srv.stop()


@pytest.mark.parametrize("path", ["/jmap/download/{acc}/Gnope/x.bin", "/jmap/download/{other}/Gnope/x.bin"])
def test_bad_downloads_are_404_and_the_server_goes_on(alice, bob, path):
    r = alice.http.get(path.format(acc=alice.account_id, other=bob.account_id))
    assert r.status_code == 404
    assert alice.ok("Email/get", ids=[])["list"] == []
