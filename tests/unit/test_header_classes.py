"""New members of the exactness classes (fixtures/cases, README of the cases), each fixed as a class:
MIME parameter values are RFC 2045 tokens (m05), the header section ends only at an empty line even
when its last line is damaged (m01), a msg-id whose bracket was lost anywhere is still read (m08), and
generated header lines are folded under 998 octets whatever the form (r03).  Unit tests on the parsing
and formatting functions, then end to end through a real server (Email/import, Email/set, Email/get)."""

from __future__ import annotations

import pytest

from app.mail import mime
from app.mail.headers import (
    format_addresses,
    format_grouped,
    parse_grouped_addresses,
    parse_message_ids,
    split_header_block,
)
from app.mail.params import parse_params
from tests.conftest import Jmap, unique


def body(raw: bytes) -> dict:
    return mime.body_properties(
        raw,
        want_structure=True,
        want_text=True,
        want_html=False,
        want_attachments=True,
        body_props=["partId", "type", "charset", "name"],
        fetch_text=False,
        fetch_html=False,
        fetch_all=True,
        max_bytes=0,
        blob_prefix="P",
    )


def download(client: Jmap, blob_id: str) -> bytes:
    url = (
        client.session["downloadUrl"]
        .replace("{accountId}", client.account_id)
        .replace("{blobId}", blob_id)
        .replace("{name}", "m.eml")
        .replace("{type}", "message/rfc822")
    )
    r = client.http.get(url)
    assert r.status_code == 200, r.text
    return r.content


def get(client: Jmap, email_id: str, properties: list[str], **args) -> dict:
    res = client.ok("Email/get", ids=[email_id], properties=properties, **args)
    assert res["notFound"] == [], res
    return res["list"][0]


# ------------------------------------------------------------------------- D1: parameter values are tokens


@pytest.mark.parametrize(
    "params",
    [
        "charset=iso-8859-1 format=flowed",
        "charset=iso-8859-1\tformat=flowed",
        'charset=iso-8859-1 "junk"',
        'charset=iso-8859-1\t"junk"',
        "charset=iso-8859-1,",
        'charset=iso-8859-1"',
        "charset=iso-8859-1\\r\\n",
        "charset = iso-8859-1  (Latin 1)",
        'charset="iso-8859-1" format=flowed',
    ],
)
def test_an_unquoted_value_ends_at_white_space_a_quote_or_a_comma_and_the_rest_is_junk(params):
    assert parse_params("text/plain; " + params) == ("text/plain", {"charset": "iso-8859-1"})


def test_junk_after_a_token_does_not_hide_the_next_parameter():
    assert parse_params("text/plain; charset=utf-8 junk; format=flowed junk; delsp=yes,") == (
        "text/plain",
        {"charset": "utf-8", "format": "flowed", "delsp": "yes"},
    )


@pytest.mark.parametrize(
    "value, params",
    [
        ("attachment; filename=report.pdf; junk", {"filename": "report.pdf"}),
        ("attachment; name=report.pdf,", {"name": "report.pdf"}),
        ('attachment; name=report.pdf "x"', {"name": "report.pdf"}),
        ("attachment; filename=report.pdf size=3", {"filename": "report.pdf"}),
        # a name is text a user reads: unquoted with spaces, the whole of it is the name
        ("attachment; filename=My Document.pdf", {"filename": "My Document.pdf"}),
        ("attachment; filename=My Document.pdf; size=3", {"filename": "My Document.pdf", "size": "3"}),
        ("attachment; filename*=utf-8''caf%C3%A9.txt junk", {"filename": "café.txt"}),
        ("attachment; filename*0*=utf-8''caf%C3 junk; filename*1*=%A9.txt\t\"x\"", {"filename": "café.txt"}),
        ("attachment; filename*0=long junk; filename*1=.txt,", {"filename": "long.txt"}),
        ('attachment; filename="quoted name.pdf" junk', {"filename": "quoted name.pdf"}),
    ],
)
def test_junk_after_a_parameter_value_is_dropped_and_a_name_keeps_its_spaces(value, params):
    assert parse_params(value) == ("attachment", params)


