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

from .timing import parse_duration, parse_local, zone

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

_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d*[1-9])?Z$")
_DAYS = {"mo", "tu", "we", "th", "fr", "sa", "su"}
_FREQS = {"yearly", "monthly", "weekly", "daily", "hourly", "minutely", "secondly"}
_ENUMS = {
    "status": {"confirmed", "cancelled", "tentative"},
    "freeBusyStatus": {"free", "busy"},
    "privacy": {"public", "private", "secret"},
    "descriptionContentType": None,  # any media type
}
_STRING = ("title", "description", "descriptionContentType", "uid", "prodId", "color", "locale", "sentBy",
           "method")
_BOOL = ("showWithoutTime", "excluded", "useDefaultAlerts", "mayInviteSelf", "mayInviteOthers",
         "hideAttendees", "isDraft")
_PARTICIPATION = {"needs-action", "accepted", "declined", "tentative", "delegated"}
_KINDS = {"individual", "group", "location", "resource"}
# properties an override may not change (RFC 8984 §4.3.5; the draft §"Additional properties")
_NOT_IN_OVERRIDES = {"@type", "uid", "relatedTo", "prodId", "method", "recurrenceId", "recurrenceIdTimeZone",
                     "recurrenceRules", "excludedRecurrenceRules", "recurrenceOverrides", "replyTo",
                     "mayInviteSelf", "mayInviteOthers", "hideAttendees", "isDraft", "calendarIds", "id",
                     "baseEventId", "isOrigin", "utcStart", "utcEnd"}


def _utc_ok(value: object) -> bool:
    return isinstance(value, str) and bool(_UTC.match(value))


def _map_of_objects(value: object, path: str, problems: dict[str, str], check) -> None:
    if not isinstance(value, dict):
        problems[path] = "must be an object mapping ids to objects"
        return
    for key, item in value.items():
        if not _ID.match(str(key)):
            problems[f"{path}/{key}"] = "key is not an Id"
        elif not isinstance(item, dict):
            problems[f"{path}/{key}"] = "must be an object"
        else:
            check(item, f"{path}/{key}", problems)


def _true_map(value: object, path: str, problems: dict[str, str]) -> None:
    if not isinstance(value, dict) or not all(v is True for v in value.values()):
        problems[path] = "must be an object whose values are true"


def check_rule(rule: object, path: str, problems: dict[str, str]) -> None:
    """A RecurrenceRule (RFC 8984 §4.3.3)."""
    if not isinstance(rule, dict):
        problems[path] = "must be a RecurrenceRule object"
        return
    if rule.get("@type", "RecurrenceRule") != "RecurrenceRule":
        problems[f"{path}/@type"] = 'must be "RecurrenceRule"'
    if rule.get("frequency") not in _FREQS:
        problems[f"{path}/frequency"] = f"must be one of {', '.join(sorted(_FREQS))}"
    if "interval" in rule and not (isinstance(rule["interval"], int) and not isinstance(rule["interval"], bool)
                                   and rule["interval"] >= 1):
        problems[f"{path}/interval"] = "must be an integer >= 1"
    if rule.get("rscale", "gregorian") not in ("gregorian",):
        problems[f"{path}/rscale"] = 'only "gregorian" is supported'
    if rule.get("skip", "omit") != "omit":
        problems[f"{path}/skip"] = 'only "omit" is supported (the gregorian calendar)'
    if rule.get("firstDayOfWeek", "mo") not in _DAYS:
        problems[f"{path}/firstDayOfWeek"] = "must be a day: mo, tu, we, th, fr, sa or su"
    if rule.get("count") is not None and rule.get("until") is not None:
        problems[f"{path}/until"] = "count and until may not both be set"
    if rule.get("count") is not None and not (isinstance(rule["count"], int) and not isinstance(rule["count"], bool)
                                              and rule["count"] >= 1):
        problems[f"{path}/count"] = "must be an integer >= 1"
    if rule.get("until") is not None and parse_local(rule["until"]) is None:
        problems[f"{path}/until"] = "must be a LocalDateTime"
    by_day = rule.get("byDay")
    if by_day is not None:
        if not isinstance(by_day, list) or not by_day:
            problems[f"{path}/byDay"] = "must be a non-empty list of NDay objects"
        else:
            for i, nday in enumerate(by_day):
                if not isinstance(nday, dict) or nday.get("day") not in _DAYS:
                    problems[f"{path}/byDay/{i}"] = "must be an NDay with a day (mo ... su)"
                elif nday.get("nthOfPeriod") is not None and not (
                        isinstance(nday["nthOfPeriod"], int) and nday["nthOfPeriod"] != 0
                        and -53 <= nday["nthOfPeriod"] <= 53):
                    problems[f"{path}/byDay/{i}/nthOfPeriod"] = "must be a non-zero integer from -53 to 53"
    ranges = {"byMonthDay": (-31, 31), "byYearDay": (-366, 366), "byWeekNo": (-53, 53), "byHour": (0, 23),
              "byMinute": (0, 59), "bySecond": (0, 60), "bySetPosition": (-366, 366)}
    for key, (lo, hi) in ranges.items():
        values = rule.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or not values or not all(
                isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi and (v != 0 or lo == 0)
                for v in values):
            problems[f"{path}/{key}"] = f"must be a non-empty list of integers from {lo} to {hi}"
    months = rule.get("byMonth")
    if months is not None and (not isinstance(months, list) or not months or not all(
            isinstance(m, str) and m.isdigit() and 1 <= int(m) <= 12 for m in months)):
        problems[f"{path}/byMonth"] = 'must be a non-empty list of month numbers as strings ("1" ... "12")'
    unknown = set(rule) - {"@type", "frequency", "interval", "rscale", "skip", "firstDayOfWeek", "byDay",
                           "byMonthDay", "byMonth", "byYearDay", "byWeekNo", "byHour", "byMinute", "bySecond",
                           "bySetPosition", "count", "until"}
    for key in unknown:
        problems[f"{path}/{key}"] = "unknown RecurrenceRule property"


