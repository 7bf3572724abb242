"""iCalendar (RFC 5545) in and out: VEVENTs to JSCalendar Events (RFC 8984) and back, following
the mapping of the JSCalendar/iCalendar conversion draft (draft-ietf-calext-jscalendar-icalendar)
for what JSCalendar models.  The syntax is the `icalendar` library's.

In (`parse_ics`): VEVENTs are grouped by UID; the one without RECURRENCE-ID is the base event,
the others become its recurrenceOverrides (the properties that differ from the base); a UID with
only RECURRENCE-ID instances gives one event per instance (recurrenceId set, draft §UIDs).
UID, SUMMARY, DESCRIPTION, DTSTART/DTEND/DURATION (with TZID: IANA names are kept; a VTIMEZONE
with another TZID is honoured by converting its times to UTC), RRULE, EXRULE, EXDATE, RDATE,
RECURRENCE-ID, VALARM, ORGANIZER/ATTENDEE, LOCATION, STATUS, TRANSP, CATEGORIES, PRIORITY,
SEQUENCE, CLASS, URL, COLOR, CREATED, LAST-MODIFIED/DTSTAMP.  A component that cannot be read is
reported in `problems` and the others are kept.

Out (`to_ics`): the base VEVENT, EXDATE for excluded instances, RDATE for added ones, one VEVENT
with RECURRENCE-ID per other override, a VTIMEZONE for each zone used.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import icalendar

from .jscal import EVENT_DEFAULTS, check_event
from .timing import format_duration, format_local, parse_duration, parse_local, zone

__all__ = ["ParsedCalendar", "UnwritableEvent", "event_ics", "parse_ics", "to_ics"]

PRODID = "-//tidings//JMAP Calendars//EN"
_CLASS = {"PUBLIC": "public", "PRIVATE": "private", "CONFIDENTIAL": "secret"}
_ROLES = {"CHAIR": "chair", "REQ-PARTICIPANT": "attendee", "OPT-PARTICIPANT": "optional",
          "NON-PARTICIPANT": "informational"}
_FREQ_DAYS = ("mo", "tu", "we", "th", "fr", "sa", "su")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_NOT_BREAK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
log = logging.getLogger("tidings.calendar")


class UnwritableEvent(ValueError):
    """An event the iCalendar writer cannot write (a value of a kind CalendarEvent/set refuses now,
    stored before it did, that the guards below do not cover)."""


@dataclass
class ParsedCalendar:
    events: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per component that was left out


# ------------------------------------------------------------------------------------------ in
def _zone_name(tzinfo) -> str | None:
    """The IANA name of an icalendar tzinfo, if it has one."""
    key = getattr(tzinfo, "key", None) or getattr(tzinfo, "zone", None)
    if key and zone(key) is not None:
        return "Etc/UTC" if key == "UTC" else key
    name = str(tzinfo) if tzinfo is not None else ""
    for i in range(len(name.split("/"))):  # "/mozilla.org/20050126_1/Europe/Berlin" -> Europe/Berlin
        candidate = "/".join(name.split("/")[i:])
        if zone(candidate) is not None:
            return candidate
    return None


def _when(value, tzid: str | None = None) -> tuple[datetime, str | None, bool]:
    """(local wall-clock time, IANA zone or None, date-only) of a DATE or DATE-TIME value."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value, None, False
        name = _zone_name(value.tzinfo) or (tzid and zone(tzid) and tzid)
        if name:
            return value.astimezone(zone(name)).replace(tzinfo=None), name, False
        # a VTIMEZONE without an IANA name: honoured by converting to UTC
        return value.astimezone(UTC).replace(tzinfo=None), "Etc/UTC", False
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day), None, True
    raise ValueError(f"not a date or date-time: {value!r}")


