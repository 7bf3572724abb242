"""MIME structure of RFC 5322 messages as JMAP sees it (RFC 8621 §4.1).

Pure functions over raw message bytes: no storage, no HTTP.  Nothing here raises on
malformed mail; broken input produces a best-effort result plus ``defects``.

Design notes
------------
* Structure is split with a small byte-offset MIME splitter instead of
  ``email.parser``: it gives the exact octets of every part (the §4.1.4 blob of an
  attached ``message/rfc822`` must be the message as received, which the stdlib can only
  re-serialise), keeps the §4.1.2.1 Raw header values (compat32 drops the leading
  space), does not recurse into attached messages (§4.1.4 bodyStructure does not either)
  and is several times faster.  The stdlib ``email`` package still does the fiddly
  decoding: Content-Type/-Disposition parameters incl. RFC 2231, dates, RFC 2047 encoding.
* partId: IMAP section numbering (RFC 3501 §6.4.5).  A single-part message body is "1";
  the children of a multipart are numbered "1", "2", ... and a nested multipart at
  position "2" has children "2.1", "2.2", ...  Multipart nodes themselves have no partId
  (§4.1.4: null iff multipart) and no blobId.  Attached messages are leaves.
* blobId of a leaf = ``blob_prefix + partId``; ``extract_part`` resolves it again.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from selectolax.lexbor import LexborHTMLParser

from app.mail.charsets import codec_for, valid_json, valid_text
from app.mail.charsets import decode as decode_bytes
from app.mail.headers import (
    EmailAddress,
    b64decode_lenient,
    decode_rfc2047,
    encode_text,
    format_address_text,
    format_addresses,
    format_date,
    format_grouped,
    format_message_ids,
    format_urls,
    has_line_break,
    header_value,
    is_addr_spec,
    is_valid_header_form,
    message_problem,
    parse_addresses,
    parse_date,
    parse_grouped_addresses,
    parse_header_property,
    parse_jmap_date,
    parse_message_ids,
    parse_text,
    split_header_block,
    strip_comments,
    unfold,
)
from app.mail.params import format_params, parse_params
from app.mail.prescan import meta_charset

__all__ = [
    "DEFAULT_BODY_PROPERTIES",
    "EmailAddress",
    "body_properties",
    "build_message",
    "extract_part",
    "header_value",
    "is_valid_header_form",
    "message_problem",
    "message_text",
    "parse_header_property",
    "parse_headers",
    "parse_summary",
]

log = logging.getLogger(__name__)

# RFC 8621 §4.2 Email/get: default bodyProperties.
DEFAULT_BODY_PROPERTIES = [
    "partId", "blobId", "size", "name", "type", "charset", "disposition", "cid", "language", "location",
]  # fmt: skip

MAX_DEPTH = 40  # deeper multipart nesting is treated as an opaque leaf
MAX_PARTS = 2000  # stop splitting after this many entities (zip-bomb style messages)
PREVIEW_CHARS = 256  # §4.1.4: preview MUST NOT exceed 256 characters
_PREVIEW_SCAN = 64 * 1024  # encoded bytes of a text/plain part looked at for the preview
_PREVIEW_SCAN_HTML = 512 * 1024
MAX_FIELD_VALUE = 900  # an unfoldable header value (cid, location) must fit a 998-octet line
MAX_INDEX_TEXT = 4 * 1024 * 1024  # characters of body text handed to the indexer

_HIGH_BYTES = bytes(range(128, 256))
_KNOWN_CTE = frozenset(("", "7bit", "8bit", "binary", "base64", "quoted-printable"))
_UU_CTE = frozenset(("x-uuencode", "uuencode", "x-uue"))


# --------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------


class _Part:
    """One MIME entity: header fields plus the byte range of its (encoded) body.  A part rebuilt
    from a stored outline (`_from_outline`) parses its header fields only when they are asked for."""

    __slots__ = ("data", "_headers", "hstart", "start", "end", "content", "type", "subparts", "part_id",
                 "_attrs", "_decoded", "_size", "_cte")

    def __init__(self, data: bytes, headers: list[tuple[str, str]] | None, start: int, end: int,
                 hstart: int = 0) -> None:
        self.data = data
        self._headers = headers
        self.hstart = hstart  # where the header section starts (it ends at start)
        self.start = start
        self.end = end
        self.content: _Content | None = None
        self.type = "text/plain"
        self.subparts: list[_Part] | None = None
        self.part_id: str | None = None
        self._attrs: dict | None = None
        self._decoded: tuple[bytes, bool] | None = None
        self._size: int | None = None
        self._cte: str | None = None

    @property
    def headers(self) -> list[tuple[str, str]]:
        if self._headers is None:
            self._headers = split_header_block(self.data, self.hstart, self.end, [])[0] \
                if self.hstart < self.start else []
        return self._headers

    def size(self) -> int:
        """§4.1.4 size: the decoded octets of a leaf, the encoded body of a multipart."""
        if self._size is None:
            self._size = len(self.decoded()[0]) if self.subparts is None else self.end - self.start
        return self._size

    def header(self, lname: str) -> str | None:
        value = None
        for name, raw in self.headers:
            if name.lower() == lname:
                value = raw  # last instance wins, as for header:X
        return value

    # -- §4.1.4 EmailBodyPart properties, computed once --------------------------------

    def attrs(self) -> dict:
        if self._attrs is None:
            self._attrs = _part_attrs(self)
        return self._attrs

    @property
    def name(self) -> str | None:
        return self.attrs()["name"]

    @property
    def disposition(self) -> str | None:
        return self.attrs()["disposition"]

    @property
    def cid(self) -> str | None:
        return self.attrs()["cid"]

    def raw_body(self) -> bytes:
        return self.data[self.start : self.end]

    def cte(self) -> str:
        if self._cte is None:
            value = self.header("content-transfer-encoding")
            self._cte = "" if value is None else strip_comments(unfold(value)).strip().lower()
        return self._cte

    def decoded(self) -> tuple[bytes, bool]:
        """(content after transfer decoding, whether the encoding was known)."""
        if self._decoded is None:
            self._decoded = _transfer_decode(self.raw_body(), self.cte())
        return self._decoded


def _transfer_decode(body: bytes, cte: str) -> tuple[bytes, bool]:
    # §4.1.4 blobId: "If the transfer encoding is unknown, it is treated as though it had
    # no transfer encoding."
    if cte == "base64":
        return b64decode_lenient(body), True
    if cte == "quoted-printable":
        return binascii.a2b_qp(body), True
    if cte in _UU_CTE:
        return _uudecode(body), True
    return body, cte in _KNOWN_CTE


def _uudecode(body: bytes) -> bytes:
    out = []
    inside = False
    for line in body.splitlines():
        if not inside:
            inside = line.startswith(b"begin ")
            continue
        if line.strip() in (b"end", b"`"):
            break
        out.append(_uu_line(line))
    return b"".join(out)


def _uu_line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        try:  # lines padded wrongly by old encoders
            n = (((line[0] - 32) & 63) * 4 + 5) // 3 if line else 0
            return binascii.a2b_uu(line[:n])
        except (binascii.Error, IndexError):
            return b""


# -- the same decodings, piecewise: a part decoded in chunks (`transfer_decoder`) gives exactly the
# octets of `_transfer_decode` over its whole body, wherever the chunks are cut (tests/unit/test_part_stream.py).


class _Identity:
    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


_B64_JUNK = bytes(sorted(set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")))


def _b64_run(run: bytes) -> bytes:
    # one run of base64 between '=' runs, repaired as b64decode_lenient repairs it
    rem = len(run) % 4
    if rem == 1:
        run = run[:-1]
    elif rem:
        run += b"=" * (4 - rem)
    try:
        return binascii.a2b_base64(run) if run else b""
    except (binascii.Error, ValueError):
        return b""


class _Base64Decoder:
    """b64decode_lenient in pieces.  That function's result is always its fallback's: junk dropped,
    the rest split at runs of '=', each run repaired (a run of 4n+1 loses its last character) and
    decoded (its fast path, taken only when '=' is nothing but trailing padding, gives the same
    octets).  Whole quads of the current run are decoded as they come; at most 3 characters carry."""

    def __init__(self) -> None:
        self.carry = b""

    def feed(self, data: bytes) -> bytes:
        data = data.translate(None, _B64_JUNK)
        if self.carry:
            data = self.carry + data
        if b"=" not in data:
            n = len(data) - len(data) % 4
            self.carry = data[n:]
            return binascii.a2b_base64(memoryview(data)[:n]) if n else b""
        *done, last = data.split(b"=")
        n = len(last) - len(last) % 4
        self.carry = last[n:]
        out = b"".join(_b64_run(run) for run in done if run)
        return out + binascii.a2b_base64(last[:n]) if n else out

    def finish(self) -> bytes:
        run, self.carry = self.carry, b""
        return _b64_run(run)


_QP_LONG = 64 * 1024  # a line without LF longer than this is decoded in pieces


class _QPDecoder:
    """binascii.a2b_qp in pieces.  a2b_qp reads left to right and never consumes a LF inside an
    escape, so right after any LF it is in its plain state: input is cut after the last LF.  A longer
    line is cut before a position whose two preceding octets are not '=' (no escape spans it), unless
    a '=' CR started a soft line break, which a2b_qp ends only at the next LF (all skipped)."""

    def __init__(self) -> None:
        self.buf = b""
        self.skipping = False  # inside a soft line break "=\r...": dropped up to and including LF

    def feed(self, data: bytes) -> bytes:
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return b""
            self.skipping = False
            data = data[nl + 1 :]
        buf = self.buf + data
        out = b""
        nl = buf.rfind(b"\n")
        if nl >= 0:
            out = binascii.a2b_qp(buf[: nl + 1])
            buf = buf[nl + 1 :]
        self.buf = buf
        if len(buf) > _QP_LONG:
            out += self._cut_long()
        return out

    def _cut_long(self) -> bytes:
        buf = self.buf  # no LF in it; a2b_qp is in its plain state at its start
        i = buf.find(b"=\r")
        while i >= 0:
            j = i
            while j and buf[j - 1] == 61:
                j -= 1
            run = i - j + 1  # this '=' and those right before it
            if run % 2:  # '=' pairs decode to '='; an odd one starts the soft break
                self.buf, self.skipping = b"", True
                return binascii.a2b_qp(buf[:i])
            i = buf.find(b"=\r", i + 1)
        k = len(buf)
        while k > 1 and (buf[k - 1] == 61 or buf[k - 2] == 61):
            k -= 1
        if k < len(buf) // 2:
            return b""  # a long run of '=': wait for more (pathological)
        self.buf = buf[k:]
        return binascii.a2b_qp(buf[:k])

    def finish(self) -> bytes:
        buf, self.buf = self.buf, b""
        return b"" if self.skipping else binascii.a2b_qp(buf)


class _UUDecoder:
    """_uudecode in pieces: whole lines (split as bytes.splitlines does, a CR at the end of a piece
    waiting for a possible LF) go through the same per-line steps.  A line is held whole."""

    def __init__(self) -> None:
        self.buf = b""
        self.inside = False
        self.done = False

    def _lines(self, lines: list[bytes]) -> bytes:
        out = []
        for line in lines:
            if self.done:
                break
            if not self.inside:
                self.inside = line.startswith(b"begin ")
                continue
            if line.strip() in (b"end", b"`"):
                self.done = True
                break
            out.append(_uu_line(line))
        return b"".join(out)

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        buf = self.buf + data
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r", 0, len(buf) - 1)) + 1
        self.buf = buf[cut:]
        return self._lines(buf[:cut].splitlines()) if cut else b""

    def finish(self) -> bytes:
        buf, self.buf = self.buf, b""
        return b"" if self.done else self._lines(buf.splitlines())


def transfer_decoder(cte: str) -> _Identity | _Base64Decoder | _QPDecoder | _UUDecoder:
    """A decoder with ``feed(piece) -> bytes`` and ``finish() -> bytes`` whose output, concatenated,
    is `_transfer_decode` of the concatenated pieces (unknown encodings pass the octets through)."""
    if cte == "base64":
        return _Base64Decoder()
    if cte == "quoted-printable":
        return _QPDecoder()
    if cte in _UU_CTE:
        return _UUDecoder()
    return _Identity()


_MEDIA_TYPE_RE = re.compile(r"^[a-z0-9!#$%&'*+^_`{|}~.-]+/[a-z0-9!#$%&'*+^_`{|}~.-]+$")


class _Content:
    """Content-Type and Content-Disposition of one entity, parsed (RFC 2045, RFC 2183, RFC 2231)."""

    __slots__ = ("type", "params", "disposition", "disp_params")

    def __init__(self, ctype: str | None, cdisp: str | None, default_type: str) -> None:
        self.type = default_type
        self.params: dict[str, str] = {}
        if ctype is not None:
            main, self.params = parse_params(strip_comments(unfold(ctype)))
            main = re.sub(r"\s+", "", main)
            # RFC 2045 §5.2: a Content-Type that does not parse means text/plain
            self.type = main if _MEDIA_TYPE_RE.match(main) else "text/plain"
        self.disposition: str | None = None
        self.disp_params: dict[str, str] = {}
        if cdisp is not None:
            main, self.disp_params = parse_params(strip_comments(unfold(cdisp)))
            self.disposition = main or None

    def filename(self) -> str | None:
        """The filename parameter of Content-Disposition, else the name parameter of Content-Type."""
        return self.disp_params.get("filename") or self.params.get("name")


def _part_attrs(p: _Part) -> dict:
    content = p.content or _Content(None, None, "text/plain")
    name: str | None = None
    filename = content.filename()
    if filename:
        # RFC 2047 inside a quoted parameter is not allowed, but Outlook & co send it.
        name = decode_rfc2047(filename, strict=False).strip() or None
    charset = (content.params.get("charset") or "").strip() or None
    if charset is None and p.subparts is None:
        # §4.1.4 charset: implicit us-ascii for text/* or a part without Content-Type.
        if p.type.startswith("text/"):
            charset = "us-ascii"
    cid = p.header("content-id")
    if cid is not None:
        cid = re.sub(r"\s+", "", strip_comments(unfold(cid))).strip("<>") or None
    language = p.header("content-language")
    if language is not None:
        language = [t.strip() for t in strip_comments(unfold(language)).split(",") if t.strip()]
    location = p.header("content-location")
    if location is not None:
        location = re.sub(r"\s+", "", unfold(location)) or None
    return {
        "name": name,
        "disposition": content.disposition,
        "charset": charset,
        "cid": cid,
        "language": language,
        "location": location,
    }


def _delimiters(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int, bool]]:
    """The ``--boundary`` delimiter lines in data[start:end] (RFC 2046 §5.1.1), in order:
    (start of the line, start of the next line, is the close delimiter).  A close delimiter
    does not end the scan: an inner multipart may have reused its parent's boundary."""
    delim = b"--" + boundary
    out: list[tuple[int, int, bool]] = []
    pos = start
    while True:
        i = data.find(delim, pos, end)
        if i < 0:
            return out
        pos = i + 1
        if i != start and data[i - 1] != 10:  # must start a line
            continue
        j = i + len(delim)
        is_close = data.startswith(b"--", j, end)
        nl = data.find(b"\n", j, end)
        line_end = end if nl < 0 else nl
        if data[j + 2 if is_close else j : line_end].strip(b" \t\r"):
            continue  # a longer boundary that merely starts with ours
        after = end if nl < 0 else nl + 1
        out.append((i, after, is_close))
        pos = after


