"""Mailbox/changes (RFC 8621 §2.2): standard /changes plus updatedProperties."""

from app.protocol.registry import MAIL, method
from app.protocol.standard import standard_changes

from .model import COUNT_PROPERTIES


@method("Mailbox/changes", MAIL)
def mailbox_changes(ctx, args: dict) -> dict:
    resp, ch = standard_changes(ctx, args, "Mailbox")
    # only counts changed -> tell the client which properties to refetch (§2.2)
    resp["updatedProperties"] = list(COUNT_PROPERTIES) if ch.counts_only and ch.updated else None
    return resp
