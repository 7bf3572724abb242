"""The parsed header forms of RFC 8621 §4.1.2 (asAddresses, asGroupedAddresses, asMessageIds, asDate,
asURLs) on what real mail holds: lenient where the reading is unambiguous, strict (null) where it is
not (the exactness cases, class 6).  Unit tests on the parsing functions, each input standing for its
class, then end to end through a real server (Email/import, Email/get, Email/query)."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.mail.headers import (
    parse_addresses,
    parse_date,
    parse_grouped_addresses,
    parse_message_ids,
    parse_text,
    parse_urls,
)
from tests.conftest import Jmap, unique


def box(email: str, name: str | None = None) -> dict:
    return {"name": name, "email": email}


# ------------------------------------------------------------------ addresses: a mailbox ends at its address

@pytest.mark.parametrize("value, expected", [
    ("Joe <joe@example.org> <ann@example.org>", [box("joe@example.org", "Joe"), box("ann@example.org")]),
    ("Joe <joe@example.org> Ann <ann@example.org>",
     [box("joe@example.org", "Joe"), box("ann@example.org", "Ann")]),
    ('"Joe" <joe@example.org> "Ann" <ann@example.org>',
     [box("joe@example.org", "Joe"), box("ann@example.org", "Ann")]),
    ("Joe <a@example.org> b@example.org", [box("a@example.org", "Joe"), box("b@example.org")]),
    ("a@example.org Joe <b@example.org>", [box("a@example.org"), box("b@example.org", "Joe")]),
    ("a@example.org b@example.org", [box("a@example.org"), box("b@example.org")]),
    ("a@example.org (Ann) b@example.org (Bob)", [box("a@example.org", "Ann"), box("b@example.org", "Bob")]),
])
def test_what_follows_a_complete_address_starts_the_next_mailbox_even_without_a_comma(value, expected):
    assert parse_addresses(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("Joe Smith joe@example.org", [box("joe@example.org", "Joe Smith")]),  # a name without brackets
    ("joe@example.org Joe Smith", [box("joe@example.org", "Joe Smith")]),  # words after it, no address
    ("<joe@example.org> Joe", [box("joe@example.org", "Joe")]),
    ("joe @ example.org (Joe)", [box("joe@example.org", "Joe")]),  # obsolete CFWS in the addr-spec
    ("joe@example.org <joe@example.org>", [box("joe@example.org", "joe@example.org")]),
    ("John Q. Public <john@example.org>", [box("john@example.org", "John Q. Public")]),
])
def test_words_that_lead_to_no_other_address_stay_with_their_mailbox(value, expected):
    assert parse_addresses(value) == expected


def test_white_space_inside_a_quoted_local_part_is_kept():
    assert parse_addresses('Joe <"joe smith"@example.org>') == [box('"joe smith"@example.org', "Joe")]
    assert parse_addresses('Joe < "joe smith" @ example.org (home) >') == [box('"joe smith"@example.org', "Joe")]
    assert parse_addresses('"joe smith"@example.org') == [box('"joe smith"@example.org')]
    assert parse_message_ids('<"a b"@x.example> <c (comment) @ d.example>') == ['"a b"@x.example', "c@d.example"]


@pytest.mark.parametrize("value, expected", [
    ("=?utf-8?Q?Smith,_Joe?= <j@example.org>", [box("j@example.org", "Smith, Joe")]),
    ("=?utf-8?q?Team:_Sales?= <sales@example.org>", [box("sales@example.org", "Team: Sales")]),
    ("=?utf-8?q?a;b?= <ab@example.org>, c@example.org", [box("ab@example.org", "a;b"), box("c@example.org")]),
])
def test_an_encoded_word_with_list_syntax_inside_is_one_word(value, expected):
    assert parse_addresses(value) == expected
    assert parse_grouped_addresses(value)[0]["name"] is None  # no group


@pytest.mark.parametrize("value, expected", [
    ('"unterminated <joe@example.org>, ann@example.org',
     [box("joe@example.org", "unterminated"), box("ann@example.org")]),
    ("Joe (Work <joe@example.org>", [box("joe@example.org", "Joe (Work")]),
    ('Jo\\"e <a@example.org>', [box("a@example.org", 'Jo\\"e')]),
    ("Joe (Work <joe@example.org>, Ann (Home) <ann@example.org>",
     [box("joe@example.org", "Joe (Work"), box("ann@example.org", "Ann")]),
    ("Joe <joe@example.org, ann@example.org", [box("joe@example.org", "Joe"), box("ann@example.org")]),
])
def test_an_unterminated_quote_comment_or_bracket_does_not_swallow_the_rest_of_the_field(value, expected):
    assert parse_addresses(value) == expected


@pytest.mark.parametrize("value", [
    '"unterminated <joe@example.org>, ann@example.org', "Joe (Work <joe@example.org>", 'Jo\\"e <a@example.org>',
    "Joe <joe@example.org, ann@example.org", "a@x.org b@x.org, <c@x.org> <d@x.org>", '"a <b" c@x.org',
    "Joe <<joe@example.org>>", "(((a@x.org", '"""a@x.org',
])
def test_an_email_never_holds_list_syntax_or_white_space(value):
    for address in parse_addresses(value):
        assert not any(c in address["email"] for c in "<>, ("), address


