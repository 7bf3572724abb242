"""The classes behind the exactness cases (issue 6), beyond the one input each case gives: every
decode path gives valid Unicode, parameters follow RFC 2045/2231 both ways, the header section ends
only at an empty line, charsets come from the registries, HTML is read by a real parser."""

from __future__ import annotations

import orjson
import pytest

from app.mail import mime
from app.mail.charsets import LABELS, codec_for, decode, valid_text
from app.mail.headers import parse_message_ids, split_header_block
from app.mail.params import format_params, parse_params


def body(raw: bytes, **kw) -> dict:
    args = dict(want_structure=True, want_text=True, want_html=True, want_attachments=True, body_props=None,
                fetch_text=False, fetch_html=False, fetch_all=True, max_bytes=0, blob_prefix="P")
    args.update(kw)
    return mime.body_properties(raw, **args)


def strings(obj: object):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


def assert_valid_unicode(obj: object) -> None:
    orjson.dumps(obj)  # raises on a lone surrogate
    for s in strings(obj):
        assert valid_text(s) == (s, False), repr(s)


# ------------------------------------------------------------------------- 1. the header section

@pytest.mark.parametrize("odd", [b"From carol@example.org  Mon Feb  3 09:00:00 2020", b">From old mbox",
                                 b"garbage without a colon", b"[section]"])
def test_an_odd_line_inside_the_header_section_is_a_defect_and_skipped(odd):
    raw = b"X-First: 1\r\n" + odd + b"\r\nSubject: kept\r\nFrom: a@example.org\r\n\r\nbody\r\n"
    defects: list[str] = []
    fields, start = split_header_block(raw, 0, None, defects)
    assert [n for n, _ in fields] == ["X-First", "Subject", "From"]
    assert raw[start:] == b"body\r\n"
    assert any("not a field" in d for d in defects)


def test_a_body_without_its_empty_line_still_starts_at_the_first_line_that_is_not_a_field():
    raw = b"Subject: x\r\nHi Bob,\r\nRe: your question\r\nThanks\r\n"
    s = mime.parse_summary(raw)
    assert s["subject"] == "x"
    assert s["preview"] == "Hi Bob, Re: your question Thanks"


def test_the_odd_line_ends_the_field_before_it():
    fields, _ = split_header_block(b"Subject: a\r\nodd line\r\n continued?\r\nTo: b@c\r\n\r\n")
    assert fields[0] == ("Subject", " a")
    assert fields[-1] == ("To", " b@c")


@pytest.mark.parametrize("section", [
    b"Subject: plain\r\nFrom: a@example.org\r\n\r\n",
    b"Subject: lf only\nTo: b@example.org\n\nbody\n",
    b"Subject: folded\r\n  twice\r\n\tand tab\r\nX-Empty:\r\nX-Sp : v\r\n\r\nbody",
    b"Subject: 8-bit \xc3\xa9 and bad \xff\r\nX-Nul: a\x00b\r\nX-Cr: c\r\r\n\r\n",
    b"From alice@example.org Mon Feb  3 09:00:00 2020\r\nSubject: mbox\r\n\r\nb",
    b"Subject: no empty line\r\nTo: b@example.org\r\n",
    b"Subject: a\r\nodd\r\nTo: b@c\r\n\r\n",
    b" stray continuation\r\nSubject: s\r\n\r\n",
    b"\r\nbody only",
])
def test_a_well_formed_section_splits_as_the_line_by_line_reading_does(section):
    # the regular-expression reading of the usual section and the line loop agree, defects too
    from app.mail.headers import _split_lines

    fast_defects: list[str] = []
    line_defects: list[str] = []
    pos = section.find(b"\n") + 1 if section.startswith(b"From ") else 0
    assert split_header_block(section, 0, None, fast_defects) == _split_lines(
        section, pos, len(section), line_defects, [])
    assert fast_defects == line_defects


def test_message_problem_tells_mail_from_other_text():
    assert mime.message_problem(b"") is not None
    assert mime.message_problem(b"\r\n \r\n") is not None
    assert mime.message_problem(b"[core]\n\tbare = false\n") is not None
    assert mime.message_problem(b"name: tidings\nversion: 1\n") is not None  # YAML, not mail
    assert mime.message_problem(b"Subject: hi\n\nbody") is None
    assert mime.message_problem(b"Received: from x\nX-Foo: 1\n\n") is None


