"""The Blob methods: Blob/copy (RFC 8620 §6.3) and RFC 9404's Blob/upload (§4.1), Blob/get (§4.2)
and Blob/lookup (§4.3); the capability's limits are declared in `app.capabilities` (§3.1).

Blob/upload builds each blob in a store blob sink from its data sources in order (inline text,
inline base64, or a range of a blob the account has, including one created earlier in the same
request: ``#creationId``); Blob/get reads a range of a blob and gives it as text, base64, digests
and size; Blob/lookup answers from the store's per-account message index (``guid``: a blob's
content address -> the email that is that message), never by scanning emails."""

from __future__ import annotations

import base64
import binascii
import hashlib

from app.capabilities import BLOB_LOOKUP_TYPES, MAX_DATA_SOURCES
from app.protocol.errors import MethodError, invalid_arguments, set_error
from app.protocol.registry import BLOB, CORE, MAIL, method
from app.protocol.standard import check_known_args, id_list_arg, uint_arg
from app.quota import over_quota
from store import OverQuota, ids

from ..mail import mime
from . import blob_exists, open_blob_in, visible_to

CHUNK = 1 << 20
DIGESTS = {"sha": hashlib.sha1, "sha-256": hashlib.sha256}
GET_PROPERTIES = ("id", "data", "data:asText", "data:asBase64", "size", *(f"digest:{d}" for d in DIGESTS))
DEFAULT_GET_PROPERTIES = ["data", "size"]


def _ids_arg(ctx, args: dict, name: str) -> list[str]:
    value = id_list_arg(ctx, args, name, ctx.limits.max_objects_in_get)
    if value is None:
        raise invalid_arguments(f"{name} must be an array of blob ids (blobs cannot be listed)")
    return value


# ------------------------------------------------------------------------------ Blob/copy (§6.3)
@method("Blob/copy", CORE)
def blob_copy(ctx, args: dict) -> dict:
    """§6.3 allows fromAccountId == accountId (only /copy of §5.4 forbids it): the blob is then
    already there, and is "copied" to itself, which restarts its grace period like a re-upload."""
    check_known_args(args, {"fromAccountId", "accountId", "blobIds"})
    from_id = args.get("fromAccountId")
    if not isinstance(from_id, str):
        raise invalid_arguments("fromAccountId must be an account id")
    account_id = ctx.account_id(args)
    if not ctx.may_read_account(from_id):
        raise MethodError("fromAccountNotFound", f"no account {from_id!r} for this user")
    blob_ids = args.get("blobIds")
    if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
        raise invalid_arguments("blobIds must be an array of blob ids")
    if len(blob_ids) > ctx.limits.max_objects_in_set:
        raise MethodError("requestTooLarge", f"more than {ctx.limits.max_objects_in_set} blobs")
    copied, not_copied = {}, {}
    with ctx.store.write(account_id) as w:
        with ctx.store.read(from_id) as r:
            for raw_id in dict.fromkeys(blob_ids):
                blob_id = ctx.resolve_id(raw_id) or raw_id
                if not visible_to(ctx.access(from_id), r, blob_id):
                    new_id = None
                elif ids.parse_part_blob_id(blob_id) is None:
                    info = w.grant_blob(blob_id, r)
                    new_id = info["blobId"] if info else None
                else:  # a body part: decoded, stored as a blob of its own
                    found = open_blob_in(r, blob_id, access=ctx.access(from_id))
                    new_id = None
                    if found is not None:
                        f, _, media_type = found
                        with f:
                            new_id = w.put_blob(f.read(), media_type or "application/octet-stream")["blobId"]
                if new_id is None:
                    not_copied[raw_id] = set_error("notFound", f"no blob {raw_id!r} in account {from_id}")
                else:
                    copied[raw_id] = new_id
    return {"fromAccountId": from_id, "accountId": account_id, "copied": copied or None,
            "notCopied": not_copied or None}


# ----------------------------------------------------------------------- Blob/upload (RFC 9404 §4.1)
class _Refused(Exception):
    def __init__(self, error: dict):
        super().__init__(error["type"])
        self.error = error


def _invalid(prop: str, why: str) -> _Refused:
    return _Refused(set_error("invalidProperties", f"{prop}: {why}", properties=[prop]))


