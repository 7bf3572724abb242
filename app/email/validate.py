"""Checks of the mutable Email properties shared by Email/set, Email/import (RFC 8621 §4.6, §4.8)."""

from __future__ import annotations

import time

from app.capabilities import MAX_MAILBOXES_PER_EMAIL

from .model import is_valid_keyword, parse_utc_date

MAX_KEYWORDS = 100
MAX_MAILBOXES = MAX_MAILBOXES_PER_EMAIL


def check_mailbox_ids(ctx, reader, value: object, problems: dict[str, str]) -> dict | None:
    """A mailboxIds value -> {resolved id: True}; records a problem and returns None if invalid."""
    if not isinstance(value, dict) or not value:
        problems["mailboxIds"] = "must be a non-empty map of mailbox ids to true"
        return None
    out = {}
    for raw_id, flag in value.items():
        if flag is not True:
            problems["mailboxIds"] = "every value must be true"
            return None
        mailbox_id = ctx.resolve_id(raw_id)
        if (mailbox_id is None or reader.mailbox(mailbox_id) is None
                or not ctx.access(reader.account_id).sees_mailbox(mailbox_id)):
            problems["mailboxIds"] = f"no mailbox {raw_id!r}"
            return None
        out[mailbox_id] = True
    if len(out) > MAX_MAILBOXES:
        problems["mailboxIds"] = f"an email may be in at most {MAX_MAILBOXES} mailboxes"
        return None
    return out


def rights_problem(ctx, reader, before: dict | None, after: dict | None) -> str | None:
    """Why a grantee may not make this change to an email (RFC 8621 §2 MailboxRights), or None.
    before/after: {"mailboxIds", "keywords"} (before None: a new email; after None: destroyed),
    with every mailbox of the email, seen or not."""
    access = ctx.access(reader.account_id)
    if access.owner:
        return None
    old_boxes = set((before or {}).get("mailboxIds") or ())
    new_boxes = set((after or {}).get("mailboxIds") or ()) if after is not None else set()
    if after is not None and "mailboxIds" not in after:
        new_boxes = old_boxes
    for mailbox_id in new_boxes - old_boxes:
        if not access.may(mailbox_id, "mayAddItems"):
            return f"adding to mailbox {mailbox_id} needs mayAddItems"
    for mailbox_id in old_boxes - new_boxes:
        if not access.may(mailbox_id, "mayRemoveItems"):
            return f"removing from mailbox {mailbox_id} needs mayRemoveItems"
    if after is not None and "keywords" in after:
        # a new email's keywords are set on it too: the rights of the mailboxes it goes into
        changed = set((before or {}).get("keywords") or ()) ^ set(after["keywords"] or ())
        boxes = old_boxes if before is not None else new_boxes
        for right, keywords in (("maySetSeen", changed & {"$seen"}), ("maySetKeywords", changed - {"$seen"})):
            # §2: "only ... if they have this permission for all of the Mailboxes"
            if keywords and not all(access.may(m, right) for m in boxes):
                return f"setting {', '.join(sorted(keywords))} needs {right} on every mailbox of the email"
    return None


def check_keywords(value: object, problems: dict[str, str]) -> dict | None:
    """A keywords value -> {lower-cased keyword: True} (§4.1.1: case-insensitive, stored lower-case)."""
    if not isinstance(value, dict):
        problems["keywords"] = "must be a map of keywords to true"
        return None
    bad = [k for k, v in value.items() if v is not True or not is_valid_keyword(k)]
    if bad:
        problems["keywords"] = f"invalid keyword(s) or values: {', '.join(map(repr, bad[:5]))}"
        return None
    if len(value) > MAX_KEYWORDS:
        problems["keywords"] = f"at most {MAX_KEYWORDS} keywords"
        return None
    return {k.lower(): True for k in value}


def check_received_at(value: object, problems: dict[str, str]) -> int:
    """A receivedAt value (UTCDate, default now) -> epoch seconds."""
    if value is None:
        return int(time.time())
    parsed = parse_utc_date(value)
    if parsed is None:
        problems["receivedAt"] = "must be a UTCDate like 2024-01-31T12:00:00Z"
        return int(time.time())
    return parsed
