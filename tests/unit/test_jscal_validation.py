"""JSCalendar validation (app.calendar.jscal, app.calendar.timing), pure: every invalid value is a
problem named by its path with a plain description, never an exception (a JSON list or object where
a string is expected, digits of other scripts, true for an Int, durations past what a timedelta
holds); and the iCalendar writer keeps every value on its line whatever was stored."""

from __future__ import annotations

import pytest

from app.calendar.ical import UnwritableEvent, event_ics, to_ics
from app.calendar.jscal import check_event
from app.calendar.timing import MAX_DURATION, duration_problem, parse_duration

BASE = {"uid": "u1", "title": "t", "start": "2024-01-10T10:00:00", "timeZone": "Europe/Berlin", "duration": "PT1H"}
RID = "2024-01-17T10:00:00"
WEEKLY = {"@type": "RecurrenceRule", "frequency": "weekly"}
ONE_LINE = "on one line (no CR, LF or other control character)"


def problems_of(**props) -> dict[str, str]:
    found: dict[str, str] = {}
    check_event({**BASE, **props}, found)
    return found


# a list or object where an enumerated string belongs (the reviewer's serverFail cases); also
# sent through the server by tests/test_contacts_calendar_hardening.py
WRONG_TYPE_CASES = [
    ({"status": ["x"]}, "status"),
    ({"freeBusyStatus": {"a": 1}}, "freeBusyStatus"),
    ({"privacy": []}, "privacy"),
    ({"recurrenceRules": [{"frequency": ["daily"]}]}, "recurrenceRules/0/frequency"),
    ({"recurrenceRules": [{**WEEKLY, "byDay": [{"day": ["mo"]}]}]}, "recurrenceRules/0/byDay/0"),
    ({"recurrenceRules": [{**WEEKLY, "firstDayOfWeek": ["mo"]}]}, "recurrenceRules/0/firstDayOfWeek"),
    ({"participants": {"p1": {"participationStatus": ["accepted"]}}}, "participants/p1/participationStatus"),
    ({"participants": {"p1": {"kind": {}}}}, "participants/p1/kind"),
    ({"recurrenceRules": [WEEKLY], "recurrenceOverrides": {RID: {"status": ["x"]}}},
     f"recurrenceOverrides/{RID}/status"),
]


@pytest.mark.parametrize(("props", "path"), [
    *WRONG_TYPE_CASES,
    ({"alerts": {"a1": {"action": ["display"], "trigger": {"offset": "-PT5M"}}}}, "alerts/a1/action"),
    ({"alerts": {"a1": {"trigger": {"offset": "-PT5M", "relativeTo": {}}}}}, "alerts/a1/trigger/relativeTo"),
])
def test_a_list_or_object_where_an_enumerated_string_belongs_is_a_problem_of_its_path(props, path):
    found = problems_of(**props)
    assert list(found) == [path]
    assert found[path].startswith("must be")


@pytest.mark.parametrize(("rule", "path", "why"), [
    ({"byDay": [{"day": "mo", "nthOfPeriod": True}]}, "recurrenceRules/0/byDay/0/nthOfPeriod",
     "must be a non-zero integer from -53 to 53"),
    ({"byMonth": ["²"]}, "recurrenceRules/0/byMonth/0", 'must be a month number as a string ("1" ... "12")'),
    ({"byMonth": ["٣"]}, "recurrenceRules/0/byMonth/0", 'must be a month number as a string ("1" ... "12")'),
    ({"byMonth": ["01"]}, "recurrenceRules/0/byMonth/0", 'must be a month number as a string ("1" ... "12")'),
    ({"byMonth": ["13"]}, "recurrenceRules/0/byMonth/0", 'must be a month number as a string ("1" ... "12")'),
    ({"byMonth": ["3L"]}, "recurrenceRules/0/byMonth/0",
     'a leap month needs an rscale that has them; only "gregorian" is supported'),
    ({"byMonth": [3]}, "recurrenceRules/0/byMonth", 'must be a non-empty list of month numbers as strings ("1" ... "12")'),
    ({"byHour": [True]}, "recurrenceRules/0/byHour", "must be a non-empty list of integers from 0 to 23"),
    ({"interval": True}, "recurrenceRules/0/interval", "must be an integer from 1 to 2147483647"),
    ({"count": 2**31}, "recurrenceRules/0/count", "must be an integer from 1 to 2147483647"),
])
def test_rule_values_are_checked_by_type_and_in_ascii_digits(rule, path, why):
    assert problems_of(recurrenceRules=[{**WEEKLY, **rule}]) == {path: why}


