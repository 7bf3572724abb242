"""Run the Locust load test end to end: seed, serve, load, measure, stop, summarise.

    loadtests/.venv/bin/python loadtests/run.py run    [--users 16] [--workers 1] [--time 60s] [--accounts 20]
    loadtests/.venv/bin/python loadtests/run.py matrix [--workers-list 1,2] [--users-list 16,64] [--time 60s]
    loadtests/.venv/bin/python loadtests/run.py soak   [--users 16] [--time 30m]

(`make loadtest`, `make loadtest-matrix` and `make soak` call these.) Runs with the Locust venv's
Python (stdlib and psutil, which Locust brings). Each run:

1. seeds the accounts with `seed.py` (cached under loadtests/.data/, keyed by its parameters) and
   serves a fresh copy of them, so every run starts from the same mail;
2. starts `python -m app serve --workers W` of this checkout on a free loopback port (with
   --tidings-python, default .venv/bin/python) and waits for /.well-known/jmap; exits 2 if it
   does not come up;
3. runs `locust --headless` with locustfile.py (its statistics reset once every user has logged in
   and synced: the figures are of the steady mix; the logins are reported apart), writing
   OUT/locust_stats.csv (and _failures, _exceptions, _stats_history) and OUT/report.html;
4. samples the memory of the server's processes every second (OUT/rss.csv: RSS, and RssAnon, the
   private memory that a leak would grow; RSS also counts LMDB's mapped file pages);
5. reads `tidings_limit_queued_total` and `tidings_limit_rejected_total` from /metrics when the
   server has it (requests that waited for / were refused a per-user concurrency slot); with
   several workers each worker counts its own, so it is read several times and the largest
   reading of each worker (label set) is summed;
6. stops the server with SIGTERM and prints a one-screen summary (also OUT/summary.json, .md).

Exit status: 0 when the run had no failed request, 1 when it had some (or the server died), 2
when the server did not start. OUT defaults to loadtests/out/w{W}-u{U}[-soak].
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCUST = Path(sys.executable).parent / "locust"
METRICS = ("tidings_limit_queued_total", "tidings_limit_rejected_total")
PERCENTILES = ("50%", "95%", "99%")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seconds(spec: str) -> int:
    """Locust's -t syntax: 90, 90s, 5m, 1h30m."""
    if spec.isdigit():
        return int(spec)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", spec)
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"bad duration {spec!r} (e.g. 60s, 5m, 1h30m)")
    h, m, s = (int(x or 0) for x in parts.groups())
    return h * 3600 + m * 60 + s


def seed(opts) -> Path:
    r = subprocess.run([opts.tidings_python, str(HERE / "seed.py"), "--accounts", str(opts.accounts),
                        "--messages", str(opts.messages), "--seed", str(opts.seed),
                        "--python", opts.tidings_python], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"seeding failed ({r.returncode})")
    lines = r.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line)
    return Path(lines[-1])