# ------------------------------------------------------------------------- 2. valid Unicode everywhere

UTF7_SURROGATE = "abc+2D0-def"  # decodes to a lone U+D834 with Python's codec


@pytest.mark.parametrize("raw", [
    # body, encoded word in Subject, in an address name, RFC 2231 filename, RFC 2047 filename, HTML
    b"Content-Type: text/plain; charset=utf-7\r\n\r\n" + UTF7_SURROGATE.encode() + b"\r\n",
    b"Subject: =?utf-7?Q?" + UTF7_SURROGATE.encode() + b"?=\r\n\r\nx",
    b"From: =?utf-7?Q?" + UTF7_SURROGATE.encode() + b"?= <a@example.org>\r\n\r\nx",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\n"
    b"Content-Disposition: attachment; filename*=utf-7''" + UTF7_SURROGATE.encode() + b"\r\n\r\nx\r\n--b--\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf;"
    b" name=\"=?utf-7?Q?" + UTF7_SURROGATE.encode() + b"?=\"\r\n\r\nx\r\n--b--\r\n",
    b"Content-Type: text/html; charset=utf-7\r\n\r\n<p>" + UTF7_SURROGATE.encode() + b" &#xD800; &#55296;</p>\r\n",
    b"Content-Type: text/plain; charset=utf-16\r\n\r\n\xff\xfe\x00\xd8a\x00",
])
def test_every_decode_path_gives_valid_unicode(raw):
    summary = mime.parse_summary(raw)
    assert_valid_unicode(summary)
    assert_valid_unicode(body(raw))
    headers = mime.parse_headers(raw)
    for form in ("Raw", "Text", "Addresses", "GroupedAddresses", "MessageIds", "Date", "URLs"):
        for name in ("Subject", "From", "Content-Type"):
            assert_valid_unicode(mime.header_value(headers, name, form, True))
    assert_valid_unicode(mime.message_text(raw))
    assert "\ufffd" in orjson.dumps([summary, body(raw), mime.message_text(raw)]).decode()


def test_a_lone_surrogate_is_an_encoding_problem():
    text, problem = decode(UTF7_SURROGATE.encode(), "utf-7")
    assert (text, problem) == ("abc\ufffddef", True)


# ------------------------------------------------------------------------- 3. MIME parameters

@pytest.mark.parametrize("value, main, params", [
    ('text/plain; charset="UTF-8"\\r\\n', "text/plain", {"charset": "UTF-8"}),
    ('text/plain; charset="UTF-8" junk; format=flowed', "text/plain", {"charset": "UTF-8", "format": "flowed"}),
    ("text/plain; charset=us-ascii (Plain text)", "text/plain", {"charset": "us-ascii"}),
    ('text/plain; name="a \\"quoted\\" \\\\ name"', "text/plain", {"name": 'a "quoted" \\ name'}),
    ("multipart/mixed; boundary=----=_Part_1", "multipart/mixed", {"boundary": "----=_Part_1"}),
    ("Text/HTML; CHARSET=utf-8", "text/html", {"charset": "utf-8"}),
    ("attachment; filename*=utf-8''caf%C3%A9.txt", "attachment", {"filename": "café.txt"}),
    ("attachment; filename*0*=utf-8''caf%C3; filename*1*=%A9; filename*2=.txt", "attachment",
     {"filename": "café.txt"}),
    ('attachment; filename*0="long "; filename*1="name.txt"', "attachment", {"filename": "long name.txt"}),
    ("attachment; filename*=iso-8859-1'fr'caf%E9", "attachment", {"filename": "café"}),
    ("attachment; filename=plain; filename*=utf-8''better", "attachment", {"filename": "better"}),
    ("attachment; filename*0=a; filename*2=c", "attachment", {"filename": "a"}),  # a gap ends the value
    ("attachment; filename*=unicode_escape''caf%5Cxe9", "attachment", {"filename": "caf\\xe9"}),
    ("inline;", "inline", {}),
    ("text/plain; =x; charset", "text/plain", {}),
])
def test_parameters_are_parsed_as_rfc2045_and_rfc2231_define_them(value, main, params):
    assert parse_params(value) == (main, params)