@method("Blob/upload", BLOB)
def blob_upload(ctx, args: dict) -> dict:
    check_known_args(args, {"accountId", "create"})
    account_id = ctx.account_id(args)
    create = args.get("create")
    if not isinstance(create, dict) or not all(isinstance(v, dict) for v in create.values()):
        raise invalid_arguments("create must map creation ids to UploadObjects")
    if len(create) > ctx.limits.max_objects_in_set:
        raise MethodError("requestTooLarge", f"more than {ctx.limits.max_objects_in_set} blobs")
    created, not_created = {}, {}
    limit = ctx.limits.max_size_upload  # maxSizeBlobSet
    with ctx.store.write(account_id) as w:
        for cid, upload in create.items():
            try:
                media_type = _check_upload(upload)
                with ctx.store.blob_sink() as sink:
                    _fill(ctx, w, sink, upload["data"], limit)
                    sink.finish()
                    w.check_room(octets=sink.size)  # a blob larger than the room left (app/quota.py)
                    info = w.put_blob(sink, media_type or "application/octet-stream")
            except _Refused as refused:
                not_created[cid] = refused.error
                continue
            except OverQuota as exc:
                not_created[cid] = over_quota(exc)
                continue
            ctx.created_ids[cid] = info["blobId"]
            created[cid] = {"id": info["blobId"], "type": media_type, "size": info["size"]}
    return {"accountId": account_id, "created": created or None, "notCreated": not_created or None}


def _check_upload(upload: dict) -> str | None:
    unknown = sorted(set(upload) - {"data", "type"})
    if unknown:
        raise _Refused(set_error("invalidProperties", f"unknown UploadObject properties: {', '.join(unknown)}",
                                 properties=unknown))
    media_type = upload.get("type")
    if media_type is not None and not isinstance(media_type, str):
        raise _invalid("type", "must be a string or null")
    data = upload.get("data")
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise _invalid("data", "must be an array of DataSourceObjects")
    if len(data) > MAX_DATA_SOURCES:
        # §3.1 limits the sources of one creation, not the blob's size (that is tooLarge): the
        # UploadObject itself is invalid
        raise _invalid("data", f"more than maxDataSources ({MAX_DATA_SOURCES}) data sources")
    return media_type


def _fill(ctx, reader, sink, sources: list[dict], limit: int) -> None:
    """Writes the data sources into the sink, in order; refuses a bad one or a result over limit."""
    missing = []
    for i, source in enumerate(sources):
        prop = f"data/{i}"
        # §4.1: exactly one of data:asText, data:asBase64 or blobId (offset and length go with
        # blobId); invalid data is refused, never guessed at
        kinds = [k for k in ("data:asText", "data:asBase64", "blobId") if source.get(k) is not None]
        extra = set(source) - {"data:asText", "data:asBase64", "blobId", "offset", "length"}
        ranged = source.get("offset") is not None or source.get("length") is not None
        if len(kinds) != 1 or extra or (kinds[0] != "blobId" and ranged):
            raise _invalid(prop, "must have exactly one of data:asText, data:asBase64 or blobId "
                                 "(offset and length only with blobId)")
        kind = kinds[0]
        if kind == "data:asText":
            if not isinstance(source[kind], str):
                raise _invalid(prop, "data:asText must be a string")
            chunk = source[kind].encode("utf-8", "surrogatepass")
        elif kind == "data:asBase64":
            try:
                chunk = base64.b64decode(source[kind], validate=True) if isinstance(source[kind], str) else None
            except (binascii.Error, ValueError):
                chunk = None
            if chunk is None:
                raise _invalid(prop, "data:asBase64 must be base64 (RFC 4648)")
        else:
            raw_id = source["blobId"]
            if not isinstance(raw_id, str):
                raise _invalid(prop, "blobId must be an id")
            offset = source.get("offset") or 0
            length = source.get("length")
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0 or (
                    length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 0)):
                raise _invalid(prop, "offset and length must be unsigned integers or null")
            found = open_blob_in(reader, ctx.resolve_id(raw_id) or raw_id, access=ctx.access(reader.account_id))
            if found is None:
                missing.append(raw_id)
                continue
            f, size, _ = found
            with f:
                end = size if length is None else offset + length
                # §4.1: a range that begins or extends past the end of the blob is invalid
                if offset > size or end > size:
                    raise _invalid(prop, f"the range {offset}+{end - offset} is outside the blob ({size} octets)")
                if sink.size + end - offset > limit:
                    raise _Refused(set_error("tooLarge", f"the blob would exceed maxSizeBlobSet ({limit})"))
                f.seek(offset)
                left = end - offset
                while left:
                    piece = f.read(min(CHUNK, left))
                    if not piece:
                        break
                    sink.write(piece)
                    left -= len(piece)
            continue
        if sink.size + len(chunk) > limit:
            raise _Refused(set_error("tooLarge", f"the blob would exceed maxSizeBlobSet ({limit})"))
        sink.write(chunk)
    if missing:
        raise _Refused(set_error("blobNotFound", "blob(s) not found: " + ", ".join(missing), notFound=missing))