def test_valid_months_and_nth_are_accepted():
    rule = {**WEEKLY, "frequency": "yearly", "byMonth": ["1", "9", "10", "12"],
            "byDay": [{"day": "mo", "nthOfPeriod": -1}, {"day": "fr", "nthOfPeriod": 53}]}
    assert problems_of(recurrenceRules=[rule]) == {}


@pytest.mark.parametrize(("props", "path", "why"), [
    ({"duration": "P99999999999W"}, "duration", "must be at most 500000 days long"),
    ({"duration": "PT9999999999999999999999S"}, "duration", "must be at most 500000 days long"),
    ({"duration": "PT" + "9" * 5000 + "S"}, "duration", "must be at most 500000 days long"),
    ({"duration": "P500001D"}, "duration", "must be at most 500000 days long"),
    ({"duration": "PT1H\n"}, "duration", 'must be a Duration such as "PT1H"'),
    ({"duration": "PT٣H"}, "duration", 'must be a Duration such as "PT1H"'),
    ({"duration": ["PT1H"]}, "duration", 'must be a Duration such as "PT1H"'),
    ({"alerts": {"a1": {"trigger": {"offset": "-P99999999999W"}}}}, "alerts/a1/trigger/offset",
     "must be at most 500000 days long"),
    ({"alerts": {"a1": {"trigger": {"offset": "-PT15M\n"}}}}, "alerts/a1/trigger/offset",
     'must be a SignedDuration such as "-PT15M"'),
    ({"sequence": 2**31}, "sequence", "must be an integer from 0 to 2147483647"),
    ({"sequence": True}, "sequence", "must be an integer from 0 to 2147483647"),
    ({"created": "2024-01-01T00:00:00Z\n"}, "created", "must be a UTCDateTime"),
    ({"start": "2024-01-10T10:00:00\n"}, "start", 'must be a LocalDateTime such as "2024-03-05T09:00:00"'),
    ({"timeZone": "Europe/Berlin\n"}, "timeZone",
     "must be a time zone of the IANA Time Zone Database (e.g. Europe/Berlin)"),
])
def test_durations_and_dates_out_of_range_or_not_quite_well_formed(props, path, why):
    assert problems_of(**props) == {path: why}


def test_parse_duration_never_overflows():
    assert parse_duration("P500000D") == MAX_DURATION
    assert parse_duration("-PT15M", signed=True).total_seconds() == -900
    assert parse_duration("PT1.5S").total_seconds() == 1.5
    for value in ("P99999999999W", "PT9999999999999999999999S", "-P99999999999W", "P" + "9" * 5000 + "D"):
        assert parse_duration(value, signed=True) is None
        assert duration_problem(value, signed=True) == "must be at most 500000 days long"
    assert duration_problem("-PT1H") == 'must be a Duration such as "PT1H"'  # unsigned: no sign


