"""Contacts (RFC 9610) against a live server: AddressBook/get, /changes, /set; ContactCard/get,
/changes, /query, /queryChanges, /set, /copy; JSContact validation; `tidings import
--address-book` with vCard 2.1/3/4 fixtures; the vCard download; vCard -> Card -> vCard round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.contacts.vcard import card_to_vcard, parse_vcards
from tests.conftest import CORE, Jmap, call_using, serve_users, tidings

CONTACTS = "urn:ietf:params:jmap:contacts"
USING = [CORE, CONTACTS]
FIXTURES = Path(__file__).parent / "fixtures" / "contacts"


@pytest.fixture(scope="module")
def cserver(tmp_path_factory):
    yield from serve_users(tmp_path_factory, "contacts", ("carl", "dora", "emil", "fay"), domain="example.com")


def call(c: Jmap, method: str, **args) -> tuple[str, dict]:
    return call_using(c, USING, method, **args)


def ok(c: Jmap, method: str, **args) -> dict:
    name, result = call(c, method, **args)
    assert name == method, result
    return result


def person(given: str, surname: str, **extra) -> dict:
    return {"addressBookIds": {"Bdefault": True}, "name": {"components": [
        {"kind": "given", "value": given}, {"kind": "surname", "value": surname}], "full": f"{given} {surname}"},
        **extra}


# ------------------------------------------------------------------------------ AddressBook
def test_session_and_default_address_book(cserver):
    c = Jmap(cserver, "carl", "pw")
    assert c.session["capabilities"][CONTACTS] == {}
    assert c.session["accounts"][c.account_id]["accountCapabilities"][CONTACTS] == {
        "maxAddressBooksPerCard": None, "mayCreateAddressBook": True}
    res = ok(c, "AddressBook/get", ids=None)
    assert res["list"] == [{"id": "Bdefault", "name": "Contacts", "description": None, "sortOrder": 0,
                            "isDefault": True, "isSubscribed": True, "shareWith": None,
                            "myRights": {"mayRead": True, "mayWrite": True, "mayAdmin": True, "mayDelete": False}}]
    # the default cannot be destroyed; a shareWith naming no principal is refused
    res = ok(c, "AddressBook/set", destroy=["Bdefault"], create={"s": {"name": "S", "shareWith": {"Ax": {}}}})
    assert res["notDestroyed"]["Bdefault"]["type"] == "forbidden"
    assert res["notCreated"]["s"]["properties"] == ["shareWith"]


def test_address_book_set_changes_and_default(cserver):
    c = Jmap(cserver, "dora", "pw")
    state = ok(c, "AddressBook/get", ids=[])["state"]
    res = ok(c, "AddressBook/set", create={"w": {"name": "Work", "sortOrder": 2}, "bad": {"name": ""}},
             update={"Bdefault": {"name": "Private"}}, onSuccessSetIsDefault="#w")
    assert res["notCreated"]["bad"]["properties"] == ["name"]
    assert res["updated"] == {"Bdefault": None}  # the default did not move: a create failed
    work = res["created"]["w"]["id"]
    # not every operation succeeded: the default stays
    assert ok(c, "AddressBook/get", ids=[work])["list"][0]["isDefault"] is False
    res = ok(c, "AddressBook/set", update={work: {"description": "office"}}, onSuccessSetIsDefault=work)
    assert res["updated"][work]["isDefault"] is True and res["updated"]["Bdefault"]["isDefault"] is False
    books = {b["id"]: b for b in ok(c, "AddressBook/get", ids=None)["list"]}
    assert books["Bdefault"]["name"] == "Private" and books["Bdefault"]["myRights"]["mayDelete"] is True
    assert books[work]["isDefault"] and books[work]["description"] == "office"
    ch = ok(c, "AddressBook/changes", sinceState=state)
    assert set(ch["created"]) | set(ch["updated"]) == {work, "Bdefault"}
    # a book with cards: addressBookHasContents unless onDestroyRemoveContents
    card = ok(c, "ContactCard/set", create={"x": person("Only", "Here", addressBookIds={"Bdefault": True})})
    card_id = card["created"]["x"]["id"]
    both = ok(c, "ContactCard/set", create={"y": person("In", "Both", addressBookIds={"Bdefault": True,
                                                                                       work: True})})
    both_id = both["created"]["y"]["id"]
    res = ok(c, "AddressBook/set", destroy=["Bdefault"])
    assert res["notDestroyed"]["Bdefault"]["type"] == "addressBookHasContents"
    res = ok(c, "AddressBook/set", destroy=["Bdefault"], onDestroyRemoveContents=True)
    assert res["destroyed"] == ["Bdefault"]
    got = ok(c, "ContactCard/get", ids=[card_id, both_id])
    assert got["notFound"] == [card_id]
    assert got["list"][0]["addressBookIds"] == {work: True}
    assert [b["id"] for b in ok(c, "AddressBook/get", ids=None)["list"]] == [work]


# ------------------------------------------------------------------------------ ContactCard
def test_card_set_get_changes_and_server_set_properties(cserver):
    c = Jmap(cserver, "emil", "pw")
    state = ok(c, "ContactCard/get", ids=[])["state"]
    res = ok(c, "ContactCard/set", create={"a": person("Ada", "Lovelace", emails={"e1": {"address": "ada@x.org"}})})
    created = res["created"]["a"]
    assert created["@type"] == "Card" and created["version"] == "1.0" and created["uid"].startswith("urn:uuid:")
    assert created["created"].endswith("Z") and created["updated"].endswith("Z")
    cid = created["id"]
    got = ok(c, "ContactCard/get", ids=[cid])["list"][0]
    assert got["emails"] == {"e1": {"address": "ada@x.org"}} and "phones" not in got  # no nulls
    assert ok(c, "ContactCard/get", ids=[cid], properties=["uid"])["list"] == [{"id": cid, "uid": created["uid"]}]
    res = ok(c, "ContactCard/set", update={cid: {"emails/e2": {"address": "ada@y.org", "pref": 1},
                                                 "updated": "2030-01-01T00:00:00Z"}})
    assert res["updated"][cid] is None  # the client set updated itself
    res = ok(c, "ContactCard/set", update={cid: {"notes": {"n1": {"note": "math"}}}})
    assert res["updated"][cid]["updated"] != "2030-01-01T00:00:00Z"
    ch = ok(c, "ContactCard/changes", sinceState=state)
    assert ch["created"] == [cid]
    res = ok(c, "ContactCard/set", destroy=[cid])
    assert res["destroyed"] == [cid]
    assert ok(c, "ContactCard/changes", sinceState=state)["created"] == []


def test_card_validation_names_every_bad_path(cserver):
    c = Jmap(cserver, "emil", "pw")
    res = ok(c, "ContactCard/set", create={
        "bad": {"addressBookIds": {"Bnope": True}, "@type": "Contact", "version": "2.0",
                "emails": {"e1": {"adress": "x"}, "e2": {"address": 5, "pref": 101}, "e/3": {"address": "a@b"}},
                "phones": {"p1": {"number": "1", "features": {"mobile": False}}},
                "name": {"components": [{"kind": "nick", "value": "x"}, {"value": "y"}]},
                "anniversaries": {"b": {"kind": "birth", "date": {"month": 13}}},
                "kind": "robot", "unknownThing": 1, "example.com:vendor": {"any": "thing"}},
        "nobook": {"name": {"full": "No Book"}},
    })
    bad = res["notCreated"]["bad"]
    assert bad["type"] == "invalidProperties"
    assert set(bad["properties"]) == {
        "addressBookIds/Bnope", "@type", "version", "emails/e1/adress", "emails/e1/address", "emails/e2/address",
        "emails/e2/pref", "emails/e~13", "phones/p1/features/mobile", "name/components/0/kind", "name/components/1/kind",
        "anniversaries/b/date/month", "kind", "unknownThing"}
    assert "emails/e1/address: required" in bad["description"]
    assert res["notCreated"]["nobook"]["properties"] == ["addressBookIds"]
    # an update is validated on the card it would leave
    cid = ok(c, "ContactCard/set", create={"g": person("Grace", "Hopper")})["created"]["g"]["id"]
    res = ok(c, "ContactCard/set", update={cid: {"emails": {"e1": {"label": "no address"}}, "addressBookIds": {}}})
    assert set(res["notUpdated"][cid]["properties"]) == {"emails/e1/address", "addressBookIds"}
    res = ok(c, "ContactCard/set", update={cid: {"phones/p1": {"number": "1"}}})  # no phones to patch into
    assert res["notUpdated"][cid]["type"] == "invalidPatch"
    res = ok(c, "ContactCard/set", update={cid: {"name/components/0/value": "x"}})
    assert res["notUpdated"][cid]["type"] == "invalidPatch"  # a pointer into an array


def test_query_filters_and_sorts(cserver):
    c = Jmap(cserver, "fay", "pw")
    book = ok(c, "AddressBook/set", create={"o": {"name": "Other"}})["created"]["o"]["id"]
    cards = {
        "a": person("Anna", "Zeller", emails={"e1": {"address": "anna@zeller.example", "label": "Büro"}},
                    phones={"p1": {"number": "+1 555-0100"}}, nicknames={"k": {"name": "Annie"}},
                    organizations={"o": {"name": "Zeller & Söhne"}}, notes={"n": {"note": "Met at the fair"}},
                    onlineServices={"s": {"service": "Mastodon", "user": "@anna@social.example"}},
                    addresses={"a": {"components": [{"kind": "locality", "value": "München"}]}},
                    created="2020-01-01T00:00:00Z", uid="uid-anna"),
        "b": person("Bert", "Yilmaz", emails={"e1": {"address": "bert@example.org"}},
                    name={"components": [{"kind": "given", "value": "Bert"}, {"kind": "surname", "value": "Yilmaz"},
                                         {"kind": "surname2", "value": "Abel"}]},
                    created="2022-06-01T00:00:00Z", uid="uid-bert"),
        "c": {**person("Carla", "Xu", created="2024-01-01T00:00:00Z"), "addressBookIds": {book: True}},
        "g": {"addressBookIds": {"Bdefault": True}, "kind": "group", "name": {"full": "The A-Team"},
              "members": {"uid-anna": True, "uid-bert": True}, "created": "2021-01-01T00:00:00Z"},
    }
    res = ok(c, "ContactCard/set", create=cards)
    ids = {k: v["id"] for k, v in res["created"].items()}
    state = ok(c, "ContactCard/query")["queryState"]

    def q(flt, sort=None):
        args = {"filter": flt}
        if sort:
            args["sort"] = sort
        return ok(c, "ContactCard/query", **args)["ids"]

    def names(found):
        return sorted(k for k, v in ids.items() if v in found)

    assert names(q({"inAddressBook": book})) == ["c"]
    assert names(q({"uid": "uid-bert"})) == ["b"]
    assert names(q({"hasMember": "uid-anna"})) == ["g"]
    assert names(q({"kind": "group"})) == ["g"]
    assert names(q({"kind": "individual"})) == ["a", "b", "c"]
    assert names(q({"createdBefore": "2022-06-01T00:00:00Z"})) == ["a", "g"]
    assert names(q({"createdAfter": "2022-06-01T00:00:00Z"})) == ["b", "c"]
    assert names(q({"updatedAfter": "2000-01-01T00:00:00Z"})) == ["a", "b", "c", "g"]
    assert names(q({"updatedBefore": "2000-01-01T00:00:00Z"})) == []
    assert names(q({"text": "münchen"})) == ["a"]
    assert names(q({"text": "annie fair"})) == ["a"]
    assert names(q({"text": '"fair the"'})) == []  # a phrase: the words adjacent, in order
    assert names(q({"text": '"at the fair"'})) == ["a"]
    assert names(q({"name": "xu"})) == ["c"]
    assert names(q({"name": "a-team"})) == ["g"]  # name.full
    assert names(q({"name/given": "bert"})) == ["b"]
    assert names(q({"name/surname": "zeller"})) == ["a"]
    assert names(q({"name/surname2": "abel"})) == ["b"]
    assert names(q({"nickName": "annie"})) == ["a"]
    assert names(q({"organization": "söhne"})) == ["a"]
    assert names(q({"email": "anna@zeller.example"})) == ["a"]
    assert names(q({"email": "büro"})) == ["a"]  # the label
    assert names(q({"phone": "5550100"})) == ["a"]
    assert names(q({"phone": "555-0100"})) == ["a"]
    assert names(q({"onlineService": "mastodon"})) == ["a"]
    assert names(q({"address": "münchen"})) == ["a"]
    assert names(q({"note": "fair"})) == ["a"]
    assert names(q({"operator": "NOT", "conditions": [{"kind": "group"}, {"inAddressBook": book}]})) == ["a", "b"]
    # sorts
    assert q(None, [{"property": "created"}]) == [ids[k] for k in ("a", "g", "b", "c")]
    assert q(None, [{"property": "created", "isAscending": False}]) == [ids[k] for k in ("c", "b", "g", "a")]
    assert q({"kind": "individual"}, [{"property": "name/surname"}]) == [ids[k] for k in ("c", "b", "a")]
    assert q({"kind": "individual"}, [{"property": "name/given"}]) == [ids[k] for k in ("a", "b", "c")]
    assert q({"kind": "individual"}, [{"property": "name/surname2"}, {"property": "created"}])[-1] == ids["b"]
    assert len(q(None, [{"property": "updated"}])) == 4
    name, err = call(c, "ContactCard/query", filter={"colour": "red"})
    assert name == "error" and err["type"] == "unsupportedFilter"
    name, err = call(c, "ContactCard/query", sort=[{"property": "nickName"}])
    assert name == "error" and err["type"] == "unsupportedSort"
    # queryChanges
    ok(c, "ContactCard/set", update={ids["b"]: {"name/components": [{"kind": "surname", "value": "Aaron"}]}},
       destroy=[ids["c"]])
    res = ok(c, "ContactCard/queryChanges", sinceQueryState=state, filter={"kind": "individual"},
             sort=[{"property": "name/surname"}])
    assert set(res["removed"]) == {ids["b"], ids["c"]}
    assert res["added"] == [{"id": ids["b"], "index": 0}]


def test_copy_between_accounts_needs_access(cserver):
    c = Jmap(cserver, "carl", "pw")
    d = Jmap(cserver, "dora", "pw")
    cid = ok(c, "ContactCard/set", create={"x": person("Copy", "Me")})["created"]["x"]["id"]
    name, err = call(c, "ContactCard/copy", fromAccountId=d.account_id, create={"k": {"id": cid}})
    assert name == "error" and err["type"] == "fromAccountNotFound"  # address books are not shared
    name, err = call(c, "ContactCard/copy", fromAccountId=c.account_id, create={"k": {"id": cid}})
    assert name == "error" and err["type"] == "invalidArguments"


# ------------------------------------------------------------------------------ vCard
@pytest.mark.parametrize("fixture", ["v3-apple.vcf", "v4-sabre.vcf", "android-21.vcf"])
def test_round_trip_vcard_card_vcard(fixture):
    parsed = list(parse_vcards((FIXTURES / fixture).read_bytes()))
    assert parsed and all(p.error is None for p in parsed)
    for p in parsed:
        text = card_to_vcard(p.card)
        assert text.startswith("BEGIN:VCARD\r\nVERSION:4.0\r\n")
        assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
        again = list(parse_vcards(text.encode()))
        assert len(again) == 1 and again[0].card == p.card
        assert card_to_vcard(again[0].card) == text


def test_vcard_mapping_details():
    apple, asa, group = (p.card for p in parse_vcards((FIXTURES / "v3-apple.vcf").read_bytes()))
    assert apple["name"]["components"][:2] == [{"kind": "title", "value": "Mr."}, {"kind": "given", "value": "Johnny"}]
    assert apple["emails"]["e1"] == {"address": "johnny@apple.example", "contexts": {"work": True}, "pref": 1}
    assert apple["phones"]["p1"]["features"] == {"voice": True, "mobile": True}
    assert apple["notes"]["n1"]["note"].startswith("Met at WWDC, June 2023.\nLikes apples; oranges less.")
    assert "across several physical lines" in apple["notes"]["n1"]["note"]  # folded line
    assert apple["organizations"]["o1"] == {"name": "Apple Inc.", "units": [{"name": "Engineering"},
                                                                             {"name": "Core OS"}]}
    assert apple["anniversaries"]["d1"]["date"] == {"@type": "PartialDate", "year": 1976, "month": 4, "day": 1}
    assert apple["updated"] == "2023-11-02T09:15:30Z" and apple["keywords"] == {"Work": True, "VIP": True}
    assert asa["notes"]["n1"]["note"] == "Fjellfører og skiløper\nandre linje"  # QUOTED-PRINTABLE in v3
    assert group["kind"] == "group" and len(group["members"]) == 2
    (android,) = (p.card for p in parse_vcards((FIXTURES / "android-21.vcf").read_bytes()))
    assert android["name"]["full"] == "Jürgen Müller"
    assert android["notes"]["n1"]["note"] == "Ein langer Kommentar mit überlänge, der auf mehrere Zeilen verteilt ist."
    assert android["uid"] == next(parse_vcards((FIXTURES / "android-21.vcf").read_bytes())).card["uid"]
    sabre = next(parse_vcards((FIXTURES / "v4-sabre.vcf").read_bytes())).card
    assert sabre["addresses"]["a1"]["full"] == "Friedrichstraße 123\nBerlin"
    assert sabre["phones"]["p2"]["number"] == "tel:+49-30-1234567;ext=102"
    assert sabre["organizations"]["o1"]["name"] == "Firma GmbH, Berlin"


def test_import_cli_and_vcard_download(cserver):
    data = cserver.data
    r = tidings("import", "--user", "emil", "--address-book", "Friends", str(FIXTURES / "v3-apple.vcf"),
                str(FIXTURES / "v4-sabre.vcf"), str(FIXTURES / "android-21.vcf"), data=data)
    assert "7 cards imported, 0 updated" in r.stdout and "created address book 'Friends'" in r.stderr
    r = tidings("import", "--user", "emil", "--address-book", "friends", str(FIXTURES / "v3-apple.vcf"), data=data)
    assert "0 cards imported, 3 updated" in r.stdout  # by UID: nothing twice
    r = tidings("import", "--user", "emil", "--address-book", "Friends", str(FIXTURES / "malformed.vcf"),
                data=data, check=False)
    assert r.returncode == 1
    assert "2 cards imported" in r.stdout and "3 failed" in r.stdout
    assert "malformed.vcf:7 (Future Card): VERSION '5.0'" in r.stdout
    assert "line 14 is not a vCard content line" in r.stdout and "no END:VCARD" in r.stdout
    c = Jmap(cserver, "emil", "pw")
    book = next(b for b in ok(c, "AddressBook/get", ids=None)["list"] if b["name"] == "Friends")
    found = ok(c, "ContactCard/query", filter={"inAddressBook": book["id"]})["ids"]
    assert len(found) == 9
    (jm,) = ok(c, "ContactCard/query", filter={"text": "Lüdenscheidt"})["ids"]
    assert ok(c, "ContactCard/query", filter={"name": "山田"})["ids"]
    assert ok(c, "ContactCard/query", filter={"phone": "+49 170 1234567"})["ids"]
    # download: one card, and a whole address book
    r = c.http.get(f"/jmap/vcard/{c.account_id}/{jm}")
    assert r.status_code == 200 and r.headers["content-type"] == "text/vcard; charset=utf-8"
    assert "FN:Dr. Jürgen Müller-Lüdenscheidt\r\n" in r.text
    card = ok(c, "ContactCard/get", ids=[jm])["list"][0]
    parsed = next(parse_vcards(r.content)).card
    assert parsed == {k: v for k, v in card.items() if k not in ("id", "addressBookIds", "created")}
    r = c.http.get(f"/jmap/vcard/{c.account_id}/{book['id']}")
    assert r.status_code == 200 and r.text.count("BEGIN:VCARD") == 9
    assert c.http.get(f"/jmap/vcard/{c.account_id}/Cnone").status_code == 404
    other = Jmap(cserver, "fay", "pw")
    assert other.http.get(f"/jmap/vcard/{c.account_id}/{jm}").status_code == 404
