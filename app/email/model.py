"""The Email object's properties and the rules shared by its methods (RFC 8621 §4.1)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

METADATA = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt")
CONVENIENCE_HEADERS = ("messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
                       "replyTo", "subject", "sentAt")
BODY = ("bodyStructure", "bodyValues", "textBody", "htmlBody", "attachments", "hasAttachment", "preview")
PROPERTIES = (*METADATA, "headers", *CONVENIENCE_HEADERS, *BODY)
# RFC 8621 §4.2: the default properties of Email/get
DEFAULT_PROPERTIES = ["id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
                      "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
                      "replyTo", "subject", "sentAt", "hasAttachment", "preview", "bodyValues",
                      "textBody", "htmlBody", "attachments"]
BODY_PART_PROPERTIES = ("partId", "blobId", "size", "headers", "name", "type", "charset", "disposition",
                        "cid", "language", "location", "subParts")
DEFAULT_BODY_PROPERTIES = ["partId", "blobId", "size", "name", "type", "charset", "disposition", "cid",
                           "language", "location"]
# Email/get's arguments beyond the standard ones (§4.2)
BODY_ARGS = ("bodyProperties", "fetchTextBodyValues", "fetchHTMLBodyValues", "fetchAllBodyValues",
             "maxBodyValueBytes")
# properties answered from the stored record, without reading the message
FROM_RECORD = {*METADATA, *CONVENIENCE_HEADERS, "hasAttachment", "preview"}

HEADER_FORMS = {"asRaw": "Raw", "asText": "Text", "asAddresses": "Addresses",
                "asGroupedAddresses": "GroupedAddresses", "asMessageIds": "MessageIds", "asDate": "Date",
                "asURLs": "URLs"}

# RFC 8621 §4.1.1: keywords are IMAP atoms (RFC 3501 flag-keyword), compared case-insensitively
_KEYWORD = re.compile(r"^[\x21-\x7e]{1,255}$")
_KEYWORD_FORBIDDEN = set('(){ %*"\\]')


def is_valid_keyword(keyword: object) -> bool:
    return (isinstance(keyword, str) and bool(_KEYWORD.fullmatch(keyword))
            and not (set(keyword) & _KEYWORD_FORBIDDEN))


def parse_header_property(prop: str) -> tuple[str, str, bool] | None:
    """"header:Name[:asForm][:all]" -> (name, form, all); None if malformed."""
    parts = prop.split(":")
    if len(parts) < 2 or parts[0] != "header" or not parts[1] or len(parts) > 4:
        return None
    name, rest = parts[1], parts[2:]
    if any(ord(c) <= 32 or ord(c) > 126 for c in name):
        return None
    all_ = bool(rest) and rest[-1] == "all"
    if all_:
        rest = rest[:-1]
    if len(rest) > 1:
        return None
    form = HEADER_FORMS.get(rest[0]) if rest else "Raw"
    if form is None:
        return None
    return name, form, all_


def utc_date(seconds: int) -> str:
    """Epoch seconds -> RFC 8620 §1.4 UTCDate ("2014-10-30T06:12:00Z")."""
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"


def parse_utc_date(value: object) -> int | None:
    """RFC 8620 §1.4 UTCDate ("2014-10-30T06:12:00Z") -> epoch seconds, or None if invalid."""
    if not isinstance(value, str) or not value.endswith("Z") or "T" not in value:
        return None
    try:
        dt = datetime.fromisoformat(value[:-1])
    except ValueError:
        return None
    return int(dt.replace(tzinfo=UTC).timestamp())