def _before_delimiter(data: bytes, start: int, i: int) -> int:
    # the CRLF before a delimiter belongs to the delimiter
    if i > start and data[i - 1] == 10:
        i -= 1
        if i > start and data[i - 1] == 13:
            i -= 1
    return i


class _State:
    __slots__ = ("count", "defects")

    def __init__(self) -> None:
        self.count = 0
        self.defects: list[str] = []


class _Multipart:
    """The delimiters of one boundary, shared by nested multiparts that reuse it."""

    __slots__ = ("boundary", "delims", "next")

    def __init__(self, boundary: str, delims: list[tuple[int, int, bool]]) -> None:
        self.boundary = boundary
        self.delims = delims
        self.next = 0  # index of the first delimiter not yet consumed


def _parse_entity(
    data: bytes, start: int, end: int, path: str, depth: int, default_type: str, st: _State,
    outer: _Multipart | None = None,
) -> _Part:
    """One entity of data[start:end].  ``outer`` is the enclosing multipart's delimiter list:
    a multipart that declares the same boundary (malformed, RFC 2046 §5.1.1) takes its parts
    from that list, up to the first close delimiter, which is the sender's intent; its end
    then moves to the end of that close delimiter."""
    headers, body_start = split_header_block(data, start, end, st.defects)
    p = _Part(data, headers, body_start, end, start)
    st.count += 1
    p.content = _Content(p.header("content-type"), p.header("content-disposition"), default_type)
    p.type = p.content.type
    if p.type.startswith("multipart/"):
        p.subparts = _parse_children(p, path, depth, st, outer)
    else:
        p.part_id = path or "1"
        if outer is not None and p.type in _ENCAPSULATED and depth < MAX_DEPTH:
            _claim_reused_delimiters(p, depth, st, outer)
    return p


