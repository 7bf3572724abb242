"""Address books and calendars shared between users (RFC 9670 §4, RFC 9610 §2 AddressBookRights,
the JMAP Calendars draft's CalendarRights), against a live server: the grantee sees exactly what
was shared, with the capability of its type, and does exactly what was granted (app/sharing.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import CORE, Jmap, call_using, serve_users, tidings, unique

CONTACTS = "urn:ietf:params:jmap:contacts"
CAL = "urn:ietf:params:jmap:calendars"
MAIL = "urn:ietf:params:jmap:mail"
USING = [CORE, CONTACTS, CAL]
BOOK_RIGHTS = ("mayRead", "mayWrite", "mayAdmin", "mayDelete")
CAL_RIGHTS = ("mayReadFreeBusy", "mayReadItems", "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate", "mayRSVP",
              "mayAdmin", "mayDelete")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_users(tmp_path_factory, "sharing-pim", ("ann", "ben", "cat"))


@pytest.fixture(scope="module")
def users(server) -> SimpleNamespace:
    """ann owns what is shared; ben and cat are the grantees."""
    return SimpleNamespace(**{name: Jmap(server, name, "pw") for name in ("ann", "ben", "cat")})


def call(c: Jmap, method: str, account: str | None = None, **args) -> tuple[str, dict]:
    return call_using(c, USING, method, accountId=account or c.account_id, **args)


def ok(c: Jmap, method: str, account: str | None = None, **args) -> dict:
    name, result = call(c, method, account, **args)
    assert name == method, result
    return result


def granted(names: tuple[str, ...], *rights: str) -> dict:
    return {r: r in rights for r in names}


def card(book: str, full: str, *more_books: str) -> dict:
    return {"addressBookIds": {book: True, **dict.fromkeys(more_books, True)}, "name": {"full": full}}


@pytest.fixture
def books(users):
    ann, ben = users.ann, users.ben
    """Two address books of ann's, "shared" (with ben: mayRead) and "private", with a card each and
    one card in both; every grant of ann's is gone afterwards."""
    res = ok(ann, "AddressBook/set", create={"s": {"name": unique("Shared ")}, "p": {"name": unique("Private ")}})
    shared, private = res["created"]["s"]["id"], res["created"]["p"]["id"]
    res = ok(ann, "ContactCard/set", create={"a": card(shared, "Ada Shared"), "b": card(private, "Bo Private"),
                                             "c": card(shared, "Cy Both", private)})
    ids = {k: v["id"] for k, v in res["created"].items()}
    ok(ann, "AddressBook/set", update={shared: {"shareWith": {ben.account_id: granted(BOOK_RIGHTS, "mayRead")}}})
    yield shared, private, ids
    ok(ann, "AddressBook/set", destroy=[shared, private], onDestroyRemoveContents=True)


# ------------------------------------------------------------------------------ session and reading
def test_a_shared_address_book_brings_the_account_into_the_session_with_contacts_only(users, books):
    ann, ben = users.ann, users.ben
    session = ben.http.get("/.well-known/jmap").json()
    account = session["accounts"][ann.account_id]
    assert (account["isPersonal"], account["isReadOnly"]) == (False, True)
    caps = account["accountCapabilities"]
    assert caps[CONTACTS] == {"maxAddressBooksPerCard": None, "mayCreateAddressBook": False}
    assert MAIL not in caps and CAL not in caps
    [[name, res, _]] = ben.request([["Mailbox/get", {"accountId": ann.account_id, "ids": None}, "0"]],
                                   using=[CORE, MAIL])["methodResponses"]
    assert (name, res["type"]) == ("error", "accountNotSupportedByMethod")


