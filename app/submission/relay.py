"""Sending to the SMTP relay (`tidings serve --smtp-relay host:port`) with aiosmtplib: one
connection per queue entry, one RCPT per recipient so each gets its own reply (RFC 8621 §7
deliveryStatus), the message sent as stored (aiosmtplib only dot-stuffs and ends lines with CRLF).

Non-ASCII addresses (RFC 6531, allowed in an envelope since an addr-spec may be UTF-8, RFC 6532)
are sent with ``SMTPUTF8`` on MAIL when the relay offers that extension; when it does not, such a
recipient (or, for a non-ASCII sender, every recipient) fails for good with ``553 5.6.7``, as a
relay without SMTPUTF8 would refuse it.  A parameter or address that cannot be written on an SMTP
command line (only a queue entry older than the checks at create can have one) fails the same way,
as a reply of this server, never as an exception of the attempt.

Security: ``auto`` uses implicit TLS on port 465 and STARTTLS whenever the relay offers it
elsewhere; ``starttls`` requires STARTTLS; ``tls`` is implicit TLS; ``none`` never encrypts
(a relay on loopback).  Certificates are verified (``--smtp-ca-file`` adds a CA)."""

from __future__ import annotations

import re
import ssl
import time
from dataclasses import dataclass

import aiosmtplib

from .envelope import parameters_problem

SECURITY = ("auto", "starttls", "tls", "none")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")


@dataclass(frozen=True)
class RelayConfig:
    host: str
    port: int = 587
    security: str = "auto"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = 60.0

    @classmethod
    def parse(cls, address: str, **options) -> RelayConfig:
        """From ``host:port`` (port 587 when left out; ``[::1]:25`` for IPv6)."""
        host, sep, port = address.rpartition(":")
        if not sep or host.count(":") and not host.endswith("]"):  # "host" or a bare IPv6 address
            host, port = address, "587"
        host = host.strip("[]")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError(f"bad relay address {address!r}: host:port")
        return cls(host=host, port=int(port), **options)


def smtp_reply(code: int, message: str) -> str:
    """A reply as DeliveryStatus.smtpReply wants it (§7): code, an enhanced status code (RFC 3463;
    the class's x.0.0 when the server gave none), the text on one line."""
    text = " ".join(message.split())
    if not _ENHANCED.match(text):
        text = f"{str(code)[0]}.0.0 {text}".rstrip()
    return f"{code} {text}"


