"""Email/set (RFC 8621 §4.6): create drafts from JSON, update keywords and mailboxIds (whole or by
patch), destroy."""

from __future__ import annotations

from app.blob import blob_in
from app.mail import mime
from app.mail.ingest import ingest
from app.protocol.errors import invalid_properties, set_error
from app.protocol.registry import MAIL, method
from app.protocol.standard import (
    apply_patch,
    check_if_in_state,
    check_set_args,
    finish_set,
    not_found,
    patch_set_error,
    set_response,
)
from store import ids

from .model import PROPERTIES, parse_header_property
from .validate import check_keywords, check_mailbox_ids, check_received_at

MUTABLE = ("keywords", "mailboxIds")
# properties a client may give when creating; the rest of PROPERTIES are server-set
CREATE_ONLY_SERVER_SET = {"id", "blobId", "threadId", "size", "hasAttachment", "preview", "headers"}


def _create(ctx, w, obj: dict) -> tuple[dict | None, dict | None]:
    """Returns (created info, None) or (None, SetError)."""
    problems: dict[str, str] = {}
    for prop in obj:
        if prop.startswith("header:"):
            if parse_header_property(prop) is None:
                problems[prop] = "malformed header property"
        elif prop not in PROPERTIES:
            problems[prop] = "unknown property"
        elif prop in CREATE_ONLY_SERVER_SET:
            problems[prop] = "server-set property"
    mailbox_ids = check_mailbox_ids(ctx, w, obj.get("mailboxIds"), problems)
    keywords = check_keywords(obj.get("keywords") or {}, problems)
    received_at = check_received_at(obj.get("receivedAt"), problems)
    content = {k: v for k, v in obj.items() if k not in ("mailboxIds", "keywords", "receivedAt")}

    def get_blob(blob_id: str) -> bytes | None:
        found = blob_in(w, ctx.resolve_id(blob_id) or blob_id)
        return found[0] if found else None

    raw, error = mime.build_message(content, get_blob)
    if error:
        if error.get("type") == "invalidProperties":
            for prop in error.get("properties") or []:
                problems.setdefault(prop, error.get("description") or "invalid")
        elif not problems:
            return None, set_error(error["type"], error.get("description") or error["type"],
                                   **{k: v for k, v in error.items() if k not in ("type", "description")})
    if problems:
        return None, invalid_properties(problems)
    existing = w.email_by_guid(ids.content_address(raw))
    if existing is not None:
        # the same bytes are already an Email here; like Email/import, say so (RFC 8621 §4.6, §4.8)
        return None, set_error("alreadyExists", "this account already has an identical message",
                               existingId=existing["id"])
    record, _, _ = ingest(w, raw, mailbox_ids, keywords, received_at)
    return {"id": record["id"], "blobId": record["blobId"], "threadId": record["threadId"],
            "size": record["size"]}, None


@method("Email/set", MAIL)
def email_set(ctx, args: dict) -> dict:
    account_id, create, update, destroy = check_set_args(ctx, args)
    with ctx.store.write(account_id) as w:
        old_state = w.state("Email")
        check_if_in_state(args, old_state)
        resp = set_response(account_id, old_state, old_state)
        for cid, obj in create.items():
            created, error = _create(ctx, w, obj)
            if error:
                resp["notCreated"][cid] = error
            else:
                ctx.created_ids[cid] = created["id"]
                resp["created"][cid] = created
        for raw_id, patch in update.items():
            email_id = ctx.resolve_id(raw_id) or raw_id
            current = w.email(email_id)
            if current is None:
                resp["notUpdated"][raw_id] = not_found(raw_id, "email")
                continue
            # patch paths name mailbox ids, which may be creation references ("mailboxIds/#new")
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
            keywords = mailbox_ids = None
            if "keywords" in patched and patched["keywords"] != current["keywords"]:
                keywords = check_keywords(patched["keywords"], problems)
            if patched.get("mailboxIds") != current["mailboxIds"]:
                mailbox_ids = check_mailbox_ids(ctx, w, patched.get("mailboxIds"), problems)
            error = patch_set_error(problems, patch_errors)
            if error:
                resp["notUpdated"][raw_id] = error
                continue
            if keywords is not None or mailbox_ids is not None:
                w.update_email(email_id, keywords=keywords, mailbox_ids=mailbox_ids)
            resp["updated"][email_id] = None
        for raw_id in destroy:
            email_id = ctx.resolve_id(raw_id) or raw_id
            if w.email(email_id) is None:
                resp["notDestroyed"][raw_id] = not_found(raw_id, "email")
                continue
            w.destroy_email(email_id)
            resp["destroyed"].append(email_id)
        w.flush()
        resp["newState"] = w.state("Email")
    return finish_set(resp)