def test_the_grantee_sees_the_shared_book_as_granted_and_only_its_cards(users, books):
    ann, ben = users.ann, users.ben
    shared, private, ids = books
    got = ok(ben, "AddressBook/get", ann.account_id, ids=None)["list"]
    assert [b["id"] for b in got] == [shared]
    assert got[0]["myRights"] == granted(BOOK_RIGHTS, "mayRead")
    assert got[0]["shareWith"] is None and got[0]["isSubscribed"] is False  # RFC 9610 §2: false when shared
    assert ok(ann, "AddressBook/get", ids=[shared])["list"][0]["shareWith"] == {
        ben.account_id: granted(BOOK_RIGHTS, "mayRead")}
    cards = ok(ben, "ContactCard/get", ann.account_id, ids=None, properties=["addressBookIds"])
    assert {c["id"]: c["addressBookIds"] for c in cards["list"]} == {ids["a"]: {shared: True},
                                                                   ids["c"]: {shared: True}}
    assert ok(ben, "ContactCard/get", ann.account_id, ids=[ids["b"]])["notFound"] == [ids["b"]]
    found = ok(ben, "ContactCard/query", ann.account_id, filter={"text": "Private"})["ids"]
    assert found == []
    assert ok(ben, "ContactCard/query", ann.account_id, filter={"inAddressBook": private})["ids"] == []
    vcard = ben.http.get(f"/jmap/vcard/{ann.account_id}/{shared}")
    assert vcard.status_code == 200 and "Ada Shared" in vcard.text and "Bo Private" not in vcard.text
    assert ben.http.get(f"/jmap/vcard/{ann.account_id}/{private}").status_code == 404
    assert ben.http.get(f"/jmap/vcard/{ann.account_id}/{ids['b']}").status_code == 404


def test_a_revoked_share_is_gone_on_the_next_request(users, books):
    ann, ben = users.ann, users.ben
    shared, _, ids = books
    ok(ann, "AddressBook/set", update={shared: {"shareWith": None}})
    name, res = call(ben, "ContactCard/get", ann.account_id, ids=[ids["a"]])
    assert (name, res["type"]) == ("error", "accountNotFound")
    assert ann.account_id not in ben.http.get("/.well-known/jmap").json()["accounts"]


# ------------------------------------------------------------------------------ writing
def test_card_writes_need_may_write_on_every_book_they_touch(users, books):
    ann, ben = users.ann, users.ben
    shared, private, ids = books
    res = ok(ben, "ContactCard/set", ann.account_id, create={"n": card(shared, "New One")},
             update={ids["a"]: {"name/full": "Changed"}}, destroy=[ids["a"]])
    assert res["notCreated"]["n"]["type"] == "forbidden"
    assert res["notUpdated"][ids["a"]]["type"] == "forbidden"
    assert res["notDestroyed"][ids["a"]]["type"] == "forbidden"
    ok(ann, "AddressBook/set", update={shared: {"shareWith": {ben.account_id: granted(BOOK_RIGHTS, "mayRead",
                                                                                       "mayWrite")}}})
    assert ben.http.get("/.well-known/jmap").json()["accounts"][ann.account_id]["isReadOnly"] is False
    res = ok(ben, "ContactCard/set", ann.account_id, create={"n": card(shared, "New One")},
             update={ids["a"]: {"name/full": "Changed"}, ids["c"]: {"addressBookIds": {shared: True}}})
    assert "n" in res["created"] and set(res["updated"]) == {ids["a"], ids["c"]}, (res["notUpdated"], res["updated"])
    # the book ben does not see stays: setting the whole map changes only what he sees
    assert ok(ann, "ContactCard/get", ids=[ids["c"]])["list"][0]["addressBookIds"] == {shared: True, private: True}
    # into a book he cannot see, or out of every book: refused; a card also in the private book
    # cannot be destroyed by him
    res = ok(ben, "ContactCard/set", ann.account_id, update={ids["a"]: {f"addressBookIds/{private}": True}},
             destroy=[ids["c"]])
    assert res["notUpdated"][ids["a"]]["type"] == "invalidProperties"  # no such book, for him
    assert res["notDestroyed"][ids["c"]]["type"] == "forbidden"
    assert ok(ben, "ContactCard/set", ann.account_id, destroy=[ids["a"]])["destroyed"] == [ids["a"]]