@pytest.mark.parametrize(
    "value, boundary",
    [
        ("multipart/mixed; boundary=----=_Part_1", "----=_Part_1"),  # bchars "=/:?" kept (RFC 2046 §5.1.1)
        ("multipart/mixed; boundary==_a/b:c?d.e", "=_a/b:c?d.e"),
        ("multipart/mixed; boundary=abc def", "abc"),  # a boundary may hold a space only when quoted
        ('multipart/mixed; boundary="abc def"', "abc def"),
    ],
)
def test_an_unquoted_boundary_ends_at_white_space_but_keeps_its_bchars(value, boundary):
    assert parse_params(value)[1]["boundary"] == boundary


LATIN1 = (
    b"From: a@example.org\r\nSubject: flowed\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1 format=flowed\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 cr\xe8me\r\n"
)


def test_a_charset_followed_by_junk_decodes_the_body_in_that_charset():
    b = body(LATIN1)
    assert b["bodyStructure"]["charset"] == "iso-8859-1"
    assert b["bodyValues"]["1"] == {"value": "Café crème\n", "isEncodingProblem": False, "isTruncated": False}


def test_a_boundary_followed_by_junk_still_splits_the_multipart():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b1 junk\r\n\r\n--b1\r\nContent-Type: text/plain;"
        b' charset=utf-8,\r\n\r\nhello\r\n--b1\r\nContent-Type: application/pdf; name=a.pdf "x"\r\n\r\n'
        b"PDF\r\n--b1--\r\n"
    )
    b = body(raw)
    assert [p["type"] for p in b["bodyStructure"]["subParts"]] == ["text/plain", "application/pdf"]
    assert b["textBody"][0]["charset"] == "utf-8"
    assert b["attachments"][0]["name"] == "a.pdf"


# ------------------------------------------------------------------------- D2: an odd last header line

HEAD = (
    b"From: Carol <c@example.org>\r\nTo: b@example.org\r\nSubject: Quarterly numbers\r\n"
    b"Message-ID: <oddlast@example.org>\r\nDate: Mon, 3 Feb 2020 08:59:00 +0000\r\n"
)
ODD_LAST = [
    b"X Mailer: Foo 1.0",
    b"S\xc3\xbcbject: x",
    b"=?utf-8?q?_numbers?=",
    b"X-Junk-Without-Colon",
    b"Content Transfer Encoding: 8bit",
    b"From carol@example.org  Mon Feb  3 09:00:00 2020",
]


@pytest.mark.parametrize("odd", ODD_LAST)
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_an_odd_last_line_of_the_header_is_a_defect_and_skipped(odd, eol):
    raw = (HEAD + odd + b"\r\n\r\nThe numbers are attached.\r\n").replace(b"\r\n", eol)
    defects: list[str] = []
    fields, start = split_header_block(raw, 0, None, defects)
    assert [n for n, _ in fields] == ["From", "To", "Subject", "Message-ID", "Date"]
    assert raw[start:] == b"The numbers are attached." + eol
    assert any(d.startswith("header-stray-line") for d in defects)
    s = mime.parse_summary(raw)
    assert s["preview"] == "The numbers are attached."
    assert (s["subject"], s["messageId"], s["sentAt"]) == (
        "Quarterly numbers",
        ["oddlast@example.org"],
        "2020-02-03T08:59:00Z",
    )
    assert s["from"] == [{"name": "Carol", "email": "c@example.org"}]


def test_several_odd_lines_at_the_end_of_the_header_are_all_skipped():
    raw = HEAD + b"X Mailer: Foo 1.0\r\nX-Junk\r\nReply To: d@example.org\r\n\r\nbody\r\n"
    assert mime.parse_summary(raw)["preview"] == "body"


def test_an_odd_last_line_of_a_parts_header_is_not_its_text():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content Disposition: inline\r\n\r\nJust the text.\r\n--b--\r\n"
    )
    assert body(raw)["bodyValues"]["1"]["value"] == "Just the text."
    assert mime.parse_summary(raw)["preview"] == "Just the text."


