"""Mailbox/set (RFC 8621 §2.5)."""

from __future__ import annotations

from app.protocol.errors import invalid_properties, set_error
from app.protocol.registry import MAIL, method
from app.protocol.standard import (
    apply_patch,
    bool_arg,
    check_if_in_state,
    check_set_args,
    finish_set,
    not_found,
    patch_set_error,
    set_response,
)

from .model import OWNER_RIGHTS, PROPERTIES, ROLES, SERVER_SET

MUTABLE = ("name", "parentId", "role", "sortOrder", "isSubscribed")
MAX_NAME = 255
MAX_DEPTH = 10


def _validate(ctx, w, mailbox_id: str | None, obj: dict, creating: bool) -> tuple[dict, dict[str, str]]:
    """Checks every property of a Mailbox being created or updated; returns (fields, problems)."""
    problems: dict[str, str] = {}
    fields: dict = {}
    for prop in obj:
        if prop not in PROPERTIES:
            problems[prop] = "unknown property"
        elif prop in SERVER_SET and (creating or prop != "id"):
            problems[prop] = "server-set property"
    name = obj.get("name")
    if creating or "name" in obj:
        if not isinstance(name, str) or not name.strip():
            problems["name"] = "must be a non-empty string"
        elif len(name.encode()) > MAX_NAME:
            problems["name"] = f"longer than {MAX_NAME} bytes"
        elif any(ord(c) < 0x20 for c in name):
            problems["name"] = "must not contain control characters"
        else:
            fields["name"] = name
    if "parentId" in obj:
        parent = obj["parentId"]
        if parent is None:
            fields["parentId"] = None
        elif not isinstance(parent, str):
            problems["parentId"] = "must be a Mailbox id or null"
        else:
            resolved = ctx.resolve_id(parent)
            if resolved is None or w.mailbox(resolved) is None:
                problems["parentId"] = f"no mailbox {parent!r}"
            elif mailbox_id is not None and _is_descendant(w, resolved, mailbox_id):
                problems["parentId"] = "would make the mailbox its own ancestor"
            elif _depth(w, resolved) + _height(w, mailbox_id) > MAX_DEPTH:
                problems["parentId"] = f"mailboxes nest at most {MAX_DEPTH} levels deep"
            else:
                fields["parentId"] = resolved
    if "role" in obj:
        role = obj["role"]
        if role is None:
            fields["role"] = None
        elif not isinstance(role, str) or role.lower() not in ROLES:
            problems["role"] = "not a registered mailbox role"
        elif any(m["role"] == role.lower() and m["id"] != mailbox_id for m in w.mailboxes()):
            problems["role"] = f"another mailbox already has the role {role.lower()!r}"
        else:
            fields["role"] = role.lower()
    if "sortOrder" in obj:
        order = obj["sortOrder"]
        if not isinstance(order, int) or isinstance(order, bool) or not 0 <= order < 2**31:
            problems["sortOrder"] = "must be an unsigned integer"
        else:
            fields["sortOrder"] = order
    if "isSubscribed" in obj:
        if not isinstance(obj["isSubscribed"], bool):
            problems["isSubscribed"] = "must be a boolean"
        else:
            fields["isSubscribed"] = obj["isSubscribed"]
    if "name" in fields and "name" not in problems:
        parent = fields.get("parentId") if "parentId" in obj else (
            w.mailbox(mailbox_id).get("parentId") if mailbox_id else None)
        wanted = fields["name"].casefold()
        if any(m["name"].casefold() == wanted and m.get("parentId") == parent and m["id"] != mailbox_id
               for m in w.mailboxes()):
            problems["name"] = "a sibling mailbox already has this name"
    return fields, problems


def _is_descendant(w, candidate: str, ancestor: str) -> bool:
    """True if candidate is ancestor itself or lies below it."""
    seen = set()
    while candidate and candidate not in seen:
        if candidate == ancestor:
            return True
        seen.add(candidate)
        parent = w.mailbox(candidate)
        candidate = parent.get("parentId") if parent else None
    return False


def _height(w, mailbox_id: str | None) -> int:
    """Levels in the subtree rooted at mailbox_id (1 for a leaf or a mailbox being created)."""
    if mailbox_id is None:
        return 1
    children: dict[str, list[str]] = {}
    for mb in w.mailboxes():
        if mb.get("parentId"):
            children.setdefault(mb["parentId"], []).append(mb["id"])
    height, level, seen = 0, [mailbox_id], set()
    while level and height <= MAX_DEPTH:
        height += 1
        seen.update(level)
        level = [c for m in level for c in children.get(m, []) if c not in seen]
    return height


