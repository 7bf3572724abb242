"""Passwords and HTTP Basic authentication.

Passwords are stored only as argon2id hashes. Verifying one costs ~140 ms here, so a verified
credential is remembered for a short time under an HMAC of the credential (keyed by a per-process
secret, so the cache never holds a password). A cache hit still re-reads the user record and checks
that its hash is the one that was verified: a changed password or a deleted user takes effect at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with the library's current defaults


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


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
        return name, password, hmac.new(self._key, decoded.encode(), hashlib.sha256).digest()

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
