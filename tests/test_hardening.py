"""Bad input gets a clear error and changes nothing (issue 9 hardening; cases of
../shared/cases/operations/README.md)."""

from __future__ import annotations

import pytest

from tests.conftest import unique


@pytest.mark.parametrize("prop, value", [
    # o04: an email that is not one addr-spec would be written as a second recipient
    ("to", [{"name": "Bob", "email": "a@b.c>, <evil@x.y"}]),
    ("to", [{"name": "Bob", "email": "a@b.c\r\nBcc: evil@x.y"}]),
    ("cc", [{"email": "two@x.y three@x.y"}]),
    ("from", [{"email": ""}]),
    ("bcc", [{"name": "Eve\r\nBcc: evil@x.y", "email": "eve@x.y"}]),
    ("header:Reply-To:asAddresses", [{"email": "a@b.c, evil@x.y"}]),
    ("header:To:asGroupedAddresses", [{"name": "g", "addresses": [{"email": "<evil@x.y>"}]}]),
    ("subject", "hello\r\nBcc: evil@x.y"),
    ("header:X-Note:asText", "one\nBcc: evil@x.y"),
])
def test_email_set_refuses_header_injection_and_stores_nothing(alice, prop, value):
    before = alice.ok("Email/get", ids=[])["state"]
    res = alice.ok("Email/set", create={"x": {"mailboxIds": {alice.mailbox("drafts"): True},
                                              "subject": unique("inj "), prop: value}})
    err = res["notCreated"]["x"]
    assert err["type"] == "invalidProperties" and err["properties"] == [prop], err
    assert err["description"]
    assert alice.ok("Email/get", ids=[])["state"] == before


def test_valid_unusual_addresses_are_still_written(alice):
    res = alice.ok("Email/set", create={"x": {"mailboxIds": {alice.mailbox("drafts"): True}, "to": [
        {"name": "Quoted", "email": '"a b"@example.org'}, {"email": "jörg@bücher.example"},
        {"email": "x@[192.0.2.1]"}]}})
    email_id = res["created"]["x"]["id"]
    raw = alice.ok("Email/get", ids=[email_id], properties=["header:To"])["list"][0]["header:To"]
    assert raw == ' Quoted <"a b"@example.org>, jörg@bücher.example, x@[192.0.2.1]'