def _in_zone(value, tz_name: str | None) -> datetime:
    """A DATE/DATE-TIME value as wall-clock time in the event's zone (EXDATE, RDATE, RECURRENCE-ID)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(zone(tz_name) or UTC).replace(tzinfo=None)
    if isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day)


def _rule(recur, tz_name: str | None) -> dict:
    rule: dict = {"@type": "RecurrenceRule", "frequency": recur["FREQ"][0].lower()}
    if "INTERVAL" in recur and int(recur["INTERVAL"][0]) != 1:
        rule["interval"] = int(recur["INTERVAL"][0])
    if "COUNT" in recur:
        rule["count"] = int(recur["COUNT"][0])
    if "UNTIL" in recur:
        until = recur["UNTIL"][0]
        rule["until"] = format_local(_in_zone(until, tz_name))
    if "BYDAY" in recur:
        days = []
        for d in recur["BYDAY"]:
            d = str(d)
            nth, day = d[:-2], d[-2:].lower()
            days.append({"@type": "NDay", "day": day, **({"nthOfPeriod": int(nth)} if nth else {})})
        rule["byDay"] = days
    for ical, js in (("BYMONTHDAY", "byMonthDay"), ("BYYEARDAY", "byYearDay"), ("BYWEEKNO", "byWeekNo"),
                     ("BYHOUR", "byHour"), ("BYMINUTE", "byMinute"), ("BYSECOND", "bySecond"),
                     ("BYSETPOS", "bySetPosition")):
        if ical in recur:
            rule[js] = [int(v) for v in recur[ical]]
    if "BYMONTH" in recur:
        rule["byMonth"] = [str(int(v)) for v in recur["BYMONTH"]]
    if "WKST" in recur and str(recur["WKST"][0]).lower() != "mo":
        rule["firstDayOfWeek"] = str(recur["WKST"][0]).lower()
    return rule


def _pid(address: str) -> str:
    return hashlib.sha1(address.lower().encode()).hexdigest()[:12]


def _participant(prop, owner: bool) -> tuple[str, dict]:
    address = str(prop)
    email = address[7:] if address.lower().startswith("mailto:") else None
    p: dict = {"@type": "Participant", "sendTo": {"imip": address} if email else {"other": address},
               "roles": {"owner": True} if owner else {}}
    if email:
        p["email"] = email
    params = prop.params
    if params.get("CN"):
        p["name"] = str(params["CN"])
    if not owner:
        role = _ROLES.get(str(params.get("ROLE", "REQ-PARTICIPANT")).upper(), "attendee")
        p["roles"] = {role: True} if role in ("attendee", "chair") else {"attendee": True, role: True}
        if role == "chair":
            p["roles"]["attendee"] = True
        p["participationStatus"] = str(params.get("PARTSTAT", "NEEDS-ACTION")).lower()
        if str(params.get("RSVP", "")).upper() == "TRUE":
            p["expectReply"] = True
    if params.get("CUTYPE"):
        p["kind"] = str(params["CUTYPE"]).lower() if str(params["CUTYPE"]).lower() in (
            "individual", "group", "resource", "room") else "individual"
        if p["kind"] == "room":
            p["kind"] = "location"
    return _pid(address), p


def _alert(alarm, index: int) -> tuple[str, dict]:
    trigger = alarm.get("TRIGGER")
    action = str(alarm.get("ACTION", "DISPLAY")).lower()
    alert: dict = {"@type": "Alert", "action": "email" if action == "email" else "display"}
    value = trigger.dt if trigger is not None else timedelta(0)
    if isinstance(value, timedelta):
        related = str(trigger.params.get("RELATED", "START")).lower() if trigger is not None else "start"
        alert["trigger"] = {"@type": "OffsetTrigger", "offset": format_duration(value),
                            **({"relativeTo": "end"} if related == "end" else {})}
    else:
        when = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        alert["trigger"] = {"@type": "AbsoluteTrigger", "when": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    alert_id = str(alarm.get("UID") or f"a{index + 1}")
    return alert_id if alert_id.replace("-", "").replace("_", "").isalnum() else f"a{index + 1}", alert


def _utc_text(value) -> str:
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{value:%Y-%m-%d}T00:00:00Z"


def _dates(component, name: str) -> list:
    values = component.get(name)
    if values is None:
        return []
    out = []
    for v in values if isinstance(values, list) else [values]:
        out.extend(d.dt for d in v.dts)
    return out


def vevent_to_event(ve) -> dict:
    """One VEVENT as a JSCalendar Event (without grouping; RECURRENCE-ID as recurrenceId)."""
    if ve.get("DTSTART") is None:
        raise ValueError("no DTSTART")
    for name in ("DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "UID", "SUMMARY"):
        if isinstance(ve.get(name), list):  # RFC 5545 §3.6.1: at most once
            raise ValueError(f"more than one {name}")
    start, tz_name, date_only = _when(ve["DTSTART"].dt, ve["DTSTART"].params.get("TZID"))
    # RFC 5545 requires a UID; one made from the component's text keeps a re-import idempotent
    uid = str(ve.get("UID") or "") or "tidings-" + hashlib.sha256(ve.to_ical()).hexdigest()[:24]
    ev: dict = {"@type": "Event", "uid": uid, "start": format_local(start), "timeZone": tz_name}
    if date_only:
        ev["showWithoutTime"] = True
    if ve.get("SUMMARY") is not None:
        ev["title"] = str(ve["SUMMARY"])
    if ve.get("DESCRIPTION") is not None and str(ve["DESCRIPTION"]):
        ev["description"] = str(ve["DESCRIPTION"])
    if ve.get("DURATION") is not None:
        ev["duration"] = format_duration(ve["DURATION"].dt)
    elif ve.get("DTEND") is not None:
        end, _, _ = _when(ve["DTEND"].dt, ve["DTEND"].params.get("TZID"))
        if isinstance(ve["DTEND"].dt, datetime) and ve["DTEND"].dt.tzinfo is not None and tz_name:
            end = ve["DTEND"].dt.astimezone(zone(tz_name)).replace(tzinfo=None)
        ev["duration"] = format_duration(max(end - start, timedelta(0)))
    elif date_only:
        ev["duration"] = "P1D"  # RFC 5545 §3.6.1: a DATE DTSTART without end lasts one day
    if ve.get("RECURRENCE-ID") is not None:
        ev["recurrenceId"] = format_local(_in_zone(ve["RECURRENCE-ID"].dt, tz_name))
    rrules = ve.get("RRULE")
    if rrules is not None:
        ev["recurrenceRules"] = [_rule(r, tz_name) for r in (rrules if isinstance(rrules, list) else [rrules])]
    exrules = ve.get("EXRULE")
    if exrules is not None:
        ev["excludedRecurrenceRules"] = [_rule(r, tz_name) for r in (exrules if isinstance(exrules, list)
                                                                      else [exrules])]
    overrides = {}
    for d in _dates(ve, "RDATE"):
        if isinstance(d, tuple):  # a PERIOD: its start
            d = d[0]
        overrides[format_local(_in_zone(d, tz_name))] = {}
    for d in _dates(ve, "EXDATE"):
        overrides[format_local(_in_zone(d, tz_name))] = {"excluded": True}
    if overrides:
        ev["recurrenceOverrides"] = overrides
    if ve.get("LOCATION") is not None and str(ve["LOCATION"]):
        ev["locations"] = {"l1": {"@type": "Location", "name": str(ve["LOCATION"])}}
    if ve.get("STATUS") is not None and str(ve["STATUS"]).lower() in ("confirmed", "cancelled", "tentative"):
        ev["status"] = str(ve["STATUS"]).lower()
    if ve.get("TRANSP") is not None:
        ev["freeBusyStatus"] = "free" if str(ve["TRANSP"]).upper() == "TRANSPARENT" else "busy"
    cats = ve.get("CATEGORIES")
    if cats is not None:
        words = [str(c) for v in (cats if isinstance(cats, list) else [cats]) for c in v.cats]
        if words:
            ev["keywords"] = dict.fromkeys(words, True)
    if ve.get("PRIORITY") is not None:
        ev["priority"] = max(0, min(9, int(ve["PRIORITY"])))
    if ve.get("SEQUENCE") is not None:
        ev["sequence"] = max(0, int(ve["SEQUENCE"]))
    if ve.get("CLASS") is not None and str(ve["CLASS"]).upper() in _CLASS:
        ev["privacy"] = _CLASS[str(ve["CLASS"]).upper()]
    if ve.get("COLOR") is not None:
        ev["color"] = str(ve["COLOR"])
    if ve.get("URL") is not None:
        ev["links"] = {"k1": {"@type": "Link", "href": str(ve["URL"])}}
    if ve.get("CREATED") is not None:
        ev["created"] = _utc_text(ve["CREATED"].dt)
    stamp = ve.get("LAST-MODIFIED") or ve.get("DTSTAMP")
    if stamp is not None:
        ev["updated"] = _utc_text(stamp.dt)
    participants: dict = {}
    organizer = ve.get("ORGANIZER")
    if organizer is not None:
        pid, p = _participant(organizer, owner=True)
        participants[pid] = p
        if p.get("email"):
            ev["replyTo"] = {"imip": f"mailto:{p['email']}"}
    attendees = ve.get("ATTENDEE")
    for a in (attendees if isinstance(attendees, list) else [attendees]) if attendees is not None else []:
        pid, p = _participant(a, owner=False)
        if pid in participants:  # the organizer attends too
            roles = {**participants[pid]["roles"], **p["roles"]}
            participants[pid] = {**p, **participants[pid], "roles": roles,
                                 "participationStatus": p["participationStatus"]}
        else:
            participants[pid] = p
    if participants:
        ev["participants"] = participants
    alerts = {}
    for i, alarm in enumerate(c for c in ve.subcomponents if c.name == "VALARM"):
        alert_id, alert = _alert(alarm, i)
        alerts[alert_id] = alert
    if alerts:
        ev["alerts"] = alerts
    return ev


_OVERRIDE_SKIP = {"@type", "uid", "recurrenceId", "recurrenceRules", "excludedRecurrenceRules",
                  "recurrenceOverrides", "replyTo", "created", "updated", "sequence"}


def _as_override(base: dict, instance: dict) -> dict:
    """The PatchObject of an instance: each property whose value differs from the base's."""
    patch = {}
    for key in set(base) | set(instance):
        if key in _OVERRIDE_SKIP:
            continue
        b = base.get(key, EVENT_DEFAULTS.get(key))
        i = instance.get(key, EVENT_DEFAULTS.get(key))
        if b != i:
            patch[key] = i
    if patch.get("start") == instance.get("recurrenceId"):
        patch.pop("start")
    return patch


