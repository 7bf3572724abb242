"""The HTTP layer: FastAPI app with the JMAP resources (RFC 8620 §2 session, §3 API, §6 binary data,
§7.3 EventSource; RFC 8887 JMAP over WebSocket). The API endpoint is a plain Starlette route with
orjson: about twice the throughput of a Pydantic-validated FastAPI body on this kind of machine.
Push runs on the change bus (`app.push`); the API request pipeline of both transports is
`Tidings.execute`."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import hashlib
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from store import OverQuota, StorageFull, StorageUnavailable, open_store, storage_error

from . import accesslog, metrics, slowclients
from .access import accounts_for
from .auth import LAST_USED_EVERY, Authenticator, scheme
from .blob import gc as blob_gc
from .blob import open_blob
from .blob.http import blob_response
from .loginlimit import LoginLimiter
from .protocol.errors import ProblemError
from .protocol.legacy import is_legacy, run_legacy
from .protocol.registry import METHODS, load_methods
from .protocol.request import CallContext, Limits, check_request, decode_request, process
from .protocol.types import CAPABILITIES, TYPES
from .protocol.wire import encode_calls, encode_response
from .proxy import ForwardedMiddleware
from .push.bus import LocalBus
from .push.eventsource import BadParameter, eventsource_response
from .push.webpush import PushService
from .push.websocket import SUBPROTOCOL, WEBSOCKET, JmapSocket
from .search import SearchService
from .shutdown import on_signal
from .submission.deliverer import Deliverer
from .submission.relay import RelayConfig

log = logging.getLogger("tidings.http")


API_PATH = "/jmap/api/"
UPLOAD_PATH = "/jmap/upload/"
DOWNLOAD_PATH = "/jmap/download/"
VCARD_PATH = "/jmap/vcard/"  # {accountId}/{ContactCard or AddressBook id}: vCard 4.0 (app.contacts)
EVENTS_PATH = "/jmap/eventsource/"
WS_PATH = "/jmap/ws/"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
# the route label of a request path in the metrics (app.metrics), first match wins
ROUTE_LABELS = (("/.well-known/jmap", "session"), (API_PATH, "api"), (UPLOAD_PATH, "upload"),
                (DOWNLOAD_PATH, "download"), (EVENTS_PATH, "eventsource"), (WS_PATH, "websocket"),
                (VCARD_PATH, "vcard"), ("/jmap/calendar/", "calendar"), (HEALTH_PATH, "healthz"),
                (METRICS_PATH, "metrics"))
# the threads requests do their work in (JMAP calls, uploads, downloads); each user's share is
# bounded by maxConcurrentRequests/maxConcurrentUpload
REQUEST_THREADS = 32
_REQUEST_POOL = ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="request")


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a request thread, seeing the caller's context variables (the access log's
    record of the request); returns what it returns, raises what it raises.  The event loop's own
    executor hop costs ~55 µs on this kind of machine, anyio's (Starlette's run_in_threadpool)
    ~80 µs: a fifth of a cheap API request's time in the server."""
    ctx = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_REQUEST_POOL, ctx.run, fn, *args)


@dataclass
class Config:
    data_dir: str = "./data"
    limits: Limits = field(default_factory=Limits)
    search_engine: str = "tantivy"
    public_url: str | None = None  # absolute base for session URLs; default: relative paths
    map_size: int = 1 << 36
    push_allow_http: bool = False  # accept http:// PushSubscription URLs (tests with a loopback receiver)
    smtp_relay: RelayConfig | None = None  # where mail to other domains goes (app.submission.relay)
    lmtp_port: int | None = None  # the LMTP listener (app.lmtp); None: none
    lmtp_host: str = "127.0.0.1"
    # proxies whose X-Forwarded-*/Forwarded headers are believed (app.proxy): addresses, networks, "*"
    forwarded_allow_ips: str = "127.0.0.1"
    metrics: str = "local"  # /metrics: "off", "local" (loopback clients only) or "on" (anyone)
    access_log: bool = True  # one line per request (app.accesslog)
    body_timeout: float = slowclients.BODY_TIMEOUT  # seconds without request body data (app.slowclients)


def _json(body: object, status: int = 200, headers: dict | None = None,
          media_type: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=media_type)


