"""The EventSource push channel (RFC 8620 §7.3) on the change bus.

``GET /jmap/eventsource/?types=T1,T2|*&closeafter=state|no&ping=N``

* ``types``: a comma list of type names or ``*``; names the server does not know are left out.
* ``ping``: seconds; 0 sends no pings. Clamped to [`MIN_PING`, `MAX_PING`] (§7.3: a minimum no
  higher than 30 and a maximum no lower than 300); the ``ping`` event's data is
  ``{"interval": <the interval used>}`` and it carries no id. A ping goes out whenever that long
  passed since the previous event.
* Every ``state`` event has an ``id:``, the journal seq up to which the connection has sent every
  change (it covers every account and type the user sees, `app.push.state`).
* ``Last-Event-ID`` (sent by an EventSource client when it reconnects): the changes since that id
  are sent at once, as one event; when the id is unknown or older than the journal keeps, the
  current states of all the requested types.
* Without ``Last-Event-ID`` and with ``closeafter=no`` the first event is sent at once and gives
  the current states of the requested types: a client learns where it starts (as jmapc's
  EventSource example expects: it takes the first event as its starting state) and gets an id to
  resume from. With ``closeafter=state`` there is no such event (a long-polling client that does
  not send Last-Event-ID would otherwise be answered at once, again and again): the response ends
  after the first change.
* On shutdown (SIGTERM) the stream ends at once; the client reconnects with its Last-Event-ID.
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from . import state
from .bus import RESYNC, BusClosed

MIN_PING = 5
MAX_PING = 3600


class BadParameter(ValueError):
    pass


def clamp_ping(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isascii() or not value.isdigit():
        raise BadParameter("ping must be a non-negative integer (seconds)")
    seconds = int(value[:12])
    return 0 if seconds == 0 else max(MIN_PING, min(seconds, MAX_PING))


def wanted_types(value: str | None, known: tuple[str, ...]) -> tuple[str, ...]:
    if value is None or value.strip() in ("*", ""):
        return known
    names = {t.strip() for t in value.split(",")}
    return tuple(t for t in known if t in names)


def state_event(seq: int, changed: dict) -> bytes:
    return (b"event: state\nid: " + str(seq).encode() + b"\ndata: "
            + orjson.dumps({"@type": "StateChange", "changed": changed}) + b"\n\n")


def ping_event(interval: int) -> bytes:
    return b"event: ping\ndata: " + orjson.dumps({"interval": interval}) + b"\n\n"


def unsent(changed: dict, sent: dict[tuple[str, str], str]) -> dict:
    """changed without the states this connection already sent (and records the rest as sent)."""
    out: dict = {}
    for account_id, states in changed.items():
        for type_name, value in states.items():
            if sent.get((account_id, type_name)) != value:
                sent[(account_id, type_name)] = value
                out.setdefault(account_id, {})[type_name] = value
    return out


async def still_allowed(changed: dict, own: str, accounts_now) -> dict:
    """changed without the accounts no longer shared with the user (a revocation reaches open push
    connections at their next event), and with only the types shared with the user in a shared
    account; accounts_now() reads {account id: allowed type names} from the store
    (`Tidings.push_scopes`), only when a change of another account than the user's own is to be
    sent."""
    if all(account_id == own for account_id in changed):
        return changed
    scopes = await run_in_threadpool(accounts_now)
    out = {}
    for account_id, states in changed.items():
        if account_id == own:
            out[account_id] = states
        elif account_id in scopes:
            types = scopes[account_id]
            states = {t: s for t, s in states.items() if types is None or t in types}
            if states:
                out[account_id] = states
    return out


def eventsource_response(request: Request, *, store, bus, accounts: list[str],
                         known_types: tuple[str, ...], accounts_now=None, alive=None) -> StreamingResponse:
    """The event stream for an authenticated request. Raises BadParameter for a bad query."""
    q = request.query_params
    types = wanted_types(q.get("types"), known_types)
    closeafter = q.get("closeafter") or "no"
    if closeafter not in ("state", "no"):
        raise BadParameter("closeafter must be state or no")
    close_after_state = closeafter == "state"
    interval = clamp_ping(q.get("ping"))
    last_event_id = request.headers.get("last-event-id")

    async def events():
        loop = asyncio.get_running_loop()
        sub = bus.subscribe(accounts, types)
        try:
            sent: dict[tuple[str, str], str] = {}
            if last_event_id is not None:
                seq, changed = await run_in_threadpool(state.since, store, last_event_id, accounts, types)
            elif not close_after_state:
                seq, changed = await run_in_threadpool(state.current, store, accounts, types)
            else:
                seq, changed = bus.seq, {}
            sub.floor = max(sub.floor, seq)
            if accounts_now is not None:
                changed = await still_allowed(changed, accounts[0], accounts_now)
            changed = unsent(changed, sent)
            if changed or (last_event_id is None and not close_after_state):
                yield state_event(seq, changed)
                if close_after_state:
                    return
            deadline = loop.time() + interval
            while True:
                try:
                    changed = await sub.next(max(0.0, deadline - loop.time()) if interval else None)
                except BusClosed:
                    return
                if changed is None:  # the interval passed without an event
                    yield ping_event(interval)
                    deadline = loop.time() + interval
                    continue
                if changed is RESYNC:
                    seq, changed = await run_in_threadpool(state.current, store, accounts, types)
                if alive is not None and not await run_in_threadpool(alive):
                    return  # the token was revoked or expired, the password changed: the stream ends
                if accounts_now is not None:
                    changed = await still_allowed(changed, accounts[0], accounts_now)
                changed = unsent(changed, sent)
                if not changed:
                    continue
                seq = max(seq, bus.seq)
                yield state_event(seq, changed)
                if close_after_state:
                    return
                deadline = loop.time() + interval
        finally:
            sub.close()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
