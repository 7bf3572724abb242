"""Operations (issue 11): /metrics, /healthz, the access log, proxy headers, slow and broken clients.

Each test drives a real `tidings serve`; the timeouts are shortened with their options and only
"closed within a generous bound" is asserted of any duration."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import CORE, MAIL, Jmap, Server, tidings

SESSION = "/.well-known/jmap"
API = "/jmap/api/"


def samples(text: str, name: str) -> dict[str, float]:
    """The samples of one metric in a text exposition: {label string: value}."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(re.escape(name) + r"(\{[^}]*\})? (\S+)", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def log_of(server: Server) -> str:
    return (server.data / f"server-{server.port}.log").read_text()


def wait_for_log(server: Server, needle: str, timeout: float = 10) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = log_of(server)
        if needle in text:
            return text
        time.sleep(0.1)
    return log_of(server)


def api_body(*methods: str) -> dict:
    return {"using": [CORE, MAIL], "methodCalls": [[m, {}, f"c{i}"] for i, m in enumerate(methods)]}


def raw_connection(server: Server, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30, source_address=(source, 0))
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    sock.settimeout(limit)
    started = time.monotonic()
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {limit} s; got {data!r}") from None
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def ops(tmp_path_factory) -> Server:
    """One worker, JSON logs at info, short timeouts, a trusted proxy at 127.0.0.1 only."""
    data = tmp_path_factory.mktemp("ops")
    tidings("user", "add", "alice", "--password", "alice-pw", "--email", "alice@example.com", data=data)
    srv = Server(data, extra=("--log-level", "info", "--log-format", "json", "--header-timeout", "1",
                              "--body-timeout", "1", "--send-timeout", "1", "--forwarded-allow-ips", "127.0.0.1"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(ops) -> Jmap:
    return Jmap(ops, "alice", "alice-pw")


# ------------------------------------------------------------------------------------------ metrics
def test_metrics_count_each_jmap_method_and_http_route(ops, alice):
    before = httpx.get(ops.base + "/metrics").text
    alice.request([["Mailbox/get", {"accountId": alice.account_id}, "a"],
                   ["Email/query", {"accountId": alice.account_id}, "b"]])
    alice.request([["Mailbox/get", {"accountId": alice.account_id}, "a"], ["No/such", {}, "b"]])
    alice.request([["Mailbox/get", {}, "a"]])  # invalidArguments: no accountId
    after = httpx.get(ops.base + "/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")

    def grew(name: str, labels: str) -> float:
        return samples(after.text, name).get(labels, 0) - samples(before, name).get(labels, 0)

    assert grew("tidings_method_calls_total", '{method="Mailbox/get"}') == 3
    assert grew("tidings_method_calls_total", '{method="Email/query"}') == 1
    assert grew("tidings_method_calls_total", '{method="unknown"}') == 1  # a client cannot add labels
    assert grew("tidings_method_duration_seconds_count", '{method="Email/query"}') == 1
    assert grew("tidings_errors_total", '{kind="method",type="unknownMethod"}') == 1
    assert grew("tidings_errors_total", '{kind="method",type="invalidArguments"}') == 1
    assert grew("tidings_http_requests_total", '{route="api",status="200"}') == 3
    assert samples(after.text, "tidings_http_request_duration_seconds_count")['{route="session"}'] >= 1
    # the load test reads exactly these two names
    assert "" in samples(after.text, "tidings_limit_queued_total")
    assert "" in samples(after.text, "tidings_limit_rejected_total")
    for name in ("tidings_index_queue_depth", "tidings_index_lag_seconds"):
        assert "" in samples(after.text, name)


def test_metrics_count_request_problems_and_http_errors(ops):
    before = httpx.get(ops.base + "/metrics").text
    r = httpx.post(ops.base + API, content=b"{}", headers={"Authorization": basic("alice", "alice-pw"),
                                                         "Content-Type": "text/plain"})
    assert r.status_code == 400
    after = httpx.get(ops.base + "/metrics").text
    key = '{kind="request",type="notJSON"}'
    assert samples(after, "tidings_errors_total")[key] - samples(before, "tidings_errors_total").get(key, 0) == 1
    key = '{kind="http",type="400"}'
    assert samples(after, "tidings_errors_total")[key] - samples(before, "tidings_errors_total").get(key, 0) == 1


def test_metrics_count_imported_emails(ops, alice):
    before = samples(httpx.get(ops.base + "/metrics").text, "tidings_email_imports_total")[""]
    alice.import_message(b"Subject: metrics\r\nFrom: a@example.com\r\n\r\nbody\r\n")
    after = samples(httpx.get(ops.base + "/metrics").text, "tidings_email_imports_total")[""]
    assert after - before == 1


def test_metrics_show_open_eventsource_connections(ops):
    url = ops.base + "/jmap/eventsource/?types=*&closeafter=no&ping=0"
    gauge = '{transport="eventsource"}'
    with httpx.stream("GET", url, auth=("alice", "alice-pw"), timeout=30) as stream:
        assert stream.status_code == 200
        events = stream.iter_raw()  # kept: a dropped iterator closes the response
        next(events)  # the first event: the stream runs
        text = httpx.get(ops.base + "/metrics").text
        assert samples(text, "tidings_push_connections")[gauge] == 1
    deadline = time.time() + 10
    while samples(httpx.get(ops.base + "/metrics").text, "tidings_push_connections")[gauge] != 0:
        assert time.time() < deadline, "the gauge did not drop when the stream closed"
        time.sleep(0.1)


def test_a_request_that_waits_for_a_concurrency_slot_is_counted_and_a_refused_one_too():
    from prometheus_client import REGISTRY

    from app.server import Tidings

    class Slots:  # what _acquire uses of Tidings
        _slots: dict = {}

    def value(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    async def scenario() -> tuple[bool, bool]:
        holder = Slots()
        assert await Tidings._acquire(holder, "u", 1)
        refused = await Tidings._acquire(holder, "u", 1, wait=0.05)  # waits, then is refused
        asyncio.get_running_loop().call_later(0.05, Tidings._release, holder, "u")
        queued = await Tidings._acquire(holder, "u", 1, wait=5)  # waits, then gets the slot
        return refused, queued

    queued0, rejected0 = value("tidings_limit_queued_total"), value("tidings_limit_rejected_total")
    refused, queued = asyncio.run(scenario())
    assert (refused, queued) == (False, True)
    assert value("tidings_limit_queued_total") - queued0 == 2
    assert value("tidings_limit_rejected_total") - rejected0 == 1


def test_metrics_add_up_every_worker(tmp_path):
    tidings("user", "add", "alice", "--password", "alice-pw", data=tmp_path)
    metrics_dir = tmp_path / "metrics"
    srv = Server(tmp_path, extra=("--workers", "2", "--no-access-log"),
                 env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        headers = {"Authorization": basic("alice", "alice-pw")}

        def one(_: int) -> None:  # a new connection each: the two workers take turns accepting
            r = httpx.post(srv.base + API, json={"using": [CORE], "methodCalls": [["Core/echo", {}, "e"]]},
                           headers=headers)
            assert r.status_code == 200

        sent = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in range(10):
                list(pool.map(one, range(24)))
                sent += 24
                if len(workers_that_answered(metrics_dir)) >= 2:
                    break
        assert len(workers_that_answered(metrics_dir)) == 2, "every request went to one worker"
        for _ in range(6):  # whichever worker answers the scrape reports both workers' calls
            text = httpx.get(srv.base + "/metrics").text
            assert samples(text, "tidings_method_calls_total")['{method="Core/echo"}'] == sent
    finally:
        srv.stop()


def workers_that_answered(metrics_dir: Path) -> set[str]:
    """The pids whose counter file holds a Core/echo call (prometheus-client's file format)."""
    from prometheus_client.mmap_dict import MmapedDict

    pids = set()
    for path in metrics_dir.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        if any("Core/echo" in key and value > 0 for key, value, *_ in values):
            pids.add(path.stem.split("_", 1)[1])
    return pids


def test_metrics_are_refused_to_a_remote_client_by_default_and_when_off(tmp_path, ops):
    # the default, local: a client behind a trusted proxy is not local
    forwarded = httpx.get(ops.base + "/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert forwarded.status_code == 404
    for header in ({"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": "for=127.0.0.1"}):  # loopback, forwarded
        assert httpx.get(ops.base + "/metrics", headers=header).status_code == 404, header
    assert httpx.get(ops.base + "/metrics").status_code == 200
    srv = Server(tmp_path, extra=("--metrics", "off"))
    try:
        assert httpx.get(srv.base + "/metrics").status_code == 404
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------ healthz
def test_healthz_answers_ok_without_authentication(ops):
    r = httpx.get(ops.base + "/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


# ------------------------------------------------------------------------------------------ logging
def access_lines(server: Server) -> list[dict]:
    out = []
    for line in log_of(server).splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "tidings.access":
                out.append(record)
    return out


def test_each_request_is_one_json_log_line_with_user_methods_status_and_duration(ops, alice):
    alice.request([["Mailbox/get", {"accountId": alice.account_id}, "a"],
                   ["Email/query", {"accountId": alice.account_id}, "b"]])
    wait_for_log(ops, '"Email/query"')
    lines = [r for r in access_lines(ops) if r["path"] == API and r["methods"] == ["Mailbox/get", "Email/query"]]
    assert lines, access_lines(ops)[-3:]
    line = lines[-1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["timestamp"])
    assert line["user"] == "alice" and line["status"] == 200 and line["http_method"] == "POST"
    assert line["client"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert "uvicorn.access" not in log_of(ops)  # replaced, not doubled


def test_a_failed_login_logs_the_user_and_address_but_not_the_password(ops):
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.12")) as c:
        assert c.get(ops.base + SESSION, auth=("mallory", "Pass-Guess-77")).status_code == 401
    text = wait_for_log(ops, '"login_failed"')
    failures = [json.loads(x) for x in text.splitlines() if '"login_failed"' in x]
    assert any(f["user"] == "mallory" and f["client"] == "127.0.0.12" for f in failures), failures
    assert "Pass-Guess-77" not in text
    assert basic("mallory", "Pass-Guess-77").split()[1] not in text


def test_text_log_lines_start_with_an_iso_timestamp(tmp_path):
    srv = Server(tmp_path, extra=("--log-level", "info"))
    try:
        httpx.get(srv.base + "/healthz")
        text = wait_for_log(srv, '"GET /healthz" 200')
    finally:
        srv.stop()
    line = next(x for x in text.splitlines() if '"GET /healthz" 200' in x)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 INFO +tidings\.access: 127\.0\.0\.1 - ", line)


# ------------------------------------------------------------------------------------ proxy headers
def session_urls(server: Server, headers: dict, source: str = "127.0.0.1") -> list[str]:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source)) as c:
        s = c.get(server.base + SESSION, auth=("alice", "alice-pw"), headers=headers).json()
    return [s["apiUrl"], s["downloadUrl"], s["uploadUrl"], s["eventSourceUrl"],
            s["capabilities"]["urn:ietf:params:jmap:websocket"]["url"]]


PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mail.example.org"}


def test_forwarded_scheme_and_host_from_a_trusted_proxy_make_the_session_urls(ops):
    urls = session_urls(ops, PROXIED)
    assert urls[0] == "https://mail.example.org/jmap/api/"
    assert all(u.startswith("https://mail.example.org/") for u in urls[:4]), urls
    assert urls[4] == "wss://mail.example.org/jmap/ws/"
    # the standard header, RFC 7239
    urls = session_urls(ops, {"Forwarded": 'for=192.0.2.60;proto=https;host="jmap.example.net:8443"'})
    assert urls[0] == "https://jmap.example.net:8443/jmap/api/"


def test_forwarded_headers_from_an_untrusted_address_are_ignored(ops):
    urls = session_urls(ops, {**PROXIED, "Forwarded": "proto=https;host=evil.example"}, source="127.0.0.9")
    assert urls[0] == f"http://127.0.0.1:{ops.port}/jmap/api/"
    assert urls[4] == f"ws://127.0.0.1:{ops.port}/jmap/ws/"


def test_the_client_address_logged_is_the_one_a_trusted_proxy_forwarded(ops):
    httpx.get(ops.base + "/healthz", headers={"X-Forwarded-For": "198.51.100.23"})
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.9")) as c:
        c.get(ops.base + "/healthz", headers={"X-Forwarded-For": "198.51.100.24"})
    wait_for_log(ops, '"client":"127.0.0.9"')
    clients = {r["client"] for r in access_lines(ops) if r["path"] == "/healthz"}
    assert "198.51.100.23" in clients and "127.0.0.9" in clients and "198.51.100.24" not in clients


# ------------------------------------------------------------------------ slow and broken clients
def test_o07_a_half_sent_header_is_answered_408_and_closed_after_the_header_timeout(ops):
    with raw_connection(ops) as sock:
        sock.sendall(b"GET /.well-known/jmap HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */")
        data, _ = read_until_closed(sock, 15)
    assert data.startswith(b"HTTP/1.1 408 ")


def test_o07_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(ops):
    with raw_connection(ops) as sock:
        data, _ = read_until_closed(sock, 15)
    assert data == b""


def test_o07_a_download_the_client_does_not_read_is_dropped_after_the_send_timeout(ops, alice):
    import os

    blob = alice.upload(os.urandom(8 << 20), "application/octet-stream")  # more than the kernel buffers
    path = (alice.session["downloadUrl"].replace("{accountId}", alice.account_id)
            .replace("{blobId}", blob["blobId"]).replace("{name}", "big.bin").replace("{type}", "x/y"))
    path = "/" + path.split("/", 3)[3] if path.startswith("http") else path
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: no autotuning
    sock.connect(("127.0.0.1", ops.port))
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: {basic('alice', 'alice-pw')}\r\n\r\n".encode())
        text = wait_for_log(ops, "it took none of the response for 1 s", timeout=20)
        data, _ = read_until_closed(sock, 15)  # what the buffers held, then the end
    assert "it took none of the response for 1 s" in text
    assert data.startswith(b"HTTP/1.1 200 ") and len(data) < 8 << 20


def test_o07_a_websocket_that_reads_nothing_is_dropped_after_the_send_timeout(ops):
    import asyncio

    import websockets

    needle = "it took none of the response for 1 s"
    before = log_of(ops).count(needle)  # the download test of this module logs the same line

    async def flood() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", ops.port))
        ws = await websockets.connect(f"ws://127.0.0.1:{ops.port}/jmap/ws/", sock=sock, subprotocols=["jmap"],
                                      max_queue=1, additional_headers={"Authorization": basic("alice", "alice-pw")})
        big = "x" * 100_000
        for i in range(60):  # 6 MB of answers that this client never reads
            await ws.send(json.dumps({"@type": "Request", "id": str(i), "using": [CORE],
                                      "methodCalls": [["Core/echo", {"big": big}, "e"]]}))
        deadline = time.time() + 20
        while log_of(ops).count(needle) == before and time.time() < deadline:
            await asyncio.sleep(0.1)  # the connection stays open from this side meanwhile
        ws.transport.abort()

    asyncio.run(flood())
    assert log_of(ops).count(needle) == before + 1


def test_o07_many_half_headers_are_all_closed(ops):
    socks = [raw_connection(ops) for _ in range(30)]
    try:
        for s in socks:
            s.sendall(b"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\n")
        for s in socks:
            read_until_closed(s, 20)
    finally:
        for s in socks:
            s.close()


def test_a_keep_alive_connection_still_serves_its_next_request_in_time(ops):
    with httpx.Client() as c:  # one connection: the header timer restarts after each response
        for _ in range(3):
            assert c.get(ops.base + "/healthz").status_code == 200
            time.sleep(0.3)


def test_o07_a_body_shorter_than_its_content_length_is_answered_408_after_the_body_timeout(ops):
    with raw_connection(ops) as sock:
        sock.sendall(b"POST /jmap/api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Authorization: " + basic("alice", "alice-pw").encode() + b"\r\n"
                     b"Content-Length: 100\r\n\r\n{\"using\": [")
        data, _ = read_until_closed(sock, 15)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert b"connection: close" in data.lower()


def test_o07_a_short_upload_body_is_answered_408_after_the_body_timeout(ops, alice):
    path = f"/jmap/upload/{alice.account_id}/"
    with raw_connection(ops) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n".encode()
                     + b"Authorization: " + basic("alice", "alice-pw").encode() + b"\r\n"
                     b"Content-Length: 5000\r\n\r\n" + b"x" * 100)
        data, _ = read_until_closed(sock, 15)
    assert data.startswith(b"HTTP/1.1 408 "), data


@pytest.mark.parametrize("path", ["api", "upload"])
def test_o08_a_client_gone_mid_body_is_one_quiet_log_line(ops, alice, path):
    target = API if path == "api" else f"/jmap/upload/{alice.account_id}/"
    start = len(log_of(ops))
    with raw_connection(ops) as sock:
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode()
                     + b"Authorization: " + basic("alice", "alice-pw").encode() + b"\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b"[" * 500)
        time.sleep(0.2)
    deadline = time.time() + 10
    while "closed the connection before sending all of its request" not in log_of(ops)[start:]:
        assert time.time() < deadline, log_of(ops)[start:]
        time.sleep(0.1)
    time.sleep(0.3)
    new = log_of(ops)[start:]
    assert "Traceback" not in new and "Exception in ASGI application" not in new, new
    gone = [json.loads(x) for x in new.splitlines() if "closed the connection before" in x]
    assert len(gone) == 1 and gone[0]["level"] == "INFO"


# ------------------------------------------------------------------------------------------ startup
def test_serve_on_a_port_in_use_is_one_error_line_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = tidings("serve", "--port", str(port), data=tmp_path, check=False)
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert lines == [f"tidings serve: error: cannot listen on 127.0.0.1:{port}: Address already in use"], r.stderr


def test_the_first_line_of_a_json_log_is_json_too(tmp_path):
    srv = Server(tmp_path, extra=("--log-format", "json", "--log-level", "info"))
    try:
        httpx.get(srv.base + "/healthz")
    finally:
        srv.stop()
    lines = [line for line in (tmp_path / f"server-{srv.port}.log").read_text().splitlines() if line.strip()]
    assert "JMAP session at" in json.loads(lines[0])["message"]
    for line in lines:
        json.loads(line)
