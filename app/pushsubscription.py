"""PushSubscription (RFC 8620 §7.2): /get and /set, declared entirely on the type registry and kept in
generic storage.  Delivery (the PushVerification, then StateChange pushes) is the push service's
(`ctx.push`); this module is only the object and its rules.

Decisions (RFC 8620 §7.2 leaves them to the server):
* The url must be ``https://``; ``tidings serve --push-allow-http`` also accepts ``http://`` (tests
  with a loopback receiver).
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
import secrets
from datetime import UTC, datetime, timedelta

from app.protocol.registry import CORE
from app.protocol.types import TYPES, DataType, Property, data_type
from store import Collection

MAX_DAYS = 7
MAX_PER_USER = 50
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
            allowed = ("https://", "http://") if getattr(ctx, "push_allow_http", False) else ("https://",)
            if isinstance(url, str) and not url.startswith(allowed):
                problems["url"] = "must be an https:// URL (RFC 8620 §7.2)"
            if fields.get("verificationCode") is not None:
                problems["verificationCode"] = "must be null when the subscription is created"
            if len(list(self.all_ids(ctx, reader))) >= MAX_PER_USER:
                problems["deviceClientId"] = f"at most {MAX_PER_USER} push subscriptions per user"
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
