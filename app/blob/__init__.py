"""Blobs (RFC 8620 §6, RFC 9404): reads for every caller, the HTTP download response
(`app.blob.http`), the Blob methods (`app.blob.methods`) and the collector's schedule (`app.blob.gc`).

Blob id formats are owned by ``store.ids``: a whole blob is ``G<sha256>``; every body part of every
email is downloadable as ``P<sha256>.<partId>`` without being stored twice.  A whole blob is
streamed from the store (`open_blob`: a large one is a file, never read whole).  A body part of a
message the store holds in memory is decoded whole (``mime.extract_part``); one of a message kept
as a file is located over a map of the file and decoded as it is read (`app.blob.parts`), so its
memory stays bounded whatever its size (see the README's "Blobs")."""

from __future__ import annotations

import io
from typing import BinaryIO

from store import ids

from ..mail import mime
from . import parts


def visible_to(access, reader, blob_id: str) -> bool:
    """Whether the user (app.access.Access; None: the owner) may read a blob of this account: in an
    account shared with them, the message (or a part) of an email they may read, or an upload no
    email holds (named only by the sha256 of content they already have)."""
    if access is None or access.owner:
        return True
    part = ids.parse_part_blob_id(blob_id)
    guid = ids.guid_of(part[0] if part else blob_id)
    email = reader.email_by_guid(guid) if guid else None
    return email is None or access.may_read_email(email)


def blob_in(reader, blob_id: str, access=None) -> tuple[bytes, str | None] | None:
    """(bytes, media type) of a blob the reader's account may read (and the user, see
    `visible_to`), else None."""
    if not visible_to(access, reader, blob_id):
        return None
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


def read_blob(store, account_id: str, blob_id: str, access=None) -> tuple[bytes, str | None] | None:
    with store.read(account_id) as reader:
        return blob_in(reader, blob_id, access)


def _has_descriptor(f: BinaryIO) -> bool:
    try:
        f.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: a copy in memory
        return False
    return True


def open_blob_in(reader, blob_id: str, lazy_size: bool = False,
                 access=None) -> tuple[BinaryIO, int | None, str | None] | None:
    """(a seekable binary file the caller closes, size, stored media type) of a blob the reader's
    account may read, else None.  Whole blobs stream from the store; a body part is decoded (as it
    is read when its message is a file).  With ``lazy_size`` the size of such a part is None unless
    already known (measuring it costs a decoding pass): the file's ``size()`` then measures it.
    ``access``: the user's, when it may not be the account's owner (`visible_to`)."""
    if not visible_to(access, reader, blob_id):
        return None
    part = ids.parse_part_blob_id(blob_id)
    if part is not None:
        f = reader.open_blob(part[0])
        if f is None:
            return None
        if not _has_descriptor(f):
            with f:
                found = mime.extract_part(f.read(), part[1])
            return (io.BytesIO(found[0]), len(found[0]), found[1]) if found else None
        opened = parts.open_part(f, blob_id, part[1])
        if opened is None:
            return None
        pf, media_type, _ = opened
        return pf, (parts.known_size(blob_id) if lazy_size else pf.size()), media_type
    info = reader.blob_info(blob_id)
    f = reader.open_blob(blob_id) if info else None
    return (f, info["size"], info.get("type")) if f is not None else None


def open_blob(store, account_id: str, blob_id: str, lazy_size: bool = False,
              access=None) -> tuple[BinaryIO, int | None, str | None] | None:
    with store.read(account_id) as reader:
        return open_blob_in(reader, blob_id, lazy_size, access)


def blob_exists(reader, blob_id: str) -> bool:
    """Whether the account has the blob: a stored blob, or a part of a stored message (its partId
    not checked: that would decode the message)."""
    part = ids.parse_part_blob_id(blob_id)
    return reader.blob_info(part[0] if part else blob_id) is not None
