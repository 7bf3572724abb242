"""The standard methods of RFC 8620 §5, written once: /get, /changes, /set, /query, /queryChanges and
/copy for any registered `DataType` (app/protocol/types.py).  A type supplies only what is its own
through the hooks of `DataType`; everything here is the same for every type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cmp_to_key, partial

from store import CannotCalculateChanges

from .errors import MethodError, invalid_arguments, invalid_properties
from .query import check_filter, check_sort, evaluate_filter, query_changes
from .registry import register
from .standard import (
    apply_patch,
    bool_arg,
    check_if_in_state,
    check_known_args,
    finish_set,
    id_list_arg,
    not_found,
    patch_path_errors,
    patch_set_error,
    properties_arg,
    query_window,
    same_json,
    set_response,
    slice_results,
    uint_arg,
)
from .types import MAX_VALUE_DEPTH, nests_deeper

__all__ = ["Op", "Plan", "generic_query_ids", "prepare_create", "prepare_update", "register_standard_methods"]


def register_standard_methods(dt) -> None:
    handlers = {"get": get, "changes": changes, "set": set_, "query": query, "queryChanges": query_changes_,
                "copy": copy}
    for name in dt.methods:
        register(f"{dt.name}/{name}", dt.capability, partial(handlers[name], dt))


def _scope(dt, ctx, args: dict) -> tuple[str, dict]:
    """(the account whose store holds the objects, the accountId part of the response)."""
    if dt.account_scoped:
        account_id = ctx.account_id(args)
        return account_id, {"accountId": account_id}
    return ctx.user["accountId"], {}  # RFC 8620 §7.2: per user, no accountId argument


def _base_args(dt) -> set[str]:
    return {"accountId"} if dt.account_scoped else set()


# ----------------------------------------------------------------------------------- /get (§5.1)
def get(dt, ctx, args: dict) -> dict:
    check_known_args(args, {"ids", "properties", *dt.get_args} | _base_args(dt))
    account_id, head = _scope(dt, ctx, args)
    ids = id_list_arg(ctx, args, "ids", ctx.limits.max_objects_in_get)
    props, opts = dt.parse_get_args(ctx, args)
    if props is None:
        props = properties_arg(args, "properties", list(dt.properties), dt.defaults_for_get())
    hidden = [p for p in props if dt.properties.get(p) is not None and dt.properties[p].hidden]
    if "id" not in props:
        props.insert(0, "id")  # §5.1: the id is always returned
    found, missing = [], []
    with ctx.store.read(account_id) as reader:
        if dt.has_state:
            head["state"] = dt.current_state(ctx, reader)
        if ids is None:
            ids = []
            for obj_id in dt.all_ids(ctx, reader):
                if len(ids) == ctx.limits.max_objects_in_get:
                    raise MethodError("requestTooLarge", f"more than {len(ids)} {dt.name} objects for "
                                      "ids: null; page with /query")
                ids.append(obj_id)
        for obj_id in dict.fromkeys(ids):
            obj = dt.fetch(ctx, reader, obj_id)
            if obj is None:
                missing.append(obj_id)
            else:
                shown = dt.render(ctx, reader, obj, props, opts)
                for prop in hidden:  # e.g. PushSubscription url and keys (§7.2): never returned
                    shown[prop] = None
                found.append(shown)
    return {**head, "list": found, "notFound": missing}


# ------------------------------------------------------------------------------- /changes (§5.2)
def changes(dt, ctx, args: dict) -> dict:
    check_known_args(args, {"sinceState", "maxChanges"} | _base_args(dt))
    account_id, head = _scope(dt, ctx, args)
    since = args.get("sinceState")
    if not isinstance(since, str):
        raise invalid_arguments("sinceState must be a string")
    max_changes = uint_arg(args, "maxChanges", None, minimum=1)
    with ctx.store.read(account_id) as reader:
        try:
            ch = reader.changes(dt.name, since, max_changes)
        except CannotCalculateChanges as exc:
            raise MethodError("cannotCalculateChanges", f"cannot calculate changes from {since!r}: {exc}") \
                from None
        if not ctx.access(account_id).owner:
            ch = dt.shared_changes(ctx, reader, ch)
    resp = {**head, "oldState": since, "newState": ch.new_state, "hasMoreChanges": ch.has_more,
            "created": ch.created, "updated": ch.updated, "destroyed": ch.destroyed}
    dt.changes_extra(resp, ch)
    return resp


# ----------------------------------------------------------------------------------- /set (§5.3)
@dataclass
class Op:
    """One create, update or destroy of a /set call."""

    kind: str  # "create", "update" or "destroy"
    key: str  # the creation id, or the id as the client wrote it
    obj_id: str  # the object's id; "#creationId" for an object this call creates
    fields: dict = field(default_factory=dict)  # create: every property; update: the changed ones
    current: dict | None = None  # update, destroy: the object before the call
    error: dict | None = None
    sent: dict = field(default_factory=dict)  # create: the object as the client sent it


class Plan:
    """The operations of one /set call, judged on the state they would leave together."""

    def __init__(self, dt) -> None:
        self.dt = dt
        self.ops: list[Op] = []
        self.refused = 0
        self.destroy_order: Callable[[list[Op]], list[Op]] | None = None  # a type may reorder destroys

    def accepted(self, kind: str | None = None) -> list[Op]:
        return [op for op in self.ops if op.error is None and (kind is None or op.kind == kind)]

    def refuse(self, op: Op, error: dict) -> None:
        if op.error is None:
            op.error = error
            self.refused += 1

    def created(self, placeholder: str) -> dict | None:
        """The object an accepted create of this call would make ("#cid")."""
        for op in self.accepted("create"):
            if op.obj_id == placeholder:
                return {"id": placeholder, **op.fields}
        return None

    def final_state(self, objects: dict[str, dict]) -> dict[str, dict]:
        """objects (id -> object, as they are) after the accepted operations."""
        state = {k: dict(v) for k, v in objects.items()}
        for op in self.accepted("create"):
            state[op.obj_id] = {"id": op.obj_id, **op.fields}
        for op in self.accepted("update"):
            if op.obj_id in state:
                state[op.obj_id].update(op.fields)
        for op in self.accepted("destroy"):
            state.pop(op.obj_id, None)
        return state


def _resolve_ref(ctx, value: str, create: dict) -> str:
    """"#cid" of a create in this call stays a placeholder until it is created; "#cid" of an earlier
    call in the request is its id (§5.3)."""
    if value.startswith("#") and value[1:] in create:
        return value
    return ctx.resolve_id(value) or value


def _resolve_ids(dt, ctx, obj: dict, create: dict) -> dict:
    """Creation-id references in Id properties and in the keys of Id maps."""
    out = {}
    for key, value in obj.items():
        spec = dt.properties.get(key)
        if spec is not None and isinstance(value, str) and spec.type == "Id" and value.startswith("#"):
            value = _resolve_ref(ctx, value, create)
        elif spec is not None and isinstance(value, dict) and spec.type.startswith("Id["):
            value = {_resolve_ref(ctx, k, create) if k.startswith("#") else k: v for k, v in value.items()}
        out[key] = value
    return out


def _check_properties(dt, obj: dict, current: dict | None, problems: dict[str, str]) -> dict:
    """Every property of a create (current None) or the changed roots of an update, checked against
    the declarations; returns the values that are the client's to set."""
    fields = {}
    for prop, value in obj.items():
        spec = dt.properties.get(prop)
        if spec is None:
            problems[prop] = "unknown property"
            continue
        if current is not None and (spec.server_set or spec.immutable):
            if same_json(value, current.get(prop)):
                continue  # §5.3: the current value may be repeated
            problems[prop] = "server-set property" if spec.server_set else "immutable property"
            continue
        if current is None and spec.server_set:
            if value is not None:
                problems[prop] = "server-set property"
            continue
        if value is not None and isinstance(value, str) and value.startswith("#") and spec.type == "Id":
            fields[prop] = value  # a creation reference, checked by the type against the final state
            continue
        why = spec.check(value)
        if why:
            problems[prop] = why
            continue
        fields[prop] = value
    if current is None:
        for prop, spec in dt.properties.items():
            if prop not in obj and not spec.server_set:
                if spec.has_default:
                    fields[prop] = spec.default() if callable(spec.default) else spec.default
                elif not spec.nullable and prop != "id":
                    problems[prop] = "required"
    return fields



