"""Locust load test for a running tidings server: a JMAP client reading mail.

Each simulated user fetches the session, then repeatedly lists mailboxes (Mailbox/get), pages
through a mailbox (Email/query inMailbox sorted by receivedAt) and opens the messages of a page
(Email/get with a result reference, as a mail client's message list does).

    make loadtest LOADTEST_USER=demo LOADTEST_PASSWORD=secret USERS=20 TIME=60s

or directly, from its own venv:

    TIDINGS_USER=demo TIDINGS_PASSWORD=secret loadtests/.venv/bin/locust \\
        -f loadtests/locustfile.py --host http://127.0.0.1:8080

Environment: TIDINGS_USER and TIDINGS_PASSWORD (Basic credentials; every simulated user logs in as
this one user), TIDINGS_PAGE (page size, default 50). Import some mail first (`tidings import`), or
the Email calls have little to do.
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
PAGE = int(os.environ.get("TIDINGS_PAGE", "50"))
LIST_PROPERTIES = ["threadId", "mailboxIds", "keywords", "from", "subject", "receivedAt", "size",
                   "preview", "hasAttachment"]


class JmapReader(HttpUser):
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        user = os.environ.get("TIDINGS_USER", "demo")
        password = os.environ.get("TIDINGS_PASSWORD") or os.environ.get("TIDINGS_DEMO_PASSWORD", "")
        self.client.auth = (user, password)
        with self.client.get("/.well-known/jmap", name="session", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"session: HTTP {r.status_code} (check TIDINGS_USER/TIDINGS_PASSWORD)")
                self.stop()
                return
            session = r.json()
        self.account_id = session["primaryAccounts"][MAIL]
        self.api_path = session["apiUrl"]
        self.mailboxes = []
        self.totals = {}
        self.list_mailboxes()

    def call(self, name: str, calls: list) -> list | None:
        body = {"using": [CORE, MAIL], "methodCalls": calls}
        with self.client.post(self.api_path, json=body, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")
                return None
            responses = r.json().get("methodResponses", [])
            errors = [args.get("type") for method, args, _ in responses if method == "error"]
            if errors:
                r.failure(f"method error: {errors}")
                return None
            return responses

    @task(1)
    def list_mailboxes(self) -> None:
        responses = self.call("Mailbox/get", [["Mailbox/get", {"accountId": self.account_id, "ids": None}, "0"]])
        if responses:
            boxes = responses[0][1]["list"]
            self.mailboxes = [b["id"] for b in boxes]
            self.totals = {b["id"]: b.get("totalEmails", 0) for b in boxes}

    def pick_mailbox(self) -> str | None:
        filled = [m for m in self.mailboxes if self.totals.get(m)]
        return random.choice(filled or self.mailboxes) if self.mailboxes else None

    @task(4)
    def query_mailbox(self) -> None:
        mailbox = self.pick_mailbox()
        if mailbox is None:
            return
        pages = max(1, (self.totals.get(mailbox, 0) + PAGE - 1) // PAGE)
        position = PAGE * random.randrange(min(pages, 20))
        self.call("Email/query", [["Email/query", {
            "accountId": self.account_id, "filter": {"inMailbox": mailbox},
            "sort": [{"property": "receivedAt", "isAscending": False}],
            "position": position, "limit": PAGE, "calculateTotal": True}, "0"]])

    @task(6)
    def open_page(self) -> None:
        mailbox = self.pick_mailbox()
        if mailbox is None:
            return
        self.call("Email/query+get", [
            ["Email/query", {"accountId": self.account_id, "filter": {"inMailbox": mailbox},
                             "sort": [{"property": "receivedAt", "isAscending": False}],
                             "limit": PAGE}, "q"],
            ["Email/get", {"accountId": self.account_id, "properties": LIST_PROPERTIES,
                           "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}}, "g"],
        ])
