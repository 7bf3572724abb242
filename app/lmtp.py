"""The LMTP listener (RFC 2033): how an MTA such as Postfix hands mail to tidings.

aiosmtpd's LMTP engine speaks the protocol; `LmtpHandler` is our part: RCPT TO is checked against
the users and their aliases (`store.user_for_address`), and after DATA each accepted recipient gets
its own reply (RFC 2033 §4.2), sent only once the message is durable in that recipient's account
(`app.delivery.deliver`, in a worker thread).  Recipients of one user share one copy; one
account's failure (storage full: 452, anything else: 451, both temporary) fails only its own
recipients.  The size limit (the server's maxSizeUpload) is advertised in LHLO (SIZE) and enforced
(552), by the MAIL FROM SIZE parameter and while the data arrives.

Which process listens: the one holding the flock ``<data>/lmtp/listener.lock``.  With one worker
that is the server; with ``--workers N`` every worker tries, one wins and binds the port, and the
others try again every `RETRY_SECONDS`, so when the owner exits another takes the port over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re

from aiosmtpd.lmtp import LMTP

from app import ipc
from app.addresses import domain_of
from app.delivery import MailboxFull, NotAMessage, TemporaryFailure, deliver, hostname, trace_fields

log = logging.getLogger("tidings.lmtp")

RETRY_SECONDS = 5.0


class _Lmtp(LMTP):
    """aiosmtpd's LMTP engine with two adjustments to its own refusals of the data (too large,
    line too long): one reply per recipient as RFC 2033 §4.2 requires (the engine sends one, and an
    LMTP client waits for as many as it has recipients), and an enhanced status code."""

    line_length_limit = 1 << 16  # RFC 5321 says 1000, but longer lines are stored rather than refused
    _in_data = False
    _in_lhlo = False

    async def smtp_LHLO(self, arg: str) -> None:
        self._in_lhlo = True
        try:
            await super().smtp_LHLO(arg)
        finally:
            self._in_lhlo = False

    async def smtp_DATA(self, arg: str) -> None:
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False

    async def push(self, status) -> None:  # type: ignore[override]
        if isinstance(status, str):
            if status.startswith("354"):
                self._in_data = True
            elif self._in_data and status.startswith(("552 Error", "500 Error")) and self.envelope is not None:
                # the engine's own refusal of the data (our handler's replies carry enhanced codes)
                if status.startswith("552"):
                    status = f"552 5.3.4 message exceeds the size limit of {self.data_size_limit} octets"
                elif status.startswith("500"):
                    status = "554 5.6.0 " + status[4:]
                status = "\r\n".join([status] * max(1, len(self.envelope.rcpt_tos)))
            elif not self._in_lhlo:
                status = _enhanced(status)
        await super().push(status)


_PLAIN_REPLY = re.compile(r"^([245])(\d\d)([ -])(?![245]\.\d{1,3}\.\d{1,3}\b)")


def _enhanced(status: str) -> str:
    """A reply of the engine's own (RSET, NOOP, QUIT, syntax errors) with the class's enhanced
    status code (RFC 2034: once ENHANCEDSTATUSCODES is advertised every reply carries one; RFC
    2033 §5 requires it of LMTP servers).  LHLO's reply and 3xx replies have none."""
    return _PLAIN_REPLY.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{m[1]}.0.0 ", status, count=1)