def set_(dt, ctx, args: dict) -> dict:
    allowed = {"create", "update", "destroy", *dt.set_args} | _base_args(dt)
    if dt.has_state:
        allowed.add("ifInState")
    check_known_args(args, allowed)
    account_id, head = _scope(dt, ctx, args)
    create, update, destroy = _set_shapes(ctx, args)
    dt.check_set_args(ctx, args)
    with ctx.store.write(account_id) as w:
        old_state = w.state(dt.name) if dt.has_state else None
        check_if_in_state(args, old_state)
        plan = _plan(dt, ctx, w, args, create, update, destroy)
        _judge(dt, ctx, w, plan)
        resp = set_response(account_id, old_state, old_state)
        done = _apply(dt, ctx, w, plan, args, resp)
        w.flush()
        resp["newState"] = w.state(dt.name) if dt.has_state else None
    dt.after_commit(ctx, *done)
    resp = finish_set(resp)
    if not dt.has_state:
        del resp["oldState"], resp["newState"]
    if not dt.account_scoped:
        del resp["accountId"]
    return resp


def _judge(dt, ctx, w, plan: Plan) -> None:
    """Judges the final state until a round refuses nothing more (a refusal changes that state)."""
    while True:
        before = plan.refused
        dt.judge(ctx, w, plan)
        if plan.refused == before:
            return


