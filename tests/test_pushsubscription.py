"""PushSubscription delivery (RFC 8620 §7.2) against a live `tidings serve --push-allow-http`, with a
real HTTP receiver on loopback in the test recording every request: the PushVerification, the
verification code, StateChanges from the API and from `tidings import`, `types`, other users,
unverified and expired subscriptions, RFC 8291 encryption, VAPID (RFC 8292, RFC 9749), retries with
backoff, 410, `--workers 2` (one deliverer) and a restart.

TIDINGS_PUSH_RETRY_BASE=0.05 makes the backoff 50 ms, 100 ms, ... instead of 1 s, 2 s, ..."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import http_ece
import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from py_vapid import jwt as vapid_jwt

from tests.conftest import CORE, MAIL, Jmap, Server, tidings, unique

VAPID = "urn:ietf:params:jmap:webpush-vapid"
ENV = {"TIDINGS_PUSH_RETRY_BASE": "0.05"}


# ------------------------------------------------------------------------------------ the receiver
class Received:
    def __init__(self, at: float, headers: dict, body: bytes, status: int):
        self.at = at
        self.headers = headers
        self.body = body
        self.status = status

    def json(self) -> dict:
        return orjson.loads(self.body)


class Receiver:
    """A push service on loopback: records every POST per path and answers 201, or the
    (status, headers, seconds to wait first) queued in `script[path]`."""

    def __init__(self):
        self.requests: dict[str, list[Received]] = defaultdict(list)
        self.script: dict[str, list[tuple]] = defaultdict(list)
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                at = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.lstrip("/")
                with receiver.cond:
                    status, headers, *delay = receiver.script[path].pop(0) if receiver.script[path] else (201, {})
                    receiver.requests[path].append(
                        Received(at, {k.lower(): v for k, v in self.headers.items()}, body, status))
                    receiver.cond.notify_all()
                if delay:
                    time.sleep(delay[0])
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def wait(self, path: str, count: int, timeout: float = 10.0) -> list[Received]:
        """The first `count` requests to path, once they arrived."""
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.requests[path]) >= count, timeout)
            got = list(self.requests[path])
        assert ok, f"{path}: {len(got)} requests, expected {count}: {[r.body[:200] for r in got]}"
        return got

    def wait_for(self, path: str, predicate, timeout: float = 10.0) -> Received:
        """The first request to path whose JSON body satisfies predicate."""
        with self.cond:
            found = []

            def check():
                found[:] = [r for r in self.requests[path] if predicate(r.json())]
                return bool(found)

            ok = self.cond.wait_for(check, timeout)
            got = [r.body[:300] for r in self.requests[path]]
        assert ok, f"{path}: nothing matching among {got}"
        return found[0]

    def count(self, path: str) -> int:
        with self.cond:
            return len(self.requests[path])

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


def make_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("pushdata")
    tidings("user", "add", "alice", "--password", "alice-pw", data=data)
    tidings("user", "add", "bob", "--password", "bob-pw", data=data)
    return data


@pytest.fixture(scope="module")
def push_server(tmp_path_factory):
    srv = Server(make_data(tmp_path_factory), extra=("--push-allow-http",), env=ENV)
    yield srv
    srv.stop()


# ---------------------------------------------------------------------------------------- helpers
def api(client: Jmap, calls: list) -> list:
    return client.request(calls, using=[CORE, MAIL])["methodResponses"]


def ps_set(client: Jmap, **args) -> dict:
    name, result, _ = api(client, [["PushSubscription/set", args, "c"]])[0]
    assert name == "PushSubscription/set", result
    return result


def create(client: Jmap, url: str, **props) -> tuple[str, dict]:
    result = ps_set(client, create={"s": {"deviceClientId": unique("dev"), "url": url, **props}})
    assert "s" in result.get("created", {}), result
    return result["created"]["s"]["id"], result["created"]["s"]


def subscribe(client: Jmap, receiver: Receiver, path: str | None = None, **props) -> tuple[str, str]:
    """A verified subscription posting to receiver/path: (id, path)."""
    path = path or unique("p")
    sub_id, _ = create(client, receiver.url(path), **props)
    verification = receiver.wait(path, 1)[0].json()
    assert verification == {"@type": "PushVerification", "pushSubscriptionId": sub_id,
                             "verificationCode": verification["verificationCode"]}
    result = ps_set(client, update={sub_id: {"verificationCode": verification["verificationCode"]}})
    assert sub_id in result["updated"], result
    return sub_id, path


def new_mailbox(client: Jmap) -> tuple[str, str]:
    """Creates a mailbox: (its id, the Mailbox state after)."""
    r = client.ok("Mailbox/set", create={"m": {"name": unique("box")}})
    return r["created"]["m"]["id"], r["newState"]


def new_draft(client: Jmap, mailbox: str) -> str:
    """Creates an email: the Email state after."""
    r = client.ok("Email/set", create={"e": {
        "mailboxIds": {mailbox: True}, "keywords": {"$draft": True}, "subject": unique("subj"),
        "textBody": [{"partId": "1", "type": "text/plain"}], "bodyValues": {"1": {"value": "hello"}}}})
    assert r["created"], r
    return r["newState"]


def state_change(account: str, type_name: str, state: str):
    """A predicate: a StateChange saying that account's type reached state."""
    return lambda body: (body.get("@type") == "StateChange"
                         and body["changed"].get(account, {}).get(type_name) == state)