def parse_ics(data: bytes | str) -> ParsedCalendar:
    """Every VEVENT of an iCalendar stream (one or several VCALENDARs) as JSCalendar Events."""
    out = ParsedCalendar()
    try:
        calendars = icalendar.Calendar.from_ical(data, multiple=True)
    except (ValueError, KeyError, IndexError) as exc:
        out.problems.append(f"not iCalendar: {exc}")
        return out
    by_uid: dict[str, list[dict]] = {}
    n = 0
    for cal in calendars:
        for ve in cal.walk("VEVENT"):
            n += 1
            uid = str(ve.get("UID") or f"VEVENT #{n}")
            for err in getattr(ve, "errors", ()):
                out.problems.append(f"{uid}: {err[0] or 'property'}: {err[1]}")
            try:
                ev = vevent_to_event(ve)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
                out.problems.append(f"{uid}: {exc}")
                continue
            problems: dict[str, str] = {}
            check_event(ev, problems)
            if problems:
                out.problems.append(f"{uid}: " + "; ".join(f"{k}: {v}" for k, v in sorted(problems.items())))
                continue
            by_uid.setdefault(ev["uid"], []).append(ev)
    for uid, events in by_uid.items():
        bases = [e for e in events if e.get("recurrenceId") is None]
        instances = [e for e in events if e.get("recurrenceId") is not None]
        if not bases:
            out.events.extend(instances)  # invited to single instances only
            continue
        base = bases[0]
        for extra in bases[1:]:
            out.problems.append(f"{uid}: a second VEVENT without RECURRENCE-ID was left out")
            del extra
        if instances:
            overrides = dict(base.get("recurrenceOverrides") or {})
            for inst in instances:
                overrides[inst["recurrenceId"]] = _as_override(base, inst)
            base["recurrenceOverrides"] = overrides
        out.events.append(base)
    return out


