"""Email/changes (RFC 8621 §4.3)."""

from app.protocol.registry import MAIL, method
from app.protocol.standard import standard_changes


@method("Email/changes", MAIL)
def email_changes(ctx, args: dict) -> dict:
    return standard_changes(ctx, args, "Email")[0]
