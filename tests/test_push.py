"""Push, black-box against live servers: the change bus carrying a change from one connection, one
worker or the `tidings import` CLI to EventSource (RFC 8620 §7.3) and WebSocket (RFC 8887)
clients of another; Last-Event-ID and pushState resume; closeafter and ping; WebSocket requests
through the API pipeline; and SIGTERM ending push connections at once (with `--workers 2`, and over
TLS with an idle keep-alive connection)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trustme
import websockets

from tests.conftest import CORE, MAIL, Jmap, Server, tidings, unique

WS = "urn:ietf:params:jmap:websocket"


# ----------------------------------------------------------------------------------------- helpers
def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class EventStream:
    """An EventSource client: GET the stream, then read events ({"event", "id", "data"})."""

    def __init__(self, base: str, auth: tuple[str, str] | None, query: str = "types=*&closeafter=no&ping=0",
                 headers: dict | None = None, verify: object = True):
        self.url = f"{base}/jmap/eventsource/?{query}"
        self.auth = auth
        self.headers = headers or {}
        self.verify = verify

    async def __aenter__(self) -> EventStream:
        self.client = httpx.AsyncClient(auth=self.auth, timeout=None, verify=self.verify)
        self.response = await self.client.send(self.client.build_request("GET", self.url, headers=self.headers),
                                               stream=True)
        self.lines = self.response.aiter_lines()
        self.local_port = self.response.extensions["network_stream"].get_extra_info("client_addr")[1]
        return self

    async def __aexit__(self, *exc) -> None:
        await self.response.aclose()
        await self.client.aclose()

    async def next(self, timeout: float = 10) -> dict | None:
        """The next event, or None when the stream ended."""
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> dict | None:
        event: dict = {}
        async for line in self.lines:
            if line == "":
                if event:
                    if "data" in event:
                        event["data"] = json.loads(event["data"])
                    return event
                continue
            field, _, value = line.partition(":")
            event[field] = value[1:] if value.startswith(" ") else value
        return None

    async def state(self, timeout: float = 10) -> dict:
        """The next state event (pings are skipped)."""
        while True:
            event = await self.next(timeout)
            assert event is not None, "the stream ended"
            if event.get("event") == "state":
                return event


async def jmap_socket(base: str, user: str, password: str, ssl_context=None):
    url = base.replace("http", "ws", 1) + "/jmap/ws/"
    return await websockets.connect(url, subprotocols=["jmap"], ssl=ssl_context,
                                    additional_headers={"Authorization": basic(user, password)})


async def receive(ws, timeout: float = 10) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def state_change(ws, timeout: float = 10) -> dict:
    while True:
        message = await receive(ws, timeout)
        if message["@type"] == "StateChange":
            return message


async def change_mailbox(client: Jmap) -> str:
    """Creates a mailbox through the HTTP API; returns the new Mailbox state."""
    result = await asyncio.to_thread(client.ok, "Mailbox/set", create={"m": {"name": unique("push")}})
    assert result["created"], result
    return result["newState"]


def message(subject: str) -> bytes:
    return (f"From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{unique('m')}@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nHello.\r\n").encode()


def worker_of(server: Server, client_port: int) -> int | None:
    """The pid of the server process holding the server side of the TCP connection from
    client_port (Linux /proc): which uvicorn worker serves it."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server.port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                inode = fields[9]
    if inode is None:
        return None
    pids = [server.proc.pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == server.proc.pid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
        except OSError:
            continue
    return None


# --------------------------------------------------------------------------------- EventSource
def test_a_change_through_one_connection_arrives_on_an_eventsource_and_a_websocket_of_another(server, alice):
    async def scenario():
        async with EventStream(server.base, ("alice", "alice-pw")) as es:
            first = await es.state()  # the current states, at once
            ws = await jmap_socket(server.base, "alice", "alice-pw")
            await ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
            await asyncio.sleep(0.2)  # the enable is read before the change is made
            new_state = await change_mailbox(alice)
            event = await es.state()
            pushed = await state_change(ws)
            await ws.close()
        assert event["data"] == {"@type": "StateChange", "changed": {alice.account_id: {"Mailbox": new_state}}}
        assert int(event["id"]) > int(first["id"])
        assert pushed["changed"] == {alice.account_id: {"Mailbox": new_state}}
        assert pushed["pushState"] == event["id"]  # one position in the journal, one way to say it

    run(scenario())


def test_eventsource_first_event_gives_the_current_state_of_every_type_with_an_id(server, alice):
    async def scenario():
        async with EventStream(server.base, ("alice", "alice-pw")) as es:
            return await es.state(5), es.response.headers

    event, headers = run(scenario())
    assert headers["content-type"].startswith("text/event-stream")
    states = event["data"]["changed"][alice.account_id]
    assert {"Mailbox", "Email", "Thread", "Identity"} <= set(states)
    assert states["Mailbox"] == alice.ok("Mailbox/get", ids=[])["state"]
    assert states["Email"] == alice.ok("Email/get", ids=[])["state"]
    assert event["id"].isdigit()


def test_eventsource_reports_only_the_requested_types_that_the_server_knows(server, alice):
    async def scenario():
        async with EventStream(server.base, ("alice", "alice-pw"), "types=Email,NoSuchType&closeafter=no&ping=0") as es:
            first = await es.state()
            await change_mailbox(alice)  # not an Email change: nothing
            created = await asyncio.to_thread(alice.import_message, message(unique("types")))
            event = await es.state()
        return first, event, created

    first, event, created = run(scenario())
    assert list(first["data"]["changed"][alice.account_id]) == ["Email"]
    assert event["data"]["changed"] == {alice.account_id: {"Email": alice.ok("Email/get", ids=[])["state"]}}
    assert created["id"]


def test_last_event_id_resume_delivers_what_was_missed_while_disconnected(server, alice):
    async def scenario():
        async with EventStream(server.base, ("alice", "alice-pw")) as es:
            seen = (await es.state())["id"]
        missed = await change_mailbox(alice)  # while no stream is open
        async with EventStream(server.base, ("alice", "alice-pw"), headers={"Last-Event-ID": seen}) as es:
            resumed = await es.state(2)  # at once, not at the next change
        async with EventStream(server.base, ("alice", "alice-pw"), headers={"Last-Event-ID": resumed["id"]}) as es:
            try:
                await es.next(1)
                quiet = False
            except TimeoutError:
                quiet = True
        async with EventStream(server.base, ("alice", "alice-pw"), headers={"Last-Event-ID": "not-ours"}) as es:
            unknown = await es.state(2)
        return seen, missed, resumed, quiet, unknown

    seen, missed, resumed, quiet, unknown = run(scenario())
    assert resumed["data"]["changed"] == {alice.account_id: {"Mailbox": missed}}
    assert int(resumed["id"]) > int(seen)
    assert quiet, "a client that missed nothing gets no event on reconnecting"
    # an id the server cannot place: every requested type's current state, so the client checks all
    assert {"Mailbox", "Email", "Thread", "Identity"} <= set(unknown["data"]["changed"][alice.account_id])
    assert unknown["data"]["changed"][alice.account_id]["Mailbox"] == missed


def test_closeafter_state_ends_the_response_after_the_first_change(server, alice):
    async def scenario():
        async with EventStream(server.base, ("alice", "alice-pw"), "types=*&closeafter=state&ping=0") as es:
            await asyncio.sleep(0.2)
            new_state = await change_mailbox(alice)
            event = await es.next()
            end = await es.next()
        return new_state, event, end

    new_state, event, end = run(scenario())
    assert event["event"] == "state"  # no initial event with closeafter=state: the change itself
    assert event["data"]["changed"] == {alice.account_id: {"Mailbox": new_state}}
    assert end is None, "the response ended after the state event"


def test_ping_interval_is_clamped_to_the_minimum_and_the_ping_carries_it_without_an_id(server):
    async def scenario():
        async with EventStream(server.base, ("alice", "alice-pw"), "types=*&closeafter=no&ping=1") as es:
            await es.state()
            started = time.monotonic()
            ping = await es.next(10)
            return ping, time.monotonic() - started

    ping, waited = run(scenario())
    assert ping["event"] == "ping"
    assert ping["data"] == {"interval": 5}  # 1 s asked, the server's minimum is 5 s
    assert "id" not in ping
    assert 4.5 < waited < 8


def test_eventsource_refuses_bad_parameters_and_requests_without_credentials(server):
    assert httpx.get(server.base + "/jmap/eventsource/?types=*&closeafter=no&ping=0").status_code == 401
    auth = ("alice", "alice-pw")
    assert httpx.get(server.base + "/jmap/eventsource/?types=*&closeafter=no&ping=soon", auth=auth).status_code == 400
    assert httpx.get(server.base + "/jmap/eventsource/?types=*&closeafter=never&ping=0", auth=auth).status_code == 400


# ----------------------------------------------------------------------------------- WebSocket
def test_session_advertises_the_websocket_capability_with_an_absolute_url(alice, server):
    cap = alice.session["capabilities"][WS]
    assert cap == {"url": server.base.replace("http://", "ws://") + "/jmap/ws/", "supportsPush": True}
    # a client may list it in `using`
    assert alice.request([["Core/echo", {"x": 1}, "e"]], using=[CORE, WS])["methodResponses"][0][0] == "Core/echo"


def test_websocket_request_gets_a_response_with_its_request_id(server, alice):
    async def scenario():
        ws = await jmap_socket(server.base, "alice", "alice-pw")
        await ws.send(json.dumps({"@type": "Request", "id": "R1", "using": [CORE, MAIL],
                                  "methodCalls": [["Core/echo", {"hello": True}, "c1"],
                                                  ["Mailbox/get", {"accountId": alice.account_id, "ids": []}, "c2"]]}))
        answer = await receive(ws)
        await ws.send(json.dumps({"@type": "Request", "using": [CORE], "methodCalls": [["Core/echo", {}, "c"]]}))
        anonymous = await receive(ws)
        await ws.close()
        return ws.subprotocol, answer, anonymous

    subprotocol, answer, anonymous = run(scenario())
    assert subprotocol == "jmap"
    assert answer["@type"] == "Response" and answer["requestId"] == "R1"
    assert answer["methodResponses"][0] == ["Core/echo", {"hello": True}, "c1"]
    assert answer["methodResponses"][1][1]["state"] == alice.ok("Mailbox/get", ids=[])["state"]
    assert answer["sessionState"] == alice.session["state"]
    assert anonymous["@type"] == "Response" and "requestId" not in anonymous


def test_websocket_bad_messages_get_a_request_error_and_the_socket_stays_usable(server):
    async def scenario():
        ws = await jmap_socket(server.base, "alice", "alice-pw")
        answers = []
        for text in ("The quick brown fox jumps over the lazy dog.",
                     json.dumps({"@type": "Gossip", "id": "G1"}),
                     json.dumps(["Request"]),
                     json.dumps({"@type": "Request", "id": "R2", "using": [CORE], "methodCalls": "no"}),
                     json.dumps({"@type": "Request", "id": "R3", "using": ["urn:example:nope"],
                                 "methodCalls": [["Core/echo", {}, "c"]]}),
                     json.dumps({"@type": "Request", "id": "R4", "using": [CORE],
                                 "methodCalls": [["Core/echo", {"still": "here"}, "c"]]})):
            await ws.send(text)
            answers.append(await receive(ws))
        await ws.close()
        return answers

    not_json, unknown_type, not_object, not_request, unknown_capability, fine = run(scenario())
    urn = "urn:ietf:params:jmap:error:"
    assert not_json == {"@type": "RequestError", "requestId": None, "type": urn + "notJSON", "status": 400,
                        "detail": not_json["detail"]}
    assert unknown_type["@type"] == "RequestError" and unknown_type["type"] == urn + "notRequest"
    assert unknown_type["requestId"] == "G1" and "Gossip" in unknown_type["detail"]
    assert not_object["type"] == urn + "notRequest"
    assert not_request["type"] == urn + "notRequest" and not_request["requestId"] == "R2"
    assert unknown_capability["type"] == urn + "unknownCapability" and unknown_capability["requestId"] == "R3"
    assert fine["@type"] == "Response" and fine["requestId"] == "R4"
    assert fine["methodResponses"] == [["Core/echo", {"still": "here"}, "c"]]


def test_websocket_push_enable_disable_and_pushstate_resume(server, alice):
    async def scenario():
        ws = await jmap_socket(server.base, "alice", "alice-pw")
        await ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox"]}))
        await asyncio.sleep(0.2)
        first = await change_mailbox(alice)
        pushed = await state_change(ws)
        # an import changes Email, Thread and Mailbox (its counts): only Mailbox was asked for
        await asyncio.to_thread(alice.import_message, message(unique("ws")))
        only_mailbox = await state_change(ws)
        second = (await asyncio.to_thread(alice.ok, "Mailbox/get", ids=[]))["state"]
        await ws.send(json.dumps({"@type": "WebSocketPushDisable"}))
        await asyncio.sleep(0.2)
        missed = await change_mailbox(alice)
        try:
            await receive(ws, 1)
            quiet = False
        except TimeoutError:
            quiet = True
        # resume from the last pushState: what changed since comes at once
        await ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None,
                                  "pushState": only_mailbox["pushState"]}))
        resumed = await state_change(ws, 2)
        await ws.close()
        return first, pushed, second, only_mailbox, quiet, missed, resumed

    first, pushed, second, only_mailbox, quiet, missed, resumed = run(scenario())
    account = alice.account_id
    assert pushed["changed"] == {account: {"Mailbox": first}}
    assert only_mailbox["changed"] == {account: {"Mailbox": second}}
    assert int(only_mailbox["pushState"]) > int(pushed["pushState"])
    assert quiet, "nothing is pushed after WebSocketPushDisable"
    assert resumed["changed"] == {account: {"Mailbox": missed}}
    assert int(resumed["pushState"]) > int(only_mailbox["pushState"])