# ----------------------------------------------------------------------------------------- out
def _dt(local: str, tz_name: str | None, date_only: bool = False):
    value = parse_local(local)
    if date_only:
        return value.date()
    if tz_name in ("Etc/UTC", "UTC"):
        return value.replace(tzinfo=UTC)
    tz = zone(tz_name)
    return value.replace(tzinfo=tz) if tz is not None else value


def _recur(rule: dict, tz_name: str | None) -> icalendar.vRecur:
    recur: dict = {"FREQ": rule["frequency"].upper()}
    if rule.get("interval", 1) != 1:
        recur["INTERVAL"] = rule["interval"]
    if rule.get("count") is not None:
        recur["COUNT"] = rule["count"]
    if rule.get("until"):
        until = parse_local(rule["until"])
        tz = zone(tz_name)
        # RFC 5545 §3.3.10: UNTIL is in UTC when DTSTART has a zone
        recur["UNTIL"] = until.replace(tzinfo=tz).astimezone(UTC) if tz is not None else until
    if rule.get("byDay"):
        recur["BYDAY"] = [f"{d.get('nthOfPeriod') or ''}{d['day'].upper()}" for d in rule["byDay"]]
    for js, ical in (("byMonthDay", "BYMONTHDAY"), ("byMonth", "BYMONTH"), ("byYearDay", "BYYEARDAY"),
                     ("byWeekNo", "BYWEEKNO"), ("byHour", "BYHOUR"), ("byMinute", "BYMINUTE"),
                     ("bySecond", "BYSECOND"), ("bySetPosition", "BYSETPOS")):
        if rule.get(js):
            recur[ical] = [int(v) for v in rule[js]]
    if rule.get("firstDayOfWeek", "mo") != "mo":
        recur["WKST"] = rule["firstDayOfWeek"].upper()
    return icalendar.vRecur(recur)


