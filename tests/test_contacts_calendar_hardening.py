"""Contacts and calendars against a live server, for the cases of faults under operation (o04, o06,
o09): a value written into a vCard or iCalendar line may hold no line break (refused at /set with
invalidProperties naming its path, and escaped by the writers whatever was stored before); invalid
input of any JSON type is invalidProperties with a plain description, never serverFail; and the
downloads answer a vCard/iCalendar or problem details, never a 500 text/plain."""

from __future__ import annotations

import pytest

from app.calendar.timing import MAX_DURATION
from app.contacts.vcard import card_to_vcard, parse_vcards
from tests.conftest import CORE, Jmap, Server, call_using, tidings
from tests.unit.test_jscal_validation import WRONG_TYPE_CASES

CONTACTS = "urn:ietf:params:jmap:contacts"
CALENDARS = "urn:ietf:params:jmap:calendars"
USING = [CORE, CONTACTS, CALENDARS]
EVIL = "\r\nEMAIL:evil@x.y"
ONE_LINE = "on one line (no CR, LF or other control character)"
RID = "2024-01-17T10:00:00"
WEEKLY = {"@type": "RecurrenceRule", "frequency": "weekly"}
TOO_LONG = f"must be at most {MAX_DURATION.days} days long"

# stored as they were before validation refused them (written to the store, not through /set)
LEGACY_CARD = {
    "@type": "Card", "version": "1.0", "uid": "urn:x" + EVIL, "kind": "x:y" + EVIL, "addressBookIds": {"Bdefault": True},
    "name": {"full": "Legacy"}, "phones": {"p1": {"number": "tel:+1" + EVIL}},
    "links": {"l1": {"uri": "https://x" + EVIL}}, "onlineServices": {"s1": {"uri": "xmpp:a" + EVIL, "service": "S\rX"}},
    "preferredLanguages": {"g1": {"language": "de" + EVIL}}, "members": {"urn:m" + EVIL: True},
    "addresses": {"a1": {"full": "Street 1\rEMAIL:evil@x.y"}}}
LEGACY_EVENT = {
    "@type": "Event", "uid": "legacy-1", "title": "Legacy", "start": "2024-01-10T10:00:00", "timeZone": "Europe/Berlin",
    "duration": "PT1H", "color": "red\r\nX-EVIL:1", "calendarIds": {"Cdefault": True},
    "links": {"k1": {"href": "https://x\r\nX-EVIL:1"}},
    "participants": {"o": {"name": "O\r\nX-EVIL:1", "sendTo": {"imip": "mailto:o@b.c\r\nX-EVIL:1"},
                           "roles": {"owner": True}},
                     "p": {"email": "a@b.c\r\nX-EVIL:1", "roles": {"attendee": True}}}}
# records the writers cannot write at all (a phone without number, a start that is no LocalDateTime)
BROKEN_CARD = {"@type": "Card", "version": "1.0", "uid": "broken-card", "addressBookIds": {"Bdefault": True},
               "phones": {"p1": {}}}
BROKEN_EVENT = {"@type": "Event", "uid": "broken-1", "title": "Broken", "start": "garbage", "duration": "PT1H",
                "calendarIds": {"Cdefault": True}}


@pytest.fixture(scope="module")
def hserver(tmp_path_factory):
    data = tmp_path_factory.mktemp("hardening")
    tidings("user", "add", "hana", "--password", "pw", "--email", "hana@example.com", data=data)
    ids = _store_legacy(data)
    srv = Server(data)
    srv.legacy = ids
    yield srv
    srv.stop()


