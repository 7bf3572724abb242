"""Graceful shutdown of `tidings serve` (SIGTERM, or SIGINT / Ctrl-C).

uvicorn's own sequence: stop accepting, close idle connections, wait for every open connection to
finish (no time limit), then the lifespan shutdown (the indexer stops, the store closes). Two kinds
of connection would keep it waiting:

* push connections never finish on their own. `on_signal` runs a callback on the event loop as
  soon as the signal arrives (chained before uvicorn's handler), which ends every EventSource
  stream and sends every WebSocket a close frame 1001; requests in flight still finish.
* TLS connections that are closing: a TLS transport's close() sends close_notify and then waits
  for the peer's close_notify, up to the SSL shutdown timeout of 30 s, before the connection counts
  as closed. A client that keeps an idle connection in its pool (requests, as jmapc uses it) never
  reads it, so `tidings serve` over TLS took 30.2 s to exit (and every idle keep-alive connection
  lingered 30 s after uvicorn closed it). `HttpProtocol` gives TLS connections a close() that
  aborts the connection once its output is flushed and the peer has had `TLS_CLOSE_GRACE` seconds
  to answer.

It also gives every connection a timeout for the request header (o07: uvicorn has none, so a
client that sends half a header held its connection for ever): ``--header-timeout`` seconds
(default `HEADER_TIMEOUT`, in $TIDINGS_HEADER_TIMEOUT for the workers) from the connection's start,
and again from the end of each response, for the next header to be complete.  Then the connection
is closed, after a 408 if part of a header had come.  A request being answered (an EventSource
stream, a slow search) is never cut by it: the timer only looks at connections waiting for a header.

And a timeout for a response the client does not read (a download to a client that stopped
reading held its connection and its blob file for ever): when the kernel's buffers are full and
the transport's own buffer passes its high-water mark, ``--send-timeout`` seconds (default
`SEND_TIMEOUT`, in $TIDINGS_SEND_TIMEOUT) may pass before the client has taken enough of it to
resume writing; then the connection is dropped with one log line.  A slow reader is not cut: any
progress that brings the buffer under its low-water mark starts the wait again.  The same holds for
WebSocket connections (`WebSocketProtocol`), whose keepalive ping is stuck behind the same buffer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable

from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol as _WsBase

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol

    _HTTPTOOLS = True
except ImportError:  # pragma: no cover - httptools is optional in uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol as _BaseProtocol

    _HTTPTOOLS = False  # the header timeout relies on httptools' parser callbacks: none with h11

log = logging.getLogger("tidings.http")

TLS_CLOSE_GRACE = 0.5


HEADER_TIMEOUT = 10.0  # default of --header-timeout, seconds
_TIMEOUT_BODY = (b'{"type":"about:blank","status":408,"title":"Request Timeout",'
                 b'"detail":"request header not sent in time"}')
_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/problem+json\r\n"
                b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\nConnection: close\r\n\r\n"
                + _TIMEOUT_BODY)


def header_timeout() -> float:
    """The header timeout in seconds from $TIDINGS_HEADER_TIMEOUT (0 or less: none)."""
    try:
        return float(os.environ.get("TIDINGS_HEADER_TIMEOUT") or HEADER_TIMEOUT)
    except ValueError:
        return HEADER_TIMEOUT


SEND_TIMEOUT = 60.0  # default of --send-timeout, seconds


def send_timeout() -> float:
    """The send timeout in seconds from $TIDINGS_SEND_TIMEOUT (0 or less: none)."""
    try:
        return float(os.environ.get("TIDINGS_SEND_TIMEOUT") or SEND_TIMEOUT)
    except ValueError:
        return SEND_TIMEOUT


GOODBYE_SECONDS = 2.0  # how long uvicorn's shutdown waits for the push connections' own goodbyes


def on_signal(callback: Callable[[], list | None], signals=(signal.SIGTERM, signal.SIGINT)) -> None:
    """Calls callback on the running event loop when one of the signals arrives, then the handler
    that was there (uvicorn's, which starts its shutdown). When the callback returns tasks (the
    WebSockets saying 1001 "going away"), uvicorn's handler runs once they are done or after
    `GOODBYE_SECONDS`: uvicorn's own shutdown closes a WebSocket still open with 1012 "restart",
    which a loaded machine could otherwise reach first. Only from the main thread, and only in
    front of a Python handler: a default or ignored disposition is left as it is."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in signals:
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum, frame, previous=previous):
            def on_loop() -> None:
                tasks = callback()
                if not tasks:
                    previous(signum, frame)
                    return

                async def then() -> None:
                    await asyncio.wait(tasks, timeout=GOODBYE_SECONDS)
                    previous(signum, frame)

                loop.create_task(then())

            try:
                loop.call_soon_threadsafe(on_loop)
            except RuntimeError:  # the loop is closed
                previous(signum, frame)

        signal.signal(sig, handler)