@pytest.mark.parametrize(
    "raw, preview",
    [
        (b"Subject: x\r\nHi Bob,\r\nRe: your question\r\nThanks\r\n", "Hi Bob, Re: your question Thanks"),
        (b"Subject: x\r\nHi Bob,\r\n\r\nThe numbers.\r\n", "Hi Bob, The numbers."),  # plain text, not a field
        (
            b"Subject: x\r\nDear Bob:\r\n\r\nThe numbers.\r\n",
            "Dear Bob: The numbers.",
        ),  # no value after the colon
        (b"Subject: x\r\nX-Junk\r\nand the text goes on\r\n\r\nmore\r\n", "X-Junk and the text goes on more"),
        (
            b"Subject: x\r\nX Mailer: Foo 1.0\r\nThe numbers.\r\n",
            "X Mailer: Foo 1.0 The numbers.",
        ),  # no empty line
    ],
)
def test_a_body_without_its_empty_line_keeps_its_first_line_where_that_is_unambiguous(raw, preview):
    s = mime.parse_summary(raw)
    assert (s["subject"], s["preview"]) == ("x", preview)


def test_a_damaged_first_line_with_no_field_before_it_is_not_a_header():
    fields, start = split_header_block(b"X Mailer: Foo 1.0\r\n\r\nbody\r\n")
    assert (fields, start) == ([], 0)


# ------------------------------------------------------------------------- D6: a lost bracket anywhere


@pytest.mark.parametrize(
    "value, ids",
    [
        (
            "<older@example.org> <agenda.root@example.org <other@example.org>",
            ["older@example.org", "agenda.root@example.org", "other@example.org"],
        ),
        ("<a@x> b@y> <c@z>", ["a@x", "b@y", "c@z"]),
        ("<a@x><b@y <c@z", ["a@x", "b@y", "c@z"]),
        ("<a@x>b@y>\t<c@z>", ["a@x", "b@y", "c@z"]),
        ("<a@x>\r\n <b@y\r\n <c@z>", ["a@x", "b@y", "c@z"]),
        ("<a@x> (a comment <z@q) <c@z", ["a@x", "c@z"]),
        ("<a@x> <no-at-sign <c@z>", ["a@x", "c@z"]),  # no "@": not an id
        ("<a@x> b@y <c@z>", ["a@x", "c@z"]),  # no bracket at all in the middle: a phrase word, not an id
        ("<a b@example.org", None),  # still ambiguous
    ],
)
def test_a_msg_id_whose_bracket_was_lost_anywhere_is_still_read(value, ids):
    assert parse_message_ids(value) == ids


@pytest.mark.parametrize(
    "field, prop", [("Message-ID", "messageId"), ("In-Reply-To", "inReplyTo"), ("References", "references")]
)
def test_message_id_in_reply_to_and_references_are_repaired_alike(field, prop):
    raw = f"Subject: x\r\n{field}: <a@x> <b@y <c@z>\r\n\r\nbody\r\n".encode()
    assert mime.parse_summary(raw)[prop] == ["a@x", "b@y", "c@z"]


# ------------------------------------------------------------------------- D10/D11: folded, never over 998


def _lines(header: str) -> list[str]:
    return header.split("\r\n")


def test_a_long_group_is_folded_between_its_addresses():
    groups = [
        {
            "name": "Project team",
            "addresses": [{"name": None, "email": f"member{i:03d}@example.org"} for i in range(60)],
        }
    ]
    header = "To:" + " " + format_grouped(groups, 4)
    assert max(len(line) for line in _lines(header)) <= 78
    assert parse_grouped_addresses(header[3:]) == groups


def test_a_long_ascii_name_is_folded_at_its_spaces():
    for name in (" ".join(["word"] * 250), 'Team "A", ' + " ".join(["word"] * 250)):  # plain and quoted
        addresses = [{"name": name, "email": "x@example.org"}]
        header = "To: " + format_addresses(addresses, 4)
        assert max(len(line) for line in _lines(header)) <= 78
        assert parse_grouped_addresses(header[3:]) == [{"name": None, "addresses": addresses}]


