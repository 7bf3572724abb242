"""PushSubscription (RFC 8620 §7.2): /get and /set, declared entirely on the type registry and kept in
generic storage.  Delivery (the PushVerification, then StateChange pushes) is the push service's
(`ctx.push`); this module is only the object and its rules.

Decisions (RFC 8620 §7.2 leaves them to the server):
* The url must be an absolute ``https://`` URL (``tidings serve --push-allow-http`` also accepts
  ``http://``, for tests with a loopback receiver): printable ASCII (RFC 3986 §2), a host, at most
  `MAX_URL` characters; else invalidProperties at create, not a failure at the first POST.
* ``deviceClientId`` is at most `MAX_DEVICE_CLIENT_ID` characters (§7.2 suggests a hash).
* At most `MAX_PER_USER` subscriptions per user, counted on the state a /set leaves (§5.3): the
  creates of one call beyond the limit are refused (invalidProperties on deviceClientId).
* ``expires`` is at most `MAX_DAYS` days ahead: a later or missing value is set to that (Basic
  credentials do not expire, so the server bounds the subscription, as §7.2 asks).  Created with a
  bearer token that expires, it is bounded by the token's expiry instead, and only by that.
* A subscription belongs to the credentials that created it (the user for Basic, the token for a
  bearer token: ``token:<id>``) and is invisible to any other; `tidings token revoke` destroys
  the subscriptions of the token (§7.2: "MUST be destroyed").
* The verification code is 128 random bits; an update with any other code is invalidProperties.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from app.protocol.errors import invalid_properties
from app.protocol.registry import CORE
from app.protocol.types import TYPES, DataType, Property, data_type
from store import Collection

MAX_DAYS = 7
MAX_PER_USER = 50
MAX_URL = 2048  # push service endpoints are a few hundred characters
MAX_HOST = 253  # RFC 1035 §2.3.4: the longest domain name
MAX_DEVICE_CLIENT_ID = 255
_URL_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII: no space, CR, LF, NUL or other control
_INTERNAL = ("credential", "expectedCode")  # stored with the record, never shown


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _utc(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def clamp_expires(value: str | None, credential_expires: int | None = None) -> str:
    """The expiry the server keeps: the client's, but no later than MAX_DAYS from now, or than
    `credential_expires` (Unix seconds) for credentials that expire."""
    limit = _now() + timedelta(days=MAX_DAYS)
    if credential_expires is not None:
        limit = datetime.fromtimestamp(credential_expires, UTC)
    if value is None:
        return _utc(limit)
    wanted = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return _utc(min(wanted, limit))


def is_expired(record: dict) -> bool:
    expires = record.get("expires")
    return expires is not None and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= _now()


def url_problem(url: str, allow_http: bool) -> str | None:
    """Why a PushSubscription url is not one this server will POST to, or None."""
    schemes = ("https", "http") if allow_http else ("https",)
    wanted = "an absolute https:// URL" + (" (or http://)" if allow_http else "") + " (RFC 8620 §7.2)"
    if len(url) > MAX_URL:
        return f"must be {wanted} of at most {MAX_URL} characters"
    if not _URL_CHARS.fullmatch(url):
        return f"must be {wanted}: printable ASCII, no spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # a port that is no number raises here
    except ValueError as exc:  # "http://[::1": an unclosed IPv6 literal
        return f"must be {wanted}: {exc}"
    if parts.scheme.lower() not in schemes or not parts.hostname or len(parts.hostname) > MAX_HOST:
        return f"must be {wanted} with a host"
    if port == 0:
        return f"must be {wanted}: port 0 is no port"
    return None


def _b64url_bytes(value: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


class PushSubscription(DataType):
    name = "PushSubscription"
    capability = CORE
    methods = ("get", "set")
    account_scoped = False  # §7.2: no accountId, not tied to an account
    has_state = False  # §7.2: /get returns no state, /set takes no ifInState
    collection = Collection("PushSubscription", "S", log=None, indexes=("credential",))
    properties = {
        "id": Property("Id", server_set=True),
        "deviceClientId": Property("String", immutable=True),
        "url": Property("String", immutable=True, hidden=True),
        "keys": Property("Object", nullable=True, default=None, immutable=True, hidden=True),
        "verificationCode": Property("String", nullable=True, default=None),
        "expires": Property("UTCDate", nullable=True, default=None),
        "types": Property("String[]", nullable=True, default=None),
    }

    # -- reading: only the caller's own subscriptions (§7.2 "same authentication credentials")
    def fetch(self, ctx, reader, obj_id: str) -> dict | None:
        record = reader.record(self.collection, obj_id)
        if record is None or record.get("credential") != credential(ctx):
            return None
        return self.to_jmap(ctx, record)

    def all_ids(self, ctx, reader):
        return reader.record_ids(self.collection, "credential", equals=credential(ctx))

    def to_jmap(self, ctx, record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in _INTERNAL}

    # -- writing
    def validate(self, ctx, reader, fields: dict, current: dict | None, problems: dict[str, str]) -> dict:
        if current is None:
            url = fields.get("url")
            why = url_problem(url, getattr(ctx, "push_allow_http", False)) if isinstance(url, str) else None
            if why:
                problems["url"] = why
            device = fields.get("deviceClientId")
            if isinstance(device, str) and len(device) > MAX_DEVICE_CLIENT_ID:
                problems["deviceClientId"] = f"at most {MAX_DEVICE_CLIENT_ID} characters"
            if fields.get("verificationCode") is not None:
                problems["verificationCode"] = "must be null when the subscription is created"
        keys = fields.get("keys")
        if keys is not None:
            p256dh, auth = keys.get("p256dh"), keys.get("auth")
            public = _b64url_bytes(p256dh) if isinstance(p256dh, str) else None
            secret = _b64url_bytes(auth) if isinstance(auth, str) else None
            if set(keys) != {"p256dh", "auth"} or public is None or len(public) != 65 or public[0] != 4 \
                    or secret is None or len(secret) != 16:
                problems["keys"] = ("must be {p256dh, auth}: an uncompressed P-256 public key and a 16-octet "
                                    "secret, URL-safe base64 (RFC 8291)")
        if fields.get("types") is not None:
            unknown = [t for t in fields["types"] if t not in TYPES or not TYPES[t].has_state]
            if unknown:
                problems["types"] = f"unknown type(s): {', '.join(unknown[:5])}"
        if current is not None and "verificationCode" in fields:
            stored = reader.record(self.collection, current["id"]) or {}
            if fields["verificationCode"] != stored.get("expectedCode"):
                problems["verificationCode"] = "does not match the code sent in the PushVerification"
        if "expires" in fields or current is None:
            fields["expires"] = clamp_expires(fields.get("expires"), ctx.user.get("credentialExpires"))
        return fields

    def judge(self, ctx, reader, plan) -> None:
        """The limit on the state the call leaves (RFC 8620 §5.3): the subscriptions there are, less
        the ones this call destroys, plus its creates; the creates beyond the limit are refused."""
        destroyed = {op.obj_id for op in plan.accepted("destroy")}
        room = MAX_PER_USER - len(set(self.all_ids(ctx, reader)) - destroyed)
        for op in plan.accepted("create"):
            if room > 0:
                room -= 1
            else:
                plan.refuse(op, invalid_properties(
                    {"deviceClientId": f"at most {MAX_PER_USER} push subscriptions per user"}))

    def create(self, ctx, writer, fields: dict) -> dict:
        record = writer.create_record(self.collection, {**fields, "credential": credential(ctx),
                                                        "expectedCode": secrets.token_hex(16)})
        return self.to_jmap(ctx, record)

    def update(self, ctx, writer, obj_id: str, current: dict, changes: dict) -> dict | None:
        record = writer.record(self.collection, obj_id)
        writer.update_record(self.collection, obj_id, {**record, **changes})
        # §7.2: an expiry the server changed is returned
        return {"expires": changes["expires"]} if "expires" in changes else None

    def after_commit(self, ctx, created: dict[str, dict], updated: list[str], destroyed: list[str]) -> None:
        push = getattr(ctx, "push", None)
        if push is not None:
            for obj in created.values():  # §7.2: "MUST immediately push a PushVerification"
                push.verify(ctx.user["accountId"], obj["id"])
            if created or updated or destroyed:
                push.subscriptions_changed(ctx.user["accountId"])


def credential(ctx) -> str:
    """What a subscription is tied to: the credentials of the request (the user, for Basic)."""
    return getattr(ctx, "credential", None) or ctx.user["name"]


PUSH_SUBSCRIPTION = data_type(PushSubscription())
