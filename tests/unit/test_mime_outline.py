"""The stored MIME outline (parse_summary's "outline", kept beside each email) gives exactly the
body properties that splitting the message again gives, on every committed real and crafted
message: it is an optimisation, never a second opinion."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from app.mail import mime

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = sorted([*(ROOT / "corpus" / "sample").glob("*.eml"), *(ROOT / "fixtures" / "mime").rglob("*.eml"),
                   *(ROOT / "fixtures" / "cases").rglob("*.eml")])

EVERY_BODY_PROPERTY = [*mime.DEFAULT_BODY_PROPERTIES, "headers", "header:Content-Type:asRaw", "subParts"]


def body(raw: bytes, outline, body_props) -> dict:
    return mime.body_properties(raw, want_structure=True, want_text=True, want_html=True,
                                want_attachments=True, body_props=body_props, fetch_text=False,
                                fetch_html=False, fetch_all=True, max_bytes=0, blob_prefix="Gx",
                                outline=outline)


def test_there_are_messages_to_compare():
    assert len(MESSAGES) > 50


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name)
def test_outline_gives_the_same_body_properties_as_parsing(path):
    raw = path.read_bytes()
    outline = orjson.loads(orjson.dumps(mime.parse_summary(raw)["outline"]))  # as stored
    for body_props in (None, EVERY_BODY_PROPERTY):
        assert body(raw, outline, body_props) == body(raw, None, body_props)


def test_an_outline_that_does_not_fit_the_bytes_is_not_used():
    raw = b"Subject: a\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    other = b"Subject: b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nhi there\r\n--x--\r\n"
    wrong = mime.parse_summary(other)["outline"]
    assert body(raw, wrong, None) == body(raw, None, None)
    stale = [mime.OUTLINE_VERSION + 1, mime.parse_summary(raw)["outline"][1]]
    assert body(raw, stale, None) == body(raw, None, None)


@pytest.mark.parametrize("path", MESSAGES[::4], ids=lambda p: p.name)
def test_outline_gives_the_same_snippet_text_as_parsing(path):
    raw = path.read_bytes()
    outline = orjson.loads(orjson.dumps(mime.parse_summary(raw)["outline"]))
    assert mime.body_text(raw, outline) == mime.body_text(raw)
