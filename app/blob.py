"""Blob reads (RFC 8620 §6): whole blobs from the store, body parts decoded on demand.

Blob id formats are owned by ``store.ids``: every part of every email is downloadable without
being stored twice."""

from __future__ import annotations

from store import ids

from .mail import mime


def blob_in(reader, blob_id: str) -> tuple[bytes, str | None] | None:
    """(bytes, media type) of a blob the reader's account may read, else None."""
    part = ids.parse_part_blob_id(blob_id)
    if part is not None:
        raw = reader.blob(part[0])
        if raw is None:
            return None
        found = mime.extract_part(raw, part[1])
        return (found[0], found[1]) if found else None
    info = reader.blob_info(blob_id)
    data = reader.blob(blob_id) if info else None
    return (data, info["type"]) if data is not None else None


def read_blob(store, account_id: str, blob_id: str) -> tuple[bytes, str | None] | None:
    with store.read(account_id) as reader:
        return blob_in(reader, blob_id)