def test_websocket_upgrade_is_refused_without_credentials_or_without_the_jmap_subprotocol(server):
    url = server.base.replace("http://", "ws://") + "/jmap/ws/"

    async def status(**kw) -> int:
        try:
            async with websockets.connect(url, **kw):
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert run(status(subprotocols=["jmap"])) == 401
    assert run(status(subprotocols=["jmap"], additional_headers={"Authorization": basic("alice", "wrong")})) == 401
    assert run(status(additional_headers={"Authorization": basic("alice", "alice-pw")})) == 400


# ------------------------------------------------------------------------- other processes
def test_a_change_by_tidings_import_beside_the_running_server_arrives(server, alice, tmp_path):
    eml = tmp_path / "pushed.eml"
    eml.write_bytes(message(unique("imported")))

    async def scenario():
        async with EventStream(server.base, ("alice", "alice-pw"), "types=Email&closeafter=no&ping=0") as es:
            await es.state()
            ws = await jmap_socket(server.base, "alice", "alice-pw")
            await ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}))
            await asyncio.sleep(0.2)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app", "import", "--user", "alice", "--no-progress", str(eml),
                "--data", str(server.data), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            event = asyncio.create_task(es.state(20))
            pushed = asyncio.create_task(state_change(ws, 20))
            out, err = await proc.communicate()
            exited = time.monotonic()
            event, pushed = await event, await pushed
            arrived = time.monotonic()
            await ws.close()
        return proc.returncode, out + err, event, pushed, arrived - exited

    code, output, event, pushed, after_exit = run(scenario())
    assert code == 0, output
    email_state = alice.ok("Email/get", ids=[])["state"]
    assert event["data"]["changed"] == {alice.account_id: {"Email": email_state}}
    assert pushed["changed"] == {alice.account_id: {"Email": email_state}}
    # woken by the CLI's datagram, not found by the watcher's fallback read (every 2 s)
    assert after_exit < 1.0, after_exit