def _check_participant(p: dict, path: str, problems: dict[str, str]) -> None:
    if p.get("@type", "Participant") != "Participant":
        problems[f"{path}/@type"] = 'must be "Participant"'
    for key in ("name", "email", "description", "scheduleId", "participationComment", "memberOf"):
        if key in p and key != "memberOf" and p[key] is not None and not isinstance(p[key], str):
            problems[f"{path}/{key}"] = "must be a string"
    for key in ("sendTo", "links"):
        if p.get(key) is not None and not (isinstance(p[key], dict) and all(
                isinstance(v, (str, dict)) for v in p[key].values())):
            problems[f"{path}/{key}"] = "must be an object"
    roles = p.get("roles")
    if roles is not None:
        _true_map(roles, f"{path}/roles", problems)
    if p.get("participationStatus") is not None and p["participationStatus"] not in _PARTICIPATION:
        problems[f"{path}/participationStatus"] = f"must be one of {', '.join(sorted(_PARTICIPATION))}"
    if p.get("kind") is not None and p["kind"] not in _KINDS:
        problems[f"{path}/kind"] = f"must be one of {', '.join(sorted(_KINDS))}"
    if p.get("expectReply") is not None and not isinstance(p["expectReply"], bool):
        problems[f"{path}/expectReply"] = "must be true or false"


def _check_alert(a: dict, path: str, problems: dict[str, str]) -> None:
    if a.get("@type", "Alert") != "Alert":
        problems[f"{path}/@type"] = 'must be "Alert"'
    if a.get("action", "display") not in ("display", "email"):
        problems[f"{path}/action"] = 'must be "display" or "email"'
    if a.get("acknowledged") is not None and not _utc_ok(a["acknowledged"]):
        problems[f"{path}/acknowledged"] = "must be a UTCDateTime"
    trigger = a.get("trigger")
    if not isinstance(trigger, dict):
        problems[f"{path}/trigger"] = "must be an OffsetTrigger or AbsoluteTrigger object"
        return
    kind = trigger.get("@type", "OffsetTrigger")
    if kind == "OffsetTrigger":
        if parse_duration(trigger.get("offset"), signed=True) is None:
            problems[f"{path}/trigger/offset"] = 'must be a SignedDuration such as "-PT15M"'
        if trigger.get("relativeTo", "start") not in ("start", "end"):
            problems[f"{path}/trigger/relativeTo"] = 'must be "start" or "end"'
    elif kind == "AbsoluteTrigger":
        if not _utc_ok(trigger.get("when")):
            problems[f"{path}/trigger/when"] = "must be a UTCDateTime"
    elif kind != "UnknownTrigger":
        problems[f"{path}/trigger/@type"] = "must be OffsetTrigger, AbsoluteTrigger or UnknownTrigger"