def _set_shapes(ctx, args: dict) -> tuple[dict, dict, list]:
    # null is "none"; any other value of the wrong type ([] for create, {} for destroy) is an error
    create = {} if args.get("create") is None else args["create"]
    update = {} if args.get("update") is None else args["update"]
    destroy = [] if args.get("destroy") is None else args["destroy"]
    if not isinstance(create, dict) or not all(isinstance(v, dict) for v in create.values()):
        raise invalid_arguments("create must map creation ids to objects")
    if not isinstance(update, dict) or not all(isinstance(v, dict) for v in update.values()):
        raise invalid_arguments("update must map ids to PatchObjects")
    if not isinstance(destroy, list) or not all(isinstance(v, str) for v in destroy):
        raise invalid_arguments("destroy must be an array of ids")
    if args.get("ifInState") is not None and not isinstance(args.get("ifInState"), str):
        raise invalid_arguments("ifInState must be a string or null")
    if len(create) + len(update) + len(destroy) > ctx.limits.max_objects_in_set:
        raise MethodError("requestTooLarge", f"more than {ctx.limits.max_objects_in_set} objects in one /set")
    return create, update, destroy


def _plan(dt, ctx, w, args: dict, create: dict, update: dict, destroy: list) -> Plan:
    plan = Plan(dt)
    for cid, obj in create.items():
        error = _too_deep(obj)  # before any type's (recursive) code sees the values
        fields, error = ({}, error) if error else dt.prepare_create(ctx, w, _resolve_ids(dt, ctx, obj, create))
        plan.ops.append(Op("create", cid, "#" + cid, fields, None, error, obj))
    for raw_id, patch in update.items():
        obj_id = _resolve_ref(ctx, raw_id, create)
        error = _bad_paths(patch) or _too_deep(patch)
        if error:
            plan.ops.append(Op("update", raw_id, obj_id, error=error))
            continue
        current = plan.created(obj_id) if obj_id.startswith("#") else dt.fetch(ctx, w, obj_id)
        if current is None:
            plan.ops.append(Op("update", raw_id, obj_id, error=not_found(raw_id, dt.name)))
            continue
        fields, error = dt.prepare_update(ctx, w, current, patch, partial(_resolve_ids, dt, ctx, create=create))
        plan.ops.append(Op("update", raw_id, obj_id, fields, current, error))
    for raw_id in destroy:
        obj_id = _resolve_ref(ctx, raw_id, create)
        current = plan.created(obj_id) if obj_id.startswith("#") else dt.fetch(ctx, w, obj_id)
        op = Op("destroy", raw_id, obj_id, current=current)
        op.error = not_found(raw_id, dt.name) if current is None else dt.check_destroy(ctx, w, current, args)
        plan.ops.append(op)
    return plan