def test_the_grantee_sets_only_his_own_subscription_and_shares_only_with_may_admin(users, books):
    ann, ben, cat = users.ann, users.ben, users.cat
    shared, _, _ = books
    res = ok(ben, "AddressBook/set", ann.account_id, update={shared: {"name": "Mine now"}},
             create={"x": {"name": "His own"}})
    assert res["notUpdated"][shared]["type"] == "forbidden" and res["notCreated"]["x"]["type"] == "forbidden"
    assert ok(ben, "AddressBook/set", ann.account_id, update={shared: {"isSubscribed": True}})["updated"] == {
        shared: None}
    assert ok(ben, "AddressBook/get", ann.account_id, ids=[shared])["list"][0]["isSubscribed"] is True
    mine = ok(ann, "AddressBook/get", ids=[shared])["list"][0]
    assert mine["isSubscribed"] is True and mine["name"].startswith("Shared ")  # ann's own value, untouched
    share_cat = {f"shareWith/{cat.account_id}": granted(BOOK_RIGHTS, "mayRead")}
    # without mayAdmin he sees shareWith null (so the path share_cat patches is not there) and may not set it
    res = ok(ben, "AddressBook/set", ann.account_id, update={shared: {"shareWith": {
        cat.account_id: granted(BOOK_RIGHTS, "mayRead")}}})
    assert res["notUpdated"][shared]["type"] == "forbidden"
    ok(ann, "AddressBook/set", update={shared: {"shareWith": {ben.account_id: granted(BOOK_RIGHTS, "mayRead",
                                                                                       "mayAdmin")}}})
    too_much = {f"shareWith/{cat.account_id}": granted(BOOK_RIGHTS, "mayRead", "mayWrite")}
    res = ok(ben, "AddressBook/set", ann.account_id, update={shared: too_much})
    assert res["notUpdated"][shared]["type"] == "forbidden"  # RFC 9610 §2.3: a right he does not hold
    assert ok(ben, "AddressBook/set", ann.account_id, update={shared: share_cat})["updated"] == {shared: None}
    assert [b["id"] for b in ok(cat, "AddressBook/get", ann.account_id, ids=None)["list"]] == [shared]
    assert ok(ben, "AddressBook/get", ann.account_id, ids=[shared])["list"][0]["shareWith"][cat.account_id][
        "mayRead"] is True
    # a grantee with mayDelete but without mayWrite cannot take the cards with the book
    res = ok(cat, "AddressBook/set", ann.account_id, destroy=[shared], onDestroyRemoveContents=True)
    assert res["notDestroyed"][shared]["type"] == "forbidden"


def test_share_with_is_checked_whole(users):
    ann, ben = users.ann, users.ben
    book = ok(ann, "AddressBook/set", create={"b": {"name": unique("Checked ")}})["created"]["b"]["id"]
    for bad in ({ann.account_id: {"mayRead": True}}, {"Anobody": {"mayRead": True}},
                {ben.account_id: {"mayFly": True}}, {ben.account_id: {"mayRead": "yes"}},
                {ben.account_id: ["mayRead"]}):
        res = ok(ann, "AddressBook/set", update={book: {"shareWith": bad}})
        assert res["notUpdated"][book]["type"] == "invalidProperties", bad
        assert res["notUpdated"][book]["properties"] == ["shareWith"], bad
    # a principal given no right at all is no sharee
    ok(ann, "AddressBook/set", update={book: {"shareWith": {ben.account_id: {"mayRead": False}}}})
    assert ok(ann, "AddressBook/get", ids=[book])["list"][0]["shareWith"] is None
    assert ann.account_id not in ben.http.get("/.well-known/jmap").json()["accounts"]
    ok(ann, "AddressBook/set", destroy=[book])