@pytest.mark.parametrize("value", ["報告書" * 100 + ".pdf", "a" * 500 + ".txt", 'quote " and \\ slash',
                                   "café", "x", "tab\there", "ünïcödé " * 40])
def test_written_parameters_fold_and_read_back_unchanged(value):
    header = "Content-Disposition: attachment" + format_params([("filename", value)], 31)
    lines = header.split("\r\n")
    assert max(len(line.encode()) for line in lines) <= 78
    assert all(line.startswith(" ") for line in lines[1:])
    main, params = parse_params(header.split(":", 1)[1].replace("\r\n", ""))
    assert (main, params) == ("attachment", {"filename": value})


def test_a_built_message_has_no_line_over_998_octets_whatever_the_client_sends():
    raw, err = mime.build_message({
        "subject": "x" * 3000, "from": [{"name": "N" * 3000, "email": "a@example.org"}],
        "to": [{"name": "é" * 2000, "email": "b@example.org"}],
        "header:X-Text:asText": "z" * 2000 + " " + "ü" * 1500,
        "textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": "w" * 5000}},
        "attachments": [{"blobId": "b", "type": "text/plain", "name": "名前" * 300}],
    }, lambda blob_id: b"data")
    assert err == {}
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    s = mime.parse_summary(raw)
    assert s["subject"] == "x" * 3000 and s["from"][0]["name"] == "N" * 3000


@pytest.mark.parametrize("prop, value", [("header:X-Raw", " " + "y" * 3000), ("messageId", ["a" * 1200 + "@x"])])
def test_a_header_that_cannot_be_folded_under_998_octets_is_refused_by_name(prop, value):
    raw, err = mime.build_message({prop: value, "textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": "x"}}},
                                  lambda blob_id: None)
    assert raw is None
    assert err["type"] == "invalidProperties" and err["properties"] == [prop]
    assert "998" in err["description"]


# ------------------------------------------------------------------------- 4. malformed multiparts

def test_type_is_always_the_parts_own_content_type():
    raw = (b"Content-Type: multipart/mixed; boundary=A\r\n\r\n--A\r\nContent-Type: multipart/related\r\n\r\n"
           b"no boundary here\r\n--A\r\nContent-Type: text/plain\r\n\r\nok\r\n--A--\r\n")
    tree = body(raw, body_props=["partId", "type"])["bodyStructure"]
    assert [p["type"] for p in tree["subParts"]] == ["multipart/related", "text/plain"]
    assert tree["subParts"][0]["subParts"] == [{"partId": "1.1", "type": "text/plain"}]


def test_two_levels_reusing_one_boundary():
    raw = (b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: multipart/alternative;"
           b" boundary=X\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nplain\r\n--X\r\nContent-Type: text/html\r\n\r\n"
           b"<b>html</b>\r\n--X--\r\n--X\r\nContent-Type: application/pdf\r\n\r\nPDF\r\n--X--\r\n")
    b = body(raw, body_props=["partId", "type"])
    assert b["bodyStructure"]["subParts"][0]["subParts"] == [{"partId": "1.1", "type": "text/plain"},
                                                               {"partId": "1.2", "type": "text/html"}]
    assert b["bodyStructure"]["subParts"][1] == {"partId": "2", "type": "application/pdf"}
    assert b["textBody"] == [{"partId": "1.1", "type": "text/plain"}]
    assert b["attachments"] == [{"partId": "2", "type": "application/pdf"}]


# ------------------------------------------------------------------------- 5. hasAttachment

def _report(ctype: str, machine: str) -> bytes:
    return (f"Content-Type: {ctype}; boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nYour message"
            f"\r\n--r\r\nContent-Type: {machine}\r\n\r\nReporting-MTA: dns; x\r\n--r--\r\n").encode()