def _bad_paths(patch: dict) -> dict | None:
    """invalidPatch for paths too long or too deep to be paths (RFC 8620 §5.3), before any type's
    code splits or walks them (a type's prepare_update may read paths itself), or None."""
    errors = patch_path_errors(patch)
    return patch_set_error({}, errors) if errors else None


def _too_deep(obj: dict) -> dict | None:
    """invalidProperties naming each property (or patch path) whose value nests deeper than
    MAX_VALUE_DEPTH (case o06), or None."""
    deep = {prop: f"nested more than {MAX_VALUE_DEPTH} levels deep" for prop, value in obj.items()
            if nests_deeper(value)}
    return invalid_properties(deep) if deep else None


def prepare_create(dt, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
    """The standard create: every property checked against its declaration (defaults filled in,
    required ones present, server-set ones absent), then the type's own `validate`."""
    problems: dict[str, str] = {}
    fields = _check_properties(dt, obj, None, problems)
    fields = dt.validate(ctx, reader, fields, None, problems)
    return fields, invalid_properties(problems) if problems else None


def prepare_update(dt, ctx, reader, current: dict, patch: dict, resolve) -> tuple[dict, dict | None]:
    """The standard update: the PatchObject applied to the object as it is, the changed properties
    checked against their declarations (a server-set or immutable one may only repeat its value),
    then the type's own `validate`."""
    mutable = [p for p, spec in dt.properties.items() if not (spec.server_set or spec.immutable)]
    patched, problems, patch_errors = apply_patch(current, patch, mutable)
    roots = {path.split("/", 1)[0].replace("~1", "/").replace("~0", "~") for path in patch}
    changed = resolve({r: patched.get(r) for r in roots if r in dt.properties})
    fields = _check_properties(dt, changed, current, problems)
    fields = dt.validate(ctx, reader, fields, current, problems)
    return fields, patch_set_error(problems, patch_errors)


def _substitute(value: object, real: dict[str, str]) -> object:
    if isinstance(value, str):
        return real.get(value, value)
    if isinstance(value, list):
        return [_substitute(v, real) for v in value]
    if isinstance(value, dict):
        return {real.get(k, k): _substitute(v, real) for k, v in value.items()}
    return value


def _apply(dt, ctx, w, plan: Plan, args: dict, resp: dict) -> tuple[dict, list, list]:
    """Writes a judged plan: creates (an object referring to another created by this call after
    it), updates, destroys; fills in the response.  Returns what after_commit is told."""
    buckets = {"create": "notCreated", "update": "notUpdated", "destroy": "notDestroyed"}
    for op in plan.ops:
        if op.error is not None:
            resp[buckets[op.kind]][op.key] = op.error
    real: dict[str, str] = {}  # "#cid" -> the id it got
    pending = plan.accepted("create")
    placeholders = {op.obj_id for op in pending}
    created: dict[str, dict] = {}
    while pending:
        ready = [op for op in pending if not (_refs(op.fields) & (placeholders - set(real)))]
        if not ready:  # a cycle of references among creates: the type's judge should have refused it
            ready = pending[:1]
        for op in ready:
            obj = dt.create(ctx, w, _substitute(op.fields, real))
            real[op.obj_id] = obj["id"]
            ctx.created_ids[op.key] = obj["id"]
            # §5.3: every property the client did not send (server-set ones and defaults), and any
            # the server stored otherwise than sent (a clamped expiry, a name made NFC)
            resp["created"][op.key] = {k: v for k, v in obj.items()
                                       if k not in op.sent or not same_json(v, op.sent[k])}
            created[op.key] = obj
        pending = [op for op in pending if op not in ready]
    updated = []
    for op in plan.accepted("update"):
        obj_id = real.get(op.obj_id, op.obj_id)
        fields = _substitute(op.fields, real) if real else op.fields  # no creates: nothing to substitute
        extra = dt.update(ctx, w, obj_id, op.current or {}, fields) if op.fields else None
        resp["updated"][obj_id] = extra
        updated.append(obj_id)
    destroys = plan.accepted("destroy")
    for op in (plan.destroy_order or list)(destroys):
        dt.destroy(ctx, w, real.get(op.obj_id, op.obj_id), op.current or {}, args)
    destroyed = [real.get(op.obj_id, op.obj_id) for op in destroys]
    resp["destroyed"].extend(destroyed)
    return created, updated, destroyed


def _refs(value: object) -> set[str]:
    if isinstance(value, str):
        return {value} if value.startswith("#") else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_refs(v) | _refs(k) for k, v in value.items())) if value else set()
    return set()


