"""Authentication (issue 9): bearer tokens made with `tidings token`, the WWW-Authenticate challenges
of every 401, PushSubscriptions tied to the token, and the failed-login limits (case o05 of
../shared/cases/operations/README.md). Attacks come from other loopback addresses (127.0.0.2, ...)
so that the server sees distinct client addresses."""

from __future__ import annotations

import asyncio
import base64
import re
import statistics
import threading
import time

import httpx
import pytest
import websockets

from tests.conftest import CORE, MAIL, Server, tidings, unique

SESSION = "/.well-known/jmap"
TOKEN_LINE = re.compile(r"tdg_K[0-9a-f]{4,}_[A-Za-z0-9_-]{43}")


def from_address(server: Server, address: str, **kw) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z reaches the loopback server)."""
    return httpx.Client(base_url=server.base, transport=httpx.HTTPTransport(local_address=address),
                        timeout=60, **kw)


def new_token(server: Server, user: str, *options: str) -> tuple[str, str]:
    """(token id, token) from `tidings token create`, read from the last line as scripts do."""
    out = tidings("token", "create", "--user", user, *options, data=server.data).stdout
    token = out.splitlines()[-1]
    assert TOKEN_LINE.fullmatch(token), out
    return token.split("_")[1], token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def echo(server: Server, headers: dict, client: httpx.Client | None = None) -> httpx.Response:
    body = {"using": [CORE], "methodCalls": [["Core/echo", {"x": 1}, "c"]]}
    return (client or httpx).post(server.base + "/jmap/api/", json=body, headers=headers, timeout=60)


def challenges(response: httpx.Response) -> list[str]:
    return response.headers.get_list("www-authenticate")


def add_user(data, name: str, password: str) -> None:
    tidings("user", "add", name, "--password", password, "--email", f"{name}@example.com", data=data)


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """A server with two worker processes sharing the store (tokens must work across them)."""
    data = tmp_path_factory.mktemp("authdata")
    add_user(data, "alice", "alice-pw")
    add_user(data, "bob", "bob-pw")
    srv = Server(data, extra=("--workers", "2", "--push-allow-http", "--log-level", "warning"))
    yield srv
    srv.stop()


# ------------------------------------------------------------------------------------------ tokens
def test_token_logs_in_as_its_user_with_the_users_account(workers):
    _, token = new_token(workers, "alice", "--name", "laptop")
    session = httpx.get(workers.base + SESSION, headers=bearer(token), timeout=60)
    assert session.status_code == 200, session.text
    alice = httpx.get(workers.base + SESSION, auth=("alice", "alice-pw"), timeout=60).json()
    assert session.json()["username"] == "alice"
    assert session.json()["primaryAccounts"][MAIL] == alice["primaryAccounts"][MAIL]
    r = echo(workers, bearer(token))
    assert r.status_code == 200 and r.json()["methodResponses"] == [["Core/echo", {"x": 1}, "c"]]
    account = alice["primaryAccounts"][MAIL]
    body = {"using": [CORE, MAIL], "methodCalls": [["Mailbox/get", {"accountId": account, "ids": None,
                                                                    "properties": ["role"]}, "m"]]}
    r = httpx.post(workers.base + "/jmap/api/", json=body, headers=bearer(token), timeout=60)
    roles = {mb["role"] for mb in r.json()["methodResponses"][0][1]["list"]}
    assert roles == {"inbox", "drafts", "sent", "archive", "junk", "trash"}
    # the scheme name is case-insensitive (RFC 9110 §11.1)
    assert httpx.get(workers.base + SESSION, headers={"Authorization": "bearer " + token},
                     timeout=60).status_code == 200


def test_token_create_prints_the_token_once_and_list_shows_it_without_the_secret(workers):
    out = tidings("token", "create", "--user", "bob", "--name", "phone", "--expires", "30",
                  data=workers.data).stdout
    lines = out.splitlines()
    assert len(lines) == 2 and TOKEN_LINE.fullmatch(lines[1]), out
    token_id, secret = lines[1].split("_")[1], lines[1].split("_", 2)[2]
    assert lines[0].startswith(f"created token {token_id} (phone) for bob, expires ")
    listed = tidings("token", "list", "--user", "bob", data=workers.data).stdout
    row = next(line for line in listed.splitlines() if line.startswith(token_id + " "))
    assert row.split()[1:3] == ["bob", "phone"]
    assert row.split()[-1] == "never"  # not used yet
    assert secret not in listed and secret not in out.splitlines()[0]
    assert echo(workers, bearer(lines[1])).status_code == 200
    row = next(line for line in tidings("token", "list", data=workers.data).stdout.splitlines()
               if line.startswith(token_id + " "))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row.split()[-1]), row  # last used: now
    assert "alice" not in tidings("token", "list", "--user", "bob", data=workers.data).stdout


def test_revoked_token_is_refused_on_the_next_request_by_every_worker(workers):
    token_id, token = new_token(workers, "alice")
    other_id, other = new_token(workers, "alice")
    # new connections each time: both worker processes answer some of them
    assert [echo(workers, bearer(token)).status_code for _ in range(8)] == [200] * 8
    out = tidings("token", "revoke", token_id, data=workers.data).stdout
    assert out.strip() == f"revoked token {token_id} of alice"
    assert [echo(workers, bearer(token)).status_code for _ in range(8)] == [401] * 8
    assert echo(workers, bearer(other)).status_code == 200  # only that token
    assert token_id not in tidings("token", "list", data=workers.data).stdout
    again = tidings("token", "revoke", token_id, data=workers.data, check=False)
    assert again.returncode == 1 and f"no token {token_id}" in again.stderr


def test_expired_token_is_refused(workers):
    _, token = new_token(workers, "alice", "--expires", "0.00005")  # 4.32 s
    assert echo(workers, bearer(token)).status_code == 200
    time.sleep(5.5)
    r = echo(workers, bearer(token))
    assert r.status_code == 401
    assert 'Bearer realm="tidings", error="invalid_token"' in challenges(r)


def test_token_with_a_wrong_secret_or_of_a_deleted_user_is_refused(workers):
    name = unique("tok")
    add_user(workers.data, name, "pw")
    token_id, token = new_token(workers, name)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert echo(workers, bearer(forged)).status_code == 401
    assert echo(workers, bearer(token)).status_code == 200
    tidings("user", "delete", name, "--yes", data=workers.data)
    assert echo(workers, bearer(token)).status_code == 401
    assert token_id not in tidings("token", "list", data=workers.data).stdout


def test_token_survives_a_password_change(workers):
    name = unique("pwtok")
    add_user(workers.data, name, "first")
    _, token = new_token(workers, name)
    tidings("user", "passwd", name, "--password", "second", data=workers.data)
    assert echo(workers, bearer(token)).status_code == 200


def test_token_create_refuses_unknown_users_and_bad_expiry(workers):
    r = tidings("token", "create", "--user", "nobody", data=workers.data, check=False)
    assert r.returncode == 1 and r.stdout == "" and "no user 'nobody'" in r.stderr
    for days in ("0", "-1", "nan"):
        r = tidings("token", "create", "--user", "alice", "--expires", days, data=workers.data, check=False)
        assert r.returncode == 1 and "--expires" in r.stderr, (days, r.stderr)


def test_websocket_requests_stop_when_its_token_is_revoked(workers):
    token_id, token = new_token(workers, "alice")
    url = workers.base.replace("http:", "ws:") + "/jmap/ws/"
    request = '{"@type": "Request", "id": "r", "using": ["urn:ietf:params:jmap:core"], ' \
              '"methodCalls": [["Core/echo", {}, "c"]]}'

    async def run() -> tuple[dict, dict]:
        import json

        async with websockets.connect(url, subprotocols=["jmap"], additional_headers=bearer(token)) as ws:
            await ws.send(request)
            before = json.loads(await ws.recv())
            tidings("token", "revoke", token_id, data=workers.data)
            await ws.send(request)
            return before, json.loads(await ws.recv())

    before, after = asyncio.run(run())
    assert before["@type"] == "Response" and before["methodResponses"] == [["Core/echo", {}, "c"]]
    assert after["@type"] == "RequestError" and after["status"] == 401 and after["requestId"] == "r"


def test_an_eventsource_opened_with_a_token_ends_when_the_token_is_revoked(workers):
    from tests.conftest import Jmap
    from tests.test_push import EventStream

    token_id, token = new_token(workers, "alice")
    alice = Jmap(workers, "alice", "alice-pw")

    async def run() -> tuple[dict, object]:
        async with EventStream(workers.base, None, headers=bearer(token)) as es:
            first = await es.state()
            tidings("token", "revoke", token_id, data=workers.data)
            await asyncio.to_thread(alice.ok, "Mailbox/set", create={"m": {"name": unique("after revoke ")}})
            return first, await es.next(15)

    first, after = asyncio.run(run())
    assert first["event"] == "state"
    assert after is None  # the stream ended instead of reporting the change


# ------------------------------------------------------------------------ challenges on every 401
def _resources(server: Server) -> list[tuple[str, str]]:
    return [("GET", SESSION), ("POST", "/jmap/api/"), ("POST", "/jmap/upload/Ax/"),
            ("GET", "/jmap/download/Ax/Gx/n?accept=text/plain"), ("GET", "/jmap/eventsource/?types=*&"
                                                                          "closeafter=no&ping=0")]


@pytest.mark.parametrize("authorization", [None, "Basic YWxpY2U6d3Jvbmc=", "Bearer tdg_K0999_" + "x" * 43,
                                           "Bearer nonsense", "Digest abc"],
                         ids=["none", "wrong-basic", "unknown-token", "malformed-token", "other-scheme"])
def test_every_401_carries_a_challenge_for_basic_and_for_bearer(workers, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    bearer_challenge = 'Bearer realm="tidings"'
    if authorization and authorization.startswith("Bearer"):
        bearer_challenge += ', error="invalid_token"'
    for method, path in _resources(workers):
        r = httpx.request(method, workers.base + path, headers={**headers, "Content-Type": "application/json",
                                                                 "Origin": "https://webmail.example.org"},
                          content=b"{}" if method == "POST" else None, timeout=60)
        assert r.status_code == 401, (path, r.text)
        # CORS: a browser client may read the challenges
        assert "www-authenticate" in r.headers["access-control-expose-headers"].lower()
        assert challenges(r) == ['Basic realm="tidings", charset="UTF-8"', bearer_challenge], path
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 401

    async def upgrade() -> websockets.exceptions.InvalidStatus:
        try:
            await websockets.connect(workers.base.replace("http:", "ws:") + "/jmap/ws/", subprotocols=["jmap"],
                                     additional_headers=headers)
        except websockets.exceptions.InvalidStatus as exc:
            return exc
        raise AssertionError("the upgrade was accepted")

    refused = asyncio.run(upgrade()).response
    assert refused.status_code == 401
    assert refused.headers.get_all("WWW-Authenticate") == ['Basic realm="tidings", charset="UTF-8"',
                                                           bearer_challenge]


# ----------------------------------------------------------------- PushSubscription and credentials
def _push_set(server: Server, headers: dict, **args) -> dict:
    body = {"using": [CORE], "methodCalls": [["PushSubscription/set", args, "p"]]}
    r = httpx.post(server.base + "/jmap/api/", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["methodResponses"][0][1]


def _push_ids(server: Server, headers: dict) -> list[str]:
    body = {"using": [CORE], "methodCalls": [["PushSubscription/get", {"ids": None}, "p"]]}
    r = httpx.post(server.base + "/jmap/api/", json=body, headers=headers, timeout=60)
    return [s["id"] for s in r.json()["methodResponses"][0][1]["list"]]


def test_push_subscription_belongs_to_the_token_and_ends_with_it(workers):
    token_id, token = new_token(workers, "alice", "--expires", "1")
    _, other = new_token(workers, "alice")
    basic = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-pw").decode()}
    created = _push_set(workers, bearer(token), create={"s": {"deviceClientId": unique("dev"),
                                                              "url": "http://127.0.0.1:9/push"}})
    sub_id = created["created"]["s"]["id"]
    # §7.2: bounded by the token's expiry (a day), not by the 7 days of credentials that never expire
    expires = created["created"]["s"]["expires"]
    listed = tidings("token", "list", "--user", "alice", data=workers.data).stdout
    row = next(line for line in listed.splitlines() if line.startswith(token_id + " "))
    assert expires == row.split()[4], (expires, row)
    assert _push_ids(workers, bearer(token)) == [sub_id]
    assert sub_id not in _push_ids(workers, bearer(other))  # another token of the same user
    assert sub_id not in _push_ids(workers, basic)  # Basic is per user, another credential
    out = tidings("token", "revoke", token_id, data=workers.data).stdout
    assert out.strip() == f"revoked token {token_id} of alice; destroyed 1 push subscription(s)"


# ---------------------------------------------------------------------------- failed-login limits
@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """One worker with the default limits (50 failures per address in 5 minutes)."""
    data = tmp_path_factory.mktemp("limitdata")
    for name in ("alice", "bob", "carol", "dave"):
        add_user(data, name, f"{name}-pw")
    srv = Server(data, extra=("--log-level", "warning"))
    yield srv
    srv.stop()


def test_unknown_user_is_refused_as_slowly_as_a_wrong_password(guarded):
    with from_address(guarded, "127.0.0.4") as c:
        def timed(user: str) -> float:
            start = time.perf_counter()
            assert c.get(SESSION, auth=(user, "not-the-password")).status_code == 401
            return time.perf_counter() - start

        timed("alice")  # the connection is set up
        pairs = [(timed("alice"), timed(unique("ghost"))) for _ in range(7)]  # interleaved: same load
        wrong = statistics.median(w for w, _ in pairs)
        unknown = statistics.median(u for _, u in pairs)
    print(f"\nmedian 401: wrong password {wrong * 1000:.0f} ms, unknown user {unknown * 1000:.0f} ms")
    assert wrong > 0.02  # a password hash was verified (argon2: ~100 ms)
    assert 0.6 < unknown / wrong < 1.6


def test_failures_are_logged_with_user_and_address_never_the_secret(guarded):
    with from_address(guarded, "127.0.0.5") as c:
        assert c.get(SESSION, auth=("carol", "Secret-Guess-1")).status_code == 401
        assert c.get(SESSION, headers=bearer("tdg_K0777_" + "s3cr3t" * 8)).status_code == 401
    time.sleep(0.3)
    log = (guarded.data / f"server-{guarded.port}.log").read_text()
    assert "login failed: user 'carol' from 127.0.0.5: unknown user or wrong password" in log
    assert "login failed: user - from 127.0.0.5: unknown or revoked token K0777" in log
    assert "Secret-Guess-1" not in log and "s3cr3t" not in log


def test_o05_password_flood_gets_429s_and_the_real_user_still_logs_in(guarded):
    """Case o05: 300 wrong passwords for one user from 8 connections."""
    def login_time(client: httpx.Client, user: str, password: str) -> float:
        start = time.perf_counter()
        assert client.get(SESSION, auth=(user, password)).status_code == 200
        return time.perf_counter() - start

    with from_address(guarded, "127.0.0.7") as bob:
        login_time(bob, "bob", "bob-pw")  # bob logged in before: his credential is verified
        before = statistics.median(login_time(bob, "bob", "bob-pw") for _ in range(10))

    statuses: list[int] = []
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def attack(n: int) -> None:
        with from_address(guarded, "127.0.0.6") as c:
            for i in range(n):
                r = c.get(SESSION, auth=("alice", f"guess-{i}"))
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 429 and len(answers) < 3:
                        answers.append(r)

    during: list[float] = []
    start = time.perf_counter()
    threads = [threading.Thread(target=attack, args=(300 // 8 + (i < 300 % 8),)) for i in range(8)]
    for t in threads:
        t.start()
    with from_address(guarded, "127.0.0.7") as bob:
        while any(t.is_alive() for t in threads):
            during.append(login_time(bob, "bob", "bob-pw"))
    for t in threads:
        t.join()
    flood = time.perf_counter() - start
    # a fresh login (a password verified now) of another user, after the flood
    with from_address(guarded, "127.0.0.8") as carol:
        fresh = login_time(carol, "carol", "carol-pw")
    counts = {code: statuses.count(code) for code in sorted(set(statuses))}
    print(f"\no05: {counts} in {flood:.1f} s; bob's logged-in requests: median {before * 1000:.0f} ms before, "
          f"{statistics.median(during) * 1000:.0f} ms during ({len(during)} requests, max "
          f"{max(during) * 1000:.0f} ms); carol's fresh login after: {fresh * 1000:.0f} ms")
    assert len(statuses) == 300 and set(counts) == {401, 429}
    # each 401 cost a password hash; past the limit no more are verified (8: requests in flight)
    assert 50 <= counts[401] <= 50 + 8
    r = answers[0]
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 429 and r.json()["type"] == "about:blank"
    assert 1 <= int(r.headers["retry-after"]) <= 300
    # the real user, from another address, with a password verified now
    with from_address(guarded, "127.0.0.9") as real:
        assert real.get(SESSION, auth=("alice", "alice-pw")).status_code == 200
    # the attacking address is refused a password not verified recently, whoever's, until the
    # window passes (the documented price of a per-address limit); nothing is hashed for it
    with from_address(guarded, "127.0.0.6") as c:
        assert c.get(SESSION, auth=("dave", "dave-pw")).status_code == 429


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """Small limits: 3 failures per address, 6 per user, in 5 minutes."""
    data = tmp_path_factory.mktemp("strictdata")
    for name in ("alice", "bob"):
        add_user(data, name, f"{name}-pw")
    srv = Server(data, env={"TIDINGS_LOGIN_LIMIT_ADDRESS": "3/300", "TIDINGS_LOGIN_LIMIT_USER": "6/300"})
    yield srv
    srv.stop()


def test_per_user_limit_spares_addresses_the_user_logged_in_from(strict):
    with from_address(strict, "127.0.1.1") as home:
        assert home.get(SESSION, auth=("alice", "alice-pw")).status_code == 200
    # a guessing attack spread over addresses: 3 failures each (then the address is refused), and
    # after 6 for alice, any new address is refused for her
    for n in (2, 3):
        with from_address(strict, f"127.0.1.{n}") as c:
            assert [c.get(SESSION, auth=("alice", f"g{i}")).status_code for i in range(4)] == [401, 401, 401, 429]
    with from_address(strict, "127.0.1.4") as c:
        assert [c.get(SESSION, auth=("alice", f"g{i}")).status_code for i in range(3)] == [429, 429, 429]
    tidings("user", "passwd", "alice", "--password", "new-pw", data=strict.data)  # nothing cached now
    with from_address(strict, "127.0.1.5") as new:
        r = new.get(SESSION, auth=("alice", "new-pw"))
        assert r.status_code == 429 and "for this user" in r.json()["detail"], r.text
        assert 1 <= int(r.headers["retry-after"]) <= 300
        assert new.get(SESSION, auth=("bob", "bob-pw")).status_code == 200  # other users are not limited
    with from_address(strict, "127.0.1.1") as home:  # the address alice logged in from before
        assert home.get(SESSION, auth=("alice", "new-pw")).status_code == 200
    # a valid token is not limited either
    _, token = new_token(strict, "alice")
    with from_address(strict, "127.0.1.2") as c:
        assert c.get(SESSION, headers=bearer(token)).status_code == 200


def test_login_limit_setting_that_does_not_parse_stops_the_server(tmp_path):
    add_user(tmp_path, "x", "pw")
    with pytest.raises(RuntimeError, match="TIDINGS_LOGIN_LIMIT_ADDRESS must be FAILURES/SECONDS"):
        Server(tmp_path, env={"TIDINGS_LOGIN_LIMIT_ADDRESS": "lots"})
