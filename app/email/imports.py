"""Email/import (RFC 8621 §4.8): messages uploaded as blobs become Emails, each atomically."""

from __future__ import annotations

from app.blob import blob_in
from app.mail.ingest import ingest
from app.mail.mime import message_problem
from app.protocol.errors import MethodError, invalid_arguments, invalid_properties, set_error
from app.protocol.registry import MAIL, method
from app.protocol.standard import check_if_in_state, check_known_args
from app.quota import over_quota
from store import OverQuota

from .validate import check_keywords, check_mailbox_ids, check_received_at, rights_problem

IMPORT_PROPERTIES = {"blobId", "mailboxIds", "keywords", "receivedAt"}


@method("Email/import", MAIL)
def email_import(ctx, args: dict) -> dict:
    check_known_args(args, {"accountId", "ifInState", "emails"})
    account_id = ctx.account_id(args)
    emails = args.get("emails")
    if not isinstance(emails, dict) or not all(isinstance(v, dict) for v in emails.values()):
        raise invalid_arguments("emails must map creation ids to EmailImport objects")
    if len(emails) > ctx.limits.max_objects_in_set:
        raise MethodError("requestTooLarge", f"more than {ctx.limits.max_objects_in_set} emails")
    created, not_created = {}, {}
    with ctx.store.write(account_id) as w:
        old_state = w.state("Email")
        check_if_in_state(args, old_state)
        for cid, spec in emails.items():
            problems: dict[str, str] = {}
            for prop in set(spec) - IMPORT_PROPERTIES:
                problems[prop] = "unknown EmailImport property"
            blob_id = spec.get("blobId")
            blob_id = ctx.resolve_id(blob_id) if isinstance(blob_id, str) else blob_id
            # a whole upload (G...) or a part of a stored message (P..., e.g. an attached email)
            found = blob_in(w, blob_id, ctx.access(account_id)) if isinstance(blob_id, str) else None
            raw = found[0] if found else None
            if not isinstance(blob_id, str):
                problems["blobId"] = "must be a blob id"
            mailbox_ids = check_mailbox_ids(ctx, w, spec.get("mailboxIds"), problems)
            keywords = check_keywords(spec.get("keywords") or {}, problems)
            received_at = check_received_at(spec.get("receivedAt"), problems)
            if problems:
                not_created[cid] = invalid_properties(problems)
                continue
            why = rights_problem(ctx, w, None, {"mailboxIds": mailbox_ids, "keywords": keywords})
            if why:
                not_created[cid] = set_error("forbidden", why)
                continue
            if raw is None:
                not_created[cid] = set_error("blobNotFound", f"no blob {blob_id!r} in this account",
                                             notFound=[blob_id])
                continue
            problem = message_problem(raw)
            if problem is not None:  # §4.8: "the server MAY reject the import with an invalidEmail"
                not_created[cid] = set_error("invalidEmail", f"the blob is not an email message ({problem})")
                continue
            try:
                record, is_new, _ = ingest(w, raw, mailbox_ids, keywords, received_at)
            except OverQuota as exc:  # refused before anything was written (§4.8: overQuota)
                not_created[cid] = over_quota(exc)
                continue
            if not is_new:
                # §4.8: duplicates are refused, naming the email already holding this message
                not_created[cid] = set_error("alreadyExists", "this account already has this message",
                                             existingId=record["id"])
                continue
            ctx.created_ids[cid] = record["id"]
            created[cid] = {"id": record["id"], "blobId": record["blobId"],
                            "threadId": record["threadId"], "size": record["size"]}
        w.flush()
        new_state = w.state("Email")
    return {"accountId": account_id, "oldState": old_state, "newState": new_state,
            "created": created or None, "notCreated": not_created or None}