def _store_legacy(data) -> dict[str, str]:
    """Records written as an older tidings kept them, before the server starts."""
    from app.calendar.event import EVENT
    from app.contacts.card import CARDS, stored_record
    from store import open_store

    store = open_store(str(data))
    try:
        account = store.user("hana")["accountId"]
        internal = {"_utcStart": 0, "_utcEnd": 2**40, "_calendars": ["Cdefault"]}
        with store.write(account) as w:
            card = w.create_record(CARDS, stored_record(LEGACY_CARD))
            broken_card = w.create_record(CARDS, stored_record(BROKEN_CARD))
            event = w.create_record(EVENT.collection, {**LEGACY_EVENT, **internal})
            broken = w.create_record(EVENT.collection, {**BROKEN_EVENT, **internal})
        return {"card": card["id"], "broken_card": broken_card["id"], "event": event["id"], "broken": broken["id"]}
    finally:
        store.close()


@pytest.fixture(scope="module")
def h(hserver) -> Jmap:
    return Jmap(hserver, "hana", "pw")


def call(c: Jmap, method: str, **args) -> tuple[str, dict]:
    return call_using(c, USING, method, **args)


def refused(c: Jmap, method: str, obj: dict) -> dict:
    """The SetError of creating obj (which must be refused)."""
    name, result = call(c, method, create={"x": obj})
    assert name == method, result  # never serverFail
    assert "x" in (result.get("notCreated") or {}), result
    return result["notCreated"]["x"]


def unfolded(text: str) -> list[str]:
    """The content lines of a vCard or iCalendar text, unfolded (RFC 6350 §3.2, RFC 5545 §3.1)."""
    return text.replace("\r\n ", "").removesuffix("\r\n").split("\r\n")


# ------------------------------------------------------------------------------- ContactCard
CARD = {"addressBookIds": {"Bdefault": True}, "name": {"full": "Hana"}}


@pytest.mark.parametrize(("props", "path"), [
    ({"uid": "urn:x" + EVIL}, "uid"),
    ({"uid": "urn:x\x00"}, "uid"),
    ({"kind": "x:y" + EVIL}, "kind"),
    ({"phones": {"p1": {"number": "tel:+1" + EVIL}}}, "phones/p1/number"),
    ({"phones": {"p1": {"number": "+1", "features": {"x\rEMAIL:evil": True}}}}, "phones/p1/features/x\rEMAIL:evil"),
    ({"emails": {"e1": {"address": "a@b.c\nEMAIL:evil@x.y"}}}, "emails/e1/address"),
    ({"links": {"l1": {"uri": "https://x" + EVIL}}}, "links/l1/uri"),
    ({"onlineServices": {"s1": {"uri": "xmpp:a" + EVIL}}}, "onlineServices/s1/uri"),
    ({"onlineServices": {"s1": {"uri": "xmpp:a", "service": "S\rEMAIL:evil@x.y"}}}, "onlineServices/s1/service"),
    ({"preferredLanguages": {"g1": {"language": "de" + EVIL}}}, "preferredLanguages/g1/language"),
    ({"members": {"urn:m" + EVIL: True}}, "members/urn:m" + EVIL),
    ({"keywords": {"k\u2028": True}}, "keywords/k\u2028"),
    ({"addresses": {"a1": {"full": "Street 1", "countryCode": "DE\r"}}}, "addresses/a1/countryCode"),
    ({"media": {"m1": {"kind": "photo", "uri": "https://p" + EVIL}}}, "media/m1/uri"),
    ({"language": "en\n"}, "language"),
])
def test_card_values_written_on_one_vcard_line_refuse_line_breaks(h, props, path):
    err = refused(h, "ContactCard/set", {**CARD, **props})
    assert err["type"] == "invalidProperties" and err["properties"] == [path], err
    assert ONE_LINE in err["description"], err


def test_card_text_may_have_line_breaks_and_is_written_escaped(h):
    """An address's full text (the LABEL parameter) and a note are text: a lone CR is a line break,
    written as RFC 6868 ^n and RFC 6350 \\n, never as a line of its own."""
    card = {**CARD, "addresses": {"a1": {"full": "Street 1\rEMAIL:evil@x.y"}}, "notes": {"n1": {"note": "a\r\nEMAIL:b"}}}
    name, result = call(h, "ContactCard/set", create={"c": card})
    card_id = result["created"]["c"]["id"]
    r = h.http.get(f"/jmap/vcard/{h.account_id}/{card_id}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vcard")
    lines = unfolded(r.text)
    assert not [ln for ln in lines if ln.upper().startswith("EMAIL")], lines
    assert 'ADR;LABEL="Street 1^nEMAIL:evil@x.y":;;;;;;' in lines
    assert "NOTE:a\\nEMAIL:b" in lines
    [back] = list(parse_vcards(r.content))
    assert back.card["addresses"]["a1"]["full"] == "Street 1\nEMAIL:evil@x.y"
    assert back.card["notes"]["n1"]["note"] == "a\nEMAIL:b"


