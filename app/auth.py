"""Passwords and HTTP Basic authentication; bearer tokens (RFC 6750).

Passwords are stored only as argon2id hashes. Verifying one costs ~140 ms here, so a verified
credential is remembered for a short time under an HMAC of the credential (keyed by a per-process
secret, so the cache never holds a password). A cache hit still re-reads the user record and checks
that its hash is the one that was verified: a changed password or a deleted user takes effect at once.

Bearer tokens (`tidings token create`) are ``tdg_<token id>_<secret>`` (`store.ids`); the store keeps
the SHA-256 of the secret, never the secret.  A fast hash is right here, and argon2 would be wrong:
a slow, salted hash protects *low-entropy* secrets (passwords) against guessing from a stolen
database, but the secret is 256 random bits, which no amount of SHA-256 guessing can find, and a
per-request argon2 would cost ~140 ms of CPU for nothing.  Every request reads the token record
(one LMDB get, microseconds) instead of caching it, so a revocation or an expiry takes effect on the
next request in every server process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from store import ids

_hasher = PasswordHasher()  # argon2id with the library's current defaults
# Each argon2 hash or verification holds its memory cost (64 MiB by default) while it runs: a burst
# of logins on every thread of the pool would take a gigabyte, and on these few cores more at once
# are not faster.  The others wait their turn.
_HASHING = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
TOKEN_PREFIX = "token:"  # a token's credential (a user name has no ':', so the two never meet)
LAST_USED_EVERY = 300  # seconds: how stale a token's lastUsed may get before a request rewrites it


def hash_password(password: str) -> str:
    with _HASHING:
        return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        with _HASHING:
            return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def secret_hash(secret: str) -> str:
    """The stored form of a token secret: SHA-256, hex (see the module docstring for why)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(store, user: str, name: str | None = None, expires: int | None = None) -> tuple[dict, str]:
    """A new token of `user` (expires: Unix seconds, None: never): (its record, the token string).
    The string exists only here: show it once.  NotFound for no such user."""
    secret = secrets.token_urlsafe(32)  # 256 bits
    record = store.create_token(user, secret_hash(secret), name, expires)
    return record, ids.token_string(record["id"], secret)


def scheme(authorization: str | None) -> str | None:
    """The scheme of an Authorization header, lower-cased: "basic" or "bearer"; else None."""
    if authorization:
        word = authorization.split(" ", 1)[0].lower()
        if word in ("basic", "bearer"):
            return word
    return None


class Authenticator:
    def __init__(self, store, ttl: float = 300.0, max_entries: int = 10_000):
        self.store = store
        self.ttl = ttl
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[str, str, float]] = {}  # mac -> (user, hash, expiry)
        self._lock = threading.Lock()
        # a dummy hash so that an unknown user costs as much as a wrong password
        self._dummy = hash_password(secrets.token_hex(8))

    def _credentials(self, authorization: str | None) -> tuple[str, str, bytes] | None:
        if not authorization or not authorization[:6].lower() == "basic ":
            return None
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        if not sep or not name:
            return None
        return name, password, hmac.digest(self._key, decoded.encode(), "sha256")

    def basic_name(self, authorization: str | None) -> str | None:
        """The user name of a well-formed Basic header (for rate limits and logs), else None."""
        creds = self._credentials(authorization)
        return creds[0] if creds else None

    def authenticate_bearer(self, authorization: str | None) -> tuple[dict | None, dict | None, str]:
        """(user, token record, "") for a valid `Authorization: Bearer` token, the user record
        with "credential": "token:<id>" and "credentialExpires" (Unix seconds or None); else
        (None, None, why it failed), `why` naming the token id at most, never the secret.  Cheap
        (one SHA-256, two LMDB gets): fine on the event loop."""
        value = (authorization or "")[7:].strip()
        parts = ids.split_token(value)
        if parts is None:
            return None, None, "malformed bearer token"
        token_id, secret = parts
        record = self.store.token(token_id)
        if record is None or not hmac.compare_digest(record["secretHash"], secret_hash(secret)):
            return None, None, f"unknown or revoked token {token_id}"
        if record["expires"] is not None and record["expires"] <= time.time():
            return None, None, f"expired token {token_id} of {record['user']!r}"
        user = self.store.user(record["user"])
        if user is None or user["accountId"] != record["accountId"]:
            return None, None, f"token {token_id} of deleted user {record['user']!r}"
        user["credential"] = TOKEN_PREFIX + token_id
        user["credentialExpires"] = record["expires"]  # a PushSubscription ends with it (RFC 8620 §7.2)
        return user, record, ""

    def still_valid(self, user: dict) -> bool:
        """Whether the credential `user` was authenticated with still holds (a WebSocket checks
        before each request): the token is not revoked or expired; for Basic, the user exists and
        the password is unchanged."""
        current = self.store.user(user["name"])
        if current is None or current["accountId"] != user["accountId"]:
            return False
        credential = user.get("credential")
        if credential and credential.startswith(TOKEN_PREFIX):  # a token outlives password changes
            record = self.store.token(credential[len(TOKEN_PREFIX):])
            return record is not None and (record["expires"] is None or record["expires"] > time.time())
        return hmac.compare_digest(current["passwordHash"], user["passwordHash"])

    def authenticate_cached(self, authorization: str | None) -> dict | None:
        """The user for a credential verified recently (no password hashing: cheap enough to run
        on the event loop), else None: then call authenticate()."""
        creds = self._credentials(authorization)
        if creds is None:
            return None
        name, _, mac = creds
        cached = self._cache.get(mac)
        if not cached or cached[2] <= time.monotonic() or cached[0] != name:
            return None
        user = self.store.user(name)
        if user is not None and hmac.compare_digest(user["passwordHash"], cached[1]):
            return user
        return None

    def authenticate(self, authorization: str | None) -> dict | None:
        """The user record for a valid `Authorization: Basic` header, else None."""
        creds = self._credentials(authorization)
        if creds is None:
            return None
        name, password, mac = creds
        now = time.monotonic()
        user = self.store.user(name)
        cached = self._cache.get(mac)
        if cached and cached[2] > now and cached[0] == name:
            if user is not None and hmac.compare_digest(user["passwordHash"], cached[1]):
                return user
            self._cache.pop(mac, None)
        if user is None:
            verify_password(self._dummy, password)
            return None
        if not verify_password(user["passwordHash"], password):
            return None
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache = {k: v for k, v in self._cache.items() if v[2] > now}
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
            self._cache[mac] = (name, user["passwordHash"], now + self.ttl)
        return user