def test_card_copy_from_a_shared_book_lands_in_the_grantees_default_book(users, books):
    ann, ben = users.ann, users.ben
    _, _, ids = books
    res = ben.request([["ContactCard/copy", {"fromAccountId": ann.account_id, "accountId": ben.account_id,
                                             "create": {"k": {"id": ids["a"]}, "h": {"id": ids["b"]}},
                                             "onSuccessDestroyOriginal": True}, "0"]],
                      using=USING)["methodResponses"]
    copied, destroyed = res[0][1], res[1][1]
    assert set(copied["created"]) == {"k"} and copied["notCreated"]["h"]["type"] == "notFound"
    new_id = copied["created"]["k"]["id"]
    mine = ok(ben, "ContactCard/get", ids=[new_id])["list"][0]
    assert mine["addressBookIds"] == {"Bdefault": True} and mine["name"]["full"] == "Ada Shared"
    assert destroyed["notDestroyed"][ids["a"]]["type"] == "forbidden"  # mayRead only: the original stays
    ok(ben, "ContactCard/set", destroy=[new_id])


# ------------------------------------------------------------------------------ calendars
def event(cal: str, title: str, start: str = "2025-05-05T10:00:00") -> dict:
    return {"calendarIds": {cal: True}, "title": title, "start": start, "timeZone": "Europe/Berlin",
            "duration": "PT1H"}


@pytest.fixture
def calendars(users):
    ann, ben = users.ann, users.ben
    res = ok(ann, "Calendar/set", create={"s": {"name": unique("Team ")}, "p": {"name": unique("Private ")},
                                          "f": {"name": unique("Busy ")}})
    cals = {k: v["id"] for k, v in res["created"].items()}
    res = ok(ann, "CalendarEvent/set", create={
        "team": {**event(cals["s"], "Team meeting"),
                 "recurrenceRules": [{"@type": "RecurrenceRule", "frequency": "weekly", "count": 3}]},
        "doc": event(cals["p"], "Doctor"), "busy": event(cals["f"], "Busy thing")})
    evs = {k: v["id"] for k, v in res["created"].items()}
    ok(ann, "Calendar/set", update={
        cals["s"]: {"shareWith": {ben.account_id: granted(CAL_RIGHTS, "mayReadFreeBusy", "mayReadItems")}},
        cals["f"]: {"shareWith": {ben.account_id: granted(CAL_RIGHTS, "mayReadFreeBusy")}}})
    yield cals, evs
    ok(ann, "Calendar/set", destroy=list(cals.values()), onDestroyRemoveEvents=True)


def test_the_grantee_reads_the_events_of_the_shared_calendar_only(server, users, calendars):
    ann, ben = users.ann, users.ben
    cals, evs = calendars
    caps = ben.http.get("/.well-known/jmap").json()["accounts"][ann.account_id]["accountCapabilities"]
    assert caps[CAL]["mayCreateCalendar"] is False and CONTACTS not in caps
    got = ok(ben, "Calendar/get", ann.account_id, ids=None)["list"]
    # a calendar shared with mayReadFreeBusy alone "must behave as though it did not exist"
    assert [c["id"] for c in got] == [cals["s"]]
    assert got[0]["myRights"] == granted(CAL_RIGHTS, "mayReadFreeBusy", "mayReadItems")
    assert ok(ben, "Calendar/get", ann.account_id, ids=[cals["f"]])["notFound"] == [cals["f"]]
    listed = ok(ben, "CalendarEvent/get", ann.account_id, ids=None, properties=["title"])["list"]
    assert [e["title"] for e in listed] == ["Team meeting"]
    res = ok(ben, "CalendarEvent/query", ann.account_id, expandRecurrences=True,
             filter={"after": "2025-01-01T00:00:00", "before": "2026-01-01T00:00:00"})
    assert len(res["ids"]) == 3 and all(i.startswith(evs["team"]) for i in res["ids"])
    assert ok(ben, "CalendarEvent/get", ann.account_id, ids=[res["ids"][1]])["list"][0]["title"] == "Team meeting"
    assert ok(ben, "CalendarEvent/get", ann.account_id, ids=[evs["doc"], evs["busy"]])["notFound"] == [
        evs["doc"], evs["busy"]]
    ics = httpx.get(f"{server.base}/jmap/calendar/{ann.account_id}/{cals['s']}.ics", auth=("ben", "pw"))
    assert ics.status_code == 200 and "Team meeting" in ics.text
    assert httpx.get(f"{server.base}/jmap/calendar/{ann.account_id}/{evs['doc']}.ics",
                     auth=("ben", "pw")).status_code == 404


