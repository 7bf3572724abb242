"""JSCalendar Event validation (RFC 8984 §4-§5, as the JMAP Calendars draft uses it): every bad
value is reported under its JSON path (``recurrenceRules/0/frequency``,
``participants/p1/roles``, ``alerts/a1/trigger/offset`` ...) so that invalidProperties names each
one (RFC 8620 §5.3).

What is checked: the types and enumerations of the properties tidings models (below), that
``start`` is a LocalDateTime and ``timeZone`` an IANA zone, the RecurrenceRule, Participant,
Location, VirtualLocation, Link, Alert and Relation objects, and each recurrenceOverrides key
(a LocalDateTime) with its PatchObject (a path may not touch uid, recurrenceRules,
recurrenceOverrides ... RFC 8984 §4.3.5; a whole-property value is checked like the property)."""

from __future__ import annotations

import re

from .timing import duration_problem, parse_local, zone

__all__ = ["EVENT_DEFAULTS", "check_event", "check_rule"]

# RFC 8984 defaults of the properties tidings fills in when a create leaves them out
EVENT_DEFAULTS: dict[str, object] = {
    "@type": "Event", "title": "", "description": "", "descriptionContentType": "text/plain",
    "showWithoutTime": False, "duration": "PT0S", "timeZone": None, "status": "confirmed",
    "freeBusyStatus": "busy", "privacy": "public", "priority": 0, "sequence": 0, "excluded": False,
    "useDefaultAlerts": False, "recurrenceId": None, "recurrenceIdTimeZone": None,
    "recurrenceRules": None, "excludedRecurrenceRules": None, "recurrenceOverrides": None,
    "keywords": None, "categories": None, "color": None, "locale": None, "locations": None,
    "virtualLocations": None, "links": None, "participants": None, "replyTo": None, "sentBy": None,
    "alerts": None, "relatedTo": None, "prodId": None, "localizations": None, "timeZones": None,
    "requestStatus": None, "mayInviteSelf": False, "mayInviteOthers": False, "hideAttendees": False,
}

# fullmatch, ASCII digits: "$" would let a trailing "\n" through and \d takes any script's digits
_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]*[1-9])?Z")
# RFC 8984 §4.3.3 byMonth: a month number "1" ... "12", "L" after it for a leap month
_MONTH = re.compile(r"([1-9]|1[0-2])(L?)")
# a value written on one line of an iCalendar file (an id, URI, address, color, token) may hold no
# control character: CR and LF would end the line (RFC 5545 §3.1), the others are not text
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_DAYS = {"mo", "tu", "we", "th", "fr", "sa", "su"}
_FREQS = {"yearly", "monthly", "weekly", "daily", "hourly", "minutely", "secondly"}
_ENUMS = {
    "status": {"confirmed", "cancelled", "tentative"},
    "freeBusyStatus": {"free", "busy"},
    "privacy": {"public", "private", "secret"},
}
_STRING = ("title", "description", "descriptionContentType", "uid", "prodId", "color", "locale", "sentBy",
           "method")
# the strings of _STRING that are one line (title and description are text: RFC 8984 §4.2.1-2)
_ONE_LINE = frozenset(_STRING) - {"title", "description"}
_BOOL = ("showWithoutTime", "excluded", "useDefaultAlerts", "mayInviteSelf", "mayInviteOthers",
         "hideAttendees", "isDraft")
_PARTICIPATION = {"needs-action", "accepted", "declined", "tentative", "delegated"}
_KINDS = {"individual", "group", "location", "resource"}
# properties an override may not change (RFC 8984 §4.3.5; the draft §"Additional properties")
_NOT_IN_OVERRIDES = {"@type", "uid", "relatedTo", "prodId", "method", "recurrenceId", "recurrenceIdTimeZone",
                     "recurrenceRules", "excludedRecurrenceRules", "recurrenceOverrides", "replyTo",
                     "mayInviteSelf", "mayInviteOthers", "hideAttendees", "isDraft", "calendarIds", "id",
                     "baseEventId", "isOrigin", "utcStart", "utcEnd"}


_ONE_LINE_WHY = "must be a string on one line (no CR, LF or other control character)"
# sequence, interval and count are written as iCalendar INTEGERs: 32-bit signed (RFC 5545 §3.3.8)
_INT_MAX = 2**31 - 1


