"""RFC 8621 §4 Email, black-box over HTTP: Email/import of real-world MIME oddities
(tests/fixtures/mime/*.eml) and Email/get of every property the RFC defines, the header parsed forms,
the §4.1.4 body lists, body values and truncation, part downloads; the Email/import and Email/get
errors; Email/set (keywords and mailboxIds whole and by patch, drafts from JSON, destroy);
Email/changes; Email/parse; and that malformed MIME never makes the server fail.

Every test works in a mailbox of its own and imports bytes no other test imports (a unique
X-Test-Run header is put in front of each fixture), so the tests share one server and account."""

from __future__ import annotations

import random
import re
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import Jmap, unique

FIXTURES = Path(__file__).parent / "fixtures" / "mime"
ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.eml"))

# RFC 8621 §4.1: every Email property
ALL_PROPERTIES = ["id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
                  "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
                  "sentAt", "headers", "bodyStructure", "bodyValues", "textBody", "htmlBody", "attachments",
                  "hasAttachment", "preview"]
# RFC 8621 §4.2: the default of Email/get's properties
DEFAULT_PROPERTIES = ["id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
                      "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
                      "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody",
                      "attachments"]
# RFC 8621 §4.1.4: every EmailBodyPart property
ALL_BODY_PROPERTIES = ["partId", "blobId", "size", "headers", "name", "type", "charset", "disposition", "cid",
                       "language", "location", "subParts"]
DEFAULT_BODY_PROPERTIES = ["partId", "blobId", "size", "name", "type", "charset", "disposition", "cid",
                           "language", "location"]
# the 1x1 PNG that nested-multipart.eml carries base64-encoded
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2b4d4"
                    "8a0000000049454e44ae426082")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
UTCDATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# ----------------------------------------------------------------------------------------- helpers
def fixture(name: str) -> bytes:
    """A fixture's bytes behind a unique header field, so that every test imports a message of its
    own (the server refuses a second import of the same bytes with alreadyExists)."""
    return f"X-Test-Run: {unique('run')}\r\n".encode() + (FIXTURES / name).read_bytes()


def simple_message(subject: str = "Hello", body: str = "Hello there.", **headers: str) -> bytes:
    fields = {"From": "Sender <sender@example.com>", "To": "rcpt@example.com", "Subject": subject,
              "Date": "Mon, 15 Jan 2024 10:00:00 +0000", "Message-ID": f"<{unique('m')}@example.com>",
              **{k.replace("_", "-"): v for k, v in headers.items()}}
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return (head + "\r\n" + body.replace("\n", "\r\n") + "\r\n").encode()


def new_mailbox(client: Jmap) -> str:
    r = client.ok("Mailbox/set", create={"mb": {"name": unique("mb")}})
    assert r["created"] and "mb" in r["created"], r
    return r["created"]["mb"]["id"]


def get_email(client: Jmap, email_id: str, properties: list[str] | None = None, **args) -> dict:
    r = client.ok("Email/get", ids=[email_id], properties=properties, **args)
    assert r["notFound"] == [], r
    [email] = r["list"]
    return email


def import_fixture(client: Jmap, name: str, properties: list[str], **args) -> tuple[dict, bytes]:
    raw = fixture(name)
    created = client.import_message(raw, mailbox=new_mailbox(client))
    return get_email(client, created["id"], properties, **args), raw


def download(client: Jmap, blob_id: str, name: str = "blob.bin", type_: str = "application/octet-stream") -> bytes:
    url = client.session["downloadUrl"]
    for key, value in (("accountId", client.account_id), ("blobId", blob_id), ("name", name), ("type", type_)):
        url = url.replace("{" + key + "}", urllib.parse.quote(value, safe=""))
    r = client.http.get(url)
    assert r.status_code == 200, (blob_id, r.status_code, r.text)
    return r.content


def mailbox_counts(client: Jmap, mailbox_id: str) -> dict:
    [mb] = client.ok("Mailbox/get", ids=[mailbox_id],
                     properties=["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"])["list"]
    return {k: mb[k] for k in ("totalEmails", "unreadEmails", "totalThreads", "unreadThreads")}


def nodes(part: dict):
    """Every EmailBodyPart of a bodyStructure, depth first, multiparts included."""
    yield part
    for sub in part.get("subParts") or []:
        yield from nodes(sub)


def leaves(part: dict) -> list[dict]:
    return [p for p in nodes(part) if not p["type"].startswith("multipart/")]


def part_ids(parts: list[dict]) -> list[str]:
    return [p["partId"] for p in parts]


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def method_error(client: Jmap, method: str, **args) -> dict:
    name, result = client.call(method, args)
    assert name == "error", (name, result)
    return result


def addr(name: str | None, email: str) -> dict:
    return {"name": name, "email": email}


# ---------------------------------------------------------------- every fixture, every property
@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_every_fixture_imports_and_gets_every_rfc_property(alice, name):
    mb = new_mailbox(alice)
    raw = fixture(name)
    created = alice.import_message(raw, mailbox=mb, keywords={"$seen": True, "Custom-Tag": True},
                                   received_at="2023-06-15T12:34:56Z")
    assert {"id", "blobId", "threadId", "size"} <= set(created), created
    assert created["size"] == len(raw)

    email = get_email(alice, created["id"], ALL_PROPERTIES, bodyProperties=ALL_BODY_PROPERTIES,
                      fetchAllBodyValues=True)
    assert set(email) == set(ALL_PROPERTIES)
    assert (email["id"], email["blobId"], email["threadId"]) == (created["id"], created["blobId"],
                                                                created["threadId"])
    assert email["mailboxIds"] == {mb: True}
    assert email["keywords"] == {"$seen": True, "custom-tag": True}  # §4.1.1: returned in lowercase
    assert email["size"] == len(raw)
    assert email["receivedAt"] == "2023-06-15T12:34:56Z"
    assert isinstance(email["hasAttachment"], bool)
    assert isinstance(email["preview"], str) and len(email["preview"]) <= 256
    assert email["headers"][0] == {"name": "X-Test-Run", "value": raw[11:raw.index(b"\r\n")].decode()}
    assert email["sentAt"] is None or RFC3339.match(email["sentAt"]), email["sentAt"]
    # the message blob is the message as imported
    assert download(alice, email["blobId"]) == raw

    # bodyStructure: multiparts have neither partId nor blobId, every other part has both, unique
    for node in nodes(email["bodyStructure"]):
        if node["type"].startswith("multipart/"):
            assert node["partId"] is None and node["blobId"] is None, node
            assert isinstance(node["subParts"], list)
        else:
            assert isinstance(node["partId"], str) and isinstance(node["blobId"], str), node
            assert not node.get("subParts"), node
        assert isinstance(node["headers"], list)
    structure_leaves = leaves(email["bodyStructure"])
    ids = part_ids(structure_leaves)
    assert len(ids) == len(set(ids)), ids
    # every part downloads by its blobId, with the size the part announces
    for part in structure_leaves:
        assert len(download(alice, part["blobId"])) == part["size"], part

    # textBody / htmlBody / attachments hold parts of bodyStructure, and (§4.1.4) attachments are the
    # leaves not shown as the body, plus media parts not in both body lists
    by_id = {p["partId"]: p for p in structure_leaves}
    text, html = set(part_ids(email["textBody"])), set(part_ids(email["htmlBody"]))
    atts = part_ids(email["attachments"])
    assert (text | html | set(atts)) == set(ids)
    for part_id in ids:
        media = by_id[part_id]["type"].split("/")[0] in ("image", "audio", "video")
        expected = part_id not in text | html or (media and not (part_id in text and part_id in html))
        assert (part_id in atts) == expected, (part_id, text, html, atts)
    assert atts == [p for p in ids if p in atts], "attachments are in depth-first order"
    for part in email["textBody"] + email["htmlBody"] + email["attachments"]:
        assert "subParts" not in part or part["subParts"] is None
        assert {k: v for k, v in part.items() if k != "subParts"} == \
            {k: v for k, v in by_id[part["partId"]].items() if k != "subParts"}

    # fetchAllBodyValues: exactly the text/* parts of bodyStructure
    assert set(email["bodyValues"]) == {p["partId"] for p in structure_leaves if p["type"].startswith("text/")}
    for value in email["bodyValues"].values():
        assert isinstance(value["value"], str) and "\r" not in value["value"]
        assert value["isTruncated"] is False and isinstance(value["isEncodingProblem"], bool)


def test_import_response_and_metadata_properties(alice):
    mb = new_mailbox(alice)
    raw = simple_message()
    blob = alice.upload(raw)
    r = alice.ok("Email/import", emails={"one": {"blobId": blob["blobId"], "mailboxIds": {mb: True},
                                                 "keywords": {"$flagged": True},
                                                 "receivedAt": "2021-02-03T04:05:06Z"}})
    assert r["notCreated"] is None and isinstance(r["newState"], str) and r["oldState"] != r["newState"]
    created = r["created"]["one"]
    assert created["blobId"] == blob["blobId"] and created["size"] == len(raw)
    email = get_email(alice, created["id"], ["id", "blobId", "threadId", "mailboxIds", "keywords", "size",
                                             "receivedAt"])
    assert email == {"id": created["id"], "blobId": blob["blobId"], "threadId": created["threadId"],
                     "mailboxIds": {mb: True}, "keywords": {"$flagged": True}, "size": len(raw),
                     "receivedAt": "2021-02-03T04:05:06Z"}
    # without receivedAt the import time is used, as a UTCDate
    r = alice.ok("Email/import", emails={"two": {"blobId": alice.upload(simple_message())["blobId"],
                                                 "mailboxIds": {mb: True}}})
    email = get_email(alice, r["created"]["two"]["id"], ["receivedAt", "keywords"])
    assert UTCDATE.match(email["receivedAt"]), email
    assert abs((instant(email["receivedAt"]) - datetime.now(UTC)).total_seconds()) < 300
    assert email["keywords"] == {}


def test_default_properties_are_the_rfc_list(alice):
    email, _ = import_fixture(alice, "qp-base64-bodies.eml", None)
    assert set(email) == set(DEFAULT_PROPERTIES)
    assert email["bodyValues"] == {}  # no fetch*BodyValues: no values
    for part in email["textBody"] + email["htmlBody"] + email["attachments"]:
        assert set(part) == set(DEFAULT_BODY_PROPERTIES), part


