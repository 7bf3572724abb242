"""Calendars (JMAP Calendars draft, JSCalendar RFC 8984) against a live server: Calendar/get,
/changes, /set; CalendarEvent/get, /changes, /set, /copy, /query, /queryChanges, /parse; time-range
queries and recurrence expansion across daylight-saving changes; validation paths; the real
`tidings import --calendar` on real-world .ics files (Debian's python3-icalendar and
evolution-data-server-tests, a Google Calendar export), the iCalendar download and round trips."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import CORE, Jmap, Server, call_using, tidings, unique

CAL = "urn:ietf:params:jmap:calendars"
PARSE = "urn:ietf:params:jmap:calendars:parse"
USING = [CORE, CAL, PARSE]
ICS = Path(__file__).parent / "fixtures" / "ics"


@pytest.fixture(scope="module")
def cserver(tmp_path_factory):
    data = tmp_path_factory.mktemp("cal")
    for name in ("cala", "calb", "calc"):
        tidings("user", "add", name, "--password", name + "-pw", "--email", f"{name}@example.com", data=data)
    srv = Server(data)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def a(cserver) -> Jmap:
    return Jmap(cserver, "cala", "cala-pw")


@pytest.fixture(scope="module")
def b(cserver) -> Jmap:
    return Jmap(cserver, "calb", "calb-pw")


def call(c: Jmap, method: str, **args) -> tuple[str, dict]:
    return call_using(c, USING, method, **args)


def ok(c: Jmap, method: str, **args) -> dict:
    name, result = call(c, method, **args)
    assert name == method, (name, result)
    return result


def create_event(c: Jmap, **props) -> str:
    ev = {"title": "t", "start": "2024-01-10T10:00:00", "timeZone": "Europe/Berlin", "duration": "PT1H", **props}
    r = ok(c, "CalendarEvent/set", create={"e": ev})
    assert "e" in r["created"], r
    return r["created"]["e"]["id"]


def weekly_berlin(c: Jmap, **extra) -> str:
    return create_event(c, title=unique("weekly"), start="2024-03-04T09:00:00", timeZone="Europe/Berlin",
                        recurrenceRules=[{"@type": "RecurrenceRule", "frequency": "weekly"}], **extra)


# -------------------------------------------------------------------------------------- session
def test_session_capabilities(a):
    assert a.session["capabilities"][CAL] == {}
    assert a.session["capabilities"][PARSE] == {}
    acc = a.session["accounts"][a.account_id]["accountCapabilities"][CAL]
    assert acc == {"maxCalendarsPerEvent": None, "minDateTime": "1900-01-01T00:00:00",
                   "maxDateTime": "2999-12-31T23:59:59", "maxExpandedQueryDuration": "P400D",
                   "maxParticipantsPerEvent": None, "mayCreateCalendar": True}


# ------------------------------------------------------------------------------------ Calendar
def test_default_calendar_and_set(a):
    got = ok(a, "Calendar/get", ids=None)
    default = [c for c in got["list"] if c["isDefault"]]
    assert len(default) == 1 and default[0]["id"] == "Cdefault" and default[0]["name"] == "Calendar"
    assert default[0]["myRights"]["mayWriteAll"] is True
    state = got["state"]
    r = ok(a, "Calendar/set", create={"w": {"name": "Work", "color": "#ff0000", "timeZone": "Europe/Berlin"}},
           update={"Cdefault": {"name": "Personal"}})
    work = r["created"]["w"]["id"]
    assert r["created"]["w"]["isDefault"] is False and r["created"]["w"]["sortOrder"] == 0
    assert "Cdefault" in r["updated"]
    ch = ok(a, "Calendar/changes", sinceState=state)
    assert set(ch["created"]) | set(ch["updated"]) == {work, "Cdefault"}
    got = {c["id"]: c for c in ok(a, "Calendar/get", ids=[work, "Cdefault"])["list"]}
    assert got["Cdefault"]["name"] == "Personal" and got[work]["color"] == "#ff0000"
    bad = ok(a, "Calendar/set", create={"x": {"name": "", "color": "not a color!", "timeZone": "Mars/Base",
                                              "includeInAvailability": "maybe", "shareWith": {"A1": {}}}})
    assert set(bad["notCreated"]["x"]["properties"]) == {"name", "color", "timeZone", "includeInAvailability",
                                                         "shareWith"}
    r = ok(a, "Calendar/set", destroy=["Cdefault"])
    assert r["notDestroyed"]["Cdefault"]["type"] == "forbidden"
    ok(a, "Calendar/set", update={"Cdefault": {"name": "Calendar"}})


def test_calendar_destroy_with_events(a):
    cal = ok(a, "Calendar/set", create={"c": {"name": unique("cal")}})["created"]["c"]["id"]
    only = create_event(a, calendarIds={cal: True})
    both = create_event(a, calendarIds={cal: True, "Cdefault": True})
    r = ok(a, "Calendar/set", destroy=[cal])
    assert r["notDestroyed"][cal]["type"] == "calendarHasEvent"
    r = ok(a, "Calendar/set", destroy=[cal], onDestroyRemoveEvents=True)
    assert r["destroyed"] == [cal]
    got = ok(a, "CalendarEvent/get", ids=[only, both], properties=["calendarIds"])
    assert got["notFound"] == [only] and got["list"][0]["calendarIds"] == {"Cdefault": True}


# ------------------------------------------------------------------------------- CalendarEvent
def test_event_create_get_defaults_and_changes(a):
    state = ok(a, "CalendarEvent/get", ids=[])["state"]
    r = ok(a, "CalendarEvent/set", create={"e": {
        "title": "Dentist", "start": "2024-05-02T15:30:00", "timeZone": "America/New_York", "duration": "PT45M",
        "alerts": {"a1": {"@type": "Alert", "trigger": {"@type": "OffsetTrigger", "offset": "-PT15M"}}},
        "participants": {"me": {"@type": "Participant", "name": "Me", "email": "cala@example.com",
                                "roles": {"owner": True, "attendee": True}, "participationStatus": "accepted"}},
        "keywords": {"health": True}, "color": "teal", "freeBusyStatus": "busy", "useDefaultAlerts": False}})
    created = r["created"]["e"]
    eid = created["id"]
    assert created["calendarIds"] == {"Cdefault": True}  # the default calendar
    assert created["uid"] and created["created"] and created["updated"] and created["isOrigin"] is True
    ev = ok(a, "CalendarEvent/get", ids=[eid])["list"][0]
    assert ev["@type"] == "Event" and ev["title"] == "Dentist" and ev["status"] == "confirmed"
    assert ev["alerts"]["a1"]["trigger"]["offset"] == "-PT15M" and "utcStart" not in ev
    utc = ok(a, "CalendarEvent/get", ids=[eid], properties=["utcStart", "utcEnd"])["list"][0]
    assert utc == {"id": eid, "utcStart": "2024-05-02T19:30:00Z", "utcEnd": "2024-05-02T20:15:00Z"}
    ch = ok(a, "CalendarEvent/changes", sinceState=state)
    assert eid in ch["created"]
    # an update of a non-per-user property increments sequence; a per-user one does not
    r = ok(a, "CalendarEvent/set", update={eid: {"title": "Dentist (moved)"}})
    assert r["updated"][eid]["sequence"] == 1
    r = ok(a, "CalendarEvent/set", update={eid: {"keywords/health": None, "color": "red"}})
    assert (r["updated"][eid] or {}).get("sequence") is None
    ev = ok(a, "CalendarEvent/get", ids=[eid], properties=["sequence", "keywords", "color"])["list"][0]
    assert ev["sequence"] == 1 and ev["keywords"] == {} and ev["color"] == "red"
    r = ok(a, "CalendarEvent/set", destroy=[eid])
    assert r["destroyed"] == [eid]


def test_event_validation_names_every_path(a):
    r = ok(a, "CalendarEvent/set", create={"bad": {
        "start": "2024-13-01 09:00", "timeZone": "Europe/Nowhere", "duration": "1 hour",
        "recurrenceRules": [{"frequency": "fortnightly", "interval": 0, "byDay": [{"day": "xx"}]}],
        "recurrenceOverrides": {"not-a-date": {}, "2024-01-01T00:00:00": {"uid": "x", "title": 5}},
        "participants": {"p1": {"roles": {"owner": "yes"}, "participationStatus": "maybe"}},
        "alerts": {"a1": {"trigger": {"@type": "OffsetTrigger", "offset": "15 minutes"}}},
        "priority": 12, "status": "done", "method": "request", "calendarIds": {"Cnope": True},
        "keywords": {"k": False}, "nonsense": 1}})
    props = set(r["notCreated"]["bad"]["properties"])
    assert r["notCreated"]["bad"]["type"] == "invalidProperties"
    assert {"start", "timeZone", "duration", "recurrenceRules/0/frequency", "recurrenceRules/0/interval",
            "recurrenceRules/0/byDay/0", "recurrenceOverrides/not-a-date",
            "recurrenceOverrides/2024-01-01T00:00:00/uid", "recurrenceOverrides/2024-01-01T00:00:00/title",
            "participants/p1/roles", "participants/p1/participationStatus", "alerts/a1/trigger/offset",
            "priority", "status", "method", "calendarIds/Cnope", "keywords", "nonsense"} <= props, props
    r = ok(a, "CalendarEvent/set", create={"nostart": {"title": "x"}})
    assert "start" in r["notCreated"]["nostart"]["properties"]


def test_uid_unique(a):
    uid = unique("uid")
    eid = create_event(a, uid=uid)
    r = ok(a, "CalendarEvent/set", create={"dup": {"uid": uid, "start": "2024-02-01T10:00:00"}})
    assert r["notCreated"]["dup"]["type"] == "alreadyExists" and r["notCreated"]["dup"]["existingId"] == eid


def test_copy_between_accounts_is_refused_without_sharing(a, b):
    eid = create_event(a)
    name, r = call(b, "CalendarEvent/copy", fromAccountId=a.account_id, create={"x": {"id": eid}})
    assert name == "error" and r["type"] == "fromAccountNotFound"


def test_copy_needs_two_accounts(a):
    # RFC 8620 §5.4: from one account to another; with owner-only calendars a user has one
    name, r = call(a, "CalendarEvent/copy", fromAccountId=a.account_id, create={"x": {"id": "E1"}})
    assert name == "error" and r["type"] == "invalidArguments"


# ---------------------------------------------------------------------------------- recurrence
def test_query_range_finds_series_it_overlaps(a):
    cal = ok(a, "Calendar/set", create={"c": {"name": unique("rng")}})["created"]["c"]["id"]
    series = weekly_berlin(a, calendarIds={cal: True})
    single = create_event(a, calendarIds={cal: True}, start="2024-06-01T12:00:00")
    q = ok(a, "CalendarEvent/query", filter={"inCalendars": [cal], "after": "2031-05-01T00:00:00",
                                             "before": "2031-05-09T00:00:00"})
    assert q["ids"] == [series]  # the endless series, years later
    q = ok(a, "CalendarEvent/query", filter={"inCalendars": [cal], "after": "2024-06-01T00:00:00",
                                             "before": "2024-06-02T00:00:00"})
    assert q["ids"] == [single]  # Saturday: no Monday instance
    q = ok(a, "CalendarEvent/query", filter={"inCalendars": [cal], "before": "2024-03-01T00:00:00"})
    assert q["ids"] == []
    q = ok(a, "CalendarEvent/query", filter={"inCalendars": [cal]}, sort=[{"property": "start"}])
    assert q["ids"] == [series, single]


def test_expand_across_dst_and_overrides(a):
    cal = ok(a, "Calendar/set", create={"c": {"name": unique("dst")}})["created"]["c"]["id"]
    eid = weekly_berlin(a, calendarIds={cal: True}, duration="PT1H", recurrenceOverrides={
        "2024-04-08T09:00:00": {"excluded": True},
        "2024-04-15T09:00:00": {"start": "2024-04-15T11:00:00", "title": "moved"}})
    q = ok(a, "CalendarEvent/query", expandRecurrences=True, calculateTotal=True,
           filter={"inCalendars": [cal], "after": "2024-03-18T00:00:00", "before": "2024-04-23T00:00:00"})
    ids = q["ids"]
    assert q["canCalculateChanges"] is False
    assert ids == [f"{eid}_20240318T090000", f"{eid}_20240325T090000", f"{eid}_20240401T090000",
                   f"{eid}_20240415T090000", f"{eid}_20240422T090000"]
    got = ok(a, "CalendarEvent/get", ids=ids, properties=["start", "utcStart", "title", "baseEventId",
                                                          "recurrenceId", "recurrenceRules"])["list"]
    # 09:00 Berlin is 08:00Z in winter (CET) and 07:00Z after 31 March (CEST)
    assert [g["utcStart"] for g in got] == ["2024-03-18T08:00:00Z", "2024-03-25T08:00:00Z", "2024-04-01T07:00:00Z",
                                            "2024-04-15T09:00:00Z", "2024-04-22T07:00:00Z"]
    assert all(g["baseEventId"] == eid and g["recurrenceRules"] is None for g in got)
    assert got[3]["title"] == "moved" and got[3]["start"] == "2024-04-15T11:00:00"
    # October: back to CET, still 09:00 local
    q = ok(a, "CalendarEvent/query", expandRecurrences=True,
           filter={"inCalendars": [cal], "after": "2024-10-21T00:00:00", "before": "2024-11-01T00:00:00"})
    got = ok(a, "CalendarEvent/get", ids=q["ids"], properties=["start", "utcStart"])["list"]
    assert [(g["start"], g["utcStart"]) for g in got] == [("2024-10-21T09:00:00", "2024-10-21T07:00:00Z"),
                                                          ("2024-10-28T09:00:00", "2024-10-28T08:00:00Z")]
    # the query's time zone: after/before read in New York
    q = ok(a, "CalendarEvent/query", expandRecurrences=True, timeZone="America/New_York",
           filter={"inCalendars": [cal], "after": "2024-10-28T03:30:00", "before": "2024-10-28T04:30:00"})
    assert q["ids"] == [f"{eid}_20241028T090000"]
    # an instance updated by its synthetic id becomes an override; destroyed, an exclusion
    inst = f"{eid}_20240422T090000"
    r = ok(a, "CalendarEvent/set", update={inst: {"title": "special"}}, destroy=[f"{eid}_20240325T090000"])
    assert inst in r["updated"] and r["destroyed"] == [f"{eid}_20240325T090000"]
    base = ok(a, "CalendarEvent/get", ids=[eid], properties=["recurrenceOverrides"])["list"][0]
    assert base["recurrenceOverrides"]["2024-04-22T09:00:00"] == {"title": "special"}
    assert base["recurrenceOverrides"]["2024-03-25T09:00:00"] == {"excluded": True}
    assert ok(a, "CalendarEvent/get", ids=[f"{eid}_20240325T090000", f"{eid}_20240319T090000"])["notFound"] == [
        f"{eid}_20240325T090000", f"{eid}_20240319T090000"]
    # overrides filtered by recurrenceOverridesAfter/Before
    got = ok(a, "CalendarEvent/get", ids=[eid], properties=["recurrenceOverrides"],
             recurrenceOverridesAfter="2024-04-10T00:00:00Z")["list"][0]
    assert sorted(got["recurrenceOverrides"]) == ["2024-04-15T09:00:00", "2024-04-22T09:00:00"]


def test_expand_rules(a):
    name, r = call(a, "CalendarEvent/query", expandRecurrences=True, filter={"after": "2024-01-01T00:00:00"})
    assert name == "error" and r["type"] == "invalidArguments"
    name, r = call(a, "CalendarEvent/query", expandRecurrences=True,
                   filter={"after": "2024-01-01T00:00:00", "before": "2026-01-01T00:00:00"})
    assert name == "error" and r["type"] == "invalidArguments"  # more than maxExpandedQueryDuration
    name, r = call(a, "CalendarEvent/query", filter={"after": "yesterday"})
    assert name == "error" and r["type"] == "invalidArguments"


def test_count_and_until_series_end(a):
    cal = ok(a, "Calendar/set", create={"c": {"name": unique("end")}})["created"]["c"]["id"]
    counted = create_event(a, calendarIds={cal: True}, start="2024-01-01T08:00:00", timeZone="Europe/Paris",
                           recurrenceRules=[{"frequency": "daily", "count": 3}])
    until = create_event(a, calendarIds={cal: True}, start="2024-01-01T08:00:00", timeZone="Europe/Paris",
                         recurrenceRules=[{"frequency": "monthly", "until": "2024-03-31T23:59:59"}])
    q = ok(a, "CalendarEvent/query", filter={"inCalendars": [cal], "after": "2024-01-03T12:00:00"})
    assert set(q["ids"]) == {until}
    q = ok(a, "CalendarEvent/query", filter={"inCalendars": [cal], "after": "2024-04-02T00:00:00"})
    assert q["ids"] == []
    q = ok(a, "CalendarEvent/query", expandRecurrences=True,
           filter={"inCalendars": [cal], "after": "2024-01-01T00:00:00", "before": "2024-12-31T00:00:00"})
    assert len([i for i in q["ids"] if i.startswith(counted)]) == 3
    assert len([i for i in q["ids"] if i.startswith(until)]) == 3


def test_text_filters_and_query_changes(a):
    cal = ok(a, "Calendar/set", create={"c": {"name": unique("txt")}})["created"]["c"]["id"]
    e1 = create_event(a, calendarIds={cal: True}, title="Board meeting", description="quarterly numbers",
                      locations={"l": {"@type": "Location", "name": "Room 101"}},
                      participants={"x": {"@type": "Participant", "name": "Zoe", "email": "zoe@example.org",
                                          "roles": {"attendee": True}, "participationStatus": "declined"}})
    e2 = create_event(a, calendarIds={cal: True}, title="Lunch")
    q = ok(a, "CalendarEvent/query", filter={"inCalendars": [cal]})
    assert set(q["ids"]) == {e1, e2}
    state = q["queryState"]
    for cond, want in (({"text": "room 101"}, [e1]), ({"title": "board"}, [e1]), ({"description": "NUMBERS"}, [e1]),
                       ({"location": "101"}, [e1]), ({"attendee": "zoe"}, [e1]),
                       ({"attendee": "zoe", "participationStatus": "accepted"}, []), ({"text": "lunch"}, [e2]),
                       ({"text": '"meeting board"'}, [])):
        assert ok(a, "CalendarEvent/query", filter={"inCalendars": [cal], **cond})["ids"] == want, cond
    ok(a, "CalendarEvent/set", update={e2: {"title": "Board lunch"}})
    qc = ok(a, "CalendarEvent/queryChanges", sinceQueryState=state, filter={"inCalendars": [cal], "title": "board"})
    assert qc["removed"] == [e2] and qc["added"] == [{"id": e2, "index": 1}]
    name, r = call(a, "CalendarEvent/queryChanges", sinceQueryState=state, expandRecurrences=True,
                   filter={"after": "2024-01-01T00:00:00", "before": "2024-02-01T00:00:00"})
    assert name == "error" and r["type"] == "cannotCalculateChanges"


# ---------------------------------------------------------------------------- iCalendar in/out
def test_parse_blob(a):
    blob = a.upload((ICS / "google_new_york_exdate.ics").read_bytes(), "text/calendar")
    bad = a.upload(b"hello", "text/plain")
    r = ok(a, "CalendarEvent/parse", blobIds=[blob["blobId"], bad["blobId"], "Gnope"])
    assert r["notParsable"] == [bad["blobId"]] and r["notFound"] == ["Gnope"]
    [ev] = r["parsed"][blob["blobId"]]
    assert ev["id"] is None and ev["calendarIds"] is None
    assert ev["uid"] == "ak30b02u7858q1oo6ji9dm4mgg@google.com" and ev["title"] == "Market East Live!"
    assert ev["start"] == "2013-09-07T12:00:00" and ev["timeZone"] == "America/New_York" and ev["duration"] == "PT5H"
    assert ev["recurrenceRules"] == [{"@type": "RecurrenceRule", "frequency": "weekly",
                                      "until": "2013-10-24T23:59:59",
                                      "byDay": [{"@type": "NDay", "day": "fr"}, {"@type": "NDay", "day": "sa"}]}]
    assert ev["recurrenceOverrides"] == {"2013-10-11T12:00:00": {"excluded": True},
                                         "2013-10-12T12:00:00": {"excluded": True}}
    assert ev["locations"]["l1"]["name"].startswith("12th and Market")


def run_import(srv: Server, *args: str):
    return tidings("import", "--user", "calc", *args, data=srv.data, check=False)


def test_import_cli_download_round_trip(cserver):
    c = Jmap(cserver, "calc", "calc-pw")
    files = [str(ICS / n) for n in ("google_berlin_dst.ics", "google_new_york_exdate.ics", "pacific_fiji.ics",
                                    "evolution_detached_instances.ics", "recurrence.ics", "multiple.ics")]
    out = run_import(cserver, "--calendar", "Imported", *files)
    assert out.returncode == 1, out.stdout + out.stderr  # pacific_fiji.ics has a broken VEVENT
    assert "(created)" in out.stdout and "noend123: more than one DTSTART" in out.stdout
    imported = int(out.stdout.split("imported:")[1].split()[0])
    assert imported == 58 + 1 + 2 + 2 + 3
    again = run_import(cserver, "--calendar", "imported", *files)
    assert int(again.stdout.split("already present:")[1].split()[0]) == imported
    assert int(again.stdout.split("imported:")[1].split()[0]) == 0
    cal = [x for x in ok(c, "Calendar/get", ids=None)["list"] if x["name"] == "Imported"][0]["id"]
    q = ok(c, "CalendarEvent/query", filter={"inCalendars": [cal]}, calculateTotal=True)
    assert q["total"] == imported
    # a Google export with a Berlin VTIMEZONE: a weekly series with an EXDATE and a moved instance
    r = ok(c, "CalendarEvent/query", filter={"uid": "7g6502aejkun96i5fenfu6hvc1@google.com"})
    [eid] = r["ids"]
    ev = ok(c, "CalendarEvent/get", ids=[eid])["list"][0]
    assert ev["timeZone"] == "Europe/Berlin" and ev["start"] == "2019-02-28T08:30:00"
    assert ev["recurrenceOverrides"]["2019-03-07T08:30:00"] == {"excluded": True}
    # expansion over the March 2019 change: 08:30 local throughout
    q = ok(c, "CalendarEvent/query", expandRecurrences=True, filter={
        "uid": ev["uid"], "after": "2019-03-20T00:00:00", "before": "2019-04-05T00:00:00"})
    got = ok(c, "CalendarEvent/get", ids=q["ids"], properties=["start", "utcStart"])["list"]
    assert [(g["start"], g["utcStart"]) for g in got] == [("2019-03-21T08:30:00", "2019-03-21T07:30:00Z"),
                                                          ("2019-03-28T08:30:00", "2019-03-28T07:30:00Z"),
                                                          ("2019-04-04T08:30:00", "2019-04-04T06:30:00Z")]
    # detached instances only (Evolution): one event per RECURRENCE-ID
    r = ok(c, "CalendarEvent/query", filter={"uid": "invite-detached"}, sort=[{"property": "recurrenceId"}])
    insts = ok(c, "CalendarEvent/get", ids=r["ids"], properties=["recurrenceId", "participants"])["list"]
    assert [i["recurrenceId"] for i in insts] == ["2018-05-02T00:00:00", "2018-05-09T00:00:00"]
    roles = sorted(tuple(sorted(p["roles"])) for p in insts[0]["participants"].values())
    assert roles == [("attendee",), ("owner",)]
    # download: the event as iCalendar, read back, equals what was stored
    url = f"/jmap/calendar/{c.account_id}/{eid}.ics"
    resp = c.http.get(url)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/calendar")
    text = resp.text
    for needle in ("UID:7g6502aejkun96i5fenfu6hvc1@google.com", "DTSTART;TZID=Europe/Berlin:20190228T083000",
                   "RRULE:FREQ=WEEKLY;BYDAY=TH", "EXDATE;TZID=Europe/Berlin:20190307T083000", "BEGIN:VTIMEZONE"):
        assert needle in text, (needle, text)
    blob = c.upload(resp.content, "text/calendar")
    [back] = ok(c, "CalendarEvent/parse", blobIds=[blob["blobId"]])["parsed"][blob["blobId"]]
    keep = [p for p in ev if p not in ("id", "calendarIds", "isDraft", "isOrigin", "baseEventId")]
    assert {p: back[p] for p in keep} == {p: ev[p] for p in keep}
    # the whole calendar, and 404s
    whole = c.http.get(f"/jmap/calendar/{c.account_id}/{cal}.ics")
    assert whole.status_code == 200 and whole.text.count("BEGIN:VEVENT") >= imported
    assert c.http.get(f"/jmap/calendar/{c.account_id}/Enope.ics").status_code == 404
    other = Jmap(cserver, "cala", "cala-pw")
    assert other.http.get(url).status_code == 404
    assert httpx.get(cserver.base + url).status_code == 401


def test_round_trip_every_fixture(a):
    """.ics -> JSCalendar -> .ics -> JSCalendar keeps every property JSCalendar models."""
    for path in sorted(ICS.glob("*.ics")):
        first = a.upload(path.read_bytes(), "text/calendar")
        parsed = ok(a, "CalendarEvent/parse", blobIds=[first["blobId"]])["parsed"]
        if parsed is None:
            assert path.name == "pacific_fiji.ics"
            continue
        events = parsed[first["blobId"]]
        from app.calendar.ical import to_ics

        second = a.upload(to_ics(events), "text/calendar")
        again = ok(a, "CalendarEvent/parse", blobIds=[second["blobId"]])["parsed"][second["blobId"]]
        for x, y in zip(events, again, strict=True):
            if x["updated"] is None:  # no LAST-MODIFIED/DTSTAMP in the file: the export stamps it
                y["updated"] = None
            assert x == y, path.name


def test_import_cli_errors(cserver):
    out = run_import(cserver, "--calendar", "X", "/nonexistent.ics")
    assert out.returncode == 1 and "no such file" in out.stderr
    out = run_import(cserver, "--calendar", "X", "--mailbox", "Inbox", str(ICS / "multiple.ics"))
    assert out.returncode == 1 and "--mailbox" in out.stderr
