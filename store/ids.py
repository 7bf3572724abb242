"""Every id format of tidings, in one place: made here, read here, nowhere else.

RFC 8620 §1.2: an Id is 1-255 characters of ``A-Za-z0-9_-``; ids are opaque to clients and never
reused.  tidings' ids carry a one-letter kind and a number allocated by the store's counters:

| kind                  | format                    | example           |
|-----------------------|---------------------------|-------------------|
| Email                 | ``M`` + 10+ hex digits    | ``M000000002a``   |
| Mailbox               | ``B`` + 6+ hex digits     | ``B00000c``       |
| Thread                | ``T`` + 10+ hex digits    | ``T0000000011``   |
| a generic record      | the collection's prefix + hex (``collection_id``) | ``S1f`` |
| Identity              | ``I`` + the account id    | ``IA1b2c3d4e5``   |
| bearer token          | ``K`` + 4+ hex digits     | ``K002a``         |
| Quota                 | ``Q`` + the resource name | ``Qstorage``      |

Blob ids and content addresses: a message or upload is stored once under the sha256 of its
bytes (the *guid*, 64 hex digits, "content address"); its blob id is ``G`` + guid.  A body part
of a stored message is ``P`` + guid + ``.`` + partId (RFC 8621 §4.1.4 partId), decoded on demand.

A bearer token as the client sends it is ``tdg_`` + its token id + ``_`` + the secret (43
characters of URL-safe base64, 256 random bits): the id says which stored record to check the
secret against; every character is in RFC 6750's b64token set.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "blob_id", "content_address", "email_id", "email_number", "guid_of", "identity_id", "mailbox_id",
    "part_blob_id", "part_blob_prefix", "parse_part_blob_id", "quota_id", "quota_resource", "record_id",
    "split_token", "thread_id", "is_token_id", "token_id", "token_string",
]

_EMAIL_RE = re.compile(r"M[0-9a-f]{1,16}")
_TOKEN_RE = re.compile(r"tdg_(K[0-9a-f]{4,16})_([A-Za-z0-9_-]{20,200})")
TOKEN_PREFIX = "tdg_"


def content_address(data: bytes) -> str:
    """The guid under which ``data`` is stored: sha256, 64 lower-case hex digits."""
    return hashlib.sha256(data).hexdigest()


def blob_id(guid: str) -> str:
    return "G" + guid


def guid_of(blob: str) -> str | None:
    """The guid of a whole-blob id ``G<guid>``, else None."""
    return blob[1:] if blob.startswith("G") and len(blob) > 1 else None


def part_blob_id(message_blob_id: str, part_id: str) -> str:
    """The blob id of body part ``part_id`` of the message stored as ``message_blob_id``."""
    return part_blob_prefix(message_blob_id) + part_id


def part_blob_prefix(message_blob_id: str) -> str:
    """What every part blob id of that message starts with (the partId follows)."""
    return "P" + message_blob_id[1:] + "."


def parse_part_blob_id(blob: str) -> tuple[str, str] | None:
    """(message blob id, partId) of a part blob id ``P<guid>.<partId>``, else None."""
    if not blob.startswith("P") or "." not in blob:
        return None
    guid, _, part_id = blob[1:].partition(".")
    return ("G" + guid, part_id) if guid and part_id else None


def email_id(number: int) -> str:
    return f"M{number:010x}"


def email_number(email: str) -> int:
    """The counter value an email id was made from (0 for an id of another form)."""
    return int(email[1:], 16) if _EMAIL_RE.fullmatch(email) else 0


def mailbox_id(number: int) -> str:
    return f"B{number:06x}"


def thread_id(number: int) -> str:
    return f"T{number:010x}"


def record_id(prefix: str, number: int) -> str:
    """The id of the ``number``th record of a generic collection whose ids start with ``prefix``."""
    return f"{prefix}{number:x}"


def identity_id(account_id: str) -> str:
    return "I" + account_id


def token_id(number: int) -> str:
    return f"K{number:04x}"


def is_token_id(value: str) -> bool:
    return re.fullmatch(r"K[0-9a-f]{4,16}", value) is not None


def token_string(token: str, secret: str) -> str:
    """What the client sends after ``Bearer``: the token id and its secret."""
    return f"{TOKEN_PREFIX}{token}_{secret}"


def split_token(value: str) -> tuple[str, str] | None:
    """(token id, secret) of a bearer token string, else None."""
    m = _TOKEN_RE.fullmatch(value)
    return (m.group(1), m.group(2)) if m else None


def quota_id(resource: str) -> str:
    """The id of an account's Quota object for a resource ("messages", "storage"; RFC 9425 §4)."""
    return "Q" + resource


def quota_resource(quota: str) -> str | None:
    """The resource of a Quota id, else None."""
    return quota[1:] if quota.startswith("Q") and len(quota) > 1 else None
