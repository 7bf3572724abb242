"""Blobs (RFC 8620 §6, RFC 9404): reads for every caller, the HTTP download response
(`app.blob.http`), the Blob methods (`app.blob.methods`) and the collector's schedule (`app.blob.gc`).

Blob id formats are owned by ``store.ids``: a whole blob is ``G<sha256>``; every body part of every
email is downloadable as ``P<sha256>.<partId>`` without being stored twice.  A whole blob is
streamed from the store (`open_blob`: a large one is a file, never read whole); a body part is
decoded in memory from its message (``mime.extract_part``), which holds the message and the decoded
part at once (see the README's "Blobs")."""

from __future__ import annotations

import io
from typing import BinaryIO

from store import ids

from ..mail import mime


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


def open_blob_in(reader, blob_id: str) -> tuple[BinaryIO, int, str | None] | None:
    """(a seekable binary file the caller closes, size, stored media type) of a blob the reader's
    account may read, else None.  Whole blobs stream from the store; a body part is decoded."""
    if ids.parse_part_blob_id(blob_id) is not None:
        found = blob_in(reader, blob_id)
        return (io.BytesIO(found[0]), len(found[0]), found[1]) if found else None
    info = reader.blob_info(blob_id)
    f = reader.open_blob(blob_id) if info else None
    return (f, info["size"], info.get("type")) if f is not None else None


def open_blob(store, account_id: str, blob_id: str) -> tuple[BinaryIO, int, str | None] | None:
    with store.read(account_id) as reader:
        return open_blob_in(reader, blob_id)


def blob_exists(reader, blob_id: str) -> bool:
    """Whether the account has the blob: a stored blob, or a part of a stored message (its partId
    not checked: that would decode the message)."""
    part = ids.parse_part_blob_id(blob_id)
    return reader.blob_info(part[0] if part else blob_id) is not None
