"""Unit tests for app.mail.mime / app.mail.headers (RFC 8621 §4.1 Email parsing)."""

from __future__ import annotations

import base64
import time

import pytest

from app.mail import mime
from app.mail.headers import decode_rfc2047, parse_grouped_addresses
from app.mail.mime import (
    body_properties,
    build_message,
    extract_part,
    header_value,
    is_valid_header_form,
    message_text,
    parse_headers,
    parse_summary,
)

# --------------------------------------------------------------------------------------
# Fixture builders
# --------------------------------------------------------------------------------------


def msg(*header_lines: str, body: bytes | str = b"") -> bytes:
    """A message/entity from header lines ("Name: value") and a body, CRLF everywhere."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    head = "".join(h + "\r\n" for h in header_lines).encode("utf-8")
    return head + b"\r\n" + body


def multipart(subtype: str, boundary: str, parts: list[bytes], *headers: str, close: bool = True) -> bytes:
    body = b"This is a multi-part message in MIME format.\r\n"
    for p in parts:
        body += b"--" + boundary.encode() + b"\r\n" + p + b"\r\n"
    if close:
        body += b"--" + boundary.encode() + b"--\r\n"
    return msg(*headers, f'Content-Type: multipart/{subtype}; boundary="{boundary}"', body=body)


def body(raw: bytes, **kw) -> dict:
    args = dict(
        want_structure=True,
        want_text=True,
        want_html=True,
        want_attachments=True,
        body_props=None,
        fetch_text=False,
        fetch_html=False,
        fetch_all=False,
        max_bytes=0,
        blob_prefix="B.",
    )
    args.update(kw)
    return body_properties(raw, **args)


def ids(parts: list[dict]) -> list[str]:
    return [p["partId"] for p in parts]


SUMMARY_KEYS = {
    "size", "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo",
    "subject", "sentAt", "hasAttachment", "preview", "thread_ids", "normalized_subject", "defects",
    "outline",
}  # fmt: skip

SIMPLE = msg(
    "Return-Path: <bounce@example.com>",
    "From: Alice Example <alice@example.com>",
    "To: Bob <bob@example.org>, carol@example.net",
    "Cc: \"Smith, Dave\" <dave@example.org>",
    "Subject: Lunch\r\n on Friday?",
    "Date: Fri, 02 Feb 2024 13:14:15 +0100",
    "Message-ID: <Lunch.123@Example.COM>",
    "X-Custom: first",
    "X-Custom:  second value ",
    body="Hi Bob,\r\n\r\nlunch   on\tFriday at noon?\r\n\r\nAlice\r\n",
)

ALTERNATIVE = multipart(
    "alternative",
    "alt-1",
    [
        msg("Content-Type: text/plain; charset=utf-8", body="Plain version"),
        msg("Content-Type: text/html; charset=utf-8", body="<html><body><p>HTML <b>version</b></p></body></html>"),
    ],
    "From: a@example.com",
    "Subject: Alternative",
    "MIME-Version: 1.0",
)

PDF_BYTES = b"%PDF-1.4\n" + bytes(range(256)) * 4
MIXED = multipart(
    "mixed",
    "mix-1",
    [
        msg("Content-Type: text/plain; charset=us-ascii", body="See attached report."),
        msg(
            'Content-Type: application/pdf; name="report.pdf"',
            'Content-Disposition: attachment; filename="report.pdf"',
            "Content-Transfer-Encoding: base64",
            body=base64.encodebytes(PDF_BYTES).replace(b"\n", b"\r\n"),
        ),
    ],
    "From: a@example.com",
    "Subject: Report",
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
RELATED_IN_ALT = multipart(
    "alternative",
    "alt-2",
    [
        msg("Content-Type: text/plain; charset=utf-8", body="Look at the logo"),
        multipart(
            "related",
            "rel-2",
            [
                msg("Content-Type: text/html; charset=utf-8", body='<p>Look at the <img src="cid:logo@x"></p>'),
                msg(
                    "Content-Type: image/png",
                    "Content-ID: <logo@x>",
                    "Content-Disposition: inline",
                    "Content-Transfer-Encoding: base64",
                    body=base64.b64encode(PNG),
                ),
            ],
        ),
    ],
    "From: a@example.com",
    "Subject: Logo",
)

INNER = msg(
    "From: Inner Sender <inner@example.com>",
    "Subject: The inner message",
    "Message-ID: <inner@example.com>",
    body="Inner body\r\n",
)
RFC822 = multipart(
    "mixed",
    "fwd-1",
    [
        msg("Content-Type: text/plain", body="Forwarding this."),
        msg("Content-Type: message/rfc822", "Content-Disposition: attachment", body=INNER),
    ],
    "From: a@example.com",
    "Subject: Fwd: The inner message",
)


# --------------------------------------------------------------------------------------
# parse_summary
# --------------------------------------------------------------------------------------


def test_summary_simple_plain_text():
    s = parse_summary(SIMPLE)
    assert set(s) == SUMMARY_KEYS
    assert s["size"] == len(SIMPLE)
    assert s["from"] == [{"name": "Alice Example", "email": "alice@example.com"}]
    assert s["to"] == [
        {"name": "Bob", "email": "bob@example.org"},
        {"name": None, "email": "carol@example.net"},
    ]
    assert s["cc"] == [{"name": "Smith, Dave", "email": "dave@example.org"}]
    assert s["bcc"] is None and s["sender"] is None and s["replyTo"] is None
    assert s["subject"] == "Lunch on Friday?"
    assert s["sentAt"] == "2024-02-02T13:14:15+01:00"
    assert s["messageId"] == ["Lunch.123@Example.COM"]
    assert s["inReplyTo"] is None and s["references"] is None
    assert s["hasAttachment"] is False
    assert s["preview"] == "Hi Bob, lunch on Friday at noon? Alice"
    assert s["thread_ids"] == ["lunch.123@example.com"]
    assert s["normalized_subject"] == "lunch on friday?"
    assert s["defects"] == []


def test_summary_threading_fields():
    raw = msg(
        "Subject: RE: Fwd: [dev-list] AW: WG:  Release   plan",
        "Message-ID: <C@x>",
        "In-Reply-To: <B@X>",
        "References: <A@x>\r\n <b@x> (comment) <C@x>",
        body="x",
    )
    s = parse_summary(raw)
    assert s["inReplyTo"] == ["B@X"]
    assert s["references"] == ["A@x", "b@x", "C@x"]
    assert s["thread_ids"] == ["c@x", "b@x", "a@x"]
    assert s["normalized_subject"] == "aw: wg: release plan"  # RFC 5256: localized prefixes stay


@pytest.mark.parametrize(
    "subject, expected",
    [
        ("Re: Re: hello", "hello"),
        ("Fw: hello", "hello"),
        ("Re[2]: hello", "hello"),
        ("[PATCH v2] Re: fix it", "fix it"),
        ("Sv: Antw: hej", "sv: antw: hej"),  # RFC 5256 removes only Re/Fw/Fwd
        ("hello (fwd)", "hello"),
        ("Regarding: stays", "regarding: stays"),
        ("", ""),
    ],
)
def test_normalized_subject(subject, expected):
    assert parse_summary(msg(f"Subject: {subject}", body="x"))["normalized_subject"] == expected


def test_summary_missing_headers():
    s = parse_summary(msg("X-Only: 1", body="just a body"))
    for key in ("from", "to", "cc", "subject", "sentAt", "messageId", "inReplyTo"):
        assert s[key] is None, key
    assert s["thread_ids"] == []
    assert s["normalized_subject"] == ""
    assert s["preview"] == "just a body"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n",
        b"no headers at all, just text",
        b"Subject: only headers, no body",
        b"\xff\xfe\x00garbage\x80\x81",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\ntrunc",
        b"Content-Type: text/plain; charset=\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64",
        b"From: <<<>>> ,,, ;;; :::\r\nTo: \"unterminated\r\nDate: 99 Foo 99999 99:99:99\r\n\r\nx",
    ],
)
def test_never_raises_on_malformed_input(raw):
    s = parse_summary(raw)
    assert set(s) == SUMMARY_KEYS
    assert s["size"] == len(raw)
    assert isinstance(s["preview"], str) and len(s["preview"]) <= 256
    b = body(raw, fetch_all=True)
    assert "bodyStructure" in b and isinstance(b["bodyValues"], dict)
    assert isinstance(message_text(raw)["body"], str)
    assert isinstance(parse_headers(raw), list)


def test_no_body_and_empty_message():
    s = parse_summary(b"Subject: only headers\r\n")
    assert s["subject"] == "only headers"
    assert s["preview"] == ""
    s = parse_summary(b"")
    assert s["size"] == 0 and s["subject"] is None


def test_summary_multipart_alternative():
    s = parse_summary(ALTERNATIVE)
    assert s["preview"] == "Plain version"
    assert s["hasAttachment"] is False


def test_summary_html_only_preview_is_stripped():
    raw = msg(
        "Content-Type: text/html; charset=utf-8",
        body="<html><head><title>T</title><style>p {color: red}</style><script>var x = 1;</script></head>"
        "<body><p>Hello&nbsp;<b>w&ouml;rld</b> &amp; friends</p><!-- hidden --></body></html>",
    )
    assert parse_summary(raw)["preview"] == "Hello wörld & friends"


def test_preview_is_capped_at_256_characters():
    raw = msg("Content-Type: text/plain", body=("word " * 500))
    preview = parse_summary(raw)["preview"]
    assert len(preview) == 256
    assert preview.startswith("word word")


def test_summary_mixed_with_attachment():
    s = parse_summary(MIXED)
    assert s["hasAttachment"] is True
    assert s["preview"] == "See attached report."


def test_summary_embedded_image_is_not_an_attachment():
    s = parse_summary(RELATED_IN_ALT)
    assert s["hasAttachment"] is False
    assert s["preview"] == "Look at the logo"


def test_summary_inline_pdf_counts_as_attachment():
    raw = multipart(
        "mixed",
        "b",
        [
            msg("Content-Type: text/plain", body="text"),
            msg("Content-Type: application/pdf", "Content-Disposition: inline; filename=a.pdf", body="%PDF"),
        ],
    )
    assert parse_summary(raw)["hasAttachment"] is True


def test_summary_rfc822_attachment():
    s = parse_summary(RFC822)
    assert s["hasAttachment"] is True
    assert s["preview"] == "Forwarding this."


def test_rfc2047_subjects_and_names():
    raw = msg(
        "From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
        "To: =?UTF-8?B?5pel5pys6Kqe?= <jp@example.jp>, =?iso-8859-1?b?Sm/rbA==?= <joel@example.com>",
        "Cc: \"=?utf-8?q?Z=C3=BCrich?=\" <z@example.ch>",
        "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?= =?ISO-8859-1?B?IOQ=?= und so",
        body="x",
    )
    s = parse_summary(raw)
    assert s["from"] == [{"name": "André Pirard", "email": "PIRARD@vm1.ulg.ac.be"}]
    assert s["to"] == [
        {"name": "日本語", "email": "jp@example.jp"},
        {"name": "Joël", "email": "joel@example.com"},
    ]
    assert s["cc"] == [{"name": "Zürich", "email": "z@example.ch"}]
    assert s["subject"] == "Grüße aus Köln ä und so"


def test_rfc2047_rules():
    # Multi-byte character split across two encoded words.
    e_acute = "é".encode()
    w1 = "=?utf-8?b?" + base64.b64encode(b"caf" + e_acute[:1]).decode() + "?="
    w2 = "=?utf-8?b?" + base64.b64encode(e_acute[1:]).decode() + "?="
    assert decode_rfc2047(f"{w1} {w2}") == "café"
    # Glued to other text: must NOT be decoded (§4.1.2.2).
    assert decode_rfc2047("foo=?utf-8?q?bar?=") == "foo=?utf-8?q?bar?="
    # Unknown charset: left alone.
    assert decode_rfc2047("=?x-klingon?q?abc?=") == "=?x-klingon?q?abc?="
    # Encoded control characters are dropped.
    assert decode_rfc2047("=?utf-8?q?a=00=07b?=") == "ab"
    # Whitespace between adjacent encoded words disappears, other text keeps its spaces.
    assert decode_rfc2047("=?utf-8?q?a?=  =?utf-8?q?b?= c") == "ab c"


def test_raw_8bit_utf8_headers():
    raw = "From: Jörg Müller <jörg@exämple.de>\r\nSubject: Grüße 🎉\r\n\r\nbody".encode()
    s = parse_summary(raw)
    assert s["subject"] == "Grüße 🎉"
    assert s["from"] == [{"name": "Jörg Müller", "email": "jörg@exämple.de"}]
    assert s["defects"] == []


def test_invalid_8bit_header_bytes_become_replacement_chars():
    raw = b"Subject: caf\xe9 ok\r\nX-Nul: a\x00b\r\n\r\nbody"
    s = parse_summary(raw)
    assert s["subject"] == "caf\ufffd ok"
    assert any("Subject" in d for d in s["defects"])
    assert parse_headers(raw)[1] == {"name": "X-Nul", "value": " ab"}


def test_huge_header_is_handled_quickly():
    addresses = ", ".join(f"User {i} <user{i}@example.com>" for i in range(3500))
    raw = msg(f"To: {addresses}", "Subject: " + "long " * 20000, body="b")
    assert len(raw) > 100_000
    start = time.perf_counter()
    s = parse_summary(raw)
    elapsed = time.perf_counter() - start
    assert len(s["to"]) == 3500
    assert s["to"][-1] == {"name": "User 3499", "email": "user3499@example.com"}
    assert s["subject"].startswith("long long")
    assert elapsed < 2.0


def test_summary_speed_typical_message():
    raw = MIXED
    start = time.perf_counter()
    for _ in range(200):
        parse_summary(raw)
    per_message = (time.perf_counter() - start) / 200
    assert per_message < 0.005  # target is well under 1 ms; generous for slow CI


def test_missing_closing_boundary():
    raw = multipart(
        "mixed",
        "open",
        [
            msg("Content-Type: text/plain", body="first part"),
            msg("Content-Type: text/plain", "Content-Disposition: attachment; filename=b.txt", body="second"),
        ],
        close=False,
    )
    s = parse_summary(raw)
    assert any("missing closing boundary" in d for d in s["defects"])
    assert s["preview"] == "first part"
    b = body(raw, fetch_all=True)
    assert ids(b["attachments"]) == ["2"]
    assert b["bodyValues"]["2"]["value"] == "second\n"


def test_multipart_without_boundary_keeps_its_type_and_shows_its_body_as_one_text_part():
    raw = msg("Content-Type: multipart/mixed", body="visible text")
    s = parse_summary(raw)
    assert s["preview"] == "visible text"
    assert any("boundary" in d for d in s["defects"])
    b = body(raw)
    assert b["bodyStructure"]["type"] == "multipart/mixed"  # type is always the part's own
    assert b["bodyStructure"]["partId"] is None
    [inner] = b["bodyStructure"]["subParts"]
    assert (inner["type"], inner["partId"]) == ("text/plain", "1")


def test_deep_nesting_does_not_crash():
    raw = msg("Content-Type: text/plain", body="deep")
    for i in range(200):
        raw = multipart("mixed", f"b{i}", [raw])
    s = parse_summary(raw)
    assert set(s) == SUMMARY_KEYS
    assert any("nested too deeply" in d for d in s["defects"])


def test_truncated_message_prefixes_never_raise():
    for raw in (MIXED, RELATED_IN_ALT, RFC822):
        for cut in range(0, len(raw), 37):
            part = raw[:cut]
            assert parse_summary(part)["size"] == cut
            body(part, fetch_all=True, max_bytes=10)
            extract_part(part, "2")


def test_boundary_prefix_of_another_boundary():
    inner = multipart(
        "alternative",
        "abcdef",
        [msg("Content-Type: text/plain", body="p"), msg("Content-Type: text/html", body="<b>h</b>")],
    )
    raw = multipart("mixed", "abc", [inner, msg("Content-Type: image/gif", "Content-Disposition: attachment", body="GIF89a")])
    b = body(raw)
    assert ids(b["textBody"]) == ["1.1"]
    assert ids(b["htmlBody"]) == ["1.2"]
    assert ids(b["attachments"]) == ["2"]


def test_bare_lf_line_endings():
    raw = (
        b"Subject: lf\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\n"
        b"hello\n--zz\nContent-Type: text/csv\nContent-Disposition: attachment; filename=a.csv\n\na,b\n--zz--\n"
    )
    s = parse_summary(raw)
    assert s["subject"] == "lf" and s["preview"] == "hello"
    assert extract_part(raw, "2") == (b"a,b", "text/csv", "a.csv")


def test_mbox_from_line_is_skipped():
    raw = b"From alice@example.com Thu Jan  1 00:00:00 2024\r\nSubject: mbox\r\n\r\nbody"
    assert parse_summary(raw)["subject"] == "mbox"
    assert [h["name"] for h in parse_headers(raw)] == ["Subject"]


# --------------------------------------------------------------------------------------
# headers / header forms
# --------------------------------------------------------------------------------------


def test_parse_headers_raw_form():
    headers = parse_headers(SIMPLE)
    assert [h["name"] for h in headers] == [
        "Return-Path", "From", "To", "Cc", "Subject", "Date", "Message-ID", "X-Custom", "X-Custom",
    ]  # fmt: skip
    subject = headers[4]
    # §4.1.2.1: leading space kept, folding CRLF kept, terminating CRLF removed.
    assert subject == {"name": "Subject", "value": " Lunch\r\n on Friday?"}
    assert headers[8]["value"] == "  second value "


def test_header_forms_raw_text_all():
    h = parse_headers(SIMPLE)
    assert header_value(h, "x-custom", "Raw", False) == "  second value "
    assert header_value(h, "X-CUSTOM", "Raw", True) == [" first", "  second value "]
    assert header_value(h, "X-Custom", "Text", True) == ["first", "second value"]
    assert header_value(h, "Subject", "Text", False) == "Lunch on Friday?"
    assert header_value(h, "X-Missing", "Text", False) is None
    assert header_value(h, "X-Missing", "Text", True) == []


def test_header_form_addresses_and_grouped():
    raw = msg(
        'To: "  James Smythe" <james@example.com>, Friends:\r\n  jane@example.com, '
        "=?UTF-8?Q?John_Sm=C3=AEth?=\r\n  <john@example.com>;",
        "Cc: undisclosed-recipients:;",
        "Bcc: bob@example.com (Bob Jones)",
        body="",
    )
    h = parse_headers(raw)
    # The RFC 8621 §4.1.2.3 / §4.1.2.4 examples.
    assert header_value(h, "To", "Addresses", False) == [
        {"name": "James Smythe", "email": "james@example.com"},
        {"name": None, "email": "jane@example.com"},
        {"name": "John Smîth", "email": "john@example.com"},
    ]
    assert header_value(h, "to", "GroupedAddresses", False) == [
        {"name": None, "addresses": [{"name": "James Smythe", "email": "james@example.com"}]},
        {
            "name": "Friends",
            "addresses": [
                {"name": None, "email": "jane@example.com"},
                {"name": "John Smîth", "email": "john@example.com"},
            ],
        },
    ]
    assert header_value(h, "Cc", "Addresses", False) == []
    assert header_value(h, "Cc", "GroupedAddresses", False) == [{"name": "undisclosed-recipients", "addresses": []}]
    # §4.1.2.3: a comment after the addr-spec is used as the name.
    assert header_value(h, "Bcc", "Addresses", True) == [[{"name": "Bob Jones", "email": "bob@example.com"}]]


def test_grouped_addresses_mixed_groups():
    groups = parse_grouped_addresses(
        ' a@x.org, Team: "B, Bee" <b@x.org>, c@x.org; d@x.org, Empty:; "Quote \\"Q\\"" <q@x.org>'
    )
    assert groups == [
        {"name": None, "addresses": [{"name": None, "email": "a@x.org"}]},
        {"name": "Team", "addresses": [{"name": "B, Bee", "email": "b@x.org"}, {"name": None, "email": "c@x.org"}]},
        {"name": None, "addresses": [{"name": None, "email": "d@x.org"}]},
        {"name": "Empty", "addresses": []},
        {"name": None, "addresses": [{"name": 'Quote "Q"', "email": "q@x.org"}]},
    ]


def test_header_form_message_ids_date_urls():
    raw = msg(
        "Message-ID: <id1@host>",
        "References: <r1@h>\r\n\t<r2@h>",
        "In-Reply-To: not an id",
        "Date: Mon, 1 Jan 2024 00:00:00 +0000",
        "Resent-Date: Mon, 1 Jan 2024 10:00:00 -0930 (weird)",
        "Date: garbage",
        "List-Unsubscribe: <mailto:leave@list.example> (by mail),\r\n <https://list.example/leave?u=1>",
        "List-Post: NO (posting not allowed)",
        body="",
    )
    h = parse_headers(raw)
    assert header_value(h, "Message-ID", "MessageIds", False) == ["id1@host"]
    assert header_value(h, "References", "MessageIds", False) == ["r1@h", "r2@h"]
    assert header_value(h, "In-Reply-To", "MessageIds", False) is None
    # Last Date instance is garbage -> None; :all gives both.
    assert header_value(h, "Date", "Date", False) is None
    assert header_value(h, "Date", "Date", True) == ["2024-01-01T00:00:00Z", None]
    assert header_value(h, "Resent-Date", "Date", False) == "2024-01-01T10:00:00-09:30"
    assert header_value(h, "List-Unsubscribe", "URLs", False) == [
        "mailto:leave@list.example",
        "https://list.example/leave?u=1",
    ]
    assert header_value(h, "List-Post", "URLs", False) is None


def test_sent_at_keeps_original_offset():
    s = parse_summary(msg("Date: Tue, 10 Jul 2018 11:03:11 +1000", body=""))
    assert s["sentAt"] == "2018-07-10T11:03:11+10:00"
    s = parse_summary(msg("Date: 10 Jul 18 11:03 -0500", body=""))
    assert s["sentAt"] == "2018-07-10T11:03:00-05:00"
    assert parse_summary(msg("Date: 31 Feb 2018 11:03:11 +0000", body=""))["sentAt"] is None


@pytest.mark.parametrize(
    "name, form, ok",
    [
        ("Subject", "Raw", True),
        ("Subject", "Text", True),
        ("Subject", "Addresses", False),
        ("From", "Date", False),
        ("From", "Addresses", True),
        ("from", "GroupedAddresses", True),
        ("From", "Text", False),
        ("Date", "Date", True),
        ("Resent-Date", "Date", True),
        ("Message-ID", "MessageIds", True),
        ("References", "Text", False),
        ("List-Unsubscribe", "URLs", True),
        ("List-Unsubscribe", "Text", False),
        ("List-Id", "Text", True),
        ("Received", "Text", False),
        ("Received", "Raw", True),
        ("X-Anything", "Date", True),
        ("X-Anything", "URLs", True),
        ("X-Anything", "Bogus", False),
        ("Resent-Reply-To", "Addresses", True),
    ],
)
def test_is_valid_header_form(name, form, ok):
    assert is_valid_header_form(name, form) is ok


# --------------------------------------------------------------------------------------
# body_properties
# --------------------------------------------------------------------------------------


def test_body_simple_plain():
    b = body(SIMPLE, fetch_text=True)
    part = {
        "partId": "1",
        "blobId": "B.1",
        "size": len(b"Hi Bob,\r\n\r\nlunch   on\tFriday at noon?\r\n\r\nAlice\r\n"),
        "name": None,
        "type": "text/plain",
        "charset": "us-ascii",
        "disposition": None,
        "cid": None,
        "language": None,
        "location": None,
    }
    assert b["bodyStructure"] == part
    assert b["textBody"] == [part] and b["htmlBody"] == [part] and b["attachments"] == []
    assert b["bodyValues"] == {
        "1": {
            "value": "Hi Bob,\n\nlunch   on\tFriday at noon?\n\nAlice\n",
            "isEncodingProblem": False,
            "isTruncated": False,
        }
    }


def test_body_values_only_when_fetching():
    assert "bodyValues" not in body(SIMPLE)
    only = body_properties(
        SIMPLE, want_structure=False, want_text=False, want_html=False, want_attachments=False,
        body_props=None, fetch_text=False, fetch_html=False, fetch_all=False, max_bytes=0, blob_prefix="x",
    )  # fmt: skip
    assert only == {}


def test_body_alternative():
    b = body(ALTERNATIVE, fetch_text=True)
    assert ids(b["textBody"]) == ["1"]
    assert ids(b["htmlBody"]) == ["2"]
    assert b["attachments"] == []
    assert b["bodyStructure"]["type"] == "multipart/alternative"
    assert b["bodyStructure"]["partId"] is None and b["bodyStructure"]["blobId"] is None
    assert [p["type"] for p in b["bodyStructure"]["subParts"]] == ["text/plain", "text/html"]
    assert set(b["bodyValues"]) == {"1"}
    b = body(ALTERNATIVE, fetch_html=True)
    assert set(b["bodyValues"]) == {"2"}
    assert b["bodyValues"]["2"]["value"].startswith("<html>")


def test_body_mixed_with_attachment_and_extract():
    b = body(MIXED)
    assert ids(b["textBody"]) == ["1"] and ids(b["htmlBody"]) == ["1"]
    (att,) = b["attachments"]
    assert att == {
        "partId": "2",
        "blobId": "B.2",
        "size": len(PDF_BYTES),
        "name": "report.pdf",
        "type": "application/pdf",
        "charset": None,
        "disposition": "attachment",
        "cid": None,
        "language": None,
        "location": None,
    }
    assert extract_part(MIXED, "2") == (PDF_BYTES, "application/pdf", "report.pdf")
    assert extract_part(MIXED, "1") == (b"See attached report.", "text/plain", None)
    assert extract_part(MIXED, "3") is None
    assert extract_part(MIXED, "") is None


def test_body_related_inside_alternative():
    b = body(RELATED_IN_ALT, fetch_all=True)
    assert ids(b["textBody"]) == ["1"]
    assert ids(b["htmlBody"]) == ["2.1"]
    assert ids(b["attachments"]) == ["2.2"]
    img = b["attachments"][0]
    assert img["cid"] == "logo@x" and img["disposition"] == "inline" and img["size"] == len(PNG)
    related = b["bodyStructure"]["subParts"][1]
    assert related["type"] == "multipart/related" and ids(related["subParts"]) == ["2.1", "2.2"]
    assert set(b["bodyValues"]) == {"1", "2.1"}  # fetch_all: text/* only
    assert extract_part(RELATED_IN_ALT, "2.2") == (PNG, "image/png", None)


def test_body_rfc822_attachment_not_recursed():
    b = body(RFC822)
    att = b["attachments"][0]
    assert att["type"] == "message/rfc822" and att["partId"] == "2"
    assert "subParts" not in att
    assert b["bodyStructure"]["subParts"][1].get("subParts") is None
    data, ctype, name = extract_part(RFC822, "2")
    assert data == INNER  # exact octets: the CRLF before the boundary is not part of it
    assert ctype == "message/rfc822" and name is None
    inner = parse_summary(data)
    assert inner["subject"] == "The inner message"
    assert inner["from"] == [{"name": "Inner Sender", "email": "inner@example.com"}]


def test_spec_example_parse_structure():
    """The RFC 8621 §4.1.4 worked example: A..K decomposition."""

    def leaf(ctype, label, disp=None):
        headers = [f"Content-Type: {ctype}"]
        if disp:
            headers.append(f"Content-Disposition: {disp}")
        return msg(*headers, body=label)

    raw = multipart(
        "mixed",
        "top",
        [
            leaf("text/plain", "A", "inline"),
            multipart(
                "mixed",
                "m2",
                [
                    multipart(
                        "alternative",
                        "alt",
                        [
                            multipart(
                                "mixed",
                                "m3",
                                [
                                    leaf("text/plain", "B", "inline"),
                                    leaf("image/jpeg", "C", "inline"),
                                    leaf("text/plain", "D", "inline"),
                                ],
                            ),
                            multipart("related", "rel", [leaf("text/html", "E"), leaf("image/jpeg", "F")]),
                        ],
                    ),
                    leaf("image/jpeg", "G", "attachment"),
                    leaf("application/x-excel", "H"),
                    leaf("message/rfc822", "J"),
                ],
            ),
            leaf("text/plain", "K", "inline"),
        ],
    )
    b = body(raw)

    def labels(parts):
        return [extract_part(raw, p["partId"])[0].decode() for p in parts]

    assert labels(b["textBody"]) == ["A", "B", "C", "D", "K"]
    assert labels(b["htmlBody"]) == ["A", "E", "K"]
    assert labels(b["attachments"]) == ["C", "F", "G", "H", "J"]
    assert ids(b["textBody"]) == ["1", "2.1.1.1", "2.1.1.2", "2.1.1.3", "3"]
    assert ids(b["attachments"]) == ["2.1.1.2", "2.1.2.2", "2.2", "2.3", "2.4"]


def test_text_with_name_after_first_is_attachment():
    raw = multipart(
        "mixed",
        "b",
        [
            msg("Content-Type: text/plain", body="body"),
            msg("Content-Type: text/plain; name=notes.txt", body="notes"),
        ],
    )
    b = body(raw)
    assert ids(b["textBody"]) == ["1"]
    assert ids(b["attachments"]) == ["2"]
    assert b["attachments"][0]["name"] == "notes.txt"
    assert parse_summary(raw)["hasAttachment"] is True


def test_multipart_digest_default_type():
    raw = multipart("digest", "d", [msg("Subject: one", body="1"), msg("Subject: two", body="2")])
    b = body(raw)
    types = [p["type"] for p in b["bodyStructure"]["subParts"]]
    assert types == ["message/rfc822", "message/rfc822"]
    assert ids(b["attachments"]) == ["1", "2"]


def test_unknown_and_broken_charsets():
    raw = multipart(
        "mixed",
        "cs",
        [
            msg("Content-Type: text/plain; charset=x-unknown-thing", body="caf\xe9".encode("latin-1")),
            msg("Content-Type: text/plain; charset=utf-8", "Content-Disposition: inline", body=b"ok \xff\xfe end"),
            msg("Content-Type: text/plain; charset=iso-8859-1", body="Grüße €".encode("cp1252")),
            msg("Content-Type: text/plain", body="undeclared ünïcode".encode()),
            msg("Content-Type: text/plain; charset=base64", body=b"plain"),
            msg("Content-Type: text/plain", "Content-Transfer-Encoding: x-strange", body=b"as is"),
        ],
    )
    values = body(raw, fetch_text=True)["bodyValues"]
    assert values["1"] == {"value": "caf\ufffd", "isEncodingProblem": True, "isTruncated": False}
    assert values["2"]["value"] == "ok \ufffd\ufffd end" and values["2"]["isEncodingProblem"] is True
    assert values["3"] == {"value": "Grüße €", "isEncodingProblem": False, "isTruncated": False}
    assert values["4"] == {"value": "undeclared ünïcode", "isEncodingProblem": False, "isTruncated": False}
    assert values["5"]["isEncodingProblem"] is True and values["5"]["value"] == "plain"
    assert values["6"] == {"value": "as is", "isEncodingProblem": True, "isTruncated": False}


def test_quoted_printable_and_base64_bodies():
    text = "Ünïcödé line one\nline two that is quite long " + "x" * 100 + "\n"
    b64 = base64.encodebytes(text.replace("\n", "\r\n").encode()).replace(b"\n", b"\r\n")
    raw = multipart(
        "mixed",
        "enc",
        [
            msg(
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable",
                body=b"=C3=9Cn=C3=AFc=C3=B6d=C3=A9 soft=\r\nbreak=3D\r\n",
            ),
            msg("Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: BASE64", body=b64),
        ],
    )
    values = body(raw, fetch_all=True)["bodyValues"]
    assert values["1"]["value"] == "Ünïcödé softbreak=\n"
    assert values["2"]["value"] == text
    assert body(raw)["bodyStructure"]["subParts"][1]["charset"] == "UTF-8"


def test_body_values_truncation():
    raw = msg("Content-Type: text/plain; charset=utf-8", body="aé€😀z".encode())  # 1+2+3+4+1 bytes
    cases = [(1, "a"), (2, "a"), (3, "aé"), (5, "aé"), (6, "aé€"), (9, "aé€"), (10, "aé€😀"),
             (11, "aé€😀z"), (0, "aé€😀z"), (100, "aé€😀z")]  # fmt: skip
    for max_bytes, expected in cases:
        value = body(raw, fetch_text=True, max_bytes=max_bytes)["bodyValues"]["1"]
        assert value["value"] == expected, max_bytes
        assert value["isTruncated"] is (expected != "aé€😀z")
        assert len(value["value"].encode()) <= (max_bytes or 100)


def test_html_truncation_not_inside_tag():
    raw = msg("Content-Type: text/html", body='<p>Hello <a href="https://example.com/x">link</a></p>')
    value = body(raw, fetch_html=True, max_bytes=20)["bodyValues"]["1"]
    assert value == {"value": "<p>Hello ", "isEncodingProblem": False, "isTruncated": True}


def test_body_props_selection_headers_and_header_forms():
    raw = multipart(
        "mixed",
        "hp",
        [
            msg(
                "Content-Type: text/plain; charset=utf-8",
                "Content-Language: en, de (German)",
                "Content-Location: https://example.com/\r\n a.txt",
                "X-Part: one",
                body="t",
            ),
            msg(
                "Content-Type: application/octet-stream",
                "Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.txt",
                body="e",
            ),
        ],
    )
    props = ["partId", "type", "language", "location", "headers", "header:X-Part:asText", "name", "subParts"]
    b = body(raw, body_props=props)
    first, second = b["bodyStructure"]["subParts"]
    assert list(first) == props
    assert first["language"] == ["en", "de"]
    assert first["location"] == "https://example.com/a.txt"
    assert first["header:X-Part:asText"] == "one"
    assert first["subParts"] is None
    assert first["headers"][0] == {"name": "Content-Type", "value": " text/plain; charset=utf-8"}
    assert second["name"] == "€ rates.txt" and second["header:X-Part:asText"] is None
    assert b["attachments"][0]["partId"] == "2" and "blobId" not in b["attachments"][0]


def test_rfc2047_filename_and_name_fallback():
    raw = multipart(
        "mixed",
        "fn",
        [
            msg("Content-Type: text/plain", body="x"),
            msg('Content-Type: image/jpeg; name="=?UTF-8?B?w6lsw6k=?=.jpg"', "Content-Disposition: attachment", body="j"),
            msg('Content-Type: application/zip; name="=?iso-8859-1?q?na=EFve?= =?utf-8?q?_=E2=82=AC?=.zip"', body="z"),
        ],
    )
    names = [a["name"] for a in body(raw)["attachments"]]
    assert names == ["élé.jpg", "naïve €.zip"]


def test_uuencoded_part():
    raw = multipart(
        "mixed",
        "uu",
        [
            msg("Content-Type: text/plain", body="see file"),
            msg(
                "Content-Type: application/octet-stream",
                "Content-Disposition: attachment; filename=cat.txt",
                "Content-Transfer-Encoding: x-uuencode",
                body=b"begin 644 cat.txt\r\n#8V%T\r\n`\r\nend\r\n",
            ),
        ],
    )
    assert extract_part(raw, "2") == (b"cat", "application/octet-stream", "cat.txt")


def test_parse_header_property():
    from app.mail.mime import parse_header_property

    assert parse_header_property("header:From") == ("From", "Raw", False)
    assert parse_header_property("header:From:asAddresses") == ("From", "Addresses", False)
    assert parse_header_property("header:List-Post:asURLs:all") == ("List-Post", "URLs", True)
    assert parse_header_property("header:X-A:all") == ("X-A", "Raw", True)
    assert parse_header_property("header:X-A:asBogus") is None
    assert parse_header_property("header:X-A:all:asText") is None
    assert parse_header_property("header:") is None
    assert parse_header_property("subject") is None


def test_quoted_filename_parameters_round_trip():
    for name in ('say "hi".txt', "back\\slash.txt", "naïve; ok.txt"):
        raw, err = build_message({"attachments": [{"blobId": "Gblob1", "name": name}]}, get_blob)
        assert err == {}
        assert body(raw)["attachments"][0]["name"] == name


# --------------------------------------------------------------------------------------
# message_text
# --------------------------------------------------------------------------------------


def test_message_text():
    raw = multipart(
        "mixed",
        "mt",
        [
            multipart(
                "alternative",
                "mt-alt",
                [
                    msg("Content-Type: text/plain; charset=utf-8", body="plain words"),
                    msg(
                        "Content-Type: text/html",
                        body="<style>.x{}</style><script>alert(1)</script><div>html&amp;words</div><p>para</p>",
                    ),
                ],
            ),
            msg("Content-Type: text/csv", "Content-Disposition: attachment; filename=a.csv", body="col1,col2"),
            msg("Content-Type: image/png", body="binary"),
        ],
        "From: =?utf-8?q?J=C3=B6rg?= <j@x.org>",
        "To: a@x.org, B <b@x.org>",
        "Subject: =?utf-8?q?S=C3=BCbject?=",
    )
    t = message_text(raw)
    assert t["subject"] == "Sübject"
    assert t["from"] == "Jörg <j@x.org>"
    assert t["to"] == "a@x.org, B <b@x.org>"
    assert t["cc"] == "" and t["bcc"] == ""
    assert "plain words" in t["body"]
    assert "html&words" in t["body"] and "para" in t["body"]
    assert "alert" not in t["body"] and ".x{}" not in t["body"]
    assert "col1,col2" in t["body"]
    assert "binary" not in t["body"]


# --------------------------------------------------------------------------------------
# build_message
# --------------------------------------------------------------------------------------

BLOBS = {"Gblob1": PDF_BYTES, "Gimg": PNG, "Gmsg": INNER}


def get_blob(blob_id):
    return BLOBS.get(blob_id)


def test_build_round_trip_text_html_attachments():
    create = {
        "mailboxIds": {"m1": True},
        "keywords": {"$draft": True},
        "from": [{"name": "Jöe Bloggs", "email": "joe@example.com"}],
        "to": [{"name": "Smith, John", "email": "john@example.com"}, {"name": None, "email": "x@example.com"}],
        "cc": [{"email": "cc@example.com"}],
        "bcc": [{"name": "Hidden", "email": "bcc@example.com"}],
        "replyTo": [{"name": "Reply", "email": "reply@example.com"}],
        "subject": "Grüße – a subject that is long enough to need folding across more than one header line",
        "sentAt": "2018-07-10T11:03:11+10:00",
        "messageId": ["given@example.com"],
        "inReplyTo": ["parent@example.com"],
        "references": ["root@example.com", "parent@example.com"],
        "header:X-Mailer:asText": "tidings tests",
        "header:List-Id:asText": "Ünïcode list",
        "textBody": [{"partId": "t", "type": "text/plain"}],
        "htmlBody": [{"partId": "h", "type": "text/html"}],
        "bodyValues": {
            "t": {"value": "Hello wörld\nsecond line " + "y" * 120 + "\n"},
            "h": {"value": "<p>Hello <b>wörld</b></p>", "isTruncated": False},
        },
        "attachments": [
            {"blobId": "Gblob1", "type": "application/pdf", "name": "Résumé.pdf"},
            {"blobId": "Gimg", "type": "image/png", "cid": "img1@x", "disposition": "inline"},
            {"blobId": "Gmsg", "type": "message/rfc822"},
        ],
    }
    raw, err = build_message(create, get_blob)
    assert err == {} and isinstance(raw, bytes)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()  # everything 7bit-safe: RFC 2047 headers, QP/base64 bodies
    s = parse_summary(raw)
    assert s["defects"] == []
    assert s["from"] == [{"name": "Jöe Bloggs", "email": "joe@example.com"}]
    assert s["to"] == create["to"]
    assert s["cc"] == [{"name": None, "email": "cc@example.com"}]
    assert s["bcc"] == [{"name": "Hidden", "email": "bcc@example.com"}]
    assert s["replyTo"] == [{"name": "Reply", "email": "reply@example.com"}]
    assert s["subject"] == create["subject"]
    assert s["sentAt"] == "2018-07-10T11:03:11+10:00"
    assert s["messageId"] == ["given@example.com"]
    assert s["inReplyTo"] == ["parent@example.com"]
    assert s["references"] == ["root@example.com", "parent@example.com"]
    assert s["hasAttachment"] is True
    assert s["preview"].startswith("Hello wörld second line yyy")
    h = parse_headers(raw)
    assert header_value(h, "X-Mailer", "Text", False) == "tidings tests"
    assert header_value(h, "List-Id", "Text", False) == "Ünïcode list"
    assert header_value(h, "MIME-Version", "Raw", False) == " 1.0"

    b = body(raw, fetch_all=True)
    top = b["bodyStructure"]
    assert top["type"] == "multipart/mixed"
    assert [p["type"] for p in top["subParts"]] == ["multipart/alternative", "application/pdf", "message/rfc822"]
    alt = top["subParts"][0]
    assert [p["type"] for p in alt["subParts"]] == ["text/plain", "multipart/related"]
    assert [p["type"] for p in alt["subParts"][1]["subParts"]] == ["text/html", "image/png"]
    text_id, html_id = b["textBody"][0]["partId"], b["htmlBody"][0]["partId"]
    assert b["bodyValues"][text_id]["value"] == create["bodyValues"]["t"]["value"]
    assert b["bodyValues"][html_id]["value"] == create["bodyValues"]["h"]["value"]
    by_type = {a["type"]: a for a in b["attachments"]}
    assert by_type["application/pdf"]["name"] == "Résumé.pdf"
    assert by_type["application/pdf"]["disposition"] == "attachment"
    assert by_type["image/png"]["cid"] == "img1@x"
    assert extract_part(raw, by_type["application/pdf"]["partId"]) == (PDF_BYTES, "application/pdf", "Résumé.pdf")
    assert extract_part(raw, by_type["image/png"]["partId"])[0] == PNG
    assert extract_part(raw, by_type["message/rfc822"]["partId"])[0] == INNER


def test_build_spec_example_body_structure():
    create = {
        "mailboxIds": {"2ea1ca41b38e": True},
        "keywords": {"$seen": True, "$draft": True},
        "from": [{"name": "Joe Bloggs", "email": "joe@example.com"}],
        "subject": "World domination",
        "receivedAt": "2018-07-10T01:03:11Z",
        "sentAt": "2018-07-10T11:03:11+10:00",
        "bodyStructure": {"type": "text/plain", "partId": "bd48", "header:Content-Language": " en"},
        "bodyValues": {
            "bd48": {
                "value": "I have the most brilliant plan. Let me tell you all about it. What we do is, we",
                "isTruncated": False,
            }
        },
    }
    raw, err = build_message(create, get_blob)
    assert err == {}
    h = parse_headers(raw)
    names = [x["name"].lower() for x in h]
    for required in ("from", "subject", "date", "message-id", "mime-version", "content-type", "content-language"):
        assert required in names, required
    assert header_value(h, "Date", "Raw", False) == " Tue, 10 Jul 2018 11:03:11 +1000"
    assert header_value(h, "Message-ID", "MessageIds", False)[0].endswith("@example.com")
    b = body(raw, fetch_text=True)
    assert b["bodyStructure"]["language"] == ["en"]
    assert b["bodyValues"]["1"]["value"] == create["bodyValues"]["bd48"]["value"]


def test_build_body_structure_multipart_alternative():
    create = {
        "bodyStructure": {
            "type": "multipart/alternative",
            "subParts": [
                {"partId": "a49d", "type": "text/html", "header:Content-Language": " en"},
                {"partId": "bd48", "type": "text/plain"},
            ],
        },
        "bodyValues": {"bd48": {"value": "plain"}, "a49d": {"value": "<div>html</div>"}},
    }
    raw, err = build_message(create, get_blob)
    assert err == {}
    b = body(raw, fetch_all=True)
    assert ids(b["htmlBody"]) == ["1"] and ids(b["textBody"]) == ["2"]
    assert b["bodyValues"] == {
        "1": {"value": "<div>html</div>", "isEncodingProblem": False, "isTruncated": False},
        "2": {"value": "plain", "isEncodingProblem": False, "isTruncated": False},
    }
    s = parse_summary(raw)
    assert s["sentAt"] is not None and s["messageId"] and s["from"] is None


def test_build_generates_ids_and_minimal_body():
    raw, err = build_message({"subject": "empty"}, get_blob)
    assert err == {}
    s = parse_summary(raw)
    assert s["subject"] == "empty"
    assert s["messageId"] and s["messageId"][0].endswith("@tidings.local")
    assert s["sentAt"] is not None
    assert body(raw)["bodyStructure"]["type"] == "text/plain"


def test_build_grouped_and_raw_header_forms():
    create = {
        "header:To:asGroupedAddresses": [
            {"name": "Team", "addresses": [{"name": "A", "email": "a@x.org"}, {"name": None, "email": "b@x.org"}]},
            {"name": None, "addresses": [{"name": None, "email": "c@x.org"}]},
        ],
        "header:X-Raw": " raw\r\n folded",
        "header:X-Multi:asText:all": ["one", "two"],
        "header:List-Unsubscribe:asURLs": ["mailto:u@x.org", "https://x.org/u"],
        "header:Resent-Date:asDate": "2020-01-01T00:00:00Z",
        "textBody": [{"partId": "1"}],
        "bodyValues": {"1": {"value": "hi"}},
    }
    raw, err = build_message(create, get_blob)
    assert err == {}
    h = parse_headers(raw)
    assert header_value(h, "To", "GroupedAddresses", False) == create["header:To:asGroupedAddresses"]
    assert header_value(h, "X-Raw", "Raw", False) == " raw\r\n folded"
    assert header_value(h, "X-Multi", "Text", True) == ["one", "two"]
    assert header_value(h, "List-Unsubscribe", "URLs", False) == ["mailto:u@x.org", "https://x.org/u"]
    assert header_value(h, "Resent-Date", "Date", False) == "2020-01-01T00:00:00Z"


def test_build_blob_not_found():
    raw, err = build_message(
        {"textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": "x"}},
         "attachments": [{"blobId": "Gmissing"}, {"blobId": "Gblob1"}, {"blobId": "Gother"}]},
        get_blob,
    )  # fmt: skip
    assert raw is None
    assert err["type"] == "blobNotFound"
    assert err["notFound"] == ["Gmissing", "Gother"]


@pytest.mark.parametrize(
    "create, bad",
    [
        ({"header:From:asDate": "2020-01-01T00:00:00Z"}, ["header:From:asDate"]),
        ({"from": [{"email": "a@x"}], "header:From": " b@x"}, ["from", "header:From"]),
        ({"header:Content-Type": " text/plain"}, ["header:Content-Type"]),
        ({"headers": [{"name": "X", "value": "y"}]}, ["headers"]),
        ({"subject": 5}, ["subject"]),
        ({"from": [{"name": "x"}]}, ["from"]),
        ({"sentAt": "yesterday"}, ["sentAt"]),
        ({"messageId": ["has space@x"]}, ["messageId"]),
        ({"header:X-Inject": " a\r\nBcc: evil@x"}, ["header:X-Inject"]),
        ({"id": "M1"}, ["id"]),
        ({"bogus": 1}, ["bogus"]),
        (
            {"bodyStructure": {"partId": "1"}, "textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": "x"}}},
            ["textBody"],
        ),
        ({"textBody": [{"partId": "1", "type": "text/html"}], "bodyValues": {"1": {"value": "x"}}}, ["textBody/0/type"]),
        ({"textBody": [{"partId": "1"}, {"partId": "2"}], "bodyValues": {}}, ["textBody"]),
        ({"htmlBody": [{"partId": "nope"}]}, ["htmlBody/0/partId"]),
        (
            {"textBody": [{"partId": "1", "charset": "utf-8", "size": 3}], "bodyValues": {"1": {"value": "x"}}},
            ["textBody/0/charset", "textBody/0/size"],
        ),
        ({"attachments": [{"partId": "1", "blobId": "Gblob1"}], "bodyValues": {"1": {"value": "x"}}}, ["attachments/0/partId"]),
        ({"textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": "x", "isTruncated": True}}}, ["bodyValues/1/isTruncated"]),
        (
            {"attachments": [{"blobId": "Gblob1", "header:Content-Transfer-Encoding": " base64"}]},
            ["attachments/0/header:Content-Transfer-Encoding"],
        ),
        (
            {"attachments": [{"blobId": "Gblob1", "type": "text/plain", "header:Content-Type": " text/html"}]},
            ["attachments/0/type", "attachments/0/header:Content-Type"],
        ),
        (
            {"subject": "s", "bodyStructure": {"partId": "1", "header:Subject": " dup"}, "bodyValues": {"1": {"value": "x"}}},
            ["bodyStructure/header:Subject"],
        ),
        (
            {"bodyStructure": {"type": "multipart/mixed", "partId": "1", "subParts": []}},
            ["bodyStructure/partId", "bodyStructure/subParts"],
        ),
        ({"attachments": [{"blobId": "Gblob1", "disposition": "attach ment"}]}, ["attachments/0/disposition"]),
        ({"attachments": [{"blobId": "Gblob1", "name": "a\r\nb"}]}, ["attachments/0/name"]),
        ({"textBody": [{"partId": "1", "language": "en"}], "bodyValues": {"1": {"value": "x"}}}, ["textBody/0/language"]),
    ],
)
def test_build_invalid_properties(create, bad):
    raw, err = build_message(create, get_blob)
    assert raw is None
    assert err["type"] == "invalidProperties"
    assert sorted(err["properties"]) == sorted(bad)
    assert err["description"]


def test_build_reports_all_problems_at_once():
    raw, err = build_message(
        {"subject": 1, "header:From:asDate": "x", "textBody": [{"partId": "zz"}], "attachments": [{"blobId": "Gnone"}]},
        get_blob,
    )
    assert raw is None and err["type"] == "invalidProperties"
    assert set(err["properties"]) == {"subject", "header:From:asDate", "textBody/0/partId"}
    assert err["notFound"] == ["Gnone"]


def test_build_text_encodings_round_trip():
    values = {
        "ascii": "plain ascii\nlines\n",
        "latin": "mostly ascii with one é and a long line " + "z" * 1200,
        "cjk": "日本語のテキスト" * 50,
        "crlf": "a\r\nb\rc\n",
    }
    for key, value in values.items():
        raw, err = build_message({"textBody": [{"partId": key}], "bodyValues": {key: {"value": value}}}, get_blob)
        assert err == {}, key
        assert all(len(line) <= 998 for line in raw.split(b"\r\n")), key
        got = body(raw, fetch_text=True)["bodyValues"]["1"]
        expected = value.replace("\r\n", "\n").replace("\r", "\n")
        assert got == {"value": expected, "isEncodingProblem": False, "isTruncated": False}, key


def test_build_is_parseable_by_stdlib():
    import email
    from email import policy

    raw, err = build_message(
        {
            "from": [{"name": "Ünï", "email": "u@x.org"}],
            "subject": "stdlib check",
            "textBody": [{"partId": "t"}],
            "bodyValues": {"t": {"value": "héllo"}},
            "attachments": [{"blobId": "Gblob1", "type": "application/pdf", "name": "a b.pdf"}],
        },
        get_blob,
    )
    assert err == {}
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed.defects == []
    assert str(parsed["From"]) == "Ünï <u@x.org>"
    parts = list(parsed.iter_attachments())
    assert parts[0].get_filename() == "a b.pdf"
    assert parts[0].get_content() == PDF_BYTES
    assert parsed.get_body(("plain",)).get_content() == "héllo"


def test_module_exports():
    for name in (
        "parse_summary", "parse_headers", "header_value", "is_valid_header_form", "body_properties",
        "extract_part", "message_text", "build_message",
    ):  # fmt: skip
        assert callable(getattr(mime, name))
