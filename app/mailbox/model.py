"""The Mailbox type (RFC 8621 §2): its properties, and how it is stored (the mail store keeps a
mailbox's counts in the same transaction as its emails, so it is not a generic collection)."""

from __future__ import annotations

import unicodedata

from app.protocol.registry import MAIL
from app.protocol.types import DataType, Property

COUNT_PROPERTIES = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]
# RFC 8621 §2 / IANA "JMAP Mailbox Roles" registry
ROLES = {"all", "archive", "drafts", "flagged", "important", "inbox", "junk", "sent", "subscribed",
         "trash", "snoozed", "scheduled", "memos"}

# The owner of an account has every right on its mailboxes.
OWNER_RIGHTS = {"mayReadItems": True, "mayAddItems": True, "mayRemoveItems": True, "maySetSeen": True,
                "maySetKeywords": True, "mayCreateChild": True, "mayRename": True, "mayDelete": True,
                "maySubmit": True}


def to_jmap(record: dict) -> dict:
    out = dict(record)
    out["myRights"] = dict(OWNER_RIGHTS)
    return out


def normalize_name(name: str) -> str:
    """A Mailbox name as stored: NFC (RFC 8621 §2: Net-Unicode, RFC 5198)."""
    return name if name.isascii() else unicodedata.normalize("NFC", name)


def name_key(name: str) -> str:
    """What makes two sibling names the same: equal after NFC and case folding."""
    return unicodedata.normalize("NFC", normalize_name(name).casefold())


class MailboxBase(DataType):
    name = "Mailbox"
    capability = MAIL
    methods = ("get", "changes", "set", "query", "queryChanges")
    properties = {
        "id": Property("Id", server_set=True),
        "name": Property("String"),
        "parentId": Property("Id", nullable=True, default=None),
        "role": Property("String", nullable=True, default=None),
        "sortOrder": Property("UnsignedInt", default=0),
        "totalEmails": Property("UnsignedInt", server_set=True),
        "unreadEmails": Property("UnsignedInt", server_set=True),
        "totalThreads": Property("UnsignedInt", server_set=True),
        "unreadThreads": Property("UnsignedInt", server_set=True),
        "myRights": Property("Object", server_set=True),
        "isSubscribed": Property("Boolean", default=True),
    }
    set_args = ("onDestroyRemoveEmails",)

    def fetch(self, ctx, reader, mailbox_id: str) -> dict | None:
        record = reader.mailbox(mailbox_id)
        return to_jmap(record) if record else None

    def all_ids(self, ctx, reader):
        return [m["id"] for m in reader.mailboxes()]

    def create(self, ctx, writer, fields: dict) -> dict:
        return to_jmap(writer.create_mailbox(fields))

    def update(self, ctx, writer, mailbox_id: str, current: dict, changes: dict) -> None:
        changed = {k: v for k, v in changes.items() if current.get(k) != v}
        if changed:
            writer.update_mailbox(mailbox_id, changed)

    def changes_extra(self, resp: dict, changes) -> None:
        # §2.2: when only counts changed, say which properties to fetch again
        resp["updatedProperties"] = list(COUNT_PROPERTIES) if changes.counts_only and changes.updated else None