def get(url: str, auth: tuple[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        import base64
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_up(base: str, server: subprocess.Popen, limit: float = 90) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            status, _ = get(base + "/.well-known/jmap", timeout=2)
            if status in (200, 401):
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


class MemorySampler(threading.Thread):
    """The summed memory of the server process and its descendants, every `interval` seconds."""

    def __init__(self, pid: int, path: Path, interval: float):
        super().__init__(daemon=True)
        self.root, self.path, self.interval = pid, path, interval
        # (t, rss, rss_anon, processes, epoch, CPU seconds of the processes so far)
        self.samples: list[tuple[float, int, int, int, float, float]] = []
        self.cpu_seen: dict[int, float] = {}  # pid -> its last CPU seconds (those of exited ones count on)
        self.stopping = threading.Event()
        self.t0 = time.monotonic()

    @staticmethod
    def status(pid: int) -> tuple[int, int]:
        rss = anon = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
        return rss, anon

    def sample(self) -> None:
        try:
            procs = [psutil.Process(self.root)]
            procs += procs[0].children(recursive=True)
        except psutil.Error:
            return
        rss = anon = n = 0
        for p in procs:
            try:
                r, a = self.status(p.pid)
                cpu = p.cpu_times()
            except (OSError, psutil.Error):
                continue
            rss, anon, n = rss + r, anon + a, n + 1
            self.cpu_seen[p.pid] = cpu.user + cpu.system
        self.samples.append((time.monotonic() - self.t0, rss, anon, n, time.time(), sum(self.cpu_seen.values())))

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["seconds", "rss_bytes", "rss_anon_bytes", "processes", "cpu_seconds"])
            for t, rss, anon, n, _, cpu in self.samples:
                w.writerow([f"{t:.1f}", rss, anon, n, f"{cpu:.2f}"])


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """{metric: {label set: value}} for METRICS out of Prometheus' text format."""
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    for line in text.splitlines():
        found = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)", line)
        if found and found.group(1) in out:
            out[found.group(1)][found.group(2) or ""] = float(found.group(3))
    return out


def scrape(base: str, auth: tuple[str, str], tries: int) -> dict[str, float] | None:
    """The counters summed over label sets (the largest reading of each), or None without /metrics."""
    seen: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    found = False
    for _ in range(tries):
        try:
            status, body = get(base + "/metrics")
            if status == 401:
                status, body = get(base + "/metrics", auth=auth)
        except OSError:
            continue
        if status != 200:
            continue
        for metric, values in parse_metrics(body.decode("utf-8", "replace")).items():
            for labels, v in values.items():
                found = True
                seen[metric][labels] = max(v, seen[metric].get(labels, 0.0))
    if not found:
        return None
    return {m: sum(v.values()) for m, v in seen.items()}


def stop_server(server: subprocess.Popen) -> int | None:
    if server.poll() is not None:
        return server.returncode
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()


