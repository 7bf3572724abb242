"""CalendarEvent (JMAP Calendars draft §Calendar Events): /get, /changes, /set, /copy, /query,
/queryChanges and /parse of JSCalendar Events (RFC 8984), kept in generic storage.

Storage: one record per stored event (a base event with its recurrenceRules and
recurrenceOverrides, or a standalone instance with a recurrenceId), holding the JSCalendar
properties and ``calendarIds``, plus three internal fields never shown: ``_utcStart`` and
``_utcEnd`` (epoch seconds of the first start and the last end of all its instances; the end is
9999-01-01 for a series without end) and ``_calendars`` (the calendar ids as a list).  Indexes:
``uid`` (one event per uid and recurrenceId, draft §UIDs), ``_utcEnd`` (a time-range query reads
only events that end after ``after``) and ``_calendars`` (Calendar/set destroy).

Synthetic ids (draft §Recurring events; the draft leaves their form to the server: "opaque"): an
instance of a recurring event found by ``expandRecurrences`` is ``<base id>_<recurrence id as
YYYYMMDDTHHMMSS>``, e.g. ``E1f_20240305T090000``.  /get resolves it to the instance (overrides
applied, ``baseEventId`` set, ``recurrenceRules``/``recurrenceOverrides`` null); /set update
writes the difference into the base event's recurrenceOverrides, /set destroy excludes that
instance.  /changes reports only stored ids.  A query with expandRecurrences answers
``canCalculateChanges: false`` (its instances come and go with the rules), so /queryChanges of it
answers cannotCalculateChanges; without expansion /queryChanges is exact.

Per-user properties (keywords, color, freeBusyStatus, useDefaultAlerts, alerts): calendars are
the owner's only (see app.calendar.calendar), so they are stored on the event, for its one user.
The server is the origin of an event (isOrigin) when replyTo is null or names one of the user's
addresses; then ``updated`` is set on every change and ``sequence`` incremented when a
non-per-user property changes (draft §CalendarEvent/set).  Scheduling messages are not sent
(sendSchedulingMessages is accepted and has no effect).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from app.addresses import addresses_of
from app.protocol import machinery
from app.protocol.errors import MethodError, invalid_arguments, invalid_properties, set_error
from app.protocol.query import evaluate_filter
from app.protocol.registry import register
from app.protocol.standard import bool_arg, check_known_args, same_json
from app.protocol.types import DataType, Property, data_type
from app.sharing import access_of, content_error, keep_hidden, readable, readable_ids
from store import Collection

from .calendar import CALENDAR, CALENDARS, DEFAULT_ID, calendar_exists
from .jscal import EVENT_DEFAULTS, check_event
from .timing import (
    FAR,
    TooManyOccurrences,
    bounds,
    format_local,
    is_recurring,
    local_to_utc,
    occurrences,
    parse_duration,
    parse_local,
    zone,
)

__all__ = ["EVENT", "MAX_EXPANDED_QUERY_DAYS", "MAX_DATE", "MIN_DATE", "apply_patch_object", "instance_of",
           "stored_fields"]

MIN_DATE, MAX_DATE = "1900-01-01T00:00:00", "2999-12-31T23:59:59"
MAX_EXPANDED_QUERY_DAYS = 400  # maxExpandedQueryDuration, P400D: a year and some
PER_USER = {"keywords", "color", "freeBusyStatus", "useDefaultAlerts", "alerts"}
_NOT_SEQUENCED = PER_USER | {"calendarIds", "isDraft", "updated", "sequence", "created"}
_SYNTHETIC = re.compile(r"^([A-Za-z0-9-]+)_([0-9]{8}T[0-9]{6})\Z")  # \Z: "$" allows a final "\n"
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|(\S+)')
_INTERNAL = ("_utcStart", "_utcEnd", "_calendars")
# {sharee account id: their per-user values (and "updated")}: the draft's per-user properties of a
# sharee are theirs alone; the event's own values are the owner's (kept by store_update)
_SHAREES = "_perUser"
# what mayRSVP lets a sharee change of the participant that is them (the draft's list)
_RSVP_KEYS = {"participationStatus", "participationComment", "expectReply", "scheduleAgent", "scheduleSequence",
              "scheduleUpdated"}
# what a sharee sees of a "private" event (RFC 8984 §4.4.3 "only the basic time and metadata";
# its list, with the recurrence that places the time, and JMAP's own properties)
_PRIVATE_SHOWN = {"id", "calendarIds", "isDraft", "isOrigin", "baseEventId", "utcStart", "utcEnd", "@type",
                  "created", "due", "duration", "estimatedDuration", "freeBusyStatus", "privacy",
                  "recurrenceOverrides", "sequence", "showWithoutTime", "start", "timeZone", "timeZones", "uid",
                  "updated", "recurrenceId", "recurrenceIdTimeZone", "recurrenceRules", "excludedRecurrenceRules"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def stored_fields(event: dict) -> dict:
    """The internal, indexed fields of a valid event record (see the module docstring)."""
    first, last = bounds(event)
    return {"_utcStart": _epoch(first), "_utcEnd": _epoch(last),
            "_calendars": sorted(event.get("calendarIds") or {})}


def synthetic_id(base_id: str, rid: datetime) -> str:
    return f"{base_id}_{rid:%Y%m%dT%H%M%S}"


def apply_patch_object(obj: dict, patch: dict) -> dict:
    """A JSCalendar PatchObject (RFC 8984 §1.4.9) applied to a copy of obj: each key a JSON pointer
    (``~1`` for "/"), its value set, null removing it; missing parents are made."""
    import copy

    out = copy.deepcopy(obj)
    for path, value in patch.items():
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")]
        target = out
        for part in parts[:-1]:
            nxt = target.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                target[part] = nxt
            target = nxt
        if value is None:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = copy.deepcopy(value)
    return out


def instance_of(base: dict, rid: datetime, patch: dict | None) -> dict:
    """One instance of a recurring event as /get shows it (draft §CalendarEvent/get)."""
    obj = {k: v for k, v in base.items() if k not in ("recurrenceRules", "excludedRecurrenceRules",
                                                        "recurrenceOverrides")}
    obj["start"] = format_local(rid)
    obj = apply_patch_object(obj, {k: v for k, v in (patch or {}).items() if k != "excluded"})
    obj.update({"id": synthetic_id(base["id"], rid), "baseEventId": base["id"], "recurrenceId": format_local(rid),
                "recurrenceIdTimeZone": base.get("timeZone"), "recurrenceRules": None,
                "excludedRecurrenceRules": None, "recurrenceOverrides": None})
    return obj


def _diff(base_instance: dict, wanted: dict) -> dict:
    """The top-level PatchObject turning one instance into another (overrides name whole properties)."""
    patch = {}
    for key in set(base_instance) | set(wanted):
        if key in ("id", "baseEventId", "recurrenceId", "recurrenceIdTimeZone", "recurrenceRules",
                   "excludedRecurrenceRules", "recurrenceOverrides", "calendarIds", "isDraft", "isOrigin",
                   "utcStart", "utcEnd", "updated", "sequence", "created"):
            continue
        if not same_json(base_instance.get(key), wanted.get(key)):
            patch[key] = wanted.get(key)
    if patch.get("start") == format_local(parse_local(base_instance["start"])):
        patch.pop("start")
    return patch


def _check_override_paths(event: dict, problems: dict[str, str]) -> None:
    """A PatchObject key that is a path ("participants/p1/email") is not checked by check_event, as
    what it reaches depends on the base event: the instance the patch makes is checked, and each
    problem is named by the patch key that made it (recurrenceOverrides/<rid>/<key>)."""
    base = {k: v for k, v in event.items() if k not in ("recurrenceRules", "excludedRecurrenceRules",
                                                         "recurrenceOverrides")}
    for rid, patch in event["recurrenceOverrides"].items():
        deep = [k for k in patch if "/" in k] if isinstance(patch, dict) else []
        if not deep:
            continue
        found: dict[str, str] = {}
        check_event(apply_patch_object(base, patch), found)
        for path, why in found.items():
            key = next((k for k in deep if path == k or path.startswith(k + "/") or k.startswith(path + "/")),
                       None)
            if key is not None:
                problems[f"recurrenceOverrides/{rid}/{key}"] = why


def _tokens(text: str) -> list[str]:
    return [(a or b or c).replace('\\"', '"').replace("\\'", "'").replace("\\\\", "\\").casefold()
            for a, b, c in _TOKEN.findall(text)]


def _has_text(haystacks: list[str], text: str) -> bool:
    hay = "\n".join(h for h in haystacks if h).casefold()
    return all(t in hay for t in _tokens(text))


def _participants(obj: dict, role: str | None) -> list[dict]:
    return [p for p in (obj.get("participants") or {}).values()
            if isinstance(p, dict) and (role is None or (p.get("roles") or {}).get(role))]


def _utc_of(value: str, tz) -> datetime:
    return local_to_utc(parse_local(value), tz)


class CalendarEvent(DataType):
    name = "CalendarEvent"
    capability = CALENDARS
    # query and queryChanges are registered below (expandRecurrences changes canCalculateChanges)
    methods = ("get", "changes", "set", "copy")
    collection = Collection("CalendarEvent", "E", log="CalendarEvent", indexes=("uid", "_utcEnd", "_calendars"))
    properties = {
        "id": Property("Id", server_set=True),
        "baseEventId": Property("Id", nullable=True, server_set=True),
        "calendarIds": Property("Id[Boolean]", nullable=True, default=None),
        "isDraft": Property("Boolean", default=False),
        "isOrigin": Property("Boolean", server_set=True),
        "utcStart": Property("UTCDate", nullable=True, server_set=True),
        "utcEnd": Property("UTCDate", nullable=True, server_set=True),
        "uid": Property("String", immutable=True, default=lambda: str(uuid.uuid4())),
        "created": Property("*", nullable=True, default=_now),
        "updated": Property("*", nullable=True, default=None),
        "start": Property("*"),
        "method": Property("*", nullable=True),
        **{k: Property("*", nullable=True, default=v) for k, v in EVENT_DEFAULTS.items()},
    }
    default_properties = tuple(p for p in properties if p not in ("utcStart", "utcEnd", "method"))
    get_args = ("recurrenceOverridesBefore", "recurrenceOverridesAfter", "reduceParticipants", "timeZone",
                "properties")
    set_args = ("sendSchedulingMessages",)
    query_args = ("expandRecurrences", "timeZone")
    conditions = {"inCalendars": "Id[]", "after": "String", "before": "String", "text": "String",
                  "title": "String", "description": "String", "location": "String", "owner": "String",
                  "attendee": "String", "participationStatus": "String", "uid": "String"}
    sorts = ("start", "uid", "recurrenceId", "created", "updated")
    max_query_results = 5000

    # -- reading
    def to_jmap(self, ctx, record: dict) -> dict:
        obj = {k: v for k, v in record.items() if k not in _INTERNAL and k != _SHAREES}
        obj.setdefault("baseEventId", None)
        obj["isOrigin"] = self._is_origin(ctx, obj)
        return obj

    @staticmethod
    def _is_origin(ctx, obj: dict) -> bool:
        reply_to = obj.get("replyTo")
        if not reply_to:
            return True
        mine = {a.lower() for a in addresses_of(ctx.user)}
        return any(isinstance(v, str) and v.lower().removeprefix("mailto:") in mine for v in reply_to.values())

    def _readable(self, ctx, reader, record: dict | None) -> dict | None:
        """A stored event as the user sees it (in a shared account: only in a calendar they may
        read, showing the calendars they see; app/sharing.py), or None."""
        if record is None:
            return None
        access = access_of(ctx, reader.account_id)
        if access is None or access.owner:
            return self.to_jmap(ctx, record)
        if record.get("privacy") == "secret":  # draft: "as though the event does not exist" for sharees
            return None
        calendars = readable(ctx, reader, CALENDAR, record.get("calendarIds"))
        if calendars is None:
            return None
        obj = {**self.to_jmap(ctx, record), "calendarIds": calendars}
        mine = (record.get(_SHAREES) or {}).get(ctx.user["accountId"]) or {}
        for prop in PER_USER:  # draft: "Sharees initially receive the default value"
            obj[prop] = mine.get(prop, EVENT_DEFAULTS[prop])
        if mine.get("updated") and mine["updated"] > (obj.get("updated") or ""):
            obj["updated"] = mine["updated"]  # "whichever is later"
        if record.get("privacy") == "private":
            obj = {k: v for k, v in obj.items() if k in _PRIVATE_SHOWN}
            if obj.get("recurrenceOverrides"):
                obj["recurrenceOverrides"] = {rid: {k: v for k, v in patch.items() if k.split("/", 1)[0]
                                                    in _PRIVATE_SHOWN or k == "excluded"}
                                              for rid, patch in obj["recurrenceOverrides"].items()}
        return obj

    def fetch(self, ctx, reader, obj_id: str) -> dict | None:
        m = _SYNTHETIC.match(obj_id)
        if m is None:
            return self._readable(ctx, reader, reader.record(self.collection, obj_id))
        record = reader.record(self.collection, m.group(1))
        rid = parse_local(f"{m.group(2)[:4]}-{m.group(2)[4:6]}-{m.group(2)[6:8]}T{m.group(2)[9:11]}:"
                          f"{m.group(2)[11:13]}:{m.group(2)[13:15]}")
        if record is None or rid is None or not is_recurring(record):
            return None
        base = self._readable(ctx, reader, record)
        if base is None:
            return None
        patch = (base.get("recurrenceOverrides") or {}).get(format_local(rid))
        if patch is not None:
            return None if patch.get("excluded") else instance_of(base, rid, patch)
        # an instance the rules make: look for it around its own time
        tz = zone(base.get("timeZone"))
        at = local_to_utc(rid, tz)
        try:
            for occ in occurrences({**base, "recurrenceOverrides": None}, at - timedelta(seconds=1),
                                   at + timedelta(seconds=1)):
                if occ.recurrence_id == rid:
                    return instance_of(base, rid, None)
        except TooManyOccurrences:
            return None
        return None

    def parse_get_args(self, ctx, args: dict) -> tuple[list[str] | None, object]:
        from app.protocol.standard import properties_arg

        props = properties_arg(args, "properties", list(self.properties), list(self.default_properties))
        if ("utcStart" in props or "utcEnd" in props) and "recurrenceOverrides" in props:
            raise invalid_arguments("recurrenceOverrides may not be requested with utcStart or utcEnd")
        tzname = args.get("timeZone", "Etc/UTC")
        if zone(tzname) is None:
            raise invalid_arguments("timeZone must be an IANA time zone")
        opts = {"timeZone": zone(tzname), "reduceParticipants": bool_arg(args, "reduceParticipants")}
        for key in ("recurrenceOverridesBefore", "recurrenceOverridesAfter"):
            value = args.get(key)
            if value is not None:
                try:
                    opts[key] = datetime.fromisoformat(value.replace("Z", "+00:00"))
                except (AttributeError, ValueError):
                    raise invalid_arguments(f"{key} must be a UTCDate") from None
        return props, opts

    def render(self, ctx, reader, obj: dict, props: list[str], opts: object) -> dict:
        opts = opts or {}
        out = {}
        for p in props:
            value = obj.get(p, EVENT_DEFAULTS.get(p))
            if p in ("utcStart", "utcEnd") and obj.get("start"):
                tz = zone(obj.get("timeZone")) or opts.get("timeZone")
                start = local_to_utc(parse_local(obj["start"]), tz)
                if p == "utcEnd":
                    start += parse_duration(obj.get("duration") or "PT0S") or timedelta(0)
                value = start.strftime("%Y-%m-%dT%H:%M:%SZ")
            elif p == "recurrenceOverrides" and value and ("recurrenceOverridesBefore" in opts
                                                           or "recurrenceOverridesAfter" in opts):
                tz = zone(obj.get("timeZone")) or opts.get("timeZone")
                value = {k: v for k, v in value.items()
                         if ("recurrenceOverridesBefore" not in opts
                             or _utc_of(k, tz) < opts["recurrenceOverridesBefore"])
                         and ("recurrenceOverridesAfter" not in opts
                              or _utc_of(k, tz) >= opts["recurrenceOverridesAfter"])}
            elif p == "participants" and value and opts.get("reduceParticipants"):
                mine = {a.lower() for a in addresses_of(ctx.user)}
                value = {k: v for k, v in value.items()
                         if (v.get("roles") or {}).get("owner") or (v.get("email") or "").lower() in mine}
            out[p] = value
        return out

    # -- writing
    def all_ids(self, ctx, reader):
        access = access_of(ctx, reader.account_id)
        if access is None or access.owner:
            return reader.record_ids(self.collection)
        return readable_ids(reader, access, CALENDAR, self.collection, "_calendars")

    def _stored_calendars(self, reader, obj_id: str) -> dict | None:
        m = _SYNTHETIC.match(obj_id)
        return (reader.record(self.collection, m.group(1) if m else obj_id) or {}).get("calendarIds")

    @staticmethod
    def _sharee(ctx, reader) -> str | None:
        """The caller's principal id when they write in another's account (a sharee), else None."""
        access = access_of(ctx, reader.account_id)
        return None if access is None or access.owner else ctx.user["accountId"]

    def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
        fields, error = super().prepare_create(ctx, reader, obj)
        if error is None:
            error = content_error(ctx, reader, CALENDAR, None, fields["calendarIds"], self.name,
                                  also=self._other_rights(ctx, reader, fields) if self._sharee(ctx, reader) else None)
        sharee = self._sharee(ctx, reader)
        if error is None and sharee:  # a sharee's per-user values are theirs; the event gets the defaults
            mine = {p: fields[p] for p in PER_USER if p in fields and not same_json(fields[p], EVENT_DEFAULTS[p])}
            fields.update({p: EVENT_DEFAULTS[p] for p in mine})
            if mine:
                fields[_SHAREES] = {sharee: mine}
        if error is None:
            for other_id in reader.record_ids(self.collection, "uid", equals=fields["uid"]):
                other = reader.record(self.collection, other_id)
                if other and (other.get("recurrenceId") is None or fields.get("recurrenceId") is None
                              or other.get("recurrenceId") == fields.get("recurrenceId")):
                    if sharee and self._readable(ctx, reader, other) is None:  # never a hidden event's id
                        return fields, invalid_properties({"uid": "in use by an event of this account"})
                    return fields, set_error("alreadyExists", f"an event with uid {fields['uid']!r} exists",
                                             existingId=other_id)
        return fields, error

    @staticmethod
    def _is_me(ctx, participant: object) -> bool:
        """Whether a Participant is the user: one of their addresses in sendTo or email (tidings has
        no ParticipantIdentity objects; the user's addresses stand for them)."""
        if not isinstance(participant, dict):
            return False
        mine = {a.lower() for a in addresses_of(ctx.user)}
        uris = list((participant.get("sendTo") or {}).values()) if isinstance(participant.get("sendTo"), dict) else []
        return any(isinstance(u, str) and u.lower().removeprefix("mailto:") in mine
                   for u in [*uris, participant.get("email")])

    def _may_own(self, ctx, event: dict) -> bool:
        """The draft's mayWriteOwn condition: the user is an owner of the event, or it has none."""
        owners = [p for p in (event.get("participants") or {}).values()
                  if isinstance(p, dict) and (p.get("roles") or {}).get("owner")]
        return not owners or any(self._is_me(ctx, p) for p in owners)

    def _other_rights(self, ctx, reader, event: dict, rsvp: bool = False):
        """For content_error: a calendar where mayWriteOwn allows writing this event (the user owns
        it, or nobody does), or, for an RSVP of the user's own participant, mayRSVP."""
        access = access_of(ctx, reader.account_id)
        own = self._may_own(ctx, event)
        return lambda c: ((own and access.may_in(CALENDAR.name, c, "mayWriteOwn"))
                          or (rsvp and access.may_in(CALENDAR.name, c, "mayRSVP")))

    def _is_rsvp(self, ctx, current: dict, patch: dict) -> bool:
        """Whether a patch changes only the draft's RSVP properties of the participant that is the user."""
        participants = current.get("participants") or {}
        for path in patch:
            parts = path.split("/")
            if len(parts) != 3 or parts[0] != "participants" or parts[2] not in _RSVP_KEYS \
                    or not self._is_me(ctx, participants.get(parts[1])):
                return False
        return bool(patch)

    def _sharee_error(self, ctx, reader, current: dict, patch: dict) -> tuple[bool, dict | None]:
        """For a sharee's update: (whether it changes only their per-user values, the SetError
        refusing it or None): a private event is not theirs to change; per-user values need
        mayUpdatePrivate on one of its calendars (draft: "on all events in the calendar")."""
        record = reader.record(self.collection, _SYNTHETIC.sub(r"\1", current["id"])) or {}
        if record.get("privacy", "public") != "public":
            return False, set_error("forbidden", "a private event cannot be changed by a sharee (draft §privacy)")
        roots = {path.split("/", 1)[0] for path in patch}
        if not roots or not roots <= PER_USER:
            return False, None
        if current.get("baseEventId"):
            return True, set_error("forbidden", "per-occurrence values of a sharee are not kept yet: change the "
                                   "whole series, or ask the owner")
        access = access_of(ctx, reader.account_id)
        if not any(access.may_in(CALENDAR.name, c, "mayUpdatePrivate") for c in record.get("calendarIds") or {}):
            return True, set_error("forbidden", "changing per-user values needs mayUpdatePrivate")
        return True, None

    def prepare_update(self, ctx, reader, current: dict, patch: dict, resolve) -> tuple[dict, dict | None]:
        stored = self._stored_calendars(reader, current["id"])
        sharee = self._sharee(ctx, reader)
        private_only, refused = self._sharee_error(ctx, reader, current, patch) if sharee else (False, None)
        if refused is not None:
            return {}, refused
        others = any(path.split("/", 1)[0] != "calendarIds" for path in patch)
        # before the change: who owns it decides mayWriteOwn ("may also transfer ownership")
        also = self._other_rights(ctx, reader, current, self._is_rsvp(ctx, current, patch)) if sharee else None
        if not current.get("baseEventId"):
            fields, error = super().prepare_update(ctx, reader, current, patch, resolve)
            if error is None and private_only:  # stored for the sharee alone (update)
                return {_SHAREES: {p: fields[p] for p in PER_USER if p in fields}}, None
            return fields, error or content_error(ctx, reader, CALENDAR, stored, fields.get("calendarIds", stored),
                                                  self.name, others, also)
        # an instance (synthetic id): the change becomes its override in the base event
        fields, error = super().prepare_update(ctx, reader, current, patch, resolve)
        error = error or content_error(ctx, reader, CALENDAR, stored, stored, self.name, also=also)
        if error is not None:
            return fields, error
        base = self.fetch(ctx, reader, current["baseEventId"])
        rid = parse_local(current["recurrenceId"])
        wanted = {**current, **fields}
        override = _diff(instance_of(base, rid, None), wanted)
        overrides = {**(base.get("recurrenceOverrides") or {}), format_local(rid): override}
        return {"recurrenceOverrides": overrides}, None

    def validate(self, ctx, reader, obj: dict, current: dict | None, problems: dict[str, str]) -> dict:
        for key, value in list(obj.items()):
            if value is None and key in EVENT_DEFAULTS:
                obj[key] = EVENT_DEFAULTS[key]  # null is "removed": the default (draft §/set)
        check_event(obj, problems)
        if obj.get("method") is not None:
            problems["method"] = "must not be set: it belongs to iTIP messages, not stored events"
        if obj.get("privacy") not in (None, "public") and self._sharee(ctx, reader):
            problems["privacy"] = "only public in a calendar of another user (draft §privacy)"
        obj.pop("method", None)
        merged = {**(current or {}), **obj}
        if obj.get("recurrenceOverrides") and "recurrenceOverrides" not in problems:
            _check_override_paths(merged, problems)
        if current is None or "calendarIds" in obj:
            cals = obj.get("calendarIds")
            stored = self._stored_calendars(reader, current["id"]) if current is not None else None
            if isinstance(cals, dict):  # the calendars a sharee does not see stay (app/sharing.py)
                cals = obj["calendarIds"] = keep_hidden(ctx, reader, CALENDAR, stored, cals)
            access = access_of(ctx, reader.account_id)
            if current is None and cals is None and access is not None and not access.owner:
                problems["calendarIds"] = "required in a shared account (the default calendar is the owner's)"
            elif current is None and cals is None:
                obj["calendarIds"] = {DEFAULT_ID: True}  # the default calendar (Calendar isDefault)
            elif not cals:
                problems["calendarIds"] = "an event belongs to at least one calendar"
            else:
                for cal_id, value in cals.items():
                    if value is not True:
                        problems[f"calendarIds/{cal_id}"] = "must be true"
                    elif cal_id not in (stored or {}) and not calendar_exists(ctx, reader, cal_id):
                        problems[f"calendarIds/{cal_id}"] = "no such calendar"
        if current is not None and obj.get("isDraft") is True and current.get("isDraft") is False:
            problems["isDraft"] = "may only be true on creation"
        start = merged.get("start")
        if isinstance(start, str) and "start" not in problems and not (MIN_DATE <= start <= MAX_DATE):
            problems["start"] = f"must lie between minDateTime {MIN_DATE} and maxDateTime {MAX_DATE}"
        if problems:
            return obj
        if self._is_origin(ctx, merged):
            now = _now()
            obj["updated"] = now
            if current is None and (merged.get("created") or now) > now:
                obj["created"] = now
            if current is not None and any(k not in _NOT_SEQUENCED and not same_json(v, current.get(k))
                                           for k, v in obj.items()) \
                    and obj.get("sequence", current.get("sequence", 0)) <= current.get("sequence", 0):
                obj["sequence"] = (current.get("sequence") or 0) + 1
        try:
            bounds(merged)
        except (TooManyOccurrences, ValueError, OverflowError) as exc:
            problems["recurrenceRules"] = f"cannot expand: {exc}"
        return obj

    def store_update(self, writer, obj_id: str, record: dict) -> None:
        """Replaces a stored event, its indexed fields recomputed."""
        record = {k: v for k, v in record.items() if k not in _INTERNAL}
        writer.update_record(self.collection, obj_id, {**record, **stored_fields(record)})

    def create(self, ctx, writer, fields: dict) -> dict:
        record = writer.create_record(self.collection, {**fields, **stored_fields(fields)})
        return self._readable(ctx, writer, record) or self.to_jmap(ctx, record)  # as its creator sees it

    def update(self, ctx, writer, obj_id: str, current: dict, changes: dict) -> dict | None:
        m = _SYNTHETIC.match(obj_id)
        base_id = m.group(1) if m else obj_id
        record = writer.record(self.collection, base_id)
        if _SHAREES in changes:  # a sharee's own per-user values, with their own "updated"
            sharee = ctx.user["accountId"]
            sharees = dict(record.get(_SHAREES) or {})
            now = _now()
            sharees[sharee] = {**sharees.get(sharee, {}), **changes[_SHAREES], "updated": now}
            self.store_update(writer, base_id, {**record, _SHAREES: sharees})
            return {"updated": now}
        self.store_update(writer, base_id, {**record, **changes})
        shown = {k: changes[k] for k in ("updated", "sequence") if k in changes}
        return shown or None

    def destroy(self, ctx, writer, obj_id: str, current: dict, args: dict) -> None:
        m = _SYNTHETIC.match(obj_id)
        if m is None:
            writer.destroy_record(self.collection, obj_id)
            return
        record = writer.record(self.collection, m.group(1))
        overrides = {**(record.get("recurrenceOverrides") or {}), current["recurrenceId"]: {"excluded": True}}
        self.store_update(writer, m.group(1), {**record, "recurrenceOverrides": overrides, "updated": _now()})

    def check_destroy(self, ctx, reader, obj: dict, args: dict) -> dict | None:
        stored = self._stored_calendars(reader, obj["id"])
        if self._sharee(ctx, reader) and (reader.record(self.collection, _SYNTHETIC.sub(r"\1", obj["id"])) or {}
                                          ).get("privacy", "public") != "public":
            return set_error("forbidden", "a private event cannot be destroyed by a sharee (draft §privacy)")
        # an instance's destroy is an exclusion written in its base event: a change of that event
        also = self._other_rights(ctx, reader, obj) if self._sharee(ctx, reader) else None
        return content_error(ctx, reader, CALENDAR, stored, stored if obj.get("baseEventId") else None, self.name,
                             also=also)

    def check_set_args(self, ctx, args: dict) -> None:
        if not isinstance(args.get("sendSchedulingMessages", False), bool):
            raise invalid_arguments("sendSchedulingMessages must be true or false")

    def copy_fields(self, ctx, from_reader, source: dict) -> dict:
        fields = super().copy_fields(ctx, from_reader, source)
        fields.pop("calendarIds", None)  # calendars are per account: the copy's are given, or the default
        return fields

    # -- /query
    def check_condition(self, ctx, cond: dict) -> None:
        super().check_condition(ctx, cond)
        for key in ("after", "before"):
            if cond.get(key) is not None and parse_local(cond[key]) is None:
                raise invalid_arguments(f"filter {key} must be a LocalDate such as 2024-03-01T00:00:00")

    def _text_match(self, cond: dict, obj: dict) -> bool:
        for key, value in cond.items():
            if value is None or key in ("after", "before", "inCalendars", "uid"):
                continue
            locs = [f"{loc.get('name') or ''} {loc.get('description') or ''}"
                    for loc in (obj.get("locations") or {}).values() if isinstance(loc, dict)]
            people = [f"{p.get('name') or ''} {p.get('email') or ''}" for p in _participants(obj, None)]
            if key == "text" and not _has_text([obj.get("title"), obj.get("description"), *locs, *people,
                                                " ".join(obj.get("keywords") or {})], value):
                return False
            if key == "title" and not _has_text([obj.get("title")], value):
                return False
            if key == "description" and not _has_text([obj.get("description")], value):
                return False
            if key == "location" and not _has_text(locs, value):
                return False
            for role in ("owner", "attendee"):
                if key == role:
                    ps = [p for p in _participants(obj, role)
                          if _has_text([p.get("name"), p.get("email")], value)
                          and (cond.get("participationStatus") is None
                               or p.get("participationStatus", "needs-action") == cond["participationStatus"])]
                    if not ps:
                        return False
            if key == "participationStatus" and not (cond.get("owner") or cond.get("attendee")) and not any(
                    p.get("participationStatus", "needs-action") == value for p in _participants(obj, None)):
                return False
        return True

    def _static_match(self, cond: dict, obj: dict) -> bool:
        if cond.get("uid") is not None and obj.get("uid") != cond["uid"]:
            return False
        if cond.get("inCalendars") is not None and not set(cond["inCalendars"]) & set(obj.get("calendarIds") or {}):
            return False
        return True

    def query_ids(self, ctx, reader, flt: dict | None, sort: list[dict], args: dict) -> list[str]:
        expand = bool_arg(args, "expandRecurrences")
        tzname = args.get("timeZone", "Etc/UTC")
        tz = zone(tzname)
        if tz is None:
            raise invalid_arguments("timeZone must be an IANA time zone")
        if expand:
            if not isinstance(flt, dict) or "operator" in flt or flt.get("after") is None \
                    or flt.get("before") is None:
                raise invalid_arguments("expandRecurrences needs a filter that is one FilterCondition with "
                                        "after and before")
            span = parse_local(flt["before"]) - parse_local(flt["after"])
            if span > timedelta(days=MAX_EXPANDED_QUERY_DAYS):
                raise invalid_arguments(f"an expanded query spans at most maxExpandedQueryDuration "
                                        f"P{MAX_EXPANDED_QUERY_DAYS}D")
        top = [flt] if flt and "operator" not in flt else (
            [c for c in flt["conditions"] if "operator" not in c] if flt and flt["operator"] == "AND" else [])
        lo = max((_utc_of(c["after"], tz) for c in top if c.get("after")), default=None)
        hi = min((_utc_of(c["before"], tz) for c in top if c.get("before")), default=None)
        uid = next((c["uid"] for c in top if c.get("uid") is not None), None)
        if uid is not None:
            candidates = reader.record_ids(self.collection, "uid", equals=uid)
        elif lo is not None:  # events whose last instance ends after `after` (index order)
            candidates = reader.record_ids(self.collection, "_utcEnd", lo=_epoch(lo - timedelta(hours=14)))
        else:
            candidates = self.all_ids(ctx, reader)
        # (id, instance start in UTC, the object its sort properties come from, recurrence id)
        found: list[tuple[str, datetime, dict, str | None]] = []
        texts = expand and any(flt.get(k) is not None for k in self.conditions
                               if k not in ("after", "before", "inCalendars", "uid"))
        try:
            for obj_id in candidates:
                record = reader.record(self.collection, obj_id)
                if record is None:
                    continue
                if hi is not None and record["_utcStart"] >= _epoch(hi + timedelta(hours=14)):
                    continue  # starts after `before` even for a floating event read anywhere
                obj = self._readable(ctx, reader, record)
                if obj is None:
                    continue
                if expand:
                    if not self._static_match(flt, obj):
                        continue
                    after, before = _utc_of(flt["after"], tz), _utc_of(flt["before"], tz)
                    for occ in occurrences(obj, after, before, floating=tz):
                        rid = occ.recurrence_id
                        # an instance is built only when a text condition must read it
                        if texts and not self._text_match(flt, obj if rid is None else instance_of(obj, rid, occ.patch)):
                            continue
                        found.append((obj_id if rid is None else synthetic_id(obj_id, rid), occ.start, obj,
                                      None if rid is None else format_local(rid)))
                elif evaluate_filter(flt, obj, lambda c, o: self._match(c, o, tz)):
                    found.append((obj_id, self._first_start(obj), obj, obj.get("recurrenceId")))
        except TooManyOccurrences as exc:
            raise MethodError("cannotCalculateOccurrences", str(exc)) from None
        return self._sorted(found, sort)

    def _match(self, cond: dict, obj: dict, tz) -> bool:
        if not self._static_match(cond, obj) or not self._text_match(cond, obj):
            return False
        if cond.get("after") is None and cond.get("before") is None:
            return True
        after = _utc_of(cond["after"], tz) if cond.get("after") else datetime(1, 1, 2, tzinfo=UTC)
        before = _utc_of(cond["before"], tz) if cond.get("before") else FAR
        return next(occurrences(obj, after, before, floating=tz, limit=1), None) is not None

    @staticmethod
    def _first_start(obj: dict) -> datetime:
        return local_to_utc(parse_local(obj["start"]), zone(obj.get("timeZone")))

    @staticmethod
    def _sorted(found: list[tuple[str, datetime, dict, str | None]], sort: list[dict]) -> list[str]:
        def key_of(item: tuple[str, datetime, dict, str | None], prop: str):
            obj_id, start, obj, rid = item
            if prop == "start":
                return start
            if prop == "recurrenceId":
                return rid or ""
            return obj.get(prop) or ""

        found.sort(key=lambda item: item[0])
        for comp in reversed(sort or [{"property": "start"}]):
            found.sort(key=lambda item, p=comp["property"]: key_of(item, p),
                       reverse=not comp.get("isAscending", True))
        return [item[0] for item in found]


EVENT = data_type(CalendarEvent())


def _query(ctx, args: dict) -> dict:
    out = machinery.query(EVENT, ctx, args)
    if args.get("expandRecurrences") is True:
        out["canCalculateChanges"] = False  # instances come and go with the rules (module docstring)
    return out


def _query_changes(ctx, args: dict) -> dict:
    if args.get("expandRecurrences") is True:
        check_known_args(args, {"accountId", "filter", "sort", "sinceQueryState", "maxChanges", "upToId",
                                "calculateTotal", "expandRecurrences", "timeZone"})
        ctx.account_id(args)
        raise MethodError("cannotCalculateChanges", "a query with expandRecurrences cannot calculate changes; "
                          "query again")
    return machinery.query_changes_(EVENT, ctx, args)


register("CalendarEvent/query", CALENDARS, _query)
register("CalendarEvent/queryChanges", CALENDARS, _query_changes)