def test_requested_header_property_keeps_the_requested_capitalization(alice):
    email, _ = import_fixture(alice, "full-headers.eml", ["header:x-CUSTOM-date", "header:SUBJECT:asText"])
    assert email == {"id": email["id"], "header:x-CUSTOM-date": " Tue, 2 Jan 2024 08:30:00 -0500",
                     "header:SUBJECT:asText": "Re: Quarterly   report folded"}


# ---------------------------------------------------------------- header fields (§4.1.2, §4.1.3)
def test_convenience_header_properties(alice):
    email, _ = import_fixture(alice, "full-headers.eml", ALL_PROPERTIES)
    assert email["messageId"] == ["full-headers@example.net"]
    assert email["inReplyTo"] == ["parent-1@example.net"]
    assert email["references"] == ["root-1@example.net", "parent-1@example.net"]
    assert email["from"] == [addr("Smythe, James", "james@example.net")]
    assert email["sender"] == [addr("List Robot", "robot@lists.example.org")]
    assert email["replyTo"] == [addr(None, "replies@example.net")]
    assert email["to"] == [addr("Jane Doe", "jane@example.com"), addr(None, "bob@example.com"),
                           addr("John Smîth", "john@example.com")]
    assert email["bcc"] == []
    assert email["subject"] == "Re: Quarterly   report folded"
    assert RFC3339.match(email["sentAt"]), email["sentAt"]
    assert instant(email["sentAt"]) == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert email["preview"] == "Hello world, this is the body."
    assert email["hasAttachment"] is False


def test_comment_after_a_bare_address_is_used_as_the_name(alice):
    """§4.1.2.3: no display-name but a comment right after the addr-spec: the comment SHOULD be the name."""
    email, _ = import_fixture(alice, "full-headers.eml", ["cc"])
    assert email["cc"] == [addr("Carol Comment", "carol@example.com")]


def test_header_parsed_forms_and_all_suffix(alice):
    props = ["from", "sentAt", "header:Subject", "header:Subject:asText", "header:From:asAddresses",
             "header:To:asGroupedAddresses", "header:Bcc:asGroupedAddresses", "header:References:asMessageIds",
             "header:Date:asDate", "header:List-Unsubscribe:asURLs", "header:List-Id:asText",
             "header:Keywords:asText", "header:X-Custom-Date:asDate", "header:X-Custom-Date:asRaw",
             "header:X-Tracking-Ids:asMessageIds", "header:X-Tracking-Ids:asText", "header:X-Tracking-Ids:asURLs",
             "header:Received:all", "header:received:asRaw:all", "header:From:asAddresses:all",
             "header:X-Missing", "header:X-Missing:all", "header:X-Missing:asText:all",
             "header:Message-ID:asMessageIds:all"]
    email, _ = import_fixture(alice, "full-headers.eml", props)
    assert email["header:Subject"] == " Re: Quarterly   report\r\n folded"  # Raw: not unfolded
    assert email["header:Subject:asText"] == "Re: Quarterly   report folded"
    assert email["header:From:asAddresses"] == email["from"]
    assert email["header:To:asGroupedAddresses"] == [
        {"name": None, "addresses": [addr("Jane Doe", "jane@example.com")]},
        {"name": "Friends", "addresses": [addr(None, "bob@example.com"), addr("John Smîth", "john@example.com")]},
    ]
    assert email["header:Bcc:asGroupedAddresses"] == [{"name": "undisclosed-recipients", "addresses": []}]
    assert email["header:References:asMessageIds"] == ["root-1@example.net", "parent-1@example.net"]
    assert email["header:Date:asDate"] == email["sentAt"]
    assert email["header:List-Unsubscribe:asURLs"] == ["mailto:leave@lists.example.org?subject=unsubscribe",
                                                       "https://lists.example.org/leave"]
    assert email["header:List-Id:asText"] == "Example list <list.example.org>"
    assert email["header:Keywords:asText"] == "alpha, beta"
    assert instant(email["header:X-Custom-Date:asDate"]) == datetime(2024, 1, 2, 13, 30, tzinfo=UTC)
    assert RFC3339.match(email["header:X-Custom-Date:asDate"])
    assert email["header:X-Custom-Date:asRaw"] == " Tue, 2 Jan 2024 08:30:00 -0500"
    assert email["header:X-Tracking-Ids:asMessageIds"] == ["a@x.example", "b@y.example"]
    assert email["header:X-Tracking-Ids:asText"] == "<a@x.example> <b@y.example>"
    assert email["header:X-Tracking-Ids:asURLs"] == ["a@x.example", "b@y.example"]
    received = [" from mx1.example.org by mx.example.com; Mon, 1 Jan 2024 10:00:02 +0000",
                " from origin.example.net by mx1.example.org; Mon, 1 Jan 2024 10:00:01 +0000"]
    assert email["header:Received:all"] == received
    assert email["header:received:asRaw:all"] == received
    assert email["header:From:asAddresses:all"] == [email["from"]]
    assert email["header:X-Missing"] is None
    assert email["header:X-Missing:all"] == []
    assert email["header:X-Missing:asText:all"] == []
    assert email["header:Message-ID:asMessageIds:all"] == [["full-headers@example.net"]]


def test_last_instance_of_a_repeated_header_wins(alice):
    mb = new_mailbox(alice)
    raw = (b"X-Dup: first\r\nX-Dup: second\r\nSubject: one\r\nSubject: two\r\n"
           + f"Message-ID: <{unique('dup')}@example.com>\r\n\r\nbody\r\n".encode())
    created = alice.import_message(raw, mailbox=mb)
    email = get_email(alice, created["id"], ["subject", "header:X-Dup", "header:X-Dup:all", "header:Subject:all"])
    assert email["header:X-Dup"] == " second"
    assert email["header:X-Dup:all"] == [" first", " second"]
    assert email["header:Subject:all"] == [" one", " two"]
    assert email["subject"] == "two"


def test_headers_property_lists_every_field_in_order_in_raw_form(alice):
    email, raw = import_fixture(alice, "full-headers.eml", ["headers"])
    names = [h["name"] for h in email["headers"]]
    assert names == ["X-Test-Run", "Return-Path", "Received", "Received", "Message-ID", "In-Reply-To",
                     "References", "Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Subject",
                     "List-Unsubscribe", "List-Id", "X-Custom-Date", "X-Tracking-Ids", "Keywords",
                     "MIME-Version", "Content-Type"]
    values = {h["name"]: h["value"] for h in email["headers"]}
    assert values["References"] == " <root-1@example.net>\r\n <parent-1@example.net>"
    assert values["Return-Path"] == " <bounce@lists.example.org>"
    assert values["Content-Type"] == " text/plain; charset=us-ascii"


def test_rfc2047_encoded_words_in_utf8_and_iso_8859_1_q_and_b(alice):
    props = ["subject", "from", "to", "cc", "header:Subject", "header:X-Mixed-Charsets:asText",
             "header:X-Latin-Q:asText", "header:X-Not-Encoded:asText", "header:X-Decomposed:asText"]
    email, _ = import_fixture(alice, "rfc2047-headers.eml", props)
    assert email["subject"] == "Café crème €4"  # UTF-8 Q then B, the space between them dropped
    assert email["from"] == [addr("André Pirard", "pirard@example.be")]  # ISO-8859-1 Q
    assert email["to"] == [addr("山田太郎", "yamada@example.jp")]  # UTF-8 B
    assert email["cc"] == [addr("Jürgen", "juergen@example.de")]  # ISO-8859-1 B
    assert email["header:Subject"] == " =?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?= =?UTF-8?B?IOKCrDQ=?="
    assert email["header:X-Mixed-Charsets:asText"] == "If you can read this you understand the example."
    assert email["header:X-Latin-Q:asText"] == "Grüße aus Köln"
    # encoded-word syntax glued to other text is not an encoded word (RFC 2047 §5)
    assert email["header:X-Not-Encoded:asText"] == "foo=?utf-8?q?bar?="
    # the Text form is NFC
    assert email["header:X-Decomposed:asText"] == "Caf\u00e9"


def test_raw_utf8_header_fields_and_invalid_octets(alice):
    props = ["from", "to", "subject", "header:X-Latin1-Raw", "preview", "textBody", "bodyValues"]
    email, _ = import_fixture(alice, "eight-bit-headers.eml", props, fetchTextBodyValues=True)
    assert email["from"] == [addr("Jürgen Müller", "jürgen@bücher.example")]  # RFC 6532 (EAI)
    assert email["to"] == [addr("Zoë Ça", "zoe@example.fr")]
    assert email["subject"] == "Grüße aus Köln – 東京"
    # §4.1.2.1: octets that are not UTF-8 become U+FFFD in the Raw form
    assert email["header:X-Latin1-Raw"] == " caf\ufffd cr\ufffdme"
    assert email["preview"] == "Grüße!"
    [part] = email["textBody"]
    assert email["bodyValues"][part["partId"]] == {"value": "Grüße!\n", "isEncodingProblem": False,
                                                   "isTruncated": False}


def test_missing_headers_give_null_properties(alice):
    props = ["messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
             "sentAt", "headers", "header:Subject:asText", "header:Date:asDate", "preview", "hasAttachment",
             "bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues"]
    email, raw = import_fixture(alice, "missing-headers.eml", props, fetchTextBodyValues=True)
    for prop in ("messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo",
                 "subject", "sentAt", "header:Subject:asText", "header:Date:asDate"):
        assert email[prop] is None, prop
    assert email["headers"][1:] == [{"name": "X-Mailer", "value": " ancient-script 0.1"}]
    assert email["bodyStructure"]["type"] == "text/plain"
    assert email["bodyStructure"]["charset"] == "us-ascii"
    assert email["bodyStructure"]["partId"] == "1"  # mime.py: a single-part body is part "1"
    assert part_ids(email["textBody"]) == part_ids(email["htmlBody"]) == ["1"]
    assert email["attachments"] == [] and email["hasAttachment"] is False
    assert email["bodyValues"]["1"]["value"] == "Just a body without any of the usual headers.\n"
    assert email["preview"] == "Just a body without any of the usual headers."


def test_huge_references_header(alice):
    props = ["references", "inReplyTo", "subject", "header:References", "preview", "threadId"]
    email, _ = import_fixture(alice, "huge-references.eml", props)
    refs = email["references"]
    assert len(refs) == 4000
    assert refs[0] == "ref-00000-0123456789abcdef0123456789@example.org"
    assert refs[-1] == "ref-03999-0123456789abcdef0123456789@example.org"
    assert email["inReplyTo"] == [refs[-1]]
    assert len(email["header:References"]) > 200_000
    assert email["subject"] == "A reply in a very long thread"
    assert email["preview"] == "The References header above is about 200 KB."