# Values go through these guards on their way out, whatever CalendarEvent/set accepted when they
# were stored: a line break in a value the writer does not escape would start a line of the
# client's choosing (RFC 5545 §3.1), and icalendar's own checks of it are an error or, for some
# types, an `assert` that python -O removes.
def _text(value: object) -> str:
    """A TEXT value or parameter: icalendar escapes CR and LF (RFC 5545 §3.3.11, RFC 6868); other
    control characters are not text (§3.1 SAFE-CHAR) and are left out."""
    return _CONTROL_NOT_BREAK.sub("", str(value))


def _uri(value: str) -> str:
    """A URI or CAL-ADDRESS: control characters percent-encoded (RFC 3986 §2.1), so the value
    stays one line and keeps what it had."""
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", value)


def _token(ev: dict, name: str, value: object) -> str | None:
    """A value written as it is (COLOR, CUTYPE, PARTSTAT): None, and a log line, if it is not a
    string on one line."""
    if isinstance(value, str) and not _CONTROL.search(value):
        return value
    log.warning("event %r: %s %.40r left out of the iCalendar export: not a one-line string",
                ev.get("uid"), name, value)
    return None


def _vevent(ev: dict, recurrence_id: str | None = None) -> icalendar.Event:
    ve = icalendar.Event()
    tz_name = ev.get("timeZone")
    date_only = bool(ev.get("showWithoutTime")) and parse_local(ev["start"]).time() == datetime.min.time()
    ve.add("UID", _text(ev["uid"]))
    stamp = datetime.fromisoformat(ev["updated"].replace("Z", "+00:00")) if ev.get("updated") else None
    ve.add("DTSTAMP", stamp or datetime.now(UTC).replace(microsecond=0))
    if recurrence_id is not None or ev.get("recurrenceId"):
        ve.add("RECURRENCE-ID", _dt(recurrence_id or ev["recurrenceId"], tz_name, date_only))
    ve.add("DTSTART", _dt(ev["start"], tz_name, date_only))
    duration = parse_duration(ev.get("duration") or "PT0S") or timedelta(0)
    if duration:
        if date_only and duration.seconds == 0:
            ve.add("DTEND", _dt(format_local(parse_local(ev["start"]) + duration), tz_name, True))
        else:
            ve.add("DURATION", duration)
    if ev.get("title"):
        ve.add("SUMMARY", _text(ev["title"]))
    if ev.get("description"):
        ve.add("DESCRIPTION", _text(ev["description"]))
    for loc in (ev.get("locations") or {}).values():
        if loc.get("name"):
            ve.add("LOCATION", _text(loc["name"]))
            break
    ve.add("STATUS", (ev.get("status") or "confirmed").upper())
    ve.add("TRANSP", "TRANSPARENT" if ev.get("freeBusyStatus") == "free" else "OPAQUE")
    if ev.get("keywords"):
        ve.add("CATEGORIES", [_text(k) for k in ev["keywords"]])
    if ev.get("priority"):
        ve.add("PRIORITY", ev["priority"])
    ve.add("SEQUENCE", ev.get("sequence") or 0)
    if ev.get("privacy") and ev["privacy"] != "public":
        ve.add("CLASS", {v: k for k, v in _CLASS.items()}[ev["privacy"]])
    color = _token(ev, "color", ev["color"]) if ev.get("color") else None
    if color:
        ve.add("COLOR", color)
    for link in (ev.get("links") or {}).values():
        if link.get("href"):
            ve.add("URL", _uri(link["href"]))
            break
    if ev.get("created"):
        ve.add("CREATED", datetime.fromisoformat(ev["created"].replace("Z", "+00:00")))
    if stamp is not None:
        ve.add("LAST-MODIFIED", stamp)
    for p in (ev.get("participants") or {}).values():
        address = (p.get("sendTo") or {}).get("imip") or (f"mailto:{p['email']}" if p.get("email") else None) \
            or next(iter((p.get("sendTo") or {}).values()), None)
        if not address:
            continue
        roles = p.get("roles") or {}
        address = _uri(address)
        params = {"CN": _text(p["name"])} if p.get("name") else {}
        kind = _token(ev, "participant kind", p["kind"]) if p.get("kind") else None
        if kind:
            params["CUTYPE"] = {"location": "ROOM"}.get(kind, kind.upper())
        if roles.get("owner"):
            ve.add("ORGANIZER", icalendar.vCalAddress(address), parameters=dict(params))
        if any(roles.get(r) for r in ("attendee", "chair", "optional", "informational")) or not roles.get("owner"):
            role = ("CHAIR" if roles.get("chair") else "OPT-PARTICIPANT" if roles.get("optional") else
                    "NON-PARTICIPANT" if roles.get("informational") else "REQ-PARTICIPANT")
            status = _token(ev, "participationStatus", p.get("participationStatus") or "needs-action")
            params.update({"ROLE": role, "PARTSTAT": (status or "needs-action").upper()})
            if p.get("expectReply"):
                params["RSVP"] = "TRUE"
            ve.add("ATTENDEE", icalendar.vCalAddress(address), parameters=params)
    for alert_id, alert in (ev.get("alerts") or {}).items():
        alarm = icalendar.Alarm()
        alarm.add("UID", _text(alert_id))
        alarm.add("ACTION", "EMAIL" if alert.get("action") == "email" else "DISPLAY")
        trigger = alert.get("trigger") or {}
        if trigger.get("@type", "OffsetTrigger") == "OffsetTrigger":
            params = {"RELATED": "END"} if trigger.get("relativeTo") == "end" else {}
            alarm.add("TRIGGER", parse_duration(trigger.get("offset", "PT0S"), signed=True), parameters=params)
        elif trigger.get("@type") == "AbsoluteTrigger":
            alarm.add("TRIGGER", datetime.fromisoformat(trigger["when"].replace("Z", "+00:00")))
        alarm.add("DESCRIPTION", _text(ev.get("title") or "Reminder"))
        if alert.get("action") == "email":
            alarm.add("SUMMARY", _text(ev.get("title") or "Reminder"))
        ve.add_component(alarm)
    return ve