# ------------------------------------------------------------------------------------------ tests
def test_http_url_refused_without_push_allow_http(server):
    alice = Jmap(server, "alice", "alice-pw")
    result = ps_set(alice, create={"s": {"deviceClientId": "d", "url": "http://127.0.0.1:9/x"}})
    assert result["notCreated"]["s"]["type"] == "invalidProperties"
    assert "url" in result["notCreated"]["s"]["properties"]


def test_verification_then_state_changes(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    path = unique("p")
    sub_id, created = create(alice, receiver.url(path))
    first = receiver.wait(path, 1)[0]
    body = first.json()
    assert body["@type"] == "PushVerification" and body["pushSubscriptionId"] == sub_id
    assert len(body["verificationCode"]) >= 32
    assert first.headers["content-type"] == "application/json"
    assert first.headers["ttl"] == "86400"
    assert first.headers["authorization"].startswith("vapid ")
    # the code is not shown by /get; a wrong one is refused
    got = api(alice, [["PushSubscription/get", {"ids": [sub_id]}, "g"]])[0][1]["list"][0]
    assert got["verificationCode"] is None and "url" not in got and "keys" not in got
    wrong = ps_set(alice, update={sub_id: {"verificationCode": "0" * 32}})
    assert wrong["notUpdated"][sub_id]["type"] == "invalidProperties"
    assert wrong["notUpdated"][sub_id]["properties"] == ["verificationCode"]
    # a change before verification is not pushed
    mailbox, _ = new_mailbox(alice)
    ok = ps_set(alice, update={sub_id: {"verificationCode": body["verificationCode"]}})
    assert sub_id in ok["updated"]
    # Mailbox/set, then Email/set: StateChanges with the account and the new states
    _, mailbox_state = new_mailbox(alice)
    received = receiver.wait_for(path, state_change(alice.account_id, "Mailbox", mailbox_state))
    assert set(received.json()["changed"]) == {alice.account_id}
    assert received.headers["ttl"] == "86400" and received.headers["content-type"] == "application/json"
    email_state = new_draft(alice, mailbox)
    receiver.wait_for(path, state_change(alice.account_id, "Email", email_state))
    bodies = [r.json() for r in receiver.requests[path]]
    assert bodies[0]["@type"] == "PushVerification"
    assert all(b["@type"] == "StateChange" for b in bodies[1:])


def test_cli_import_beside_the_server_is_pushed(push_server, receiver, tmp_path):
    alice = Jmap(push_server, "alice", "alice-pw")
    _, path = subscribe(alice, receiver)
    eml = tmp_path / "m.eml"
    eml.write_bytes(f"From: a@example.com\r\nTo: alice@localhost\r\nSubject: {unique()}\r\n"
                    f"Message-ID: <{unique()}@example.com>\r\n\r\nimported\r\n".encode())
    tidings("import", "--user", "alice", "--no-progress", str(eml), data=push_server.data)
    state = alice.ok("Email/get", ids=[])["state"]
    receiver.wait_for(path, state_change(alice.account_id, "Email", state))


def test_types_filter(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    _, path = subscribe(alice, receiver, types=["Email"])
    mailbox, _ = new_mailbox(alice)  # Mailbox only: not pushed
    email_state = new_draft(alice, mailbox)  # Email, Thread and Mailbox (counts): Email is pushed
    receiver.wait_for(path, state_change(alice.account_id, "Email", email_state))
    time.sleep(0.2)
    changes = [r.json() for r in receiver.requests[path][1:]]
    assert changes and all(set(c["changed"][alice.account_id]) == {"Email"} for c in changes), changes


def test_other_users_changes_never_arrive(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    bob = Jmap(push_server, "bob", "bob-pw")
    _, bob_path = subscribe(bob, receiver)
    _, alice_path = subscribe(alice, receiver)
    _, alice_state = new_mailbox(alice)
    receiver.wait_for(alice_path, state_change(alice.account_id, "Mailbox", alice_state))
    _, bob_state = new_mailbox(bob)  # after alice's, so alice's would have come first
    receiver.wait_for(bob_path, state_change(bob.account_id, "Mailbox", bob_state))
    time.sleep(0.2)
    for r in receiver.requests[bob_path][1:]:
        assert set(r.json()["changed"]) == {bob.account_id}
    # and bob's subscription is not alice's to see
    bob_ids = {s["deviceClientId"] for s in api(bob, [["PushSubscription/get", {"ids": None}, "g"]])[0][1]["list"]}
    alice_ids = {s["deviceClientId"]
                 for s in api(alice, [["PushSubscription/get", {"ids": None}, "g"]])[0][1]["list"]}
    assert bob_ids and not bob_ids & alice_ids


def test_unverified_subscription_gets_only_its_verification(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    path = unique("p")
    create(alice, receiver.url(path))
    receiver.wait(path, 1)
    _, witness = subscribe(alice, receiver)  # a verified one beside it
    _, state = new_mailbox(alice)
    receiver.wait_for(witness, state_change(alice.account_id, "Mailbox", state))
    time.sleep(0.2)
    assert receiver.count(path) == 1


def test_expires_clamped_and_expired_subscription_gets_nothing(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    far = (datetime.now(UTC) + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sub_id, created = create(alice, receiver.url(unique("p")), expires=far)
    expires = datetime.fromisoformat(created["expires"].replace("Z", "+00:00"))
    assert expires <= datetime.now(UTC) + timedelta(days=7, seconds=5)
    assert expires >= datetime.now(UTC) + timedelta(days=7, seconds=-60)

    sub_id, path = subscribe(alice, receiver)
    past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ps_set(alice, update={sub_id: {"expires": past}})
    before = receiver.count(path)
    _, witness = subscribe(alice, receiver)
    _, state = new_mailbox(alice)
    receiver.wait_for(witness, state_change(alice.account_id, "Mailbox", state))
    time.sleep(0.2)
    assert receiver.count(path) == before
    # the deliverer destroyed it when the change found it expired
    deadline = time.time() + 5
    while time.time() < deadline:
        got = api(alice, [["PushSubscription/get", {"ids": [sub_id]}, "g"]])[0][1]
        if got["notFound"] == [sub_id]:
            break
        time.sleep(0.05)
    assert got["notFound"] == [sub_id]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_keys_encrypt_with_rfc8291_and_vapid_signs(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    server_key = alice.session["capabilities"][VAPID]["applicationServerKey"]
    assert VAPID not in alice.session["accounts"][alice.account_id]["accountCapabilities"]
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
    auth = os.urandom(16)
    path = unique("p")
    sub_id, _ = create(alice, receiver.url(path), keys={"p256dh": _b64(public), "auth": _b64(auth)})
    first = receiver.wait(path, 1)[0]
    assert first.headers["content-encoding"] == "aes128gcm"
    assert b"PushVerification" not in first.body

    def decrypt(r: Received) -> dict:
        return orjson.loads(http_ece.decrypt(r.body, private_key=private, auth_secret=auth, version="aes128gcm"))

    verification = decrypt(first)
    assert verification["@type"] == "PushVerification" and verification["pushSubscriptionId"] == sub_id
    ps_set(alice, update={sub_id: {"verificationCode": verification["verificationCode"]}})
    _, state = new_mailbox(alice)
    receiver.wait(path, 2)
    deadline = time.time() + 10
    while time.time() < deadline:
        bodies = [decrypt(r) for r in receiver.requests[path][1:]]
        if any(state_change(alice.account_id, "Mailbox", state)(b) for b in bodies):
            break
        time.sleep(0.05)
    assert any(state_change(alice.account_id, "Mailbox", state)(b) for b in bodies), bodies
    # VAPID (RFC 8292 §3): t is a JWT for the receiver's origin signed by k = applicationServerKey
    for r in receiver.requests[path]:
        scheme, _, params = r.headers["authorization"].partition(" ")
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        assert scheme == "vapid" and fields["k"] == server_key
        claims = vapid_jwt.decode(fields["t"], fields["k"])
        assert claims["aud"] == f"http://127.0.0.1:{receiver.port}"
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600
        assert claims["sub"].startswith(("mailto:", "https:"))
        assert Vapid02.verify(r.headers["authorization"])  # as py-vapid reads it, too


def test_retries_with_backoff_then_delivers_once(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    _, path = subscribe(alice, receiver)
    receiver.script[path] = [(503, {}), (503, {})]
    _, state = new_mailbox(alice)
    got = receiver.wait(path, 4)  # the verification, 503, 503, then 201
    assert [r.status for r in got] == [201, 503, 503, 201]
    assert got[1].body == got[2].body == got[3].body  # the same StateChange, merged nothing new
    assert state_change(alice.account_id, "Mailbox", state)(got[3].json())
    assert got[2].at - got[1].at >= 0.02 and got[3].at - got[2].at >= 0.045  # 50 ms x 2^n x [0.5, 1]
    time.sleep(0.3)
    assert receiver.count(path) == 4


def test_changes_while_retrying_are_merged_and_retry_after_is_honoured(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    _, path = subscribe(alice, receiver)
    receiver.script[path] = [(429, {"Retry-After": "1"})]
    mailbox, _ = new_mailbox(alice)
    receiver.wait(path, 2)
    states = [new_mailbox(alice)[1] for _ in range(5)]  # during the Retry-After second
    got = receiver.wait(path, 3)
    time.sleep(0.3)
    got = receiver.requests[path]
    assert got[2].at - got[1].at >= 0.95
    assert len(got) == 3, [r.body for r in got]  # one StateChange with the latest state, not five
    assert state_change(alice.account_id, "Mailbox", states[-1])(got[2].json())


def test_changes_while_a_post_is_pending_are_merged(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    _, path = subscribe(alice, receiver)
    receiver.script[path] = [(201, {}, 0.5)]  # a slow push service
    new_mailbox(alice)
    receiver.wait(path, 2)
    states = [new_mailbox(alice)[1] for _ in range(10)]  # while that POST is pending
    last = receiver.wait_for(path, state_change(alice.account_id, "Mailbox", states[-1]))
    time.sleep(0.3)
    assert receiver.count(path) <= 4, [r.body for r in receiver.requests[path]]  # not 1 + 1 + 10
    assert receiver.requests[path][-1] is last


def test_gone_destroys_the_subscription(push_server, receiver):
    alice = Jmap(push_server, "alice", "alice-pw")
    sub_id, path = subscribe(alice, receiver)
    receiver.script[path] = [(410, {})]
    new_mailbox(alice)
    receiver.wait(path, 2)
    deadline = time.time() + 5
    while time.time() < deadline:
        got = api(alice, [["PushSubscription/get", {"ids": [sub_id]}, "g"]])[0][1]
        if got["notFound"] == [sub_id]:
            break
        time.sleep(0.05)
    assert got["notFound"] == [sub_id]
    new_mailbox(alice)
    time.sleep(0.3)
    assert receiver.count(path) == 2


def fresh(server: Server, user: str, password: str) -> Jmap:
    """A client on a new connection (so that with --workers 2 the requests reach both workers)."""
    client = Jmap(server, user, password)
    client.http.headers["Connection"] = "close"
    return client


def test_two_workers_deliver_each_change_once(tmp_path_factory, receiver):
    srv = Server(make_data(tmp_path_factory), extra=("--push-allow-http", "--workers", "2"), env=ENV)
    try:
        alice = fresh(srv, "alice", "alice-pw")
        paths = [subscribe(alice, receiver)[1] for _ in range(3)]
        states = []
        for _ in range(8):
            _, state = new_mailbox(alice)
            states.append(state)
            for path in paths:
                receiver.wait_for(path, state_change(alice.account_id, "Mailbox", state))
        time.sleep(0.5)
        for path in paths:
            seen = [r.json()["changed"][alice.account_id].get("Mailbox") for r in receiver.requests[path][1:]]
            assert len(seen) == len(set(seen)) <= len(states), seen  # no state twice
            assert states[-1] in seen
    finally:
        srv.stop()


def deliverer_pid(data: Path) -> int | None:
    """The process holding <data>/push/deliverer.lock (from /proc/locks)."""
    inode = os.stat(data / "push" / "deliverer.lock").st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return int(fields[4])
    return None


def test_another_worker_takes_over_when_the_deliverer_dies(tmp_path_factory, receiver):
    srv = Server(make_data(tmp_path_factory), extra=("--push-allow-http", "--workers", "2"), env=ENV)
    try:
        alice = fresh(srv, "alice", "alice-pw")
        _, path = subscribe(alice, receiver)
        _, state = new_mailbox(alice)
        receiver.wait_for(path, state_change(alice.account_id, "Mailbox", state))
        first = deliverer_pid(srv.data)
        assert first is not None and first != srv.proc.pid
        os.kill(first, signal.SIGKILL)
        _, state = new_mailbox(alice)  # made while nobody delivers, or just after
        receiver.wait_for(path, state_change(alice.account_id, "Mailbox", state))
        second = deliverer_pid(srv.data)
        assert second is not None and second != first
    finally:
        srv.stop()


def test_delivery_goes_on_after_a_restart(tmp_path_factory, receiver, tmp_path):
    data = make_data(tmp_path_factory)
    srv = Server(data, extra=("--push-allow-http",), env=ENV)
    try:
        alice = Jmap(srv, "alice", "alice-pw")
        _, path = subscribe(alice, receiver)
        _, state = new_mailbox(alice)
        receiver.wait_for(path, state_change(alice.account_id, "Mailbox", state))
    finally:
        srv.stop()
    # while it is down, the CLI stores a message: pushed once the server is back
    eml = tmp_path / "m.eml"
    eml.write_bytes(f"From: a@example.com\r\nSubject: {unique()}\r\nMessage-ID: <{unique()}@x>\r\n\r\nx\r\n".encode())
    tidings("import", "--user", "alice", "--no-progress", str(eml), data=data)
    srv = Server(data, extra=("--push-allow-http",), env=ENV)
    try:
        alice = Jmap(srv, "alice", "alice-pw")
        email_state = alice.ok("Email/get", ids=[])["state"]
        receiver.wait_for(path, state_change(alice.account_id, "Email", email_state))
        _, state = new_mailbox(alice)
        receiver.wait_for(path, state_change(alice.account_id, "Mailbox", state))
    finally:
        srv.stop()


def test_session_state_and_capability_without_the_flag(server):
    session = httpx.get(server.base + "/.well-known/jmap", auth=("alice", "alice-pw")).json()
    key = base64.urlsafe_b64decode(session["capabilities"][VAPID]["applicationServerKey"] + "==")
    assert len(key) == 65 and key[0] == 4
    assert VAPID not in session["primaryAccounts"]
