"""A real SMTP server on loopback (aiosmtpd) standing in for the relay tidings sends through: it
records what it receives, byte for byte, and can be told to refuse recipients or the message."""

from __future__ import annotations

import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Received:
    def __init__(self, mail_from: str, rcpt_tos: list[str], data: bytes, mail_options: list[str]):
        self.mail_from = mail_from
        self.rcpt_tos = rcpt_tos
        self.data = data
        self.mail_options = mail_options


class RelayHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rcpt_replies: dict[str, str] = {}  # address -> the reply to its RCPT (e.g. "550 5.1.1 no")
        self.data_failures: list[str] = []  # replies to the next DATA commands, in order
        self.lock = threading.Lock()
        self.taken = 0  # how many `next` has returned
        self.greetings = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.greetings += 1  # one per connection from tidings
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.data_failures:
                return self.data_failures.pop(0)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                                          list(envelope.mail_options)))
        return "250 2.0.0 Ok: queued as 4711"

    def next(self, timeout: float) -> Received | None:
        """The next message not yet taken with `next`, waiting up to timeout seconds; else None."""
        deadline = time.time() + timeout
        while True:
            with self.lock:
                if self.taken < len(self.received):
                    self.taken += 1
                    return self.received[self.taken - 1]
            if time.time() >= deadline:
                return None
            time.sleep(0.05)

    def wait_for(self, count: int, timeout: float = 15) -> list[Received]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"the relay received {len(self.received)} messages, not {count}")


class Relay:
    """Controller(...) on a free port; `stop()` closes it (connections then fail)."""

    def __init__(self, port: int, tls_context=None, logins: dict[str, str] | None = None):
        self.handler = RelayHandler()
        self.port = port
        self.logins: list[str] = []
        kwargs: dict = {}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if logins is not None:
            def authenticate(server, session, envelope, mechanism, auth_data):
                ok = isinstance(auth_data, LoginPassword) and logins.get(auth_data.login.decode()) == \
                    auth_data.password.decode()
                if ok:
                    self.logins.append(auth_data.login.decode())
                return AuthResult(success=ok)
            kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=tls_context is not None)
        self._kwargs = kwargs
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port, **kwargs)
        self.controller.start()

    def restart(self) -> None:
        """Stops and starts again on the same port (connections to it are closed)."""
        self.controller.stop()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **self._kwargs)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
