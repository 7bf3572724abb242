"""The one path by which a message enters the store: Email/import, Email/set create and the CLI
import all call `ingest`, so threading, counts and indexing are the same whichever way mail arrives."""

from __future__ import annotations

from store import ids

from . import mime


def ingest(writer, raw: bytes, mailbox_ids: dict, keywords: dict, received_at: int,
           media_type: str = "message/rfc822") -> tuple[dict, bool, list[str]]:
    """Stores raw as a blob and as an Email in the writer's account, inside the writer's transaction.
    Returns (email record, created, defects); created is False when the account already holds the
    same message (same bytes), which makes imports idempotent.  Raises store.OverQuota before
    writing anything when the message would take the account over a quota (RFC 9425)."""
    guid = ids.content_address(raw)
    existing = writer.email_by_guid(guid)
    if existing is not None:
        return existing, False, []
    writer.check_room(messages=1, octets=len(raw))  # add_email checks too; this one precedes put_blob
    summary = mime.parse_summary(raw)
    writer.put_blob(raw, media_type)
    record, created = writer.add_email(summary, guid, mailbox_ids, keywords, received_at)
    return record, created, summary.get("defects") or []