@pytest.mark.parametrize("prop", ["header:From:asDate", "header:Subject:asAddresses", "header:Date:asText",
                                  "header:Message-ID:asURLs", "header:To:asMessageIds",
                                  "header:List-Unsubscribe:asDate", "header:Received:asText"])
def test_forbidden_header_form_is_invalid_arguments(alice, prop):
    err = method_error(alice, "Email/get", ids=[], properties=["id", prop])
    assert err["type"] == "invalidArguments", err


@pytest.mark.parametrize("props", [["id", "bogus"], ["header:"], ["header:X-Foo:asNothing"],
                                   ["header:X-Foo:all:asText"], ["Subject"]])
def test_unknown_or_malformed_property_is_invalid_arguments(alice, props):
    err = method_error(alice, "Email/get", ids=[], properties=props)
    assert err["type"] == "invalidArguments", err


def test_unknown_body_property_is_invalid_arguments(alice):
    err = method_error(alice, "Email/get", ids=[], properties=["textBody"], bodyProperties=["partId", "bogus"])
    assert err["type"] == "invalidArguments", err


def test_get_reports_unknown_ids_as_not_found(alice):
    mb = new_mailbox(alice)
    created = alice.import_message(simple_message(), mailbox=mb)
    r = alice.ok("Email/get", ids=[created["id"], "Mnope0000", "x"], properties=["subject"])
    assert [e["id"] for e in r["list"]] == [created["id"]]
    assert sorted(r["notFound"]) == ["Mnope0000", "x"]
    assert r["list"][0] == {"id": created["id"], "subject": "Hello"}


def test_get_answers_a_repeated_id_once(alice):
    mb = new_mailbox(alice)
    created = alice.import_message(simple_message(), mailbox=mb)
    r = alice.ok("Email/get", ids=[created["id"], created["id"], "Mnope0003", "Mnope0003"],
                 properties=["subject", "subject"])
    assert r["list"] == [{"id": created["id"], "subject": "Hello"}]
    assert r["notFound"] == ["Mnope0003"]


def test_get_with_ids_null_returns_the_accounts_emails(alice):
    mb = new_mailbox(alice)
    created = alice.import_message(simple_message(), mailbox=mb)
    name, r = alice.call("Email/get", ids=None, properties=["mailboxIds"])
    if name == "error":  # allowed only when the shared account has outgrown maxObjectsInGet
        assert r["type"] == "requestTooLarge", r
        limit = alice.session["capabilities"]["urn:ietf:params:jmap:core"]["maxObjectsInGet"]
        assert alice.ok("Email/query", calculateTotal=True, limit=1)["total"] > limit
        return
    mine = [e for e in r["list"] if e["id"] == created["id"]]
    assert mine == [{"id": created["id"], "mailboxIds": {mb: True}}]
    assert r["notFound"] == []


# ---------------------------------------------------------------- body structure (§4.1.4)
def test_nested_multipart_structure_and_body_lists(alice):
    props = ["bodyStructure", "textBody", "htmlBody", "attachments", "hasAttachment", "preview", "bodyValues"]
    email, raw = import_fixture(alice, "nested-multipart.eml", props, fetchTextBodyValues=True,
                                fetchHTMLBodyValues=True)
    root = email["bodyStructure"]
    assert root["type"] == "multipart/mixed"
    alt, pdf = root["subParts"]
    assert alt["type"] == "multipart/alternative"
    plain, related = alt["subParts"]
    assert related["type"] == "multipart/related"
    html, image = related["subParts"]
    assert [plain["partId"], html["partId"], image["partId"], pdf["partId"]] == ["1.1", "1.2.1", "1.2.2", "2"]
    assert (plain["type"], plain["charset"]) == ("text/plain", "utf-8")
    assert (html["type"], html["charset"]) == ("text/html", "utf-8")
    assert (html["language"], html["location"]) == (["en", "de-CH"], "https://example.com/page.html")
    assert (plain["language"], plain["location"], plain["cid"], plain["name"]) == (None, None, None, None)
    assert image["type"] == "image/png" and image["charset"] is None
    assert (image["cid"], image["disposition"], image["name"]) == ("logo@example.com", "inline", "logo.png")
    assert (pdf["type"], pdf["disposition"], pdf["name"]) == ("application/pdf", "attachment", "report.pdf")
    # §4.1.4: text/plain of the alternative in textBody, text/html in htmlBody; the related image and the
    # pdf are attachments
    assert part_ids(email["textBody"]) == ["1.1"]
    assert part_ids(email["htmlBody"]) == ["1.2.1"]
    assert part_ids(email["attachments"]) == ["1.2.2", "2"]
    assert email["hasAttachment"] is True
    assert email["bodyValues"]["1.1"]["value"] == "Plain version of the nested mail."
    assert email["bodyValues"]["1.2.1"]["value"] == \
        '<html><body><p>HTML version</p><img src="cid:logo@example.com"></body></html>'
    assert email["preview"] == "Plain version of the nested mail."


def test_rfc_8621_example_structure_decomposes_as_the_rfc_says(alice):
    """The example of §4.1.4: textBody [A, B, C, D, K], htmlBody [A, E, K], attachments [C, F, G, H, J]."""
    email, _ = import_fixture(alice, "rfc8621-example.eml", ["textBody", "htmlBody", "attachments",
                                                              "bodyValues", "hasAttachment"],
                              fetchTextBodyValues=True, fetchHTMLBodyValues=True)
    a, b, c, d, e, f, g, h, j, k = ("1", "2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.2.1", "2.1.2.2", "2.2", "2.3",
                                    "2.4", "3")
    assert part_ids(email["textBody"]) == [a, b, c, d, k]
    assert part_ids(email["htmlBody"]) == [a, e, k]
    assert part_ids(email["attachments"]) == [c, f, g, h, j]
    assert [p["type"] for p in email["attachments"]] == ["image/jpeg", "image/jpeg", "image/jpeg",
                                                         "application/x-excel", "message/rfc822"]
    values = {pid: v["value"] for pid, v in email["bodyValues"].items()}
    assert values == {a: "A: list header", b: "B: text before the image", d: "D: text after the image",
                      e: '<p>E: the html version <img src="cid:f@example.com"></p>', k: "K: list footer"}
    assert email["hasAttachment"] is True


def test_alternative_with_only_html_shows_the_html_in_both_lists(alice):
    mb = new_mailbox(alice)
    raw = (f"Message-ID: <{unique('alt')}@example.com>\r\nSubject: html only\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/alternative; boundary="a"\r\n\r\n'
           "--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           "<html><head><style>p {color: red}</style></head><body><p>Only <b>html</b> here &amp; now</p>"
           "</body></html>\r\n--a--\r\n").encode()
    created = alice.import_message(raw, mailbox=mb)
    email = get_email(alice, created["id"], ["textBody", "htmlBody", "attachments", "preview"])
    assert part_ids(email["textBody"]) == part_ids(email["htmlBody"]) == ["1"]
    assert email["attachments"] == []
    # the preview is plain text: no markup, no style sheet, entities decoded
    assert email["preview"] == "Only html here & now"


def test_inline_image_in_a_mixed_body_is_shown_not_attached(alice):
    """§4.1.4: an inline image between text parts of a multipart/mixed is part of both body lists and
    (being in both) not in attachments."""
    mb = new_mailbox(alice)
    raw = (f"Message-ID: <{unique('img')}@example.com>\r\nSubject: inline image\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
           "--m\r\nContent-Type: text/plain\r\n\r\nLook:\r\n"
           "--m\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64"
           "\r\n\r\niVBORw0KGgo=\r\n"
           "--m\r\nContent-Type: text/plain\r\n\r\nNice, isn't it?\r\n--m--\r\n").encode()
    created = alice.import_message(raw, mailbox=mb)
    email = get_email(alice, created["id"], ["textBody", "htmlBody", "attachments", "hasAttachment"])
    assert part_ids(email["textBody"]) == part_ids(email["htmlBody"]) == ["1", "2", "3"]
    assert email["attachments"] == []
    assert email["hasAttachment"] is False


def test_attachment_downloads_as_its_decoded_bytes(alice):
    email, _ = import_fixture(alice, "nested-multipart.eml", ["attachments"])
    image, pdf = email["attachments"]
    png = download(alice, image["blobId"], "logo.png", "image/png")
    assert png == PNG and image["size"] == len(PNG)
    data = download(alice, pdf["blobId"], "report.pdf", "application/pdf")
    assert data.startswith(b"%PDF-1.4\n") and data.endswith(b"%%EOF\n") and len(data) == pdf["size"]


def test_download_uses_the_type_and_name_of_the_url(alice):
    email, _ = import_fixture(alice, "nested-multipart.eml", ["attachments"])
    pdf = email["attachments"][1]
    url = alice.session["downloadUrl"]
    for key, value in (("accountId", alice.account_id), ("blobId", pdf["blobId"]), ("name", "my report.pdf"),
                       ("type", "application/pdf")):
        url = url.replace("{" + key + "}", urllib.parse.quote(value, safe=""))
    r = alice.http.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/pdf")
    assert "my%20report.pdf" in r.headers["content-disposition"] or \
        "my report.pdf" in r.headers["content-disposition"]