def problem(err: ProblemError, headers: dict | None = None) -> Response:
    metrics.observe_problem(err.type)
    return _json(err.body(), err.status, headers, media_type="application/problem+json")


# type/subtype with optional parameters, no control characters (it becomes a header)
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;[\x20-\x7e]*)?")

UPLOAD_WRITE = 1 << 20  # an upload is written to its blob sink a megabyte at a time
TOO_LARGE = ProblemError("limit", 413, "blob exceeds maxSizeUpload", limit="maxSizeUpload")


def over_quota_problem(exc: OverQuota) -> ProblemError:
    """An upload larger than the room left under the account's storage quota (RFC 9425): it could
    never become part of the account's mail.  507 as for WebDAV quotas (RFC 4331 §6), with a type
    of its own so that a client tells it from a full server."""
    return ProblemError("overQuota", 507, str(exc), resource=exc.resource)

def storage_problem(exc: StorageUnavailable) -> ProblemError:
    """A write the disk refused, as problem details (RFC 7807): 507 Insufficient Storage (RFC 4918
    §11.5) when the disk is full, 503 when it failed otherwise; both say that nothing was stored
    and that the same request may succeed later.  Not ``overQuota``: the account is within its
    limits, the server is not."""
    if isinstance(exc, StorageFull):
        return ProblemError("about:blank", 507, f"{exc}; try again later", title="Insufficient Storage")
    return ProblemError("about:blank", 503, f"{exc}; try again later", title="Service Unavailable")


QUEUE_SECONDS = 10.0  # how long a request over the concurrency limit waits for a slot

UNAUTHORIZED = ProblemError("about:blank", 401, "authentication required: HTTP Basic with a tidings user, "
                                                "or a bearer token (tidings token create)")
BASIC_CHALLENGE = 'Basic realm="tidings", charset="UTF-8"'
BEARER_CHALLENGE = 'Bearer realm="tidings"'


def unauthorized(invalid_token: bool = False) -> Response:
    """401 with one WWW-Authenticate challenge per scheme accepted (RFC 9110 §11.6.1), Basic and
    Bearer, as two header fields (clients parse those more reliably than one combined list); when a
    bearer token was sent and refused, its challenge says error="invalid_token" (RFC 6750 §3.1)."""
    response = problem(UNAUTHORIZED)
    response.headers.append("WWW-Authenticate", BASIC_CHALLENGE)
    response.headers.append("WWW-Authenticate",
                            BEARER_CHALLENGE + (', error="invalid_token"' if invalid_token else ""))
    return response


