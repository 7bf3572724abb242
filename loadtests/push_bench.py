"""Push measurements: latency of a change to its EventSource / WebSocket event, on the worker that
made the change and across workers; and a server's memory and CPU with many idle push connections.

Starts its own `tidings serve` over a fresh data directory (a user "bench"), from the main venv:

    .venv/bin/python loadtests/push_bench.py latency [--changes 200] [--workers 2]
    .venv/bin/python loadtests/push_bench.py idle [--eventsource 1000] [--websocket 1000] [--seconds 30]

latency: one Mailbox/set at a time over one keep-alive HTTP connection; for each, the time from the
HTTP answer (and from the request being sent) until the StateChange naming the new Mailbox state
arrives on an EventSource and on a WebSocket held by the same worker as the API connection, and
(with --workers 2) by the other worker. Which worker holds a connection is read from /proc.

idle: RSS of the server before and with the connections open (all idle: ping=0, so only uvicorn's
WebSocket keep-alive pings every 20 s), and its CPU time over --seconds of idling.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "bench", "bench-pw"
CORE, MAIL = "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, workers: int):
        self.data = Path(tempfile.mkdtemp(prefix="push-bench-"))
        subprocess.run([sys.executable, "-m", "app", "user", "add", USER, "--password", PASSWORD, "--data",
                        str(self.data)], check=True, capture_output=True, cwd=ROOT)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--data", str(self.data), "--port", str(self.port),
             "--log-level", "warning", "--no-access-log", "--workers", str(workers)], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(self.base + "/.well-known/jmap", timeout=2)
                break
            except httpx.HTTPError:
                if time.time() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)
        time.sleep(1.0 if workers > 1 else 0.2)  # the other workers come up too

    def pids(self) -> list[int]:
        out = [self.proc.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                        out.append(int(entry.name))
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def worker_of(self, client_port: int) -> int | None:
        inode = None
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if (int(f[1].rsplit(":", 1)[1], 16) == self.port
                        and int(f[2].rsplit(":", 1)[1], 16) == client_port):
                    inode = f[9]
        if inode is None:
            return None
        for pid in self.pids():
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
            except OSError:
                pass
        return None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        shutil.rmtree(self.data, ignore_errors=True)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


class Stream:
    """An EventSource connection; `states` gets (arrival time, data) for each state event."""

    def __init__(self, client: httpx.AsyncClient, url: str):
        self.client, self.url = client, url
        self.events: asyncio.Queue = asyncio.Queue()

    async def open(self) -> Stream:
        self.response = await self.client.send(self.client.build_request("GET", self.url), stream=True)
        self.port = self.response.extensions["network_stream"].get_extra_info("client_addr")[1]
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        kind = None
        async for line in self.response.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "state":
                self.events.put_nowait((time.perf_counter(), json.loads(line[5:])))


async def open_socket(base: str):
    ws = await websockets.connect(base.replace("http", "ws", 1) + "/jmap/ws/", subprotocols=["jmap"],
                                  additional_headers={"Authorization": AUTH}, max_queue=None)
    ws.events = asyncio.Queue()

    async def read():
        async for message in ws:
            data = json.loads(message)
            if data.get("@type") == "StateChange":
                ws.events.put_nowait((time.perf_counter(), data))

    await ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
    ws.task = asyncio.create_task(read())
    return ws


async def wait_for_state(queue: asyncio.Queue, account: str, state: str) -> float:
    while True:
        at, data = await asyncio.wait_for(queue.get(), 10)
        if data["changed"].get(account, {}).get("Mailbox") == state:
            return at


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def latency(args) -> None:
    server = Server(args.workers)
    try:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=server.base, auth=(USER, PASSWORD), limits=limits, timeout=30) as api, \
                httpx.AsyncClient(auth=(USER, PASSWORD), timeout=None,
                                  limits=httpx.Limits(max_connections=None)) as listen:
            session = (await api.get("/.well-known/jmap")).json()
            account = session["primaryAccounts"][MAIL]
            probe = await api.get("/.well-known/jmap")
            api_worker = server.worker_of(probe.extensions["network_stream"].get_extra_info("client_addr")[1])
            url = server.base + "/jmap/eventsource/?types=*&closeafter=no&ping=0"
            streams: dict[str, Stream] = {}
            sockets: dict[str, object] = {}
            opened: list = []
            for _ in range(60):  # one listener of each kind on each worker
                es = await Stream(listen, url).open()
                opened.append(es)
                where = "same" if server.worker_of(es.port) == api_worker else "other"
                streams.setdefault(where, es)
                ws = await open_socket(server.base)
                opened.append(ws)
                where = "same" if server.worker_of(ws.local_address[1]) == api_worker else "other"
                sockets.setdefault(where, ws)
                if len(streams) == len(sockets) == min(2, args.workers):
                    break
            await asyncio.sleep(0.5)
            for q in [s.events for s in streams.values()] + [s.events for s in sockets.values()]:
                while not q.empty():
                    q.get_nowait()
            results: dict[tuple[str, str], list[tuple[float, float]]] = {}
            set_ms: list[float] = []
            for i in range(args.changes):
                body = {"using": [CORE, MAIL], "methodCalls": [
                    ["Mailbox/set", {"accountId": account, "create": {"m": {"name": f"bench-{i}-{time.time()}"}}},
                     "0"]]}
                sent = time.perf_counter()
                r = await api.post("/jmap/api/", json=body)
                answered = time.perf_counter()
                set_ms.append((answered - sent) * 1000)
                new_state = r.json()["methodResponses"][0][1]["newState"]
                for where, es in streams.items():
                    at = await wait_for_state(es.events, account, new_state)
                    results.setdefault(("EventSource", where), []).append((at - answered, at - sent))
                for where, ws in sockets.items():
                    at = await wait_for_state(ws.events, account, new_state)
                    results.setdefault(("WebSocket", where), []).append((at - answered, at - sent))
            print(f"workers: {args.workers}, changes: {args.changes}, Mailbox/set answered in p50 "
                  f"{statistics.median(set_ms):.2f} ms, p95 {pct(set_ms, 95):.2f} ms")
            print(f"{'channel':12} {'worker':6} {'from answer p50/p95 (ms)':>26} {'from request p50/p95 (ms)':>27}")
            for (kind, where), values in sorted(results.items()):
                after_answer = [a * 1000 for a, _ in values]
                after_send = [s * 1000 for _, s in values]
                print(f"{kind:12} {where:6} {pct(after_answer, 50):12.2f} / {pct(after_answer, 95):7.2f}"
                      f"      {pct(after_send, 50):12.2f} / {pct(after_send, 95):7.2f}")
            for c in opened:
                c.task.cancel()
                await (c.response.aclose() if isinstance(c, Stream) else c.close())
    finally:
        server.stop()


async def idle(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = (args.eventsource + args.websocket) * 2 + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))  # the server inherits it
    server = Server(1)
    try:
        await asyncio.sleep(1)
        pid = server.proc.pid
        before = rss_kb(pid)
        async with httpx.AsyncClient(auth=(USER, PASSWORD), timeout=None,
                                     limits=httpx.Limits(max_connections=None, max_keepalive_connections=None)) as c:
            url = server.base + "/jmap/eventsource/?types=*&closeafter=no&ping=0"
            started = time.perf_counter()
            streams = []
            for i in range(0, args.eventsource, 100):
                streams += await asyncio.gather(*(Stream(c, url).open() for _ in range(min(100, args.eventsource - i))))
            sockets = []
            for i in range(0, args.websocket, 100):
                sockets += await asyncio.gather(*(open_socket(server.base) for _ in range(min(100, args.websocket - i))))
            opened = time.perf_counter() - started
            await asyncio.sleep(3)
            with_connections = rss_kb(pid)
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            await asyncio.sleep(args.seconds)
            cpu1, t1 = cpu_seconds(pid), time.perf_counter()
            after_idle = rss_kb(pid)
            # one change reaches them all
            account = (await c.get(server.base + "/.well-known/jmap")).json()["primaryAccounts"][MAIL]
            sent = time.perf_counter()
            r = await c.post(server.base + "/jmap/api/", json={"using": [CORE, MAIL], "methodCalls": [
                ["Mailbox/set", {"accountId": account, "create": {"m": {"name": "fanout"}}}, "0"]]})
            r.raise_for_status()
            await asyncio.gather(*(s.events.get() for s in streams), *(w.events.get() for w in sockets))
            fanout = time.perf_counter() - sent
            n = args.eventsource + args.websocket
            print(f"{args.eventsource} EventSource + {args.websocket} WebSocket connections, opened in {opened:.1f} s")
            print(f"server RSS: {before / 1024:.1f} MB idle without connections, {with_connections / 1024:.1f} MB with "
                  f"them ({(with_connections - before) / n:.1f} KB per connection), {after_idle / 1024:.1f} MB after "
                  f"{args.seconds} s idle")
            print(f"server CPU while idle: {cpu1 - cpu0:.2f} s over {t1 - t0:.0f} s "
                  f"({(cpu1 - cpu0) / (t1 - t0) * 100:.2f} % of one core)")
            print(f"one change to all {n} connections: {fanout * 1000:.0f} ms from the request until the last "
                  "one had it")
            for s in streams:
                s.task.cancel()
            for w in sockets:
                w.task.cancel()
            await asyncio.gather(*(s.response.aclose() for s in streams), return_exceptions=True)
            await asyncio.gather(*(w.close() for w in sockets), return_exceptions=True)
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--changes", type=int, default=200)
    lat.add_argument("--workers", type=int, default=2)
    idl = sub.add_parser("idle")
    idl.add_argument("--eventsource", type=int, default=1000)
    idl.add_argument("--websocket", type=int, default=1000)
    idl.add_argument("--seconds", type=int, default=30)
    args = p.parse_args()
    asyncio.run(latency(args) if args.what == "latency" else idle(args))


if __name__ == "__main__":
    main()
