"""The Mailbox object as JMAP shows it, built from the store's record."""

from __future__ import annotations

import unicodedata

PROPERTIES = ("id", "name", "parentId", "role", "sortOrder", "totalEmails", "unreadEmails",
              "totalThreads", "unreadThreads", "myRights", "isSubscribed")
COUNT_PROPERTIES = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]
SERVER_SET = {"id", "totalEmails", "unreadEmails", "totalThreads", "unreadThreads", "myRights"}
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