_ENCAPSULATED = frozenset(("message/rfc822", "message/global"))


def _claim_reused_delimiters(p: _Part, depth: int, st: _State, outer: _Multipart) -> None:
    """An attached message whose own multipart reuses the boundary of the multipart around it
    (the sender's intent as for a reused boundary in ``_parse_entity``, one level down): the
    delimiters up to the attached multipart's close are its own, so the attached message stays
    whole, up to the next delimiter of the multipart around it, and none of its parts become
    parts of the message that carries it.  The attached message remains a leaf (§4.1.4)."""
    ctype = None
    for name, raw in split_header_block(p.data, p.start, p.end, [])[0]:
        if name.lower() == "content-type":
            ctype = raw
    if ctype is None:
        return
    inner = _Content(ctype, None, "text/plain")
    if not inner.type.startswith("multipart/") or inner.params.get("boundary") != outer.boundary:
        return
    # a dry run of the attached message's structure consumes its delimiters from ``outer``
    _parse_entity(p.data, p.start, len(p.data), p.part_id or "1", depth + 1, "text/plain", _State(), outer)
    st.defects.append(f"multipart-boundary-reused: the message attached as part {p.part_id} "
                      "reuses the boundary of the multipart around it")
    if outer.next < len(outer.delims):
        p.end = _before_delimiter(p.data, p.start, outer.delims[outer.next][0])


def _parse_children(p: _Part, path: str, depth: int, st: _State, outer: _Multipart | None) -> list[_Part]:
    data, body_start, end = p.data, p.start, p.end
    boundary = p.content.params.get("boundary") if p.content else None
    problem = category = None
    if depth >= MAX_DEPTH or st.count >= MAX_PARTS:
        category, problem = "multipart-too-deep", "nested too deeply or too many parts; not split"
    elif not boundary:
        category, problem = "multipart-no-boundary", "without boundary parameter"
    if problem is None:
        if outer is not None and outer.boundary == boundary:
            mp = outer
            st.defects.append(f"multipart-boundary-reused: {p.type} reuses the boundary of the multipart around it")
        else:
            mp = _Multipart(boundary, _delimiters(data, body_start, end, boundary.encode("utf-8", "replace")))
        if mp.next >= len(mp.delims) or mp.delims[mp.next][2]:
            category, problem = "multipart-no-start-boundary", "start boundary not found"
    if problem is not None:
        # keep the part's own type; its body becomes one implicit part (RFC 2046 §5.1.1 default
        # type), so the text is still shown and downloadable
        st.defects.append(f"{category}: {p.type} {problem}")
        child_type = "application/octet-stream" if "deeply" in problem else "text/plain"
        child = _Part(data, [], body_start, end, body_start)
        child.type = child_type
        child.content = _Content(None, None, child_type)
        child.part_id = f"{path}.1" if path else "1"
        return [child]
    sub_default = "message/rfc822" if p.type == "multipart/digest" else "text/plain"
    children: list[_Part] = []
    closed = False
    while mp.next < len(mp.delims):
        _i, part_start, is_close = mp.delims[mp.next]
        mp.next += 1
        if is_close:
            p.end = part_start if mp is outer else p.end
            closed = True
            break
        if st.count >= MAX_PARTS:
            st.defects.append("multipart-too-many-parts: too many MIME parts; rest ignored")
            break
        part_end = _before_delimiter(data, part_start, mp.delims[mp.next][0]) if mp.next < len(mp.delims) else end
        child_path = f"{path}.{len(children) + 1}" if path else str(len(children) + 1)
        children.append(_parse_entity(data, part_start, part_end, child_path, depth + 1, sub_default, st, mp))
    if not closed:
        st.defects.append(f"multipart-no-close-boundary: {p.type}: missing closing boundary")
    return children


def _parse(raw: bytes) -> tuple[_Part, list[str]]:
    st = _State()
    root = _parse_entity(raw, 0, len(raw), "", 0, "text/plain", st)
    return root, st.defects


# -- the outline: the structure found at ingest, stored beside the email (`Writer.add_email`), so that
# Email/get's body properties need not split the message again.  A JSON list per entity:
# [header start, body start, end, type, partId, transfer encoding, size, [name, disposition,
# charset, cid, language, location], charset given, sub-entities or None], in [OUTLINE_VERSION, root].
OUTLINE_VERSION = 1
_ATTR_NAMES = ("name", "disposition", "charset", "cid", "language", "location")


def _outline(p: _Part) -> list:
    a = p.attrs()
    leaf = p.subparts is None
    return [p.hstart, p.start, p.end, p.type, p.part_id, p.cte() if leaf else "", p.size(),
            [a[k] for k in _ATTR_NAMES], p.content is not None and "charset" in p.content.params,
            None if leaf else [_outline(c) for c in p.subparts or []]]


def _from_outline(data: bytes, node: list) -> _Part:
    hstart, start, end, ptype, part_id, cte, size, attrs, charset_given, children = node
    p = _Part(data, None, start, end, hstart)
    p.type, p.part_id, p._size, p._cte = ptype, part_id, size, cte
    p._attrs = dict(zip(_ATTR_NAMES, attrs, strict=True))
    p.content = _Content(None, None, ptype)
    p.content.disposition = attrs[1]
    if charset_given:
        p.content.params = {"charset": attrs[2]}
    if children is not None:
        p.subparts = [_from_outline(data, c) for c in children]
    return p


def _root(raw: bytes, outline: list | None) -> _Part:
    """The message's structure: rebuilt from its stored outline when there is one of this version
    and it fits the bytes, else split again."""
    if outline and outline[0] == OUTLINE_VERSION and outline[1][2] == len(raw):
        return _from_outline(raw, outline[1])
    return _parse(raw)[0]


def _leaves(p: _Part):
    if p.subparts is None:
        yield p
    else:
        for c in p.subparts:
            yield from _leaves(c)


# --------------------------------------------------------------------------------------
# textBody / htmlBody / attachments: RFC 8621 §4.1.4 parseStructure, ported literally
# --------------------------------------------------------------------------------------


def _is_inline_media(ptype: str) -> bool:
    return ptype.startswith(("image/", "audio/", "video/"))


def _parse_structure(
    parts: list[_Part],
    multipart_type: str,
    in_alternative: bool,
    html_body: list[_Part] | None,
    text_body: list[_Part] | None,
    attachments: list[_Part],
) -> None:
    # JS truthiness of the lists ([] is truthy) maps to "is not None" here.
    text_length = len(text_body) if text_body is not None else -1
    html_length = len(html_body) if html_body is not None else -1
    for i, part in enumerate(parts):
        ptype = part.type
        is_multipart = part.subparts is not None
        is_inline = (
            part.disposition != "attachment"
            and (ptype == "text/plain" or ptype == "text/html" or _is_inline_media(ptype))
            and (i == 0 or (multipart_type != "related" and (_is_inline_media(ptype) or not part.name)))
        )
        if is_multipart:
            sub = ptype.split("/", 1)[1]
            _parse_structure(
                part.subparts or [], sub, in_alternative or sub == "alternative", html_body, text_body, attachments
            )
        elif is_inline:
            if multipart_type == "alternative":
                # (The JS would throw on a nulled list here; we just skip it.)
                if ptype == "text/plain":
                    if text_body is not None:
                        text_body.append(part)
                elif ptype == "text/html":
                    if html_body is not None:
                        html_body.append(part)
                else:
                    attachments.append(part)
                continue
            elif in_alternative:
                if ptype == "text/plain":
                    html_body = None
                if ptype == "text/html":
                    text_body = None
            if text_body is not None:
                text_body.append(part)
            if html_body is not None:
                html_body.append(part)
            if (text_body is None or html_body is None) and _is_inline_media(ptype):
                attachments.append(part)
        else:
            attachments.append(part)
    if multipart_type == "alternative" and text_body is not None and html_body is not None:
        # Found HTML part only
        if text_length == len(text_body) and html_length != len(html_body):
            text_body.extend(html_body[html_length:])
        # Found plaintext part only
        if html_length == len(html_body) and text_length != len(text_body):
            html_body.extend(text_body[text_length:])


def _flatten(root: _Part) -> tuple[list[_Part], list[_Part], list[_Part]]:
    text: list[_Part] = []
    html: list[_Part] = []
    atts: list[_Part] = []
    _parse_structure([root], "mixed", False, html, text, atts)
    return text, html, atts