def _depth(w, mailbox_id: str) -> int:
    depth, seen = 0, set()
    while mailbox_id and mailbox_id not in seen:
        seen.add(mailbox_id)
        mb = w.mailbox(mailbox_id)
        mailbox_id = mb.get("parentId") if mb else None
        depth += 1
    return depth


def _creation_order(create: dict) -> list[tuple[str, dict]]:
    """RFC 8620 §5.3: creates run in an order where a "#parent" reference to another create in the
    same call is created first (a cycle keeps the given order and fails validation)."""
    pending = dict(create)
    ordered: list[tuple[str, dict]] = []
    while pending:
        progressed = False
        for cid, obj in list(pending.items()):
            parent = obj.get("parentId")
            if isinstance(parent, str) and parent.startswith("#") and parent[1:] in pending \
                    and parent[1:] != cid:
                continue
            ordered.append((cid, obj))
            del pending[cid]
            progressed = True
        if not progressed:
            ordered.extend(pending.items())
            break
    return ordered


@method("Mailbox/set", MAIL)
def mailbox_set(ctx, args: dict) -> dict:
    account_id, create, update, destroy = check_set_args(ctx, args, {"onDestroyRemoveEmails"})
    remove_emails = bool_arg(args, "onDestroyRemoveEmails")
    with ctx.store.write(account_id) as w:
        old_state = w.state("Mailbox")
        check_if_in_state(args, old_state)
        resp = set_response(account_id, old_state, old_state)
        for cid, obj in _creation_order(create):
            fields, problems = _validate(ctx, w, None, obj, creating=True)
            if problems:
                resp["notCreated"][cid] = invalid_properties(problems)
                continue
            record = w.create_mailbox(fields)
            ctx.created_ids[cid] = record["id"]
            # §5.3: return server-set properties and the defaults the client left out
            created = {"id": record["id"], "myRights": dict(OWNER_RIGHTS),
                       **{k: record[k] for k in ("totalEmails", "unreadEmails", "totalThreads",
                                                 "unreadThreads")}}
            for prop in ("parentId", "role", "sortOrder", "isSubscribed"):
                if prop not in obj:
                    created[prop] = record[prop]
            resp["created"][cid] = created
        for raw_id, patch in update.items():
            mailbox_id = ctx.resolve_id(raw_id) or raw_id
            current = w.mailbox(mailbox_id)
            if current is None:
                resp["notUpdated"][raw_id] = not_found(raw_id, "mailbox")
                continue
            patched, problems, patch_errors = apply_patch(current, patch, MUTABLE)
            changed = {k: v for k, v in patched.items() if k in MUTABLE and v != current.get(k)}
            fields, more = _validate(ctx, w, mailbox_id, changed, creating=False)
            problems.update(more)
            error = patch_set_error(problems, patch_errors)
            if error:
                resp["notUpdated"][raw_id] = error
                continue
            if fields:
                w.update_mailbox(mailbox_id, fields)
            resp["updated"][mailbox_id] = None
        for raw_id in destroy:
            mailbox_id = ctx.resolve_id(raw_id) or raw_id
            current = w.mailbox(mailbox_id)
            if current is None:
                resp["notDestroyed"][raw_id] = not_found(raw_id, "mailbox")
                continue
            if any(m.get("parentId") == mailbox_id for m in w.mailboxes()):
                resp["notDestroyed"][raw_id] = set_error(
                    "mailboxHasChild", "the mailbox has child mailboxes; destroy or move them first")
                continue
            if current["totalEmails"]:
                if not remove_emails:
                    resp["notDestroyed"][raw_id] = set_error(
                        "mailboxHasEmail", "the mailbox has emails; pass onDestroyRemoveEmails to remove them")
                    continue
                # §2.5: emails only here are destroyed, others just leave this mailbox
                for email_id in list(w.email_ids_by_date(mailbox_id)):
                    email = w.email(email_id)
                    if set(email["mailboxIds"]) == {mailbox_id}:
                        w.destroy_email(email_id)
                    else:
                        boxes = {k: True for k in email["mailboxIds"] if k != mailbox_id}
                        w.update_email(email_id, mailbox_ids=boxes)
            w.destroy_mailbox(mailbox_id)
            resp["destroyed"].append(mailbox_id)
        w.flush()
        resp["newState"] = w.state("Mailbox")
    return finish_set(resp)
