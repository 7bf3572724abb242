"""Submissions per second through the SMTP relay: C clients each create drafts and EmailSubmissions
(one Email/set + EmailSubmission/set request per message, as a client sends) against a running
server whose `--smtp-relay` is the loopback SMTP sink this script runs (aiosmtpd); reports the API
rate, the rate at which the relay received the messages, and the time from the API answer to the
relay's receipt.

    tidings user add bench --password pw --email bench@example.org --data /tmp/sb
    python loadtests/submission_bench.py --sink-port 2525 &   # or let it print the serve command
    tidings serve --data /tmp/sb --port 8080 --smtp-relay 127.0.0.1:2525 --smtp-security none
    python loadtests/submission_bench.py --url http://127.0.0.1:8080 --user bench --password pw \
        --sink-port 2525 -n 500 -c 8
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid

import httpx
from aiosmtpd.controller import Controller

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission"]


class Sink:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # subject -> time received
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        subject = envelope.original_content.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
        with self.lock:
            self.arrived[subject] = time.monotonic()
        return "250 2.0.0 accepted"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="pw")
    ap.add_argument("--sink-port", type=int, default=2525)
    ap.add_argument("-n", type=int, default=500, help="messages")
    ap.add_argument("-c", type=int, default=8, help="concurrent clients")
    args = ap.parse_args()

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=args.sink_port)
    controller.start()
    try:
        http = httpx.Client(base_url=args.url, auth=(args.user, args.password), timeout=60)
        session = http.get("/.well-known/jmap").json()
        account = session["primaryAccounts"][USING[1]]

        def call(client: httpx.Client, calls: list) -> list:
            r = client.post(session["apiUrl"], json={"using": USING, "methodCalls": calls})
            r.raise_for_status()
            return r.json()["methodResponses"]

        boxes = call(http, [["Mailbox/get", {"accountId": account, "ids": None}, "0"]])[0][1]["list"]
        drafts = next(b["id"] for b in boxes if b["role"] == "drafts")
        sent = next(b["id"] for b in boxes if b["role"] == "sent")
        identity = call(http, [["Identity/get", {"accountId": account}, "0"]])[0][1]["list"][0]
        run = uuid.uuid4().hex[:8]
        answered: dict[str, float] = {}
        lock = threading.Lock()
        counter = iter(range(args.n))

        def worker() -> None:
            client = httpx.Client(base_url=args.url, auth=(args.user, args.password), timeout=60)
            for i in counter:
                subject = f"bench {run} {i}"
                res = call(client, [
                    ["Email/set", {"accountId": account, "create": {"d": {
                        "mailboxIds": {drafts: True}, "keywords": {"$draft": True},
                        "from": [{"email": identity["email"]}], "to": [{"email": f"rcpt{i}@remote.test"}],
                        "subject": subject, "bodyValues": {"b": {"value": "hello " * 40}},
                        "textBody": [{"partId": "b", "type": "text/plain"}]}}}, "0"],
                    ["EmailSubmission/set", {"accountId": account, "create": {"s": {
                        "emailId": "#d", "identityId": identity["id"]}},
                        "onSuccessUpdateEmail": {"#s": {f"mailboxIds/{drafts}": None, f"mailboxIds/{sent}": True,
                                                        "keywords/$draft": None}}}, "1"]])
                assert res[1][1].get("created"), res
                with lock:
                    answered[subject] = time.monotonic()

        start = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(args.c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        api_done = time.monotonic()
        while len(sink.arrived) < args.n and time.monotonic() - api_done < 120:
            time.sleep(0.05)
        relay_done = max(sink.arrived.values()) if sink.arrived else float("nan")
        lags = sorted((sink.arrived[s] - answered[s]) * 1000 for s in answered if s in sink.arrived)
        print(f"{args.n} submissions, {args.c} clients")
        print(f"API: {args.n / (api_done - start):.0f} submissions/s (Email/set + EmailSubmission/set + "
              f"implicit Email/set per request)")
        print(f"relay received {len(sink.arrived)}: {len(sink.arrived) / (relay_done - start):.0f} messages/s "
              "end to end")
        if lags:
            print(f"answer -> relay receipt: median {statistics.median(lags):.1f} ms, "
                  f"p95 {lags[int(len(lags) * 0.95) - 1]:.1f} ms, max {lags[-1]:.1f} ms")
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
