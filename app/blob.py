"""Blob ids and reads (RFC 8620 §6).

`G<sha256>` is a stored blob (an upload or a whole message), `P<sha256>.<partId>` one body part of the
message stored as `G<sha256>`, decoded on demand: every part of every email is downloadable without
being stored twice."""

from __future__ import annotations

from .mail import mime


def part_blob_prefix(message_blob_id: str) -> str:
    return "P" + message_blob_id[1:] + "."


def blob_in(reader, blob_id: str) -> tuple[bytes, str | None] | None:
    """(bytes, media type) of a blob the reader's account may read, else None."""
    if blob_id.startswith("P") and "." in blob_id:
        guid, _, part_id = blob_id[1:].partition(".")
        raw = reader.blob("G" + guid)
        if raw is None:
            return None
        part = mime.extract_part(raw, part_id)
        return (part[0], part[1]) if part else None
    info = reader.blob_info(blob_id)
    data = reader.blob(blob_id) if info else None
    return (data, info["type"]) if data is not None else None


def read_blob(store, account_id: str, blob_id: str) -> tuple[bytes, str | None] | None:
    with store.read(account_id) as reader:
        return blob_in(reader, blob_id)
