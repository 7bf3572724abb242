"""PushSubscription delivery (RFC 8620 §7.2): the PushVerification, then StateChange pushes by HTTP
POST to each subscription's url, encrypted (RFC 8291) when it has ``keys``, signed with VAPID
(RFC 8292, RFC 9749) always.  The object and its rules are `app.pushsubscription`; this is the
service behind ``ctx.push``.

Who sends what
--------------
* **The PushVerification** is sent by the process that handled the PushSubscription/set, at once
  (``verify``, called by the type's ``after_commit``), whichever worker that is: only it knows of the
  new subscription at that instant, and it needs nothing from the deliverer.
* **StateChanges** are sent by exactly one process per data directory, *the deliverer*: the one
  holding an flock on ``<data>/push/deliverer.lock`` (every worker's change bus sees every change,
  so without it each push would go out once per worker).  Every serving process tries to take the
  lock at start and again every `LOCK_RETRY_SECONDS`, so when the deliverer exits another worker
  takes over.  The deliverer writes the bus seq it has dispatched up to into the lock file; a new
  deliverer (a takeover, or the server started again) first pushes what the journal holds after
  that seq, merged, so a restart loses no change (not even one made by `tidings import` while the
  server was down).

How the deliverer works
-----------------------
The store is the truth: on each change of account X, the deliverer reads the subscriptions of the
users who can see X (`Deliverer.watchers`, kept from `accounts_of`, the one function that says
which accounts, and which types of each, a user sees) and pushes to each one that is verified (its
verificationCode equals the code sent), unexpired and interested in a changed type (``types`` null: all).  It keeps on
the bus only the accounts seen by users who have subscriptions: ``subscriptions_changed(account)``
(after every PushSubscription/set) tells it at once, directly in its own process and by a
datagram to ``<data>/push/deliverer.sock`` from the others; a full reload every `SWEEP_SECONDS`
backs that up and destroys expired subscriptions.

Each subscription has at most one POST in flight.  Changes that arrive meanwhile, or while a POST is
being retried, are merged into the next one (the latest state of each account and type), so a
burst of commits costs a few POSTs, not one each.

Retries: network errors, timeouts (`POST_TIMEOUT` s), 408, 429 and 5xx are retried with
exponential backoff and full jitter: `RETRY_BASE` x 2^n seconds (n = 0, 1, ...), at most
`RETRY_CAP`, times a random factor in [0.5, 1]; a ``Retry-After`` (seconds or a date, at most
`RETRY_AFTER_MAX`) is a floor.  After `MAX_ATTEMPTS` attempts (about 14 minutes with the default
base) the StateChange is dropped and logged; the next change starts afresh.  404 and 410 mean the
subscription is gone at the push service (RFC 8030 §7.3): it is destroyed.  Other 4xx are logged
and the message dropped.  ``TIDINGS_PUSH_RETRY_BASE`` (seconds, default 1) shortens the backoff
for tests.

Expiry: an expired subscription is never pushed to; the deliverer destroys it when a change
finds it, and the sweep destroys the others.

Headers: ``Content-Type: application/json`` (of the JSON before any content coding),
``TTL: 86400`` (RFC 8030 §5.2: a push service may keep the message a day for a device that is
offline; an older StateChange is worthless, a client syncs when it starts), ``Urgency: normal``,
``Authorization: vapid t=<JWT>,k=<key>`` (RFC 8292 §3), and with keys
``Content-Encoding: aes128gcm`` (RFC 8291, one record).

VAPID: one P-256 key pair per data directory, made at the first start, ``<data>/vapid.pem``
(mode 0600); its public key is the session's ``urn:ietf:params:jmap:webpush-vapid``
``applicationServerKey`` (RFC 9749).  The JWT's ``sub`` is ``TIDINGS_PUSH_CONTACT`` (a mailto: or
https: URI; default ``mailto:postmaster@localhost``).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import os
import random
import re
import socket
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime

import http_ece
import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import jwt as vapid_jwt

from .. import ipc
from ..protocol.types import TYPES
from ..pushsubscription import PUSH_SUBSCRIPTION, is_expired
from .bus import RESYNC, BusClosed, Subscription

log = logging.getLogger("tidings.push")

PUSH_DIR = "push"
VAPID_FILE = "vapid.pem"
TTL = 86400  # RFC 8030 §5.2, for PushVerification and StateChange alike (see the module docstring)
POST_TIMEOUT = 10.0
MAX_ATTEMPTS = 10
RETRY_BASE = float(os.environ.get("TIDINGS_PUSH_RETRY_BASE") or 1.0)
RETRY_CAP = 300.0 * RETRY_BASE
RETRY_AFTER_MAX = 3600.0
LOCK_RETRY_SECONDS = 1.0
SWEEP_SECONDS = 300.0
JWT_SECONDS = 12 * 3600  # RFC 8292 §2: exp no more than 24 hours ahead
CONTACT = os.environ.get("TIDINGS_PUSH_CONTACT") or "mailto:postmaster@localhost"
_SUN_PATH_MAX = 107

COLLECTION = PUSH_SUBSCRIPTION.collection
StateMap = dict[str, dict[str, str]]  # {account id: {type name: state}}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def is_verified(record: dict) -> bool:
    return record.get("verificationCode") is not None and record.get("verificationCode") == record.get(
        "expectedCode")


def _merge(into: StateMap, changed: StateMap) -> None:
    for account_id, states in changed.items():
        into.setdefault(account_id, {}).update(states)


# ------------------------------------------------------------------------------------------ VAPID
class Vapid:
    """The server's VAPID key pair (RFC 8292), kept in ``<data>/vapid.pem``."""

    def __init__(self, path: str):
        self.key = _load_or_create_key(path)
        raw = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
        self.public_key = b64url(raw)  # RFC 9749 applicationServerKey
        self._tokens: dict[str, tuple[str, float]] = {}  # audience -> (header, time to renew)

    def authorization(self, url: str) -> str:
        """The Authorization header for a push to `url` (RFC 8292 §3), signed for its origin."""
        parts = urllib.parse.urlsplit(url)
        audience = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        now = time.time()
        cached = self._tokens.get(audience)
        if cached is not None and cached[1] > now:
            return cached[0]
        claims = {"aud": audience, "exp": int(now) + JWT_SECONDS, "sub": CONTACT}
        header = f"vapid t={vapid_jwt.sign(claims, self.key)},k={self.public_key}"
        if len(self._tokens) > 1000:
            self._tokens.clear()
        self._tokens[audience] = (header, now + JWT_SECONDS / 2)
        return header


