"""Identity (RFC 8621 §6): /get and /changes; one identity per user, derived from the user record."""

from __future__ import annotations

from app.protocol.registry import SUBMISSION
from app.protocol.types import DataType, Property, data_type
from store import ids


def identity_for(user: dict) -> dict:
    return {"id": ids.identity_id(user["accountId"]), "name": user.get("displayName") or user["name"],
            "email": user.get("email") or f"{user['name']}@localhost", "replyTo": None, "bcc": None,
            "textSignature": "", "htmlSignature": "", "mayDelete": False}


class Identity(DataType):
    name = "Identity"
    capability = SUBMISSION
    methods = ("get", "changes")
    properties = {
        "id": Property("Id", server_set=True),
        "name": Property("String", default=""),
        "email": Property("String", immutable=True),
        "replyTo": Property("EmailAddress[]", nullable=True, default=None),
        "bcc": Property("EmailAddress[]", nullable=True, default=None),
        "textSignature": Property("String", default=""),
        "htmlSignature": Property("String", default=""),
        "mayDelete": Property("Boolean", server_set=True),
    }

    def fetch(self, ctx, reader, identity_id: str) -> dict | None:
        identity = identity_for(ctx.user)
        return identity if identity_id == identity["id"] else None

    def all_ids(self, ctx, reader):
        return [identity_for(ctx.user)["id"]]


IDENTITY = data_type(Identity())