def test_a_card_stored_before_validation_is_exported_without_injected_lines(h, hserver):
    for obj_id in (hserver.legacy["card"], "Bdefault"):  # the card, and its address book
        r = h.http.get(f"/jmap/vcard/{h.account_id}/{obj_id}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/vcard"), r.text
        assert "broken-card" not in r.text  # a card the writer cannot write is left out of its book
        lines = unfolded(r.text)
        assert not [ln for ln in lines if ln.upper().startswith("EMAIL")], lines
        for line in ("UID:urn:x%0D%0AEMAIL:evil@x.y", "KIND:x:y\\nEMAIL:evil@x.y",
                     "TEL;VALUE=uri:tel:+1%0D%0AEMAIL:evil@x.y", "URL:https://x%0D%0AEMAIL:evil@x.y",
                     "IMPP;X-SERVICE-TYPE=S^nX:xmpp:a%0D%0AEMAIL:evil@x.y", "LANG:de\\nEMAIL:evil@x.y",
                     "MEMBER:urn:m%0D%0AEMAIL:evil@x.y", 'ADR;LABEL="Street 1^nEMAIL:evil@x.y":;;;;;;'):
            assert line in lines, (line, lines)


def test_the_vcard_writer_escapes_every_property_it_writes():
    """Fed a card directly (no validation): no value or parameter ends its line, whatever it holds."""
    card = {"uid": "urn:x" + EVIL, "kind": "x:y" + EVIL, "prodId": "p" + EVIL,
            "name": {"full": "F" + EVIL, "components": [{"kind": "given", "value": "G\rEMAIL:e"}]},
            "nicknames": {"k": {"name": "N" + EVIL}}, "emails": {"e": {"address": "a@b.c" + EVIL}},
            "phones": {"p": {"number": "tel:+1" + EVIL, "features": {"x\rEMAIL:e": True}}, "q": {"number": "+1" + EVIL}},
            "addresses": {"a": {"full": "S\rEMAIL:e", "countryCode": "DE" + EVIL,
                                "components": [{"kind": "locality", "value": "L" + EVIL}]}},
            "organizations": {"o": {"name": "O" + EVIL, "units": [{"name": "U" + EVIL}]}},
            "titles": {"t": {"name": "T" + EVIL}, "r": {"name": "R" + EVIL, "kind": "role"}},
            "notes": {"n": {"note": "No" + EVIL}}, "links": {"l": {"uri": "http://x" + EVIL}},
            "onlineServices": {"s": {"uri": "xmpp:a" + EVIL, "service": "S\rEMAIL:e"},
                               "u": {"user": "U" + EVIL, "service": "Skype"}},
            "preferredLanguages": {"g": {"language": "de" + EVIL}},
            "media": {"m": {"kind": "photo", "uri": "http://p" + EVIL, "mediaType": "image/png" + EVIL}},
            "keywords": {"k" + EVIL: True}, "members": {"urn:m" + EVIL: True},
            "anniversaries": {"d": {"kind": "birth", "date": {"@type": "Timestamp", "utc": "2000-01-02T03:04:05Z\n"}}},
            "updated": "2024-01-02T03:04:05Z\r\nEMAIL:e"}
    text = card_to_vcard(card)
    assert "\r" not in text.replace("\r\n", "") and "\n" not in text.replace("\r\n", "")
    lines = unfolded(text)
    names = [ln.split(":", 1)[0].split(";", 1)[0] for ln in lines]
    assert names == ["BEGIN", "VERSION", "PRODID", "UID", "KIND", "FN", "N", "NICKNAME", "EMAIL", "TEL", "TEL", "ADR",
                     "ORG", "TITLE", "ROLE", "NOTE", "BDAY", "URL", "IMPP", "X-SKYPE", "LANG", "PHOTO", "CATEGORIES",
                     "MEMBER", "REV", "END"], lines
    assert "EMAIL:a@b.c\\nEMAIL:evil@x.y" in lines  # the one EMAIL line is the card's own, escaped
    assert 'PHOTO;MEDIATYPE="image/png^nEMAIL:evil@x.y":http://p%0D%0AEMAIL:evil@x.y' in lines