# Parts a mail client processes itself and never offers as a download (§4.1.4 hasAttachment: the
# server "MAY ignore parts ... processed automatically"): signatures and encrypted content with its
# control part (RFC 1847, RFC 3156, RFC 8551: the client decrypts them and shows what is inside),
# keys, and the machine-read parts of delivery, disposition and feedback reports (RFC 3464,
# RFC 6533, RFC 8098, RFC 5965).  They stay in ``attachments``; they only do not make
# hasAttachment true.
_AUTOMATIC_TYPES = frozenset((
    "application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature",
    "application/pgp-encrypted", "application/pkcs7-mime", "application/x-pkcs7-mime",
    "application/pgp-keys",
    "message/delivery-status", "message/global-delivery-status", "text/rfc822-headers",
    "message/global-headers", "message/disposition-notification",
    "message/global-disposition-notification", "message/feedback-report",
))  # fmt: skip


def _security_parts(p: _Part, out: set[int]) -> set[int]:
    """ids of the parts a client consumes whatever type the sender gave them: the signature of
    every multipart/signed (RFC 1847 §2.1: its second part) and both parts of every
    multipart/encrypted (§2.2: the control information and the encrypted data)."""
    if p.subparts is not None:
        if p.type == "multipart/signed" and len(p.subparts) == 2 and p.subparts[1].subparts is None:
            out.add(id(p.subparts[1]))
        elif p.type == "multipart/encrypted" and len(p.subparts) == 2:
            out.update(id(c) for c in p.subparts if c.subparts is None)
        for child in p.subparts:
            _security_parts(child, out)
    return out


def _has_attachment(root: _Part, attachments: list[_Part]) -> bool:
    """hasAttachment (§4.1.4 leaves the rule to the server): a part of ``attachments`` that a
    user sees as a file.  Not counted: parts processed automatically (``_AUTOMATIC_TYPES`` and
    what ``_security_parts`` names in multipart/signed and /encrypted), and images shown inside
    the body: an image/* part with ``Content-Disposition: inline``, or with a Content-ID and no
    explicit ``attachment`` disposition (an embedded cid: image).  Inline PDFs etc. still count."""
    consumed: set[int] | None = None
    for p in attachments:
        if p.type in _AUTOMATIC_TYPES:
            continue
        if p.type.startswith("image/"):
            if p.disposition == "inline" or (p.cid and p.disposition != "attachment"):
                continue
        if consumed is None:
            consumed = _security_parts(root, set())
        if id(p) in consumed:
            continue
        return True
    return False


# --------------------------------------------------------------------------------------
# Text extraction
# --------------------------------------------------------------------------------------

# HTML is read by lexbor (selectolax), a complete HTML5 parser in C: linear on hostile markup
# (the stdlib html.parser of Python 3.11 is quadratic on "<!--" runs and can raise), and exactly
# as a browser reads attributes, comments and script.  Elements whose content a reader never sees
# are removed before the text is taken.
_INVISIBLE = ["head", "title", "script", "style", "template", "noscript", "noframes", "noembed", "iframe",
              "object", "svg", "math"]
# Elements a browser lays out as blocks, rows or list items (the HTML Living Standard's rendering
# section, §15.3): their text is kept apart from what comes before and after them.
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body br caption center dd details dialog dir div dl dt "
    "fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li "
    "listing main menu nav ol optgroup option p plaintext pre search section summary table tbody "
    "tfoot thead tr ul xmp".split()
)
_CELL_TAGS = frozenset(("td", "th"))


def html_to_text(markup: str) -> str:
    """The text a reader of ``markup`` sees (RFC 8621 §4.1.4 preview, §4.4.1 search): character
    references resolved; no tags, attributes, comments, scripts or styles; a block element's text
    is on lines of its own (also inside an inline element: ``<a><div>x</div></a>y``), table cells
    are separated by a space.  Line breaks are not collapsed.  Linear time."""
    if "<" not in markup and "&" not in markup:
        return markup
    tree = LexborHTMLParser(markup)
    tree.strip_tags(_INVISIBLE)
    root = tree.root
    if root is None:
        return ""
    out: list[str] = []
    for node in root.traverse(include_text=True):  # document order, without recursion
        tag = node.tag
        if tag in _BLOCK_TAGS:
            out.append("\n")
            continue
        # a block ended just before this node if the node before it, or that node's last
        # descendant on the way down, is one
        prev = node.prev
        while prev is not None:
            if prev.tag in _BLOCK_TAGS:
                out.append("\n")
                break
            prev = prev.last_child
        if tag == "-text":
            out.append(node.text_content or "")
        elif tag in _CELL_TAGS:
            out.append(" ")
    return valid_text("".join(out))[0]


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _part_text(p: _Part, limit: int = 0) -> tuple[str, bool]:
    """Decoded text of a leaf (transfer encoding + charset), CRLF -> LF.
    With ``limit`` only roughly the first ``limit`` encoded bytes are looked at."""
    cte = p.cte()
    known = True
    if limit and p.end - p.start > limit:
        body, known = _transfer_decode(p.data[p.start : p.start + limit], cte)
        # Do not end on a partial multi-byte character (it would look like bad UTF-8).
        cut = len(body)
        while cut > 0 and len(body) - cut < 8 and body[cut - 1] >= 0x80:
            cut -= 1
        body = body[:cut] if cut > 0 else body
    else:
        body, known = p.decoded()
    charset = p.attrs()["charset"]
    if p.content is not None and "charset" not in p.content.params:
        # no charset on the Content-Type: a byte-order mark, then (HTML) the document's own <meta>
        # declaration, as a browser reads them (HTML Living Standard, "prescan"); the charset
        # property stays the MIME default (§4.1.4)
        charset = _bom_charset(body) or (meta_charset(body) if p.type == "text/html" else None) or charset
    text, problem = decode_bytes(body, charset)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text, problem or not known


_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _bom_charset(body: bytes) -> str | None:
    if body.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"  # the codec reads the mark and drops it
    return None


def _preview(text_parts: list[_Part]) -> str:
    """§4.1.4 preview: plain text, so no control characters (binary sent as text shows as spaces)."""
    for p in text_parts:
        if p.type == "text/plain":
            text = _part_text(p, _PREVIEW_SCAN)[0]
        elif p.type == "text/html":
            text = html_to_text(_part_text(p, _PREVIEW_SCAN_HTML)[0])
        else:
            continue
        text = _collapse(_CONTROL_RE.sub(" ", text))
        if text:
            return text[:PREVIEW_CHARS]
    return ""


# --------------------------------------------------------------------------------------
# Public API: parsing
# --------------------------------------------------------------------------------------

# RFC 5256 §2.1 base subject, the one RFC 8621 §4.4.2 sorts on. Only the reply/forward markers
# RFC 5256 defines are removed (not localised ones such as "AW:"): a sort must be predictable.
_BLOB = r"\[[^\[\]]*\][ \t]*"
_SUBJ_TRAILER_RE = re.compile(r"(?:\(fwd\)|[ \t])+$", re.I)
_SUBJ_LEADER_RE = re.compile(rf"^(?:(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:|[ \t]+)", re.I)
_SUBJ_BLOB_RE = re.compile(rf"^{_BLOB}")
_SUBJ_FWD_RE = re.compile(r"^\[fwd:(.*)\]$", re.I | re.S)


def normalize_subject(subject: str | None) -> str:
    """The RFC 5256 §2.1 base subject, lower-cased (the collation folds case anyway)."""
    if not subject:
        return ""
    s = _collapse(subject)  # step 1: encoded words are decoded already; runs of space become one
    while True:
        s = _SUBJ_TRAILER_RE.sub("", s)  # step 2
        while True:  # steps 3-5
            before = s
            s = _SUBJ_LEADER_RE.sub("", s, count=1)
            blob = _SUBJ_BLOB_RE.match(s)
            if blob and s[blob.end():].strip():  # step 4: only if something is left
                s = s[blob.end():]
            if s == before:
                break
        fwd = _SUBJ_FWD_RE.match(s)  # step 6
        if not fwd:
            break
        s = fwd.group(1)
    return s.strip().lower()


def parse_headers(raw: bytes) -> list[dict]:
    """The §4.1.3 ``headers`` property: top-level fields in order, values in Raw form
    (text after the colon incl. the leading space, folding line breaks kept)."""
    try:
        fields, _ = split_header_block(raw)
    except Exception:  # noqa: BLE001
        log.exception("parse_headers failed")
        return []
    return [{"name": n, "value": v} for n, v in fields]


def _last_header(fields: list[tuple[str, str]]) -> dict[str, str]:
    last: dict[str, str] = {}
    for name, value in fields:
        last[name.lower()] = value
    return last


