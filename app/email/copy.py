"""Email/copy (RFC 8621 §4.7) on the standard /copy machinery (RFC 8620 §5.4): the copy is the same
message (its bytes given to the target account, then ingested there: threaded, counted, indexed),
with only mailboxIds, keywords and receivedAt settable; onSuccessDestroyOriginal and the implicit
Email/set come from the machinery.  fromAccountId must differ from accountId, so until accounts
are shared a user can only be told so."""

from __future__ import annotations

from dataclasses import dataclass

from app.protocol.errors import invalid_properties, set_error
from store import ids

from .model import utc_date
from .validate import check_keywords, check_mailbox_ids, check_received_at, rights_problem

COPYABLE = ("mailboxIds", "keywords", "receivedAt")
SOURCE = "\x00source"  # the key of the source message in a copy's create object (never a JSON key)


@dataclass(frozen=True)
class Source:
    """The message being copied, read from the source account (a client cannot forge one)."""

    raw: bytes | None
    blob_id: str


def copy_fields(self, ctx, from_reader, source: dict) -> dict:
    return {"mailboxIds": source["mailboxIds"], "keywords": source["keywords"],
            "receivedAt": utc_date(source["receivedAt"]),
            SOURCE: Source(from_reader.blob(source["blobId"]), source["blobId"])}


def is_copy(obj: dict) -> bool:
    return isinstance(obj.get(SOURCE), Source)


def prepare_copy(ctx, reader, obj: dict) -> tuple[dict, dict | None]:
    source: Source = obj[SOURCE]
    problems: dict[str, str] = {}
    for prop in sorted(set(obj) - {*COPYABLE, SOURCE}):
        problems[prop] = "Email/copy may set only mailboxIds, keywords and receivedAt"
    mailbox_ids = check_mailbox_ids(ctx, reader, obj.get("mailboxIds"), problems)
    keywords = check_keywords(obj.get("keywords") or {}, problems)
    received_at = check_received_at(obj.get("receivedAt"), problems)
    if problems:
        return {}, invalid_properties(problems)
    why = rights_problem(ctx, reader, None, {"mailboxIds": mailbox_ids, "keywords": keywords})
    if why:
        return {}, set_error("forbidden", why)
    if source.raw is None:
        return {}, set_error("notFound", f"the message {source.blob_id} is gone from the source account")
    existing = reader.email_by_guid(ids.content_address(source.raw))
    if existing is not None:
        return {}, set_error("alreadyExists", "the target account already has this message",
                             existingId=existing["id"])
    return {"raw": source.raw, "mailboxIds": mailbox_ids, "keywords": keywords, "receivedAt": received_at}, None