def test_groups_with_long_names_empty_groups_and_loose_addresses_fold_and_read_back():
    long = " ".join(["word"] * 100)
    groups = [
        {"name": None, "addresses": [{"name": "A", "email": "a@example.org"}]},
        {"name": "Empty", "addresses": []},
        {
            "name": long,
            "addresses": [
                {"name": long, "email": "b@example.org"},
                {"name": "Zoë " + long, "email": "c@example.org"},
            ],
        },
    ]
    header = "Cc: " + format_grouped(groups, 4)
    assert max(len(line.encode()) for line in _lines(header)) <= 78
    assert parse_grouped_addresses(header[3:]) == groups


# ------------------------------------------------------------------------- end to end


def test_email_import_reads_a_charset_with_junk_and_a_damaged_last_header_line(alice):
    raw = (
        HEAD.replace(b"oddlast@", unique().encode() + b"@")
        + b"Content-Type: text/plain; charset=iso-8859-1 format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"X Mailer: Foo 1.0\r\n\r\nCaf\xe9 cr\xe8me, the numbers are attached.\r\n"
    )
    created = alice.import_message(raw)
    email = get(
        alice,
        created["id"],
        ["subject", "from", "sentAt", "preview", "bodyStructure", "bodyValues"],
        fetchAllBodyValues=True,
        bodyProperties=["partId", "type", "charset"],
    )
    assert email["subject"] == "Quarterly numbers"
    assert email["from"] == [{"name": "Carol", "email": "c@example.org"}]
    assert email["sentAt"] == "2020-02-03T08:59:00Z"
    assert email["preview"] == "Café crème, the numbers are attached."
    assert email["bodyStructure"]["charset"] == "iso-8859-1"
    assert email["bodyValues"]["1"]["value"].startswith("Café crème, the numbers")
    assert email["bodyValues"]["1"]["isEncodingProblem"] is False


def test_a_reply_whose_references_lost_a_bracket_in_the_middle_joins_its_thread(alice):
    root = f"agenda.root.{unique()}@example.org"
    original = alice.import_message(
        (
            f"From: q@example.org\r\nSubject: Agenda\r\nMessage-ID: <{root}>\r\n"
            "Date: Mon, 3 Feb 2020 08:00:00 +0000\r\n\r\nAgenda\r\n"
        ).encode()
    )
    reply = alice.import_message(
        (
            f"From: r@example.org\r\nSubject: Re: Agenda\r\nMessage-ID: <r.{unique()}@x>\r\n"
            f"References: <older.{unique()}@example.org> <{root} <other@example.org>\r\n"
            "Date: Mon, 3 Feb 2020 09:00:00 +0000\r\n\r\nFine\r\n"
        ).encode()
    )
    email = get(alice, reply["id"], ["threadId", "references"])
    assert email["references"][1:] == [root, "other@example.org"]
    assert email["threadId"] == original["threadId"]


def _create(client: Jmap, **props) -> tuple[dict, bytes]:
    res = client.ok(
        "Email/set",
        create={
            "d": {
                "mailboxIds": {client.mailbox("drafts"): True},
                "from": [{"name": None, "email": "alice@example.com"}],
                "subject": "folding",
                "bodyValues": {"t": {"value": "text"}},
                "textBody": [{"partId": "t", "type": "text/plain"}],
                **props,
            }
        },
    )
    assert res["created"] and "d" in res["created"], res
    created = res["created"]["d"]
    return created, download(client, created["blobId"])


def test_email_set_create_folds_a_group_of_sixty_addresses(alice):
    groups = [
        {
            "name": "Project team",
            "addresses": [{"name": None, "email": f"member{i:03d}@example.org"} for i in range(60)],
        }
    ]
    created, raw = _create(alice, **{"header:To:asGroupedAddresses": groups})
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert raw.count(b"\r\n member") > 1  # folded between addresses
    email = get(alice, created["id"], ["header:To:asGroupedAddresses", "to"])
    assert email["header:To:asGroupedAddresses"] == groups
    assert email["to"] == groups[0]["addresses"]


def test_email_set_create_folds_a_long_ascii_name_at_its_spaces(alice):
    to = [{"name": " ".join(["word"] * 250), "email": "x@example.org"}]
    created, raw = _create(alice, to=to)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert get(alice, created["id"], ["to"])["to"] == to