def _utc_ok(value: object) -> bool:
    return isinstance(value, str) and bool(_UTC.fullmatch(value))


def _one_of(value: object, allowed: set[str] | frozenset[str] | tuple[str, ...]) -> bool:
    """value is one of the allowed strings; the type is checked first, as a JSON list or object
    looked up in a set would raise TypeError (unhashable) instead of being refused."""
    return isinstance(value, str) and value in allowed


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not an Int


def one_line(value: object) -> bool:
    """value is a string an iCalendar (or vCard) line can hold as it is: no control character."""
    return isinstance(value, str) and not _CONTROL.search(value)


def _check_line(obj: dict, keys: tuple[str, ...], path: str, problems: dict[str, str]) -> None:
    """Each of keys that obj has (not null) must be a one-line string."""
    for key in keys:
        if obj.get(key) is not None and not one_line(obj[key]):
            problems[f"{path}/{key}"] = _ONE_LINE_WHY


def _check_text(obj: dict, keys: tuple[str, ...], path: str, problems: dict[str, str]) -> None:
    """Each of keys that obj has (not null) must be a string (text: line breaks allowed)."""
    for key in keys:
        if obj.get(key) is not None and not isinstance(obj[key], str):
            problems[f"{path}/{key}"] = "must be a string"


def _map_of_objects(value: object, path: str, problems: dict[str, str], check, *, keys: str = "ids",
                    key_ok=_ID.fullmatch, key_problem: str = "key is not an Id", items: str = "objects") -> None:
    if not isinstance(value, dict):
        problems[path] = f"must be an object mapping {keys} to {items}"
        return
    for key, item in value.items():
        if not key_ok(key):
            problems[f"{path}/{key}"] = key_problem
        elif not isinstance(item, dict):
            problems[f"{path}/{key}"] = f"must be a{'n' if items[0] in 'aeiou' else ''} {items[:-1]}"
        else:
            check(item, f"{path}/{key}", problems)


def _true_map(value: object, path: str, problems: dict[str, str]) -> None:
    # the keys are tokens, URIs or ids (keywords, categories, roles, relation ...): one line each
    if not isinstance(value, dict) or not all(v is True for v in value.values()):
        problems[path] = "must be an object whose values are true"
    elif not all(k and one_line(k) for k in value):
        problems[path] = "every key must be a non-empty string on one line (no CR, LF or other control character)"


def _check_nday(nday: object, path: str, problems: dict[str, str]) -> None:
    """An NDay (RFC 8984 §4.3.3 byDay): a day, and nthOfPeriod an Int from -53 to 53, not 0."""
    if not isinstance(nday, dict) or not _one_of(nday.get("day"), _DAYS):
        problems[path] = "must be an NDay with a day (mo ... su)"
    elif nday.get("nthOfPeriod") is not None and not (
            _is_int(nday["nthOfPeriod"]) and nday["nthOfPeriod"] != 0 and -53 <= nday["nthOfPeriod"] <= 53):
        problems[f"{path}/nthOfPeriod"] = "must be a non-zero integer from -53 to 53"


def _check_months(months: object, path: str, problems: dict[str, str]) -> None:
    """byMonth (RFC 8984 §4.3.3): month numbers as strings, "1" ... "12" in ASCII digits without a
    leading zero; an "L" (leap month) is refused, as the gregorian calendar has none."""
    if not isinstance(months, list) or not months or not all(isinstance(m, str) for m in months):
        problems[path] = 'must be a non-empty list of month numbers as strings ("1" ... "12")'
        return
    for i, month in enumerate(months):
        m = _MONTH.fullmatch(month)
        if m is None:
            problems[f"{path}/{i}"] = 'must be a month number as a string ("1" ... "12")'
        elif m.group(2):
            problems[f"{path}/{i}"] = 'a leap month needs an rscale that has them; only "gregorian" is supported'


_RULE_RANGES = {"byMonthDay": (-31, 31), "byYearDay": (-366, 366), "byWeekNo": (-53, 53), "byHour": (0, 23),
                "byMinute": (0, 59), "bySecond": (0, 60), "bySetPosition": (-366, 366)}
