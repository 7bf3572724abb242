"""One log line per request (logger ``tidings.access``), and the HTTP metrics of `app.metrics`.

The line, as text::

    127.0.0.1 alice "POST /jmap/api/" 200 12.3ms Email/query,Email/get

and as JSON (``--log-format json``) the fields ``client``, ``user`` (null before authentication),
``http_method``, ``path`` (without the query string), ``status``, ``duration_ms`` and ``methods``
(the JMAP method names of an API request, [] elsewhere).  Never a header, a password or a token.

A WebSocket is one line when it ends (status 101 if it was accepted); an EventSource stream
likewise, with its lifetime as duration.  A request whose client went away before any response
is logged with status 499 (nginx's "client closed request").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar

from . import metrics

log = logging.getLogger("tidings.access")

# what the request's handlers learn (the user, the JMAP methods); a dict shared with the request
# threads (app.server.in_thread), which run in a copy of the request's context
_current: ContextVar[dict | None] = ContextVar("tidings_request", default=None)


def note_user(name: str) -> None:
    """The user the current request is authenticated as."""
    info = _current.get()
    if info is not None:
        info["user"] = name


def note_method(name: str) -> None:
    """A JMAP method the current request invoked (in order)."""
    info = _current.get()
    if info is not None:
        info["methods"].append(name)


def _printable(text: str) -> str:
    """A path as one safe piece of a text line: no control characters, no bare quotes."""
    if text.isprintable() and '"' not in text:
        return text
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


class AccessLog:
    """ASGI middleware: times each HTTP request and WebSocket, records its metrics, and logs it
    unless `enabled` is false.  routes: (path prefix, route label) pairs, the first match wins.
    It must run inside the proxy-header middleware, so that the client address is the real one."""

    def __init__(self, app, routes: Sequence[tuple[str, str]], enabled: bool = True):
        self.app = app
        self.routes = tuple(routes)
        self.enabled = enabled

    def route(self, path: str) -> str:
        for prefix, name in self.routes:
            if path.startswith(prefix):
                return name
        return "other"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        info: dict = {"user": None, "methods": [], "status": None}
        token = _current.set(info)
        started = time.perf_counter()

        async def send_status(message) -> None:
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                info["status"] = message["status"]
            elif kind == "websocket.accept":
                info["status"] = 101
            elif kind == "websocket.close" and info["status"] is None:
                info["status"] = 403  # closed before the handshake: uvicorn answers 403
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            if info["status"] is None:
                info["status"] = 500
            raise
        finally:
            _current.reset(token)
            self._record(scope, info, time.perf_counter() - started)

    def _record(self, scope, info: dict, seconds: float) -> None:
        status = info["status"] or 499
        metrics.observe_http(self.route(scope["path"]), status, seconds)
        if not self.enabled or not log.isEnabledFor(logging.INFO):
            return
        client = scope["client"][0] if scope.get("client") else "-"
        method = scope.get("method") or "WEBSOCKET"
        ms = round(seconds * 1000, 1)
        fields = {"client": client, "user": info["user"], "http_method": method, "path": scope["path"],
                  "status": status, "duration_ms": ms, "methods": info["methods"]}
        log.info('%s %s "%s %s" %d %.1fms%s', client, info["user"] or "-", method, _printable(scope["path"]), status, ms,
                 " " + ",".join(info["methods"]) if info["methods"] else "", extra={"fields": fields})
