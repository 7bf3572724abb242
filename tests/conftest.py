"""Black-box fixtures: a real `tidings serve` (uvicorn) on a free loopback port over a temp data
directory with real LMDB, driven over HTTP. Users are created with the real `tidings user add`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
USING = [CORE, MAIL]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tidings(*args: str, data: Path, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the real CLI."""
    return subprocess.run([sys.executable, "-m", "app", *args, "--data", str(data)], input=input,
                          capture_output=True, text=True, check=check, timeout=120)


class Server:
    def __init__(self, data: Path, tls: tuple[str, str] | None = None, extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, log_dir: Path | None = None):
        """log_dir: where the server's log goes (default: the data directory; tests that fill the
        data directory's disk keep the log elsewhere)."""
        self.data = data
        self.port = free_port()
        scheme = "https" if tls else "http"
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "app", "serve", "--data", str(data), "--host", "127.0.0.1",
               "--port", str(self.port), "--log-level", "warning", *extra]
        if tls:
            cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.log_path = (log_dir or data) / f"server-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.wait_ready(verify=False if tls else True)

    def wait_ready(self, verify: bool = True) -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                httpx.get(self.base + "/.well-known/jmap", verify=verify, timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start in 30 s")

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Jmap:
    """A minimal JMAP client over httpx, for tests that need exact control of the requests."""

    def __init__(self, server: Server, user: str, password: str):
        self.server = server
        self.http = httpx.Client(base_url=server.base, auth=(user, password), timeout=60)
        self.session = self.http.get("/.well-known/jmap").json()
        self.account_id = self.session["primaryAccounts"][MAIL]
        self.api_url = self.session["apiUrl"]

    def request(self, calls: list, using: list[str] | None = None) -> dict:
        body = {"using": using or [CORE, MAIL, SUBMISSION], "methodCalls": calls}
        r = self.http.post(self.api_url, json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def call(self, method: str, args: dict | None = None, **kw) -> tuple[str, dict]:
        """One method call; accountId is filled in. Returns (response name, arguments)."""
        args = dict(args or {}, **kw)
        args.setdefault("accountId", self.account_id)
        name, result, _ = self.request([[method, args, "c0"]])["methodResponses"][0]
        return name, result

    def ok(self, method: str, args: dict | None = None, **kw) -> dict:
        name, result = self.call(method, args, **kw)
        assert name == method, (name, result)
        return result

    def upload(self, data: bytes, content_type: str = "message/rfc822") -> dict:
        url = self.session["uploadUrl"].replace("{accountId}", self.account_id)
        r = self.http.post(url, content=data, headers={"Content-Type": content_type})
        assert r.status_code == 201, r.text
        return r.json()

    def import_message(self, raw: bytes, mailbox: str | None = None, keywords: dict | None = None,
                       received_at: str | None = None) -> dict:
        blob = self.upload(raw)
        spec = {"blobId": blob["blobId"], "mailboxIds": {mailbox or self.mailbox("inbox"): True},
                "keywords": keywords or {}}
        if received_at:
            spec["receivedAt"] = received_at
        result = self.ok("Email/import", emails={"m": spec})
        assert result["created"], result
        return result["created"]["m"]

    def mailbox(self, role: str) -> str:
        for mb in self.ok("Mailbox/get", ids=None)["list"]:
            if mb["role"] == role:
                return mb["id"]
        raise KeyError(role)


def call_using(c: Jmap, using: list[str], method: str, **args) -> tuple[str, dict]:
    """One method call with these capabilities in `using`; accountId defaults to the client's.
    Returns (response name, arguments)."""
    args.setdefault("accountId", c.account_id)
    name, result, _ = c.request([[method, args, "0"]], using=using)["methodResponses"][0]
    return name, result


def serve_users(tmp_path_factory, label: str, names, domain: str = "example.org"):
    """For a module's server fixture (``yield from``): a server over a fresh data directory with
    these users, each with the password "pw" and the address name@domain; stopped afterwards."""
    data = tmp_path_factory.mktemp(label)
    for name in names:
        tidings("user", "add", name, "--password", "pw", "--email", f"{name}@{domain}", data=data)
    srv = Server(data)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    data = tmp_path_factory.mktemp("data")
    tidings("user", "add", "alice", "--password", "alice-pw", "--email", "alice@example.com", data=data)
    tidings("user", "add", "bob", "--password", "bob-pw", "--email", "bob@example.com", data=data)
    srv = Server(data)
    yield srv
    srv.stop()


@pytest.fixture
def alice(server) -> Jmap:
    return Jmap(server, "alice", "alice-pw")


@pytest.fixture
def bob(server) -> Jmap:
    return Jmap(server, "bob", "bob-pw")


_counter = iter(range(10**9))


def wait_until(condition, what: str, timeout: float = 20.0, interval: float = 0.01):
    """condition()'s first true value, asked every ``interval`` seconds; the test fails naming
    ``what`` if none comes within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return value


def unique(prefix: str = "t") -> str:
    """A name no other test uses, so tests can share one server."""
    return f"{prefix}{os.getpid()}x{next(_counter)}"


@pytest.fixture(scope="module")
def relay():
    """A real SMTP server on loopback (aiosmtpd, tests.smtp_relay) that keeps what it received."""
    from tests.smtp_relay import Relay

    r = Relay(free_port())
    yield r
    r.stop()
