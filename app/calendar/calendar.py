"""Calendar (JMAP Calendars draft §Calendars): /get, /changes and /set, kept in generic storage.

Decisions:
* Every account has a default calendar, id ``Cdefault`` (`DEFAULT_ID`), named "Calendar": it
  exists without being stored (as the default Identity does) and is stored the first time it is
  changed.  It is the account's only ``isDefault`` calendar and cannot be destroyed;
  ``onSuccessSetIsDefault`` naming another calendar is ignored, as the draft allows for "policy
  reasons".  Calendars a client creates get ``C`` + a hex counter (never "Cdefault": "u", "l" and
  "t" are not hex digits).
* Shared with ``shareWith`` ({principal id: CalendarRights}); what a grantee sees and may do is
  app/sharing.py's.  Of the per-user properties a grantee keeps only ``isSubscribed`` of their own;
  the others (color, sortOrder, isVisible, includeInAvailability, the default alerts, timeZone) are
  the owner's, and a grantee's change of them is ``forbidden``.  Of the event rights, mayReadItems
  reads, mayWriteAll writes, and mayUpdatePrivate writes the grantee's own per-user event values
  (app/calendar/event.py: keywords, color, freeBusyStatus, useDefaultAlerts, alerts, kept per
  sharee; not per occurrence yet); mayWriteOwn writes events the grantee owns or that have no
  owner, mayRSVP their own participant's reply properties; "the grantee" in an event is a
  participant with one of their addresses (tidings has no ParticipantIdentity objects).  A "secret"
  event does not exist for a grantee, a "private" one shows its time only and cannot be changed by
  them (draft §privacy).  The owner's ``myRights`` are all true.
* Destroying a calendar that still has events answers ``calendarHasEvent`` unless
  ``onDestroyRemoveEvents`` is true: then each event leaves it, and an event in no other calendar
  is destroyed.
"""

from __future__ import annotations

import re

from app.protocol.errors import set_error
from app.protocol.registry import CALENDARS
from app.protocol.types import DataType, Property, data_type
from app.sharing import SharedContainer, access_of
from store import Collection

from .jscal import _check_alert
from .timing import zone

CALENDARS_PARSE = "urn:ietf:params:jmap:calendars:parse"
DEFAULT_ID = "Cdefault"
RIGHTS = ("mayReadFreeBusy", "mayReadItems", "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate", "mayRSVP",
          "mayAdmin", "mayDelete")
_COLOR = re.compile(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]{3,30}")  # whole (fullmatch): "$" allows "\n"

__all__ = ["CALENDAR", "CALENDARS", "CALENDARS_PARSE", "DEFAULT_ID", "calendar_exists", "default_calendar"]


def default_calendar() -> dict:
    return {"id": DEFAULT_ID, "name": "Calendar", "description": None, "color": None, "sortOrder": 0,
            "isSubscribed": True, "isVisible": True, "includeInAvailability": "all",
            "defaultAlertsWithTime": None, "defaultAlertsWithoutTime": None, "timeZone": None,
            "shareWith": None}


def calendar_exists(ctx, reader, calendar_id: str) -> bool:
    """Whether the calendar exists and the user sees it."""
    return CALENDAR.fetch(ctx, reader, calendar_id) is not None