class RelayUnavailable(Exception):
    """No conversation with the relay (connection, TLS, authentication): every recipient waits."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


def _options(params: dict | None) -> list[str]:
    return [k if v is None else f"{k}={v}" for k, v in (params or {}).items()]


def _tls_context(config: RelayConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if config.ca_file:
        context.load_verify_locations(config.ca_file)
    return context


IDLE_SECONDS = 20.0  # an idle connection is kept this long for the next message


class Relay:
    """Connections to the relay, kept open between messages (a relay is slow to greet, and TLS
    is slower still): `send` takes an idle connection or opens one, and returns it afterwards."""

    def __init__(self, config: RelayConfig):
        self.config = config
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    async def send(self, mail_from: str, mail_params: dict | None, rcpts: list[dict],
                   raw: bytes) -> dict[str, tuple[int, str]]:
        """Relays one message; returns {recipient: (reply code, smtpReply)} for every recipient.
        Raises RelayUnavailable when the relay cannot be talked to (a temporary failure for all)."""
        client = self._take_idle()
        if client is not None:
            try:
                return await self._transaction(client, mail_from, mail_params, rcpts, raw)
            except _Broken:  # the relay closed it while it was idle: once more on a new one
                client.close()
        client = await self._connect()
        try:
            return await self._transaction(client, mail_from, mail_params, rcpts, raw)
        except _Broken as exc:
            client.close()
            return {r["email"]: (451, f"451 4.4.2 the relay connection broke: {exc}") for r in rcpts}

    async def close(self) -> None:
        while self._idle:
            client, _ = self._idle.pop()
            await _quit(client)

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if now - since < IDLE_SECONDS and client.is_connected:
                return client
            client.close()
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self.config
        implicit = config.security == "tls" or (config.security == "auto" and config.port == 465)
        start_tls = True if config.security == "starttls" else False if config.security in ("none", "tls") \
            else None
        client = aiosmtplib.SMTP(hostname=config.host, port=config.port, use_tls=implicit,
                                 start_tls=None if implicit else start_tls, tls_context=_tls_context(config),
                                 timeout=config.timeout)
        try:
            await client.connect()
            if config.username:
                await client.login(config.username, config.password or "")
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise RelayUnavailable(smtp_reply(exc.code, exc.message)) from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            client.close()
            raise RelayUnavailable(
                f"451 4.4.1 cannot talk to the relay {config.host}:{config.port}: {exc}") from exc
        return client

    async def _transaction(self, client: aiosmtplib.SMTP, mail_from: str, mail_params: dict | None,
                           rcpts: list[dict], raw: bytes) -> dict[str, tuple[int, str]]:
        """MAIL, one RCPT per recipient, DATA; the connection goes back to the idle ones when the
        conversation ended in a known state.  Raises _Broken if the connection failed."""
        results: dict[str, tuple[int, str]] = {}
        try:
            try:
                await _greeted(client)  # the relay's extensions (SMTPUTF8) decide what MAIL says
                refused, options, encoding = _mail_options(client, mail_from, mail_params, rcpts)
                if refused is not None:
                    self._idle.append((client, time.monotonic()))
                    return dict.fromkeys((r["email"] for r in rcpts), refused)
                await client.mail(mail_from, options=options, encoding=encoding)
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421:  # closing: the connection is done
                    raise _Broken(exc.message) from exc
                await client.rset()
                self._idle.append((client, time.monotonic()))
                return {r["email"]: (exc.code, smtp_reply(exc.code, exc.message)) for r in rcpts}
            except ValueError as exc:  # aiosmtplib will not write it on a command line: nothing sent
                self._idle.append((client, time.monotonic()))
                return dict.fromkeys((r["email"] for r in rcpts),
                                     (553, f"553 5.1.7 the sender address cannot be sent: {exc}"))
            accepted = []
            for rcpt in rcpts:
                refused = _rcpt_problem(rcpt, encoding)
                if refused is not None:
                    results[rcpt["email"]] = refused
                    continue
                try:
                    await client.rcpt(rcpt["email"], options=_options(rcpt.get("parameters")), encoding=encoding)
                    accepted.append(rcpt["email"])
                except aiosmtplib.SMTPResponseException as exc:
                    results[rcpt["email"]] = (exc.code, smtp_reply(exc.code, exc.message))
                except ValueError as exc:  # aiosmtplib will not write it on a command line: nothing sent
                    results[rcpt["email"]] = (553, f"553 5.1.3 the address cannot be sent: {exc}")
            if not accepted:
                await client.rset()
            else:
                try:
                    response = await client.data(raw)
                    reply = (response.code, smtp_reply(response.code, response.message))
                except aiosmtplib.SMTPResponseException as exc:
                    reply = (exc.code, smtp_reply(exc.code, exc.message))
                results.update(dict.fromkeys(accepted, reply))
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            if results:  # replies already given stand; the rest is a broken connection
                client.close()
                broken = f"451 4.4.2 the relay connection broke: {exc}"
                return {**{r["email"]: (451, broken) for r in rcpts}, **results}
            raise _Broken(str(exc)) from exc
        self._idle.append((client, time.monotonic()))
        return results


_NO_SMTPUTF8 = "553 5.6.7 the relay does not accept non-ASCII addresses (no SMTPUTF8, RFC 6531)"


async def _greeted(client: aiosmtplib.SMTP) -> None:
    """EHLO (HELO if the relay refuses it) unless done on this connection, as MAIL would do it."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()


def _mail_options(client: aiosmtplib.SMTP, mail_from: str, params: dict | None,
                  rcpts: list[dict]) -> tuple[tuple[int, str] | None, list[str], str]:
    """(the reply every recipient gets when MAIL cannot be sent, or None; MAIL's parameters; the
    encoding of the addresses).  SMTPUTF8 is asked for when an address needs it and the relay can."""
    why = parameters_problem(params, "mailFrom")
    if why:
        return (501, f"501 5.5.4 {why}"), [], "ascii"
    options = _options(params)
    wanted = not mail_from.isascii() or any(not r["email"].isascii() for r in rcpts)
    if not wanted or not client.supports_extension("smtputf8"):
        return ((553, _NO_SMTPUTF8) if not mail_from.isascii() else None), options, "ascii"
    if not any(o.upper() == "SMTPUTF8" for o in options):
        options.append("SMTPUTF8")
    return None, options, "utf-8"


def _rcpt_problem(rcpt: dict, encoding: str) -> tuple[int, str] | None:
    """The reply of a recipient that cannot be written on RCPT, or None."""
    why = parameters_problem(rcpt.get("parameters"), "rcptTo")
    if why:
        return 501, f"501 5.5.4 {why}"
    if encoding == "ascii" and not rcpt["email"].isascii():
        return 553, _NO_SMTPUTF8
    return None


class _Broken(Exception):
    """The connection failed before any reply of this message."""


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
