"""The exactness cases from the field (issue 6; fixtures/cases/*.eml are copies of the cases'
inputs): each is imported into a real server and read back, and the test asserts the right value
the case gives. Each case stands for a class; the unit tests in unit/test_mime.py and
unit/test_mime_classes.py cover the class beyond the one input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Jmap, unique

CASES = Path(__file__).parent / "fixtures" / "cases"
ALL_PROPERTIES = ["id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
                  "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
                  "sentAt", "hasAttachment", "preview", "headers", "bodyStructure", "textBody", "htmlBody",
                  "attachments", "bodyValues"]


def case(name: str) -> bytes:
    return next(CASES.glob(name + "-*.eml")).read_bytes()


def imported(client: Jmap, raw: bytes) -> str:
    """Imports raw (made unique by a header in front, so the shared account never refuses it as a
    duplicate) and returns the email id."""
    return client.import_message(b"X-Test-Run: " + unique().encode() + b"\r\n" + raw)["id"]


def get(client: Jmap, email_id: str, properties: list[str] | None = None, **args) -> dict:
    res = client.ok("Email/get", ids=[email_id], properties=properties or ALL_PROPERTIES, **args)
    assert res["notFound"] == [], res
    return res["list"][0]


def test_m01_a_from_line_inside_the_header_is_skipped_not_taken_as_the_body(alice):
    email = get(alice, imported(alice, case("m01")))
    assert email["subject"] == "Quarterly numbers"
    assert email["from"] == [{"name": "Carol", "email": "carol@example.org"}]
    assert email["to"] == [{"name": None, "email": "dave@example.org"}]
    assert email["sentAt"] == "2020-02-03T08:59:00Z"
    assert email["messageId"] == ["q1.numbers@example.org"]
    assert email["preview"] == "The numbers are attached to the wiki page."


def test_m02_a_lone_surrogate_from_utf7_is_u_fffd_and_fails_no_other_email(alice):
    bad = imported(alice, case("m02"))
    good = imported(alice, case("m05"))
    res = alice.ok("Email/get", ids=[bad, good], properties=["id", "subject", "bodyValues"],
                   fetchAllBodyValues=True)
    by_id = {e["id"]: e for e in res["list"]}
    value = by_id[bad]["bodyValues"]["1"]
    assert value["value"].endswith("Key fragment: abc\ufffddef\n")
    assert value["isEncodingProblem"] is True
    assert by_id[good]["subject"] == "Greetings"
    assert by_id[good]["bodyValues"]["1"]["value"] == "Viele Grüße\n"


def test_m02_the_whole_response_is_valid_i_json(alice):
    email_id = imported(alice, case("m02"))
    body = {"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], "methodCalls": [
        ["Email/get", {"accountId": alice.account_id, "ids": [email_id], "properties": ALL_PROPERTIES,
                       "fetchAllBodyValues": True}, "c"]]}
    raw = alice.http.post(alice.api_url, json=body).content
    text = raw.decode("utf-8")  # strict: no invalid UTF-8
    assert "\\ud8" not in text.lower() and "\\udc" not in text.lower()  # no escaped lone surrogates
    assert json.loads(text)["methodResponses"][0][0] == "Email/get"


def test_m03_a_utf7_body_with_a_lone_surrogate_is_imported_with_its_preview(alice):
    email = get(alice, imported(alice, case("m03")), ["preview"])
    assert email["preview"] == "Key fragment: abc\ufffddef"


def test_m04_a_utf7_encoded_word_with_a_lone_surrogate_is_imported_with_its_subject(alice):
    email = get(alice, imported(alice, case("m04")), ["subject", "header:Subject:asText"])
    assert email["subject"] == "Plan abc\ufffddef"
    assert email["header:Subject:asText"] == "Plan abc\ufffddef"


def test_m05_a_quoted_charset_with_junk_after_it_is_just_the_charset(alice):
    email = get(alice, imported(alice, case("m05")), ["bodyStructure", "textBody", "bodyValues"],
                fetchTextBodyValues=True)
    assert email["bodyStructure"]["charset"] == "UTF-8"
    assert email["textBody"][0]["charset"] == "UTF-8"
    assert email["bodyValues"]["1"] == {"value": "Viele Grüße\n", "isEncodingProblem": False,
                                        "isTruncated": False}


def test_m06_an_inner_multipart_reusing_its_parents_boundary_keeps_its_structure(alice):
    email = get(alice, imported(alice, case("m06")), ["bodyStructure", "textBody", "htmlBody"],
                bodyProperties=["partId", "type"])
    assert email["bodyStructure"] == {"partId": None, "type": "multipart/mixed", "subParts": [
        {"partId": None, "type": "multipart/alternative", "subParts": [
            {"partId": "1.1", "type": "text/plain"}, {"partId": "1.2", "type": "text/html"}]}]}
    assert email["textBody"] == [{"partId": "1.1", "type": "text/plain"}]
    assert email["htmlBody"] == [{"partId": "1.2", "type": "text/html"}]


def test_m07_a_signature_part_is_not_an_attachment(alice):
    email = get(alice, imported(alice, case("m07")), ["hasAttachment", "attachments"],
                bodyProperties=["partId", "type"])
    assert email["hasAttachment"] is False
    assert email["attachments"] == [{"partId": "2", "type": "application/pgp-signature"}]


def test_m08_an_unclosed_message_id_is_repaired_and_a_reply_joins_its_thread(alice):
    original = get(alice, imported(alice, case("m08")), ["messageId", "threadId"])
    assert original["messageId"] == ["agenda.2020@example.org"]
    reply = (b"From: Rose <rose@example.org>\r\nTo: quinn@example.org\r\nSubject: Re: Draft agenda\r\n"
             b"Date: Mon, 10 Feb 2020 17:00:00 +0000\r\nMessage-ID: <reply." + unique().encode()
             + b"@example.org>\r\nIn-Reply-To: <agenda.2020@example.org>\r\n\r\nLooks good.\r\n")
    assert get(alice, imported(alice, reply), ["threadId"])["threadId"] == original["threadId"]


def test_m09_python_codec_names_are_not_charsets(alice):
    email = get(alice, imported(alice, case("m09")), ["header:X-Escape:asText", "header:X-Punycode:asText"])
    assert email["header:X-Escape:asText"] == "=?unicode_escape?Q?caf\\xe9?="
    assert email["header:X-Punycode:asText"] == "=?punycode?Q?caf-dma?="


def test_m10_html_attributes_and_script_are_neither_preview_nor_searchable(alice):
    email_id = imported(alice, case("m10"))
    assert get(alice, email_id, ["preview"])["preview"] == "Read more below. Hello"
    for condition in ({"text": "secrettrackingtoken"}, {"body": "secrettrackingtoken"},
                      {"text": "leakedjs"}, {"body": "leakedjs"}, {"text": "Segoe"}):
        assert email_id not in alice.ok("Email/query", filter=condition)["ids"], condition
    assert email_id in alice.ok("Email/query", filter={"body": "below"})["ids"]


def test_m10_class_a_block_inside_an_inline_element_is_its_own_words_in_preview_and_search(alice):
    raw = (b"From: shop@example.org\r\nSubject: offers\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b'<html><body><center>Welcome</center><center>Unsubscribe</center><div><a href="https://x">'
           b"<div>Shopnow</div></a>Footertext</div></body></html>")
    email_id = imported(alice, raw)
    assert get(alice, email_id, ["preview"])["preview"] == "Welcome Unsubscribe Shopnow Footertext"
    for word in ("welcome", "unsubscribe", "shopnow", "footertext"):
        assert email_id in alice.ok("Email/query", filter={"text": word})["ids"], word


def test_a_group_name_is_found_by_the_to_and_cc_filters(alice):
    raw = (b"From: a@example.org\r\nTo: Friends: jane@example.org, John <john@example.org>;\r\n"
           b"Cc: Marketing Team: ;\r\nSubject: groups\r\n\r\nbody")
    email_id = imported(alice, raw)
    for condition in ({"to": "Friends"}, {"cc": "Marketing"}, {"text": "Friends"}, {"to": "jane"}):
        assert email_id in alice.ok("Email/query", filter=condition)["ids"], condition


def test_m11_a_download_has_exactly_the_type_the_url_names(alice):
    email_id = imported(alice, case("m11"))
    att = get(alice, email_id, ["attachments"])["attachments"][0]
    assert att["name"] == "menu.txt"
    url = (alice.session["downloadUrl"].replace("{accountId}", alice.account_id)
           .replace("{blobId}", att["blobId"]).replace("{name}", "menu.txt").replace("{type}", "text/plain"))
    r = alice.http.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain"
    assert r.content == "Café crème brûlée".encode("latin-1")


# -------------------------------------------------------------------------------------------- requests

def test_r01_a_tree_destroyed_parent_first_in_one_call_is_destroyed(alice):
    res = alice.ok("Mailbox/set", create={"P": {"name": unique("P")}, "C": {"name": "C", "parentId": "#P"},
                                          "G": {"name": "G", "parentId": "#C"}})
    ids = [res["created"][k]["id"] for k in ("P", "C", "G")]
    res = alice.ok("Mailbox/set", destroy=ids)
    assert res["notDestroyed"] is None, res
    assert sorted(res["destroyed"]) == sorted(ids)
    assert alice.ok("Mailbox/get", ids=ids)["notFound"] == ids


def test_r02_names_that_differ_only_in_normalisation_are_the_same_name(alice):
    base = unique("Cafe")
    first = alice.ok("Mailbox/set", create={"a": {"name": base + "Cafe\u0301"}})
    mailbox_id = first["created"]["a"]["id"]
    assert alice.ok("Mailbox/get", ids=[mailbox_id])["list"][0]["name"] == base + "Caf\u00e9"
    second = alice.ok("Mailbox/set", create={"b": {"name": base + "Caf\u00e9"}})
    assert second["notCreated"]["b"]["type"] == "invalidProperties"
    assert second["notCreated"]["b"]["properties"] == ["name"]


def test_r03_a_long_non_ascii_attachment_name_is_folded_with_rfc2231_continuations(alice):
    blob = alice.upload(b"%PDF-1.4 test", "application/pdf")
    name = "報告書" * 100 + ".pdf"
    res = alice.ok("Email/set", create={"d": {
        "mailboxIds": {alice.mailbox("drafts"): True}, "subject": "report",
        "from": [{"email": "alice@example.com"}], "bodyValues": {"t": {"value": "attached"}},
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "attachments": [{"blobId": blob["blobId"], "type": "application/pdf", "name": name}]}})
    created = res["created"]["d"]
    url = (alice.session["downloadUrl"].replace("{accountId}", alice.account_id)
           .replace("{blobId}", created["blobId"]).replace("{name}", "m.eml").replace("{type}", "message/rfc822"))
    raw = alice.http.get(url).content
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert b"filename*0*=utf-8''" in raw
    email = get(alice, created["id"], ["attachments"])
    assert email["attachments"][0]["name"] == name


@pytest.mark.parametrize("extra", [{"anchorOffset": 0, "calculateTotal": False, "position": 0},
                                   {"somethingNew": True}])
def test_r04_comparators_with_properties_the_server_does_not_know_still_sort(alice, extra):
    res = alice.ok("Email/query", sort=[{"property": "receivedAt", "isAscending": False, **extra}], limit=5)
    assert isinstance(res["ids"], list)


# ------------------------------------------------------------------- what is not mail is not stored as mail

@pytest.mark.parametrize("data", [b"[core]\n\trepositoryformatversion = 0\n\tbare = false\n",
                                  b"name: tidings\nversion: 1\n", b"just some text\nwith lines\n", b"\r\n\r\n"])
def test_email_import_refuses_what_is_not_an_email_with_invalid_email(alice, data):
    blob = alice.upload(data, "message/rfc822")
    res = alice.ok("Email/import", emails={"x": {"blobId": blob["blobId"],
                                                 "mailboxIds": {alice.mailbox("inbox"): True}}})
    assert res["created"] is None
    err = res["notCreated"]["x"]
    assert err["type"] == "invalidEmail" and "not an email message" in err["description"]
    parsed = alice.ok("Email/parse", blobIds=[blob["blobId"]])
    assert parsed["notParsable"] == [blob["blobId"]] and parsed["parsed"] is None


def test_one_bad_blob_does_not_fail_the_other_imports_of_the_call(alice):
    good = alice.upload(b"Subject: " + unique().encode() + b"\r\n\r\nfine\r\n")
    bad = alice.upload(b"not mail at all\n")
    res = alice.ok("Email/import", emails={
        "g": {"blobId": good["blobId"], "mailboxIds": {alice.mailbox("inbox"): True}},
        "b": {"blobId": bad["blobId"], "mailboxIds": {alice.mailbox("inbox"): True}},
        "u": {"blobId": alice.upload(case("m03") + b"X-Run: " + unique().encode())["blobId"],
              "mailboxIds": {alice.mailbox("inbox"): True}}})
    assert set(res["created"]) == {"g", "u"}
    assert set(res["notCreated"]) == {"b"}
