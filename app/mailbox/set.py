"""Mailbox/set (RFC 8621 §2.5).

RFC 8620 §5.3: "The final state MUST be valid after the /set is finished; however, the server
may have to transition through invalid intermediate states (not exposed to the client) while
processing the individual create/update/destroy requests."  So each object is first checked on
its own (property types and values), then the state the whole call would leave is judged as one:
sibling names, unique roles, no cycle, the depth limit, no child left under a destroyed mailbox.
An operation that makes that state invalid is refused, which changes the state, so it is judged
again until nothing more is refused; only then is anything written.  Destroying a parent and its
children in one call, swapping two names or two roles, or moving a tree in several steps all work
whatever order the client listed them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

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

from .model import OWNER_RIGHTS, PROPERTIES, ROLES, SERVER_SET, name_key, normalize_name, to_jmap

MUTABLE = ("name", "parentId", "role", "sortOrder", "isSubscribed")
MAX_NAME = 255
MAX_DEPTH = 10
DEFAULTS = {"parentId": None, "role": None, "sortOrder": 0, "isSubscribed": True}


@dataclass
class _Op:
    kind: str  # "create", "update" or "destroy"
    key: str  # the creation id, or the id as the client wrote it
    mailbox_id: str  # the mailbox's id; "#creationId" for one created by this call
    fields: dict = field(default_factory=dict)  # new property values (create, update)
    error: dict | None = None

    @property
    def moves(self) -> bool:
        return self.kind == "create" or "parentId" in self.fields


def _check_values(obj: dict, creating: bool) -> tuple[dict, dict[str, str]]:
    """The properties of one Mailbox being created, or of one update, checked on their own."""
    problems: dict[str, str] = {}
    fields: dict = {}
    for prop in obj:
        if prop not in PROPERTIES:
            problems[prop] = "unknown property"
        elif prop in SERVER_SET:  # (an update's server-set properties equal to the current value
            problems[prop] = "server-set property"  # were dropped before, as §5.3 allows)
    if creating or "name" in obj:
        name = obj.get("name")
        if not isinstance(name, str) or not name.strip():
            problems["name"] = "must be a non-empty string"
        elif any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
            problems["name"] = "must not contain control characters"
        else:
            name = normalize_name(name)  # §2: Net-Unicode (RFC 5198), so NFC
            if len(name.encode()) > MAX_NAME:
                problems["name"] = f"longer than {MAX_NAME} octets"
            else:
                fields["name"] = name
    if "parentId" in obj:
        parent = obj["parentId"]
        if parent is not None and not isinstance(parent, str):
            problems["parentId"] = "must be a Mailbox id or null"
        else:
            fields["parentId"] = parent
    if "role" in obj:
        role = obj["role"]
        if role is not None and (not isinstance(role, str) or role.lower() not in ROLES):
            problems["role"] = "not a registered mailbox role"
        else:
            fields["role"] = role.lower() if role else None
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
    return fields, problems


class _Plan:
    """The operations of one Mailbox/set call and the state they would leave."""

    def __init__(self, current: dict[str, dict]) -> None:
        self.current = current
        self.ops: list[_Op] = []

    def accepted(self, kind: str | None = None) -> list[_Op]:
        return [op for op in self.ops if op.error is None and (kind is None or op.kind == kind)]

    def created(self, placeholder: str) -> dict | None:
        """The record a create of this call would make, while that create is accepted."""
        for op in self.accepted("create"):
            if op.mailbox_id == placeholder:
                return {"id": placeholder, **DEFAULTS, **op.fields, "totalEmails": 0}
        return None

    def final(self) -> dict[str, dict]:
        state = {k: dict(v) for k, v in self.current.items()}
        for op in self.accepted("create"):
            state[op.mailbox_id] = {"id": op.mailbox_id, **DEFAULTS, **op.fields}
        for op in self.accepted("update"):
            if op.mailbox_id in state:
                state[op.mailbox_id].update(op.fields)
        for op in self.accepted("destroy"):
            state.pop(op.mailbox_id, None)
        return state

    def judge(self) -> None:
        """Refuses operations until the final state is valid."""
        while self._refuse_one_round():
            pass

    def _refuse_one_round(self) -> bool:
        state = self.final()
        by_id = {op.mailbox_id: op for op in self.accepted() if op.kind != "destroy"}
        refused = False

        def refuse(op: _Op, error: dict) -> None:
            nonlocal refused
            if op.error is None:
                op.error = error
                refused = True

        # an update or destroy of a mailbox this call was to create, whose create was refused
        for op in self.accepted():
            if op.kind != "create" and op.mailbox_id.startswith("#") and self.created(op.mailbox_id) is None:
                refuse(op, not_found(op.key, "mailbox"))
        # a destroyed mailbox may not leave a child behind
        children: dict[str | None, list[str]] = {}
        for mb in state.values():
            children.setdefault(mb.get("parentId"), []).append(mb["id"])
        for op in self.accepted("destroy"):
            if children.get(op.mailbox_id):
                refuse(op, set_error("mailboxHasChild",
                                     "the mailbox has child mailboxes; destroy or move them too"))
        if refused:
            return True  # the kept mailboxes are parents again: judge the rest on that state
        # the parent exists, no cycle, no deeper than MAX_DEPTH
        for op in self.accepted():
            if op.kind == "destroy" or not op.moves or op.mailbox_id not in state:
                continue  # (a mailbox created and destroyed by this call is not in the final state)
            parent = state[op.mailbox_id].get("parentId")
            if parent is not None and parent not in state:
                refuse(op, invalid_properties({"parentId": f"no mailbox {parent!r}"}))
            elif _in_cycle(state, op.mailbox_id):
                refuse(op, invalid_properties({"parentId": "would make the mailbox its own ancestor"}))
            elif _depth(state, op.mailbox_id) + _height(children, op.mailbox_id) - 1 > MAX_DEPTH:
                refuse(op, invalid_properties({"parentId": f"mailboxes nest at most {MAX_DEPTH} levels deep"}))
        # unique names among siblings, unique roles; when two clash, the one this call did not
        # touch (or the first it touched) keeps its name or role
        order = {op.mailbox_id: i for i, op in enumerate(self.ops)}
        for prop, key_of, message in (
            ("name", lambda mb: (mb.get("parentId"), name_key(mb["name"])),
             "a sibling mailbox already has this name"),
            ("role", lambda mb: mb.get("role"), "another mailbox already has this role"),
        ):
            groups: dict[object, list[str]] = {}
            for mb in state.values():
                if prop == "role" and not mb.get("role"):
                    continue
                groups.setdefault(key_of(mb), []).append(mb["id"])
            for ids in groups.values():
                if len(ids) < 2:
                    continue
                touched = [i for i in ids if i in by_id and (prop in by_id[i].fields
                                                              or (prop == "name" and by_id[i].moves))]
                touched.sort(key=lambda i: order[i])
                keep_first = len(touched) == len(ids)
                for mailbox_id in touched[1:] if keep_first else touched:
                    refuse(by_id[mailbox_id], invalid_properties({prop: message}))
        return refused


def _same(a: object, b: object) -> bool:
    """Equal as JSON values: true is not 1."""
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


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
    while level and height <= MAX_DEPTH:
        height += 1
        seen.update(level)
        level = [c for m in level for c in children.get(m, []) if c not in seen]
    return height


def _resolve(ctx, ref: str, create: dict) -> str:
    """An id as the client wrote it: "#cid" of a create in this call stays a placeholder until it
    is created; "#cid" of an earlier call in the request is its id."""
    if ref.startswith("#") and ref[1:] in create:
        return ref
    return ctx.resolve_id(ref) or ref


@method("Mailbox/set", MAIL)
def mailbox_set(ctx, args: dict) -> dict:
    account_id, create, update, destroy = check_set_args(ctx, args, {"onDestroyRemoveEmails"})
    remove_emails = bool_arg(args, "onDestroyRemoveEmails")
    with ctx.store.write(account_id) as w:
        old_state = w.state("Mailbox")
        check_if_in_state(args, old_state)
        resp = set_response(account_id, old_state, old_state)
        plan = _Plan({mb["id"]: mb for mb in w.mailboxes()})
        known = set(plan.current) | {"#" + cid for cid in create}

        def parent_known(op: _Op, problems: dict[str, str]) -> None:
            parent = op.fields.get("parentId")
            if isinstance(parent, str):
                op.fields["parentId"] = parent = _resolve(ctx, parent, create)
                if parent not in known:
                    problems["parentId"] = f"no mailbox {parent!r}"

        for cid, obj in create.items():
            fields, problems = _check_values(obj, creating=True)
            op = _Op("create", cid, "#" + cid, fields)
            parent_known(op, problems)
            op.error = invalid_properties(problems) if problems else None
            plan.ops.append(op)
        for raw_id, patch in update.items():
            mailbox_id = _resolve(ctx, raw_id, create)
            current = plan.current.get(mailbox_id) or plan.created(mailbox_id)
            if current is None:
                plan.ops.append(_Op("update", raw_id, mailbox_id, error=not_found(raw_id, "mailbox")))
                continue
            patched, problems, patch_errors = apply_patch(current, patch, MUTABLE)
            shown = to_jmap(current)
            # §5.3: a server-set property given with its current value is not an error
            roots = {path.split("/", 1)[0] for path in patch}
            roots = {r for r in roots if not (r in SERVER_SET and _same(patched.get(r), shown.get(r)))}
            fields, more = _check_values({k: patched.get(k) for k in roots}, creating=False)
            problems.update(more)
            op = _Op("update", raw_id, mailbox_id, fields)
            parent_known(op, problems)
            op.error = patch_set_error(problems, patch_errors)
            plan.ops.append(op)
        for raw_id in destroy:
            mailbox_id = _resolve(ctx, raw_id, create)
            current = plan.current.get(mailbox_id) or plan.created(mailbox_id)
            op = _Op("destroy", raw_id, mailbox_id)
            if current is None:
                op.error = not_found(raw_id, "mailbox")
            elif current["totalEmails"] and not remove_emails:
                op.error = set_error("mailboxHasEmail",
                                     "the mailbox has emails; pass onDestroyRemoveEmails to remove them")
            plan.ops.append(op)

        plan.judge()
        _apply(ctx, w, plan, resp)
        w.flush()
        resp["newState"] = w.state("Mailbox")
    return finish_set(resp)


def _apply(ctx, w, plan: _Plan, resp: dict) -> None:
    """Writes the accepted operations of a judged plan: creates parents first, then updates, then
    destroys children first; fills in the response."""
    for op in plan.ops:
        if op.error is not None:
            bucket = {"create": "notCreated", "update": "notUpdated", "destroy": "notDestroyed"}[op.kind]
            resp[bucket][op.key] = op.error
    real: dict[str, str] = {}  # "#cid" -> id
    pending = plan.accepted("create")
    while pending:
        ready = [op for op in pending if not str(op.fields.get("parentId") or "").startswith("#")
                 or op.fields["parentId"] in real]
        for op in ready:
            fields = dict(op.fields)
            if fields.get("parentId") in real:
                fields["parentId"] = real[fields["parentId"]]
            record = w.create_mailbox(fields)
            real[op.mailbox_id] = record["id"]
            ctx.created_ids[op.key] = record["id"]
            # §5.3: the server-set properties and the defaults the client left out
            created = {"id": record["id"], "myRights": dict(OWNER_RIGHTS),
                       **{k: record[k] for k in ("totalEmails", "unreadEmails", "totalThreads",
                                                 "unreadThreads")}}
            for prop in DEFAULTS:
                if prop not in op.fields:
                    created[prop] = record[prop]
            resp["created"][op.key] = created
        pending = [op for op in pending if op not in ready]
        if not ready:  # cannot happen after judge(): a cycle among creates is refused there
            break
    for op in plan.accepted("update"):
        mailbox_id = real.get(op.mailbox_id, op.mailbox_id)
        before = w.mailbox(mailbox_id) or {}
        fields = {k: real.get(v, v) if k == "parentId" else v for k, v in op.fields.items()}
        changed = {k: v for k, v in fields.items() if before.get(k) != v}
        if changed:
            w.update_mailbox(mailbox_id, changed)
        resp["updated"][mailbox_id] = None
    destroys = plan.accepted("destroy")
    for op in sorted(destroys, key=lambda op: -_depth(plan.current, op.mailbox_id)):  # children first
        mailbox_id = real.get(op.mailbox_id, op.mailbox_id)
        if (w.mailbox(mailbox_id) or {}).get("totalEmails"):
            _remove_emails(w, mailbox_id)
        w.destroy_mailbox(mailbox_id)
    resp["destroyed"].extend(real.get(op.mailbox_id, op.mailbox_id) for op in destroys)


def _remove_emails(w, mailbox_id: str) -> None:
    # §2.5 onDestroyRemoveEmails: emails only in this mailbox are destroyed, others just leave it
    for email_id in list(w.email_ids_by_date(mailbox_id)):
        email = w.email(email_id)
        if set(email["mailboxIds"]) == {mailbox_id}:
            w.destroy_email(email_id)
        else:
            boxes = {k: True for k in email["mailboxIds"] if k != mailbox_id}
            w.update_email(email_id, mailbox_ids=boxes)