def test_forwarded_message_is_an_attachment_and_can_be_parsed(alice):
    props = ["subject", "messageId", "bodyStructure", "textBody", "htmlBody", "attachments", "hasAttachment"]
    email, raw = import_fixture(alice, "forwarded-rfc822.eml", props)
    assert email["subject"] == "Fwd: Original subject"
    assert email["messageId"] == ["forwarded@example.com"]
    text, message = email["bodyStructure"]["subParts"]
    assert message["type"] == "message/rfc822"
    assert message["partId"] == "2" and message.get("subParts") in (None, [])  # not recursed into
    assert part_ids(email["textBody"]) == part_ids(email["htmlBody"]) == ["1"]
    [attachment] = email["attachments"]
    assert attachment["partId"] == "2" and attachment["type"] == "message/rfc822"
    assert email["hasAttachment"] is True
    inner = raw[raw.index(b"From: Original Author"):raw.index(b"\r\n--fwd-boundary--")]
    assert download(alice, attachment["blobId"], "fwd.eml", "message/rfc822") == inner
    # §4.1.4: attached messages may be fetched with Email/parse and the part's blobId
    r = alice.ok("Email/parse", blobIds=[attachment["blobId"]],
                 properties=["id", "mailboxIds", "keywords", "receivedAt", "blobId", "size", "subject",
                             "from", "messageId", "textBody", "htmlBody", "bodyValues"],
                 fetchTextBodyValues=True, fetchHTMLBodyValues=True)
    parsed = r["parsed"][attachment["blobId"]]
    assert (parsed["id"], parsed["mailboxIds"], parsed["keywords"], parsed["receivedAt"]) == (None,) * 4
    assert parsed["blobId"] == attachment["blobId"] and parsed["size"] == len(inner)
    assert parsed["subject"] == "Original subject"
    assert parsed["from"] == [addr("Original Author", "orig@example.org")]
    assert parsed["messageId"] == ["original@example.org"]
    values = {pid: v["value"] for pid, v in parsed["bodyValues"].items()}
    assert values[parsed["textBody"][0]["partId"]] == "Inner plain body."
    assert values[parsed["htmlBody"][0]["partId"]] == "<p>Inner html body.</p>"


def test_broken_charsets_are_flagged_as_encoding_problems(alice):
    email, _ = import_fixture(alice, "broken-charset.eml", ["textBody", "bodyValues"], fetchTextBodyValues=True)
    assert part_ids(email["textBody"]) == ["1", "2", "3"]
    assert [p["charset"] for p in email["textBody"]] == ["x-unknown", "utf-8", "utf-8"]
    values = email["bodyValues"]
    # unknown charset
    assert values["1"] == {"value": "Unknown charset text.", "isEncodingProblem": True, "isTruncated": False}
    # invalid UTF-8 in a utf-8 part: U+FFFD inserted, decoding continues
    assert values["2"]["value"].startswith("Bad bytes: \ufffd")
    assert values["2"]["value"].endswith(" here, good: é.")
    assert values["2"]["isEncodingProblem"] is True
    # unknown Content-Transfer-Encoding: treated as none, flagged
    assert values["3"] == {"value": "Body with an unknown transfer encoding.", "isEncodingProblem": True,
                           "isTruncated": False}


def test_latin1_body_is_decoded(alice):
    email, _ = import_fixture(alice, "latin1-body.eml", ["from", "textBody", "bodyValues", "preview"],
                              fetchTextBodyValues=True)
    assert email["from"] == [addr("François", "francois@example.fr")]
    [part] = email["textBody"]
    assert part["charset"] == "iso-8859-1"
    assert email["bodyValues"][part["partId"]] == {"value": "Voilà un résumé en français: £ ° ü.\n",
                                                   "isEncodingProblem": False, "isTruncated": False}
    assert email["preview"] == "Voilà un résumé en français: £ ° ü."


def test_quoted_printable_and_base64_bodies_are_decoded(alice):
    props = ["textBody", "htmlBody", "attachments", "bodyValues", "preview", "hasAttachment"]
    email, _ = import_fixture(alice, "qp-base64-bodies.eml", props, fetchTextBodyValues=True,
                              fetchHTMLBodyValues=True)
    [text] = email["textBody"]
    [html] = email["htmlBody"]
    assert (text["partId"], text["type"], text["charset"]) == ("1.1", "text/plain", "utf-8")
    assert (html["partId"], html["type"]) == ("1.2", "text/html")
    decoded_text = "Café au lait costs €3. \r\nSecond line.".encode()
    assert text["size"] == len(decoded_text)  # size after transfer decoding
    assert download(alice, text["blobId"]) == decoded_text
    assert email["bodyValues"]["1.1"] == {"value": "Café au lait costs €3. \nSecond line.",
                                          "isEncodingProblem": False, "isTruncated": False}
    assert email["bodyValues"]["1.2"]["value"] == ("<html><body><p>Caf&eacute; au lait costs <b>&euro;3</b>."
                                                   "</p><p>Second line.</p></body></html>")
    [binary] = email["attachments"]
    assert (binary["partId"], binary["name"], binary["type"], binary["disposition"], binary["size"]) == \
        ("2", "data.bin", "application/octet-stream", "attachment", 256)
    assert download(alice, binary["blobId"], "data.bin") == bytes(range(256))
    assert email["hasAttachment"] is True
    assert email["preview"].startswith("Café au lait costs €3.")


def test_text_and_other_attachments_names_and_downloads(alice):
    email, raw = import_fixture(alice, "calendar-attachments.eml", ["textBody", "htmlBody", "attachments",
                                                                     "hasAttachment"])
    assert part_ids(email["textBody"]) == part_ids(email["htmlBody"]) == ["1"]
    ics, notes, pdf = email["attachments"]
    assert (ics["partId"], ics["type"], ics["name"], ics["disposition"], ics["charset"]) == \
        ("2", "text/calendar", "invite.ics", "attachment", "utf-8")
    assert (notes["partId"], notes["type"], notes["name"]) == ("3", "text/plain", "résumé.txt")  # RFC 2231
    assert (pdf["partId"], pdf["type"], pdf["name"], pdf["disposition"]) == \
        ("4", "application/pdf", "naïve.pdf", None)  # RFC 2047 in the Content-Type name
    calendar = raw[raw.index(b"BEGIN:VCALENDAR"):raw.index(b"END:VCALENDAR") + len(b"END:VCALENDAR")]
    assert download(alice, ics["blobId"], "invite.ics", "text/calendar") == calendar
    assert download(alice, notes["blobId"], "notes.txt", "text/plain") == b"Notes in a text attachment."
    assert download(alice, pdf["blobId"], "naive.pdf", "application/pdf").startswith(b"%PDF-1.4")
    assert email["hasAttachment"] is True


def test_fetch_body_values_flags_select_the_parts(alice):
    mb = new_mailbox(alice)
    created = alice.import_message(fixture("calendar-attachments.eml"), mailbox=mb)

    def values(**flags) -> set[str]:
        return set(get_email(alice, created["id"], ["bodyValues"], **flags)["bodyValues"])

    assert values() == set()
    assert values(fetchTextBodyValues=True) == {"1"}
    assert values(fetchHTMLBodyValues=True) == {"1"}
    assert values(fetchAllBodyValues=True) == {"1", "2", "3"}  # every text/* part, not the pdf

    created = alice.import_message(fixture("qp-base64-bodies.eml"), mailbox=mb)
    assert set(get_email(alice, created["id"], ["bodyValues"], fetchTextBodyValues=True)["bodyValues"]) == {"1.1"}
    assert set(get_email(alice, created["id"], ["bodyValues"], fetchHTMLBodyValues=True)["bodyValues"]) == {"1.2"}


def test_max_body_value_bytes_truncates_on_a_character_boundary(alice):
    mb = new_mailbox(alice)
    created = alice.import_message(fixture("qp-base64-bodies.eml"), mailbox=mb)

    def text_value(limit: int) -> dict:
        email = get_email(alice, created["id"], ["bodyValues"], fetchTextBodyValues=True, maxBodyValueBytes=limit)
        return email["bodyValues"]["1.1"]

    # "Café": the é is 2 octets; 4 octets would cut it in half
    assert text_value(4) == {"value": "Caf", "isEncodingProblem": False, "isTruncated": True}
    assert text_value(5) == {"value": "Café", "isEncodingProblem": False, "isTruncated": True}
    full = "Café au lait costs €3. \nSecond line."
    assert text_value(len(full.encode())) == {"value": full, "isEncodingProblem": False, "isTruncated": False}
    assert text_value(0) == {"value": full, "isEncodingProblem": False, "isTruncated": False}
    # the € is 3 octets: cut before it, never in it
    cut = len("Café au lait costs ".encode()) + 2
    assert text_value(cut)["value"] == "Café au lait costs "


def test_max_body_value_bytes_does_not_cut_inside_an_html_tag(alice):
    mb = new_mailbox(alice)
    created = alice.import_message(fixture("qp-base64-bodies.eml"), mailbox=mb)
    for limit in (10, 25, 40):
        value = get_email(alice, created["id"], ["bodyValues"], fetchHTMLBodyValues=True,
                          maxBodyValueBytes=limit)["bodyValues"]["1.2"]
        assert value["isTruncated"] is True
        assert len(value["value"].encode()) <= limit
        assert "<html><body><p>Caf&eacute; au lait costs <b>&euro;3</b>.".startswith(value["value"])
        assert value["value"].rfind("<") <= value["value"].rfind(">"), value  # not inside a tag


def test_missing_closing_boundary_keeps_the_parts(alice):
    email, _ = import_fixture(alice, "missing-closing-boundary.eml", ["textBody", "attachments", "bodyValues"],
                              fetchTextBodyValues=True)
    assert part_ids(email["textBody"]) == ["1"]
    assert email["bodyValues"]["1"]["value"] == "First part."
    [tail] = email["attachments"]
    assert (tail["partId"], tail["name"]) == ("2", "tail.txt")
    assert download(alice, tail["blobId"]).startswith(b"Tail content without an end.")


def test_body_properties_select_part_properties_including_headers(alice):
    email, _ = import_fixture(alice, "nested-multipart.eml", ["attachments", "bodyStructure"],
                              bodyProperties=["partId", "type", "headers", "header:Content-ID",
                                              "header:Content-Type:asRaw"])
    image, pdf = email["attachments"]
    assert set(image) == {"partId", "type", "headers", "header:Content-ID", "header:Content-Type:asRaw"}
    assert image["header:Content-ID"] == " <logo@example.com>"
    assert image["header:Content-Type:asRaw"] == " image/png"
    assert [h["name"] for h in image["headers"]] == ["Content-Type", "Content-ID", "Content-Disposition",
                                                     "Content-Transfer-Encoding"]
    assert pdf["header:Content-ID"] is None
    assert email["bodyStructure"]["type"] == "multipart/mixed"
    assert len(email["bodyStructure"]["subParts"]) == 2


# ---------------------------------------------------------------- Email/import errors (§4.8)
def import_error(client: Jmap, spec: dict) -> dict:
    r = client.ok("Email/import", emails={"x": spec})
    assert r["created"] is None, r
    return r["notCreated"]["x"]


def test_import_of_an_unknown_blob_is_blob_not_found(alice):
    mb = new_mailbox(alice)
    missing = "G" + "0" * 64
    err = import_error(alice, {"blobId": missing, "mailboxIds": {mb: True}})
    assert err["type"] == "blobNotFound", err
    assert err.get("notFound") == [missing]