def test_event_writes_need_may_write_all(users, calendars):
    ann, ben = users.ann, users.ben
    cals, evs = calendars
    res = ok(ben, "CalendarEvent/set", ann.account_id, create={"n": event(cals["s"], "Mine")},
             update={evs["team"]: {"title": "Renamed"}}, destroy=[evs["team"]])
    assert {res["notCreated"]["n"]["type"], res["notUpdated"][evs["team"]]["type"],
            res["notDestroyed"][evs["team"]]["type"]} == {"forbidden"}
    # without calendarIds an event goes to the owner's default calendar: not for a grantee
    res = ok(ben, "CalendarEvent/set", ann.account_id, create={"d": {"title": "x", "start": "2025-01-01T00:00:00"}})
    assert res["notCreated"]["d"]["properties"] == ["calendarIds"]
    ok(ann, "Calendar/set", update={cals["s"]: {"shareWith": {ben.account_id: granted(
        CAL_RIGHTS, "mayReadItems", "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate", "mayRSVP")}}})
    res = ok(ben, "CalendarEvent/set", ann.account_id, create={"n": event(cals["s"], "Mine")},
             update={evs["team"]: {"title": "Renamed"}})
    assert "n" in res["created"] and evs["team"] in res["updated"], res
    assert ok(ann, "CalendarEvent/get", ids=[evs["team"]], properties=["title"])["list"][0]["title"] == "Renamed"
    res = ok(ben, "CalendarEvent/set", ann.account_id, update={evs["team"]: {"calendarIds": {cals["p"]: True}}})
    assert res["notUpdated"][evs["team"]]["type"] == "invalidProperties"  # a calendar he does not see


def test_event_copy_from_a_shared_calendar(users, calendars):
    ann, ben = users.ann, users.ben
    _, evs = calendars
    res = ok(ben, "CalendarEvent/copy", fromAccountId=ann.account_id, create={"c": {"id": evs["team"]}})
    new_id = res["created"]["c"]["id"]
    mine = ok(ben, "CalendarEvent/get", ids=[new_id], properties=["title", "calendarIds"])["list"][0]
    assert mine["title"] == "Team meeting" and mine["calendarIds"] == {"Cdefault": True}
    ok(ben, "CalendarEvent/set", destroy=[new_id])


# ------------------------------------------------------------------------------ push
def test_push_reports_the_shared_types_of_the_shared_account(server, users, books):
    from tests.test_push import EventStream

    ann = users.ann

    shared, _, ids = books

    async def scenario():
        async with EventStream(server.base, ("ben", "pw"), query="types=*&closeafter=no&ping=0") as es:
            first = await es.state()
            assert set(first["data"]["changed"][ann.account_id]) == {"AddressBook", "ContactCard"}
            await asyncio.to_thread(ok, ann, "ContactCard/set", update={ids["a"]: {"name/full": "Pushed"}})
            while True:
                changed = (await es.state())["data"]["changed"]
                if ann.account_id in changed:
                    assert set(changed[ann.account_id]) == {"ContactCard"}, changed
                    break

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_per_user_values_of_a_sharee_are_his_alone_and_need_may_update_private(users, calendars):
    ann, ben = users.ann, users.ben
    cals, evs = calendars
    ok(ann, "CalendarEvent/set", update={evs["team"]: {"color": "red", "keywords": {"ann": True}}})
    mine = ok(ben, "CalendarEvent/get", ann.account_id, ids=[evs["team"]], properties=["color", "keywords"])
    assert mine["list"][0]["color"] is None and mine["list"][0]["keywords"] is None  # the defaults, not ann's
    res = ok(ben, "CalendarEvent/set", ann.account_id, update={evs["team"]: {"color": "blue"}})
    assert res["notUpdated"][evs["team"]]["type"] == "forbidden"  # mayReadItems only
    ok(ann, "Calendar/set", update={cals["s"]: {"shareWith": {ben.account_id: granted(
        CAL_RIGHTS, "mayReadItems", "mayUpdatePrivate")}}})
    res = ok(ben, "CalendarEvent/set", ann.account_id, update={evs["team"]: {"color": "blue", "keywords": {"ben": True}}})
    assert evs["team"] in res["updated"], res
    res = ok(ben, "CalendarEvent/set", ann.account_id, update={evs["team"]: {"title": "Ben's now"}})
    assert res["notUpdated"][evs["team"]]["type"] == "forbidden"  # not a per-user property
    assert ok(ben, "CalendarEvent/get", ann.account_id, ids=[evs["team"]], properties=["color", "keywords"])[
        "list"][0] == {"id": evs["team"], "color": "blue", "keywords": {"ben": True}}
    assert ok(ann, "CalendarEvent/get", ids=[evs["team"]], properties=["color", "keywords", "title"])["list"][0] == {
        "id": evs["team"], "color": "red", "keywords": {"ann": True}, "title": "Team meeting"}


