"""JMAP over WebSocket (RFC 8887): API requests and push on one connection.

``GET /jmap/ws/`` upgraded with the subprotocol ``jmap`` (refused without it) and the same
authentication as every other resource. Text messages, each a JSON object with an ``@type``:

* ``Request`` (RFC 8887 §4.3.2): an RFC 8620 Request plus an optional ``id``; answered by a
  ``Response`` with ``requestId`` = that id, through the same pipeline as ``POST /jmap/api/``
  (`Tidings.execute`: the same limits, the same maxConcurrentRequests slots, the same encoder).
  Several requests may be in flight on one socket (at most maxConcurrentRequests); their responses
  come as each finishes.
* ``WebSocketPushEnable`` (§4.3.5.2): ``dataTypes`` (null: every type) and ``pushState``: the
  changes since that pushState are sent at once (the current states if it is unknown or too old).
  Enabling again replaces the previous settings.
* ``WebSocketPushDisable`` (§4.3.5.3).

A message that is not JSON, not an object, of an unknown ``@type``, or a Request that fails the
request-level checks is answered with a ``RequestError``: the problem details of RFC 8620 §3.6.1
plus ``@type`` and ``requestId`` (null when unknown); the socket stays open.

StateChange messages carry ``pushState``: the journal seq up to which the socket has sent every
change (the EventSource event id). On shutdown the socket gets close code 1001 (going away), after
the requests in flight are answered (waiting at most `DRAIN_SECONDS`).
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from ..protocol.errors import ProblemError
from ..protocol.request import decode_request
from . import state
from .bus import RESYNC, BusClosed, Subscription
from .eventsource import still_allowed, unsent

log = logging.getLogger("tidings.push")

WEBSOCKET = "urn:ietf:params:jmap:websocket"
SUBPROTOCOL = "jmap"
DRAIN_SECONDS = 1.5  # on shutdown: how long requests in flight may still take before the close frame
INLINE_DECODE = 64 * 1024  # larger messages are decoded in a worker thread


class JmapSocket:
    """One accepted JMAP WebSocket: reads messages, runs requests, pushes StateChanges."""

    def __init__(self, tidings, ws: WebSocket, user: dict, accounts: list[str], known_types: tuple[str, ...]):
        self.tidings = tidings
        self.ws = ws
        self.user = user
        self.accounts = accounts
        self.known_types = known_types
        limits = tidings.config.limits
        self.limits = limits
        self._room = asyncio.Semaphore(limits.max_concurrent_requests)  # requests in flight here
        self._inflight: set[asyncio.Task] = set()
        self._send_lock = asyncio.Lock()
        self._sub: Subscription | None = None
        self._pusher: asyncio.Task | None = None
        self.closing = False
        self._closed = False  # our close frame is sent: nothing may follow it

    # -- sending
    async def send(self, data: bytes) -> bool:
        """Sends one text message; False if the socket is gone."""
        async with self._send_lock:
            if self._closed:
                return False
            try:
                await self.ws.send({"type": "websocket.send", "text": data.decode()})
                return True
            except Exception:  # noqa: BLE001 - the client went away (or we closed): nothing to answer
                return False

    async def request_error(self, err: ProblemError, request_id: str | None) -> None:
        await self.send(orjson.dumps({"@type": "RequestError", "requestId": request_id, **err.body()}))

    # -- reading
    async def run(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if self.closing:
                    continue  # going away: nothing new is started
                data = message.get("bytes")
                if data is None:
                    text = message.get("text")
                    data = text.encode() if text is not None else b""
                await self._room.acquire()
                task = asyncio.create_task(self.handle(data))
                self._inflight.add(task)
                task.add_done_callback(self._done)
        finally:
            self.stop_push()

    def _done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._room.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("websocket message failed", exc_info=task.exception())

    async def handle(self, data: bytes) -> None:
        request_id = None
        try:
            if len(data) > INLINE_DECODE:
                message = await run_in_threadpool(decode_request, data, self.limits)
            else:
                message = decode_request(data, self.limits)
            if not isinstance(message, dict):
                raise ProblemError("notRequest", 400, "a message must be a JSON object with an @type")
            kind = message.get("@type")
            if isinstance(message.get("id"), str):
                request_id = message["id"]  # answered in the RequestError too, whatever the @type
            if kind == "Request":
                if "id" in message and request_id is None:
                    raise ProblemError("notRequest", 400, "a Request's id must be a string")
                body = await self.tidings.execute(self.user, message, recheck=True)
                head = {"@type": "Response"} if request_id is None else {"@type": "Response",
                                                                         "requestId": request_id}
                # the pipeline's encoded Response object, with the WebSocket properties in front
                await self.send(orjson.dumps(head)[:-1] + b"," + body[1:])
            elif kind == "WebSocketPushEnable":
                self.start_push(message)
            elif kind == "WebSocketPushDisable":
                self.stop_push()
            else:
                raise ProblemError("notRequest", 400, "unknown @type " + orjson.dumps(kind).decode()[:100]
                                   + ": expected Request, WebSocketPushEnable or WebSocketPushDisable")
        except ProblemError as err:
            await self.request_error(err, request_id)

    # -- push
    def start_push(self, message: dict) -> None:
        data_types = message.get("dataTypes")
        if data_types is not None and not (isinstance(data_types, list)
                                           and all(isinstance(t, str) for t in data_types)):
            raise ProblemError("notRequest", 400, "dataTypes must be null or an array of type names")
        push_state = message.get("pushState")
        if push_state is not None and not isinstance(push_state, str):
            raise ProblemError("notRequest", 400, "pushState must be a string")
        types = self.known_types if data_types is None else tuple(t for t in self.known_types if t in data_types)
        self.stop_push()
        sub = self.tidings.bus.subscribe(self.accounts, types)
        self._sub = sub
        self._pusher = asyncio.create_task(self._push(sub, types, push_state))

    def stop_push(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            self._pusher = None
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    async def _push(self, sub: Subscription, types: tuple[str, ...], push_state: str | None) -> None:
        store, bus = self.tidings.store, self.tidings.bus
        sent: dict[tuple[str, str], str] = {}
        seq = sub.floor
        try:
            if push_state is not None:
                seq, changed = await run_in_threadpool(state.since, store, push_state, self.accounts, types)
                sub.floor = max(sub.floor, seq)
                changed = await still_allowed(changed, self.user["accountId"],
                                              lambda: self.tidings.push_scopes(self.user))
                changed = unsent(changed, sent)
                if changed:
                    await self._state_change(seq, changed)
            while True:
                changed = await sub.next()
                if changed is RESYNC:
                    seq, changed = await run_in_threadpool(state.current, store, self.accounts, types)
                if not await run_in_threadpool(self.tidings.auth.still_valid, self.user):
                    return  # the credential was revoked: no more pushes (requests get 401)
                changed = await still_allowed(changed, self.user["accountId"],
                                              lambda: self.tidings.push_scopes(self.user))
                changed = unsent(changed, sent)
                if changed:
                    seq = max(seq, bus.seq)
                    await self._state_change(seq, changed)
        except BusClosed:
            return

    async def _state_change(self, seq: int, changed: dict) -> None:
        await self.send(orjson.dumps({"@type": "StateChange", "changed": changed, "pushState": str(seq)}))

    # -- shutdown
    async def going_away(self) -> None:
        """Stops pushing and reading, lets the requests in flight answer, then closes with 1001."""
        self.closing = True
        self.stop_push()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=DRAIN_SECONDS)
        async with self._send_lock:
            self._closed = True
            try:
                await self.ws.close(1001, "going away")
            except Exception:  # noqa: BLE001 - already closed
                pass