def test_import_lists_every_invalid_property(alice):
    blob = alice.upload(simple_message())
    err = import_error(alice, {"blobId": blob["blobId"], "mailboxIds": {"no-such-mailbox": True},
                               "keywords": {"bad keyword": True}, "receivedAt": "yesterday", "bogus": 1})
    assert err["type"] == "invalidProperties", err
    roots = {p.split("/")[0] for p in err["properties"]}
    assert roots == {"mailboxIds", "keywords", "receivedAt", "bogus"}, err


@pytest.mark.parametrize("spec", [{"mailboxIds": {}}, {"mailboxIds": None}, {"keywords": {"$seen": False}},
                                  {"receivedAt": "2024-01-01 10:00:00"}, {"keywords": ["$seen"]}])
def test_import_with_one_bad_property_is_invalid_properties(alice, spec):
    mb = new_mailbox(alice)
    blob = alice.upload(simple_message())
    err = import_error(alice, {"blobId": blob["blobId"], "mailboxIds": {mb: True}, **spec})
    assert err["type"] == "invalidProperties", err
    assert {p.split("/")[0] for p in err["properties"]} == set(spec), err


def test_importing_the_same_bytes_twice_is_already_exists(alice):
    mb = new_mailbox(alice)
    raw = simple_message()
    first = alice.import_message(raw, mailbox=mb)
    blob = alice.upload(raw)
    err = import_error(alice, {"blobId": blob["blobId"], "mailboxIds": {mb: True}})
    assert err["type"] == "alreadyExists", err
    assert err["existingId"] == first["id"]
    assert mailbox_counts(alice, mb)["totalEmails"] == 1


def test_the_same_bytes_import_again_after_the_email_was_destroyed(alice):
    mb = new_mailbox(alice)
    raw = simple_message()
    first = alice.import_message(raw, mailbox=mb)
    alice.ok("Email/set", destroy=[first["id"]])
    again = alice.import_message(raw, mailbox=mb, keywords={"$seen": True})
    assert again["id"] != first["id"]
    assert get_email(alice, again["id"], ["keywords", "mailboxIds"]) == {
        "id": again["id"], "keywords": {"$seen": True}, "mailboxIds": {mb: True}}
    assert mailbox_counts(alice, mb)["totalEmails"] == 1


def test_import_of_an_empty_blob_is_invalid_email(alice):
    mb = new_mailbox(alice)
    blob = alice.upload(b"")
    err = import_error(alice, {"blobId": blob["blobId"], "mailboxIds": {mb: True}})
    assert err["type"] == "invalidEmail", err


def test_import_of_another_users_blob_is_blob_not_found(alice, bob):
    mb = new_mailbox(alice)
    blob = bob.upload(simple_message(subject=unique("bob-only")))
    err = import_error(alice, {"blobId": blob["blobId"], "mailboxIds": {mb: True}})
    assert err["type"] == "blobNotFound", err
    assert err.get("notFound") == [blob["blobId"]]


def test_import_of_an_attached_message_by_its_part_blob_id(alice):
    """A body part's blobId is a blob like any other (RFC 8620 §6; RFC 8621 §4.1.4 "Attached messages may
    be fetched using Email/parse and the blobId"): importing the forwarded message of an email as an Email
    of its own must work, not answer blobNotFound for a blob that downloads fine."""
    mb = new_mailbox(alice)
    outer = alice.import_message(fixture("forwarded-rfc822.eml"), mailbox=mb)
    [attachment] = get_email(alice, outer["id"], ["attachments"])["attachments"]
    inner = download(alice, attachment["blobId"])
    r = alice.ok("Email/import", emails={"inner": {"blobId": attachment["blobId"], "mailboxIds": {mb: True}}})
    assert r["notCreated"] is None, r
    created = r["created"]["inner"]
    assert created["size"] == len(inner)
    email = get_email(alice, created["id"], ["subject", "from", "size", "blobId"])
    assert email["subject"] == "Original subject"
    assert email["from"] == [addr("Original Author", "orig@example.org")]
    assert download(alice, email["blobId"]) == inner


def test_import_into_a_mailbox_created_earlier_in_the_request(alice):
    blob = alice.upload(simple_message())
    a = alice.account_id
    resp = alice.request([
        ["Mailbox/set", {"accountId": a, "create": {"box": {"name": unique("mb")}}}, "0"],
        ["Email/import", {"accountId": a, "emails": {"e": {"blobId": blob["blobId"],
                                                           "mailboxIds": {"#box": True}}}}, "1"],
    ])["methodResponses"]
    box = resp[0][1]["created"]["box"]["id"]
    assert resp[1][0] == "Email/import" and resp[1][1]["notCreated"] is None, resp[1]
    email_id = resp[1][1]["created"]["e"]["id"]
    assert get_email(alice, email_id, ["mailboxIds"])["mailboxIds"] == {box: True}


def test_import_with_if_in_state_mismatch_is_state_mismatch(alice):
    mb = new_mailbox(alice)
    blob = alice.upload(simple_message())
    err = method_error(alice, "Email/import", ifInState="not-the-state",
                       emails={"x": {"blobId": blob["blobId"], "mailboxIds": {mb: True}}})
    assert err["type"] == "stateMismatch", err
    assert mailbox_counts(alice, mb)["totalEmails"] == 0


def test_several_imports_in_one_call_succeed_or_fail_independently(alice):
    mb = new_mailbox(alice)
    good = alice.upload(simple_message())["blobId"]
    r = alice.ok("Email/import", emails={"good": {"blobId": good, "mailboxIds": {mb: True}},
                                         "bad": {"blobId": good + "x", "mailboxIds": {mb: True}}})
    assert set(r["created"]) == {"good"} and set(r["notCreated"]) == {"bad"}
    assert mailbox_counts(alice, mb)["totalEmails"] == 1


# ---------------------------------------------------------------- Email/set (§4.6)
def set_ok(client: Jmap, **args) -> dict:
    return client.ok("Email/set", **args)


def test_set_keywords_replaces_the_whole_set(alice):
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb, keywords={"$seen": True, "old": True})
    r = set_ok(alice, update={e["id"]: {"keywords": {"$flagged": True, "new": True}}})
    assert r["updated"] == {e["id"]: None} or e["id"] in r["updated"], r
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == {"$flagged": True, "new": True}
    assert mailbox_counts(alice, mb)["unreadEmails"] == 1


def test_set_keywords_by_patch_adds_and_removes_one(alice):
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb, keywords={"$seen": True, "keep": True})
    set_ok(alice, update={e["id"]: {"keywords/$flagged": True, "keywords/$seen": None}})
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == {"$flagged": True, "keep": True}
    assert mailbox_counts(alice, mb) == {"totalEmails": 1, "unreadEmails": 1, "totalThreads": 1,
                                         "unreadThreads": 1}
    set_ok(alice, update={e["id"]: {"keywords/$seen": True}})
    assert mailbox_counts(alice, mb)["unreadEmails"] == 0


def test_concurrent_keyword_patches_are_all_applied(alice):
    """Each /set is one transaction: patches racing on the same email must not overwrite each other."""
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb)
    keywords = [f"k{i}" for i in range(24)]

    def add(keyword: str) -> None:
        client = Jmap(alice.server, "alice", "alice-pw")
        r = client.ok("Email/set", update={e["id"]: {f"keywords/{keyword}": True}})
        assert r["updated"] and e["id"] in r["updated"], r

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(add, keywords))
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == dict.fromkeys(keywords, True)


@pytest.mark.parametrize("patch", [{"keywords": {"bad keyword": True}}, {"keywords/$seen": False},
                                   {"keywords": {"$seen": "yes"}}, {"keywords/a(b": True}])
def test_set_invalid_keywords_is_invalid_properties(alice, patch):
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb)
    r = set_ok(alice, update={e["id"]: patch})
    assert r["updated"] is None or e["id"] not in r["updated"], r
    assert r["notUpdated"][e["id"]]["type"] == "invalidProperties", r
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == {}


def test_keyword_patch_paths_are_json_pointer_escaped(alice):
    """RFC 8620 §5.3: patch paths are JSON Pointers, so "/" in a keyword is "~1" and "~" is "~0"."""
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb)
    set_ok(alice, update={e["id"]: {"keywords/a~1b": True, "keywords/x~0y": True}})
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == {"a/b": True, "x~y": True}
    set_ok(alice, update={e["id"]: {"keywords/a~1b": None}})
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == {"x~y": True}


def test_patching_a_property_and_a_path_inside_it_is_invalid_patch(alice):
    """RFC 8620 §5.3: one pointer the prefix of another, or a pointer whose parent does not exist,
    makes the whole PatchObject invalid (invalidPatch); an unknown property is invalidProperties."""
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb)
    r = set_ok(alice, update={e["id"]: {"keywords": {"a": True}, "keywords/b": True}})
    assert r["notUpdated"][e["id"]]["type"] == "invalidPatch", r
    assert r["notUpdated"][e["id"]]["description"]
    r = set_ok(alice, update={e["id"]: {"keywords/a/b": True}})
    assert r["notUpdated"][e["id"]]["type"] == "invalidPatch", r
    r = set_ok(alice, update={e["id"]: {"nosuch/a": True}})
    assert r["notUpdated"][e["id"]]["type"] == "invalidProperties", r
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == {}


def test_unread_counts_treat_draft_as_read_and_follow_every_mailbox_of_the_email(alice):
    """RFC 8621 §2: unreadEmails counts Emails with neither $seen nor $draft, in every Mailbox they are in."""
    a, b = new_mailbox(alice), new_mailbox(alice)
    draft = alice.import_message(simple_message(), mailbox=a, keywords={"$draft": True})
    assert mailbox_counts(alice, a)["unreadEmails"] == 0
    e = alice.import_message(simple_message(), mailbox=a)
    set_ok(alice, update={e["id"]: {f"mailboxIds/{b}": True}})
    assert [mailbox_counts(alice, m)["unreadEmails"] for m in (a, b)] == [1, 1]
    set_ok(alice, update={e["id"]: {"keywords/$seen": True}, draft["id"]: {"keywords/$draft": None}})
    assert [mailbox_counts(alice, m)["unreadEmails"] for m in (a, b)] == [1, 0]
    assert [mailbox_counts(alice, m)["unreadThreads"] for m in (a, b)] == [1, 0]