# --------------------------------------------------------------------------------- /query (§5.5)
def _query_filter_sort(dt, ctx, args: dict) -> tuple[dict | None, list[dict]]:
    flt = args.get("filter")
    check_filter(flt, lambda cond: dt.check_condition(ctx, cond))
    return flt, check_sort(args.get("sort"), set(dt.sorts))


def query(dt, ctx, args: dict) -> dict:
    check_known_args(args, {"filter", "sort", "position", "anchor", "anchorOffset", "limit", "calculateTotal",
                            *dt.query_args} | _base_args(dt))
    account_id, head = _scope(dt, ctx, args)
    flt, sort = _query_filter_sort(dt, ctx, args)
    position, anchor, anchor_offset, limit = query_window(args)
    calculate_total = bool_arg(args, "calculateTotal")
    with ctx.store.read(account_id) as reader:
        state = dt.current_state(ctx, reader)
        ids = dt.query_ids(ctx, reader, flt, sort, args)
    page, start, capped = slice_results(ids, position, anchor, anchor_offset, limit, dt.max_query_results)
    out = {**head, "queryState": state, "canCalculateChanges": True, "position": start, "ids": page}
    if calculate_total:
        out["total"] = len(ids)
    if capped is not None:
        out["limit"] = capped
    return out


def query_changes_(dt, ctx, args: dict) -> dict:
    flt, sort = _query_filter_sort(dt, ctx, args)
    return query_changes(ctx, args, dt.name, set(dt.query_args),
                         lambda reader: dt.query_ids(ctx, reader, flt, sort, args))


def _candidates(dt, ctx, reader, flt: dict | None):
    """Ids that can match: from a declared index when the filter requires an indexed equality
    (answered by an index, then checked), else every id of the type."""
    conds = [flt] if flt and "operator" not in flt else (
        flt["conditions"] if flt and flt["operator"] == "AND" else [])
    for cond in conds:
        if isinstance(cond, dict) and "operator" not in cond:
            found = dt.index_for(cond)
            if found is not None:
                return reader.record_ids(dt.collection, found[0], equals=found[1])
    return dt.all_ids(ctx, reader)