class Tidings:
    """The server's shared state: the store, the authenticator, the method table."""

    def __init__(self, config: Config):
        self.config = config
        self.store = open_store(config.data_dir, map_size=config.map_size)
        self.auth = Authenticator(self.store)
        self.limiter = LoginLimiter.from_env()  # failed Basic logins, per address and per user (app.loginlimit)
        self.methods = load_methods()
        self._upgrade_data()
        self.capabilities = set(CAPABILITIES)  # the `using` check accepts exactly these
        self.capabilities.add(WEBSOCKET)  # RFC 8887 (see session(): not in the registry yet)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.search = SearchService(self.store, config.data_dir, config.search_engine)
        self.bus = LocalBus(self.store, config.data_dir)
        self.push_types = tuple(name for name, dt in TYPES.items() if dt.has_state)  # what push reports
        self.sockets: set[JmapSocket] = set()
        self.push = PushService(self.store, config.data_dir, self.bus, accounts_of=self.push_scopes)
        self.deliverer = Deliverer(self.store, config.data_dir, self.bus, config.smtp_relay)
        self.lmtp = None
        if config.lmtp_port is not None:
            from .lmtp import LmtpListener
            from .submission.outbox import enqueue

            # automatic replies (app.vacation) go into the outgoing queue like any submission
            self.lmtp = LmtpListener(self.store, config.data_dir, config.lmtp_host, config.lmtp_port,
                                     max_size=config.limits.max_size_upload, reply_queue=enqueue)

    def start(self) -> None:
        """On the event loop: the background indexer and the change bus's watcher."""
        self.search.start()
        self.bus.start()
        self.push.start()  # PushSubscription delivery (app.push.webpush)
        self.deliverer.start()  # the outgoing mail queue (app.submission.deliverer)
        self._gc_task = asyncio.get_running_loop().create_task(
            blob_gc.run_periodically(self.store, self.config.data_dir))  # unreferenced blobs

    async def start_listeners(self) -> None:
        """On the event loop, after `start`: the LMTP listener (in the one process that owns it)."""
        if self.lmtp is not None:
            await self.lmtp.start()

    async def stop_listeners(self) -> None:
        if self.lmtp is not None:
            await self.lmtp.close()

    def begin_shutdown(self) -> list[asyncio.Task]:
        """SIGTERM (or the lifespan's end): every EventSource stream ends, every WebSocket gets a
        close frame 1001 once its requests in flight are answered. Requests still finish. Returns
        the WebSockets' goodbyes (app.shutdown waits for them before uvicorn's own shutdown)."""
        if self.bus.stopping:
            return []
        if getattr(self, "_gc_task", None) is not None:
            self._gc_task.cancel()
        log.info("shutting down: ending %d push streams (EventSource, WebSocket push) and closing %d WebSockets",
                 self.bus.subscriptions(), len(self.sockets))
        self.bus.shutdown()
        loop = asyncio.get_running_loop()
        return [loop.create_task(sock.going_away()) for sock in list(self.sockets)]

    def close(self) -> None:
        self.search.close()
        self.store.close()

    def _upgrade_data(self) -> None:
        """Brings data stored by an earlier version up to date before serving (each step a no-op
        once done); a step that cannot write (a full disk) is logged and retried at the next start."""
        from .contacts.card import index_words

        try:
            index_words(self.store)
        except Exception as exc:  # noqa: BLE001 - serving goes on; the step says why in the log
            log.warning("contact search: cards stored before the words index could not be updated (%s); "
                        "text filters miss them until the next start", exc)

    def push_accounts(self, user: dict) -> list[str]:
        """The accounts whose changes the user's push connections report: every account the user
        may use (their own and those shared with them, app.access)."""
        return list(accounts_for(self.store, user))

    def push_scopes(self, user: dict) -> dict[str, set[str] | None]:
        """{account id: the type names the user's push connections report of it}: None (every
        type) for their own account, those of the capabilities shared with them for another."""
        from .protocol.types import TYPES

        return {account_id: None if access.owner else
                {name for name, dt in TYPES.items() if dt.capability in access.capabilities}
                for account_id, access in accounts_for(self.store, user).items()}

    # -- helpers
    async def user_for(self, request: HTTPConnection) -> dict | Response:
        """The user record a request is authenticated as (with "credential": "token:<id>" for a
        bearer token), or the response that refuses it: 401 with the challenges, or 429 with
        Retry-After once the failed-login limits of `app.loginlimit` are reached.  Failures are
        logged with the user name and the client address (never the password or the secret)."""
        header = request.headers.get("authorization")
        address = request.client.host if request.client else "unknown"
        kind = scheme(header)
        if kind == "bearer":
            user, token, why = self.auth.authenticate_bearer(header)
            if user is None:
                login_failed(None, address, why)
                return unauthorized(invalid_token=True)
            now = int(time.time())
            if token["lastUsed"] is None or token["lastUsed"] <= now - LAST_USED_EVERY:
                await in_thread(self.store.touch_token, token["id"], now)  # a write: rarely
            accesslog.note_user(user["name"])
            return user
        if kind != "basic":
            return unauthorized()
        user = self.auth.authenticate_cached(header)  # the common case: no hashing, no thread hop
        if user is not None:
            accesslog.note_user(user["name"])
            return user
        name = self.auth.basic_name(header)
        if name is None:
            login_failed(None, address, "malformed Basic credentials")
            return unauthorized()
        refused = self.limiter.check(name, address)
        if refused is not None:
            wait, which = refused
            why = "from this address" if which == "address" else "for this user from new addresses"
            return problem(ProblemError("about:blank", 429, f"too many failed logins {why}: retry in {wait} s"),
                           {"Retry-After": str(wait)})
        user = await in_thread(self.auth.authenticate, header)
        if user is None:
            address_blocked, user_blocked = self.limiter.failed(name, address)
            login_failed(name, address, "unknown user or wrong password")
            if address_blocked:
                log.warning("failed logins: address %s refused for %d s after %d failures", address,
                            self.limiter.address_window, self.limiter.per_address)
            if user_blocked:
                log.warning("failed logins: user %r refused from new addresses for %d s after %d failures",
                            name[:100], self.limiter.user_window, self.limiter.per_user)
            return unauthorized()
        self.limiter.succeeded(name, address)
        accesslog.note_user(user["name"])
        return user

    async def _acquire(self, key: str, limit: int, wait: float = QUEUE_SECONDS) -> bool:
        """A slot among the `limit` concurrent ones of this user (maxConcurrentRequests/Upload).
        A request beyond the limit waits briefly for a slot rather than failing at once; only
        when none frees up in time is it refused with the `limit` problem."""
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(limit)
        if not slots.locked():  # a slot is free: taken at once, without waiting
            await slots.acquire()
            return True
        metrics.LIMIT_QUEUED.inc()
        try:
            await asyncio.wait_for(slots.acquire(), timeout=wait)
        except TimeoutError:
            metrics.LIMIT_REJECTED.inc()
            return False
        return True

    def _release(self, key: str) -> None:
        self._slots[key].release()

    def session(self, user: dict, base_url: str = "") -> dict:
        """The Session object (RFC 8620 §2). URLs are absolute, since clients such as jmapc use
        them as they are: --public-url (scheme, host and an optional path prefix) when set, else
        `base_url`, the scheme and host the client used (those a trusted proxy forwarded, app.proxy)."""
        account_id = user["accountId"]
        base = (self.config.public_url or base_url).rstrip("/")
        session = {
            "capabilities": {urn: cap.session(self) for urn, cap in CAPABILITIES.items() if cap.session is not None},
            "accounts": self.session_accounts(user),
            "primaryAccounts": {urn: account_id for urn, cap in CAPABILITIES.items()
                                if cap.account is not None and cap.primary},
            "username": user["name"],
            "apiUrl": base + API_PATH,
            "downloadUrl": base + DOWNLOAD_PATH + "{accountId}/{blobId}/{name}?accept={type}",
            "uploadUrl": base + UPLOAD_PATH + "{accountId}/",
            "eventSourceUrl": base + EVENTS_PATH + "?types={types}&closeafter={closeafter}&ping={ping}",
        }
        # ---- RFC 8887 JMAP over WebSocket: its URL is made like the others (ws:// or wss://), so it
        # is not a registry capability yet (that has no base URL); `self.capabilities` has it too
        ws_base = "wss:" + base[6:] if base.startswith("https:") else "ws:" + base[5:] if base.startswith(
            "http:") else base
        session["capabilities"][WEBSOCKET] = {"url": ws_base + WS_PATH, "supportsPush": True}
        # ----
        # the state covers what the session says, not the address it was asked at
        session["state"] = self.session_state(user)
        return session

    def session_accounts(self, user: dict) -> dict:
        """The session's accounts (RFC 8620 §2): the user's own, and each account sharing a
        mailbox with them (RFC 9670: isPersonal false, isReadOnly when no right writes), whose
        capabilities are those a grantee may use there (`app.access.Access.capabilities`)."""
        out = {}
        for account_id, access in accounts_for(self.store, user).items():
            owner = user if access.owner else self.store.user(self.store.account(account_id)["user"])
            if owner is None:
                continue
            account = {"id": account_id, "name": owner.get("email") or owner["name"], "user": user,
                       "owner": access.owner}
            out[account_id] = {
                "name": account["name"], "isPersonal": access.owner, "isReadOnly": access.read_only,
                "accountCapabilities": {urn: cap.account(self, account) for urn, cap in CAPABILITIES.items()
                                        if cap.account is not None
                                        and (access.owner or urn in access.capabilities or cap.shared)}}
        return out

    def session_state(self, user: dict) -> str:
        shared = sorted((a, x.read_only, sorted(x.capabilities))
                        for a, x in accounts_for(self.store, user).items() if not x.owner)
        return hashlib.sha256(orjson.dumps(
            [user["name"], user["accountId"], user.get("email"), sorted(self.capabilities),
             self.config.limits.capability(), self.config.public_url, shared],
            option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    async def execute(self, user: dict, request: bytes | dict, recheck: bool = False) -> bytes:
        """The API request pipeline of both transports, HTTP (`POST /jmap/api/`, the body as bytes)
        and WebSocket (a Request message its transport decoded to read the @type; ``recheck``:
        the connection's credential is checked again first): one of the user's
        maxConcurrentRequests slots, then in a worker thread parse or check, process and encode
        (`app.protocol.wire`). Request-level problems raise ProblemError."""
        name = user["name"]
        if not await self._acquire(name, self.config.limits.max_concurrent_requests):
            raise ProblemError("limit", 429, "too many concurrent requests", limit="maxConcurrentRequests")
        try:
            return await in_thread(self._execute, user, request, recheck)
        finally:
            self._release(name)

    def _execute(self, user: dict, request: bytes | dict, recheck: bool = False) -> bytes:
        # a WebSocket authenticated once: its token may have been revoked since (cheap to check);
        # an HTTP request was authenticated a moment ago
        if recheck and not self.auth.still_valid(user):
            raise ProblemError("about:blank", 401, "the credentials of this connection were revoked or expired")
        response = self.run_api(user, request)
        return encode_calls(response) if isinstance(response, list) else encode_response(response)

    def run_api(self, user: dict, body: bytes | dict) -> dict | list:
        """The Response object of an RFC request; for a pre-RFC bare array of calls (HTTP only),
        the bare array of old-style responses (app.protocol.legacy)."""
        if isinstance(body, dict):
            request = check_request(body, self.config.limits)
        else:
            decoded = decode_request(body, self.config.limits)
            if is_legacy(decoded):
                return self.run_legacy(user, decoded)
            request = check_request(decoded, self.config.limits)

        def ctx_factory(using: set[str]) -> CallContext:
            return CallContext(store=self.store, user=user, limits=self.config.limits, using=using,
                               search=self.search, push=self.push,
                               push_allow_http=self.config.push_allow_http, credential=user.get("credential") or user["name"],
                               relay=self.config.smtp_relay)

        response = process(request, ctx_factory, self.capabilities, observe=_observe_call)
        response["sessionState"] = self.session_state(user)
        return response

    def run_legacy(self, user: dict, calls: list) -> list:
        if len(calls) > self.config.limits.max_calls_in_request:
            raise ProblemError("limit", 400, "more calls than maxCallsInRequest", limit="maxCallsInRequest")
        using = sorted(CAPABILITIES)  # the drafts had no `using`: every capability is in use

        def run(rfc_calls: list) -> list:
            return self.run_api(user, {"using": using, "methodCalls": rfc_calls})["methodResponses"]

        return run_legacy(calls, user["accountId"], run)


def login_failed(name: str | None, address: str, why: str) -> None:
    """The one line for a failed login: the user name given (None: none could be read), the
    client address and why; never the password or a token's secret."""
    shown = name[:100] if name is not None else None
    log.warning("login failed: user %s from %s: %s", repr(shown) if shown is not None else "-", address, why,
                extra={"fields": {"event": "login_failed", "user": shown, "client": address, "reason": why}})


def _observe_call(name: str, seconds: float, error: str | None, result: object) -> None:
    """process()'s observer: the metrics of each JMAP invocation, and its name for the access log."""
    label = metrics.method_name(name, METHODS)
    metrics.observe_call(label, seconds, error, result)
    accesslog.note_method(label)


def _loopback(request: Request) -> bool:
    """Whether the request comes from this machine itself: a loopback address, and no proxy
    forwarding it for someone else (a proxy on loopback forwarding a loopback address included)."""
    if "x-forwarded-for" in request.headers or "forwarded" in request.headers:
        return False
    host = request.client.host if request.client else ""
    return host == "::1" or host.startswith("127.") or host == "localhost"


async def _counted(stream, transport: str):
    """A push stream's body, counted in the push_connections gauge while it runs."""
    gauge = metrics.PUSH_CONNECTIONS.labels(transport)
    gauge.inc()
    try:
        async for chunk in stream:
            yield chunk
    finally:
        gauge.dec()


def create_app(config: Config) -> FastAPI:
    tidings = Tidings(config)
    for transport in ("eventsource", "websocket"):  # shown as 0 before the first connection
        metrics.PUSH_CONNECTIONS.labels(transport)

    async def session_resource(request: Request) -> Response:
        user = await tidings.user_for(request)
        if isinstance(user, Response):  # 401 or 429
            return user
        return _json(tidings.session(user, str(request.base_url)),
                     headers={"Cache-Control": "no-cache, no-store"})

    async def api(request: Request) -> Response:
        user = await tidings.user_for(request)
        if isinstance(user, Response):  # 401 or 429
            return user
        limits = config.limits
        # RFC 8620 §3.1: the request MUST be application/json (this also keeps simple cross-site
        # form posts, which skip the CORS preflight, from reaching the API)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return problem(ProblemError("notJSON", 400, "the request Content-Type must be application/json"))
        length = request.headers.get("content-length")
        if length and length.isascii() and length.isdigit() and int(length) > limits.max_size_request:
            return problem(ProblemError("limit", 400, "request exceeds maxSizeRequest",
                                        limit="maxSizeRequest"))
        body = await _read_limited(request, limits.max_size_request)
        if body is None:
            return problem(ProblemError("limit", 400, "request exceeds maxSizeRequest",
                                        limit="maxSizeRequest"))
        try:
            return Response(await tidings.execute(user, body), media_type="application/json")
        except ProblemError as err:
            return problem(err)

    async def upload(request: Request) -> Response:
        """RFC 8620 §6.1: the body streams into a blob sink (at most a megabyte in memory; a
        large blob is written to a file while hashed) and is stored when complete."""
        user = await tidings.user_for(request)
        if isinstance(user, Response):  # 401 or 429
            return user
        account_id = request.path_params["account_id"]
        # a read of the grants, as fast as a thread hop: here, like check_room below
        access = accounts_for(tidings.store, user).get(account_id)
        if access is None or access.read_only:  # a grantee uploads where they may add something
            return problem(ProblemError("about:blank", 404, f"no account {account_id!r}"))
        limits = config.limits
        length = request.headers.get("content-length")
        if length and length.isascii() and length.isdigit() and int(length) > limits.max_size_upload:
            return problem(TOO_LARGE)
        if length and length.isascii() and length.isdigit():  # refused before the body is read when it cannot fit
            try:
                with tidings.store.read(account_id) as r:
                    r.check_room(octets=int(length))
            except OverQuota as exc:
                return problem(over_quota_problem(exc))
        slot = "upload:" + user["name"]
        if not await tidings._acquire(slot, limits.max_concurrent_upload):
            return problem(ProblemError("limit", 429, "too many concurrent uploads",
                                        limit="maxConcurrentUpload"))
        media_type = request.headers.get("content-type") or "application/octet-stream"
        sink = tidings.store.blob_sink()
        try:
            pending, pending_size, size = [], 0, 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_size_upload:
                    return problem(TOO_LARGE)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= UPLOAD_WRITE:
                    await in_thread(sink.write, b"".join(pending))
                    pending, pending_size = [], 0

            def put() -> dict:
                if pending:
                    sink.write(b"".join(pending))
                sink.finish()
                with tidings.store.write(account_id) as w:
                    w.check_room(octets=sink.size)
                    return w.put_blob(sink, media_type)

            info = await in_thread(put)
        except OverQuota as exc:
            return problem(over_quota_problem(exc))
        except Exception as exc:
            # the temp file of a large blob fills the disk before any transaction: an OSError
            failure = storage_error(exc, tidings.config.data_dir)
            if failure is None:
                raise
            log.warning("upload refused: %s", failure.logged())
            return problem(storage_problem(failure))
        finally:
            sink.close()
            tidings._release(slot)
        return _json({"accountId": account_id, "blobId": info["blobId"], "type": media_type,
                      "size": info["size"]}, status=201)

    async def download(request: Request) -> Response:
        user = await tidings.user_for(request)
        if isinstance(user, Response):  # 401 or 429
            return user
        p = request.path_params
        access = accounts_for(tidings.store, user).get(p["account_id"])  # a read of the grants: no hop
        if access is None:
            return problem(ProblemError("about:blank", 404, "blob not found"))
        media_type = request.query_params.get("accept")
        if media_type is not None and not _MEDIA_TYPE.fullmatch(media_type):
            return problem(ProblemError("about:blank", 400, "the type in the download URL is not a media type"))
        found = await in_thread(open_blob, tidings.store, p["account_id"], p["blob_id"], True, access)
        if found is None:
            return problem(ProblemError("about:blank", 404, "blob not found"))
        f, size, stored_type = found
        media_type = media_type or stored_type or "application/octet-stream"
        if not _MEDIA_TYPE.fullmatch(media_type):
            f.close()
            return problem(ProblemError("about:blank", 400, "the type in the download URL is not a media type"))
        name = p["name"]
        disposition = "attachment; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
        # RFC 8620 §6.2: the Content-Type is exactly the type the URL names. Given as a header, not
        # as media_type, which Starlette would extend with "; charset=utf-8" for text/* types,
        # a false statement about bytes in any other charset.
        return await blob_response(request, p["blob_id"], f, size,
                                   {"Content-Type": media_type, "Content-Disposition": disposition,
                                    # a browser must not guess a type other than the checked one
                                    "X-Content-Type-Options": "nosniff"})

    async def vcard(request: Request) -> Response:
        """A ContactCard, or every card of an AddressBook, as vCard 4.0 (app.contacts.card)."""
        from .contacts.card import export_vcards

        user = await tidings.user_for(request)
        if isinstance(user, Response):  # 401 or 429
            return user
        p = request.path_params
        try:
            text = await in_thread(export_vcards, tidings.store, user, p["account_id"], p["obj_id"])
        except ProblemError as err:  # a stored card that cannot be written: a problem, not a plain 500
            return problem(err)
        if text is None:
            return problem(ProblemError("about:blank", 404, "no such contact card or address book"))
        return Response(text.encode(), headers={
            "Content-Type": "text/vcard; charset=utf-8", "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f"attachment; filename={p['obj_id']}.vcf"})

    async def calendar_download(request: Request) -> Response:
        from .calendar.http import ical_of

        user = await tidings.user_for(request)
        if isinstance(user, Response):  # 401 or 429
            return user
        p = request.path_params
        try:
            body = await in_thread(ical_of, tidings.store, user, p["account_id"], p["obj_id"])
        except ProblemError as err:  # a stored event that cannot be written: a problem, not a plain 500
            return problem(err)
        if body is None:
            return problem(ProblemError("about:blank", 404, "no such event or calendar"))
        return Response(body, headers={"Content-Type": "text/calendar; charset=utf-8",
                                       "X-Content-Type-Options": "nosniff",
                                       "Content-Disposition": f'attachment; filename="{p["obj_id"]}.ics"'})

    async def eventsource(request: Request) -> Response:
        user = await tidings.user_for(request)
        if isinstance(user, Response):  # 401 or 429
            return user
        try:
            response = eventsource_response(request, store=tidings.store, bus=tidings.bus,
                                            accounts=tidings.push_accounts(user), known_types=tidings.push_types,
                                            accounts_now=lambda: tidings.push_scopes(user),
                                            alive=lambda: tidings.auth.still_valid(user))
        except BadParameter as exc:
            return problem(ProblemError("about:blank", 400, str(exc)))
        response.body_iterator = _counted(response.body_iterator, "eventsource")
        return response

    async def websocket(ws: WebSocket) -> None:
        # RFC 8887 §4.2: the jmap subprotocol and the same authentication as every resource
        if SUBPROTOCOL not in ws.scope.get("subprotocols", ()):
            await ws.send_denial_response(problem(ProblemError(
                "about:blank", 400, "a JMAP WebSocket needs the subprotocol jmap (Sec-WebSocket-Protocol)")))
            return
        user = await tidings.user_for(ws)
        if isinstance(user, Response):
            await ws.send_denial_response(user)
            return
        if tidings.bus.stopping:
            await ws.send_denial_response(problem(ProblemError("about:blank", 503, "shutting down")))
            return
        await ws.accept(subprotocol=SUBPROTOCOL)
        sock = JmapSocket(tidings, ws, user, tidings.push_accounts(user), tidings.push_types)
        tidings.sockets.add(sock)
        gauge = metrics.PUSH_CONNECTIONS.labels("websocket")
        gauge.inc()
        try:
            await sock.run()
        finally:
            gauge.dec()
            tidings.sockets.discard(sock)

    async def healthz(request: Request) -> Response:
        """200 {"status": "ok"} when the store answers a read transaction; else 503. No
        authentication and nothing about any account: for load balancers and HEALTHCHECK."""
        if tidings.bus.stopping:
            return _json({"status": "stopping"}, 503, {"Cache-Control": "no-store"})
        try:
            tidings.store.healthy()  # microseconds: an LMDB read transaction never waits for a writer
        except Exception as exc:  # noqa: BLE001 - any failure of the store is "not healthy"
            log.error("health check: the store does not answer: %s: %s", type(exc).__name__, exc)
            return _json({"status": "unavailable"}, 503, {"Cache-Control": "no-store"})
        return _json({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def metrics_resource(request: Request) -> Response:
        """Prometheus text format (app.metrics), per --metrics: off, local (loopback clients only,
        after the proxy headers of a trusted proxy are applied) or on."""
        if config.metrics == "off" or (config.metrics == "local" and not _loopback(request)):
            return problem(ProblemError("about:blank", 404, "not found"))
        body = await in_thread(metrics.exposition, tidings.store)
        return Response(body, headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"})

    routes = [
        Route("/.well-known/jmap", session_resource, methods=["GET"]),
        Route(API_PATH, api, methods=["POST"]),
        Route(UPLOAD_PATH + "{account_id}/", upload, methods=["POST"]),
        Route(DOWNLOAD_PATH + "{account_id}/{blob_id}/{name:path}", download, methods=["GET"]),
        Route(VCARD_PATH + "{account_id}/{obj_id}", vcard, methods=["GET"]),
        Route(EVENTS_PATH, eventsource, methods=["GET"]),
        # iCalendar of a CalendarEvent or a Calendar (app/calendar/http.py)
        Route("/jmap/calendar/{account_id}/{obj_id}.ics", calendar_download, methods=["GET"]),
        WebSocketRoute(WS_PATH, websocket),
        Route(HEALTH_PATH, healthz, methods=["GET", "HEAD"]),
        Route(METRICS_PATH, metrics_resource, methods=["GET"]),
    ]

    async def body_timed_out(request: Request, exc: Exception) -> Response:
        slowclients.log_body_timeout(request, exc)
        return problem(ProblemError("about:blank", 408, str(exc)), {"Connection": "close"})

    @asynccontextmanager
    async def lifespan(app):
        tidings.start()  # the background indexer, the change bus
        on_signal(tidings.begin_shutdown)  # push connections end as soon as SIGTERM arrives
        await tidings.start_listeners()  # LMTP
        # what starting made (modules, the registry, caches) lives as long as the server: out of
        # the collector's way, a full collection walks only what requests leave behind
        gc.freeze()
        try:
            yield
        finally:
            tidings.begin_shutdown()
            await tidings.stop_listeners()  # deliveries in flight finish before the store closes
            await tidings.bus.close()
            await tidings.push.close()
            await tidings.deliverer.close()
            await in_thread(tidings.close)
            metrics.worker_exit()

    async def storage_failed(request: Request, exc: Exception) -> Response:
        """Any other route whose write the disk refused (a token's last use, ...): a problem
        response instead of a plain 500 and a dropped connection."""
        log.warning("%s %s: %s", request.method, request.url.path, getattr(exc, "logged", exc.__str__)())
        return problem(storage_problem(exc))  # type: ignore[arg-type]

    # FastAPI's OpenTelemetry stays off: /metrics and the access log are tidings' own (app.metrics,
    # app.accesslog), and asking whether it is configured cost ~10 µs of every request
    app = FastAPI(title="tidings", docs_url=None, redoc_url=None, openapi_url=None, routes=routes,
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  lifespan=lifespan, exception_handlers={
                      StorageUnavailable: storage_failed,
                      slowclients.ClientDisconnect: slowclients.client_gone,
                      slowclients.BodyTimeout: body_timed_out})
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST", "OPTIONS"],
                       allow_headers=["Authorization", "Content-Type", "Accept", "Last-Event-ID"], max_age=86400,
                       # a browser client may read the challenges of a 401 and the wait of a 429
                       expose_headers=["WWW-Authenticate", "Retry-After"])
    # the last added runs first: proxy headers, then the access log (which needs the real client
    # address), then the body timeout around everything that reads a body
    app.add_middleware(slowclients.BodyTimeoutMiddleware, seconds=config.body_timeout)
    app.add_middleware(accesslog.AccessLog, routes=ROUTE_LABELS, enabled=config.access_log)
    app.add_middleware(ForwardedMiddleware, trusted=config.forwarded_allow_ips)
    app.state.tidings = tidings
    return app


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it passes limit bytes (read no further)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