def test_set_keywords_are_case_insensitive_and_returned_lowercase(alice):
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb)
    set_ok(alice, update={e["id"]: {"keywords": {"$Seen": True, "MyTag": True}}})
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == {"$seen": True, "mytag": True}
    set_ok(alice, update={e["id"]: {"keywords/$FLAGGED": True, "keywords/MYTAG": None}})
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == {"$seen": True, "$flagged": True}
    assert mailbox_counts(alice, mb)["unreadEmails"] == 0


def test_set_mailbox_ids_whole_and_by_patch_moves_the_email(alice):
    a, b, c = new_mailbox(alice), new_mailbox(alice), new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=a)
    set_ok(alice, update={e["id"]: {"mailboxIds": {b: True}}})
    assert get_email(alice, e["id"], ["mailboxIds"])["mailboxIds"] == {b: True}
    assert mailbox_counts(alice, a)["totalEmails"] == 0 and mailbox_counts(alice, b)["totalEmails"] == 1
    set_ok(alice, update={e["id"]: {f"mailboxIds/{c}": True, f"mailboxIds/{b}": None}})
    assert get_email(alice, e["id"], ["mailboxIds"])["mailboxIds"] == {c: True}
    set_ok(alice, update={e["id"]: {f"mailboxIds/{a}": True}})
    assert get_email(alice, e["id"], ["mailboxIds"])["mailboxIds"] == {a: True, c: True}
    assert [mailbox_counts(alice, m)["totalEmails"] for m in (a, b, c)] == [1, 0, 1]


def test_set_patch_into_a_mailbox_created_earlier_in_the_request(alice):
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb)
    a = alice.account_id
    resp = alice.request([
        ["Mailbox/set", {"accountId": a, "create": {"dest": {"name": unique("mb")}}}, "0"],
        ["Email/set", {"accountId": a, "update": {e["id"]: {"mailboxIds/#dest": True,
                                                           f"mailboxIds/{mb}": None}}}, "1"],
    ])["methodResponses"]
    dest = resp[0][1]["created"]["dest"]["id"]
    assert resp[1][1]["notUpdated"] is None, resp[1]
    assert get_email(alice, e["id"], ["mailboxIds"])["mailboxIds"] == {dest: True}
    assert mailbox_counts(alice, dest)["totalEmails"] == 1 and mailbox_counts(alice, mb)["totalEmails"] == 0


def test_thread_counts_follow_moves_and_destroys_within_a_thread(alice):
    mb, other = new_mailbox(alice), new_mailbox(alice)
    root = f"<{unique('root')}@example.com>"
    first = alice.import_message(simple_message(Message_ID=root), mailbox=mb, keywords={"$seen": True})
    reply = alice.import_message(simple_message(subject="Re: Hello", In_Reply_To=root), mailbox=mb)
    assert get_email(alice, first["id"], ["threadId"])["threadId"] == \
        get_email(alice, reply["id"], ["threadId"])["threadId"]
    assert mailbox_counts(alice, mb) == {"totalEmails": 2, "unreadEmails": 1, "totalThreads": 1,
                                         "unreadThreads": 1}
    set_ok(alice, update={reply["id"]: {"mailboxIds": {other: True}}})
    assert mailbox_counts(alice, mb) == {"totalEmails": 1, "unreadEmails": 0, "totalThreads": 1,
                                         "unreadThreads": 0}
    assert mailbox_counts(alice, other) == {"totalEmails": 1, "unreadEmails": 1, "totalThreads": 1,
                                            "unreadThreads": 1}
    set_ok(alice, update={reply["id"]: {"mailboxIds": {mb: True}}})
    set_ok(alice, destroy=[first["id"]])
    assert mailbox_counts(alice, mb) == {"totalEmails": 1, "unreadEmails": 1, "totalThreads": 1,
                                         "unreadThreads": 1}
    assert mailbox_counts(alice, other) == {"totalEmails": 0, "unreadEmails": 0, "totalThreads": 0,
                                            "unreadThreads": 0}


@pytest.mark.parametrize("which", ["patch", "whole", "unknown-mailbox", "false-value"])
def test_set_cannot_leave_an_email_without_a_valid_mailbox(alice, which):
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb)
    patch = {"patch": {f"mailboxIds/{mb}": None}, "whole": {"mailboxIds": {}},
             "unknown-mailbox": {"mailboxIds/no-such-mailbox": True},
             "false-value": {"mailboxIds": {mb: False}}}[which]
    r = set_ok(alice, update={e["id"]: patch})
    err = r["notUpdated"][e["id"]]
    assert err["type"] == "invalidProperties", err
    assert all(p.startswith("mailboxIds") for p in err["properties"]), err
    assert get_email(alice, e["id"], ["mailboxIds"])["mailboxIds"] == {mb: True}


@pytest.mark.parametrize("prop, value", [("subject", "changed"), ("size", 1), ("blobId", "Gx"),
                                         ("from", [{"name": None, "email": "x@example.com"}]),
                                         ("receivedAt", "2020-01-01T00:00:00Z")])
def test_set_of_an_immutable_property_is_invalid_properties(alice, prop, value):
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb)
    r = set_ok(alice, update={e["id"]: {prop: value}})
    err = r["notUpdated"][e["id"]]
    assert err["type"] == "invalidProperties" and err["properties"] == [prop], err
    assert get_email(alice, e["id"], ["subject"])["subject"] == "Hello"


def test_set_update_and_destroy_of_unknown_ids_are_not_found(alice):
    r = set_ok(alice, update={"Mnope0001": {"keywords": {}}}, destroy=["Mnope0002"])
    assert r["notUpdated"]["Mnope0001"]["type"] == "notFound"
    assert r["notDestroyed"]["Mnope0002"]["type"] == "notFound"
    assert r["updated"] is None and r["destroyed"] is None


def test_destroy_removes_the_email_and_updates_the_mailbox_counts(alice):
    mb = new_mailbox(alice)
    keep = alice.import_message(simple_message(), mailbox=mb, keywords={"$seen": True})
    gone = alice.import_message(simple_message(), mailbox=mb)
    assert mailbox_counts(alice, mb) == {"totalEmails": 2, "unreadEmails": 1, "totalThreads": 2,
                                         "unreadThreads": 1}
    r = set_ok(alice, destroy=[gone["id"]])
    assert r["destroyed"] == [gone["id"]]
    assert alice.ok("Email/get", ids=[gone["id"]], properties=["id"])["notFound"] == [gone["id"]]
    assert mailbox_counts(alice, mb) == {"totalEmails": 1, "unreadEmails": 0, "totalThreads": 1,
                                         "unreadThreads": 0}
    ids = alice.ok("Email/query", filter={"inMailbox": mb})["ids"]
    assert ids == [keep["id"]]
    # an email in two mailboxes leaves both
    other = new_mailbox(alice)
    set_ok(alice, update={keep["id"]: {f"mailboxIds/{other}": True}})
    set_ok(alice, destroy=[keep["id"]])
    assert mailbox_counts(alice, mb)["totalEmails"] == mailbox_counts(alice, other)["totalEmails"] == 0
    # destroying again: notFound
    assert set_ok(alice, destroy=[gone["id"]])["notDestroyed"][gone["id"]]["type"] == "notFound"


def test_set_with_if_in_state_mismatch_changes_nothing(alice):
    mb = new_mailbox(alice)
    e = alice.import_message(simple_message(), mailbox=mb)
    err = method_error(alice, "Email/set", ifInState="stale", update={e["id"]: {"keywords/$seen": True}})
    assert err["type"] == "stateMismatch", err
    assert get_email(alice, e["id"], ["keywords"])["keywords"] == {}
    state = alice.ok("Email/get", ids=[])["state"]
    r = set_ok(alice, ifInState=state, update={e["id"]: {"keywords/$seen": True}})
    assert r["oldState"] == state and r["newState"] != state


def test_set_create_a_draft_from_json_and_read_it_back(alice):
    mb = new_mailbox(alice)
    payload = b"%PDF-1.4 attachment bytes \x00\x01\x02\xff " + unique("pdf").encode()
    blob = alice.upload(payload, "application/pdf")
    r = set_ok(alice, create={"draft": {
        "mailboxIds": {mb: True}, "keywords": {"$draft": True, "$seen": True},
        "from": [{"name": "Alice Example", "email": "alice@example.com"}],
        "to": [{"name": "Bob Exämple", "email": "bob@example.com"}],
        "subject": "Draft with ünïcode and a longer subject line that will need folding somewhere or other",
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "htmlBody": [{"partId": "h", "type": "text/html"}],
        "bodyValues": {"t": {"value": "Hello Bob,\nsee the attachment. €"},
                       "h": {"value": "<p>Hello Bob,</p><p>see the attachment. €</p>"}},
        "attachments": [{"blobId": blob["blobId"], "type": "application/pdf", "name": "report ü.pdf"}],
    }})
    assert r["notCreated"] is None, r
    created = r["created"]["draft"]
    assert {"id", "blobId", "threadId", "size"} <= set(created)
    email = get_email(alice, created["id"], ALL_PROPERTIES, fetchTextBodyValues=True, fetchHTMLBodyValues=True)
    assert email["blobId"] == created["blobId"] and email["size"] == created["size"]
    assert email["threadId"] == created["threadId"]
    assert len(download(alice, email["blobId"])) == created["size"]
    assert email["mailboxIds"] == {mb: True}
    assert email["keywords"] == {"$draft": True, "$seen": True}
    assert email["from"] == [addr("Alice Example", "alice@example.com")]
    assert email["to"] == [addr("Bob Exämple", "bob@example.com")]
    assert email["subject"] == \
        "Draft with ünïcode and a longer subject line that will need folding somewhere or other"
    # §4.6: the server generates Message-ID and Date when not given
    assert email["messageId"] and len(email["messageId"]) == 1
    assert email["sentAt"] is not None
    assert abs((instant(email["sentAt"]) - datetime.now(UTC)).total_seconds()) < 300
    [text] = email["textBody"]
    [html] = email["htmlBody"]
    assert text["type"] == "text/plain" and html["type"] == "text/html"
    assert email["bodyValues"][text["partId"]]["value"] == "Hello Bob,\nsee the attachment. €"
    assert email["bodyValues"][html["partId"]]["value"] == "<p>Hello Bob,</p><p>see the attachment. €</p>"
    [attachment] = email["attachments"]
    assert (attachment["name"], attachment["type"]) == ("report ü.pdf", "application/pdf")
    assert attachment["size"] == len(payload)
    assert download(alice, attachment["blobId"], "report.pdf", "application/pdf") == payload
    assert email["hasAttachment"] is True
    assert email["preview"].startswith("Hello Bob,")
    assert mailbox_counts(alice, mb) == {"totalEmails": 1, "unreadEmails": 0, "totalThreads": 1,
                                         "unreadThreads": 0}