_RULE_KEYS = {"@type", "frequency", "interval", "rscale", "skip", "firstDayOfWeek", "byDay", "byMonthDay",
              "byMonth", "byYearDay", "byWeekNo", "byHour", "byMinute", "bySecond", "bySetPosition", "count",
              "until"}


def check_rule(rule: object, path: str, problems: dict[str, str]) -> None:
    """A RecurrenceRule (RFC 8984 §4.3.3)."""
    if not isinstance(rule, dict):
        problems[path] = "must be a RecurrenceRule object"
        return
    if rule.get("@type", "RecurrenceRule") != "RecurrenceRule":
        problems[f"{path}/@type"] = 'must be "RecurrenceRule"'
    if not _one_of(rule.get("frequency"), _FREQS):
        problems[f"{path}/frequency"] = f"must be one of {', '.join(sorted(_FREQS))}"
    if "interval" in rule and not (_is_int(rule["interval"]) and 1 <= rule["interval"] <= _INT_MAX):
        problems[f"{path}/interval"] = f"must be an integer from 1 to {_INT_MAX}"
    if rule.get("rscale", "gregorian") != "gregorian":
        problems[f"{path}/rscale"] = 'only "gregorian" is supported'
    if rule.get("skip", "omit") != "omit":
        problems[f"{path}/skip"] = 'only "omit" is supported (the gregorian calendar)'
    if not _one_of(rule.get("firstDayOfWeek", "mo"), _DAYS):
        problems[f"{path}/firstDayOfWeek"] = "must be a day: mo, tu, we, th, fr, sa or su"
    if rule.get("count") is not None and rule.get("until") is not None:
        problems[f"{path}/until"] = "count and until may not both be set"
    if rule.get("count") is not None and not (_is_int(rule["count"]) and 1 <= rule["count"] <= _INT_MAX):
        problems[f"{path}/count"] = f"must be an integer from 1 to {_INT_MAX}"
    if rule.get("until") is not None and parse_local(rule["until"]) is None:
        problems[f"{path}/until"] = "must be a LocalDateTime"
    by_day = rule.get("byDay")
    if by_day is not None:
        if not isinstance(by_day, list) or not by_day:
            problems[f"{path}/byDay"] = "must be a non-empty list of NDay objects"
        else:
            for i, nday in enumerate(by_day):
                _check_nday(nday, f"{path}/byDay/{i}", problems)
    for key, (lo, hi) in _RULE_RANGES.items():
        values = rule.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or not values or not all(
                _is_int(v) and lo <= v <= hi and (v != 0 or lo == 0) for v in values):
            problems[f"{path}/{key}"] = f"must be a non-empty list of integers from {lo} to {hi}"
    if rule.get("byMonth") is not None:
        _check_months(rule["byMonth"], f"{path}/byMonth", problems)
    for key in set(rule) - _RULE_KEYS:
        problems[f"{path}/{key}"] = "unknown RecurrenceRule property"


def _check_send_to(value: object, path: str, problems: dict[str, str]) -> None:
    """sendTo (RFC 8984 §4.4.6): methods (imip, other ...) to URIs; the export writes a URI as the
    ORGANIZER/ATTENDEE value, so each is one line."""
    if not isinstance(value, dict):
        problems[path] = "must be an object mapping methods to URIs"
        return
    for method, uri in value.items():
        if not method or not one_line(method):
            problems[f"{path}/{method}"] = "the method must be a non-empty string on one line"
        elif not one_line(uri):
            problems[f"{path}/{method}"] = "must be a URI on one line (no CR, LF or other control character)"