def read_stats(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(row: dict, key: str) -> float:
    try:
        return float(row.get(key) or 0)
    except ValueError:
        return 0.0


def memory_summary(samples: list, window: float, since: float = 0.0) -> dict:
    """Start, peak and end of the memory samples, and the means of the first `window` seconds from
    `since` (epoch: when the measurement started, after the logins) and of the last `window` seconds."""
    if not samples:
        return {}
    end = samples[-1][0]
    steady = [s for s in samples if s[4] >= since] or samples
    first = [s for s in steady if s[0] <= steady[0][0] + window]
    last = [s for s in steady if s[0] >= end - window]

    def mean(rows, i):
        return sum(r[i] for r in rows) / len(rows)

    return {
        "rss_start": samples[0][1], "rss_peak": max(s[1] for s in samples), "rss_end": samples[-1][1],
        "anon_start": samples[0][2], "anon_peak": max(s[2] for s in samples), "anon_end": samples[-1][2],
        "window_seconds": window, "rss_first_mean": mean(first, 1), "rss_last_mean": mean(last, 1),
        "anon_first_mean": mean(first, 2), "anon_last_mean": mean(last, 2),
        "processes": max(s[3] for s in samples)}


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def run_once(opts, out: Path, window: float | None = None) -> dict:
    """One load run; returns its summary (also written to OUT/summary.json and .md)."""
    seeded = seed(opts)
    seed_info = json.loads((seeded / "seed.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("locust_*.csv"), out / "api_summary.json"]:
        old.unlink(missing_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=seeded.parent))
    data = scratch / "data"
    shutil.copytree(seeded / "data", data)
    port = opts.port or free_port()
    base = f"http://127.0.0.1:{port}"
    auth = (f"{seed_info['prefix']}001", seed_info["password"])
    log = open(out / "server.log", "w")
    cmd = [opts.tidings_python, "-m", "app", "serve", "--workers", str(opts.workers), "--host", "127.0.0.1",
           "--port", str(port), "--data", str(data), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    summary: dict = {"workers": opts.workers, "users": opts.users, "time": opts.time, "accounts": opts.accounts,
                     "messages": opts.messages, "wait": opts.wait, "push_fraction": opts.push_fraction}
    try:
        if not wait_up(base, server):
            stop_server(server)
            log.close()
            tail = (out / "server.log").read_text()[-3000:]
            print(f"the server did not start (`{' '.join(cmd)}`):\n{tail}", file=sys.stderr)
            summary["error"] = "server did not start"
            summary["exit"] = 2
            return summary
        sampler = MemorySampler(server.pid, out / "rss.csv", opts.sample_interval)
        sampler.start()
        before = scrape(base, auth, 1)
        env = dict(os.environ, LOADTEST_ACCOUNTS=str(opts.accounts), LOADTEST_PREFIX=seed_info["prefix"],
                   LOADTEST_PASSWORD=seed_info["password"], LOADTEST_TERMS=str(seeded / "terms.txt"),
                   LOADTEST_WAIT=opts.wait, LOADTEST_PUSH_FRACTION=str(opts.push_fraction),
                   LOADTEST_SUMMARY=str(out / "api_summary.json"), LOADTEST_RESET_AFTER_LOGIN="1")
        rate = opts.rate or max(1, min(opts.users, 8))
        lcmd = [str(LOCUST), "-f", str(HERE / "locustfile.py"), "--host", base, "--headless", "-u", str(opts.users),
                "-r", str(rate), "-t", opts.time, "--only-summary", "--stop-timeout", "5",
                "--csv", str(out / "locust"), "--html", str(out / "report.html"), "--loglevel", "WARNING"]
        print(f"load: {opts.users} users ({rate}/s) for {opts.time} on {opts.workers} worker(s), "
              f"{opts.accounts} accounts x {opts.messages} messages -> {out}", flush=True)
        summary["loadavg_before"] = round(os.getloadavg()[0], 2)
        started = time.monotonic()
        children_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(out / "locust.log", "w") as llog:
            locust = subprocess.run(lcmd, cwd=ROOT, env=env, stdout=llog, stderr=subprocess.STDOUT)
        summary["seconds"] = round(time.monotonic() - started, 1)
        used = resource.getrusage(resource.RUSAGE_CHILDREN)  # the server is not waited for yet: Locust's
        summary["locust_cpu_percent"] = round(100 * (used.ru_utime + used.ru_stime - children_cpu.ru_utime
                                                     - children_cpu.ru_stime) / max(summary["seconds"], 1e-3), 1)
        summary["locust_exit"] = locust.returncode
        after = scrape(base, auth, 4 * opts.workers)
        summary["server_alive"] = server.poll() is None
        sampler.stop()
    finally:
        code = stop_server(server)
        log.close()
        if not opts.keep_data:
            shutil.rmtree(scratch, ignore_errors=True)
    summary["server_exit"] = code
    if after is not None:
        summary["limits"] = {m: after[m] - (before or {}).get(m, 0.0) for m in METRICS}
    else:
        summary["limits"] = None
    rows = read_stats(out / "locust_stats.csv")
    api = out / "api_summary.json"
    if api.is_file():  # the API requests alone, without the push connection's events (locustfile.py)
        summary["total"] = json.loads(api.read_text())
    else:
        agg = next((r for r in rows if r["Name"] == "Aggregated"), {})
        summary["total"] = {"requests": int(num(agg, "Request Count")), "failures": int(num(agg, "Failure Count")),
                            "rps": num(agg, "Requests/s"), **{p: num(agg, p) for p in PERCENTILES}}
    summary["all_failures"] = sum(int(num(r, "Failure Count")) for r in rows if r["Name"] != "Aggregated")
    summary["per_name"] = [{"type": r["Type"], "name": r["Name"], "requests": int(num(r, "Request Count")),
                            "failures": int(num(r, "Failure Count")), "rps": num(r, "Requests/s"),
                            **{p: num(r, p) for p in PERCENTILES}}
                           for r in rows if r["Name"] != "Aggregated" and num(r, "Request Count")]
    since = summary["total"].get("measured_from", 0)
    summary["memory"] = memory_summary(sampler.samples, window or 60, since)
    steady = [x for x in sampler.samples if x[4] >= since]
    if summary["memory"] and steady:
        summary["memory"]["rss_peak_steady"] = max(x[1] for x in steady)
        summary["memory"]["anon_peak_steady"] = max(x[2] for x in steady)
        wall = steady[-1][0] - steady[0][0]
        summary["server_cpu_percent"] = round(100 * (steady[-1][5] - steady[0][5]) / wall, 1) if wall > 0 else None
    summary["failures_detail"] = [{"name": r.get("Name"), "error": r.get("Error"), "count": r.get("Occurrences")}
                                  for r in read_stats(out / "locust_failures.csv")]
    failed = summary["all_failures"] > 0 or not summary["server_alive"] or summary["total"]["requests"] == 0
    summary["exit"] = 1 if failed else 0
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = render(summary)
    (out / "summary.md").write_text(text)
    print(text)
    summary["_samples"] = sampler.samples  # for the soak's verdict (not in summary.json)
    return summary


def fmt_limits(limits: dict | None) -> str:
    if limits is None:
        return "n/a (no /metrics)"
    return f"{limits[METRICS[0]]:.0f} queued / {limits[METRICS[1]]:.0f} refused"


def render(s: dict) -> str:
    t = s["total"]
    lines = [f"## {s['workers']} worker(s), {s['users']} users, {s['time']} "
             f"({s['accounts']} accounts x {s['messages']} messages, think time {s['wait']} s)", "",
             f"API requests {t['requests']}, {t['rps']:.1f} req/s, p50/p95/p99 {t['50%']:.0f}/{t['95%']:.0f}/"
             f"{t['99%']:.0f} ms, failures {t['failures']} (push included: {s['all_failures']}); "
             f"concurrency limit: {fmt_limits(s['limits'])}", ""]
    lines += [f"server CPU {s.get('server_cpu_percent')}% of one core after the logins, Locust's own CPU "
              f"{s.get('locust_cpu_percent')}%, load average before the run {s.get('loadavg_before')} "
              f"({os.cpu_count()} CPUs, Locust on the same machine)", ""]
    if t.get("push_users") is not None:
        lines += [f"push: {t['push_users']} users hold an EventSource, 30-120 s at a time (the SSE rows and "
                  "EventSource below count from the reset after the logins: mostly reconnections in a short run)", ""]
    login = t.get("login")
    if login:
        lines += [f"logins (first session fetch, not in the figures above): {login['requests']} in "
                  f"{login['seconds']:.1f} s, p50 {login['50%']:.0f} ms, p95 {login['95%']:.0f} ms, max "
                  f"{login['max']:.0f} ms, failures {login['failures']}; measured for {t.get('seconds', 0):.0f} s after", ""]
    m = s["memory"]
    if m:
        lines += [f"server memory ({m['processes']} processes): RSS {mib(m['rss_start'])} start, "
                  f"{mib(m['rss_peak'])} peak ({mib(m.get('rss_peak_steady', 0))} after the logins), "
                  f"{mib(m['rss_end'])} end; private (RssAnon) {mib(m['anon_start'])} start, {mib(m['anon_peak'])} "
                  f"peak ({mib(m.get('anon_peak_steady', 0))} after the logins), {mib(m['anon_end'])} end", ""]
    lines += ["| type | name | requests | fail | req/s | p50 ms | p95 ms | p99 ms |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in s["per_name"]:
        lines.append(f"| {r['type']} | {r['name']} | {r['requests']} | {r['failures']} | {r['rps']:.2f} | "
                     f"{r['50%']:.0f} | {r['95%']:.0f} | {r['99%']:.0f} |")
    if s["failures_detail"]:
        lines += ["", "failures:"] + [f"- {f['count']}x {f['name']}: {f['error'][:200]}" for f in s["failures_detail"]]
    if not s.get("server_alive", True):
        lines += ["", f"THE SERVER DIED during the run (exit {s.get('server_exit')})"]
    return "\n".join(lines) + "\n"


def matrix(opts) -> int:
    base_out = Path(opts.out) if opts.out else HERE / "out"
    results = []
    for workers in opts.workers_list:
        for users in opts.users_list:
            opts.workers, opts.users = workers, users
            s = run_once(opts, base_out / f"w{workers}-u{users}")
            results.append(s)
            if s.get("exit") == 2:
                return 2
    lines = [f"# Load test matrix ({time.strftime('%Y-%m-%d %H:%M')}, {opts.time} per run, "
             f"{opts.accounts} accounts x {opts.messages} messages, think time {opts.wait} s)", "",
             f"Machine: {os.cpu_count()} CPUs; Locust runs on the same machine. Figures are of the API requests "
             "after every user has logged in (push events and the logins apart); server CPU is in % of one "
             "core over that time; RSS includes LMDB's mapped pages, RssAnon is private memory.", "",
             "| workers | users | requests | req/s | p50 ms | p95 ms | p99 ms | failures | queued / refused | "
             "logins p95 ms | server CPU | Locust CPU | RSS peak (after logins) | RssAnon start → end | load avg |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|---:|"]
    for s in results:
        t, m = s["total"], s["memory"]
        lim = "n/a" if s["limits"] is None else f"{s['limits'][METRICS[0]]:.0f} / {s['limits'][METRICS[1]]:.0f}"
        login = (t.get("login") or {}).get("95%", 0)
        lines.append(f"| {s['workers']} | {s['users']} | {t['requests']} | {t['rps']:.1f} | {t['50%']:.0f} | "
                     f"{t['95%']:.0f} | {t['99%']:.0f} | {s.get('all_failures', t['failures'])} | {lim} | {login:.0f} | "
                     f"{s.get('server_cpu_percent')}% | {s.get('locust_cpu_percent')}% | "
                     f"{mib(m.get('rss_peak', 0))} ({mib(m.get('rss_peak_steady', 0))}) | "
                     f"{mib(m.get('anon_start', 0))} → {mib(m.get('anon_end', 0))} | {s.get('loadavg_before')} |")
    lines += ["", "Per run: `w{W}-u{U}/summary.md` (per request name), `report.html`, `locust_stats.csv`, `rss.csv`."]
    text = "\n".join(lines) + "\n"
    base_out.mkdir(parents=True, exist_ok=True)
    (base_out / "matrix.md").write_text(text)
    print(text)
    print(f"written: {base_out / 'matrix.md'}")
    return max(s["exit"] for s in results)


def soak(opts) -> int:
    total = seconds(opts.time)
    window = min(300.0, total / 4)
    out = Path(opts.out) if opts.out else HERE / "out" / f"w{opts.workers}-u{opts.users}-soak"
    s = run_once(opts, out, window=window)
    if s.get("exit") == 2:
        return 2
    m = s["memory"]
    growth = m["anon_last_mean"] - m["anon_first_mean"]
    pct = 100 * growth / m["anon_first_mean"] if m["anon_first_mean"] else 0.0
    flat = pct <= opts.rss_tolerance
    verdict = [f"## Soak: {opts.time}, {opts.users} users, {opts.workers} worker(s)", "",
               f"private memory (RssAnon), mean of the first {window / 60:g} min after the logins "
               f"{mib(m['anon_first_mean'])}, "
               f"of the last {window / 60:g} min {mib(m['anon_last_mean'])}: {growth / 2**20:+.1f} MiB ({pct:+.1f}%)"
               f" -> {'FLAT' if flat else 'GROWING'} (tolerance {opts.rss_tolerance}%)",
               f"RSS (with mapped LMDB pages) {mib(m['rss_first_mean'])} -> {mib(m['rss_last_mean'])}",
               f"failures: {s['total']['failures']} of {s['total']['requests']} requests -> "
               f"{'NO ERROR' if s['total']['failures'] == 0 else 'ERRORS'}", ""]
    since = s["total"].get("measured_from", 0)
    steady = [x for x in s.get("_samples", []) if x[4] >= since]
    if steady:
        step = max(window, 60.0)
        means, t0 = [], steady[0][0]
        while t0 <= steady[-1][0]:
            chunk = [x[2] for x in steady if t0 <= x[0] < t0 + step]
            if chunk:
                means.append(f"{sum(chunk) / len(chunk) / 2**20:.0f}")
            t0 += step
        verdict.insert(-3, f"RssAnon means per {step / 60:g} min (MiB): {' '.join(means)}")
        # the trend once warmed up: a least-squares slope over what follows the first window
        tail = [x for x in steady if x[0] >= steady[0][0] + window]
        if len(tail) >= 3:
            mt = sum(x[0] for x in tail) / len(tail)
            ma = sum(x[2] for x in tail) / len(tail)
            var = sum((x[0] - mt) ** 2 for x in tail)
            slope = sum((x[0] - mt) * (x[2] - ma) for x in tail) / var if var else 0.0
            verdict.insert(-3, f"RssAnon trend after the first {window / 60:g} min: "
                               f"{slope * 3600 / 2**20:+.1f} MiB/hour")
    text = "\n".join(verdict)
    (out / "soak.md").write_text(text + "\n" + render(s))
    print(text)
    return 1 if (not flat or s["exit"]) else 0


def main() -> int:
    default_py = ROOT / ".venv" / "bin" / "python"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["run", "matrix", "soak"])
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--users-list", type=lambda v: [int(x) for x in v.split(",")], default=[16, 64])
    ap.add_argument("--workers-list", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2])
    ap.add_argument("--time", default=None, help="Locust -t (default 60s; soak: 30m)")
    ap.add_argument("--rate", type=int, default=0, help="users started per second (default: min(users, 8))")
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--messages", type=int, default=500, help="seeded messages per account")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--wait", default="0.2,1.0", help="think time between a user's tasks: MIN,MAX seconds")
    ap.add_argument("--push-fraction", type=float, default=0.5, help="share of users holding an EventSource")
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--out", default=None, help="output folder (matrix: its parent)")
    ap.add_argument("--tidings-python", default=str(default_py if default_py.exists() else "python3"),
                    help="a Python with tidings' dependencies (default: .venv/bin/python)")
    ap.add_argument("--sample-interval", type=float, default=None, help="seconds between memory samples")
    ap.add_argument("--rss-tolerance", type=float, default=10.0, help="soak: allowed growth of RssAnon, percent")
    ap.add_argument("--keep-data", action="store_true", help="keep the served copy of the data (loadtests/.data/run-*)")
    opts = ap.parse_args()
    opts.time = opts.time or ("30m" if opts.mode == "soak" else "60s")
    seconds(opts.time)
    if opts.sample_interval is None:
        opts.sample_interval = 5.0 if opts.mode == "soak" else 1.0
    if not LOCUST.exists():
        sys.exit(f"{LOCUST} not found: run this with the Locust venv's python (make loadtests/.venv/.installed)")
    if opts.mode == "matrix":
        return matrix(opts)
    if opts.mode == "soak":
        return soak(opts)
    out = Path(opts.out) if opts.out else HERE / "out" / f"w{opts.workers}-u{opts.users}"
    return run_once(opts, out)["exit"]


if __name__ == "__main__":
    sys.exit(main())