def test_a_doubled_angle_bracket_is_one_address():
    assert parse_addresses("Joe <<joe@example.org>>") == [box("joe@example.org", "Joe")]


def test_a_group_whose_semicolon_was_lost_closes_when_the_next_group_opens():
    assert parse_grouped_addresses("G1: a@x.org, G2: b@x.org;") == [
        {"name": "G1", "addresses": [box("a@x.org")]},
        {"name": "G2", "addresses": [box("b@x.org")]},
    ]
    assert parse_grouped_addresses("G1: Joe <a@x.org> G2: b@x.org; c@x.org") == [
        {"name": "G1", "addresses": [box("a@x.org", "Joe")]},
        {"name": "G2", "addresses": [box("b@x.org")]},
        {"name": None, "addresses": [box("c@x.org")]},
    ]


def test_the_space_between_two_quoted_strings_is_kept_between_adjacent_encoded_words_dropped():
    quoted = '"=?utf-8?q?Andr=C3=A9?=" "=?utf-8?q?Pirard?=" <a@example.org>'
    assert parse_addresses(quoted) == [box("a@example.org", "André Pirard")]
    bare = "=?utf-8?q?Andr=C3=A9?= =?utf-8?q?_Pirard?= <a@example.org>"  # RFC 2047 §6.2
    assert parse_addresses(bare) == [box("a@example.org", "André Pirard")]


@pytest.mark.parametrize("encoded", ["=?utf-8?q?a=C2=85b?=", "=?utf-8?q?a=C2=9Fb?=", "=?utf-8?q?a=01b?=",
                                     "=?utf-8?q?a=7Fb?="])
def test_control_characters_from_encoded_words_are_dropped_c0_and_c1(encoded):
    # §4.1.2.2: "control characters encoded per RFC 2047 are dropped"; Unicode's controls (Cc) are
    # C0, DEL and C1 (U+0080-U+009F)
    assert parse_text(encoded) == "ab"
    assert parse_addresses(f"{encoded} <a@example.org>") == [box("a@example.org", "ab")]


def test_the_specification_example_still_parses():
    value = ('"  James Smythe" <james@example.com>, Friends:\r\n  jane@example.com, '
             "=?UTF-8?Q?John_Sm=C3=AEth?=\r\n  <john@example.com>;")
    assert parse_grouped_addresses(value) == [
        {"name": None, "addresses": [box("james@example.com", "James Smythe")]},
        {"name": "Friends", "addresses": [box("jane@example.com"), box("john@example.com", "John Smîth")]},
    ]


# ------------------------------------------------------------------------------------ URLs

@pytest.mark.parametrize("value, expected", [
    ("<https://example.org/a(b>, <mailto:unsub@example.org>", ["https://example.org/a(b", "mailto:unsub@example.org"]),
    ("<https://en.example.org/wiki/Foo_(bar)>", ["https://en.example.org/wiki/Foo_(bar)"]),
    ("<https://example.org/u?id=(abc)>, <mailto:u@example.org>",
     ["https://example.org/u?id=(abc)", "mailto:u@example.org"]),
    ("<mailto:a@example.org> (see also <https://example.org/help>)", ["mailto:a@example.org"]),
    ("(Use this) <mailto:a@example.org?subject=help>", ["mailto:a@example.org?subject=help"]),
    ("<https://example.org/\r\n very/long>", ["https://example.org/very/long"]),
    ("no url here (nor <here>)", None),
])
def test_parentheses_inside_a_url_are_url_characters_comments_outside_are_dropped(value, expected):
    assert parse_urls(value) == expected


