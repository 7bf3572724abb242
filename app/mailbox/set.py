"""Mailbox/set rules (RFC 8621 §2.5): what a Mailbox must satisfy on its own and across the call.

RFC 8620 §5.3: "The final state MUST be valid after the /set is finished; however, the server
may have to transition through invalid intermediate states (not exposed to the client) while
processing the individual create/update/destroy requests."  So each object is checked on its own
in `validate`, and the state the whole call would leave is judged as one in `judge`: sibling names,
unique roles, no cycle, the depth limit, no child left under a destroyed mailbox.  The machinery
(app/protocol/machinery.py) judges again after each round that refused something, and writes
nothing before that.  Destroying a parent and its children in one call, swapping two names or two
roles, or moving a tree in several steps all work whatever order the client listed them in.
"""

from __future__ import annotations

from app.access import RIGHTS, normal_share_with, share_with_problem
from app.capabilities import MAX_MAILBOX_DEPTH
from app.protocol import machinery
from app.protocol.errors import invalid_properties, set_error
from app.protocol.standard import bool_arg

from .model import ROLES, name_key, normalize_name

MAX_NAME = 255


def validate(self, ctx, reader, fields: dict, current: dict | None, problems: dict[str, str]) -> dict:
    if "name" in fields:
        name = fields["name"]
        if not name.strip():
            problems["name"] = "must not be empty"
        elif any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
            problems["name"] = "must not contain control characters"
        else:
            fields["name"] = normalize_name(name)  # §2: Net-Unicode (RFC 5198), so NFC
            if len(fields["name"].encode()) > MAX_NAME:
                problems["name"] = f"longer than {MAX_NAME} octets"
    parent = fields.get("parentId")
    if parent is not None and not parent.startswith("#") and reader.mailbox(parent) is None:
        problems["parentId"] = f"no mailbox {parent!r}"
    if fields.get("role") is not None:
        if fields["role"].lower() not in ROLES:
            problems["role"] = "not a registered mailbox role"
        fields["role"] = fields["role"].lower()
    if fields.get("sortOrder", 0) >= 2**31:
        problems["sortOrder"] = "must be less than 2^31"
    if fields.get("shareWith") is not None:
        why = share_with_problem(ctx.store, reader.account_id, fields["shareWith"], RIGHTS, "MailboxRights",
                                 (current or {}).get("shareWith"))
        if why:
            problems["shareWith"] = why
        else:
            fields["shareWith"] = normal_share_with(fields["shareWith"], RIGHTS)
    return fields


# -- what a grantee may do in a shared account (RFC 8621 §2 MailboxRights)
def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
    fields, error = machinery.prepare_create(self, ctx, reader, obj)
    access = ctx.access(reader.account_id)
    if error is None and not access.owner:
        parent = fields.get("parentId")
        if fields.get("shareWith") is not None:
            error = set_error("forbidden", "only the owner shares a mailbox")
        elif parent is None or parent.startswith("#") or not access.may(parent, "mayCreateChild"):
            error = set_error("forbidden", "creating a mailbox here needs mayCreateChild on its parent")
        else:  # a child is shared as its parent is (IMAP ACLs are inherited the same way)
            fields["shareWith"] = (reader.mailbox(parent) or {}).get("shareWith")
    return fields, error


def prepare_update(self, ctx, reader, current: dict, patch: dict, resolve) -> tuple[dict, dict | None]:
    fields, error = machinery.prepare_update(self, ctx, reader, current, patch, resolve)
    access = ctx.access(reader.account_id)
    if error is None and not access.owner:
        if "shareWith" in fields:
            error = set_error("forbidden", "only the owner shares a mailbox")
        elif set(fields) - {"isSubscribed"} and not access.may(current["id"], "mayRename"):
            error = set_error("forbidden", "changing this mailbox needs mayRename")
        elif fields.get("parentId") is not None and not access.may(fields["parentId"], "mayCreateChild"):
            error = set_error("forbidden", "moving a mailbox needs mayCreateChild on its new parent")
    return fields, error


def check_set_args(self, ctx, args: dict) -> None:
    bool_arg(args, "onDestroyRemoveEmails")


def check_destroy(self, ctx, reader, mailbox: dict, args: dict) -> dict | None:
    access = ctx.access(reader.account_id)
    if not access.may(mailbox["id"], "mayDelete"):
        return set_error("forbidden", "destroying this mailbox needs mayDelete")
    if mailbox.get("totalEmails") and not access.may(mailbox["id"], "mayRemoveItems"):
        return set_error("forbidden", "destroying a mailbox with emails needs mayRemoveItems")
    if mailbox.get("totalEmails") and not bool_arg(args, "onDestroyRemoveEmails"):
        return set_error("mailboxHasEmail", "the mailbox has emails; pass onDestroyRemoveEmails to remove them")
    return None