def test_set_create_sets_every_convenience_header_and_header_properties(alice):
    mb = new_mailbox(alice)
    parent = unique("parent") + "@example.com"
    r = set_ok(alice, create={"d": {
        "mailboxIds": {mb: True}, "receivedAt": "2022-05-06T07:08:09Z",
        "from": [{"name": "Ännchen", "email": "a@example.com"}],
        "sender": [{"name": None, "email": "s@example.com"}],
        "replyTo": [{"name": "Replies", "email": "r@example.com"}],
        "to": [{"name": "Smith, John", "email": "j@example.com"}, {"name": None, "email": "k@example.com"}],
        "cc": [{"name": "Cc Person", "email": "c@example.com"}],
        "bcc": [{"name": None, "email": "b@example.com"}],
        "subject": "Grüße – a subject",
        "sentAt": "2022-05-06T09:08:09+02:00",
        "messageId": [unique("own") + "@example.com"], "inReplyTo": [parent],
        "references": ["root@example.com", parent],
        "header:X-Custom:asText": "Value with ünïcode",
        "header:List-Unsubscribe:asURLs": ["mailto:leave@example.com", "https://example.com/leave"],
        "bodyValues": {"1": {"value": "Body."}},
        "textBody": [{"partId": "1", "type": "text/plain"}],
    }})
    assert r["notCreated"] is None, r
    created = r["created"]["d"]
    props = ["receivedAt", "from", "sender", "replyTo", "to", "cc", "bcc", "subject", "sentAt", "messageId",
             "inReplyTo", "references", "header:X-Custom:asText", "header:List-Unsubscribe:asURLs", "keywords"]
    email = get_email(alice, created["id"], props)
    assert email["receivedAt"] == "2022-05-06T07:08:09Z"
    assert email["from"] == [addr("Ännchen", "a@example.com")]
    assert email["sender"] == [addr(None, "s@example.com")]
    assert email["replyTo"] == [addr("Replies", "r@example.com")]
    assert email["to"] == [addr("Smith, John", "j@example.com"), addr(None, "k@example.com")]
    assert email["cc"] == [addr("Cc Person", "c@example.com")]
    assert email["bcc"] == [addr(None, "b@example.com")]
    assert email["subject"] == "Grüße – a subject"
    assert instant(email["sentAt"]) == datetime(2022, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert email["inReplyTo"] == [parent] and email["references"] == ["root@example.com", parent]
    assert len(email["messageId"]) == 1 and email["messageId"][0].startswith("own")
    assert email["header:X-Custom:asText"] == "Value with ünïcode"
    assert email["header:List-Unsubscribe:asURLs"] == ["mailto:leave@example.com", "https://example.com/leave"]
    assert email["keywords"] == {}


def test_set_create_from_a_body_structure(alice):
    mb = new_mailbox(alice)
    blob = alice.upload(b"col1,col2\r\n1,2\r\n" + unique("csv").encode(), "text/csv")
    r = set_ok(alice, create={"d": {
        "mailboxIds": {mb: True}, "subject": "structured",
        "bodyStructure": {"type": "multipart/mixed", "subParts": [
            {"type": "multipart/alternative", "subParts": [
                {"partId": "t", "type": "text/plain"},
                {"partId": "h", "type": "text/html"}]},
            {"blobId": blob["blobId"], "type": "text/csv", "name": "data.csv", "disposition": "attachment"}]},
        "bodyValues": {"t": {"value": "plain"}, "h": {"value": "<b>html</b>"}},
    }})
    assert r["notCreated"] is None, r
    email = get_email(alice, r["created"]["d"]["id"], ["bodyStructure", "textBody", "htmlBody", "attachments",
                                                       "bodyValues"], fetchAllBodyValues=True)
    root = email["bodyStructure"]
    assert root["type"] == "multipart/mixed"
    assert [p["type"] for p in root["subParts"]] == ["multipart/alternative", "text/csv"]
    assert [p["type"] for p in root["subParts"][0]["subParts"]] == ["text/plain", "text/html"]
    [text], [html], [att] = email["textBody"], email["htmlBody"], email["attachments"]
    assert email["bodyValues"][text["partId"]]["value"] == "plain"
    assert email["bodyValues"][html["partId"]]["value"] == "<b>html</b>"
    assert (att["name"], att["type"], att["disposition"]) == ("data.csv", "text/csv", "attachment")
    assert download(alice, att["blobId"]) == download(alice, blob["blobId"])


def test_set_create_forwards_an_attachment_of_another_email_by_its_part_blob_id(alice):
    mb = new_mailbox(alice)
    original = alice.import_message(fixture("nested-multipart.eml"), mailbox=mb)
    pdf = get_email(alice, original["id"], ["attachments"])["attachments"][1]
    r = set_ok(alice, create={"fw": {"mailboxIds": {mb: True}, "subject": "Fwd: the report",
                                     "textBody": [{"partId": "t", "type": "text/plain"}],
                                     "bodyValues": {"t": {"value": "Here it is."}},
                                     "attachments": [{"blobId": pdf["blobId"], "type": "application/pdf",
                                                      "name": "forwarded.pdf"}]}})
    assert r["notCreated"] is None, r
    [att] = get_email(alice, r["created"]["fw"]["id"], ["attachments"])["attachments"]
    assert att["name"] == "forwarded.pdf" and att["size"] == pdf["size"]
    assert download(alice, att["blobId"]) == download(alice, pdf["blobId"])


def test_set_create_of_a_byte_identical_message_is_not_silently_merged(alice):
    """Two creates that generate the same bytes (same Message-ID, Date and content): the second must either
    be a new Email with the mailboxIds and keywords it asked for, or be refused with alreadyExists naming
    the existing Email (RFC 8620 §5.3). Reporting it "created" under the first Email's id while dropping its
    mailboxIds and keywords misleads the client."""
    inbox_like, drafts_like = new_mailbox(alice), new_mailbox(alice)
    spec = {"subject": "same bytes", "messageId": [unique("same") + "@example.com"],
            "sentAt": "2024-01-01T00:00:00Z", "from": [{"name": None, "email": "a@example.com"}],
            "textBody": [{"partId": "1", "type": "text/plain"}], "bodyValues": {"1": {"value": "identical"}}}
    first = set_ok(alice, create={"a": {**spec, "mailboxIds": {inbox_like: True}}})["created"]["a"]
    r = set_ok(alice, create={"b": {**spec, "mailboxIds": {drafts_like: True}, "keywords": {"$draft": True}}})
    if r["notCreated"]:
        err = r["notCreated"]["b"]
        assert err["type"] == "alreadyExists" and err["existingId"] == first["id"], err
    else:
        second = r["created"]["b"]
        assert second["id"] != first["id"], (first, second)
        email = get_email(alice, second["id"], ["mailboxIds", "keywords"])
        assert email == {"id": second["id"], "mailboxIds": {drafts_like: True}, "keywords": {"$draft": True}}
    assert get_email(alice, first["id"], ["mailboxIds", "keywords"])["mailboxIds"] == {inbox_like: True}


def test_set_create_with_a_missing_blob_is_blob_not_found(alice):
    mb = new_mailbox(alice)
    missing = "G" + "1" * 64
    r = set_ok(alice, create={"d": {"mailboxIds": {mb: True}, "subject": "x",
                                    "attachments": [{"blobId": missing, "type": "application/pdf"}]}})
    err = r["notCreated"]["d"]
    assert err["type"] == "blobNotFound", err
    assert err["notFound"] == [missing]
    assert mailbox_counts(alice, mb)["totalEmails"] == 0


def test_set_create_into_a_mailbox_created_earlier_in_the_request(alice):
    name = unique("mb")
    a = alice.account_id
    resp = alice.request([
        ["Mailbox/set", {"accountId": a, "create": {"newbox": {"name": name}}}, "0"],
        ["Email/set", {"accountId": a, "create": {"mail": {
            "mailboxIds": {"#newbox": True}, "subject": "into a new mailbox",
            "textBody": [{"partId": "1", "type": "text/plain"}], "bodyValues": {"1": {"value": "hi"}}}}}, "1"],
        ["Email/get", {"accountId": a, "ids": ["#mail"], "properties": ["mailboxIds", "subject"]}, "2"],
    ])["methodResponses"]
    assert [r[0] for r in resp] == ["Mailbox/set", "Email/set", "Email/get"], resp
    mailbox_id = resp[0][1]["created"]["newbox"]["id"]
    assert resp[1][1]["notCreated"] is None, resp[1]
    email_id = resp[1][1]["created"]["mail"]["id"]
    assert resp[2][1]["list"] == [{"id": email_id, "mailboxIds": {mailbox_id: True},
                                   "subject": "into a new mailbox"}]


@pytest.mark.parametrize("create", [
    {"subject": "no mailbox"},
    {"mailboxIds": {"MB": True}, "headers": [{"name": "X", "value": "y"}]},
    {"mailboxIds": {"MB": True}, "from": [{"name": None, "email": "a@b.c"}], "header:From:asAddresses": []},
    {"mailboxIds": {"MB": True}, "header:Subject:asDate": "2024-01-01T00:00:00Z"},
    {"mailboxIds": {"MB": True}, "textBody": [{"partId": "missing", "type": "text/plain"}]},
    {"mailboxIds": {"MB": True}, "id": "Mforced"},
])
def test_set_create_with_invalid_properties_is_refused(alice, create):
    mb = new_mailbox(alice)
    create = {k: ({mb: True} if k == "mailboxIds" else v) for k, v in create.items()}
    r = set_ok(alice, create={"bad": create})
    assert r["created"] is None, r
    assert r["notCreated"]["bad"]["type"] == "invalidProperties", r
    assert mailbox_counts(alice, mb)["totalEmails"] == 0


# ---------------------------------------------------------------- Email/changes (§4.3)
def email_state(client: Jmap) -> str:
    return client.ok("Email/get", ids=[])["state"]


def changes(client: Jmap, since: str, **args) -> dict:
    return client.ok("Email/changes", sinceState=since, **args)


def test_changes_after_import_update_and_destroy(alice):
    mb = new_mailbox(alice)
    state0 = email_state(alice)
    a = alice.import_message(simple_message(), mailbox=mb)["id"]
    b = alice.import_message(simple_message(), mailbox=mb)["id"]
    r = changes(alice, state0)
    assert sorted(r["created"]) == sorted([a, b]) and r["updated"] == [] and r["destroyed"] == []
    assert r["hasMoreChanges"] is False and r["newState"] == email_state(alice) and r["oldState"] == state0
    state1 = r["newState"]

    set_ok(alice, update={a: {"keywords/$seen": True}})
    r = changes(alice, state1)
    assert (r["created"], r["updated"], r["destroyed"]) == ([], [a], [])
    state2 = r["newState"]

    other = new_mailbox(alice)
    state_move = email_state(alice)
    set_ok(alice, update={a: {"mailboxIds": {other: True}}})
    r = changes(alice, state_move)
    assert (r["created"], r["updated"], r["destroyed"]) == ([], [a], [])  # a move is an update
    state2 = r["newState"]

    set_ok(alice, destroy=[b])
    r = changes(alice, state2)
    assert (r["created"], r["updated"], r["destroyed"]) == ([], [], [b])
    assert changes(alice, r["newState"])["created"] == []

    # paging from the start, one change at a time
    seen_created, seen_updated, seen_destroyed = set(), set(), set()
    since, pages = state0, 0
    while True:
        r = changes(alice, since, maxChanges=1)
        assert len(r["created"]) + len(r["updated"]) + len(r["destroyed"]) <= 1, r
        seen_created |= set(r["created"])
        seen_updated |= set(r["updated"])
        seen_destroyed |= set(r["destroyed"])
        pages += 1
        assert pages < 20
        if not r["hasMoreChanges"]:
            break
        assert r["newState"] != since
        since = r["newState"]
    assert pages >= 2
    assert r["newState"] == email_state(alice)
    assert a in seen_created | seen_updated and a not in seen_destroyed
    # b was created and destroyed: it is either reported destroyed or not at all
    assert b in seen_destroyed or b not in seen_created | seen_updated


def test_changes_with_an_unknown_state_is_cannot_calculate_changes(alice):
    err = method_error(alice, "Email/changes", sinceState="not-a-state")
    assert err["type"] == "cannotCalculateChanges", err


# ---------------------------------------------------------------- Email/parse (§4.9)
def test_parse_an_uploaded_message_without_importing_it(alice):
    raw = fixture("rfc2047-headers.eml")
    blob = alice.upload(raw)
    state = email_state(alice)
    r = alice.ok("Email/parse", blobIds=[blob["blobId"], "G" + "2" * 64])
    assert r["notFound"] == ["G" + "2" * 64]
    assert r["notParsable"] in (None, [])
    parsed = r["parsed"][blob["blobId"]]
    # the default properties of Email/parse
    assert set(parsed) == {"messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
                           "replyTo", "subject", "sentAt", "hasAttachment", "preview", "bodyValues",
                           "textBody", "htmlBody", "attachments"}
    assert parsed["subject"] == "Café crème €4"
    assert parsed["from"] == [addr("André Pirard", "pirard@example.be")]
    assert parsed["messageId"] == ["rfc2047@example.be"]
    assert parsed["preview"] == "Bonjour."
    r = alice.ok("Email/parse", blobIds=[blob["blobId"]], properties=["id", "mailboxIds", "keywords",
                                                                      "receivedAt", "size", "blobId"])
    parsed = r["parsed"][blob["blobId"]]
    assert (parsed["id"], parsed["mailboxIds"], parsed["keywords"], parsed["receivedAt"]) == (None,) * 4
    assert parsed["size"] == len(raw) and parsed["blobId"] == blob["blobId"]
    # nothing was imported
    assert email_state(alice) == state


def test_parse_only_sees_the_callers_blobs(alice, bob):
    blob = bob.upload(simple_message(subject=unique("bob-private")))
    r = alice.ok("Email/parse", blobIds=[blob["blobId"]])
    assert r["notFound"] == [blob["blobId"]] and not r["parsed"]


def test_parse_with_a_forbidden_header_form_is_invalid_arguments(alice):
    blob = alice.upload(simple_message())
    err = method_error(alice, "Email/parse", blobIds=[blob["blobId"]], properties=["header:From:asDate"])
    assert err["type"] == "invalidArguments", err


# ---------------------------------------------------------------- malformed MIME never fails the server
def _nested(depth: int) -> bytes:
    head = b"Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    body = b""
    for i in range(1, depth):
        body += f"--b{i - 1}\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n".encode()
    body += f"--b{depth - 1}\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n".encode()
    return head + body


def _many_parts(n: int) -> bytes:
    parts = b"".join(f"--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n".encode() for i in range(n))
    return b"Subject: many\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n" + parts + b"--p--\r\n"


_rng = random.Random(8621)
MALFORMED = {
    "multipart-without-boundary": b"Subject: m\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n",
    "boundary-never-appears": b"Subject: m\r\nContent-Type: multipart/alternative; boundary=zz\r\n\r\nno parts\r\n",
    "nested-60-deep": _nested(60),
    "three-thousand-parts": _many_parts(3000),
    "garbage-base64": b"Subject: m\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!@@@###$$$%%%\r\nQQ=QQ==Q\r\n",
    "broken-quoted-printable": b"Subject: m\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=4=\r\n=",
    "header-line-without-colon": b"Subject: m\r\nThis line has no colon\r\nFrom: x@y\r\n\r\nbody\r\n",
    "nul-bytes": b"Subject: a\x00b\r\nFrom: \x00<x@y>\r\n\r\nbo\x00dy\r\n",
    "headers-only-no-body": b"Subject: only headers\r\nFrom: x@example.com",
    "bare-cr-line-endings": b"Subject: cr\rFrom: x@example.com\r\rbody\r",
    "bad-rfc2231-parameters": (b"Subject: m\r\nContent-Type: text/plain; charset*=bogus''%ZZ; name*0*=x''%E9;"
                               b" name*1=\"\r\nContent-Disposition: attachment; filename*=utf-8'%FF\r\n\r\nx\r\n"),
    "unknown-charset-encoded-word": b"Subject: =?x-nonexistent?Q?abc?= and =?utf-8?B?####?=\r\n\r\nbody\r\n",
    "garbage-date-and-addresses": b"Date: not a date at all\r\nFrom: <<<@@>>>, \"unterminated\r\nTo: ;;;,,,\r\n\r\nx\r\n",
    "empty-message-rfc822-part": (b"Subject: m\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n"
                                  b"Content-Type: message/rfc822\r\n\r\n--q--\r\n"),
    "random-binary": bytes(_rng.randrange(256) for _ in range(4096)),
    "content-type-garbage": b"Content-Type: ;;;/// ; = ; boundary\r\nContent-Disposition: \"\r\n\r\nx\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_mime_never_gives_server_fail(alice, name):
    mb = new_mailbox(alice)
    raw = f"X-Test-Run: {unique('bad')}\r\n".encode() + MALFORMED[name]
    blob = alice.upload(raw)["blobId"]
    r = alice.ok("Email/import", emails={"m": {"blobId": blob, "mailboxIds": {mb: True}}})
    if r["created"]:
        email_id = r["created"]["m"]["id"]
        resp = alice.request([["Email/get", {"accountId": alice.account_id, "ids": [email_id],
                                             "properties": ALL_PROPERTIES + ["header:Subject:asText",
                                                                             "header:From:asGroupedAddresses",
                                                                             "header:Date:asDate"],
                                             "bodyProperties": ALL_BODY_PROPERTIES, "fetchAllBodyValues": True,
                                             "maxBodyValueBytes": 7}, "g"]])["methodResponses"]
        assert resp[0][0] == "Email/get", resp[0]
        [email] = resp[0][1]["list"]
        assert len(email["preview"]) <= 256
        parts = leaves(email["bodyStructure"]) if email["bodyStructure"] else []
        for part in parts[:5] + parts[-2:]:
            assert len(download(alice, part["blobId"])) == part["size"]
    else:
        assert r["notCreated"]["m"]["type"] == "invalidEmail", r
    resp = alice.request([["Email/parse", {"accountId": alice.account_id, "blobIds": [blob],
                                           "fetchAllBodyValues": True}, "p"]])["methodResponses"]
    assert resp[0][0] == "Email/parse", resp[0]


def test_malformed_messages_still_give_what_can_be_parsed(alice):
    mb = new_mailbox(alice)
    lf_only = (f"Message-ID: <{unique('lf')}@example.com>\nSubject: LF only\nFrom: Lf <lf@example.com>\n\n"
               "line one\nline two\n").encode()
    created = alice.import_message(lf_only, mailbox=mb)
    email = get_email(alice, created["id"], ["subject", "from", "textBody", "bodyValues"],
                      fetchTextBodyValues=True)
    assert email["subject"] == "LF only"
    assert email["from"] == [addr("Lf", "lf@example.com")]
    assert email["bodyValues"][email["textBody"][0]["partId"]]["value"] == "line one\nline two\n"

    raw = f"X-Test-Run: {unique('bad')}\r\n".encode() + MALFORMED["garbage-date-and-addresses"]
    created = alice.import_message(raw, mailbox=mb)
    assert get_email(alice, created["id"], ["sentAt"])["sentAt"] is None



def test_encoded_word_with_unknown_charset_is_left_as_is(alice):
    """§4.1.2.2: only encoded words with a known charset are decoded."""
    mb = new_mailbox(alice)
    raw = simple_message(subject="=?x-nonexistent?Q?abc?= tail")
    created = alice.import_message(raw, mailbox=mb)
    assert get_email(alice, created["id"], ["subject"])["subject"] == "=?x-nonexistent?Q?abc?= tail"


def test_encoded_word_that_fails_to_decode_gives_a_replacement_character(alice):
    """§4.1.2.2 Text: "If any decodings fail, the parser SHOULD insert a unicode replacement character
    (U+FFFD) and attempt to continue as much as possible." "####" is not base64."""
    mb = new_mailbox(alice)
    raw = simple_message(subject="before =?utf-8?B?####?= after")
    created = alice.import_message(raw, mailbox=mb)
    subject = get_email(alice, created["id"], ["subject"])["subject"]
    assert subject.startswith("before ") and subject.endswith(" after"), subject
    assert "\ufffd" in subject, subject