# ------------------------------------------------------------------------------------ dates

@pytest.mark.parametrize("value, expected", [
    ("Mon, 3 Feb 2020 08:59:00 +2400", "2020-02-02T08:59:00Z"),
    # +99:59 is 4 days 3 h 59 min east of UT: 08:59 local is 05:00 UT four days before
    ("Mon, 3 Feb 2020 08:59:00 +9959", "2020-01-30T05:00:00Z"),
    ("Mon, 3 Feb 2020 08:59:00 -9959", "2020-02-07T12:58:00Z"),
    ("Mon, 3 Feb 2020 08:59:00 -2400", "2020-02-04T08:59:00Z"),
    ("Mon, 3 Feb 2020 08:59:00 +2359", "2020-02-03T08:59:00+23:59"),  # still an RFC 3339 offset: kept
])
def test_a_zone_of_24_hours_or_more_gives_the_same_instant_in_utc(value, expected):
    assert parse_date(value) == expected


@pytest.mark.parametrize("year, expected", [
    ("00", 2000), ("49", 2049), ("50", 1950), ("68", 1968), ("69", 1969), ("99", 1999),
    ("100", 2000), ("120", 2020), ("999", 2899), ("2020", 2020),
])
def test_two_and_three_digit_years_are_read_as_rfc_5322_section_4_3_says(year, expected):
    assert parse_date(f"3 Feb {year} 08:59:00 +0000") == f"{expected:04d}-02-03T08:59:00Z"


@pytest.mark.parametrize("value, expected", [
    ("Monday, February 3, 2020 8:59 PM", "2020-02-03T20:59:00Z"),  # no zone: unknown, as any date without one
    ("Mon, 3 Feb 2020 12:30:00 AM +0000", "2020-02-03T00:30:00Z"),
    ("Mon, 3 Feb 2020 12:30:00 PM +0000", "2020-02-03T12:30:00Z"),
    ("Mon, 3 Feb 2020 8:59PM -0500", "2020-02-03T20:59:00-05:00"),
    ("Mon, 3 Feb 2020 08:59:00 +05:30", "2020-02-03T08:59:00+05:30"),
    ("Mon, 3 Feb 2020 08:59:00 +01:00", "2020-02-03T08:59:00+01:00"),
    ("Mon, 3 Feb 2020 08:59:00 GMT+0100", "2020-02-03T08:59:00+01:00"),
    ("Mon, 3 Feb 2020 08:59:00 CET +0100", "2020-02-03T08:59:00+01:00"),  # the numeric zone is exact
    ("Mon, 3 Feb 2020 08:59:00 GMT +0100", "2020-02-03T08:59:00+01:00"),
    ("Mon, 3 Feb 2020 08:59:00+0100", "2020-02-03T08:59:00+01:00"),
    ("Mon, 27 May 2002 10:28:3 +0200", "2002-05-27T10:28:03+02:00"),  # one-digit seconds
    # the line after a damaged fold is no zone: text after a complete date-time, the zone unknown
    ("Thu, 18 Jul 2002 21:16:12\r\n    version=2.40", "2002-07-18T21:16:12Z"),
])
def test_am_pm_and_colon_zones_are_understood(value, expected):
    assert parse_date(value) == expected


@pytest.mark.parametrize("value", [
    "Mon, 3 Feb 2020 08:59:00 +1",  # hours or minutes?
    "Mon, 3 Feb 2020 08:59:00 +05",
    "Fri, 23 Aug 2002 22:46:34 GMT+1",  # one hour east, or POSIX's one hour west?
    "Fri, 02 Aug 2002 23:37:59 0530",  # no sign
    "Sun, 25 Aug 2002 19:21:44 01800",
    "Mon, 3 Feb 2020 08:59:00 +-0500",
    "Mon, 3 Feb 2020 08:59:00 +0060",  # minutes 00-59
    "Mon, 3 Feb 2020 08:59:00 0100",  # no sign: a zone, or a year?
    "Mon, 3 Feb 2020 08:59:00 2020",
    "Mon, 3 Feb 2020 13:00 PM +0000",  # 13 PM
    "Mon, 3 Feb 2020 00:30 AM +0000",
    "Mon, 3 Feb 2020 08:59:00 +0000 PM",  # an AM/PM after the zone
    "Mon, 3 Feb 2020 08:59:00 +0000 -0500",  # two zones
    "Mon, 3 Feb 2020 08:59:00.5 +0000",
])
def test_a_token_that_would_change_the_instant_is_understood_or_the_date_is_null(value):
    assert parse_date(value) is None


