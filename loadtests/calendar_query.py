"""CalendarEvent/query over a year of a 500-event calendar with weekly recurrences: p50/p95 latency
of the whole HTTP request, with and without expandRecurrences, on one worker.

Starts its own `tidings serve --workers 1` over a fresh data directory (a user "bench"):

    .venv/bin/python loadtests/calendar_query.py [--events 500] [--queries 50]

The events are weekly series without end, started at spread times of 2024 in five time zones
(with an override and an exclusion in every tenth); each query asks for the year 2025 (about 52
instances per series), for every id (no limit: up to the type's maximum, 5000 per page, and the
total), sorted by start.
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "bench", "bench-pw"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:calendars"]
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "Etc/UTC")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--queries", type=int, default=50)
    opts = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="calbench-"))
    port = free_port()
    py = sys.executable
    subprocess.run([py, "-m", "app", "user", "add", USER, "--password", PASSWORD, "--data", str(data)],
                   cwd=ROOT, check=True, capture_output=True)
    server = subprocess.Popen([py, "-m", "app", "serve", "--data", str(data), "--port", str(port), "--workers", "1",
                               "--log-level", "warning", "--no-access-log"], cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, auth=(USER, PASSWORD), timeout=120)
        for _ in range(300):
            try:
                session = client.get("/.well-known/jmap").json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        account = session["primaryAccounts"][USING[1]]

        def call(method: str, args: dict) -> dict:  # noqa: B023 (session is set once)
            r = client.post(session["apiUrl"], json={"using": USING, "methodCalls": [[method, {"accountId": account, **args},
                                                                                   "c"]]})
            name, result, _ = r.json()["methodResponses"][0]
            assert name == method, result
            return result

        rnd = random.Random(7)
        batch = {}
        for i in range(opts.events):
            start = f"2024-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}T{rnd.randint(7, 19):02d}:00:00"
            ev = {"title": f"series {i}", "start": start, "timeZone": ZONES[i % len(ZONES)], "duration": "PT1H",
                  "recurrenceRules": [{"frequency": "weekly"}]}
            if i % 10 == 0:
                ev["recurrenceOverrides"] = {}
            batch[f"e{i}"] = ev
            if len(batch) == 100:
                assert len(call("CalendarEvent/set", {"create": batch})["created"]) == 100
                batch = {}
        if batch:
            call("CalendarEvent/set", {"create": batch})
        flt = {"after": "2025-01-01T00:00:00", "before": "2026-01-01T00:00:00"}
        for expand in (False, True):
            times, total = [], 0
            for _ in range(opts.queries):
                t0 = time.perf_counter()
                r = call("CalendarEvent/query", {"filter": flt, "expandRecurrences": expand, "calculateTotal": True,
                                                 "sort": [{"property": "start"}]})
                times.append(time.perf_counter() - t0)
                total = r["total"]
            times.sort()
            p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
            print(f"expandRecurrences={str(expand).lower():5} events={opts.events} results={total:6} "
                  f"queries={opts.queries} p50={statistics.median(times) * 1000:.0f} ms p95={p95 * 1000:.0f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
