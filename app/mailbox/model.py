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



def to_jmap(record: dict, access) -> dict:
    """A stored mailbox as this user sees it (app.access.Access): their rights; the owner sees whom
    it is shared with, a grantee sees their own isSubscribed, and no parent they cannot see."""
    out = dict(record)
    out["myRights"] = access.rights(record["id"])
    if access.owner:
        out["shareWith"] = record.get("shareWith") or None
    else:
        out["shareWith"] = None
        out["isSubscribed"] = access.grants[record["id"]]["subscribed"]
        if out.get("parentId") is not None and not access.sees_mailbox(out["parentId"]):
            out["parentId"] = None
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
        # RFC 9670 §4 / the mail-sharing draft: {principal id: MailboxRights}, set by the owner
        "shareWith": Property("Id[Object]", nullable=True, default=None),
    }
    set_args = ("onDestroyRemoveEmails",)

    def fetch(self, ctx, reader, mailbox_id: str) -> dict | None:
        access = ctx.access(reader.account_id)
        record = reader.mailbox(mailbox_id) if access.sees_mailbox(mailbox_id) else None
        return to_jmap(record, access) if record else None

    def all_ids(self, ctx, reader):
        access = ctx.access(reader.account_id)
        return [m["id"] for m in reader.mailboxes() if access.sees_mailbox(m["id"])]

    def seen_by(self, ctx, reader) -> list[dict]:
        """Every mailbox this user can see, as they see it."""
        access = ctx.access(reader.account_id)
        return [to_jmap(m, access) for m in reader.mailboxes() if access.sees_mailbox(m["id"])]

    def create(self, ctx, writer, fields: dict) -> dict:
        access = ctx.access(writer.account_id)
        record = writer.create_mailbox(fields)
        access.learn(record)
        return to_jmap(record, access)

    def update(self, ctx, writer, mailbox_id: str, current: dict, changes: dict) -> None:
        changed = {k: v for k, v in changes.items() if current.get(k) != v}
        access = ctx.access(writer.account_id)
        if not access.owner and "isSubscribed" in changed:  # §2: kept per user
            writer.set_subscribed_for(ctx.user["accountId"], mailbox_id, changed.pop("isSubscribed"))
        if changed:
            writer.update_mailbox(mailbox_id, changed)

    def changes_extra(self, resp: dict, changes) -> None:
        # §2.2: when only counts changed, say which properties to fetch again
        resp["updatedProperties"] = list(COUNT_PROPERTIES) if changes.counts_only and changes.updated else None
