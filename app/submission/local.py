"""Local delivery: mail for an address of this server goes straight into its owner's Inbox through
the same ingest path as every other message (threaded, indexed, pushed), without SMTP."""

from __future__ import annotations

import time

from app.mail.ingest import ingest


def inbox_of(reader) -> str | None:
    return next((mb["id"] for mb in reader.mailboxes() if mb.get("role") == "inbox"), None)


def deliver(store, user: dict, raw: bytes, return_path: str | None = None) -> str:
    """Stores raw in the user's Inbox (a Return-Path field first when given, RFC 5321 §4.4) and
    returns the email id; an identical message already there is not stored twice."""
    if return_path is not None:
        raw = b"Return-Path: <" + return_path.encode() + b">\r\n" + raw
    with store.write(user["accountId"]) as w:
        inbox = inbox_of(w)
        if inbox is None:
            raise LookupError(f"user {user['name']} has no Inbox")
        record, _, _ = ingest(w, raw, {inbox: True}, {}, int(time.time()))
    return record["id"]