def destroy(self, ctx, writer, mailbox_id: str, current: dict, args: dict) -> None:
    if (writer.mailbox(mailbox_id) or {}).get("totalEmails"):
        # §2.5 onDestroyRemoveEmails: emails only here are destroyed, others just leave it
        for email_id in list(writer.email_ids_by_date(mailbox_id)):
            email = writer.email(email_id)
            if set(email["mailboxIds"]) == {mailbox_id}:
                writer.destroy_email(email_id)
            else:
                writer.update_email(email_id, mailbox_ids={k: True for k in email["mailboxIds"] if k != mailbox_id})
    writer.destroy_mailbox(mailbox_id)


def judge(self, ctx, reader, plan) -> None:
    """One round of the final-state rules; refuses what breaks them (see the module docstring)."""
    current = {mb["id"]: mb for mb in reader.mailboxes()}
    plan.destroy_order = lambda ops: sorted(ops, key=lambda op: -_depth(current, op.obj_id))  # children first
    state = plan.final_state(current)
    touched = {op.obj_id: op for op in plan.accepted() if op.kind != "destroy"}
    children: dict[str | None, list[str]] = {}
    for mb in state.values():
        children.setdefault(mb.get("parentId"), []).append(mb["id"])
    # an update or destroy of a mailbox this call was to create, whose create was refused
    for op in plan.accepted():
        if op.kind != "create" and op.obj_id.startswith("#") and plan.created(op.obj_id) is None:
            plan.refuse(op, set_error("notFound", f"no mailbox {op.key!r}"))
    # a destroyed mailbox may not leave a child behind; the kept ones are parents again, so the
    # rest is judged in the next round
    refused = plan.refused
    for op in plan.accepted("destroy"):
        if children.get(op.obj_id):
            plan.refuse(op, set_error("mailboxHasChild", "the mailbox has child mailboxes; destroy or move them too"))
    if plan.refused != refused:
        return
    # the parent exists, no cycle, no deeper than the limit
    for op in plan.accepted():
        if op.kind == "destroy" or not (op.kind == "create" or "parentId" in op.fields) or op.obj_id not in state:
            continue  # (a mailbox created and destroyed by this call is not in the final state)
        parent = state[op.obj_id].get("parentId")
        if parent is not None and parent not in state:
            plan.refuse(op, invalid_properties({"parentId": f"no mailbox {parent!r}"}))
        elif _in_cycle(state, op.obj_id):
            plan.refuse(op, invalid_properties({"parentId": "would make the mailbox its own ancestor"}))
        elif _depth(state, op.obj_id) + _height(children, op.obj_id) - 1 > MAX_MAILBOX_DEPTH:
            plan.refuse(op, invalid_properties(
                {"parentId": f"mailboxes nest at most {MAX_MAILBOX_DEPTH} levels deep"}))
    # unique names among siblings, unique roles: when two clash, the one this call did not touch
    # (or the first it touched) keeps its name or role
    order = {op.obj_id: i for i, op in enumerate(plan.ops)}
    for prop, key_of, message in (
        ("name", lambda mb: (mb.get("parentId"), name_key(mb["name"])), "a sibling mailbox already has this name"),
        ("role", lambda mb: mb.get("role"), "another mailbox already has this role"),
    ):
        groups: dict[object, list[str]] = {}
        for mb in state.values():
            if prop == "role" and not mb.get("role"):
                continue
            groups.setdefault(key_of(mb), []).append(mb["id"])
        for group in groups.values():
            if len(group) < 2:
                continue
            clashing = [i for i in group if i in touched and (
                prop in touched[i].fields or touched[i].kind == "create"
                or (prop == "name" and "parentId" in touched[i].fields))]
            clashing.sort(key=lambda i: order[i])
            for mailbox_id in clashing[1:] if len(clashing) == len(group) else clashing:
                plan.refuse(touched[mailbox_id], invalid_properties({prop: message}))


def _in_cycle(state: dict[str, dict], mailbox_id: str) -> bool:
    seen: set[str] = set()
    current: str | None = mailbox_id
    while current is not None and current in state:
        if current in seen:
            return True
        seen.add(current)
        current = state[current].get("parentId")
    return False


def _depth(state: dict[str, dict], mailbox_id: str) -> int:
    """Levels from the top down to this mailbox (1 for a top-level one); cycle-safe."""
    depth, seen, current = 0, set(), mailbox_id
    while current is not None and current in state and current not in seen:
        seen.add(current)
        current = state[current].get("parentId")
        depth += 1
    return depth


def _height(children: dict[str | None, list[str]], mailbox_id: str) -> int:
    """Levels in the subtree rooted at mailbox_id (1 for a leaf)."""
    height, level, seen = 0, [mailbox_id], set()
    while level and height <= MAX_MAILBOX_DEPTH:
        height += 1
        seen.update(level)
        level = [c for m in level for c in children.get(m, []) if c not in seen]
    return height