def parse_summary(raw: bytes) -> dict:
    """Metadata computed once at ingest: the fast Email properties plus threading keys.

    hasAttachment: see ``_has_attachment``.  preview: the first non-empty
    text/plain or (tag-stripped) text/html part of textBody, whitespace collapsed, at
    most 256 characters.  thread_ids: own Message-ID, In-Reply-To, References, lower-cased
    and de-duplicated.  defects: structural/header problems found while parsing.
    """
    try:
        return _parse_summary(raw)
    except Exception as exc:  # noqa: BLE001 - ingest must never fail on a message
        log.exception("parse_summary failed")
        return {
            "size": len(raw), "messageId": None, "inReplyTo": None, "references": None,
            "sender": None, "from": None, "to": None, "cc": None, "bcc": None, "replyTo": None,
            "subject": None, "sentAt": None, "hasAttachment": False, "preview": "",
            "thread_ids": [], "normalized_subject": "", "defects": [f"internal parser error: {exc!r}"],
            "outline": None,
        }  # fmt: skip


def _parse_summary(raw: bytes) -> dict:
    root, defects = _parse(raw)
    last = _last_header(root.headers)

    def ids(name: str) -> list[str] | None:
        v = last.get(name)
        return parse_message_ids(v) if v is not None else None

    def addrs(name: str) -> list[EmailAddress] | None:
        v = last.get(name)
        return parse_addresses(v) if v is not None else None

    message_id, in_reply_to, references = ids("message-id"), ids("in-reply-to"), ids("references")
    subject = parse_text(last["subject"]) if "subject" in last else None
    sent_at = parse_date(last["date"]) if "date" in last else None
    text, _html, atts = _flatten(root)
    addresses = {name: addrs(name) for name in ("sender", "from", "to", "cc", "bcc", "reply-to")}
    _field_defects(last, sent_at, message_id, addresses, root, defects)
    thread_ids: list[str] = []
    seen = set()
    for mid in (message_id or []) + (in_reply_to or []) + (references or []):
        key = mid.lower()
        if key not in seen:
            seen.add(key)
            thread_ids.append(key)
    return {
        "size": len(raw),
        "messageId": message_id,
        "inReplyTo": in_reply_to,
        "references": references,
        "sender": addresses["sender"],
        "from": addresses["from"],
        "to": addresses["to"],
        "cc": addresses["cc"],
        "bcc": addresses["bcc"],
        "replyTo": addresses["reply-to"],
        "subject": subject,
        "sentAt": sent_at,
        "hasAttachment": _has_attachment(root, atts),
        "preview": _preview(text),
        "thread_ids": thread_ids,
        "normalized_subject": normalize_subject(subject),
        "defects": defects,
        "outline": [OUTLINE_VERSION, _outline(root)],
    }


def _field_defects(last: dict[str, str], sent_at: str | None, message_id: list[str] | None,
                   addresses: dict[str, list | None], root: _Part, defects: list[str]) -> None:
    """Defects of the fields a reader relies on, found without extra parsing: a Date, Message-ID or
    address field that is there but does not parse, and text parts in a charset that is not a
    registered one (their text is read as UTF-8 and flagged, RFC 8621 §4.1.4)."""
    if "date" in last and sent_at is None:
        defects.append(f"date-invalid: Date {unfold(last['date']).strip()[:60]!r} does not parse")
    if "message-id" in last and message_id is None:
        defects.append("message-id-invalid: Message-ID holds no msg-id")
    for name, value in addresses.items():
        if value is not None and (not value or any("@" not in a["email"] for a in value)) \
                and last[name].strip():
            defects.append(f"address-invalid: {name} holds something that is not an address")
    for p in _leaves(root):
        charset = p.attrs()["charset"] if p.type.startswith("text/") else None
        if charset and codec_for(charset) is None:
            defects.append(f"charset-unknown: {p.type} part {p.part_id} in charset {charset[:40]!r}")


def _truncate(value: str, max_bytes: int, is_html: bool) -> tuple[str, bool]:
    # §4.2 maxBodyValueBytes: cut on a UTF-8 character boundary, and not inside an HTML tag.
    if max_bytes <= 0 or len(value) * 4 <= max_bytes:
        return value, False
    encoded = value.encode("utf-8", "replace")
    if len(encoded) <= max_bytes:
        return value, False
    cut = encoded[:max_bytes].decode("utf-8", "ignore")
    if is_html:
        lt = cut.rfind("<")
        if lt > cut.rfind(">"):
            cut = cut[:lt]
    return cut, True


def _body_value(p: _Part, max_bytes: int) -> dict:
    text, problem = _part_text(p)
    value, truncated = _truncate(text, max_bytes, p.type == "text/html")
    return {"value": value, "isEncodingProblem": problem, "isTruncated": truncated}


class _Serializer:
    def __init__(self, props: list[str], blob_prefix: str) -> None:
        self.props = props
        self.blob_prefix = blob_prefix
        self.header_props = {p: parse_header_property(p) for p in props if p.startswith("header:")}

    def part(self, p: _Part, structure: bool = False) -> dict:
        out: dict = {}
        attrs = p.attrs()
        header_dicts = None
        for prop in self.props:
            if prop == "partId":
                out[prop] = p.part_id
            elif prop == "blobId":
                out[prop] = self.blob_prefix + p.part_id if p.part_id else None
            elif prop == "size":
                out[prop] = p.size()
            elif prop == "type":
                out[prop] = p.type
            elif prop in attrs:
                out[prop] = attrs[prop]
            elif prop == "headers":
                out[prop] = [{"name": n, "value": v} for n, v in p.headers]
            elif prop == "subParts":
                out[prop] = None if p.subparts is None else [self.part(c, structure) for c in p.subparts]
            elif prop in self.header_props:
                parsed = self.header_props[prop]
                if parsed is not None:
                    if header_dicts is None:
                        header_dicts = [{"name": n, "value": v} for n, v in p.headers]
                    out[prop] = header_value(header_dicts, *parsed)
        if structure and p.subparts is not None and "subParts" not in out:
            out["subParts"] = [self.part(c, True) for c in p.subparts]
        return out


def body_properties(
    raw: bytes,
    *,
    want_structure: bool,
    want_text: bool,
    want_html: bool,
    want_attachments: bool,
    body_props: list[str] | None,
    fetch_text: bool,
    fetch_html: bool,
    fetch_all: bool,
    max_bytes: int,
    blob_prefix: str,
    outline: list | None = None,
) -> dict:
    """bodyStructure / textBody / htmlBody / attachments / bodyValues (RFC 8621 §4.1.4).
    ``outline`` is the structure parse_summary found at ingest (summary["outline"]), if stored.

    ``bodyValues`` is present iff a fetch_* flag is set (possibly ``{}``).  fetch_text
    covers text/* parts of textBody, fetch_html those of htmlBody and fetch_all every
    text/* leaf of bodyStructure (§4.2 fetchAllBodyValues), so it is a superset.
    bodyStructure always carries subParts on multipart nodes; other lists never do.
    """
    try:
        root = _root(raw, outline)
        text, html, atts = _flatten(root)
        ser = _Serializer(body_props if body_props is not None else DEFAULT_BODY_PROPERTIES, blob_prefix)
        out: dict = {}
        if want_structure:
            out["bodyStructure"] = ser.part(root, structure=True)
        if want_text:
            out["textBody"] = [ser.part(p) for p in text]
        if want_html:
            out["htmlBody"] = [ser.part(p) for p in html]
        if want_attachments:
            out["attachments"] = [ser.part(p) for p in atts]
        if fetch_text or fetch_html or fetch_all:
            if fetch_all:
                wanted = list(_leaves(root))
            else:
                wanted = (text if fetch_text else []) + (html if fetch_html else [])
            values: dict[str, dict] = {}
            for p in wanted:
                if p.part_id and p.type.startswith("text/") and p.part_id not in values:
                    values[p.part_id] = _body_value(p, max_bytes)
            out["bodyValues"] = values
        return out
    except Exception:  # noqa: BLE001
        log.exception("body_properties failed")
        out = {}
        if want_structure:
            out["bodyStructure"] = None
        for flag, key in ((want_text, "textBody"), (want_html, "htmlBody"), (want_attachments, "attachments")):
            if flag:
                out[key] = []
        if fetch_text or fetch_html or fetch_all:
            out["bodyValues"] = {}
        return out


def _find_part(root: _Part, part_id: str) -> _Part | None:
    for leaf in _leaves(root):
        if leaf.part_id == part_id:
            return leaf
    return None


def _leaf(raw, part_id: str, what: str) -> _Part | None:
    """The leaf with that partId (its structure parsed, nothing decoded), or None; never raises."""
    try:
        if not part_id or len(part_id) > 200:
            return None
        return _find_part(_parse(raw)[0], part_id)
    except Exception:  # noqa: BLE001 - a message the parser cannot take has no such part
        log.exception("%s failed", what)
        return None