@pytest.mark.parametrize("value, expected", [
    ("Mon, 3 Feb 2020 08:59:00 EST", "2020-02-03T08:59:00-05:00"),
    ("Mon, 3 Feb 2020 08:59:00 PDT", "2020-02-03T08:59:00-07:00"),
    ("Mon, 3 Feb 2020 08:59:00 UT", "2020-02-03T08:59:00Z"),
    ("Mon, 3 Feb 2020 08:59:00 GMT", "2020-02-03T08:59:00Z"),
    ("Mon, 3 Feb 2020 08:59:00 UTC", "2020-02-03T08:59:00Z"),
    ("Mon, 3 Feb 2020 08:59:00 Z", "2020-02-03T08:59:00Z"),
    ("Mon, 3 Feb 2020 08:59:00 A", "2020-02-03T08:59:00Z"),  # §4.3: military letters are unknown
    ("Mon, 3 Feb 2020 08:59:00 CET", "2020-02-03T08:59:00Z"),  # §4.3: an unknown name is -0000
    ("Mon, 3 Feb 2020 08:59:00 -0000", "2020-02-03T08:59:00Z"),
    ("Mon, 3 Feb 2020 08:59 +0100", "2020-02-03T08:59:00+01:00"),
    ("3 Feb 2020 08:59:00 +0100", "2020-02-03T08:59:00+01:00"),
    ("Fri, 3 Feb 2020 08:59:00 +0100", "2020-02-03T08:59:00+01:00"),  # a wrong day-of-week
    ("Mon, 3 Feb 2020 08:59:00 +0100 and some text", "2020-02-03T08:59:00+01:00"),
    ("Mon, 3 Feb 2020 08:59:00 -0800 PST", "2020-02-03T08:59:00-08:00"),
    ("Mon, 3 Feb 2020 08:59:00 +0000 (UTC)", "2020-02-03T08:59:00Z"),
    ("Mon, 3 Feb 2020 08:59:00 +0000 (UTC", "2020-02-03T08:59:00Z"),
    ("Mon, 3 Feb 2020 08:59:00", "2020-02-03T08:59:00Z"),
    ("Mon Feb  3 08:59:00 2020", "2020-02-03T08:59:00Z"),
    ("Mon Feb 3 08:59:00 UTC 2020", "2020-02-03T08:59:00Z"),
    ("03-Feb-2020 08:59:00 +0000", "2020-02-03T08:59:00Z"),
    ("Monday, 03-Feb-20 08:59:00 GMT", "2020-02-03T08:59:00Z"),
    ("3 February 2020 08:59:00 +0000", "2020-02-03T08:59:00Z"),
    ("Mon, 3 Feb 2020 08:59:60 +0000", "2020-02-03T08:59:59Z"),  # a leap second
    ("Mon, 3 Feb 2020 08.59.00 +0000", "2020-02-03T08:59:00Z"),
    ("Tue, 10 Jul 2018 11:03:11 +1000 (AEST)", "2018-07-10T11:03:11+10:00"),
    ("Mon, 1 Jan 2024 10:00:00 -0930 (weird)", "2024-01-01T10:00:00-09:30"),
])
def test_forms_that_were_accepted_stay_accepted(value, expected):
    assert parse_date(value) == expected


@pytest.mark.parametrize("value", [
    "30 Feb 2020 08:59:00 +0000", "32 Jan 2020 08:59:00 +0000", "3 Feb 2020 24:00:00 +0000",
    "3 Feb 2020 08:60:00 +0000", "3 Feb 2020", "garbage", "", "99 Foo 99999 99:99:99", "2020-02-03T08:59:00Z",
])
def test_what_is_no_date_is_null(value):
    assert parse_date(value) is None