class Calendar(SharedContainer, DataType):
    name = "Calendar"
    right_names = RIGHTS
    rights_name = "CalendarRights"
    read_right = "mayReadItems"
    write_right = "mayWriteAll"
    capability = CALENDARS
    methods = ("get", "changes", "set")
    collection = Collection("Calendar", "C", log="Calendar")
    set_args = ("onDestroyRemoveEvents", "onSuccessSetIsDefault")
    properties = {
        "id": Property("Id", server_set=True),
        "name": Property("String"),
        "description": Property("String", nullable=True, default=None),
        "color": Property("String", nullable=True, default=None),
        "sortOrder": Property("UnsignedInt", default=0),
        "isSubscribed": Property("Boolean", default=True),
        "isVisible": Property("Boolean", default=True),
        "isDefault": Property("Boolean", server_set=True),
        "includeInAvailability": Property("String", default="all"),
        "defaultAlertsWithTime": Property("Id[Object]", nullable=True, default=None),
        "defaultAlertsWithoutTime": Property("Id[Object]", nullable=True, default=None),
        "timeZone": Property("String", nullable=True, default=None),
        "shareWith": Property("Id[Object]", nullable=True, default=None),
        "myRights": Property("Object", server_set=True),
    }

    def to_jmap(self, ctx, record: dict) -> dict:
        return {**record, "isDefault": record["id"] == DEFAULT_ID, "myRights": dict.fromkeys(RIGHTS, True)}

    def check_share_with(self, ctx, reader, obj: dict, current: dict | None, problems: dict[str, str]) -> None:
        super().check_share_with(ctx, reader, obj, current, problems)
        if "shareWith" not in problems:  # draft: with mayWriteAll, these "MUST all also be true"
            for rights in (obj.get("shareWith") or {}).values():
                if rights.get("mayWriteAll"):
                    rights.update(mayWriteOwn=True, mayUpdatePrivate=True, mayRSVP=True)

    def fetch(self, ctx, reader, obj_id: str) -> dict | None:
        access = access_of(ctx, reader.account_id)
        if not self.sees(access, obj_id):
            return None
        record = reader.record(self.collection, obj_id)
        if record is None and obj_id == DEFAULT_ID:
            record = default_calendar()
        return self.shown(access, self.to_jmap(ctx, record), dict.fromkeys(RIGHTS, True)) \
            if record is not None else None

    def all_ids(self, ctx, reader):
        access = access_of(ctx, reader.account_id)
        if access is not None and not access.owner:
            yield from self.shared_ids(access, reader)
            return
        yield DEFAULT_ID
        yield from (i for i in reader.record_ids(self.collection) if i != DEFAULT_ID)

    def validate(self, ctx, reader, obj: dict, current: dict | None, problems: dict[str, str]) -> dict:
        name = obj.get("name")
        if "name" in obj and (not name or len(name.encode()) > 255):
            problems["name"] = "must be 1 to 255 octets"
        if obj.get("color") is not None and not _COLOR.fullmatch(obj["color"]):
            problems["color"] = "must be a CSS color name or #rgb / #rrggbb"
        if obj.get("sortOrder") is not None and obj["sortOrder"] >= 2**31:
            problems["sortOrder"] = "must be less than 2^31"
        if "includeInAvailability" in obj and obj["includeInAvailability"] not in ("all", "attending", "none"):
            problems["includeInAvailability"] = 'must be "all", "attending" or "none"'
        if obj.get("timeZone") is not None and zone(obj["timeZone"]) is None:
            problems["timeZone"] = "must be a time zone of the IANA Time Zone Database"
        self.check_share_with(ctx, reader, obj, current, problems)
        seen: set[str] = set()
        for key in ("defaultAlertsWithTime", "defaultAlertsWithoutTime"):
            for alert_id, alert in (obj.get(key) or {}).items():
                if not isinstance(alert, dict):  # the Id[Object] type refuses it too; never a.get() on it
                    problems[f"{key}/{alert_id}"] = "must be an Alert object"
                    continue
                _check_alert(alert, f"{key}/{alert_id}", problems)
                if alert_id in seen:
                    problems[f"{key}/{alert_id}"] = "alert ids must be unique across default alerts"
                seen.add(alert_id)
        return obj

    def check_set_args(self, ctx, args: dict) -> None:
        from app.protocol.errors import invalid_arguments

        if not isinstance(args.get("onDestroyRemoveEvents", False), bool):
            raise invalid_arguments("onDestroyRemoveEvents must be true or false")
        if args.get("onSuccessSetIsDefault") is not None and not isinstance(args["onSuccessSetIsDefault"], str):
            raise invalid_arguments("onSuccessSetIsDefault must be an id or null")

    def check_destroy(self, ctx, reader, obj: dict, args: dict) -> dict | None:
        if obj["id"] == DEFAULT_ID:
            return set_error("forbidden", "the default calendar cannot be destroyed")
        has_events = next(iter(reader.record_ids(_events(), "_calendars", equals=obj["id"])), None) is not None
        refused = self.destroy_error(ctx, reader, obj["id"], has_events)
        if refused:
            return refused
        if not args.get("onDestroyRemoveEvents") and has_events:
            return set_error("calendarHasEvent", "the calendar has events: move or destroy them, or set "
                             "onDestroyRemoveEvents")
        return None

    def first_record(self, current: dict, changes: dict) -> dict:
        return {k: v for k, v in {**default_calendar(), **changes}.items() if k != "id"}

    def destroy(self, ctx, writer, obj_id: str, current: dict, args: dict) -> None:
        from .event import EVENT

        coll = _events()
        for event_id in list(writer.record_ids(coll, "_calendars", equals=obj_id)):
            record = writer.record(coll, event_id)
            left = {k: v for k, v in record["calendarIds"].items() if k != obj_id}
            if left:
                EVENT.store_update(writer, event_id, {**record, "calendarIds": left})
            else:
                writer.destroy_record(coll, event_id)
        self.share_changed(writer, obj_id, (writer.record(self.collection, obj_id) or {}).get("shareWith"), None)
        writer.destroy_record(self.collection, obj_id)


def _events() -> Collection:
    from .event import EVENT

    return EVENT.collection


CALENDAR = data_type(Calendar())