def _event_components(ev: dict) -> tuple[list[icalendar.Event], set[str]]:
    """The VEVENTs of one event (its base and one per override but exclusions and added dates) and
    the time zones they use."""
    from .event import apply_patch_object

    zones: set[str] = set()
    tz_name = ev.get("timeZone")
    if tz_name and tz_name not in ("Etc/UTC", "UTC"):
        zones.add(tz_name)
    base_only = {k: v for k, v in ev.items() if k != "recurrenceOverrides"}
    ve = _vevent(base_only)
    date_only = "VALUE" in ve["DTSTART"].params
    for rule in ev.get("recurrenceRules") or []:
        ve.add("RRULE", _recur(rule, tz_name))
    for rule in ev.get("excludedRecurrenceRules") or []:
        ve.add("EXRULE", _recur(rule, tz_name))
    overrides = ev.get("recurrenceOverrides") or {}
    excluded = [_dt(k, tz_name, date_only) for k, v in sorted(overrides.items()) if v.get("excluded")]
    added = [_dt(k, tz_name, date_only) for k, v in sorted(overrides.items()) if not v]
    if excluded:
        ve.add("EXDATE", excluded)
    if added:
        ve.add("RDATE", added)
    out = [ve]
    for rid, patch in sorted(overrides.items()):
        if not patch or patch.get("excluded"):
            continue
        instance = apply_patch_object({**base_only, "start": rid, "recurrenceRules": None,
                                       "excludedRecurrenceRules": None}, patch)
        out.append(_vevent(instance, recurrence_id=rid))
        if instance.get("timeZone") and instance["timeZone"] not in ("Etc/UTC", "UTC"):
            zones.add(instance["timeZone"])
    return out, zones