def _load_or_create_key(path: str) -> ec.EllipticCurvePrivateKey:
    """The key in `path`; made (mode 0600) if there is none. Two processes starting together make
    one: the file appears whole (a hard link of a finished temporary file) or not at all."""
    try:
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError:
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    except OSError:  # a full disk: no part of a key file stays behind
        os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        log.info("push: made the VAPID key pair %s", path)
    except FileExistsError:  # another worker was first: use its key
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    finally:
        os.unlink(tmp)
    return key


# ---------------------------------------------------------------------------------------- sending
class Outcome:
    OK, RETRY, GONE, FAILED = "ok", "retry", "gone", "failed"

    def __init__(self, kind: str, detail: str = "", retry_after: float | None = None):
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after


# RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds, delay-seconds = 1*DIGIT (ASCII: "²" or
# "٣" are no number of seconds, though Python's isdigit() and float() may take them)
_DELAY_SECONDS = re.compile(r"[0-9]+")


def _retry_after(value: str | None) -> float | None:
    """The seconds a Retry-After asks to wait (at most RETRY_AFTER_MAX), or None: a value that is
    neither delay-seconds nor an HTTP-date is ignored with one warning, and the usual backoff
    applies."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return RETRY_AFTER_MAX if len(value) > 9 else min(float(value), RETRY_AFTER_MAX)
    when = None
    if value.isascii():
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
    if when is None:
        log.warning("push: ignoring a Retry-After that is neither seconds nor an HTTP date: %r", value[:100])
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), RETRY_AFTER_MAX))


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt `attempt` + 1 (attempt counts from 1)."""
    delay = min(RETRY_CAP, RETRY_BASE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


def encrypt(body: bytes, keys: dict) -> bytes:
    """RFC 8291 aes128gcm with the subscription's keys, a fresh sender key pair and salt, in one
    record (RFC 8291 §4)."""
    sender = ec.generate_private_key(ec.SECP256R1())
    return http_ece.encrypt(body, salt=os.urandom(16), private_key=sender, dh=_b64url_decode(keys["p256dh"]),
                            auth_secret=_b64url_decode(keys["auth"]), version="aes128gcm",
                            rs=max(4096, len(body) + 17))


class PushService:
    """``ctx.push``: one per serving process (see the module docstring)."""

    def __init__(self, store, data_dir: str, bus,
                 accounts_of: Callable[[dict], dict[str, set[str] | None]] | None = None):
        self.store = store
        self.bus = bus
        # user -> {account id: the type names they see of it, None: all} (Tidings.push_scopes)
        self.accounts_of = accounts_of or (lambda user: {user["accountId"]: None})
        self.directory = os.path.join(os.path.abspath(data_dir), PUSH_DIR)
        os.makedirs(self.directory, exist_ok=True)
        self.vapid = Vapid(os.path.join(os.path.abspath(data_dir), VAPID_FILE))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: httpx.AsyncClient | None = None
        self.deliverer: Deliverer | None = None
        self.closing = False
        self._tasks: set[asyncio.Task] = set()
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.sent = 0  # successful POSTs (for tests and measurements)

    @property
    def application_server_key(self) -> str:
        return self.vapid.public_key

    # -- life
    def start(self) -> None:
        """On the event loop: the HTTP client, and the attempt to become the deliverer."""
        self.loop = asyncio.get_running_loop()
        self.client = httpx.AsyncClient(timeout=POST_TIMEOUT, follow_redirects=False,
                                        headers={"User-Agent": "tidings"})
        self.spawn(self._take_over())

    async def close(self) -> None:
        self.closing = True
        if self.deliverer is not None:
            self.deliverer.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2)
        if self.client is not None:
            await self.client.aclose()
        if self.deliverer is not None:
            self.deliverer.release()
        self._notify.close()

    def spawn(self, coro) -> asyncio.Task:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("push: a task failed", exc_info=task.exception())

    def _threadsafe(self, fn, *args) -> bool:
        loop = self.loop
        if loop is None or loop.is_closed() or self.closing:
            return False
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    async def _take_over(self) -> None:
        """Takes the deliverer's lock as soon as no other process holds it."""
        deliverer = Deliverer(self)
        while not self.closing:
            if deliverer.try_lock():
                self.deliverer = deliverer
                await deliverer.run()
                return
            await asyncio.sleep(LOCK_RETRY_SECONDS)

    # -- called by the PushSubscription type (from the request's worker thread)
    def verify(self, account_id: str, subscription_id: str) -> None:
        """Sends the PushVerification of a subscription just created (RFC 8620 §7.2.2), from this
        process, in the background."""
        with self.store.read(account_id) as reader:
            record = reader.record(COLLECTION, subscription_id)
        if record is None or is_expired(record):
            return
        message = {"@type": "PushVerification", "pushSubscriptionId": subscription_id,
                   "verificationCode": record["expectedCode"]}
        if not self._threadsafe(lambda: self.spawn(self._send_verification(account_id, subscription_id,
                                                                           message))):
            log.warning("push: not running: PushVerification of %s not sent", subscription_id)

    def subscriptions_changed(self, account_id: str) -> None:
        """The subscriptions of the user whose account is `account_id` changed: the deliverer
        reads them again (directly in its own process, by a datagram from another)."""
        if self.deliverer is not None:
            self._threadsafe(self.deliverer.reload_home, account_id)
            return
        try:
            self._notify.sendto(account_id.encode(), _socket_address(self.directory, Deliverer.SOCKET))
        except OSError:  # no deliverer bound yet: it reads every subscription when it starts
            pass

    # -- one message, with retries
    def _current(self, home: str, subscription_id: str) -> dict | None:
        with self.store.read(home) as reader:
            return reader.record(COLLECTION, subscription_id)

    async def _send_verification(self, home: str, subscription_id: str, message: dict) -> None:
        attempt = 0
        while True:
            record = self._current(home, subscription_id)
            if record is None or is_expired(record):
                return
            attempt += 1
            outcome = await self.post(record, message)
            if outcome.kind == Outcome.OK:
                return
            if outcome.kind == Outcome.GONE:
                await self.destroy(home, subscription_id, "the push service says it is gone " + outcome.detail)
                return
            if outcome.kind == Outcome.FAILED or attempt >= MAX_ATTEMPTS:
                log.warning("push: PushVerification of %s not delivered after %d attempt(s): %s",
                            subscription_id, attempt, outcome.detail)
                return
            await asyncio.sleep(backoff(attempt, outcome.retry_after))

    async def post(self, record: dict, message: dict) -> Outcome:
        """One POST of a JMAP push object to a subscription's url."""
        body = orjson.dumps(message)
        headers = {"Content-Type": "application/json", "TTL": str(TTL), "Urgency": "normal"}
        url = record["url"]
        try:
            if record.get("keys"):
                body = encrypt(body, record["keys"])
                headers["Content-Encoding"] = "aes128gcm"
            headers["Authorization"] = self.vapid.authorization(url)
            response = await self.client.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            return Outcome(Outcome.RETRY, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a url httpx refuses, keys that do not work: no retry
            return Outcome(Outcome.FAILED, f"{type(exc).__name__}: {exc}")
        status = response.status_code
        detail = f"HTTP {status}"
        if 200 <= status < 300:
            self.sent += 1
            return Outcome(Outcome.OK, detail)
        if status in (404, 410):
            return Outcome(Outcome.GONE, detail)
        if status in (408, 429) or status >= 500:
            return Outcome(Outcome.RETRY, detail, _retry_after(response.headers.get("retry-after")))
        return Outcome(Outcome.FAILED, detail)

    async def destroy(self, home: str, subscription_id: str, why: str) -> None:
        def destroy() -> bool:
            with self.store.write(home) as writer:
                if writer.record(COLLECTION, subscription_id) is None:
                    return False
                writer.destroy_record(COLLECTION, subscription_id)
                return True

        try:
            if await asyncio.to_thread(destroy):
                log.info("push: subscription %s destroyed: %s", subscription_id, why)
        except Exception:  # noqa: BLE001 - the sweep tries again
            log.exception("push: cannot destroy subscription %s", subscription_id)


def _socket_address(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    if len(path.encode()) <= _SUN_PATH_MAX:
        return path
    # a long data path: reach the socket through a directory fd (kept open for the process)
    global _DIR_FD
    if _DIR_FD is None:
        _DIR_FD = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{_DIR_FD}/{name}"


_DIR_FD: int | None = None


# -------------------------------------------------------------------------------- the deliverer
class Target:
    """One subscription the deliverer is pushing to: what is waiting to be sent, and its sender."""

    __slots__ = ("home", "id", "pending", "task")

    def __init__(self, home: str, subscription_id: str):
        self.home = home  # the account whose storage holds it (its user's)
        self.id = subscription_id
        self.pending: StateMap = {}
        self.task: asyncio.Task | None = None


class Deliverer:
    """The one process per data directory that sends StateChanges (see the module docstring)."""

    LOCK = "deliverer.lock"
    SOCKET = "deliverer.sock"

    def __init__(self, service: PushService):
        self.service = service
        self.store = service.store
        self.bus = service.bus
        self.directory = service.directory
        self.push_types = tuple(name for name, dt in TYPES.items() if dt.has_state)
        self.watchers: dict[str, set[str]] = {}  # account id -> homes of the users who see it
        self.homes: dict[str, set[str]] = {}  # home -> the accounts its user sees (if it has subscriptions)
        self.users: dict[str, dict] = {}  # home -> user
        self.scopes: dict[str, dict[str, set[str] | None]] = {}  # home -> what its user sees of each account
        self.consumers: dict[str, tuple[Subscription, asyncio.Task]] = {}  # account id -> bus consumer
        self.targets: dict[tuple[str, str], Target] = {}
        self._fd: int | None = None
        self._sock: socket.socket | None = None
        self._stopped = False

    # -- the lock
    def try_lock(self) -> bool:
        self._fd = ipc.try_lock(os.path.join(self.directory, self.LOCK))
        return self._fd is not None

    def _read_seq(self) -> int | None:
        text = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isascii() and text.isdigit() else None

    def _write_seq(self, seq: int) -> None:
        if self._fd is not None:
            os.pwrite(self._fd, f"{seq:020d}\n".encode(), 0)

    def release(self) -> None:
        if self._sock is not None:
            ipc.close_socket(self.service.loop, self._sock, os.path.join(self.directory, self.SOCKET))
            self._sock = None
        if self._fd is not None:
            ipc.unlock(self._fd)
            self._fd = None

    def stop(self) -> None:
        self._stopped = True
        for sub, task in self.consumers.values():
            task.cancel()
            sub.close()
        self.consumers.clear()
        for target in self.targets.values():
            if target.task is not None:
                target.task.cancel()

    # -- running
    async def run(self) -> None:
        log.info("push: this process (pid %d) delivers the PushSubscription pushes", os.getpid())
        self._bind()
        while True:
            try:
                users = await asyncio.to_thread(self._load_all)
                break
            except Exception:  # noqa: BLE001 - keep the lock and try again
                log.exception("push: cannot read the subscriptions; trying again")
                await asyncio.sleep(LOCK_RETRY_SECONDS)
        self._apply_load(users)
        floor = self.bus.seq
        after = self._read_seq()
        self._write_seq(floor)
        if after is not None and after < floor:
            missed = await asyncio.to_thread(self._since, after, floor, set(self.watchers))
            if missed:
                self.dispatch(missed)
        while not self._stopped:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                users = await asyncio.to_thread(self._load_all)
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("push: cannot read the subscriptions")
                continue
            self._apply_load(users)
            for home, record in users["expired"]:
                self.service.spawn(self.service.destroy(home, record["id"], "expired"))

    def _bind(self) -> None:
        path = os.path.join(self.directory, self.SOCKET)
        try:
            os.unlink(path)  # left by a deliverer that died: we hold the lock, it is ours now
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            sock.bind(_socket_address(self.directory, self.SOCKET))
        except OSError as exc:
            log.warning("push: cannot bind %s (%s): other workers' subscription changes are seen "
                        "every %.0f s", path, exc, SWEEP_SECONDS)
            sock.close()
            return
        self._sock = sock
        self.service.loop.add_reader(sock.fileno(), self._on_datagram)

    def _on_datagram(self) -> None:
        homes = set()
        while True:
            try:
                homes.add(self._sock.recv(256).decode(errors="replace"))
            except (BlockingIOError, OSError):
                break
        for home in homes:
            self.reload_home(home)

    # -- which accounts are watched, by whom
    def _load_all(self) -> dict:
        """(in a thread) Every user with subscriptions, and the expired subscriptions."""
        out: dict = {"users": {}, "expired": []}
        for user in self.store.users():
            home = user["accountId"]
            with self.store.read(home) as reader:
                records = [reader.record(COLLECTION, i) for i in list(reader.record_ids(COLLECTION))]
            records = [r for r in records if r is not None]
            if records:
                out["users"][home] = user
            out["expired"].extend((home, r) for r in records if is_expired(r))
        return out

    def _apply_load(self, loaded: dict) -> None:
        users = loaded["users"]
        for home in list(self.homes):
            if home not in users:
                self._set_home(home, None)
        for home, user in users.items():
            self._set_home(home, user)
        self._sync_bus()

    def _set_home(self, home: str, user: dict | None) -> None:
        """Records that the user of `home` has subscriptions (user) or none (None)."""
        for account_id in self.homes.pop(home, ()):
            homes = self.watchers.get(account_id)
            if homes is not None:
                homes.discard(home)
                if not homes:
                    del self.watchers[account_id]
        self.users.pop(home, None)
        self.scopes.pop(home, None)
        if user is not None:
            scopes = self.service.accounts_of(user)
            accounts = set(scopes)
            self.scopes[home] = scopes
            self.homes[home] = accounts
            self.users[home] = user
            for account_id in accounts:
                self.watchers.setdefault(account_id, set()).add(home)

    def reload_home(self, home: str) -> None:
        """(on the loop) The subscriptions of one user changed."""
        if self._stopped:
            return
        with self.store.read(home) as reader:
            has_any = next(iter(reader.record_ids(COLLECTION)), None) is not None
        if not has_any:
            self._set_home(home, None)
            self._sync_bus()
            return
        user = self.users.get(home)
        if user is not None:
            self._set_home(home, user)
            self._sync_bus()
            return
        self.service.spawn(self._reload_new_home(home))

    async def _reload_new_home(self, home: str) -> None:
        user = await asyncio.to_thread(lambda: next((u for u in self.store.users() if u["accountId"] == home),
                                                    None))
        if user is not None and not self._stopped:
            self._set_home(home, user)
            self._sync_bus()

    def _sync_bus(self) -> None:
        """Keeps a bus subscription for exactly the watched accounts."""
        if self._stopped:
            return
        for account_id in list(self.consumers):
            if account_id not in self.watchers:
                sub, task = self.consumers.pop(account_id)
                task.cancel()
                sub.close()
        for account_id in self.watchers:
            if account_id not in self.consumers:
                sub = self.bus.subscribe([account_id], None)
                task = self.service.spawn(self._consume(account_id, sub))
                self.consumers[account_id] = (sub, task)

    async def _consume(self, account_id: str, sub: Subscription) -> None:
        try:
            while True:
                changed = await sub.next()
                if changed is RESYNC:
                    changed = {account_id: self._states(account_id)}
                if changed:
                    self.dispatch(changed)
                self._write_seq(self.bus.seq)
        except BusClosed:
            return

    def _states(self, account_id: str) -> dict[str, str]:
        with self.store.read(account_id) as reader:
            return {t: reader.state(t) for t in self.push_types}

    def _since(self, after: int, until: int, accounts: set[str]) -> StateMap:
        """(in a thread) What the journal holds for `accounts` in (after, until], merged; the
        current states if the journal no longer reaches back to `after`."""
        out: StateMap = {}
        seq = after
        while seq < until:
            entries, intact = self.store.journal(seq, 1000)
            if not intact:
                log.warning("push: the journal no longer reaches back to seq %d: pushing current states", after)
                return {a: self._states(a) for a in accounts}
            for entry_seq, account_id, changed in entries:
                if entry_seq > until:
                    return out
                if account_id in accounts:
                    out.setdefault(account_id, {}).update(changed)
                seq = entry_seq
            if len(entries) < 1000:
                break
        return out

    # -- pushing
    def dispatch(self, changed: StateMap) -> None:
        """(on the loop) Hands changes to the subscriptions that want them."""
        reread: set[str] = set()  # homes whose scopes this dispatch read again
        for account_id, all_states in changed.items():
            for home in tuple(self.watchers.get(account_id, ())):
                if account_id != home and home in self.users and home not in reread:
                    # another's account: what is shared now (a revocation or a new share counts at
                    # once; one read of the grants per dispatch, like the subscriptions' read below)
                    self.scopes[home] = self.service.accounts_of(self.users[home])
                    reread.add(home)
                scopes = self.scopes.get(home)
                if account_id != home and scopes is not None and account_id not in scopes:
                    continue  # no longer shared with them
                seen = scopes.get(account_id) if scopes else None  # a grantee: the types shared with them
                states = all_states if seen is None else {t: s for t, s in all_states.items() if t in seen}
                if not states:
                    continue
                with self.store.read(home) as reader:
                    records = [reader.record(COLLECTION, i) for i in list(reader.record_ids(COLLECTION))]
                for record in records:
                    if record is None or not is_verified(record):
                        continue
                    key = (home, record["id"])
                    if is_expired(record):
                        if key not in self.targets:  # a sender that is running finds it itself
                            self.service.spawn(self.service.destroy(home, record["id"], "expired"))
                        continue
                    types = record.get("types")
                    wanted = states if types is None else {t: s for t, s in states.items() if t in types}
                    if not wanted:
                        continue
                    target = self.targets.get(key)
                    if target is None:
                        target = self.targets[key] = Target(home, record["id"])
                    target.pending.setdefault(account_id, {}).update(wanted)
                    if target.task is None:
                        target.task = self.service.spawn(self._send(target))

    async def _send(self, target: Target) -> None:
        """The one sender of a subscription: POSTs what is pending, merged, until nothing is."""
        service = self.service
        key = (target.home, target.id)
        payload: StateMap = {}
        attempt = 0
        try:
            while True:
                _merge(payload, target.pending)
                target.pending = {}
                record = service._current(target.home, target.id)
                if record is None or not is_verified(record):
                    return
                if is_expired(record):
                    await service.destroy(target.home, target.id, "expired")
                    return
                types = record.get("types")
                if types is not None:
                    payload = {a: kept for a, s in payload.items()
                               if (kept := {t: v for t, v in s.items() if t in types})}
                if not payload:
                    return
                attempt += 1
                outcome = await service.post(record, {"@type": "StateChange", "changed": payload})
                if outcome.kind == Outcome.OK:
                    payload, attempt = {}, 0
                    if not target.pending:
                        return
                    continue
                if outcome.kind == Outcome.GONE:
                    await service.destroy(target.home, target.id, "the push service says it is gone "
                                          f"({outcome.detail})")
                    return
                if outcome.kind == Outcome.FAILED or attempt >= MAX_ATTEMPTS:
                    log.warning("push: StateChange to subscription %s dropped after %d attempt(s): %s",
                                target.id, attempt, outcome.detail)
                    payload, attempt = {}, 0
                    if not target.pending:
                        return
                    continue
                await asyncio.sleep(backoff(attempt, outcome.retry_after))
        finally:
            if self.targets.get(key) is target:
                del self.targets[key]
            if target.pending and not self._stopped and not service.closing:
                # changes arrived while this sender was ending: a new one takes them
                fresh = self.targets.setdefault(key, Target(target.home, target.id))
                _merge(fresh.pending, target.pending)
                if fresh.task is None:
                    fresh.task = service.spawn(self._send(fresh))
