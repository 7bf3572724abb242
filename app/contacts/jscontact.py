"""JSContact Card validation (RFC 9553), pure: `check_card` walks a Card and names every bad path.

The schema below is RFC 9553 §2 (Card properties) and the object types it uses (§2.1-§2.8), with
RFC 9610 §3's JMAP additions (``id``, ``addressBookIds`` and ``blobId`` in Media).  A path is a
JSON pointer without the leading slash, as JMAP's invalidProperties wants it
(``emails/e1/address``); "/" and "~" in map keys are escaped as ``~1`` and ``~0``.

Decisions:
* A property whose name has a ":" is vendor-specific (§1.8.1) and kept as it is, unchecked.  Any
  other unknown property is refused: a typo must not vanish silently.
* ``@type`` may be left out everywhere (§1.3.4: it is implied); when given it must be the right one.
* Enumerated kinds (Card kind, NameComponent kind, AddressComponent kind ...) accept the values the
  RFC registers and vendor values with a ":" (§1.8.2).
* Text (a name, a note, an address's ``full``) may have line breaks: the vCard writer escapes them
  (RFC 6350 §3.4).  Every other string - an id, uid, URI, email address, phone number, language
  tag, token, vendor kind, set or map key - is one line: a control character is refused, as one
  such value written into a vCard line would start a line of the client's choosing.
"""

from __future__ import annotations

import re

from app.protocol.types import check_value

__all__ = ["CARD_PROPERTIES", "check_card"]

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")  # fullmatch: "$" would allow a final "\n"
# C0 and C1 controls (CR and LF among them), and the Unicode line and paragraph separators
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ONE_LINE = "must be a string on one line (no CR, LF or other control character)"
_KEY_ONE_LINE = "the key must be a non-empty string on one line (no CR, LF or other control character)"

_CONTEXT = ("contexts", "set")
_PREF = ("pref", "pref")
_LABEL = ("label", "str")

# Object type -> {property: type}; a type is a primitive name, ("obj", T), ("map", T) (Id[T]),
# ("list", T) or ("enum", values).  "*required" lists the properties the object must have.
# "str" is text (line breaks allowed), "line" a string on one line
_RESOURCE = {"kind": "line", "uri": "line", "mediaType": "line", "contexts": "set", "pref": "pref",
             "label": "str", "*required": ("uri",)}
SCHEMA: dict[str, dict] = {
    "Name": {"components": ("list", "NameComponent"), "isOrdered": "bool", "defaultSeparator": "str",
             "full": "str", "sortAs": "strmap", "phoneticScript": "line", "phoneticSystem": "line"},
    "NameComponent": {"value": "str", "kind": ("enum", ("title", "given", "given2", "surname", "surname2",
                                                        "credential", "generation", "separator")),
                      "phonetic": "str", "*required": ("value", "kind")},
    "Nickname": {"name": "str", "contexts": "set", "pref": "pref", "*required": ("name",)},
    "Organization": {"name": "str", "units": ("list", "OrgUnit"), "sortAs": "str", "contexts": "set"},
    "OrgUnit": {"name": "str", "sortAs": "str", "*required": ("name",)},
    "SpeakToAs": {"grammaticalGender": ("enum", ("animate", "common", "feminine", "inanimate", "masculine",
                                                 "neuter")),
                  "pronouns": ("map", "Pronouns")},
    "Pronouns": {"pronouns": "str", "contexts": "set", "pref": "pref", "*required": ("pronouns",)},
    "Title": {"name": "str", "kind": ("enum", ("title", "role")), "organizationId": "id",
              "*required": ("name",)},
    "EmailAddress": {"address": "line", "contexts": "set", "pref": "pref", "label": "str",
                     "*required": ("address",)},
    "OnlineService": {"service": "line", "uri": "line", "user": "line", "contexts": "set", "pref": "pref",
                      "label": "str"},
    "Phone": {"number": "line", "features": "set", "contexts": "set", "pref": "pref", "label": "str",
              "*required": ("number",)},
    "LanguagePref": {"language": "line", "contexts": "set", "pref": "pref", "*required": ("language",)},
    "Calendar": {**_RESOURCE, "kind": ("enum", ("calendar", "freeBusy")), "*required": ("kind", "uri")},
    "SchedulingAddress": {"uri": "line", "contexts": "set", "pref": "pref", "label": "str",
                          "*required": ("uri",)},
    "Address": {"components": ("list", "AddressComponent"), "isOrdered": "bool", "countryCode": "line",
                "coordinates": "line", "timeZone": "line", "contexts": "set", "full": "str",
                "defaultSeparator": "str", "pref": "pref", "phoneticScript": "line", "phoneticSystem": "line"},
    "AddressComponent": {"value": "str", "kind": ("enum", (
        "room", "apartment", "floor", "building", "number", "name", "block", "subdistrict", "district",
        "locality", "region", "postcode", "country", "direction", "landmark", "postOfficeBox", "separator")),
        "phonetic": "str", "*required": ("value", "kind")},
    "CryptoKey": dict(_RESOURCE),
    "Directory": {**_RESOURCE, "kind": ("enum", ("directory", "entry")), "listAs": "uint",
                  "*required": ("kind", "uri")},
    "Link": {**_RESOURCE, "kind": ("enum", ("contact",))},
    # RFC 9610 §3: a Media may have a blobId instead of its uri
    "Media": {**_RESOURCE, "kind": ("enum", ("photo", "sound", "logo")), "blobId": "id",
              "*required": ("kind",)},
    "Anniversary": {"kind": ("enum", ("birth", "death", "wedding")), "date": "date",
                    "place": ("obj", "Address"), "*required": ("kind", "date")},
    "Note": {"note": "str", "created": "utc", "author": ("obj", "Author"), "*required": ("note",)},
    "Author": {"name": "str", "uri": "line"},
    "PersonalInfo": {"kind": ("enum", ("expertise", "hobby", "interest")), "value": "str",
                     "level": ("enum", ("high", "medium", "low")), "listAs": "uint", "label": "str",
                     "*required": ("kind", "value")},
    "Relation": {"relation": "set"},
    "PartialDate": {"year": "uint", "month": "month", "day": "day", "calendarScale": "line"},
    "Timestamp": {"utc": "utc", "*required": ("utc",)},
}

