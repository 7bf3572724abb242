"""`tidings import --user NAME --calendar NAME file.ics ...`: iCalendar files into a calendar.

Each file is read whole (`app.calendar.ical.parse_ics`), its events validated as CalendarEvent/set
validates them and stored in one transaction per file, so a running server's clients see them
through /changes and push.  The calendar is matched by name (case-insensitively; "Calendar" is
the default calendar) and created if missing.  An event whose uid (and recurrenceId) is already in
the account is counted as already present, not stored twice: running the same import again adds
nothing.  A component that cannot be read (no DTSTART, bad values) is reported with its reason and
the rest of the file is imported."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .calendar import CALENDAR, DEFAULT_ID, default_calendar
from .event import EVENT, _now
from .ical import parse_ics
from .jscal import EVENT_DEFAULTS

__all__ = ["CalendarImport", "import_ics"]


@dataclass
class CalendarImport:
    calendar: str = ""
    calendar_id: str = ""
    created_calendar: bool = False
    imported: int = 0
    present: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file: uid or component, why)


def _find_calendar(writer, name: str) -> tuple[str, str, bool]:
    """(calendar id, its name, created) for a calendar name, creating it when missing."""
    wanted = name.casefold()
    for cal_id in [DEFAULT_ID, *writer.record_ids(CALENDAR.collection)]:
        cal = writer.record(CALENDAR.collection, cal_id) or (default_calendar() if cal_id == DEFAULT_ID else None)
        if cal and cal["name"].casefold() == wanted:
            return cal_id, cal["name"], False
    fields = {k: v for k, v in default_calendar().items() if k != "id"}
    record = writer.create_record(CALENDAR.collection, {**fields, "name": name})
    return record["id"], name, True


def import_ics(store, user: dict, calendar_name: str, paths: list[str]) -> CalendarImport:
    """Imports every event of the files into the user's calendar of that name."""
    report = CalendarImport()
    ctx = SimpleNamespace(user=user)  # what the type's validation reads (isOrigin: the user's addresses)
    account_id = user["accountId"]
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            report.failed.append((path, exc.strerror or str(exc)))
            continue
        parsed = parse_ics(data)
        report.failed.extend((path, why) for why in parsed.problems)
        with store.write(account_id) as w:
            cal_id, report.calendar, created = _find_calendar(w, calendar_name)
            report.calendar_id = cal_id
            report.created_calendar |= created
            for ev in parsed.events:
                fields = {**EVENT_DEFAULTS, "isDraft": False, "created": _now(), **ev,
                          "calendarIds": {cal_id: True}}
                if any(_same_instance(w.record(EVENT.collection, other), fields)
                       for other in w.record_ids(EVENT.collection, "uid", equals=fields["uid"])):
                    report.present += 1
                    continue
                problems: dict[str, str] = {}
                updated = fields.get("updated")
                fields = EVENT.validate(ctx, w, fields, None, problems)
                if updated is not None:
                    fields["updated"] = updated  # the file's LAST-MODIFIED, not the time of the import
                if problems:
                    report.failed.append((path, f"{ev['uid']}: " + "; ".join(
                        f"{k}: {v}" for k, v in sorted(problems.items()))))
                    continue
                EVENT.create(ctx, w, fields)
                report.imported += 1
    return report


def _same_instance(other: dict | None, fields: dict) -> bool:
    return other is not None and (other.get("recurrenceId") is None or fields.get("recurrenceId") is None
                                  or other.get("recurrenceId") == fields.get("recurrenceId"))
