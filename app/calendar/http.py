"""The iCalendar download (a tidings route, beside RFC 8620 §6.2 downloads):

    GET /jmap/calendar/{accountId}/{id}.ics

with ``id`` a CalendarEvent id (a stored event, with its overrides as RECURRENCE-ID VEVENTs; or a
synthetic instance id from expandRecurrences: that one instance) or a Calendar id (every event of
the calendar in one VCALENDAR).  ``text/calendar; charset=utf-8``, made from the stored JSCalendar
on each request (nothing is kept as iCalendar).  The same credentials as the API; the account's
owner, or a grantee for what they may read (app/sharing.py); 404 for anything else.

An event that cannot be written as iCalendar (stored with a value of a kind CalendarEvent/set now
refuses, that the writer's guards do not cover) is left out of a whole calendar, with a log line;
asked for alone, it is a ProblemError (500, problem details saying which event and why), never a
traceback."""

from __future__ import annotations

from app.protocol.errors import ProblemError
from app.sharing import reading_context

from .calendar import CALENDAR
from .event import EVENT
from .ical import UnwritableEvent, to_ics

__all__ = ["CALENDAR_PATH", "ical_of"]

CALENDAR_PATH = "/jmap/calendar/"


def ical_of(store, user: dict, account_id: str, obj_id: str) -> bytes | None:
    """The iCalendar text of an event or a whole calendar, or None (not found, not the user's).
    Raises ProblemError for an event that cannot be written."""
    ctx = reading_context(store, user, account_id)
    if ctx is None:
        return None
    with store.read(account_id) as reader:
        if CALENDAR.fetch(ctx, reader, obj_id) is not None:
            events = [EVENT.fetch(ctx, reader, i) for i in reader.record_ids(EVENT.collection, "_calendars",
                                                                             equals=obj_id)]
            return to_ics([e for e in events if e is not None])
        event = EVENT.fetch(ctx, reader, obj_id)
        if event is None:
            return None
        try:
            return to_ics([event], skip_unwritable=False)
        except UnwritableEvent as exc:
            raise ProblemError("about:blank", 500, str(exc)) from None