def test_with_two_workers_every_worker_delivers_every_change_and_sigterm_ends_them_all(tmp_path):
    data = tmp_path / "data"
    tidings("user", "add", "carol", "--password", "carol-pw", data=data)
    server = Server(data, extra=("--workers", "2"))
    try:
        carol = Jmap(server, "carol", "carol-pw")

        async def scenario():
            streams, sockets = [], []
            es_workers, ws_workers = set(), set()
            try:
                # connections until each of the two workers holds an EventSource and a WebSocket
                for _ in range(40):
                    es = await EventStream(server.base, ("carol", "carol-pw")).__aenter__()
                    streams.append(es)
                    await es.state()
                    es_workers.add(worker_of(server, es.local_port))
                    ws = await jmap_socket(server.base, "carol", "carol-pw")
                    await ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
                    sockets.append(ws)
                    ws_workers.add(worker_of(server, ws.local_address[1]))
                    if len(es_workers - {None}) >= 2 and len(ws_workers - {None}) >= 2:
                        break
                await asyncio.sleep(0.3)
                assert len(es_workers - {None}) == 2 and ws_workers - {None} == es_workers - {None}, (
                    es_workers, ws_workers)
                assert server.proc.pid not in es_workers
                slowest = 0.0
                for _ in range(3):  # each change, made through whichever worker takes it, reaches all
                    new_state = await change_mailbox(carol)
                    answered = time.monotonic()
                    for es in streams:
                        event = await es.state()
                        assert event["data"]["changed"] == {carol.account_id: {"Mailbox": new_state}}
                    for ws in sockets:
                        pushed = await state_change(ws)
                        assert pushed["changed"] == {carol.account_id: {"Mailbox": new_state}}
                    slowest = max(slowest, time.monotonic() - answered)
                # SIGTERM: every stream ends, every socket gets 1001, both workers and the parent exit
                started = time.monotonic()
                server.proc.send_signal(signal.SIGTERM)
                ends = await asyncio.gather(*(es.next(3) for es in streams))
                codes = []
                for ws in sockets:
                    try:
                        await asyncio.wait_for(ws.recv(), 3)
                    except websockets.ConnectionClosed:
                        pass
                    codes.append(ws.close_code)
                await asyncio.to_thread(server.proc.wait, 5)
                return len(streams), len(sockets), slowest, ends, codes, time.monotonic() - started
            finally:
                for es in streams:
                    await es.__aexit__()
                for ws in sockets:
                    await ws.close()

        n_streams, n_sockets, slowest, ends, codes, exit_seconds = run(scenario())
    finally:
        server.stop()
    assert n_streams >= 2 and n_sockets >= 2
    assert slowest < 1.0, slowest  # woken by datagrams, not by the 2 s fallback
    assert ends == [None] * n_streams
    assert codes == [1001] * n_sockets
    assert exit_seconds < 3, exit_seconds