@pytest.mark.parametrize("raw", [
    _report("multipart/report; report-type=delivery-status", "message/delivery-status"),
    _report("multipart/report; report-type=delivery-status", "message/global-delivery-status"),
    _report("multipart/report; report-type=delivery-status", "text/rfc822-headers"),
    _report("multipart/report; report-type=disposition-notification", "message/disposition-notification"),
    _report("multipart/report; report-type=feedback-report", "message/feedback-report"),
    _report('multipart/signed; protocol="application/pkcs7-signature"', "application/pkcs7-signature"),
    _report('multipart/signed; protocol="application/x-pkcs7-signature"', "application/x-pkcs7-signature"),
    _report('multipart/signed; protocol="application/pgp-signature"', "application/octet-stream"),
])
def test_parts_processed_automatically_are_not_attachments(raw):
    assert mime.parse_summary(raw)["hasAttachment"] is False


def test_a_real_file_next_to_a_signature_is_an_attachment():
    raw = _report("multipart/mixed", "application/pdf")
    assert mime.parse_summary(raw)["hasAttachment"] is True


# ------------------------------------------------------------------------- 6. lenient / strict

@pytest.mark.parametrize("value, ids", [
    ("<agenda.2020@example.org", ["agenda.2020@example.org"]),
    ("agenda.2020@example.org>", ["agenda.2020@example.org"]),
    ("<a@example.org> <b@example.org", ["a@example.org", "b@example.org"]),
    ("a@example.org", ["a@example.org"]),
    ("<a b@example.org", None),  # ambiguous: white space inside
    ("<no-at-sign", None),
])
def test_message_ids_repair_only_what_is_unambiguous(value, ids):
    assert parse_message_ids(value) == ids


@pytest.mark.parametrize("label", ["unicode_escape", "raw_unicode_escape", "punycode", "rot13", "rot_13", "idna",
                                   "base64", "hex", "zlib", "uu", "quopri", "mbcs", "undefined", "utf_8_sig",
                                   "x-unicode_escape", "palmos"])
def test_python_codec_names_are_not_charsets(label):
    assert codec_for(label) is None
    encoded = "=?" + label + "?Q?caf=C3=A9?="
    assert mime.parse_summary(f"Subject: {encoded}\r\n\r\nx".encode())["subject"] == encoded


@pytest.mark.parametrize("label, text", [("ISO-8859-1", "café"), ("latin1", "café"), ("windows-1252", "café"),
                                         ("UTF-8", "café"), ("utf8", "café"), ("x-sjis", "日本"),
                                         ("Shift_JIS", "日本"), ("ks_c_5601-1987", "한국"), ("gb2312", "中文"),
                                         ("koi8-r", "мир"), ("IBM437", "café"), ("ISO-8859-15", "€uro")])
def test_registered_charset_labels_decode(label, text):
    codec = codec_for(label)
    assert codec is not None
    assert decode(text.encode(codec), label) == (text, False)


def test_every_label_names_a_text_codec():
    import codecs

    for label, codec in LABELS.items():
        assert label == label.lower()
        assert getattr(codecs.lookup(codec), "_is_text_encoding", True), (label, codec)


# ------------------------------------------------------------------------- 7. HTML as a reader sees it

@pytest.mark.parametrize("markup, seen, unseen", [
    ('<a title="a > b" data-x="hidden1">link</a> text', "link text", ["hidden1", "b"]),
    ("<div onclick=\"if(a>b){hidden2()}\">Hello</div>", "Hello", ["hidden2"]),
    ("<script>var hidden3 = '</div>';</script><p>shown</p>", "shown", ["hidden3"]),
    ("<style>.hidden4{}</style><!-- hidden5 -->x", "x", ["hidden4", "hidden5"]),
    ("<head><title>hidden6</title></head><body>x</body>", "x", ["hidden6"]),
    ("a&amp;b &lt;tag&gt; &eacute;", "a&b <tag> é", []),
    ("<p>one</p><p>two</p>", "one two", []),
    ("<td>1</td><td>2</td>", "12", []),
    ("<table><tr><td>1</td><td>2</td></tr></table>", "1 2", []),
    ("plain 1 < 2 text", "plain 1 < 2 text", []),
])
def test_html_becomes_the_text_a_reader_sees(markup, seen, unseen):
    text = " ".join(mime.html_to_text(markup).split())
    assert text == seen
    for word in unseen:
        assert word not in text