# ----------------------------------------------------------------------------- CalendarEvent
EVENT = {"title": "t", "start": "2024-01-10T10:00:00", "timeZone": "Europe/Berlin", "duration": "PT1H"}


@pytest.mark.parametrize(("props", "path"), [
    *WRONG_TYPE_CASES,
    ({"recurrenceRules": [{**WEEKLY, "byDay": [{"day": "mo", "nthOfPeriod": True}]}]},
     "recurrenceRules/0/byDay/0/nthOfPeriod"),
    ({"recurrenceRules": [{**WEEKLY, "byMonth": ["²"]}]}, "recurrenceRules/0/byMonth/0"),
    ({"recurrenceRules": [{**WEEKLY, "byMonth": ["٣"]}]}, "recurrenceRules/0/byMonth/0"),
    ({"recurrenceRules": [{**WEEKLY, "byMonth": ["01"]}]}, "recurrenceRules/0/byMonth/0"),
    ({"recurrenceRules": [{**WEEKLY, "count": 2**31}]}, "recurrenceRules/0/count"),
    ({"sequence": 2**40}, "sequence"),
])
def test_event_values_of_the_wrong_type_are_invalid_properties_not_server_fail(h, props, path):
    err = refused(h, "CalendarEvent/set", {**EVENT, **props})
    assert err["type"] == "invalidProperties" and err["properties"] == [path], err
    assert err["description"] and "Error" not in err["description"], err  # words, not a Python exception


@pytest.mark.parametrize(("props", "path"), [
    ({"duration": "P99999999999W"}, "duration"),
    ({"duration": "PT9999999999999999999999S"}, "duration"),
    ({"alerts": {"a1": {"trigger": {"@type": "OffsetTrigger", "offset": "-P99999999999W"}}}}, "alerts/a1/trigger/offset"),
    ({"recurrenceRules": [WEEKLY], "recurrenceOverrides": {RID: {"duration": "P99999999999W"}}},
     f"recurrenceOverrides/{RID}/duration"),
])
def test_durations_too_long_to_compute_with_are_refused(h, props, path):
    err = refused(h, "CalendarEvent/set", {**EVENT, **props})
    assert err["type"] == "invalidProperties" and err["properties"] == [path], err
    assert TOO_LONG in err["description"], err


@pytest.mark.parametrize(("props", "path"), [
    ({"participants": {"p1": {"name": "A\r\nX-EVIL:1", "email": "a@b.c"}}}, "participants/p1/name"),
    ({"participants": {"p1": {"email": "a@b.c\r\nX-EVIL:1"}}}, "participants/p1/email"),
    ({"participants": {"p1": {"sendTo": {"imip": "mailto:a@b.c\r\nX-EVIL:1"}}}}, "participants/p1/sendTo/imip"),
    ({"links": {"k1": {"href": "https://x\r\nX-EVIL:1"}}}, "links/k1/href"),
    ({"color": "red\r\nX-EVIL:1"}, "color"),
    ({"color": "red\rX-EVIL:1"}, "color"),
    ({"uid": "u-1\nX-EVIL:1"}, "uid"),
    ({"locale": "en\n"}, "locale"),
    ({"virtualLocations": {"v1": {"uri": "https://meet\r\nX-EVIL:1"}}}, "virtualLocations/v1/uri"),
    # a deep patch path is checked on the instance it makes
    ({"participants": {"p1": {"email": "a@b.c"}}, "recurrenceRules": [WEEKLY],
      "recurrenceOverrides": {RID: {"participants/p1/email": "a@b.c\r\nX-EVIL:1"}}},
     f"recurrenceOverrides/{RID}/participants/p1/email"),
])
def test_event_values_written_on_one_ics_line_refuse_line_breaks(h, props, path):
    err = refused(h, "CalendarEvent/set", {**EVENT, **props})
    assert err["type"] == "invalidProperties" and err["properties"] == [path], err
    assert ONE_LINE in err["description"], err