# -------------------------------------------------------------------------------------- SIGTERM
@pytest.fixture
def tls_server(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    data = tmp_path / "data"
    tidings("user", "add", "dave", "--password", "dave-pw", data=data)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    srv = Server(data, tls=(str(chain), str(key)))
    srv.context = context
    yield srv
    srv.stop()


def test_sigterm_with_eventsource_websocket_and_idle_tls_connection_exits_within_3_s(tls_server):
    server = tls_server

    async def scenario():
        async with EventStream(server.base, ("dave", "dave-pw"), verify=server.context) as es:
            await es.state()
            ws = await jmap_socket(server.base, "dave", "dave-pw", ssl_context=server.context)
            await ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
            # an idle keep-alive connection, as jmapc's requests session leaves one
            async with httpx.AsyncClient(auth=("dave", "dave-pw"), verify=server.context) as idle:
                assert (await idle.get(server.base + "/.well-known/jmap")).status_code == 200
                await asyncio.sleep(0.2)
                started = time.monotonic()
                server.proc.send_signal(signal.SIGTERM)
                end = await es.next(3)
                try:
                    await asyncio.wait_for(ws.recv(), 3)
                except websockets.ConnectionClosed:
                    pass
                closed_after = time.monotonic() - started
                await asyncio.to_thread(server.proc.wait, 10)
                return end, ws.close_code, ws.close_reason, closed_after, time.monotonic() - started

    end, code, reason, closed_after, exit_seconds = run(scenario())
    assert end is None, "the event stream ended"
    assert (code, reason) == (1001, "going away")
    assert closed_after < 2, closed_after
    assert exit_seconds < 3, exit_seconds