def test_html_to_text_is_linear_on_hostile_markup():
    import time

    for unit in ("<!--", "</", "<![", "<a x=\"", "<p>"):
        started = time.perf_counter()
        mime.html_to_text(unit * 100_000)
        assert time.perf_counter() - started < 2.0, unit


# ------------------------------------------------------------------------- defect categories

@pytest.mark.parametrize("raw, category", [
    (b"Date: not a date\r\nSubject: x\r\n\r\nbody", "date-invalid"),
    (b"From: nobody here\r\nSubject: x\r\n\r\nbody", "address-invalid"),
    (b"Message-ID: <>\r\nSubject: x\r\n\r\nbody", "message-id-invalid"),
    (b"Content-Type: text/plain; charset=x-made-up\r\n\r\nbody", "charset-unknown"),
    (b"Content-Type: text/plain; charset=unicode_escape\r\n\r\nbody", "charset-unknown"),
    (b"Subject: x\r\nodd\r\nTo: a@b.c\r\n\r\nbody", "header-stray-line"),
    (b"Subject: \xff\r\n\r\nbody", "header-invalid-utf8"),
    (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n", "multipart-no-close-boundary"),
    (b"Content-Type: multipart/mixed\r\n\r\nx", "multipart-no-boundary"),
])
def test_defects_are_named_by_category(raw, category):
    categories = {d.split(":", 1)[0] for d in mime.parse_summary(raw)["defects"]}
    assert category in categories


def test_a_clean_message_has_no_defects():
    raw = (b"From: A <a@example.org>\r\nTo: b@example.org\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
           b"Message-ID: <x@example.org>\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n")
    assert mime.parse_summary(raw)["defects"] == []


@pytest.mark.parametrize("body, preview", [
    (b"The body with a ->\x00<- null byte", "The body with a -> <- null byte"),
    (b"bell\x07 and \x1b escape and \xc2\x85 next line", "bell and escape and next line"),
])
def test_the_preview_is_plain_text_without_control_characters(body, preview):
    raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    assert mime.parse_summary(raw)["preview"] == preview


def test_html_without_a_mime_charset_is_read_in_its_meta_charset():
    raw = (b"Content-Type: text/html\r\n\r\n<html><head><meta http-equiv=\"Content-Type\" content=\"text/html;"
           b" charset=koi8-r\"></head><body>\xcd\xc9\xd2</body></html>")
    assert mime.parse_summary(raw)["preview"] == "мир"
    b = body(raw)
    assert b["bodyStructure"]["charset"] == "us-ascii"  # §4.1.4: the property is the MIME default
    assert "мир" in b["bodyValues"]["1"]["value"]
    declared = raw.replace(b"Content-Type: text/html", b"Content-Type: text/html; charset=utf-8")
    assert "мир" not in mime.parse_summary(declared)["preview"]  # the MIME charset wins over <meta>


@pytest.mark.parametrize("markup, seen", [
    ('<p>one</p><a href="x">two</a>', "one two"),
    ("<div>one</div><b>two</b>", "one two"),
    ("<div>one</div>two", "one two"),
    ("on<b>e</b>", "one"),
])
def test_what_follows_a_block_is_a_new_word(markup, seen):
    assert " ".join(mime.html_to_text(markup).split()) == seen


def test_encoded_words_in_utf16_are_each_decoded_on_their_own():
    raw = b"Subject: =?utf-16?Q?=FF=FEh=00e=00?= =?utf-16?Q?=FF=FEl=00l=00o=00?=\r\n\r\nbody"
    assert mime.parse_summary(raw)["subject"] == "hello"


def test_a_byte_order_mark_tells_the_charset_of_a_part_that_names_none():
    import base64

    html = '<p>visible</p><a title="a > hidden">hello</a>'.encode("utf-16")
    raw = b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(html)
    assert mime.parse_summary(raw)["preview"] == "visible hello"


def test_several_stray_lines_in_a_header_section_are_all_skipped():
    raw = (b"Subject: a\r\nFrom alice@example.org Mon Jan  1 00:00:00 2024\r\n"
           b"From alice@example.org Mon Jan  1 00:00:00 2024\r\nFrom: b@example.org\r\n"
           b"Message-ID: <m@example.org>\r\n\r\nbody")
    s = mime.parse_summary(raw)
    assert (s["from"], s["messageId"], s["preview"]) == ([{"name": None, "email": "b@example.org"}],
                                                         ["m@example.org"], "body")


# ------------------------------------------------------------------------- found in review (issue 12 session)

def test_an_attached_message_whose_multipart_reuses_the_outer_boundary_stays_whole():
    inner = (b"From: Dave <d@example.org>\r\nSubject: Inner\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\n"
             b"Inner text innerword.\r\n--BB--")
    raw = (b"Subject: fwd\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\n"
           b"Content-Type: text/plain\r\n\r\nSee the forwarded mail.\r\n--BB\r\nContent-Type: message/rfc822\r\n\r\n"
           + inner + b"\r\n--BB--\r\n")
    b = body(raw, body_props=["partId", "type", "size"])
    assert b["bodyStructure"]["subParts"] == [{"partId": "1", "type": "text/plain", "size": 23},
                                              {"partId": "2", "type": "message/rfc822", "size": len(inner)}]
    assert [p["partId"] for p in b["textBody"]] == ["1"]
    assert [p["partId"] for p in b["attachments"]] == ["2"]
    root, defects = mime._parse(raw)
    assert root.subparts[1].raw_body() == inner
    assert any(d.startswith("multipart-boundary-reused") for d in defects)
    assert "innerword" in mime.body_text(raw)  # still searchable, as the attached message's text


@pytest.mark.parametrize("markup, seen", [
    ('<center>Welcome</center><center>Unsubscribe</center><div><a href="https://x"><div>Shopnow</div></a>'
     "Footertext</div>", "Welcome Unsubscribe Shopnow Footertext"),
    ("<details><summary>sumword</summary>detword</details>", "sumword detword"),
    ("<fieldset><legend>legword</legend>fsword</fieldset>", "legword fsword"),
    ("<select><option>optone<option>opttwo</select>", "optone opttwo"),
    ("<span><p>inner</p></span>outer", "inner outer"),
    ("<b><i><div>deep</div></i></b>next", "deep next"),
    ("<table><caption>cap</caption><tr><td>cell</td></tr></table>", "cap cell"),
])
def test_a_block_element_is_apart_from_its_neighbours_also_inside_an_inline_one(markup, seen):
    assert " ".join(mime.html_to_text(markup).split()) == seen


def _html(declaration: bytes, charset: str | None = None) -> bytes:
    ctype = b"text/html" + (b"; charset=" + charset.encode() if charset else b"")
    return (b"Content-Type: " + ctype + b"\r\n\r\n<html><head>" + declaration
            + b"</head><body><p>Caf\xc3\xa9 metaword</p></body></html>")


@pytest.mark.parametrize("declaration", [
    b'<!-- <meta charset="koi8-r"> --><meta charset="utf-8">',  # a commented-out declaration
    b'<meta name="description" content="charset=koi8-r"><meta charset="utf-8">',  # content without http-equiv
    b'<meta charset="utf-16">',  # a byte-oriented declaration of UTF-16 means UTF-8
    b'<meta http-equiv="content-type" content="text/html; charset=utf-8">',
    b'<p title="<meta charset=koi8-r>">x</p><meta charset=utf-8>',  # inside an attribute value
])
def test_the_html_meta_charset_is_found_as_a_browser_prescans_it(declaration):
    s = mime.parse_summary(_html(declaration))
    assert s["preview"].endswith("Café metaword")
    value = body(_html(declaration), fetch_all=True)["bodyValues"]["1"]
    assert "Café" in value["value"] and value["isEncodingProblem"] is False


def test_a_meta_charset_that_is_a_python_codec_name_is_not_used():
    s = mime.parse_summary(_html(b"<meta charset=unicode_escape>"))
    assert s["preview"].endswith("Café metaword")  # the UTF-8 the bytes are, not an escape decoding


def _encrypted(control: str, payload: str) -> bytes:
    return (f'Content-Type: multipart/encrypted; protocol="{control}"; boundary=e\r\n\r\n--e\r\n'
            f"Content-Type: {control}\r\n\r\nVersion: 1\r\n--e\r\nContent-Type: {payload}\r\n"
            "Content-Disposition: inline\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nhQEM\r\n"
            "-----END PGP MESSAGE-----\r\n--e--\r\n").encode()


@pytest.mark.parametrize("raw", [
    _encrypted("application/pgp-encrypted", 'application/octet-stream; name="encrypted.asc"'),
    _encrypted("application/pgp-encrypted", "text/plain"),
    (b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
     b"Content-Disposition: attachment; filename=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAG\r\n"),
])
def test_encrypted_content_is_not_an_attachment(raw):
    assert mime.parse_summary(raw)["hasAttachment"] is False


def test_a_file_beside_encrypted_content_is_an_attachment():
    raw = (b"Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
           + _encrypted("application/pgp-encrypted", "application/octet-stream")
           + b"\r\n--m\r\nContent-Type: application/pdf\r\n\r\nPDF\r\n--m--\r\n")
    assert mime.parse_summary(raw)["hasAttachment"] is True


@pytest.mark.parametrize("ptype", ["text/x-" + "a" * 1200, "a" * 128 + "/plain", "-x/plain"])
def test_a_media_type_longer_than_rfc_6838_allows_is_refused(ptype):
    raw, err = mime.build_message({"bodyStructure": {"partId": "t", "type": ptype},
                                   "bodyValues": {"t": {"value": "hi"}}}, lambda blob_id: None)
    assert raw is None
    assert err["type"] == "invalidProperties" and err["properties"] == ["bodyStructure/type"]


def test_a_media_type_of_127_characters_each_side_is_built():
    ptype = "a" * 127 + "/" + "b" * 127
    raw, err = mime.build_message({"bodyStructure": {"partId": "t", "type": ptype},
                                   "bodyValues": {"t": {"value": "hi"}}}, lambda blob_id: None)
    assert err == {} and max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert mime._parse(raw)[0].type == ptype


def test_a_group_name_is_text_of_its_address_field_for_search():
    raw = (b"From: a@example.org\r\nTo: Friends: jane@example.org, John <john@example.org>;\r\n"
           b"Cc: Marketing Team: ;\r\n\r\nbody")
    text = mime.message_text(raw)
    assert text["to"] == "Friends, jane@example.org, John <john@example.org>"
    assert text["cc"] == "Marketing Team"
    assert text["from"] == "a@example.org"


@pytest.mark.parametrize("prop, value", [
    ("language", ["en\r\nBcc: v@example.org"]),
    ("language", ["en\x00"]),
    ("language", ["en, de"]),
    ("language", ["en de"]),
    ("cid", "a> <b"),
    ("cid", "a\x0bb@x"),
    ("location", "http://x y"),
    ("location", "http://x\x0by"),
])
def test_a_part_property_that_would_write_more_than_its_one_value_is_refused_by_name(prop, value):
    raw, err = mime.build_message({"bodyStructure": {"partId": "1", "type": "text/plain", prop: value},
                                   "bodyValues": {"1": {"value": "hi"}}}, lambda blob_id: None)
    assert raw is None
    assert err["type"] == "invalidProperties" and err["properties"] == [f"bodyStructure/{prop}"]


def test_part_properties_of_their_syntax_are_written():
    raw, err = mime.build_message({"bodyStructure": {
        "partId": "1", "type": "text/plain", "language": ["en-GB", "de"], "cid": "<img1@example.org>",
        "location": "https://example.org/a?b=c"}, "bodyValues": {"1": {"value": "hi"}}}, lambda blob_id: None)
    assert err == {}
    assert b"Content-Language: en-GB, de\r\n" in raw and b"Content-ID: <img1@example.org>\r\n" in raw
    assert b"Content-Location: https://example.org/a?b=c\r\n" in raw


def test_a_group_name_with_a_line_break_is_refused():
    raw, err = mime.build_message({
        "header:To:asGroupedAddresses": [{"name": "g:evil@x.y;\r\nBcc", "addresses": [{"email": "a@b.c"}]}],
        "textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": "x"}}}, lambda blob_id: None)
    assert raw is None and err["properties"] == ["header:To:asGroupedAddresses"]
