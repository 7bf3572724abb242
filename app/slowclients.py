"""Clients that send a request body too slowly, or go away in the middle of one (o07, o08).

* `BodyTimeoutMiddleware`: while a request body is being read, each wait for the next piece of it
  may last at most ``--body-timeout`` seconds (default `BODY_TIMEOUT`); then the handler gets
  `BodyTimeout`, answered 408 with ``Connection: close``.  Only the waits count: a handler that
  does other work before it reads the body (an upload waiting for a slot) is not cut short.
* A client that closes its connection mid-body makes Starlette raise ClientDisconnect in the
  handler that reads it: answered (to no one) by `client_gone`, one info line instead of
  uvicorn's "Exception in ASGI application" traceback.

The timeout for the request *header* is the protocol's (`app.shutdown.HttpProtocol`): no ASGI
application is called before the header is complete.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

log = logging.getLogger("tidings.http")

BODY_TIMEOUT = 30.0


class BodyTimeout(Exception):
    """No more of the request body arrived within the body timeout."""


class BodyTimeoutMiddleware:
    """ASGI middleware: the body timeout (seconds; 0 or less: none) on the receive of HTTP requests."""

    def __init__(self, app, seconds: float = BODY_TIMEOUT):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        body_done = False

        async def timed_receive():
            nonlocal body_done
            if body_done:  # after the body only http.disconnect comes: no limit on waiting for it
                return await receive()
            try:
                async with asyncio.timeout(self.seconds):  # unlike wait_for, no task per receive
                    message = await receive()
            except TimeoutError:
                body_done = True
                raise BodyTimeout(f"no request body data for {self.seconds:g} s") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def client_gone(request: Request, exc: Exception) -> Response:
    """Exception handler for ClientDisconnect: one line; the response goes nowhere (499 in the
    access log)."""
    log.info("client %s closed the connection before sending all of its request (%s %s)",
             _client(request), request.method, request.url.path)
    return Response(status_code=499)


def log_body_timeout(request: Request, exc: BodyTimeout) -> None:
    """The line for a request closed by the body timeout (app.server answers it 408)."""
    log.info("closing the connection of %s: %s (%s %s)", _client(request), exc, request.method,
             request.url.path)


__all__ = ["BODY_TIMEOUT", "BodyTimeout", "BodyTimeoutMiddleware", "ClientDisconnect", "client_gone",
           "log_body_timeout"]
