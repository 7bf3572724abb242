"""Failed-login rate limits (HTTP Basic): per client address and per user name.

Why two limits, and why the per-user one is soft:

* **Per address** (`PER_ADDRESS` failures in `ADDRESS_WINDOW` s): one client guessing passwords is
  stopped after a few guesses, and every further attempt from that address is answered 429 without
  hashing anything (a wrong password costs ~140 ms of argon2 CPU; a 429 costs nothing), so a flood
  no longer slows other users down.  It never affects other addresses.
* **Per user** (`PER_USER` failures in `USER_WINDOW` s, from any addresses): this bounds a guessing
  attack spread over many addresses.  A hard per-user lock would let anyone lock a user out by
  guessing wrong on purpose, so it is soft: it spares every address the user logged in from
  successfully (in this process, within `KNOWN_TTL`), and it is set well above the per-address
  limit, so that a single attacking address never triggers it.
* A credential verified recently (`app.auth` cache) and bearer tokens are not limited: they prove
  knowledge without hashing, so a user already logged in keeps working during an attack. A failed
  token is logged but not counted: it costs one SHA-256, a 256-bit secret cannot be guessed, and
  counting would let one client with a revoked token lock its whole NAT out of password logins.

Counters live in the memory of each server process: with ``--workers N`` an address gets up to N
times the limit before all workers refuse it (documented in README "Authentication").  429s are not
failures (nothing was verified) and do not extend a block.  Memory is bounded: each table keeps at
most `MAX_KEYS` keys, the oldest dropped first.

Both limits can be set with the environment, as "FAILURES/SECONDS":
``TIDINGS_LOGIN_LIMIT_ADDRESS`` (default 50/300) and ``TIDINGS_LOGIN_LIMIT_USER`` (default 200/900).

The client address is the connection's peer, or X-Forwarded-For when the peer is a trusted proxy
(`tidings serve --forwarded-allow-ips`, default 127.0.0.1; app.proxy).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict, deque

PER_ADDRESS = 50  # a wrong password costs ~140 ms: 50 in 5 minutes is ~2% of a core per address
ADDRESS_WINDOW = 300.0
PER_USER = 200
USER_WINDOW = 900.0
KNOWN_TTL = 30 * 86400.0
MAX_KEYS = 100_000


def _limit(name: str, default: tuple[int, float]) -> tuple[int, float]:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        failures, _, seconds = value.partition("/")
        limit = int(failures), float(seconds)
    except ValueError:
        raise ValueError(f"{name} must be FAILURES/SECONDS, e.g. 50/300, not {value!r}") from None
    if limit[0] < 1 or not limit[1] > 0:
        raise ValueError(f"{name}: FAILURES and SECONDS must be positive, not {value!r}")
    return limit


class LoginLimiter:
    """check() before verifying a password; failed() or succeeded() after. Thread-safe."""

    def __init__(self, per_address: int = PER_ADDRESS, address_window: float = ADDRESS_WINDOW,
                 per_user: int = PER_USER, user_window: float = USER_WINDOW, max_keys: int = MAX_KEYS):
        self.per_address, self.address_window = per_address, address_window
        self.per_user, self.user_window = per_user, user_window
        self.max_keys = max_keys
        # key -> the times of its last `limit` failures (a full deque whose oldest is in the window
        # means `limit` failures in the window)
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()
        self._users: OrderedDict[str, deque[float]] = OrderedDict()
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()  # (user, address) -> last success
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> LoginLimiter:
        """With the limits of $TIDINGS_LOGIN_LIMIT_ADDRESS and $TIDINGS_LOGIN_LIMIT_USER (ValueError
        for a malformed value)."""
        per_address, address_window = _limit("TIDINGS_LOGIN_LIMIT_ADDRESS", (PER_ADDRESS, ADDRESS_WINDOW))
        per_user, user_window = _limit("TIDINGS_LOGIN_LIMIT_USER", (PER_USER, USER_WINDOW))
        return cls(per_address, address_window, per_user, user_window)

    @staticmethod
    def _wait(times: deque[float] | None, limit: int, window: float, now: float) -> float:
        if times is None or len(times) < limit or times[0] <= now - window:
            return 0.0
        return times[0] + window - now

    def check(self, user: str, address: str, now: float | None = None) -> tuple[int, str] | None:
        """None if a password for `user` from `address` may be verified now; else (seconds to wait,
        which limit: "address" or "user")."""
        now = time.monotonic() if now is None else now
        with self._lock:
            wait = self._wait(self._addresses.get(address), self.per_address, self.address_window, now)
            if wait:
                return max(1, math.ceil(wait)), "address"
            known = self._known.get((user, address))
            if known is not None and known > now - KNOWN_TTL:
                return None
            wait = self._wait(self._users.get(user), self.per_user, self.user_window, now)
            if wait:
                return max(1, math.ceil(wait)), "user"
        return None

    def failed(self, user: str, address: str, now: float | None = None) -> tuple[bool, bool]:
        """Counts a failed login; returns whether this failure blocked (address, user) just now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return (self._count(self._addresses, address, self.per_address, self.address_window, now),
                    self._count(self._users, user, self.per_user, self.user_window, now))

    def _count(self, table: OrderedDict, key: str, limit: int, window: float, now: float) -> bool:
        times = table.get(key)
        if times is None:
            times = table[key] = deque(maxlen=limit)
            if len(table) > self.max_keys:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        before = self._wait(times, limit, window, now)
        times.append(now)
        return not before and bool(self._wait(times, limit, window, now))

    def succeeded(self, user: str, address: str, now: float | None = None) -> None:
        """A verified login: the address is known for the user (spared by the per-user limit)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._known[(user, address)] = now
            self._known.move_to_end((user, address))
            if len(self._known) > self.max_keys:
                self._known.popitem(last=False)