class _TlsTransport:
    """A TLS transport whose close() does not wait for the peer's close_notify for long."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def close(self) -> None:
        self._transport.close()
        self._loop.call_later(TLS_CLOSE_GRACE, self._abort_when_flushed)

    def _abort_when_flushed(self) -> None:
        try:
            if self._transport.get_write_buffer_size() > 0:  # a response still going out
                self._loop.call_later(TLS_CLOSE_GRACE, self._abort_when_flushed)
                return
            self._transport.abort()
        except Exception:  # noqa: BLE001 - already closed and gone
            pass


class _SendTimeout:
    """The send timeout of a uvicorn protocol (see the module docstring): asyncio calls
    pause_writing when the transport's buffer passes its high-water mark and resume_writing when
    the client has taken enough of it."""

    _send_seconds = 0.0
    _send_timer: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        super().pause_writing()  # type: ignore[misc]
        self._cancel_send_timer()
        if self._send_seconds > 0:
            self._send_timer = self.loop.call_later(self._send_seconds, self._send_timed_out)  # type: ignore[attr-defined]

    def resume_writing(self) -> None:
        self._cancel_send_timer()
        super().resume_writing()  # type: ignore[misc]

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_timed_out(self) -> None:
        self._send_timer = None
        client = self.client[0] if self.client else "unknown"  # type: ignore[attr-defined]
        log.info("closing the connection of %s: it took none of the response for %g s", client,
                 self._send_seconds)
        self.transport.abort()  # type: ignore[attr-defined]  # close() would wait for a drain that never comes


class WebSocketProtocol(_SendTimeout, _WsBase):  # type: ignore[misc, valid-type]
    """uvicorn's WebSocket protocol with the send timeout: a client that reads nothing of what it is
    sent blocks the keepalive ping behind the same full buffer, so without it the connection stayed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._send_seconds = send_timeout()

    def connection_lost(self, exc) -> None:
        self._cancel_send_timer()
        super().connection_lost(exc)


class HttpProtocol(_SendTimeout, _BaseProtocol):
    """uvicorn's HTTP protocol, with the TLS close of `_TlsTransport`, the header timeout and the
    send timeout (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._header_seconds = header_timeout() if _HTTPTOOLS else 0.0
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_seconds = send_timeout()
        self._heads = 0  # requests whose header is complete
        self._answered = 0  # responses complete: while equal to _heads, a header is awaited
        self._partial = False  # bytes of the awaited header have come

    def connection_made(self, transport) -> None:  # type: ignore[override]
        if transport.get_extra_info("sslcontext") is not None:
            transport = _TlsTransport(transport, self.loop)
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        self._cancel_send_timer()
        super().connection_lost(exc)


    def data_received(self, data: bytes) -> None:
        if self._heads == self._answered:
            self._partial = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._partial = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._answered += 1
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        if self._header_seconds > 0:
            self._header_timer = self.loop.call_later(self._header_seconds, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        # a pipelined request whose header is complete is being (or waiting to be) answered
        if self.transport.is_closing() or self._heads != self._answered:
            return
        if self._partial:
            client = self.client[0] if self.client else "unknown"
            log.info("closing the connection of %s: no complete request header in %g s", client,
                     self._header_seconds)
            self.transport.write(_TIMEOUT_408)
        self.transport.close()