def test_private_and_secret_events_as_the_draft_says_for_sharees(users, calendars):
    ann, ben = users.ann, users.ben
    cals, _ = calendars
    ok(ann, "Calendar/set", update={cals["s"]: {"shareWith": {ben.account_id: granted(
        CAL_RIGHTS, "mayReadItems", "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate", "mayRSVP")}}})
    res = ok(ann, "CalendarEvent/set", create={
        "p": {**event(cals["s"], "Private talk"), "privacy": "private", "description": "the details",
              "locations": {"l": {"@type": "Location", "name": "Room 1"}}},
        "s": {**event(cals["s"], "Secret"), "privacy": "secret"}})
    private, secret = res["created"]["p"]["id"], res["created"]["s"]["id"]
    got = ok(ben, "CalendarEvent/get", ann.account_id, ids=[private, secret])
    assert got["notFound"] == [secret]  # "as though the event does not exist"
    shown = got["list"][0]
    assert shown["start"] == "2025-05-05T10:00:00" and shown["privacy"] == "private"
    # the details are hidden: what /get shows for them is their default
    assert (shown["title"], shown["description"], shown["locations"]) == ("", "", None)
    res = ok(ben, "CalendarEvent/set", ann.account_id, update={private: {"color": "green"}}, destroy=[private])
    assert res["notUpdated"][private]["type"] == "forbidden" and res["notDestroyed"][private]["type"] == "forbidden"
    # a sharee may not make an event non-public in a calendar that is not his
    res = ok(ben, "CalendarEvent/set", ann.account_id, create={"x": {**event(cals["s"], "x"), "privacy": "private"}})
    assert res["notCreated"]["x"]["properties"] == ["privacy"]


def test_changing_an_event_needs_may_write_all_in_every_calendar_it_is_in(users, calendars):
    ann, ben = users.ann, users.ben
    cals, _ = calendars
    ok(ann, "Calendar/set", update={cals["s"]: {"shareWith": {ben.account_id: granted(
        CAL_RIGHTS, "mayReadItems", "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate", "mayRSVP")}}})
    both = ok(ann, "CalendarEvent/set", create={"b": {**event(cals["s"], "In both"),
                                                     "calendarIds": {cals["s"]: True, cals["p"]: True}}})
    both = both["created"]["b"]["id"]
    res = ok(ben, "CalendarEvent/set", ann.account_id, update={both: {"title": "Mine"}})
    assert res["notUpdated"][both]["type"] == "forbidden"  # draft: "in *all* calendars"
    # taking it out of the one calendar he may write is his to do; it stays in ann's private one
    res = ok(ben, "CalendarEvent/set", ann.account_id, update={both: {f"calendarIds/{cals['s']}": None}})
    assert list(res["updated"]) == [both], res
    assert ok(ann, "CalendarEvent/get", ids=[both], properties=["calendarIds"])["list"][0]["calendarIds"] == {
        cals["p"]: True}