# -------------------------------------------------------------------------- Blob/get (RFC 9404 §4.2)
@method("Blob/get", BLOB)
def blob_get(ctx, args: dict) -> dict:
    check_known_args(args, {"accountId", "ids", "properties", "offset", "length"})
    account_id = ctx.account_id(args)
    wanted = _ids_arg(ctx, args, "ids")
    props = args.get("properties")
    if props is None:
        props = list(DEFAULT_GET_PROPERTIES)
    if not isinstance(props, list) or not all(isinstance(p, str) for p in props):
        raise invalid_arguments("properties must be an array of property names or null")
    unknown = [p for p in props if p not in GET_PROPERTIES]
    if unknown:
        raise invalid_arguments(f"unknown Blob properties: {', '.join(unknown)}")
    offset = uint_arg(args, "offset", 0) or 0
    length = uint_arg(args, "length", None)
    needs_bytes = any(p.startswith(("data", "digest:")) for p in props)
    found_list, not_found = [], []
    with ctx.store.read(account_id) as reader:
        for raw_id in dict.fromkeys(wanted):
            blob_id = ctx.resolve_id(raw_id) or raw_id
            found = open_blob_in(reader, blob_id, access=ctx.access(account_id))
            if found is None:
                not_found.append(raw_id)
                continue
            f, size, _ = found
            out: dict = {"id": raw_id}
            with f:
                data = b""
                if needs_bytes:
                    start = min(offset, size)
                    end = size if length is None else min(size, offset + length)
                    f.seek(start)
                    data = f.read(max(0, end - start))
                    # §4.2: a range the blob cannot fully satisfy gives what there is and
                    # isTruncated; a null length is "the rest", truncated only past the end
                    out["isTruncated"] = offset > size or (length is not None and offset + length > size)
            _render(out, props, data, size)
            found_list.append(out)
    return {"accountId": account_id, "list": found_list, "notFound": not_found}


def _render(out: dict, props: list[str], data: bytes, size: int) -> None:
    text = None
    if any(p in ("data", "data:asText") for p in props):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        out["isEncodingProblem"] = text is None
    for prop in props:
        if prop == "size":
            out["size"] = size
        elif prop == "data:asText":
            out["data:asText"] = text
        elif prop == "data:asBase64":
            out["data:asBase64"] = base64.b64encode(data).decode()
        elif prop == "data":
            if text is not None:
                out["data:asText"] = text
            else:
                out["data:asBase64"] = base64.b64encode(data).decode()
        elif prop.startswith("digest:"):
            out[prop] = base64.b64encode(DIGESTS[prop[7:]](data).digest()).decode()


# ----------------------------------------------------------------------- Blob/lookup (RFC 9404 §4.3)
@method("Blob/lookup", BLOB)
def blob_lookup(ctx, args: dict) -> dict:
    check_known_args(args, {"accountId", "typeNames", "ids"})
    account_id = ctx.account_id(args)
    type_names = args.get("typeNames")
    if not isinstance(type_names, list) or not all(isinstance(t, str) for t in type_names):
        raise invalid_arguments("typeNames must be an array of data type names")
    unsupported = [t for t in type_names if t not in BLOB_LOOKUP_TYPES]
    if unsupported or (type_names and MAIL not in ctx.using):
        raise MethodError("unknownDataType", "Blob/lookup cannot look up " + (
            ", ".join(unsupported) if unsupported else f"mail types without {MAIL} in 'using'"))
    wanted = _ids_arg(ctx, args, "ids")
    found_list = []
    with ctx.store.read(account_id) as reader:
        for raw_id in dict.fromkeys(wanted):
            email = _email_of_blob(reader, ctx.resolve_id(raw_id) or raw_id)
            access = ctx.access(account_id)
            matched: dict[str, list[str]] = {t: [] for t in type_names}
            if email is not None and access.may_read_email(email):
                email = {**email, "mailboxIds": access.shown_mailbox_ids(email["mailboxIds"])}
                for t in type_names:
                    matched[t] = ([email["id"]] if t == "Email" else [email["threadId"]] if t == "Thread"
                                  else sorted(email["mailboxIds"]))
            # §4.3: a blob the user cannot see, or that does not exist at all, MUST still get an
            # empty array for each type (not notFound), so existence elsewhere never leaks
            found_list.append({"id": raw_id, "matchedIds": matched})
    # notFound is not among §4.3's response arguments, but its example shows one: kept, always empty
    return {"accountId": account_id, "list": found_list, "notFound": []}


def _email_of_blob(reader, blob_id: str) -> dict | None:
    """The email of the account whose message is the blob, or has it as a body part; found by the
    message's guid, never by scanning emails.  A part's partId is checked against the message's
    structure (parsed, not decoded)."""
    part = ids.parse_part_blob_id(blob_id)
    guid = ids.guid_of(part[0] if part else blob_id)
    if guid is None or not blob_exists(reader, blob_id):
        return None
    email = reader.email_by_guid(guid)
    if email is None or part is None:
        return email
    raw = reader.blob(part[0])
    return email if raw is not None and mime.has_part(raw, part[1]) else None