# RFC 9553 §2 and RFC 9610 §3
CARD_PROPERTIES: dict[str, object] = {
    "id": "id", "addressBookIds": "idset",
    "@type": "str", "version": "str", "created": "utc", "kind": ("enum", (
        "individual", "group", "org", "location", "device", "application")),
    "language": "line", "members": "set", "prodId": "line", "relatedTo": ("strobjmap", "Relation"),
    "uid": "line", "updated": "utc",
    "name": ("obj", "Name"), "nicknames": ("map", "Nickname"), "organizations": ("map", "Organization"),
    "speakToAs": ("obj", "SpeakToAs"), "titles": ("map", "Title"),
    "emails": ("map", "EmailAddress"), "onlineServices": ("map", "OnlineService"), "phones": ("map", "Phone"),
    "preferredLanguages": ("map", "LanguagePref"),
    "calendars": ("map", "Calendar"), "schedulingAddresses": ("map", "SchedulingAddress"),
    "addresses": ("map", "Address"),
    "cryptoKeys": ("map", "CryptoKey"), "directories": ("map", "Directory"), "links": ("map", "Link"),
    "media": ("map", "Media"),
    "localizations": "patches",
    "anniversaries": ("map", "Anniversary"), "keywords": "set", "notes": ("map", "Note"),
    "personalInfo": ("map", "PersonalInfo"),
}


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _utc_ok(value: object) -> bool:
    return check_value("UTCDate", value) is None  # JSContact's UTCDateTime is RFC 8620's UTCDate