@pytest.mark.parametrize(("props", "path"), [
    ({"participants": {"p1": {"name": "A\r\nX-EVIL:1"}}}, "participants/p1/name"),
    ({"participants": {"p1": {"email": "a@b.c\r\nX-EVIL:1"}}}, "participants/p1/email"),
    ({"participants": {"p1": {"sendTo": {"imip": "mailto:a@b.c\r\nX-EVIL:1"}}}}, "participants/p1/sendTo/imip"),
    ({"participants": {"p1": {"sendTo": {"imip": ["mailto:a@b.c"]}}}}, "participants/p1/sendTo/imip"),
    ({"links": {"k1": {"href": "https://x\r\nX-EVIL:1"}}}, "links/k1/href"),
    ({"color": "red\rX-EVIL:1"}, "color"),
    ({"uid": "u\nX-EVIL:1"}, "uid"),
    ({"locale": "en\u2028"}, "locale"),
    ({"prodId": "p\x00"}, "prodId"),
    ({"virtualLocations": {"v1": {"uri": "https://m\r\n"}}}, "virtualLocations/v1/uri"),
    ({"locations": {"l1": {"coordinates": "geo:1,2\n"}}}, "locations/l1/coordinates"),
])
def test_a_value_written_on_one_ics_line_may_hold_no_line_break(props, path):
    found = problems_of(**props)
    assert list(found) == [path]
    assert found[path].startswith("must be a") and found[path].endswith(ONE_LINE)


@pytest.mark.parametrize(("props", "path", "why"), [
    ({"keywords": {"a\r\nb": True}}, "keywords",
     "every key must be a non-empty string on one line (no CR, LF or other control character)"),
    ({"replyTo": {"imip": "mailto:a@b\r\n"}}, "replyTo",
     "must be an object mapping methods (imip, web, other) to URIs, each on one line"),
    ({"relatedTo": {"u\n2": {}}}, "relatedTo/u\n2", "the uid must be on one line (no CR, LF or other control character)"),
    ({"participants": {"p1\n": {}}}, "participants/p1\n", "key is not an Id"),  # "$" let a final "\n" through
])
def test_keys_written_or_used_as_ids_are_one_line_too(props, path, why):
    assert problems_of(**props) == {path: why}


def test_text_may_have_line_breaks():
    assert problems_of(title="two\nlines", description="a\r\nb", locations={"l1": {"name": "Room\n2"}}) == {}


# ------------------------------------------------------------------------------------ the writer
def test_the_writer_keeps_every_stored_value_on_its_line():
    """An event stored before validation refused these: written, nothing injected; URIs keep
    their characters percent-encoded, a color that is no token is left out."""
    evil = "\r\nX-EVIL:1"
    ev = {**BASE, "title": "T" + evil, "color": "red" + evil, "keywords": {"k" + evil: True},
          "links": {"k1": {"href": "https://x" + evil}},
          "participants": {"p1": {"name": "A" + evil, "email": "a@b.c" + evil, "kind": "individual" + evil,
                                  "participationStatus": "accepted\r", "roles": {"attendee": True}},
                           "p2": {"sendTo": {"imip": "mailto:o@b.c" + evil}, "roles": {"owner": True}}},
          "alerts": {"a1": {"trigger": {"offset": "-PT5M"}}}}
    text = to_ics([ev]).decode()
    lines = text.replace("\r\n ", "").split("\r\n")  # unfolded
    assert "\r" not in "".join(lines) and "\n" not in "".join(lines)
    assert not [ln for ln in lines if ln.startswith("X-EVIL")]
    assert "URL:https://x%0D%0AX-EVIL:1" in lines
    assert any(ln.startswith("ORGANIZER") and ln.endswith(":mailto:o@b.c%0D%0AX-EVIL:1") for ln in lines)
    assert not [ln for ln in lines if ln.startswith("COLOR")]
    assert "SUMMARY:T\\nX-EVIL:1" in lines


def test_an_event_the_writer_cannot_write_is_left_out_of_a_calendar_or_raised_alone():
    broken = {**BASE, "uid": "broken", "start": "not a time"}
    text = to_ics([broken, BASE]).decode()
    assert text.count("BEGIN:VEVENT") == 1 and "UID:u1" in text
    with pytest.raises(UnwritableEvent, match="'broken' cannot be written"):
        to_ics([broken], skip_unwritable=False)
    with pytest.raises(UnwritableEvent):
        event_ics(broken)