@pytest.mark.parametrize("value", [
    "Mon, 3 Feb 2020 08:59:00 +9959", "Mon, 3 Feb 2020 08:59:00 -9959", "1 Jan 0001 00:00:00 +0100",
    "1 Jan 0001 00:00:00 +2400", "31 Dec 9999 23:59:59 -2400", "31 Dec 9999 23:59:59 -0100",
    "Mon, 3 Feb 2020 08:59:00 +0030", "Mon, 3 Feb 2020 08:59:00 -0000",
])
def test_every_date_given_is_one_fromisoformat_reads_with_an_rfc_3339_offset(value):
    got = parse_date(value)
    if got is None:
        return  # out of the datetime range after moving to UT: no date, never a broken one
    parsed = datetime.fromisoformat(got.replace("Z", "+00:00"))
    assert abs(parsed.utcoffset().total_seconds()) < 24 * 3600
    assert got.endswith("Z") or got[-6] in "+-" and got[-3] == ":"


# ------------------------------------------------------------------------- end to end

def get(client: Jmap, email_id: str, properties: list[str]) -> dict:
    res = client.ok("Email/get", ids=[email_id], properties=properties)
    assert res["notFound"] == [], res
    return res["list"][0]


def message(date: str, **fields: str) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return (f"Date: {date}\r\nMessage-ID: <{unique()}@example.org>\r\n{head}\r\nbody\r\n").encode()


def test_email_get_reads_addresses_urls_and_dates_as_the_unit_rules_say(alice):
    raw = message(
        "Mon, 3 Feb 2020 08:59:00 +05:30",
        From="=?utf-8?Q?Smith,_Joe?= <j@example.org>",
        To='Joe <joe@example.org> Ann <ann@example.org> a@example.org b@example.org',
        Cc='"unterminated <c@example.org>, d@example.org',
        **{"Reply-To": 'Joe <"joe smith"@example.org>',
           "List-Unsubscribe": "<https://example.org/u?id=(abc)>, <mailto:u@example.org>",
           "Subject": "forms"},
    )
    email_id = alice.import_message(raw)["id"]
    email = get(alice, email_id, ["from", "to", "cc", "replyTo", "sentAt", "header:List-Unsubscribe:asURLs",
                                  "header:To:asGroupedAddresses"])
    assert email["from"] == [box("j@example.org", "Smith, Joe")]
    assert email["to"] == [box("joe@example.org", "Joe"), box("ann@example.org", "Ann"),
                           box("a@example.org"), box("b@example.org")]
    assert email["header:To:asGroupedAddresses"] == [{"name": None, "addresses": email["to"]}]
    assert email["cc"] == [box("c@example.org", "unterminated"), box("d@example.org")]
    assert email["replyTo"] == [box('"joe smith"@example.org', "Joe")]
    assert email["sentAt"] == "2020-02-03T08:59:00+05:30"
    assert email["header:List-Unsubscribe:asURLs"] == ["https://example.org/u?id=(abc)", "mailto:u@example.org"]


def test_email_query_sorts_a_date_with_a_99_hour_zone_by_its_real_instant(alice):
    mailbox = alice.ok("Mailbox/set", create={"m": {"name": f"dates {unique()}"}})["created"]["m"]["id"]
    dates = {
        "early": "Tue, 28 Jan 2020 12:00:00 +0000",
        "far-east": "Mon, 3 Feb 2020 08:59:00 +9959",  # 2020-01-30T05:00:00Z
        "middle": "Sat, 1 Feb 2020 12:00:00 +0000",
        "day-ahead": "Mon, 3 Feb 2020 08:59:00 +2400",  # 2020-02-02T08:59:00Z
        "late": "Mon, 3 Feb 2020 12:00:00 +0000",
    }
    ids = {key: alice.import_message(message(date, Subject=key), mailbox)["id"] for key, date in dates.items()}
    got = {key: get(alice, email_id, ["sentAt"])["sentAt"] for key, email_id in ids.items()}
    assert got["far-east"] == "2020-01-30T05:00:00Z"
    assert got["day-ahead"] == "2020-02-02T08:59:00Z"
    res = alice.ok("Email/query", filter={"inMailbox": mailbox}, sort=[{"property": "sentAt", "isAscending": True}])
    by_id = {email_id: key for key, email_id in ids.items()}
    assert [by_id[i] for i in res["ids"]] == ["early", "far-east", "middle", "day-ahead", "late"]