def has_part(raw: bytes, part_id: str) -> bool:
    """Whether the message has a leaf with that partId (its structure is parsed, nothing decoded)."""
    return _leaf(raw, part_id, "has_part") is not None


def extract_part(raw: bytes, part_id: str) -> tuple[bytes, str, str | None] | None:
    """(decoded content, type, name) of the leaf with that partId, or None."""
    p = _leaf(raw, part_id, "extract_part")
    try:
        return (p.decoded()[0], p.type, p.name) if p is not None else None
    except Exception:  # noqa: BLE001
        log.exception("extract_part failed")
        return None


def locate_part(raw, part_id: str) -> tuple[int, int, str, str, str | None] | None:
    """(start, end, transfer encoding, type, name) of the leaf with that partId: its encoded octets
    are raw[start:end]; `transfer_decoder` of the encoding decodes them as `extract_part` does.
    ``raw`` may be any buffer with bytes' indexing, find and startswith (an mmap: app.blob.parts)."""
    p = _leaf(raw, part_id, "locate_part")
    return (p.start, p.end, p.cte(), p.type, p.name) if p is not None else None


def _body_texts(root: _Part, chunks: list[str], depth: int) -> None:
    """Appends the text of every text/* leaf, descending into attached messages (a forwarded
    email's words are part of the email), up to MAX_INDEX_TEXT characters in all."""
    for p in _leaves(root):
        total = sum(map(len, chunks))
        if total >= MAX_INDEX_TEXT:
            return
        if p.type in ("message/rfc822", "message/global") and depth < 3:
            inner, _ = _parse(p.decoded()[0])
            _body_texts(inner, chunks, depth + 1)
            continue
        if not p.type.startswith("text/"):
            continue
        text = _part_text(p)[0]
        if p.type == "text/html":
            text = html_to_text(text)
        chunks.append(text[: MAX_INDEX_TEXT - total])


def body_text(raw: bytes, outline: list | None = None) -> str:
    """Only the body part of message_text (what a search snippet's preview is cut from);
    ``outline`` as for body_properties."""
    try:
        root = _root(raw, outline)
        chunks: list[str] = []
        _body_texts(root, chunks, 0)
        return "\n".join(chunks)
    except Exception:  # noqa: BLE001
        log.exception("body_text failed")
        return ""


def message_text(raw: bytes) -> dict:
    """Text for the full-text indexer: decoded subject, "Name <addr>, ..." address
    fields and the text of every text/* leaf (HTML stripped; text attachments too),
    joined by newlines and capped at MAX_INDEX_TEXT characters; "headers": the top-level header
    fields as `parse_headers` finds them, (name, raw value) pairs, or None if parsing failed."""
    out: dict = {"subject": "", "from": "", "to": "", "cc": "", "bcc": "", "body": "", "headers": None}
    try:
        root, _ = _parse(raw)
        out["headers"] = root.headers
        last = _last_header(root.headers)
        if "subject" in last:
            out["subject"] = parse_text(last["subject"])
        for key in ("from", "to", "cc", "bcc"):
            if key in last:
                # a group's name is text of the field too (§4.4.1 "to": "looks for the text in
                # the To header field"): "Friends: jane@example.org;" is found by "Friends"
                groups = parse_grouped_addresses(last[key])
                names = [g["name"] for g in groups if g.get("name")]
                boxes = format_address_text([a for g in groups for a in g["addresses"]])
                out[key] = ", ".join([*names, boxes] if boxes else names)
        chunks: list[str] = []
        _body_texts(root, chunks, 0)
        out["body"] = "\n".join(chunks)
    except Exception:  # noqa: BLE001
        log.exception("message_text failed")
    return out


# --------------------------------------------------------------------------------------
# Email/set create (§4.6)
# --------------------------------------------------------------------------------------