def generic_query_ids(dt, ctx, reader, flt: dict | None, sort: list[dict]) -> list[str]:
    """Filter by checking each candidate, then sort by the comparators (ties by id)."""
    objs = []
    for obj_id in _candidates(dt, ctx, reader, flt):
        obj = dt.fetch(ctx, reader, obj_id)
        if obj is not None and evaluate_filter(flt, obj, lambda cond, o: dt.match(ctx, cond, o)):
            objs.append(obj)

    def compare(a: dict, b: dict) -> int:
        for comp in sort:
            x = dt.sort_value(ctx, a, comp["property"], comp.get("collation"))
            y = dt.sort_value(ctx, b, comp["property"], comp.get("collation"))
            if x != y:
                if x is None or y is None:  # nulls first when ascending
                    result = -1 if x is None else 1
                else:
                    result = -1 if x < y else 1
                return result if comp.get("isAscending", True) else -result
        return (a["id"] > b["id"]) - (a["id"] < b["id"])

    objs.sort(key=cmp_to_key(compare))
    return [o["id"] for o in objs]


# ---------------------------------------------------------------------------------- /copy (§5.4)
def copy(dt, ctx, args: dict) -> list[tuple[str, dict]] | dict:
    check_known_args(args, {"fromAccountId", "ifFromInState", "accountId", "ifInState", "create",
                            "onSuccessDestroyOriginal", "destroyFromIfInState"})
    from_id = args.get("fromAccountId")
    if not isinstance(from_id, str):
        raise invalid_arguments("fromAccountId must be an account id")
    account_id = ctx.account_id(args)
    if from_id == account_id:
        raise invalid_arguments("fromAccountId and accountId must differ (RFC 8620 §5.4)")
    try:
        ctx.account_id({"accountId": from_id})
    except MethodError:
        raise MethodError("fromAccountNotFound", f"no account {from_id!r} for this user") from None
    create = args.get("create")
    if not isinstance(create, dict) or not all(isinstance(v, dict) and isinstance(v.get("id"), str)
                                               for v in create.values()):
        raise invalid_arguments("create must map creation ids to objects with the id to copy")
    destroy_original = bool_arg(args, "onSuccessDestroyOriginal")
    with ctx.store.read(from_id) as reader:
        if dt.has_state:
            check_if_in_state({"ifInState": args.get("ifFromInState")}, reader.state(dt.name))
        sources = {cid: dt.fetch(ctx, reader, ctx.resolve_id(spec["id"]) or spec["id"])
                   for cid, spec in create.items()}
        objects = {cid: ({**dt.copy_fields(ctx, reader, src),
                          **{k: v for k, v in create[cid].items() if k != "id"}} if src else None)
                   for cid, src in sources.items()}
    with ctx.store.write(account_id) as w:
        old_state = w.state(dt.name)
        check_if_in_state(args, old_state)
        wanted = {cid: dt.copy_defaults(ctx, w, obj) for cid, obj in objects.items() if obj is not None}
        plan = _plan(dt, ctx, w, args, wanted, {}, [])
        _judge(dt, ctx, w, plan)
        resp = set_response(account_id, old_state, old_state)
        created, _, _ = _apply(dt, ctx, w, plan, args, resp)
        w.flush()
        new_state = w.state(dt.name)
    dt.after_commit(ctx, created, [], [])
    not_created = {cid: not_found(create[cid]["id"], dt.name) for cid, obj in objects.items() if obj is None}
    not_created.update(resp["notCreated"])
    out = {"fromAccountId": from_id, "accountId": account_id, "oldState": old_state, "newState": new_state,
           "created": resp["created"] or None, "notCreated": not_created or None}
    if not destroy_original or not created:
        return out
    # §5.4: the originals are destroyed by an implicit /set on the source account, answered too
    originals = [sources[cid]["id"] for cid in created]
    destroy_args = {"accountId": from_id, "destroy": originals}
    if args.get("destroyFromIfInState") is not None:
        destroy_args["ifInState"] = args["destroyFromIfInState"]
    try:
        set_resp: dict = set_(dt, ctx, destroy_args)
        return [(f"{dt.name}/copy", out), (f"{dt.name}/set", set_resp)]
    except MethodError as err:
        return [(f"{dt.name}/copy", out), ("error", err.body())]
