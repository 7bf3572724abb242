"""PushSubscription latency: from a Mailbox/set answer to the StateChange POST arriving at a loopback
receiver, one change at a time, on a fresh server (one worker unless --workers is given).

    .venv/bin/python loadtests/webpush_latency.py [--changes 100] [--workers 1]

Starts `tidings serve --push-allow-http` on a temporary data directory with a user, a receiver on
127.0.0.1, one verified PushSubscription; then for each change: Mailbox/set (create a mailbox),
note when the answer is read, wait for the StateChange carrying the new Mailbox state, note when
its POST arrived. Prints p50/p95/max of (arrival - answer) and of (arrival - request sent). A
negative value means the push arrived before the client had read the answer (the server pushes
right after the commit, while it still encodes the answer)."""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


class Receiver:
    def __init__(self):
        self.arrivals: dict[str, float] = {}  # Mailbox state -> arrival time
        self.verification: dict | None = None
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                at = time.perf_counter()
                body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with receiver.cond:
                    if body["@type"] == "PushVerification":
                        receiver.verification = body
                    else:
                        for states in body["changed"].values():
                            if "Mailbox" in states:
                                receiver.arrivals.setdefault(states["Mailbox"], at)
                    receiver.cond.notify_all()
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, predicate, timeout: float = 10.0):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise SystemExit("timed out waiting for a push")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="webpush-bench-")
    cli = [sys.executable, "-m", "app"]
    subprocess.run([*cli, "user", "add", "bench", "--password", "pw", "--data", data], check=True,
                   capture_output=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*cli, "serve", "--data", data, "--port", str(port), "--push-allow-http",
                               "--log-level", "warning", "--no-access-log", "--workers", str(args.workers)],
                              stderr=subprocess.DEVNULL)
    receiver = Receiver()
    try:
        http = httpx.Client(base_url=base, auth=("bench", "pw"), timeout=30)
        for _ in range(300):
            try:
                session = http.get("/.well-known/jmap").json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]

        def call(name: str, arguments: dict) -> dict:
            r = http.post("/jmap/api/", json={"using": USING, "methodCalls": [[name, arguments, "c"]]})
            return r.json()["methodResponses"][0][1]

        url = f"http://127.0.0.1:{receiver.httpd.server_address[1]}/bench"
        sub = call("PushSubscription/set", {"create": {"s": {"deviceClientId": "bench", "url": url}}})
        sub_id = sub["created"]["s"]["id"]
        receiver.wait(lambda: receiver.verification is not None)
        call("PushSubscription/set", {"update": {sub_id: {
            "verificationCode": receiver.verification["verificationCode"]}}})
        from_answer, from_request = [], []
        for i in range(args.changes):
            sent = time.perf_counter()
            result = call("Mailbox/set", {"accountId": account, "create": {"m": {"name": f"bench{i}"}}})
            answered = time.perf_counter()
            state = result["newState"]
            receiver.wait(lambda s=state: s in receiver.arrivals)
            from_answer.append((receiver.arrivals[state] - answered) * 1000)
            from_request.append((receiver.arrivals[state] - sent) * 1000)
        print(f"{args.changes} changes, {args.workers} worker(s), one subscription, loopback receiver")
        for label, values in (("answer -> POST arrived", from_answer), ("request sent -> POST arrived", from_request)):
            print(f"  {label:30s} p50 {pct(values, 50):7.2f} ms   p95 {pct(values, 95):7.2f} ms   "
                  f"max {max(values):7.2f} ms")
    finally:
        server.terminate()
        server.wait(timeout=15)
        receiver.httpd.shutdown()
        subprocess.run(["rm", "-rf", data])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