def _check(kind: object, value: object, path: str, problems: dict[str, str]) -> None:
    """Checks one value of the schema type ``kind`` at ``path``; adds to problems."""
    if isinstance(kind, tuple):
        shape, arg = kind
        if shape == "obj":
            _check_object(arg, value, path, problems)
        elif shape == "map":
            if not isinstance(value, dict):
                problems[path] = f"must be a map of ids to {arg} objects"
                return
            for key, item in value.items():
                if not _ID_RE.fullmatch(key):
                    problems[f"{path}/{_esc(key)}"] = "the key is not an Id (1-255 of A-Z a-z 0-9 _ -)"
                    continue
                _check_object(arg, item, f"{path}/{_esc(key)}", problems)
        elif shape == "strobjmap":
            if not isinstance(value, dict):
                problems[path] = f"must be a map of strings to {arg} objects"
                return
            for key, item in value.items():
                if not key or _CONTROL.search(key):
                    problems[f"{path}/{_esc(key)}"] = _KEY_ONE_LINE
                    continue
                _check_object(arg, item, f"{path}/{_esc(key)}", problems)
        elif shape == "list":
            if not isinstance(value, list):
                problems[path] = f"must be a list of {arg} objects"
                return
            for i, item in enumerate(value):
                _check_object(arg, item, f"{path}/{i}", problems)
        elif shape == "enum":
            if not isinstance(value, str) or not value:
                problems[path] = "must be a non-empty string"
            elif _CONTROL.search(value):  # a vendor value is written as it is (vCard KIND)
                problems[path] = _ONE_LINE
            elif value not in arg and ":" not in value:
                problems[path] = f"must be one of {', '.join(arg)} (or a vendor value with a ':')"
        return
    why = None
    if kind == "str":
        why = None if isinstance(value, str) else "must be a string"
    elif kind == "line":
        why = None if isinstance(value, str) and not _CONTROL.search(value) else _ONE_LINE
    elif kind == "id":
        why = None if isinstance(value, str) and _ID_RE.fullmatch(value) else "must be an Id"
    elif kind == "bool":
        why = None if isinstance(value, bool) else "must be true or false"
    elif kind in ("uint", "pref", "month", "day"):
        low, high = {"uint": (0, 2**53 - 1), "pref": (1, 100), "month": (1, 12), "day": (1, 31)}[kind]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            why = f"must be an integer from {low} to {high}"
    elif kind == "utc":
        why = None if _utc_ok(value) else 'must be a UTCDateTime such as "2024-01-02T03:04:05Z"'
    elif kind == "set":  # keys are tokens, uids or URIs (contexts, features, members, keywords)
        if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
            why = "must be a map of strings to true"
        elif any(_CONTROL.search(k) for k in value):
            bad = next(k for k in value if _CONTROL.search(k))
            problems[f"{path}/{_esc(bad)}"] = _KEY_ONE_LINE
            return
        elif not all(v is True for v in value.values()):
            bad = next(k for k, v in value.items() if v is not True)
            problems[f"{path}/{_esc(bad)}"] = "must be true"
            return
    elif kind == "idset":
        if not isinstance(value, dict) or not all(isinstance(k, str) and _ID_RE.fullmatch(k.removeprefix("#"))
                                                  for k in value):
            why = "must be a map of ids to true"
        elif not all(v is True for v in value.values()):
            why = "every value must be true"
    elif kind == "strmap":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            why = "must be a map of strings to strings"
    elif kind == "patches":
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            why = "must be a map of language tags to PatchObjects"
        elif any(not k or _CONTROL.search(k) for k in value):
            why = "every language tag must be a non-empty string on one line"
    elif kind == "date":  # §2.8.1: a PartialDate or a Timestamp
        if not isinstance(value, dict):
            why = "must be a PartialDate or a Timestamp object"
        elif value.get("@type") == "Timestamp" or "utc" in value:
            _check_object("Timestamp", value, path, problems)
        else:
            _check_object("PartialDate", value, path, problems)
    else:
        raise ValueError(f"unknown schema type {kind!r}")
    if why:
        problems[path] = why


def _check_object(type_name: str, value: object, path: str, problems: dict[str, str]) -> None:
    if not isinstance(value, dict):
        problems[path] = f"must be a {type_name} object"
        return
    spec = SCHEMA[type_name]
    for key, item in value.items():
        sub = f"{path}/{_esc(key)}"
        if key == "@type":
            if item != type_name:
                problems[sub] = f'must be "{type_name}"'
        elif ":" in key:
            continue  # vendor-specific (§1.8.1)
        elif key not in spec or key.startswith("*"):
            problems[sub] = f"unknown {type_name} property"
        else:
            _check(spec[key], item, sub, problems)
    for key in spec.get("*required", ()):
        if key not in value:
            problems[f"{path}/{key}"] = f"required ({type_name})"
    if type_name == "Media" and "uri" not in value and "blobId" not in value:
        problems[f"{path}/uri"] = "a Media needs a uri or a blobId (RFC 9610 §3)"
    if type_name == "PartialDate" and not value.keys() & {"year", "month", "day"}:
        problems[path] = "a PartialDate needs at least one of year, month and day"
    if type_name == "Name" and not value.get("components") and not value.get("full"):
        problems[path] = "a Name needs components or full (RFC 9553 §2.2.1)"


def check_card(card: dict) -> dict[str, str]:
    """{path: why} for every property of the Card (RFC 9553 §2, RFC 9610 §3) that is not valid;
    empty when the card is valid.  Server-set and required-ness of JMAP properties (``id``,
    ``addressBookIds``) are the caller's."""
    problems: dict[str, str] = {}
    for key, value in card.items():
        if ":" in key:
            continue
        kind = CARD_PROPERTIES.get(key)
        if kind is None:
            problems[_esc(key)] = "unknown Card property (a vendor property has a ':' in its name)"
        elif key == "@type":
            if value != "Card":
                problems["@type"] = 'must be "Card"'
        elif key == "version":
            if value != "1.0":
                problems["version"] = 'must be "1.0" (RFC 9553 §2.1.9)'
        elif key == "uid":  # a URI or text, written as the vCard UID line
            if not isinstance(value, str) or not value:
                problems["uid"] = "must be a non-empty string"
            elif _CONTROL.search(value):
                problems["uid"] = _ONE_LINE
        else:
            _check(kind, value, _esc(key), problems)
    return problems
