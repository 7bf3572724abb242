"""The text conditions of ContactCard/query (RFC 9610 §3.3.1) and its name sorts (§3.3.2).

Matching uses the search index's analysis (`indexer.analysis`), so a contact search behaves as a
mail search: case-insensitive (NFC, lower-cased), every word of the value must be present, a
"double-quoted" run of words is a phrase (adjacent, in order), a word such as
``bob@example.com`` is the phrase of its parts.  Each word or phrase must occur within one value
of the card (one email address, one name component ...), not across two.  Phone numbers also match
by their digits alone (``5550100`` finds ``+1 555-0100``).

The candidates are narrowed by the collection's declared indexes (address book, uid, kind,
member, and the card's words: app/contacts/card.py) and checked here, so the result is exact.
"""

from __future__ import annotations

import re

from indexer import analysis

__all__ = ["TEXT_CONDITIONS", "field_values", "matches", "sort_name"]

TEXT_CONDITIONS = ("text", "name", "name/given", "name/surname", "name/surname2", "nickName", "organization",
                   "email", "phone", "onlineService", "address", "note")
_NOT_TEXT = {"@type", "kind", "contexts", "features", "pref", "id", "addressBookIds", "version", "created",
             "updated", "calendarScale", "isOrdered", "blobId", "mediaType", "relation"}


def _maps(card: dict, prop: str) -> list[dict]:
    value = card.get(prop)
    return [v for v in value.values() if isinstance(v, dict)] if isinstance(value, dict) else []


def _strings(value: object, out: list[str], key: str | None = None) -> None:
    if isinstance(value, str):
        if key not in _NOT_TEXT:
            out.append(value)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out, key)
    elif isinstance(value, dict):
        for k, v in value.items():
            _strings(v, out, k)


def field_values(card: dict, condition: str) -> list[str]:
    """The values of the card one text condition looks at (RFC 9610 §3.3.1)."""
    name = card.get("name") if isinstance(card.get("name"), dict) else {}
    components = [c for c in name.get("components") or [] if isinstance(c, dict)]
    if condition == "text":
        out: list[str] = []
        _strings({k: v for k, v in card.items() if k not in ("uid", "members", "prodId")}, out)
        return out
    if condition == "name":
        return [c.get("value", "") for c in components] + ([name["full"]] if name.get("full") else [])
    if condition.startswith("name/"):
        return [c.get("value", "") for c in components if c.get("kind") == condition[5:]]
    pick = {
        "nickName": ("nicknames", ("name",)),
        "organization": ("organizations", ("name",)),
        "email": ("emails", ("address", "label")),
        "phone": ("phones", ("number", "label")),
        "onlineService": ("onlineServices", ("service", "uri", "user", "label")),
        "note": ("notes", ("note",)),
    }
    if condition in pick:
        prop, keys = pick[condition]
        return [o[k] for o in _maps(card, prop) for k in keys if isinstance(o.get(k), str)]
    if condition == "address":  # the street components (§3.3.1 predates RFC 9553's components), full
        out = []
        for adr in _maps(card, "addresses"):
            out += [c.get("value", "") for c in adr.get("components") or [] if isinstance(c, dict)]
            if isinstance(adr.get("full"), str):
                out.append(adr["full"])
        return out
    raise ValueError(condition)


def _has_phrase(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i:i + n]) == phrase for i in range(len(tokens) - n + 1))


def matches(query: str, values: list[str], phone: bool = False) -> bool:
    """Whether every word/phrase of the query occurs in one of the values."""
    phrases = analysis.parse_query_text(query)
    if not phrases:
        return False  # as in Email/query: a value without words matches nothing
    tokenized = [analysis.tokenize(v) for v in values]
    if phone:
        digits = re.sub(r"\D", "", query)
        if len(digits) >= 3 and any(digits in re.sub(r"\D", "", v) for v in values):
            return True
    return all(any(_has_phrase(toks, p) for toks in tokenized) for p in phrases)


def sort_name(card: dict, kind: str) -> str | None:
    """The value of the first NameComponent of this kind (§3.3.2), case-folded; None if none."""
    name = card.get("name") if isinstance(card.get("name"), dict) else {}
    for c in name.get("components") or []:
        if isinstance(c, dict) and c.get("kind") == kind and isinstance(c.get("value"), str):
            return analysis.normalize(c["value"])
    return None