def _check_participant(p: dict, path: str, problems: dict[str, str]) -> None:
    """A Participant (RFC 8984 §4.4.6).  name, email and the sendTo URIs are written into
    ORGANIZER/ATTENDEE lines (CN, mailto:): one line each."""
    if p.get("@type", "Participant") != "Participant":
        problems[f"{path}/@type"] = 'must be "Participant"'
    _check_line(p, ("name", "email", "scheduleId", "language", "sentBy", "invitedBy", "locationId"), path,
                problems)
    _check_text(p, ("description", "participationComment"), path, problems)
    if p.get("sendTo") is not None:
        _check_send_to(p["sendTo"], f"{path}/sendTo", problems)
    if p.get("links") is not None:
        _map_of_objects(p["links"], f"{path}/links", problems, _check_link)
    for key in ("roles", "memberOf", "delegatedTo", "delegatedFrom"):
        if p.get(key) is not None:
            _true_map(p[key], f"{path}/{key}", problems)
    if p.get("participationStatus") is not None and not _one_of(p["participationStatus"], _PARTICIPATION):
        problems[f"{path}/participationStatus"] = f"must be one of {', '.join(sorted(_PARTICIPATION))}"
    if p.get("kind") is not None and not _one_of(p["kind"], _KINDS):
        problems[f"{path}/kind"] = f"must be one of {', '.join(sorted(_KINDS))}"
    if p.get("expectReply") is not None and not isinstance(p["expectReply"], bool):
        problems[f"{path}/expectReply"] = "must be true or false"


def _check_alert(a: dict, path: str, problems: dict[str, str]) -> None:
    if a.get("@type", "Alert") != "Alert":
        problems[f"{path}/@type"] = 'must be "Alert"'
    if not _one_of(a.get("action", "display"), ("display", "email")):
        problems[f"{path}/action"] = 'must be "display" or "email"'
    if a.get("acknowledged") is not None and not _utc_ok(a["acknowledged"]):
        problems[f"{path}/acknowledged"] = "must be a UTCDateTime"
    trigger = a.get("trigger")
    if not isinstance(trigger, dict):
        problems[f"{path}/trigger"] = "must be an OffsetTrigger or AbsoluteTrigger object"
        return
    kind = trigger.get("@type", "OffsetTrigger")
    if kind == "OffsetTrigger":
        why = duration_problem(trigger.get("offset"), signed=True)
        if why:
            problems[f"{path}/trigger/offset"] = why
        if not _one_of(trigger.get("relativeTo", "start"), ("start", "end")):
            problems[f"{path}/trigger/relativeTo"] = 'must be "start" or "end"'
    elif kind == "AbsoluteTrigger":
        if not _utc_ok(trigger.get("when")):
            problems[f"{path}/trigger/when"] = "must be a UTCDateTime"
    elif kind != "UnknownTrigger":
        problems[f"{path}/trigger/@type"] = "must be OffsetTrigger, AbsoluteTrigger or UnknownTrigger"


def _check_location(loc: dict, path: str, problems: dict[str, str]) -> None:
    if loc.get("@type", "Location") != "Location":
        problems[f"{path}/@type"] = 'must be "Location"'
    _check_text(loc, ("name", "description"), path, problems)
    _check_line(loc, ("timeZone", "coordinates"), path, problems)  # a zone id, a geo: URI


def _check_virtual_location(loc: dict, path: str, problems: dict[str, str]) -> None:
    if not one_line(loc.get("uri")):
        problems[f"{path}/uri"] = "must be a URI on one line (no CR, LF or other control character)"
    _check_text(loc, ("name", "description"), path, problems)


def _check_link(link: dict, path: str, problems: dict[str, str]) -> None:
    """A Link (RFC 8984 §1.4.11); href is written as the URL line of the export."""
    if link.get("href") is None and link.get("blobId") is None:
        problems[f"{path}/href"] = "must be a string (or a blobId given)"
    _check_line(link, ("href", "blobId", "contentType", "rel", "display"), path, problems)
    _check_text(link, ("title",), path, problems)


def _check_relation(rel: dict, path: str, problems: dict[str, str]) -> None:
    if rel.get("relation") is not None:
        _true_map(rel["relation"], f"{path}/relation", problems)


def _check_related_to(value: object, path: str, problems: dict[str, str]) -> None:
    _map_of_objects(value, path, problems, _check_relation, keys="uids", key_ok=one_line,
                    key_problem="the uid must be on one line (no CR, LF or other control character)",
                    items="Relation objects")


def _check_overrides(value: object, path: str, problems: dict[str, str]) -> None:
    if not isinstance(value, dict):
        problems[path] = "must be an object mapping LocalDateTimes to PatchObjects"
        return
    for rid, patch in value.items():
        if parse_local(rid) is None:
            problems[f"{path}/{rid}"] = "key must be a LocalDateTime"
        elif not isinstance(patch, dict):
            problems[f"{path}/{rid}"] = "must be a PatchObject"
        else:
            check_event(patch, problems, f"{path}/{rid}/", override=True)


