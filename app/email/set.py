"""What Email/set does that is Email's own (RFC 8621 §4.6): a create is a draft built from JSON into
a message; an update changes keywords and mailboxIds (whole or by patch); the machinery of
app/protocol/machinery.py does the rest."""

from __future__ import annotations

from app.blob import blob_in
from app.mail import mime
from app.mail.ingest import ingest
from app.protocol.errors import invalid_properties, set_error
from app.protocol.standard import apply_patch, patch_set_error, same_json
from store import ids

from .model import PROPERTIES, is_valid_keyword, parse_header_property
from .validate import MAX_KEYWORDS, check_keywords, check_mailbox_ids, check_received_at, rights_problem

MUTABLE = ("keywords", "mailboxIds")
# properties a client may give when creating; the rest of PROPERTIES are server-set
CREATE_ONLY_SERVER_SET = {"id", "blobId", "threadId", "size", "hasAttachment", "preview", "headers"}


def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
    """§4.6: a create is a message built from the JSON (app.mail.mime.build_message), refused with
    invalidProperties naming every bad property, or alreadyExists if the account has these bytes."""
    problems: dict[str, str] = {}
    for prop in obj:
        if prop.startswith("header:"):
            if parse_header_property(prop) is None:
                problems[prop] = "malformed header property"
        elif prop not in PROPERTIES:
            problems[prop] = "unknown property"
        elif prop in CREATE_ONLY_SERVER_SET:
            problems[prop] = "server-set property"
    mailbox_ids = check_mailbox_ids(ctx, reader, obj.get("mailboxIds"), problems)
    keywords = check_keywords(obj.get("keywords") or {}, problems)
    received_at = check_received_at(obj.get("receivedAt"), problems)
    content = {k: v for k, v in obj.items() if k not in ("mailboxIds", "keywords", "receivedAt")}

    def get_blob(blob_id: str) -> bytes | None:
        found = blob_in(reader, ctx.resolve_id(blob_id) or blob_id, ctx.access(reader.account_id))
        return found[0] if found else None

    raw, error = mime.build_message(content, get_blob)
    if error:
        if error.get("type") == "invalidProperties":
            for prop in error.get("properties") or []:
                problems.setdefault(prop, error.get("description") or "invalid")
        elif not problems:
            return {}, set_error(error["type"], error.get("description") or error["type"],
                                 **{k: v for k, v in error.items() if k not in ("type", "description")})
    if problems:
        return {}, invalid_properties(problems)
    why = rights_problem(ctx, reader, None, {"mailboxIds": mailbox_ids, "keywords": keywords})
    if why:
        return {}, set_error("forbidden", why)
    existing = reader.email_by_guid(ids.content_address(raw))
    if existing is not None:
        # the same bytes are already an Email here; like Email/import, say so (RFC 8621 §4.6, §4.8)
        return {}, set_error("alreadyExists", "this account already has an identical message",
                             existingId=existing["id"])
    return {"raw": raw, "mailboxIds": mailbox_ids, "keywords": keywords, "receivedAt": received_at}, None


def create(self, ctx, writer, fields: dict) -> dict:
    record, _, _ = ingest(writer, fields["raw"], fields["mailboxIds"], fields["keywords"], fields["receivedAt"])
    # §4.6: the server-set id, blobId, threadId and size
    return {"id": record["id"], "blobId": record["blobId"], "threadId": record["threadId"], "size": record["size"]}


def prepare_update(self, ctx, reader, current: dict, patch: dict, resolve) -> tuple[dict, dict | None]:
    """Only keywords and mailboxIds change (§4.6), whole or by patch; patch paths may name a
    creation reference ("mailboxIds/#new") and keywords are case-insensitive."""
    if ctx.access(reader.account_id).owner:
        keywords = _keywords_patched(current["keywords"], patch)
        if keywords is not None:
            return ({"keywords": keywords} if keywords != current["keywords"] else {}), None
    resolved_patch = {}
    for path, value in patch.items():
        if path.startswith("mailboxIds/#"):
            ref = ctx.resolve_id(path[len("mailboxIds/"):])
            path = f"mailboxIds/{ref}" if ref else path
        elif path.startswith("keywords/"):
            path = path.lower()
        resolved_patch[path] = value
    view = {"keywords": current["keywords"], "mailboxIds": current["mailboxIds"],
            **{k: current.get(k) for k in ("id", "blobId", "threadId", "size", "receivedAt")}}
    patched, problems, patch_errors = apply_patch(view, resolved_patch, MUTABLE)
    fields = {}
    # compared as JSON: {"$seen": 1} is not the stored {"$seen": true} and must be checked (o09)
    if "keywords" in patched and not same_json(patched["keywords"], current["keywords"]):
        fields["keywords"] = check_keywords(patched["keywords"], problems)
    if not same_json(patched.get("mailboxIds"), current["mailboxIds"]):
        fields["mailboxIds"] = check_mailbox_ids(ctx, reader, patched.get("mailboxIds"), problems)
    error = patch_set_error(problems, patch_errors)
    if error is None and fields and not ctx.access(reader.account_id).owner:  # a grantee's rights
        stored = reader.email(current["id"])
        after = {**fields, "mailboxIds": _with_hidden(ctx, reader, stored, fields["mailboxIds"])} \
            if "mailboxIds" in fields else fields
        why = rights_problem(ctx, reader, stored, after)
        if why:
            error = set_error("forbidden", why)
    return fields, error


def _keywords_patched(keywords: dict, patch: dict) -> dict | None:
    """The keywords after a patch of single keywords set to true or null (what marking read or
    flagged sends, the bulk of all updates), as the general path would make them; None for any
    other patch, which the general path judges (and words its errors)."""
    out = dict(keywords)
    for path, value in patch.items():
        if not path.startswith("keywords/") or (value is not True and value is not None):
            return None
        keyword = path[9:]
        if "/" in keyword or "~" in keyword or not is_valid_keyword(keyword):
            return None
        if value:
            out[keyword.lower()] = True
        else:
            out.pop(keyword.lower(), None)
    return out if len(out) <= MAX_KEYWORDS else None


def _with_hidden(ctx, reader, stored: dict, mailbox_ids: dict) -> dict:
    """New mailboxIds from a grantee, plus the email's mailboxes they cannot see (kept as they are)."""
    access = ctx.access(reader.account_id)
    return {**{m: True for m in stored["mailboxIds"] if not access.sees_mailbox(m)}, **mailbox_ids}


def check_destroy(self, ctx, reader, current: dict, args: dict) -> dict | None:
    why = rights_problem(ctx, reader, reader.email(current["id"]), None)
    return set_error("forbidden", why) if why else None


def update(self, ctx, writer, email_id: str, current: dict, changes: dict) -> None:
    mailbox_ids = changes.get("mailboxIds")
    if mailbox_ids is not None:
        mailbox_ids = _with_hidden(ctx, writer, writer.email(email_id), mailbox_ids)
    # the owner's `current` is the stored record, read in this transaction (fetch); a created
    # email's ("#cid") or a grantee's view is not
    stored = current if current.get("id") == email_id and ctx.access(writer.account_id).owner else None
    writer.update_email(email_id, keywords=changes.get("keywords"), mailbox_ids=mailbox_ids, record=stored)


def destroy(self, ctx, writer, email_id: str, current: dict, args: dict) -> None:
    writer.destroy_email(email_id)
