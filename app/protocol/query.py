"""Filters, sorts and /queryChanges shared by the /query methods (RFC 8620 §5.5, §5.6)."""

from __future__ import annotations

from collections.abc import Callable

from store import CannotCalculateChanges

from .errors import MethodError, invalid_arguments
from .request import CallContext
from .standard import bool_arg, check_known_args, uint_arg

OPERATORS = ("AND", "OR", "NOT")


def check_filter(flt: object, check_condition: Callable[[dict], None], depth: int = 0) -> None:
    """Walks a Filter (FilterOperator or FilterCondition); check_condition raises on bad conditions."""
    if flt is None:
        return
    if not isinstance(flt, dict):
        raise invalid_arguments("filter must be an object or null")
    if depth > 32:
        raise MethodError("unsupportedFilter", "filter is nested too deeply")
    if "operator" in flt:
        if flt["operator"] not in OPERATORS:
            raise MethodError("unsupportedFilter", f"unknown filter operator {flt['operator']!r}")
        conditions = flt.get("conditions")
        if not isinstance(conditions, list) or set(flt) - {"operator", "conditions"}:
            raise MethodError("unsupportedFilter", "a FilterOperator has exactly operator and conditions")
        for sub in conditions:
            check_filter(sub, check_condition, depth + 1)
    else:
        check_condition(flt)


def evaluate_filter(flt: dict | None, obj: object, match_condition: Callable[[dict, object], bool]) -> bool:
    if not flt:
        return True
    op = flt.get("operator")
    if op is None:
        return match_condition(flt, obj)
    results = (evaluate_filter(c, obj, match_condition) for c in flt["conditions"])
    if op == "AND":
        return all(results)
    if op == "OR":
        return any(results)
    return not any(results)  # NOT: none of the conditions match


def check_sort(sort: object, known: set[str]) -> list[dict]:
    """Validates a sort argument. A Comparator's properties the server does not know are ignored:
    RFC 8620 §5.5 names property, isAscending and collation and says "the Comparator object may also
    have additional properties as required for specific sort operations", asking no error for others;
    jmapc 0.4 sends anchorOffset, calculateTotal and position in every Comparator. The properties the
    RFC defines (and a type's own, such as Email's keyword, checked by its /query) are still checked."""
    if sort is None:
        return []
    if not isinstance(sort, list):
        raise invalid_arguments("sort must be an array of Comparators or null")
    out = []
    for comp in sort:
        if not isinstance(comp, dict) or not isinstance(comp.get("property"), str):
            raise invalid_arguments("each Comparator needs a string property")
        if comp["property"] not in known:
            raise MethodError("unsupportedSort", f"cannot sort by {comp['property']!r}")
        if not isinstance(comp.get("isAscending", True), bool):
            raise invalid_arguments("isAscending must be a boolean")
        collation = comp.get("collation")
        if collation is not None and not isinstance(collation, str):  # a wrong type, not an unknown name
            raise invalid_arguments("collation must be a string (a collation algorithm name)")
        if collation is not None and collation not in ("i;ascii-numeric", "i;ascii-casemap",
                                                       "i;unicode-casemap"):
            raise MethodError("unsupportedSort", f"unsupported collation {collation!r}")
        out.append(comp)
    return out


def query_changes(ctx: CallContext, args: dict, type_name: str, extra_args: set[str],
                  current_ids: Callable[[object], list[str]],
                  expand: Callable[[object, set[str]], set[str]] | None = None) -> dict:
    """RFC 8620 §5.6 from the change log: every object changed since the old state is reported as
    removed, and added again at its index when it is in the current results. That is exact also for
    filters and sorts on mutable properties (the RFC allows the extra removed ids)."""
    check_known_args(args, {"accountId", "filter", "sort", "sinceQueryState", "maxChanges", "upToId",
                            "calculateTotal", *extra_args})
    account_id = ctx.account_id(args)
    since = args.get("sinceQueryState")
    if not isinstance(since, str):
        raise invalid_arguments("sinceQueryState must be a string")
    max_changes = uint_arg(args, "maxChanges", None, minimum=1)
    if args.get("upToId") is not None and not isinstance(args.get("upToId"), str):
        raise invalid_arguments("upToId must be an id or null")
    calculate_total = bool_arg(args, "calculateTotal")
    with ctx.store.read(account_id) as reader:
        try:
            ch = reader.changes(type_name, since, None)
        except CannotCalculateChanges as exc:
            raise MethodError("cannotCalculateChanges", f"cannot calculate changes from {since!r}: {exc}") \
                from None
        new_state = reader.state(type_name)
        changed = set(ch.created) | set(ch.updated) | set(ch.destroyed)
        if expand is not None:
            changed = expand(reader, changed)
        ids = current_ids(reader)
    removed = sorted(changed - set(ch.created))
    added = [{"id": obj_id, "index": i} for i, obj_id in enumerate(ids) if obj_id in changed]
    if max_changes is not None and len(removed) + len(added) > max_changes:
        raise MethodError("tooManyChanges", f"more than {max_changes} changes")
    out = {"accountId": account_id, "oldQueryState": since, "newQueryState": new_state,
           "removed": removed, "added": added}
    if calculate_total:
        out["total"] = len(ids)
    return out
