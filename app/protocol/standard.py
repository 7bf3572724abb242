"""Argument checks shared by every method (RFC 8620 §5), the PatchObject, and the query result window.
The standard methods themselves are in app/protocol/machinery.py."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import MethodError, invalid_arguments, invalid_properties, set_error
from .request import CallContext
from .types import MAX_VALUE_DEPTH


def check_known_args(args: dict, allowed: Iterable[str]) -> None:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise invalid_arguments(f"unknown argument(s): {', '.join(unknown)}")


MAX_INT = 2**53 - 1  # RFC 8620 §1.3: Int is -2^53+1 <= value <= 2^53-1, UnsignedInt 0 <= value <= 2^53-1


def uint_arg(args: dict, name: str, default: int | None, minimum: int = 0) -> int | None:
    value = args.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_INT:
        raise invalid_arguments(f"{name} must be an integer from {minimum} to 2^53-1")
    return value


def int_arg(args: dict, name: str, default: int) -> int:
    value = args.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not -MAX_INT <= value <= MAX_INT:
        raise invalid_arguments(f"{name} must be an integer from -2^53+1 to 2^53-1")
    return value


def bool_arg(args: dict, name: str, default: bool = False) -> bool:
    value = args.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid_arguments(f"{name} must be a boolean")
    return value


def id_list_arg(ctx: CallContext, args: dict, name: str, limit: int | None) -> list[str] | None:
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_arguments(f"{name} must be an array of ids or null")
    if limit is not None and len(value) > limit:
        raise MethodError("requestTooLarge", f"{len(value)} ids exceed the limit of {limit}")
    # "#creationId" references resolve to ids created earlier in the request (RFC 8620 §5.3)
    return [ctx.resolve_id(v) or v for v in value]


def properties_arg(args: dict, name: str, known: Iterable[str], default: list[str]) -> list[str]:
    value = args.get(name)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_arguments(f"{name} must be an array of property names or null")
    unknown = [p for p in value if p not in known]
    if unknown:
        raise invalid_arguments(f"unknown {name}: {', '.join(unknown)}")
    return list(dict.fromkeys(value))


# ---------------------------------------------------------------- /set (RFC 8620 §5.3)
def same_json(a: object, b: object) -> bool:
    """Equal as JSON values: Python's ``True == 1`` and ``0 == False`` must not make a client's
    ``true`` pass for a stored ``1`` (case o09), so every client value compared with a stored one
    goes through here."""
    if type(a) is not type(b) and not (a is None or b is None):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check_if_in_state(args: dict, current: str) -> None:
    want = args.get("ifInState")
    if want is not None and want != current:
        raise MethodError("stateMismatch", f"ifInState {want!r} does not match the current state {current!r}")


def _json_copy(value):
    """A deep copy of a JSON value (dicts, lists, scalars), several times faster than deepcopy."""
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_copy(v) for v in value]
    return value


MAX_PATCH_PATH = 2048  # characters of one PatchObject path: keywords, ids and dates are far shorter
MAX_PATCH_SEGMENTS = MAX_VALUE_DEPTH  # a path cannot point deeper than a value may nest
_SHOWN = 80  # characters of a path an error quotes: never the megabytes a client sent


def shown_path(path: str) -> str:
    """A path as an error description quotes it, cut short."""
    return repr(path) if len(path) <= _SHOWN else f"{path[:_SHOWN]!r}... ({len(path)} characters)"


def patch_path_errors(patch: dict) -> dict[str, str]:
    """The paths of a PatchObject that are too long or too deep to be a path into an object (each
    against its description), before anything reads them: cheap, linear, and first."""
    errors = {}
    for path in patch:
        if len(path) > MAX_PATCH_PATH:
            errors[path] = f"a path of more than {MAX_PATCH_PATH} characters"
        elif path.count("/") >= MAX_PATCH_SEGMENTS:
            errors[path] = f"a path of more than {MAX_PATCH_SEGMENTS} segments"
    return errors


def _prefix_errors(patch: dict) -> dict[str, str]:
    """RFC 8620 §5.3: "a patch MUST NOT have two pointers where one is the prefix of the other".  A
    trie of the paths' segments finds every such path in time linear in the patch's size."""
    end = object()  # marks the node where a path ends (no segment string equals it)
    trie: dict = {}
    for path in patch:
        node = trie
        for segment in path.split("/"):
            node = node.setdefault(segment, {})
        node[end] = path
    errors = {}
    for path in patch:
        node = trie
        for segment in path.split("/")[:-1]:
            node = node[segment]
            if end in node:
                errors[path] = f"{shown_path(node[end])} is patched as a whole too"
                break
    return errors


def apply_patch(obj: dict, patch: dict, mutable_roots: Iterable[str]) -> tuple[dict, dict[str, str], dict[str, str]]:
    """Applies a PatchObject (RFC 8620 §5.3) to a copy of obj. Returns (new object, property
    problems, patch errors): a property that is unknown or may not change is an invalidProperties
    problem; a path that breaks the PatchObject rules (a missing parent, a pointer into an array,
    one pointer the prefix of another, a path too long to be one) makes the patch itself invalid
    (invalidPatch).  Linear in the size of the patch."""
    roots = set(mutable_roots)
    out = {k: (_json_copy(v) if k in roots else v) for k, v in obj.items()}
    problems: dict[str, str] = {}
    patch_errors = patch_path_errors(patch)
    if patch_errors:
        return out, problems, patch_errors
    patch_errors = _prefix_errors(patch)
    for path, value in patch.items():
        if path in patch_errors:
            continue
        parts = [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")]
        root = parts[0]
        if root not in roots:
            if len(parts) == 1 and root in obj and same_json(obj[root], value):
                continue  # setting a server-set property to its current value is allowed
            problems[path] = "unknown or immutable property" if root not in obj else "property is server-set or immutable"
            continue
        if len(parts) == 1:  # a whole property: null is its value (or default), not a removal
            out[root] = value
            continue
        target = out
        for part in parts[:-1]:
            target = target.get(part) if isinstance(target, dict) else None
            if target is None:
                break
        if isinstance(target, list):
            patch_errors[path] = "points inside an array; replace the array whole"
        elif not isinstance(target, dict):
            patch_errors[path] = "its parent does not exist"
        elif value is None:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return out, problems, patch_errors


def patch_set_error(problems: dict[str, str], patch_errors: dict[str, str]) -> dict | None:
    """The SetError for a failed update, or None if it may go on.  Paths are quoted cut short."""
    if patch_errors:
        return set_error("invalidPatch", "; ".join(f"{shown_path(p)}: {why}" for p, why in patch_errors.items()))
    if problems:
        return invalid_properties(problems)
    return None


def set_response(account_id: str, old_state: str, new_state: str) -> dict:
    return {"accountId": account_id, "oldState": old_state, "newState": new_state,
            "created": {}, "updated": {}, "destroyed": [], "notCreated": {}, "notUpdated": {},
            "notDestroyed": {}}


def finish_set(resp: dict) -> dict:
    """RFC 8620 §5.3: empty maps and lists are returned as null."""
    for key in ("created", "updated", "notCreated", "notUpdated", "notDestroyed"):
        if not resp[key]:
            resp[key] = None
    if not resp["destroyed"]:
        resp["destroyed"] = None
    return resp


def not_found(obj_id: str, what: str = "object") -> dict:
    return set_error("notFound", f"no {what} with id {obj_id!r}")


# ---------------------------------------------------------------- /query (RFC 8620 §5.5)
def query_window(args: dict) -> tuple[int, str | None, int, int | None]:
    position = int_arg(args, "position", 0)
    anchor = args.get("anchor")
    if anchor is not None and not isinstance(anchor, str):
        raise invalid_arguments("anchor must be an id or null")
    anchor_offset = int_arg(args, "anchorOffset", 0)
    limit = uint_arg(args, "limit", None)
    return position, anchor, anchor_offset, limit


def slice_results(ids: list[str], position: int, anchor: str | None, anchor_offset: int,
                  limit: int | None, max_limit: int) -> tuple[list[str], int, int | None]:
    """Applies position or anchor/anchorOffset and limit to a full result list (RFC 8620 §5.5).
    Returns (page, position, limit applied if the server capped it)."""
    total = len(ids)
    if anchor is not None:
        try:
            index = ids.index(anchor)
        except ValueError:
            raise MethodError("anchorNotFound", f"anchor {anchor!r} is not in the results") from None
        start = max(0, index + anchor_offset)
    elif position < 0:
        start = max(0, total + position)
    else:
        start = position
    capped = None
    if limit is None or limit > max_limit:
        capped = max_limit if limit is not None else None
        limit = max_limit
    return ids[start:start + limit], min(start, total), capped