class LmtpHandler:
    """The aiosmtpd handler: RCPT TO and DATA."""

    def __init__(self, store, *, by: str | None = None, reply_queue=None):
        self.store = store
        self.by = by or hostname()
        self.reply_queue = reply_queue
        self.inflight = 0
        self.closing = False
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_EHLO(self, server, session, envelope, hostname: str, responses: list[str]) -> list[str]:
        """LHLO: the engine's extensions, and the two RFC 2033 §5 requires of every LMTP server
        (the engine already answers pipelined commands in order)."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, server, session, envelope, address: str, mail_options: list[str]) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 sender ok"

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list[str]) -> str:
        try:
            user = self.store.user_for_address(address)
            local = user is not None or ("@" in address and self.store.is_local_domain(domain_of(address)))
        except Exception:  # noqa: BLE001
            log.exception("RCPT TO %s: cannot look the address up", address)
            return "451 4.3.0 temporary failure looking up the recipient; try again later"
        if user is None:
            if not local:
                return f"550 5.1.2 <{address}>: not a domain of this server"
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        if not hasattr(envelope, "tidings_users"):
            envelope.tidings_users = []
        envelope.tidings_users.append(user)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        rcpts = list(zip(envelope.rcpt_tos, getattr(envelope, "tidings_users", []), strict=False))
        if self.closing:
            return "\r\n".join(["421 4.3.2 shutting down; try again later"] * len(rcpts))
        sender = (envelope.mail_from or "").strip().strip("<>")
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer or "")
        self.inflight += 1
        self.idle.clear()
        try:
            return "\r\n".join(await asyncio.get_running_loop().run_in_executor(
                None, self.deliver_all, envelope.original_content or b"", sender, rcpts, session.host_name, peer))
        except Exception:  # noqa: BLE001 - the listener answers, whatever happened
            log.exception("LMTP delivery failed")
            return "\r\n".join(["451 4.3.0 temporary failure; try again later"] * len(rcpts))
        finally:
            self.inflight -= 1
            if not self.inflight:
                self.idle.set()

    def deliver_all(self, raw: bytes, sender: str, rcpts: list[tuple[str, dict]], helo: str | None,
                    peer: str) -> list[str]:
        """One reply per recipient; one copy (one transaction) per account."""
        done: dict[str, str] = {}  # accountId -> the outcome's text
        replies = []
        for address, user in rcpts:
            account = user["accountId"]
            if account not in done:
                done[account] = self._deliver_one(raw, sender, address, user, helo, peer)
            code, text = done[account].split(" ", 1)
            replies.append(f"{code} {text.replace('{rcpt}', address)}")
        return replies

    def _deliver_one(self, raw: bytes, sender: str, address: str, user: dict, helo: str | None,
                     peer: str) -> str:
        trace = trace_fields(sender, address, protocol="LMTP", helo=helo, peer=peer, by=self.by)
        try:
            result = deliver(self.store, user, raw, envelope_sender=sender, trace=trace,
                             reply_queue=self.reply_queue)
        except NotAMessage as exc:
            return f"554 5.6.0 <{{rcpt}}>: not a message ({exc})"
        except MailboxFull:
            return "552 5.2.2 <{rcpt}>: mailbox full (over quota)"
        except TemporaryFailure as exc:
            if exc.full:
                return "452 4.3.1 <{rcpt}>: insufficient system storage; try again later"
            return "451 4.3.0 <{rcpt}>: temporary failure; try again later"
        log.info("delivered %s to %s (%s)%s", result.email_id, user["name"],
                 "new" if result.created else "already there", " with defects" if result.defects else "")
        if not result.created:
            return f"250 2.0.0 <{{rcpt}}> delivered (already there as {result.email_id})"
        return f"250 2.0.0 <{{rcpt}}> delivered as {result.email_id}"


class LmtpListener:
    """Owns the LMTP port for a data directory (see the module docstring)."""

    def __init__(self, store, data_dir: str, host: str, port: int, max_size: int, reply_queue=None):
        self.host, self.port, self.max_size = host, port, max_size
        self.lock_path = os.path.join(data_dir, "lmtp", "listener.lock")
        self.handler = LmtpHandler(store, reply_queue=reply_queue)
        self._server: asyncio.base_events.Server | None = None
        self._lock_fd: int | None = None
        self._retry: asyncio.Task | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    def _protocol(self) -> _Lmtp:
        return _Lmtp(self.handler, data_size_limit=self.max_size, enable_SMTPUTF8=True, decode_data=False,
                     hostname=self.handler.by, ident="tidings LMTP", loop=asyncio.get_running_loop())

    async def start(self) -> None:
        """Listens if no other process of this data directory does (an error to bind is raised);
        else keeps trying in the background."""
        os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
        if not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at info
        if not await self._try_listen():
            log.info("another process owns the LMTP port; this one stands by")
            self._retry = asyncio.get_running_loop().create_task(self._stand_by())

    async def _try_listen(self) -> bool:
        fd = ipc.try_lock(self.lock_path)
        if fd is None:
            return False
        try:
            self._server = await asyncio.get_running_loop().create_server(
                self._protocol, self.host, self.port, reuse_address=True)
        except OSError:
            ipc.unlock(fd)
            raise
        self._lock_fd = fd
        shown = f"[{self.host}]" if ":" in self.host else self.host
        log.info("LMTP listening on %s:%d (pid %d)", shown, self.port, os.getpid())
        return True

    async def _stand_by(self) -> None:
        while True:
            await asyncio.sleep(RETRY_SECONDS)
            try:
                if await self._try_listen():
                    return
            except OSError as exc:
                log.error("cannot take over the LMTP port %d: %s", self.port, exc)

    async def close(self, timeout: float = 30.0) -> None:
        """Stops listening, answers later DATA with 421, and waits (bounded) for deliveries in
        flight, so that the store is closed only after them."""
        if self._retry is not None:
            self._retry.cancel()
        self.handler.closing = True
        if self._server is not None:
            self._server.close()
            self._server = None
        try:
            await asyncio.wait_for(self.handler.idle.wait(), timeout)
        except TimeoutError:
            log.warning("LMTP deliveries still running after %.0f s", timeout)
        if self._lock_fd is not None:
            ipc.unlock(self._lock_fd)
            self._lock_fd = None