def test_an_update_is_checked_like_a_create(h):
    name, result = call(h, "CalendarEvent/set", create={"e": {**EVENT, "uid": "upd-1"}})
    eid = result["created"]["e"]["id"]
    name, result = call(h, "CalendarEvent/set", update={eid: {"status": ["x"], "participants": {"p1": {"email": "a\rb"}},
                                                             "duration": "P99999999999W"}})
    err = result["notUpdated"][eid]
    assert err["type"] == "invalidProperties"
    assert sorted(err["properties"]) == ["duration", "participants/p1/email", "status"], err


def test_calendar_default_alerts_with_a_huge_offset_are_refused(h):
    err = refused(h, "Calendar/set", {"name": "C", "defaultAlertsWithTime": {
        "a1": {"@type": "Alert", "trigger": {"@type": "OffsetTrigger", "offset": "-P99999999999W"}}}})
    assert err["type"] == "invalidProperties" and err["properties"] == ["defaultAlertsWithTime/a1/trigger/offset"]
    assert TOO_LONG in err["description"]


def test_event_text_keeps_its_line_breaks_escaped_in_the_download(h):
    name, result = call(h, "CalendarEvent/set", create={"e": {**EVENT, "uid": "text-1", "title": "a\r\nX-EVIL:1",
                                                              "description": "one\ntwo"}})
    eid = result["created"]["e"]["id"]
    r = h.http.get(f"/jmap/calendar/{h.account_id}/{eid}.ics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
    lines = unfolded(r.text)
    assert "SUMMARY:a\\nX-EVIL:1" in lines and "DESCRIPTION:one\\ntwo" in lines
    assert not [ln for ln in lines if ln.startswith("X-EVIL")]


def test_an_event_stored_before_validation_downloads_without_injected_lines(h, hserver):
    r = h.http.get(f"/jmap/calendar/{h.account_id}/{hserver.legacy['event']}.ics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar"), r.text
    lines = unfolded(r.text)
    assert not [ln for ln in lines if ln.startswith("X-EVIL")], lines
    assert "URL:https://x%0D%0AX-EVIL:1" in lines
    assert 'ORGANIZER;CN="O^nX-EVIL:1":mailto:o@b.c%0D%0AX-EVIL:1' in lines
    assert [ln for ln in lines if ln.startswith("ATTENDEE") and ln.endswith(":mailto:a@b.c%0D%0AX-EVIL:1")]
    assert not [ln for ln in lines if ln.startswith("COLOR")]  # no token: left out


def test_the_calendar_download_leaves_out_an_event_it_cannot_write(h, hserver):
    r = h.http.get(f"/jmap/calendar/{h.account_id}/Cdefault.ics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar"), r.text
    assert "UID:legacy-1" in r.text and "UID:broken-1" not in r.text


def test_an_event_or_card_that_cannot_be_written_alone_is_a_problem_response(h, hserver):
    r = h.http.get(f"/jmap/calendar/{h.account_id}/{hserver.legacy['broken']}.ics")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json", r.text
    assert "broken-1" in r.json()["detail"] and "cannot be written as iCalendar" in r.json()["detail"]
    r = h.http.get(f"/jmap/vcard/{h.account_id}/{hserver.legacy['broken_card']}")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json", r.text
    assert "broken-card" in r.json()["detail"] and "cannot be written as vCard" in r.json()["detail"]
