"""Mailbox/get (RFC 8621 §2.1)."""

from app.protocol.registry import MAIL, method
from app.protocol.standard import standard_get

from .model import PROPERTIES, to_jmap


@method("Mailbox/get", MAIL)
def mailbox_get(ctx, args: dict) -> dict:
    def fetch(reader, mailbox_id):
        record = reader.mailbox(mailbox_id)
        return to_jmap(record) if record else None

    return standard_get(ctx, args, "Mailbox", PROPERTIES, list(PROPERTIES), fetch,
                        lambda reader: [m["id"] for m in reader.mailboxes()])
