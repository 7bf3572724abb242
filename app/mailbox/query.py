"""Mailbox/query and Mailbox/queryChanges (RFC 8621 §2.3, §2.4)."""

from __future__ import annotations

from functools import cmp_to_key

from app.protocol.errors import MethodError, invalid_arguments
from app.protocol.query import check_filter, check_sort, evaluate_filter, query_changes
from app.protocol.registry import MAIL, method
from app.protocol.standard import bool_arg, check_known_args, query_window, slice_results

CONDITIONS = {"parentId", "name", "role", "hasAnyRole", "isSubscribed"}
SORTS = {"sortOrder", "name"}
EXTRA = {"sortAsTree", "filterAsTree"}


def _check_condition(cond: dict) -> None:
    unknown = set(cond) - CONDITIONS
    if unknown:
        raise MethodError("unsupportedFilter", f"unknown Mailbox filter condition(s): {', '.join(sorted(unknown))}")
    for key in ("parentId", "role"):
        if key in cond and cond[key] is not None and not isinstance(cond[key], str):
            raise invalid_arguments(f"filter {key} must be a string or null")
    if "name" in cond and not isinstance(cond["name"], str):
        raise invalid_arguments("filter name must be a string")
    for key in ("hasAnyRole", "isSubscribed"):
        if key in cond and not isinstance(cond[key], bool):
            raise invalid_arguments(f"filter {key} must be a boolean")


def _matches(cond: dict, mb: dict) -> bool:
    if "parentId" in cond and mb.get("parentId") != cond["parentId"]:
        return False
    if "name" in cond and cond["name"].casefold() not in mb["name"].casefold():
        return False
    if "role" in cond and mb.get("role") != cond["role"]:
        return False
    if "hasAnyRole" in cond and (mb.get("role") is not None) != cond["hasAnyRole"]:
        return False
    return not ("isSubscribed" in cond and bool(mb.get("isSubscribed")) != cond["isSubscribed"])


def _compare(sort: list[dict]):
    def cmp(a: dict, b: dict) -> int:
        for comp in sort:
            prop = comp["property"]
            x, y = a.get(prop), b.get(prop)
            if prop == "name":
                x, y = x.casefold(), y.casefold()
            if x != y:
                result = -1 if x < y else 1
                return result if comp.get("isAscending", True) else -result
        return -1 if a["id"] < b["id"] else (a["id"] > b["id"])

    return cmp


def run_query(mailboxes: list[dict], flt: dict | None, sort: list[dict], as_tree: bool,
              filter_as_tree: bool) -> list[str]:
    by_id = {m["id"]: m for m in mailboxes}
    matched = {m["id"] for m in mailboxes if evaluate_filter(flt, m, _matches)}
    if filter_as_tree:  # §2.3: only if every ancestor matched too
        def ancestors_match(mb: dict) -> bool:
            seen = set()
            parent = mb.get("parentId")
            while parent and parent not in seen:
                seen.add(parent)
                if parent not in matched:
                    return False
                parent = by_id.get(parent, {}).get("parentId")
            return True

        matched = {i for i in matched if ancestors_match(by_id[i])}
    key = cmp_to_key(_compare(sort or [{"property": "sortOrder"}, {"property": "name"}]))
    if not as_tree:
        return [m["id"] for m in sorted((by_id[i] for i in matched), key=key)]
    # §2.3 sortAsTree: depth-first walk, siblings ordered by the comparators
    children: dict[str | None, list[dict]] = {}
    for mb in mailboxes:
        parent = mb.get("parentId") if mb.get("parentId") in by_id else None
        children.setdefault(parent, []).append(mb)
    out: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        if depth > 64:
            return
        for mb in sorted(children.get(parent, []), key=key):
            if mb["id"] in matched:
                out.append(mb["id"])
            walk(mb["id"], depth + 1)

    walk(None, 0)
    return out


def _parse(args: dict) -> tuple[dict | None, list[dict], bool, bool]:
    flt = args.get("filter")
    check_filter(flt, _check_condition)
    sort = check_sort(args.get("sort"), SORTS)
    return flt, sort, bool_arg(args, "sortAsTree"), bool_arg(args, "filterAsTree")


@method("Mailbox/query", MAIL)
def mailbox_query(ctx, args: dict) -> dict:
    check_known_args(args, {"accountId", "filter", "sort", "position", "anchor", "anchorOffset", "limit",
                            "calculateTotal", *EXTRA})
    account_id = ctx.account_id(args)
    flt, sort, as_tree, filter_as_tree = _parse(args)
    position, anchor, anchor_offset, limit = query_window(args)
    calculate_total = bool_arg(args, "calculateTotal")
    with ctx.store.read(account_id) as reader:
        state = reader.state("Mailbox")
        ids = run_query(reader.mailboxes(), flt, sort, as_tree, filter_as_tree)
    page, start, capped = slice_results(ids, position, anchor, anchor_offset, limit, 1000)
    out = {"accountId": account_id, "queryState": state, "canCalculateChanges": True,
           "position": start, "ids": page}
    if calculate_total:
        out["total"] = len(ids)
    if capped is not None:
        out["limit"] = capped
    return out


@method("Mailbox/queryChanges", MAIL)
def mailbox_query_changes(ctx, args: dict) -> dict:
    flt, sort, as_tree, filter_as_tree = _parse(args)
    return query_changes(ctx, args, "Mailbox", EXTRA,
                         lambda reader: run_query(reader.mailboxes(), flt, sort, as_tree, filter_as_tree))