# ------------------------------------------------------------------------------ review findings
def test_a_calendar_shared_for_free_busy_alone_shows_no_account(users):
    ann, ben = users.ann, users.ben
    cal = ok(ann, "Calendar/set", create={"f": {"name": unique("FreeBusy ")}})["created"]["f"]["id"]
    ok(ann, "Calendar/set", update={cal: {"shareWith": {ben.account_id: granted(CAL_RIGHTS, "mayReadFreeBusy")}}})
    assert ann.account_id not in ben.http.get("/.well-known/jmap").json()["accounts"]
    ok(ann, "Calendar/set", destroy=[cal])


def test_a_uid_clash_never_names_an_event_the_sharee_cannot_see(users, calendars):
    ann, ben = users.ann, users.ben
    cals, evs = calendars
    ok(ann, "Calendar/set", update={cals["s"]: {"shareWith": {ben.account_id: granted(
        CAL_RIGHTS, "mayReadItems", "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate", "mayRSVP")}}})
    hidden_uid = ok(ann, "CalendarEvent/get", ids=[evs["doc"]], properties=["uid"])["list"][0]["uid"]
    res = ok(ben, "CalendarEvent/set", ann.account_id, create={"d": {**event(cals["s"], "x"), "uid": hidden_uid}})
    assert res["notCreated"]["d"]["type"] == "invalidProperties" and "existingId" not in res["notCreated"]["d"]


def test_isSubscribed_after_giving_up_a_share_in_the_same_request_is_no_server_fail(users, books):
    ann, ben = users.ann, users.ben
    shared, _, _ = books
    ok(ann, "AddressBook/set", update={shared: {"shareWith": {ben.account_id: granted(BOOK_RIGHTS, "mayRead",
                                                                                       "mayAdmin")}}})
    out = ben.request([["AddressBook/set", {"accountId": ann.account_id, "update": {shared: {"shareWith": None}}}, "0"],
                       ["AddressBook/set", {"accountId": ann.account_id,
                                            "update": {shared: {"isSubscribed": True}}}, "1"]],
                      using=USING)["methodResponses"]
    assert out[0][1]["updated"] == {shared: None}
    assert out[1][0] == "error" and out[1][1]["type"] == "accountNotFound"  # nothing is shared any more


def test_a_sharee_takes_a_card_out_of_his_last_visible_book(users, books):
    ann, ben = users.ann, users.ben
    shared, private, ids = books
    ok(ann, "AddressBook/set", update={shared: {"shareWith": {ben.account_id: granted(BOOK_RIGHTS, "mayRead",
                                                                                       "mayWrite")}}})
    res = ok(ben, "ContactCard/set", ann.account_id, update={ids["c"]: {f"addressBookIds/{shared}": None}})
    assert ids["c"] in res["updated"], res
    assert ok(ann, "ContactCard/get", ids=[ids["c"]])["list"][0]["addressBookIds"] == {private: True}


def test_the_owner_edits_a_share_that_names_a_deleted_user(server, users):
    ann = users.ann

    tidings("user", "add", "gone", "--password", "pw", data=server.data)
    gone = Jmap(server, "gone", "pw").account_id
    book = ok(ann, "AddressBook/set", create={"b": {"name": unique("Old ")}})["created"]["b"]["id"]
    ok(ann, "AddressBook/set", update={book: {"shareWith": {gone: granted(BOOK_RIGHTS, "mayRead")}}})
    tidings("user", "delete", "gone", "--yes", data=server.data)
    res = ok(ann, "AddressBook/set", update={book: {"description": "still mine", f"shareWith/{gone}/mayWrite": True}})
    assert list(res["updated"]) == [book], res
    ok(ann, "AddressBook/set", destroy=[book])


