"""Running behind a reverse proxy: the client's address, scheme and host as the proxy saw them.

Only when the connection comes from a trusted proxy (``--forwarded-allow-ips``: a comma list of
addresses and networks, or ``*``; default ``127.0.0.1``, as uvicorn's) are these headers believed:

* ``X-Forwarded-For`` and ``X-Forwarded-Proto``: handled by uvicorn's ProxyHeadersMiddleware
  (the client address becomes the rightmost untrusted one; the scheme http/https, ws/wss).
* ``X-Forwarded-Host``: becomes the request's Host, so that the session's URLs (apiUrl,
  downloadUrl, uploadUrl, eventSourceUrl, the WebSocket url) name the host the client used.
  With several values the last one: the one the proxy in front of tidings added (a client may send
  the header itself, and a proxy that appends would keep the client's value in front).
* ``Forwarded`` (RFC 7239): when no X-Forwarded-* header of the same meaning is there, its last
  element's ``for``, ``proto`` and ``host`` are used as those (last, for the same reason).

From any other address all of these are ignored (a client could otherwise make the session point
its users anywhere).  ``--public-url`` overrides the scheme and host in the session either way.
"""

from __future__ import annotations

import re

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

_HOST = re.compile(rb"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _forwarded_last(value: str) -> dict[str, str]:
    """The pairs of the last element of a Forwarded header, names lower-cased, quotes removed."""
    last = value.rsplit(",", 1)[-1]
    out = {}
    for pair in last.split(";"):
        name, sep, val = pair.partition("=")
        if sep:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            out[name.strip().lower()] = val
    return out


def _strip_port(host: str) -> str:
    """A Forwarded ``for`` node without its port ("[2001:db8::1]:4711" -> "2001:db8::1")."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.split(":", 1)[0] if host.count(":") == 1 else host


class ForwardedMiddleware:
    """ASGI middleware applying the proxy headers of trusted peers (see the module docstring)."""

    def __init__(self, app, trusted: str = "127.0.0.1"):
        self.uvicorn = ProxyHeadersMiddleware(app, trusted)
        self.trusted = self.uvicorn.trusted_hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if client and client[0] in self.trusted:
                self._apply(scope)
        await self.uvicorn(scope, receive, send)

    @staticmethod
    def _apply(scope) -> None:
        headers = scope["headers"]
        names = {name for name, _ in headers}
        forwarded_host = None
        for name, value in headers:
            if name == b"x-forwarded-host":
                forwarded_host = value.rsplit(b",", 1)[-1].strip()
        if b"forwarded" in names:
            value = b",".join(v for n, v in headers if n == b"forwarded")
            element = _forwarded_last(value.decode("latin-1"))
            extra = []
            if "proto" in element and b"x-forwarded-proto" not in names:
                extra.append((b"x-forwarded-proto", element["proto"].lower().encode("latin-1")))
            if "for" in element and b"x-forwarded-for" not in names:
                extra.append((b"x-forwarded-for", _strip_port(element["for"]).encode("latin-1")))
            if "host" in element and forwarded_host is None:
                forwarded_host = element["host"].encode("latin-1")
            headers = headers + extra
        if forwarded_host and _HOST.fullmatch(forwarded_host):
            headers = [(n, v) for n, v in headers if n != b"host"] + [(b"host", forwarded_host)]
        if headers is not scope["headers"]:
            scope["headers"] = headers