def _check_location(loc: dict, path: str, problems: dict[str, str]) -> None:
    if loc.get("@type", "Location") != "Location":
        problems[f"{path}/@type"] = 'must be "Location"'
    for key in ("name", "description", "timeZone", "coordinates"):
        if loc.get(key) is not None and not isinstance(loc[key], str):
            problems[f"{path}/{key}"] = "must be a string"


def _check_virtual_location(loc: dict, path: str, problems: dict[str, str]) -> None:
    if not isinstance(loc.get("uri"), str):
        problems[f"{path}/uri"] = "must be a string (the URI)"


def _check_link(link: dict, path: str, problems: dict[str, str]) -> None:
    if not isinstance(link.get("href"), str) and not isinstance(link.get("blobId"), str):
        problems[f"{path}/href"] = "must be a string (or a blobId given)"


def _check_relation(rel: dict, path: str, problems: dict[str, str]) -> None:
    if rel.get("relation") is not None:
        _true_map(rel["relation"], f"{path}/relation", problems)


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
            continue  # a deep patch path: its target is checked when the instance is built
        if value is None:
            continue  # null: the property is removed (the draft §CalendarEvent/set)
        if key in _STRING and not isinstance(value, str):
            problems[path] = "must be a string"
        elif key in _BOOL and not isinstance(value, bool):
            problems[path] = "must be true or false"
        elif key in _ENUMS and _ENUMS[key] is not None and value not in _ENUMS[key]:
            problems[path] = f"must be one of {', '.join(sorted(_ENUMS[key]))}"
        elif key == "@type" and value != "Event":
            problems[path] = 'must be "Event"'
        elif key == "start" and parse_local(value) is None:
            problems[path] = 'must be a LocalDateTime such as "2024-03-05T09:00:00"'
        elif key in ("recurrenceId",) and parse_local(value) is None:
            problems[path] = "must be a LocalDateTime"
        elif key in ("timeZone", "recurrenceIdTimeZone") and zone(value) is None:
            problems[path] = "must be a time zone of the IANA Time Zone Database (e.g. Europe/Berlin)"
        elif key == "duration" and (parse_duration(value) is None):
            problems[path] = 'must be a Duration such as "PT1H"'
        elif key in ("created", "updated") and not _utc_ok(value):
            problems[path] = "must be a UTCDateTime"
        elif key in ("sequence",) and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            problems[path] = "must be an unsigned integer"
        elif key == "priority" and not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9):
            problems[path] = "must be an integer from 0 to 9"
        elif key in ("keywords", "categories"):
            _true_map(value, path, problems)
        elif key in ("recurrenceRules", "excludedRecurrenceRules"):
            if not isinstance(value, list):
                problems[path] = "must be a list of RecurrenceRule objects"
            else:
                for i, rule in enumerate(value):
                    check_rule(rule, f"{path}/{i}", problems)
        elif key == "recurrenceOverrides":
            if not isinstance(value, dict):
                problems[path] = "must be an object mapping LocalDateTimes to PatchObjects"
                continue
            for rid, patch in value.items():
                if parse_local(rid) is None:
                    problems[f"{path}/{rid}"] = "key must be a LocalDateTime"
                elif not isinstance(patch, dict):
                    problems[f"{path}/{rid}"] = "must be a PatchObject"
                else:
                    check_event(patch, problems, f"{path}/{rid}/", override=True)
        elif key == "participants":
            _map_of_objects(value, path, problems, _check_participant)
        elif key == "alerts":
            _map_of_objects(value, path, problems, _check_alert)
        elif key == "locations":
            _map_of_objects(value, path, problems, _check_location)
        elif key == "virtualLocations":
            _map_of_objects(value, path, problems, _check_virtual_location)
        elif key == "links":
            _map_of_objects(value, path, problems, _check_link)
        elif key == "relatedTo":
            if not isinstance(value, dict):
                problems[path] = "must be an object mapping uids to Relation objects"
            else:
                for uid, rel in value.items():
                    if not isinstance(rel, dict):
                        problems[f"{path}/{uid}"] = "must be a Relation object"
                    else:
                        _check_relation(rel, f"{path}/{uid}", problems)
        elif key == "replyTo":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                problems[path] = "must be an object mapping methods (imip, web, other) to URIs"
        elif key in ("localizations", "timeZones") and not isinstance(value, dict):
            problems[path] = "must be an object"
        elif key == "requestStatus" and not isinstance(value, str):
            problems[path] = "must be a string"
