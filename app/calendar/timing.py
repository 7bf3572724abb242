"""Time arithmetic of JSCalendar events (RFC 8984 §1.4, §4.3): LocalDateTime, Duration, time zones
and the expansion of recurrences, with `zoneinfo` for zones and `dateutil.rrule` for the rules.

Occurrences are computed in the event's local wall-clock time and only then converted to UTC, so
a weekly 09:00 Europe/Berlin event stays at 09:00 local across daylight-saving changes (RFC 8984
§4.3.3: rules are evaluated in the time zone of ``start``).  Every expansion is bounded: by the
window asked for, and by `MAX_STEPS` rule occurrences per event (`TooManyOccurrences`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule

__all__ = ["MAX_DURATION", "MAX_STEPS", "Occurrence", "TooManyOccurrences", "bounds", "duration_problem",
           "format_duration", "format_local", "local_to_utc", "occurrences", "parse_duration", "parse_local",
           "rule_to_rrule", "zone"]

MAX_STEPS = 100_000  # rule occurrences examined for one event in one expansion
FAR = datetime(9999, 1, 1, tzinfo=UTC)  # the end of a series that never ends
FLOAT_SLACK = timedelta(hours=14)  # a floating time lies within UTC±14h wherever it is read

# matched whole (fullmatch: "$" lets a trailing "\n" through), in ASCII digits only (\d would take
# "٣" of any script, which int() reads as 3)
_LOCAL_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]*[1-9])?")
_DURATION_RE = re.compile(r"([+-])?P(?:([0-9]+)W)?(?:([0-9]+)D)?"
                          r"(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+(?:\.[0-9]*[1-9])?)S)?)?")
# The longest Duration (or SignedDuration, either way) tidings keeps: the span of the start times it
# accepts (minDateTime 1900 to maxDateTime 2999, app.calendar.event) and some, so that no end or
# alert time computed from an accepted start leaves what datetime holds (years 1 to 9999) and
# timedelta's own limit (999999999 days) is never reached.
MAX_DURATION = timedelta(days=500_000)
_MAX_DIGITS = 30  # more digits than any duration up to MAX_DURATION needs, in any unit (and zeros before)
# an IANA zone name: ASCII letters, digits, "_", "+", "-", parts joined by "/"
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_FREQ = {"yearly": rrule.YEARLY, "monthly": rrule.MONTHLY, "weekly": rrule.WEEKLY, "daily": rrule.DAILY,
         "hourly": rrule.HOURLY, "minutely": rrule.MINUTELY, "secondly": rrule.SECONDLY}
_DAYS = ("mo", "tu", "we", "th", "fr", "sa", "su")


class TooManyOccurrences(Exception):
    """An expansion would examine more than MAX_STEPS occurrences (cannotCalculateOccurrences)."""


def parse_local(value: object) -> datetime | None:
    """A LocalDateTime (RFC 8984 §1.4.4, e.g. "2024-03-05T09:00:00") as a naive datetime, or None."""
    if not isinstance(value, str) or not _LOCAL_RE.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def format_local(dt: datetime) -> str:
    return dt.replace(tzinfo=None, microsecond=0).isoformat()


def parse_duration(value: object, signed: bool = False) -> timedelta | None:
    """A Duration (RFC 8984 §1.4.6, e.g. "PT1H30M", "P1W") or, with signed, a SignedDuration
    ("-PT15M"), as a timedelta; None if malformed or longer than MAX_DURATION (`duration_problem`
    says which)."""
    if duration_problem(value, signed):
        return None
    m = _DURATION_RE.fullmatch(value)
    whole, fraction = _seconds(m)
    td = timedelta(seconds=whole) + timedelta(seconds=fraction)
    return -td if m.group(1) == "-" else td


def duration_problem(value: object, signed: bool = False) -> str | None:
    """Why value is not a (Signed)Duration tidings keeps, in words for invalidProperties; None if
    it is one.  The size is checked on the numbers before any timedelta is made: "P99999999999W"
    is well formed, but as a timedelta it overflows."""
    kind, example = ("a SignedDuration", '"-PT15M"') if signed else ("a Duration", '"PT1H"')
    m = _DURATION_RE.fullmatch(value) if isinstance(value, str) else None
    if not m or value.endswith(("P", "T")) or (m.group(1) and not signed):
        return f"must be {kind} such as {example}"
    # int() refuses more than 4300 digits (ValueError): a longer number is too long anyway
    if any(g and len(g.split(".")[0]) > _MAX_DIGITS for g in m.groups()[1:]) or sum(_seconds(m)) > MAX_DURATION.total_seconds():
        return f"must be at most {MAX_DURATION.days} days long"
    return None


def _seconds(m: re.Match) -> tuple[int, float]:
    """(whole seconds, fraction) of a matched (Signed)Duration, without its sign."""
    weeks, days, hours, minutes = (int(g or 0) for g in m.groups()[1:5])
    seconds = m.group(6) or "0"
    whole, _, fraction = seconds.partition(".")
    return (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + int(whole), float(f"0.{fraction or 0}")


def format_duration(td: timedelta) -> str:
    """A timedelta as a (Signed)Duration: "PT0S", "P1D", "PT1H30M", "-PT15M"."""
    sign = "-" if td < timedelta(0) else ""
    td = abs(td)
    days, rest = td.days, td.seconds
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = sign + "P"
    if days:
        out += f"{days // 7}W" if days % 7 == 0 and not rest else f"{days}D"
    if hours or minutes or seconds:
        out += "T" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (
            f"{seconds}S" if seconds else "")
    return out if out not in ("P", "-P") else "PT0S"


def zone(name: object) -> ZoneInfo | None:
    """The IANA time zone of that name, or None (unknown, or not a string: a client's value of any
    JSON type may get here, and only strings can be cached)."""
    return _zone(name) if isinstance(name, str) else None


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    if not _ZONE_NAME.fullmatch(name):  # no "..", no leading "/", no control character
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def local_to_utc(local: datetime, tz: ZoneInfo | None) -> datetime:
    """A wall-clock time in tz (None: floating, read as UTC) as an aware UTC datetime.  A time in a
    gap (spring forward) moves forward as RFC 5545 §3.3.5 says; in an overlap the first is taken."""
    if tz is None:
        return local.replace(tzinfo=UTC)
    aware = local.replace(tzinfo=tz, fold=0)
    back = aware.astimezone(UTC).astimezone(tz)
    if back.replace(tzinfo=None) != local:  # in a gap: fold=1 reads it with the offset before the gap
        aware = local.replace(tzinfo=tz, fold=1)
    return aware.astimezone(UTC)


def rule_to_rrule(rule: dict) -> str:
    """A JSCalendar RecurrenceRule (RFC 8984 §4.3.3) as an iCalendar RRULE value (RFC 5545 §3.3.10),
    with UNTIL as a local time (no Z: it is in the event's time zone)."""
    parts = [f"FREQ={rule['frequency'].upper()}"]
    if rule.get("interval", 1) != 1:
        parts.append(f"INTERVAL={rule['interval']}")
    if rule.get("count") is not None:
        parts.append(f"COUNT={rule['count']}")
    if rule.get("until"):
        parts.append("UNTIL=" + rule["until"].replace("-", "").replace(":", "").split(".")[0])
    if rule.get("byDay"):
        parts.append("BYDAY=" + ",".join(f"{d.get('nthOfPeriod', '') or ''}{d['day'].upper()}" for d in rule["byDay"]))
    for key, name in (("byMonthDay", "BYMONTHDAY"), ("byMonth", "BYMONTH"), ("byYearDay", "BYYEARDAY"),
                      ("byWeekNo", "BYWEEKNO"), ("byHour", "BYHOUR"), ("byMinute", "BYMINUTE"),
                      ("bySecond", "BYSECOND"), ("bySetPosition", "BYSETPOS")):
        if rule.get(key):
            parts.append(f"{name}=" + ",".join(str(v) for v in rule[key]))
    if rule.get("firstDayOfWeek", "mo") != "mo":
        parts.append(f"WKST={rule['firstDayOfWeek'].upper()}")
    return ";".join(parts)


def _rrule(rule: dict, dtstart: datetime) -> rrule.rrule:
    until = parse_local(rule.get("until")) if rule.get("until") else None
    kwargs: dict = {"dtstart": dtstart, "interval": rule.get("interval", 1), "count": rule.get("count"),
                    "until": until, "wkst": _DAYS.index(rule.get("firstDayOfWeek", "mo")), "cache": False}
    if rule.get("byDay"):
        days = []
        for d in rule["byDay"]:
            wd = rrule.weekdays[_DAYS.index(d["day"])]
            days.append(wd(d["nthOfPeriod"]) if d.get("nthOfPeriod") else wd)
        kwargs["byweekday"] = days
    for key, arg in (("byMonthDay", "bymonthday"), ("byYearDay", "byyearday"), ("byWeekNo", "byweekno"),
                     ("byHour", "byhour"), ("byMinute", "byminute"), ("bySecond", "bysecond"),
                     ("bySetPosition", "bysetpos")):
        if rule.get(key):
            kwargs[arg] = list(rule[key])
    if rule.get("byMonth"):
        kwargs["bymonth"] = [int(m) for m in rule["byMonth"]]  # leap months ("3L") are refused earlier
    return rrule.rrule(_FREQ[rule["frequency"]], **kwargs)


@dataclass
class Occurrence:
    """One instance of an event: its recurrence id (None: not recurring), its start and end in
    UTC, and the override patch that applies to it (None: none)."""

    recurrence_id: datetime | None
    start: datetime
    end: datetime
    patch: dict | None = None


def _span(event: dict, patch: dict | None, rid: datetime, tz: ZoneInfo | None,
          duration: timedelta) -> tuple[datetime, datetime]:
    start_local = parse_local((patch or {}).get("start")) or rid
    tzname = (patch or {}).get("timeZone", event.get("timeZone"))
    tz = zone(tzname) if "timeZone" in (patch or {}) else tz
    dur = parse_duration((patch or {}).get("duration")) if (patch or {}).get("duration") else duration
    start = local_to_utc(start_local, tz)
    return start, start + (dur or timedelta(0))


def is_recurring(event: dict) -> bool:
    return bool(event.get("recurrenceRules") or event.get("recurrenceOverrides"))


def occurrences(event: dict, after: datetime, before: datetime, floating: ZoneInfo | None = None,
                limit: int | None = None) -> Iterator[Occurrence]:
    """The instances of a (valid) event overlapping [after, before) (aware UTC datetimes: an
    instance overlaps when it starts before `before` and ends after `after`, a zero-length one when
    it starts in the window), in start order for the rule-made ones followed by the overridden
    ones.  floating: the zone a floating event is read in (None: UTC).  Raises TooManyOccurrences."""
    start = parse_local(event["start"])
    tz = zone(event.get("timeZone")) or floating
    duration = parse_duration(event.get("duration") or "PT0S") or timedelta(0)
    count = 0

    def overlaps(s: datetime, e: datetime) -> bool:
        return s < before and (e > after or (s == e and s >= after))

    if not is_recurring(event):
        s = local_to_utc(start, tz)
        if overlaps(s, s + duration):
            yield Occurrence(None, s, s + duration)
        return
    overrides = {parse_local(k): v for k, v in (event.get("recurrenceOverrides") or {}).items()}
    rules = event.get("recurrenceRules") or []
    if rules:
        rset = rrule.rruleset(cache=False)
        rset.rdate(start)  # the start is always the first instance (RFC 8984 §4.3.3)
        for rule in rules:
            rset.rrule(_rrule(rule, start))
        for rule in event.get("excludedRecurrenceRules") or []:
            rset.exrule(_rrule(rule, start))
        # the local window, widened by a day each side for zone offsets, and by the duration
        lo = (after - duration).astimezone(tz or UTC).replace(tzinfo=None) - timedelta(days=1)
        hi = before.astimezone(tz or UTC).replace(tzinfo=None) + timedelta(days=1)
        for rid in rset:
            count += 1
            if count > MAX_STEPS:
                raise TooManyOccurrences(f"more than {MAX_STEPS} occurrences to examine")
            if rid >= hi:
                break
            if rid < lo or rid in overrides:
                continue
            s = local_to_utc(rid, tz)
            if overlaps(s, s + duration):
                yield Occurrence(rid, s, s + duration)
                if limit is not None:
                    limit -= 1
                    if limit <= 0:
                        return
    elif start not in overrides:  # overrides without rules: the start is an instance too
        s = local_to_utc(start, tz)
        if overlaps(s, s + duration):
            yield Occurrence(start, s, s + duration)
    for rid, patch in sorted(overrides.items()):
        if rid is None or patch.get("excluded"):
            continue
        s, e = _span(event, patch, rid, tz, duration)
        if overlaps(s, e):
            yield Occurrence(rid, s, e, patch)


def bounds(event: dict) -> tuple[datetime, datetime]:
    """(the earliest start, the latest end) of all instances, in UTC, widened for a floating event;
    the end is FAR for a series without end (or whose end is too far to compute)."""
    start = parse_local(event["start"])
    tz = zone(event.get("timeZone"))
    duration = parse_duration(event.get("duration") or "PT0S") or timedelta(0)
    first = local_to_utc(start, tz)
    last = first + duration
    for rid, patch in (event.get("recurrenceOverrides") or {}).items():
        rid_dt = parse_local(rid)
        if rid_dt is None or patch.get("excluded"):
            continue
        s, e = _span(event, patch, rid_dt, tz, duration)
        first, last = min(first, s), max(last, e)
    rules = event.get("recurrenceRules") or []
    if any(r.get("count") is None and not r.get("until") for r in rules):
        last = FAR
    elif rules:
        try:
            for occ in occurrences({**event, "recurrenceOverrides": None}, first, FAR):
                last = max(last, occ.end)
        except TooManyOccurrences:
            last = FAR
    if tz is None:
        first, last = first - FLOAT_SLACK, min(FAR, last + FLOAT_SLACK) if last != FAR else FAR
    return first, last