def _check_scalar(key: str, value: object) -> str | None:
    """Why value is not valid for the scalar Event property key (None: valid, or not a scalar)."""
    if key in _STRING:
        if not isinstance(value, str):
            return "must be a string"
        return _ONE_LINE_WHY if key in _ONE_LINE and _CONTROL.search(value) else None
    if key in _BOOL:
        return None if isinstance(value, bool) else "must be true or false"
    if key in _ENUMS:
        return None if _one_of(value, _ENUMS[key]) else f"must be one of {', '.join(sorted(_ENUMS[key]))}"
    if key == "@type":
        return None if value == "Event" else 'must be "Event"'
    if key == "start":
        return None if parse_local(value) else 'must be a LocalDateTime such as "2024-03-05T09:00:00"'
    if key == "recurrenceId":
        return None if parse_local(value) else "must be a LocalDateTime"
    if key in ("timeZone", "recurrenceIdTimeZone"):
        return None if zone(value) else "must be a time zone of the IANA Time Zone Database (e.g. Europe/Berlin)"
    if key == "duration":
        return duration_problem(value)
    if key in ("created", "updated"):
        return None if _utc_ok(value) else "must be a UTCDateTime"
    if key == "sequence":
        return None if _is_int(value) and 0 <= value <= _INT_MAX else f"must be an integer from 0 to {_INT_MAX}"
    if key == "priority":
        return None if _is_int(value) and 0 <= value <= 9 else "must be an integer from 0 to 9"
    if key == "requestStatus":
        return None if one_line(value) else _ONE_LINE_WHY
    if key in ("localizations", "timeZones"):
        return None if isinstance(value, dict) else "must be an object"
    return None


def _check_reply_to(value: object, path: str, problems: dict[str, str]) -> None:
    if not isinstance(value, dict) or not all(one_line(k) and one_line(v) for k, v in value.items()):
        problems[path] = "must be an object mapping methods (imip, web, other) to URIs, each on one line"


# properties whose value is an object or list: the checker of each
_STRUCTURED = {
    "keywords": _true_map, "categories": _true_map, "recurrenceOverrides": _check_overrides,
    "participants": lambda v, p, pr: _map_of_objects(v, p, pr, _check_participant),
    "alerts": lambda v, p, pr: _map_of_objects(v, p, pr, _check_alert),
    "locations": lambda v, p, pr: _map_of_objects(v, p, pr, _check_location),
    "virtualLocations": lambda v, p, pr: _map_of_objects(v, p, pr, _check_virtual_location),
    "links": lambda v, p, pr: _map_of_objects(v, p, pr, _check_link),
    "relatedTo": _check_related_to, "replyTo": _check_reply_to,
}


def _check_rules(value: object, path: str, problems: dict[str, str]) -> None:
    if not isinstance(value, list):
        problems[path] = "must be a list of RecurrenceRule objects"
        return
    for i, rule in enumerate(value):
        check_rule(rule, f"{path}/{i}", problems)


_STRUCTURED["recurrenceRules"] = _STRUCTURED["excludedRecurrenceRules"] = _check_rules


def check_event(obj: dict, problems: dict[str, str], prefix: str = "", override: bool = False) -> None:
    """Adds to problems (path -> why) every bad value of the JSCalendar properties of obj (an Event,
    or with override a PatchObject of recurrenceOverrides whose keys are paths)."""
    for key, value in obj.items():
        path = prefix + key
        root = key.split("/", 1)[0]
        if override and root in _NOT_IN_OVERRIDES and not (key == "excluded"):
            problems[path] = "may not be overridden in recurrenceOverrides"
            continue
        if override and "/" in key:
            continue  # a deep patch path: checked on the instance it makes (CalendarEvent.validate)
        if value is None:
            continue  # null: the property is removed (the draft §CalendarEvent/set)
        if key in _STRUCTURED:
            _STRUCTURED[key](value, path, problems)
            continue
        why = _check_scalar(key, value)
        if why:
            problems[path] = why