_CONVENIENCE = {
    "from": ("From", "Addresses"),
    "sender": ("Sender", "Addresses"),
    "replyTo": ("Reply-To", "Addresses"),
    "to": ("To", "Addresses"),
    "cc": ("Cc", "Addresses"),
    "bcc": ("Bcc", "Addresses"),
    "subject": ("Subject", "Text"),
    "sentAt": ("Date", "Date"),
    "messageId": ("Message-ID", "MessageIds"),
    "inReplyTo": ("In-Reply-To", "MessageIds"),
    "references": ("References", "MessageIds"),
}
_STORE_PROPS = frozenset(("mailboxIds", "keywords", "receivedAt"))  # caller's business
_SERVER_SET = frozenset(("id", "blobId", "threadId", "size", "hasAttachment", "preview"))
_BODY_PROPS = frozenset(("bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues"))
_PART_PROPS = frozenset(
    ("partId", "blobId", "size", "type", "charset", "disposition", "name", "cid", "language", "location", "subParts")
)
# Which part properties generate which header (two ways to set one header conflict, §4.6).
_PART_PROP_HEADER = {
    "type": "content-type",
    "charset": "content-type",
    "disposition": "content-disposition",
    "cid": "content-id",
    "language": "content-language",
    "location": "content-location",
}
_TOKEN_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+^_`{|}~.-]+$")  # RFC 2045 token
# RFC 6838 §4.2: a type and a subtype name are at most 127 characters each, starting with a letter
# or digit (so a generated Content-Type line stays far from the 998 octets of RFC 5322 §2.1.1)
_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


class _Problems:
    def __init__(self) -> None:
        self.props: list[str] = []
        self.messages: list[str] = []
        self.not_found: list[str] = []

    def add(self, prop: str, message: str) -> None:
        if prop not in self.props:
            self.props.append(prop)
        self.messages.append(f"{prop}: {message}")


# What a client may give for the header fields a part's properties become (§4.6): each must be one
# value of its field's syntax, so that nothing written can start another field or another value
_LANGUAGE_TAG_RE = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")  # RFC 5646 §2.1, loosely
_CID_RE = re.compile(r"^<?[^\s<>\x00-\x1f\x7f]+>?$")
_LOCATION_RE = re.compile(r"^[^\s\x00-\x1f\x7f]+$")


def _valid_address(a: object) -> bool:
    """An EmailAddress to write: one addr-spec (RFC 5322 §3.4.1, so that "a@b.c>, <evil@x.y" cannot
    become a second recipient) and a name without line breaks."""
    return (
        isinstance(a, dict)
        and isinstance(a.get("email"), str)
        and is_addr_spec(a["email"])
        and (a.get("name") is None or (isinstance(a.get("name"), str) and not has_line_break(a["name"])))
        and set(a) <= {"name", "email"}
    )


def _str_list(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v)


def _encode_header(name: str, form: str, value: object) -> str | None:
    """Text after the colon for one header instance in ``form``; None if invalid."""
    used = len(name) + 2
    if form == "Raw":
        if not isinstance(value, str) or "\x00" in value:
            return None
        # Only folding line breaks (followed by WSP) are allowed: no header injection.
        text = value.replace("\r\n", "\n")
        if "\r" in text or re.search(r"\n(?![ \t])", text):
            return None
        return text.replace("\n", "\r\n")
    if form == "Text":
        return " " + encode_text(value, name) if isinstance(value, str) and not has_line_break(value) else None
    if form == "Addresses":
        if not isinstance(value, list) or not all(_valid_address(a) for a in value):
            return None
        return " " + format_addresses(value, used)
    if form == "GroupedAddresses":
        ok = isinstance(value, list) and all(
            isinstance(g, dict)
            and (g.get("name") is None or (isinstance(g.get("name"), str) and not has_line_break(g["name"])))
            and isinstance(g.get("addresses"), list)
            and all(_valid_address(a) for a in g["addresses"])
            for g in value
        )
        return " " + format_grouped(value, used) if ok else None
    if form == "MessageIds":
        if not _str_list(value) or not value or any(re.search(r"[\s<>]", x) for x in value):
            return None
        return " " + format_message_ids(value, used)
    if form == "Date":
        dt = parse_jmap_date(value) if isinstance(value, str) else None
        return " " + format_date(dt) if dt is not None else None
    if form == "URLs":
        if not _str_list(value) or any(re.search(r"[\s<>]", x) for x in value):
            return None
        return " " + format_urls(value, used)
    return None


_FORM_RULES = {
    "Addresses": ": each email must be one address (RFC 5322 addr-spec), each name without line breaks",
    "GroupedAddresses": ": each email must be one address (RFC 5322 addr-spec), each name without line breaks",
    "Text": ": a string without line breaks",
    "Raw": ": a string whose line breaks are only folds (followed by a space or tab)",
}


def _too_long(field: str) -> bool:
    return len(field) > 998 // 4 and any(len(line.encode()) > 998 for line in field.split("\r\n"))


class _Header:
    """Collects header fields for one entity, enforcing "one property per field"."""

    def __init__(self, problems: _Problems, path: str) -> None:
        self.fields: list[tuple[str, str]] = []
        self.owner: dict[str, str] = {}  # lower-case field name -> property that set it
        self.problems = problems
        self.path = path

    def claim(self, prop: str, lname: str) -> bool:
        other = self.owner.get(lname)
        if other is not None and other != prop:
            self.problems.add(self.path + other, f"conflicts with {prop}")
            self.problems.add(self.path + prop, f"conflicts with {other}")
            return False
        self.owner[lname] = prop
        return True

    def add(self, prop: str, name: str, form: str, value: object, all_: bool) -> None:
        if not self.claim(prop, name.lower()):
            return
        if not is_valid_header_form(name, form):
            self.problems.add(self.path + prop, f"the {form} form is not allowed for {name}")
            return
        if value is None:
            return
        if all_ and not isinstance(value, list):
            self.problems.add(self.path + prop, "must be a list (:all)")
            return
        for v in value if all_ else [value]:
            encoded = _encode_header(name, form, v)
            if encoded is None:
                self.problems.add(self.path + prop, f"invalid value for the {form} form" + _FORM_RULES.get(form, ""))
                return
            if _too_long(f"{name}:{encoded}"):
                self.problems.add(self.path + prop, "a line of this header field would pass 998 octets "
                                  "(RFC 5322 §2.1.1)")
                return
            self.fields.append((name, encoded))

    def has(self, lname: str) -> bool:
        return any(n.lower() == lname for n, _ in self.fields)


class _Node:
    """An entity to be written: extra header fields + leaf content or children."""

    def __init__(self, ptype: str) -> None:
        self.type = ptype
        self.params: list[tuple[str, str]] = []  # Content-Type parameters
        self.disposition: str | None = None
        self.name: str | None = None
        self.cid: str | None = None
        self.language: list[str] | None = None
        self.location: str | None = None
        self.fields: list[tuple[str, str]] = []  # explicit header:X properties
        self.explicit_ct = False  # header:Content-Type given verbatim
        self.explicit_cd = False
        self.body = b""
        self.cte: str | None = None
        self.children: list[_Node] | None = None


def _encode_body(node: _Node, data: bytes, is_text: bool) -> None:
    if node.type.startswith(("message/", "multipart/")):
        # RFC 2046 §5.2.1: message/rfc822 must not be base64/QP encoded.
        node.cte = "7bit" if data.isascii() else "8bit"
        node.body = data
        return
    bare = data.replace(b"\r\n", b"")
    canonical = b"\r" not in bare and b"\n" not in bare  # only CRLF line breaks
    if is_text and canonical and data.isascii() and all(len(ln) <= 998 for ln in data.split(b"\r\n")):
        node.cte, node.body = "7bit", data
    elif is_text and canonical and (len(data) - len(data.translate(None, _HIGH_BYTES))) * 3 < len(data):
        # Mostly ASCII text: quoted-printable keeps it readable.
        qp = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), quotetabs=False, istext=True)
        node.cte, node.body = "quoted-printable", qp.replace(b"\n", b"\r\n")
    else:
        node.cte, node.body = "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")


def _build_part(
    spec: object,
    path: str,
    default_type: str,
    body_values: dict,
    get_blob: Callable[[str], bytes | None],
    problems: _Problems,
    top: _Header | None,
) -> _Node | None:
    if not isinstance(spec, dict):
        problems.add(path, "must be an EmailBodyPart object")
        return None
    prefix = path + "/"
    hdr = _Header(problems, prefix)
    for key, value in spec.items():
        if key in _PART_PROPS:
            if key in _PART_PROP_HEADER and value is not None:
                hdr.claim(key if key != "charset" else "type", _PART_PROP_HEADER[key])
            continue
        if key == "headers":
            problems.add(prefix + key, "headers must be given as individual header: properties")
            continue
        parsed = parse_header_property(key)
        if parsed is None:
            problems.add(prefix + key, "unknown property")
            continue
        name, form, all_ = parsed
        lname = name.lower()
        if lname == "content-transfer-encoding":
            problems.add(prefix + key, "Content-Transfer-Encoding is chosen by the server")
            continue
        if top is not None and lname in top.owner:
            problems.add(prefix + key, "header already defined on the Email")
            continue
        hdr.add(key, name, form, value, all_)

    ptype = spec.get("type")
    if ptype is not None and (not isinstance(ptype, str) or not _TYPE_RE.match(ptype.lower())):
        problems.add(prefix + "type", "invalid media type")
        ptype = None
    explicit_ct = hdr.has("content-type")
    if explicit_ct and ptype is None:
        ct_value = next(v for n, v in hdr.fields if n.lower() == "content-type")
        ptype = _Content(ct_value, None, default_type).type
    node = _Node((ptype or default_type).lower())
    node.fields = hdr.fields
    node.explicit_ct = explicit_ct
    node.explicit_cd = hdr.has("content-disposition")

    for key in ("disposition", "name", "cid", "location", "charset"):
        v = spec.get(key)
        if v is None:
            continue
        if not isinstance(v, str) or re.search(r"[\r\n\x00]", v):
            problems.add(prefix + key, "must be a single-line string")
        elif key in ("disposition", "charset") and not _TOKEN_RE.match(v):
            problems.add(prefix + key, "must be a MIME token")
        elif key in ("cid", "location", "disposition", "charset") and len(v) > MAX_FIELD_VALUE:
            problems.add(prefix + key, f"longer than {MAX_FIELD_VALUE} characters (RFC 5322 §2.1.1)")
        elif key == "cid" and not _CID_RE.match(v):
            problems.add(prefix + key, "must be a Content-ID without white space, control characters, "
                         "\"<\" or \">\" inside (RFC 2045 §7: a msg-id)")
        elif key == "location" and not _LOCATION_RE.match(v):
            problems.add(prefix + key, "must be a URI without white space or control characters (RFC 2557 §4.1)")
    language = spec.get("language")
    if language is not None and (not _str_list(language) or len(", ".join(language)) > MAX_FIELD_VALUE
                                 or not all(_LANGUAGE_TAG_RE.match(tag) for tag in language)):
        problems.add(prefix + "language", "must be a list of language tags (RFC 5646: letters, digits and "
                     f"hyphens, as in \"en-GB\"), at most {MAX_FIELD_VALUE} characters in all")
        language = None
    node.disposition = spec.get("disposition") if isinstance(spec.get("disposition"), str) else None
    node.name = spec.get("name") if isinstance(spec.get("name"), str) else None
    node.cid = spec.get("cid") if isinstance(spec.get("cid"), str) else None
    node.location = spec.get("location") if isinstance(spec.get("location"), str) else None
    node.language = language

    part_id, blob_id, sub_parts = spec.get("partId"), spec.get("blobId"), spec.get("subParts")
    if sub_parts is not None or node.type.startswith("multipart/"):
        if part_id is not None or blob_id is not None:
            problems.add(prefix + ("partId" if part_id is not None else "blobId"), "not allowed on a multipart")
        if not node.type.startswith("multipart/"):
            if ptype is not None:
                problems.add(prefix + "type", "a part with subParts must be multipart/*")
            node.type = "multipart/mixed"
        if not isinstance(sub_parts, list) or not sub_parts:
            problems.add(prefix + "subParts", "must be a non-empty list")  # RFC 2046 §5.1.1
            sub_parts = []
        child_default = "message/rfc822" if node.type == "multipart/digest" else "text/plain"
        node.children = []
        for i, child in enumerate(sub_parts):
            built = _build_part(child, f"{prefix}subParts/{i}", child_default, body_values, get_blob, problems, None)
            if built is not None:
                node.children.append(built)
        return node
    if part_id is not None and blob_id is not None:
        problems.add(prefix + "partId", "give a partId or a blobId, not both")
        return node
    if part_id is not None:
        if not isinstance(part_id, str) or part_id not in body_values:
            problems.add(prefix + "partId", "no such partId in bodyValues")
            return node
        if spec.get("charset") is not None:
            problems.add(prefix + "charset", "must be omitted when partId is given")
        if spec.get("size") is not None:
            problems.add(prefix + "size", "must be omitted when partId is given")
        value = body_values[part_id].get("value") if isinstance(body_values[part_id], dict) else None
        if not isinstance(value, str):
            return node  # reported while validating bodyValues
        text = value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
        if node.type.startswith("text/"):
            node.params.append(("charset", "utf-8"))
        _encode_body(node, text.encode("utf-8"), node.type.startswith("text/"))
        return node
    if blob_id is not None:
        data = None
        if isinstance(blob_id, str):
            try:
                data = get_blob(blob_id)
            except Exception:  # noqa: BLE001 - a failing store lookup is "not found"
                log.exception("get_blob failed")
                data = None
        if data is None:
            problems.not_found.append(str(blob_id))
            return node
        charset = spec.get("charset")
        if isinstance(charset, str) and node.type.startswith("text/"):
            node.params.append(("charset", charset))
        _encode_body(node, bytes(data), node.type.startswith("text/"))
        return node
    problems.add(path, "needs a partId, a blobId or subParts")
    return node


def _node_headers(node: _Node, boundary: str | None) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    if not node.explicit_ct:
        params = list(node.params)
        if boundary is not None:
            params.append(("boundary", boundary))
        if node.name and node.children is None:
            params.append(("name", node.name))  # legacy readers look at name= (RFC 2231 if needed)
        fields.append(("Content-Type", " " + node.type + format_params(params, len("Content-Type: ") + len(node.type))))
    if not node.explicit_cd and (node.disposition or node.name) and node.children is None:
        disp = node.disposition or "attachment"
        params = [("filename", node.name)] if node.name else []
        fields.append(("Content-Disposition", " " + disp + format_params(params, len("Content-Disposition: ") + len(disp))))
    if node.cid:
        fields.append(("Content-ID", f" <{node.cid.strip('<>')}>"))
    if node.language:
        fields.append(("Content-Language", " " + ", ".join(node.language)))
    if node.location:
        fields.append(("Content-Location", " " + node.location))
    if node.cte and node.cte != "7bit":
        fields.append(("Content-Transfer-Encoding", " " + node.cte))
    fields.extend(node.fields)
    return fields


def _write(node: _Node, out: list[bytes], extra: list[tuple[str, str]]) -> None:
    boundary = None if node.children is None else f"=_{uuid.uuid4().hex}"
    for name, value in extra + _node_headers(node, boundary):
        out.append(f"{name}:{value}\r\n".encode("utf-8", "replace"))
    out.append(b"\r\n")
    if node.children is None:
        out.append(node.body)
        return
    b = (boundary or "").encode("ascii")
    for i, child in enumerate(node.children):
        out.append((b"--" if i == 0 else b"\r\n--") + b + b"\r\n")
        _write(child, out, [])
    out.append((b"\r\n--" if node.children else b"--") + b + b"--\r\n")


def _multipart(sub: str, children: list[_Node]) -> _Node:
    node = _Node("multipart/" + sub)
    node.children = children
    return node


def _domain_for(from_value: object) -> str:
    if isinstance(from_value, list) and from_value and isinstance(from_value[0], dict):
        email = from_value[0].get("email")
        if isinstance(email, str) and "@" in email:
            domain = email.rsplit("@", 1)[1].strip()
            if re.fullmatch(r"[A-Za-z0-9.-]+", domain):
                return domain
    return "tidings.local"


def build_message(create: dict, get_blob: Callable[[str], bytes | None]) -> tuple[bytes | None, dict]:
    """RFC 5322 bytes for an Email/set create object (RFC 8621 §4.6).

    Returns ``(raw, {})`` or ``(None, error)`` where error is an ``invalidProperties``
    SetError listing every offending property (JSON-pointer-ish paths such as
    ``textBody/0/type``), or ``blobNotFound`` with ``notFound`` when the only problem is
    missing blobs.  mailboxIds/keywords/receivedAt are ignored (the caller stores them).
    Message-ID, Date and MIME-Version are generated when not given.
    """
    problems = _Problems()
    try:
        raw = _build(create, get_blob, problems)
    except Exception as exc:  # noqa: BLE001
        log.exception("build_message failed")
        problems.add("bodyStructure", f"could not build message: {exc!r}")
        raw = None
    if problems.props:
        err = {"type": "invalidProperties", "properties": problems.props, "description": "; ".join(problems.messages)}
        if problems.not_found:
            err["notFound"] = problems.not_found
        return None, err
    if problems.not_found:
        return None, {
            "type": "blobNotFound",
            "notFound": problems.not_found,
            "properties": [],
            "description": "blob(s) not found: " + ", ".join(problems.not_found),
        }
    return raw, {}


def _build(create: dict, get_blob: Callable[[str], bytes | None], problems: _Problems) -> bytes | None:
    if not isinstance(create, dict):
        problems.add("", "create must be an object")
        return None
    create = valid_json(create)  # type: ignore[assignment]  # a lone surrogate cannot be written
    top = _Header(problems, "")
    for key, value in create.items():
        if key in _STORE_PROPS or key in _BODY_PROPS:
            continue
        if key in _CONVENIENCE:
            name, form = _CONVENIENCE[key]
            top.add(key, name, form, value, False)
        elif key == "headers":
            problems.add(key, "headers must be given as individual header: properties")
        elif key in _SERVER_SET:
            if value is not None:
                problems.add(key, "server-set property")
        elif key.startswith("header:"):
            parsed = parse_header_property(key)
            if parsed is None:
                problems.add(key, "malformed header property")
                continue
            name, form, all_ = parsed
            if name.lower().startswith("content-"):
                problems.add(key, "Content-* headers belong on body parts")
                continue
            top.add(key, name, form, value, all_)
        else:
            problems.add(key, "unknown property")

    body_values = create.get("bodyValues")
    if body_values is None:
        body_values = {}
    if not isinstance(body_values, dict):
        problems.add("bodyValues", "must be an object")
        body_values = {}
    for pid, bv in body_values.items():
        if not isinstance(bv, dict) or not isinstance(bv.get("value"), str):
            problems.add(f"bodyValues/{pid}", "must be an EmailBodyValue with a string value")
            continue
        for flag in ("isEncodingProblem", "isTruncated"):
            if bv.get(flag) not in (None, False):
                problems.add(f"bodyValues/{pid}/{flag}", "must be false or omitted")

    def build(spec: object, path: str, default: str, top_hdr: _Header | None = None) -> _Node | None:
        return _build_part(spec, path, default, body_values, get_blob, problems, top_hdr)

    root: _Node | None
    structure = create.get("bodyStructure")
    if structure is not None:
        for key in ("textBody", "htmlBody", "attachments"):
            if create.get(key) is not None:
                problems.add(key, "not allowed together with bodyStructure")
        root = build(structure, "bodyStructure", "text/plain", top)
    else:
        leaves: dict[str, _Node | None] = {}
        for key, want in (("textBody", "text/plain"), ("htmlBody", "text/html")):
            spec = create.get(key)
            if spec is None:
                continue
            if not isinstance(spec, list) or len(spec) != 1:
                problems.add(key, "must contain exactly one body part")
                continue
            node = build(spec[0], f"{key}/0", want)
            if node is not None and node.type != want:
                problems.add(f"{key}/0/type", f"must be {want}")
            leaves[key] = node
        attachments = create.get("attachments")
        atts: list[_Node] = []
        if attachments is not None and not isinstance(attachments, list):
            problems.add("attachments", "must be a list")
        elif attachments:
            for i, spec in enumerate(attachments):
                node = build(spec, f"attachments/{i}", "application/octet-stream")
                if node is not None:
                    if node.disposition is None and not node.explicit_cd and not node.cid:
                        node.disposition = "attachment"
                    atts.append(node)
        text_node, html_node = leaves.get("textBody"), leaves.get("htmlBody")
        # Embedded images (cid, not marked attachment) go next to the HTML in multipart/related.
        related = [a for a in atts if html_node and a.cid and a.disposition != "attachment"]
        mixed = [a for a in atts if a not in related]
        if html_node is not None and related:
            html_node = _multipart("related", [html_node, *related])
        body = _multipart("alternative", [text_node, html_node]) if text_node and html_node else text_node or html_node
        if mixed:
            root = _multipart("mixed", ([body] if body else []) + mixed)
        else:
            root = body
        if root is None:
            root = _Node("text/plain")
            root.params.append(("charset", "utf-8"))
            _encode_body(root, b"", True)
    if problems.props or problems.not_found or root is None:
        return None

    fields = list(top.fields)
    if not top.has("date"):
        fields.append(("Date", " " + format_date(datetime.now(UTC))))
    if not top.has("message-id"):
        fields.append(("Message-ID", f" <{uuid.uuid4().hex}@{_domain_for(create.get('from'))}>"))
    if not top.has("mime-version"):
        fields.append(("MIME-Version", " 1.0"))
    out: list[bytes] = []
    _write(root, out, fields)
    return b"".join(out)