def test_share_cli_shares_lists_and_revokes_address_books_and_calendars(server, users):
    ann, ben = users.ann, users.ben

    book = {"name": unique("Cli book ")}
    book["id"] = ok(ann, "AddressBook/set", create={"b": book})["created"]["b"]["id"]
    cal = {"name": unique("Cli cal ")}
    cal["id"] = ok(ann, "Calendar/set", create={"c": cal})["created"]["c"]["id"]
    out = tidings("share", "ann", "--address-book", book["name"], "--with", "ben", "--rights", "read,write",
                  data=server.data).stdout
    assert "ben may read,write" in out
    tidings("share", "ann", "--calendar", cal["name"], "--with", "ben", "--rights", "write", data=server.data)
    got = ok(ben, "AddressBook/get", ann.account_id, ids=[book["id"]])["list"][0]["myRights"]
    assert got == granted(BOOK_RIGHTS, "mayRead", "mayWrite")
    # mayWriteAll brings mayWriteOwn, mayUpdatePrivate and mayRSVP (the draft's MUST)
    assert ok(ben, "Calendar/get", ann.account_id, ids=[cal["id"]])["list"][0]["myRights"] == granted(
        CAL_RIGHTS, "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate", "mayRSVP")
    listed = tidings("share", "ann", data=server.data).stdout
    assert f"address book: {book['name']}\tben\tread,write" in listed
    assert f"calendar: {cal['name']}\tben\twrite,writeown,private,rsvp" in listed
    tidings("share", "ann", "--address-book", book["name"], "--with", "ben", "--revoke", data=server.data)
    tidings("share", "ann", "--calendar", cal["name"], "--with", "ben", "--revoke", data=server.data)
    assert ann.account_id not in ben.http.get("/.well-known/jmap").json()["accounts"]
    res = tidings("share", "ann", "--calendar", cal["name"], "--with", "ben", "--rights", "fly", data=server.data,
                  check=False)
    assert res.returncode == 1 and "unknown right" in res.stderr
    ok(ann, "AddressBook/set", destroy=[book["id"]])
    ok(ann, "Calendar/set", destroy=[cal["id"]])


def test_may_write_own_and_may_rsvp_as_the_draft_defines_them(users, calendars):
    ann, ben = users.ann, users.ben
    cals, _ = calendars
    ok(ann, "Calendar/set", update={cals["s"]: {"shareWith": {ben.account_id: granted(
        CAL_RIGHTS, "mayReadItems", "mayWriteOwn", "mayRSVP")}}})

    def person(who: str, *roles: str) -> dict:
        return {"@type": "Participant", "sendTo": {"imip": f"mailto:{who}@example.org"},
                "roles": dict.fromkeys(roles, True), "participationStatus": "needs-action"}

    res = ok(ann, "CalendarEvent/set", create={
        "anns": {**event(cals["s"], "Ann's meeting"), "participants": {"a": person("ann", "owner", "attendee"),
                                                                      "b": person("ben", "attendee")}},
        "nobody": event(cals["s"], "No owner")})
    anns, nobody = res["created"]["anns"]["id"], res["created"]["nobody"]["id"]
    res = ok(ben, "CalendarEvent/set", ann.account_id, create={
        "his": {**event(cals["s"], "Ben's"), "participants": {"b": person("ben", "owner")}},
        "not": {**event(cals["s"], "Ann's?"), "participants": {"a": person("ann", "owner")}}},
        update={nobody: {"title": "Ben took it"}, anns: {"title": "Hijack"}})
    assert "his" in res["created"] and nobody in res["updated"], res
    assert res["notCreated"]["not"]["type"] == "forbidden" and res["notUpdated"][anns]["type"] == "forbidden"
    # mayRSVP: his own participation, nothing else of ann's event
    res = ok(ben, "CalendarEvent/set", ann.account_id,
             update={anns: {"participants/b/participationStatus": "accepted"}})
    assert anns in res["updated"], res
    res = ok(ben, "CalendarEvent/set", ann.account_id,
             update={anns: {"participants/a/participationStatus": "declined"}})
    assert res["notUpdated"][anns]["type"] == "forbidden"
    got = ok(ann, "CalendarEvent/get", ids=[anns], properties=["participants"])["list"][0]["participants"]
    assert (got["b"]["participationStatus"], got["a"]["participationStatus"]) == ("accepted", "needs-action")
