"""Locust load test of tidings: many mail users, each a JMAP client with a realistic mix.

`make loadtest` (loadtests/run.py) seeds the accounts, starts a server and runs this headless. By
hand, against a server whose accounts load001..loadNNN share one password (`loadtests/seed.py`):

    LOADTEST_ACCOUNTS=20 LOADTEST_PASSWORD=load-pw loadtests/.venv/bin/locust \\
        -f loadtests/locustfile.py --host http://127.0.0.1:8080 --headless -u 16 -r 8 -t 60s

Simulated user i logs in as account i mod N (several users share an account only when there are
more users than accounts), fetches the session, reads the Inbox and Archive ids by role and the
Email state, then runs a weighted mix (the weights are those of the @task decorators):

| weight | request name (stats table)         | what a client does                                         |
|--------|------------------------------------|------------------------------------------------------------|
| 8      | Mailbox/get+Email/changes          | sync: mailbox counts and the Email changes since its state |
|        | Email/get changed                  | then mailboxIds and keywords of what changed (50 at most)  |
| 6      | Email/query inbox                  | the Inbox newest first, 50 ids                             |
| 6      | Email/get previews                 | the list properties and preview of the last query's ids   |
| 6      | Email/get body                     | open a message: bodyValues of its text and HTML parts     |
| 4      | Email/set seen                     | mark an unread message read (or a read one unread)        |
| 1      | Email/set move                     | move a message of the Inbox to the Archive                |
| 2      | Email/query text+SearchSnippet/get | a text search with snippets                               |
| 1      | upload, then Email/import          | upload a new message and import it into the Inbox         |
| 1      | session                            | fetch the session again                                   |
|        | session (login)                    | the first fetch at start: it checks the password (argon2) |
|        | Mailbox/get+Email/get              | at start, or after cannotCalculateChanges: the state      |

A fraction of the users (LOADTEST_PUSH_FRACTION) also hold an EventSource push connection
(`types=*&closeafter=no&ping=30`) on a second HTTP connection, for LOADTEST_PUSH_HOLD seconds at a
time, then reconnect. Its time to the response headers is the request "EventSource"; custom events
(type SSE) count "first event" (time from connecting to the first event), "state change" (time
since this user sent its last write not yet followed by an event: an upper bound of the push
delay), "state change (other)" (no own write pending), "ping", and "held" (the time the connection
was held; its size is the number of events received).

A JMAP error anywhere in a 200 response (a method-level `error`, or notCreated/notUpdated/
notDestroyed of a /set or /import) makes the request a failure; an Email/changes answered
cannotCalculateChanges is not one (the client resyncs, as a real one would).

Environment: LOADTEST_ACCOUNTS (N, default 20), LOADTEST_PREFIX ("load"), LOADTEST_PASSWORD
("load-pw"), LOADTEST_TERMS (a file of search words, one a line; seed.py writes terms.txt),
LOADTEST_WAIT ("0.2,1.0": think time between tasks, seconds), LOADTEST_PUSH_FRACTION (0.5),
LOADTEST_PUSH_HOLD ("30,120" seconds).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from email.utils import formatdate

import gevent
from locust import HttpUser, between, events, task
from locust.clients import HttpSession
from locust.stats import StatsEntry

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
USING = [CORE, MAIL]
PAGE = 50


def _pair(name: str, default: str) -> tuple[float, float]:
    low, high = (float(x) for x in os.environ.get(name, default).split(","))
    return low, high


ACCOUNTS = int(os.environ.get("LOADTEST_ACCOUNTS", "20"))
PREFIX = os.environ.get("LOADTEST_PREFIX", "load")
PASSWORD = os.environ.get("LOADTEST_PASSWORD", "load-pw")
WAIT = _pair("LOADTEST_WAIT", "0.2,1.0")
PUSH_FRACTION = float(os.environ.get("LOADTEST_PUSH_FRACTION", "0.5"))
PUSH_HOLD = _pair("LOADTEST_PUSH_HOLD", "30,120")
LIST_PROPERTIES = ["threadId", "mailboxIds", "keywords", "from", "to", "subject", "receivedAt", "size",
                   "preview", "hasAttachment"]
BODY_PROPERTIES = ["threadId", "mailboxIds", "keywords", "from", "to", "cc", "replyTo", "subject", "sentAt",
                   "receivedAt", "messageId", "inReplyTo", "references", "textBody", "htmlBody", "attachments",
                   "bodyValues"]
FALLBACK_TERMS = ["meeting", "report", "budget", "project", "schedule", "invoice", "review", "update", "travel",
                  "server", "release", "question", "order", "design", "family", "weekend"]


def _terms() -> list[str]:
    path = os.environ.get("LOADTEST_TERMS")
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            words = [w.strip() for w in f if w.strip()]
        if words:
            return words
    return FALLBACK_TERMS


TERMS = _terms()
_numbers = itertools.count()


def account_name(number: int) -> str:
    return f"{PREFIX}{number % ACCOUNTS + 1:03d}"


def jmap_problems(responses: list) -> list[str]:
    """What went wrong inside a 200 response: method errors and SetErrors."""
    problems = []
    for name, args, _ in responses:
        if name == "error":
            if args.get("type") != "cannotCalculateChanges":
                problems.append(f"error {args.get('type')}: {str(args.get('description', ''))[:100]}")
        elif isinstance(args, dict):
            for key in ("notCreated", "notUpdated", "notDestroyed"):
                if args.get(key):
                    kinds = sorted({str(e.get("type")) for e in args[key].values()})
                    problems.append(f"{name} {key}: {kinds}")
    return problems


def new_message(to: str, number: int) -> bytes:
    words = random.choices(TERMS, k=random.randint(40, 300))
    lines, line = [], []
    for w in words:
        line.append(w)
        if len(line) == 12:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    head = [f"From: Load Sender {number} <sender{number}@example.org>", f"To: <{to}>",
            f"Subject: {' '.join(random.choices(TERMS, k=random.randint(2, 6)))}", f"Date: {formatdate()}",
            f"Message-ID: <{uuid.uuid4()}@loadtest.invalid>", "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()


_ready = 0  # users past on_start
_push_users = 0  # users holding an EventSource (their first connections may predate the reset)
_login: dict = {}  # the logins' figures, kept when the statistics are reset after them
_measured_from: list[float] = []


def user_ready(environment) -> None:
    """With LOADTEST_RESET_AFTER_LOGIN=1, reset the statistics once every user has logged in and made
    its first sync: what follows is the steady mix. (Locust's --reset-stats resets when the last
    user is spawned, while many logins, an argon2 check each, may still be in flight.) The logins'
    own figures go to the summary file."""
    global _ready
    _ready += 1
    runner = environment.runner
    if os.environ.get("LOADTEST_RESET_AFTER_LOGIN") != "1" or runner is None or _ready != runner.target_user_count:
        return
    entry = environment.stats.entries.get(("session (login)", "GET"))
    if entry is not None and entry.num_requests:
        _login.update({"requests": entry.num_requests, "failures": entry.num_failures,
                       "50%": entry.get_response_time_percentile(0.5),
                       "95%": entry.get_response_time_percentile(0.95), "max": entry.max_response_time,
                       "seconds": time.time() - environment.stats.total.start_time})
    environment.stats.reset_all()
    _measured_from.append(time.time())


@events.test_stop.add_listener
def api_summary(environment, **_kwargs) -> None:
    """Write the overall figures of the API requests alone (LOADTEST_SUMMARY, a JSON file): Locust's
    Aggregated row also mixes in the push connection's custom events and its hold times, and the
    first session fetch of each user (an argon2 check of the password, once per user and worker)."""
    path = os.environ.get("LOADTEST_SUMMARY")
    if not path:
        return
    total = StatsEntry(environment.stats, "API requests", "", use_response_times_cache=False)
    for entry in environment.stats.entries.values():
        if entry.method != "SSE" and entry.name not in ("EventSource", "session (login)"):
            total.extend(entry)
    summary = {"requests": total.num_requests, "failures": total.num_failures, "rps": total.total_rps,
               "seconds": (environment.stats.total.last_request_timestamp or 0) - environment.stats.total.start_time}
    for p in (0.5, 0.95, 0.99):
        summary[f"{p * 100:g}%"] = total.get_response_time_percentile(p) if total.num_requests else 0
    summary["login"] = _login or None
    summary["push_users"] = _push_users
    summary["measured_from"] = _measured_from[0] if _measured_from else environment.stats.total.start_time
    with open(path, "w", encoding="utf-8") as f:
        json.dump(summary, f)


class MailClient(HttpUser):
    wait_time = between(*WAIT)

    def on_start(self) -> None:
        self.number = next(_numbers)
        self.login = account_name(self.number)
        self.client.auth = (self.login, PASSWORD)
        self.account_id = None
        self.email_state = None
        self.inbox = self.archive = None
        self.inbox_ids: list[str] = []
        self.previews: dict[str, dict] = {}
        self.pending_write: float | None = None  # when the oldest write not yet seen on push was sent
        self._push = None
        try:
            if not self.fetch_session("session (login)"):  # the first one checks the password (argon2)
                return
            self.sync(first=True)
            self.list_inbox()
            # a deterministic fraction of the users: user n holds a push connection when n*f crosses an integer
            if int((self.number + 1) * PUSH_FRACTION) > int(self.number * PUSH_FRACTION):
                global _push_users
                _push_users += 1
                self._push = gevent.spawn(self.push_loop)
        finally:
            user_ready(self.environment)

    def on_stop(self) -> None:
        if self._push is not None:
            self._push.kill(block=False)

    # ---- plumbing

    def call(self, name: str, calls: list) -> list | None:
        """POST one JMAP request; the method responses, or None when it failed (counted by Locust)."""
        body = {"using": USING, "methodCalls": calls}
        with self.client.post(self.api_url, json=body, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
                return None
            try:
                responses = r.json()["methodResponses"]
            except (ValueError, KeyError, TypeError) as exc:
                r.failure(f"not a JMAP response: {exc!r}")
                return None
            problems = jmap_problems(responses)
            if problems:
                r.failure("; ".join(problems))
                return None
            return responses

    def wrote(self) -> None:
        if self.pending_write is None or time.perf_counter() - self.pending_write > 60:
            self.pending_write = time.perf_counter()

    def fetch_session(self, name: str = "session") -> bool:
        with self.client.get("/.well-known/jmap", name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"session: HTTP {r.status_code} as {self.login} (seeded? LOADTEST_PASSWORD?)")
                return False
            session = r.json()
        self.account_id = session["primaryAccounts"][MAIL]
        self.api_url = session["apiUrl"]
        self.upload_url = session["uploadUrl"].replace("{accountId}", self.account_id)
        self.events_url = (session["eventSourceUrl"].replace("{types}", "*").replace("{closeafter}", "no")
                           .replace("{ping}", "30"))
        return True

    # ---- the mix

    @task(1)
    def session(self) -> None:
        self.fetch_session()

    @task(8)
    def sync(self, first: bool = False) -> None:
        """Mailbox/get (counts, roles) and Email/changes since the client's state; a client that has
        no state yet (or whose state is too old) takes the current one from an Email/get of no ids."""
        if self.account_id is None:
            return
        acct = self.account_id
        if first or self.email_state is None:
            calls = [["Mailbox/get", {"accountId": acct, "ids": None}, "m"],
                     ["Email/get", {"accountId": acct, "ids": []}, "s"]]
            responses = self.call("Mailbox/get+Email/get", calls)
            if responses:
                self.mailboxes(responses[0][1]["list"])
                self.email_state = responses[1][1]["state"]
            return
        changed: set[str] = set()
        for _ in range(5):
            calls = [["Mailbox/get", {"accountId": acct, "ids": None}, "m"],
                     ["Email/changes", {"accountId": acct, "sinceState": self.email_state, "maxChanges": 256}, "c"]]
            responses = self.call("Mailbox/get+Email/changes", calls)
            if not responses:
                return
            self.mailboxes(responses[0][1]["list"])
            name, changes, _ = responses[1]
            if name == "error":  # cannotCalculateChanges: start again from the current state
                self.email_state = None
                self.inbox_ids = []
                return
            self.email_state = changes["newState"]
            changed.update(changes["created"], changes["updated"])
            for gone in changes["destroyed"]:
                self.previews.pop(gone, None)
                changed.discard(gone)
            if not changes["hasMoreChanges"]:
                break
        if changed:  # what changed: its flags and mailboxes (a client refreshes its cached list)
            ids = sorted(changed)[:PAGE]
            responses = self.call("Email/get changed", [["Email/get", {
                "accountId": acct, "ids": ids, "properties": ["threadId", "mailboxIds", "keywords"]}, "g"]])
            for email in responses[0][1]["list"] if responses else []:
                if email["id"] in self.previews:
                    self.previews[email["id"]].update(email)

    def mailboxes(self, boxes: list) -> None:
        roles = {b.get("role"): b["id"] for b in boxes}
        self.inbox, self.archive = roles.get("inbox"), roles.get("archive")

    @task(6)
    def list_inbox(self) -> None:
        if self.inbox is None:
            return
        responses = self.call("Email/query inbox", [["Email/query", {
            "accountId": self.account_id, "filter": {"inMailbox": self.inbox},
            "sort": [{"property": "receivedAt", "isAscending": False}], "limit": PAGE,
            "calculateTotal": True}, "q"]])
        if responses:
            self.inbox_ids = responses[0][1]["ids"]

    @task(6)
    def get_previews(self) -> None:
        if not self.inbox_ids:
            return self.list_inbox()
        responses = self.call("Email/get previews", [["Email/get", {
            "accountId": self.account_id, "ids": self.inbox_ids, "properties": LIST_PROPERTIES}, "g"]])
        if responses:
            self.previews = {e["id"]: e for e in responses[0][1]["list"]}

    @task(6)
    def open_message(self) -> None:
        if not self.inbox_ids:
            return self.list_inbox()
        # mostly one of the newest, as a reader does
        email_id = self.inbox_ids[min(int(random.expovariate(0.15)), len(self.inbox_ids) - 1)]
        responses = self.call("Email/get body", [["Email/get", {
            "accountId": self.account_id, "ids": [email_id], "properties": BODY_PROPERTIES,
            "fetchTextBodyValues": True, "fetchHTMLBodyValues": True, "maxBodyValueBytes": 256 * 1024}, "b"]])
        if responses and not responses[0][1]["list"]:
            self.inbox_ids = [i for i in self.inbox_ids if i != email_id]  # gone meanwhile

    @task(4)
    def mark_read(self) -> None:
        if not self.previews:
            return self.get_previews()
        unread = [i for i, e in self.previews.items() if not e.get("keywords", {}).get("$seen")]
        if unread:
            email_id, seen = random.choice(unread), True
        else:  # everything shown is read: mark one unread again
            email_id, seen = random.choice(list(self.previews)), None
        self.wrote()
        responses = self.call("Email/set seen", [["Email/set", {
            "accountId": self.account_id, "update": {email_id: {"keywords/$seen": seen}}}, "u"]])
        if responses and email_id in self.previews:
            self.previews[email_id].setdefault("keywords", {})["$seen"] = seen

    @task(1)
    def move_to_archive(self) -> None:
        if not self.inbox_ids or self.archive is None:
            return
        email_id = random.choice(self.inbox_ids)
        self.wrote()
        responses = self.call("Email/set move", [["Email/set", {
            "accountId": self.account_id, "update": {email_id: {"mailboxIds": {self.archive: True}}}}, "u"]])
        if responses:
            self.inbox_ids = [i for i in self.inbox_ids if i != email_id]
            self.previews.pop(email_id, None)

    @task(2)
    def search(self) -> None:
        if self.account_id is None:
            return
        flt = {"text": random.choice(TERMS)}
        self.call("Email/query text+SearchSnippet/get", [
            ["Email/query", {"accountId": self.account_id, "filter": flt,
                             "sort": [{"property": "receivedAt", "isAscending": False}], "limit": 20}, "q"],
            ["SearchSnippet/get", {"accountId": self.account_id, "filter": flt,
                                   "#emailIds": {"resultOf": "q", "name": "Email/query", "path": "/ids"}}, "s"]])

    @task(1)
    def upload_and_import(self) -> None:
        if self.inbox is None:
            return
        raw = new_message(f"{self.login}@localhost", self.number)
        with self.client.post(self.upload_url, data=raw, headers={"Content-Type": "message/rfc822"},
                              name="upload", catch_response=True) as r:
            if r.status_code not in (200, 201):
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
                return
            blob_id = r.json()["blobId"]
        self.wrote()
        self.call("Email/import", [["Email/import", {"accountId": self.account_id, "emails": {
            "n": {"blobId": blob_id, "mailboxIds": {self.inbox: True}, "keywords": {}}}}, "i"]])

    # ---- push

    def fire(self, name: str, ms: float, size: int = 0, exception: Exception | None = None) -> None:
        self.environment.events.request.fire(request_type="SSE", name=name, response_time=ms,
                                             response_length=size, exception=exception, context={})

    def push_loop(self) -> None:
        """Hold an EventSource for a while, close it, reconnect after a pause; for the user's life."""
        session = HttpSession(base_url=self.host, request_event=self.environment.events.request, user=self)
        session.auth = self.client.auth
        while True:
            hold = random.uniform(*PUSH_HOLD)
            started = time.perf_counter()
            events = 0
            self.pending_write = None  # a write made while not connected is in the first event's states
            try:
                # without catch_response Locust records the request as soon as the headers are in:
                # the connect time; a status >= 400 is its failure
                r = session.get(self.events_url, name="EventSource", stream=True, timeout=(10, 75),
                                headers={"Accept": "text/event-stream"})
                try:
                    if r.status_code == 200:
                        events = self.read_events(r, started, hold)
                finally:
                    r.close()
                self.fire("held", (time.perf_counter() - started) * 1000, events)
            except gevent.GreenletExit:
                self.fire("held", (time.perf_counter() - started) * 1000, events)
                raise
            except Exception as exc:  # noqa: BLE001 (a dropped stream is a failure of push, not of the test)
                self.fire("held", (time.perf_counter() - started) * 1000, events, exception=exc)
            gevent.sleep(random.uniform(1, 5))

    def read_events(self, r, started: float, hold: float) -> int:
        events, kind, data, buf = 0, "message", "", b""
        for chunk in r.iter_content(chunk_size=None):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.rstrip(b"\r").decode("utf-8", "replace")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "" and data:
                    events += 1
                    now = time.perf_counter()
                    if events == 1:
                        self.fire("first event", (now - started) * 1000)
                        self.pending_write = None
                    elif kind == "ping":
                        self.fire("ping", 0)
                    elif self.pending_write is not None:
                        self.fire("state change", (now - self.pending_write) * 1000)
                        self.pending_write = None
                    else:
                        self.fire("state change (other)", 0)
                    kind, data = "message", ""
            if time.perf_counter() - started > hold:
                break
        return events