def event_ics(ev: dict) -> tuple[bytes, set[str]]:
    """The VEVENT lines of one event and the time zones they use; raises UnwritableEvent."""
    try:
        components, zones = _event_components(ev)
        return b"".join(c.to_ical() for c in components), zones
    except Exception as exc:  # noqa: BLE001 - icalendar raises ValueError, TypeError, AssertionError ...
        raise UnwritableEvent(f"event {str(ev.get('uid'))[:80]!r} cannot be written as iCalendar: "
                              f"{type(exc).__name__}: {exc}"[:300]) from exc


def to_ics(events: list[dict], skip_unwritable: bool = True) -> bytes:
    """Events (JSCalendar, as CalendarEvent/get shows them) as one VCALENDAR.  An event that cannot
    be written is left out with a log line (skip_unwritable), so that one event stored with a value
    of a kind refused today does not make the whole calendar unreadable; or UnwritableEvent."""
    texts: list[bytes] = []
    zones: set[str] = set()
    for ev in events:
        try:
            text, used = event_ics(ev)
        except UnwritableEvent as exc:
            if not skip_unwritable:
                raise
            log.warning("left out of the iCalendar export: %s", exc)
            continue
        texts.append(text)
        zones |= used
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    for name in sorted(zones):
        try:
            cal.add_component(icalendar.Timezone.from_tzid(name, first_date=date(1970, 1, 1),
                                                           last_date=date(2038, 1, 1)))
        except Exception:  # noqa: BLE001 - a zone icalendar cannot describe: TZID stays, without VTIMEZONE
            continue
    # VTIMEZONEs first, as RFC 5545 §3.6.5 examples and most readers expect; the events' lines,
    # made one event at a time above, go before END:VCALENDAR
    head = cal.to_ical()
    cut = head.rindex(b"END:VCALENDAR")
    return head[:cut] + b"".join(texts) + head[cut:]
