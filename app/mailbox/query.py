"""What Mailbox/query and Mailbox/queryChanges know of mailboxes (RFC 8621 §2.3, §2.4): the
conditions, and the tree order of sortAsTree and filterAsTree."""

from __future__ import annotations

from functools import cmp_to_key

from app.protocol.query import evaluate_filter
from app.protocol.standard import bool_arg

from .model import name_key

# §2.3: the FilterCondition properties and the sorts
CONDITIONS = {"parentId": "Id", "name": "String", "role": "String", "hasAnyRole": "Boolean",
              "isSubscribed": "Boolean"}
SORTS = ("sortOrder", "name")
QUERY_ARGS = ("sortAsTree", "filterAsTree")


def _matches(cond: dict, mb: dict) -> bool:
    if "parentId" in cond and mb.get("parentId") != cond["parentId"]:
        return False
    if "name" in cond and name_key(cond["name"]) not in name_key(mb["name"]):
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


def query_ids(self, ctx, reader, flt: dict | None, sort: list[dict], args: dict) -> list[str]:
    return run_query(self.seen_by(ctx, reader), flt, sort, bool_arg(args, "sortAsTree"),
                     bool_arg(args, "filterAsTree"))


def match(self, ctx, cond: dict, mb: dict) -> bool:
    return _matches(cond, mb)
