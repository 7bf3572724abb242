"""Time from the LMTP "250" for a message to (a) an EventSource StateChange for it arriving (negative:
the push came before the 250, which is sent after the same commit) and (b)
Email/query text search finding it, against a running server.

    tidings user add bench --password pw --data /tmp/bench
    tidings serve --data /tmp/bench --port 8080 --lmtp-port 2424 &
    python loadtests/lmtp_latency.py --url http://127.0.0.1:8080 --lmtp 127.0.0.1:2424 \
        --user bench --password pw --rcpt bench@localhost -n 20
"""

from __future__ import annotations

import argparse
import json
import queue
import smtplib
import statistics
import threading
import time
import urllib.parse
import uuid

import httpx

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--lmtp", default="127.0.0.1:2424")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--rcpt", required=True)
    ap.add_argument("-n", type=int, default=20)
    args = ap.parse_args()

    http = httpx.Client(base_url=args.url, auth=(args.user, args.password), timeout=30)
    session = http.get("/.well-known/jmap").json()
    account = session["primaryAccounts"][USING[1]]
    events: queue.Queue = queue.Queue()
    url = urllib.parse.urljoin(args.url + "/", session["eventSourceUrl"].replace("{types}", "Email")
                               .replace("{closeafter}", "no").replace("{ping}", "0"))

    def listen() -> None:
        with httpx.Client(auth=(args.user, args.password), timeout=httpx.Timeout(30, read=None)) as c:
            with c.stream("GET", url) as r:
                for line in r.iter_lines():
                    if line.startswith("event: state") or line.startswith("event:state"):
                        events.put(time.perf_counter())

    threading.Thread(target=listen, daemon=True).start()
    time.sleep(1.0)
    host, port = args.lmtp.rsplit(":", 1)
    lmtp = smtplib.LMTP(host, int(port))
    lmtp.ehlo("bench.example")
    to_push, to_search = [], []
    for _ in range(args.n):
        word = "w" + uuid.uuid4().hex[:12]
        raw = (f"From: bench@example.org\r\nTo: {args.rcpt}\r\nSubject: bench {word}\r\n"
               f"Message-ID: <{word}@bench.example>\r\n\r\nbody {word}\r\n").encode()
        while not events.empty():
            events.get_nowait()
        lmtp.mail("bench@example.org")
        lmtp.rcpt(args.rcpt)
        code, _ = lmtp.data(raw)
        acked = time.perf_counter()
        assert code == 250
        pushed = events.get(timeout=10)
        to_push.append(pushed - acked)
        while True:
            body = {"using": USING, "methodCalls": [["Email/query", {"accountId": account,
                                                                     "filter": {"text": word}}, "0"]]}
            ids = http.post(session["apiUrl"] if session["apiUrl"].startswith("http") else args.url +
                            session["apiUrl"], json=body).json()["methodResponses"][0][1]["ids"]
            if ids:
                to_search.append(time.perf_counter() - acked)
                break
        time.sleep(0.3)
    lmtp.quit()
    ms = lambda xs: (f"median {statistics.median(xs) * 1000:.1f} ms, min {min(xs) * 1000:.1f} ms, "  # noqa: E731
                     f"max {max(xs) * 1000:.1f} ms")
    print(json.dumps({"n": args.n, "push": ms(to_push), "search": ms(to_search)}))


if __name__ == "__main__":
    main()
