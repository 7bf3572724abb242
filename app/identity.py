"""Identity (RFC 8621 §6): one identity per user, derived from the user record."""

from app.protocol.registry import SUBMISSION, method
from app.protocol.standard import standard_changes, standard_get
from store import ids

PROPERTIES = ("id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature", "mayDelete")


def identity_for(user: dict) -> dict:
    return {"id": ids.identity_id(user["accountId"]), "name": user.get("displayName") or user["name"],
            "email": user.get("email") or f"{user['name']}@localhost", "replyTo": None, "bcc": None,
            "textSignature": "", "htmlSignature": "", "mayDelete": False}


@method("Identity/get", SUBMISSION)
def identity_get(ctx, args: dict) -> dict:
    identity = identity_for(ctx.user)

    def fetch(reader, identity_id):
        return identity if identity_id == identity["id"] else None

    return standard_get(ctx, args, "Identity", PROPERTIES, list(PROPERTIES), fetch,
                        lambda reader: [identity["id"]])


@method("Identity/changes", SUBMISSION)
def identity_changes(ctx, args: dict) -> dict:
    return standard_changes(ctx, args, "Identity")[0]
