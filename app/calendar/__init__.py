"""Calendars over JMAP (urn:ietf:params:jmap:calendars, the JMAP Calendars draft; JSCalendar is
RFC 8984): the Calendar and CalendarEvent types, CalendarEvent/parse, iCalendar in and out.

Modules: `calendar` (Calendar), `event` (CalendarEvent: storage, /get, /set, /query with
recurrence expansion), `timing` (LocalDateTime, Duration, zones, recurrence arithmetic), `jscal`
(validation with JSON paths), `ical` (iCalendar <-> JSCalendar), `parse` (CalendarEvent/parse),
`importer` (`tidings import --calendar`), `http` (the iCalendar download route)."""

from . import calendar, event, parse  # noqa: F401  (they register their types and methods)
