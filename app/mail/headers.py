"""Header fields: raw header-block splitting, the JMAP parsed forms and their inverse.

RFC 8621 §4.1.2 defines the parsed forms (Raw, Text, Addresses, GroupedAddresses,
MessageIds, Date, URLs) and §4.1.3 the ``header:{name}:as{Form}:all`` properties.
Everything here is pure and total: malformed input yields a best-effort value or
``None``, never an exception.  ``app.mail.mime`` re-exports the public names.
"""

from __future__ import annotations

import binascii
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime

from .charsets import codec_for, decode_codec

EmailAddress = dict  # {"name": str | None, "email": str}

FORMS = ("Raw", "Text", "Addresses", "GroupedAddresses", "MessageIds", "Date", "URLs")

# --------------------------------------------------------------------------------------
# Raw header block
# --------------------------------------------------------------------------------------

# Field name: printable ASCII except ":"; obsolete syntax allows WSP before the colon.
_FIELD_RE = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def _decode_raw(value: bytes, defects: list[str] | None, name: str) -> str:
    # RFC 8621 §4.1.2.1 (Raw): invalid UTF-8 runs become U+FFFD, NUL octets are dropped.
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("utf-8", "replace")
        if defects is not None:
            defects.append(f"header-invalid-utf8: invalid UTF-8 in header {name}")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def _line_kind(data: bytes, pos: int, content_end: int) -> int:
    """_BLANK, _CONT (folded continuation), _FIELD or _ODD for the line data[pos:content_end]."""
    if content_end == pos:
        return _BLANK
    first = data[pos]
    if first == 32 or first == 9:
        return _CONT
    return _FIELD if _FIELD_RE.match(data, pos, content_end) else _ODD


_BLANK, _CONT, _FIELD, _ODD = range(4)

# A well-formed header section, the usual case: fields (each with its folded continuation lines)
# up to an empty line.  Matched by two regular expressions instead of a loop over its lines; any
# other section (odd lines, no empty line) takes the line loop, which records the defects.
_FIELD_LINES = rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)\n"
_FIELD_LINES_RE = re.compile(_FIELD_LINES)
_SECTION_RE = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*\n)*\r?\n")
_LOOKAHEAD = 256 * 1024  # octets looked at to decide whether an odd line is inside the header


# An odd line that still looks like a damaged header field: a name of at most three words (spaces or
# non-ASCII octets in it) with a colon and a value ("X Mailer: Foo", "S\xc3\xbcbject: x"; not "Dear
# Bob:"), a hyphenated field name that lost its colon ("X-Junk-Without-Colon"), an encoded word that
# lost the indent of its fold ("=?utf-8?q?_numbers?="), or an mbox "From " line.
_HEADERISH_RE = re.compile(
    rb"[^\s:]{1,76}(?:[ \t][^\s:]{1,76}){0,2}[ \t]*:[ \t]*\S"
    rb"|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+[ \t]*$"
    rb"|=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?="
    rb"|>*From \S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
)


def _header_resumes(data: bytes, pos: int, end: int, in_header: bool) -> bool:
    """Whether the odd line starting at ``pos`` is inside the header section (a defect to skip)
    rather than the first line of a body that lacks its empty separator line.

    The block is the run of non-empty lines from ``pos`` up to the first empty line.  The odd line
    is inside the header when that empty line exists (within the entity and ``_LOOKAHEAD``) and
    either fields follow in the block, at least as many as other odd lines; or fields came before
    it (``in_header``) and every odd line of the block looks like a damaged field
    (``_HEADERISH_RE``), so that a damaged LAST line of the header is skipped too.

    The trade-off: in a message without its separator, a first body line that looks like a damaged
    field and is followed by an empty line ("Hi all: see below") is skipped.  The odd line stays
    the body's first line wherever that is unambiguous: no empty line follows, or the block holds
    a line of plain text ("Hi Bob,", or "X-Junk" then more text), or no field comes before it."""
    limit = min(end, pos + _LOOKAHEAD)
    nl = data.find(b"\n", pos, limit)
    if nl < 0:
        return False
    headerish = in_header and _HEADERISH_RE.match(data, pos, nl - (data[nl - 1] == 13)) is not None
    p = nl + 1
    fields = odd = 0
    while p < limit:
        nl = data.find(b"\n", p, limit)
        line_end = limit if nl < 0 else nl
        content_end = line_end - 1 if line_end > p and data[line_end - 1] == 13 else line_end
        kind = _line_kind(data, p, content_end)
        if kind == _BLANK:
            return (fields > 0 and fields >= odd) or headerish
        if kind == _FIELD:
            fields += 1
        elif kind == _ODD:
            odd += 1
            headerish = headerish and _HEADERISH_RE.match(data, p, content_end) is not None
        if nl < 0:
            break
        p = nl + 1
    return False  # no empty line follows: a body without its separator line


def split_header_block(
    data: bytes, start: int = 0, end: int | None = None, defects: list[str] | None = None
) -> tuple[list[tuple[str, str]], int]:
    """Split the header section of the entity ``data[start:end]``.

    Returns ``([(name, raw_value), ...], body_start)``.  ``raw_value`` is the §4.1.2.1
    Raw form: everything after the colon, folding line breaks kept as they are.

    RFC 5322 §2.1: only an empty line ends the header section.  A line inside it that is
    neither a field nor a continuation (an mbox ``From `` line written by an old client, a
    stray word, a damaged field name) is recorded as a defect and skipped when it is inside the
    section, also as its last line; otherwise it is taken as the start of a body whose empty
    separator line is missing (the rule: ``_header_resumes``).
    """
    if end is None:
        end = len(data)
    fields: list[tuple[str, str]] = []
    pos = start
    if start == 0 and data.startswith(b"From ", 0, end):
        # mbox "From " separator line in front of the message: not a header field.
        nl = data.find(b"\n", 0, end)
        pos = end if nl < 0 else nl + 1
    section = _SECTION_RE.match(data, pos, end)
    if section is not None:
        for m in _FIELD_LINES_RE.finditer(data, pos, section.end()):
            value = m.group(2)
            if value.endswith(b"\r"):  # the line break of the field's last line, as a CR LF
                value = value[:-1]
            name = m.group(1).decode("ascii")
            fields.append((name, _decode_raw(value, defects, name)))
        return fields, section.end()
    return _split_lines(data, pos, end, defects, fields)


def _split_lines(
    data: bytes, pos: int, end: int, defects: list[str] | None, fields: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], int]:
    """`split_header_block` line by line: any header section, defects recorded."""
    name: str | None = None
    vstart = vend = 0
    skipping = False  # inside a run of odd lines already judged to be inside the header
    while pos < end:
        nl = data.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl
        next_pos = end if nl < 0 else nl + 1
        content_end = line_end - 1 if line_end > pos and data[line_end - 1] == 13 else line_end
        m = None
        if content_end == pos:
            kind = _BLANK
        elif data[pos] in (32, 9):
            kind = _CONT
        else:  # one match both classifies the line and gives the field's name
            m = _FIELD_RE.match(data, pos, content_end)
            kind = _FIELD if m else _ODD
        if kind == _BLANK:  # end of the header section
            if name is not None:
                fields.append((name, _decode_raw(data[vstart:vend], defects, name)))
            return fields, next_pos
        if kind == _CONT:
            if name is None:
                if defects is not None:
                    defects.append("header-stray-line: continuation line before any header field")
            else:
                vend = content_end
        elif kind == _FIELD:
            if name is not None:
                fields.append((name, _decode_raw(data[vstart:vend], defects, name)))
            name = m.group(1).decode("ascii")
            vstart, vend = m.end(), content_end
        else:
            if not skipping and not _header_resumes(data, pos, end, fields != [] or name is not None):
                if defects is not None and (fields or name is not None):
                    defects.append("header-no-separator: missing empty line between header and body")
                break
            skipping = True
            if defects is not None:
                line = data[pos:content_end][:60].decode("utf-8", "replace")
                defects.append(f"header-stray-line: line in the header section that is not a field, skipped: {line!r}")
            if name is not None:  # the odd line ends the field before it (it cannot be folded in)
                fields.append((name, _decode_raw(data[vstart:vend], defects, name)))
                name = None
        pos = next_pos
    if name is not None:
        fields.append((name, _decode_raw(data[vstart:vend], defects, name)))
    return fields, pos


# Fields that only a message header has (RFC 5322 §3.6, RFC 2045 §3, trace fields): a file whose
# header section holds none of them is not mail, whatever else it holds ("key: value" config).
_MESSAGE_FIELDS = frozenset(
    "from sender reply-to to cc bcc message-id in-reply-to references subject comments keywords "
    "date resent-date resent-from resent-sender resent-to resent-cc resent-bcc resent-message-id "
    "return-path received mime-version content-type content-transfer-encoding delivered-to "
    "x-original-to envelope-to".split()
)


def message_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not an email message, or None when it is one.

    Empty (or only white space): "empty"; a header section without any field that a message
    header has (``_MESSAGE_FIELDS`` or an ``X-`` field), such as a text or config file: "not an
    email message ...".
    Everything else is mail, however damaged; its defects are reported by the parser.
    """
    if not raw.strip():
        return "empty: no message"
    fields, _ = split_header_block(raw)
    if not any(name.lower() in _MESSAGE_FIELDS or name[:2] in ("X-", "x-") for name, _ in fields):
        return "not an email message: no header field of a message (From, Date, Subject, ...)"
    return None


def unfold(value: str) -> str:
    """RFC 5322 §2.2.3: unfolding removes the CRLF of each fold and keeps the WSP."""
    if "\n" in value or "\r" in value:
        value = value.replace("\r\n", "").replace("\n", "").replace("\r", "")
    return value


# --------------------------------------------------------------------------------------
# Charsets
# --------------------------------------------------------------------------------------

def b64decode_lenient(data: bytes) -> bytes:
    """Base64 that never raises: junk characters ignored, padding repaired, and
    concatenated padded chunks ("QQ==QQ==") decoded piecewise."""
    try:
        out = binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        out = None
    stripped = data.rstrip(b" \t\r\n=")
    if out is not None and b"=" not in stripped:
        return out
    pieces = []
    for chunk in re.split(rb"=+", re.sub(rb"[^A-Za-z0-9+/=]", b"", data)):
        rem = len(chunk) % 4
        if rem == 1:
            chunk = chunk[:-1]
        elif rem:
            chunk += b"=" * (4 - rem)
        if chunk:
            try:
                pieces.append(binascii.a2b_base64(chunk))
            except (binascii.Error, ValueError):
                pass
    return b"".join(pieces)


# --------------------------------------------------------------------------------------
# RFC 2047 encoded words
# --------------------------------------------------------------------------------------

_EW_RE = re.compile(r"=\?([^?\s]+?)\?([bBqQ])\?([^?\s]*)\?=")
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode Cc: C0, DEL and C1
_BEFORE_OK = " \t\r\n(\""
_AFTER_OK = " \t\r\n)\",;"


_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=\s]")
_UNDECODABLE = "\x00undecodable"


def _decode_ew(m: re.Match) -> tuple[str, bytes] | None:
    codec = codec_for(m.group(1).split("*", 1)[0])
    if codec is None:
        return None  # §4.1.2.2: only encoded words with a known charset are decoded
    text = m.group(3).encode("utf-8", "replace")
    if m.group(2) in "bB":
        if _NOT_BASE64.search(text):
            return _UNDECODABLE, b""  # §4.1.2.2: a word that fails to decode becomes U+FFFD
        return codec, b64decode_lenient(text)
    return codec, binascii.a2b_qp(text, header=True)


# Codecs whose every encoded word starts afresh (a byte-order mark, a shift state): never joined.
_SELF_CONTAINED = ("utf-16", "utf-32", "utf-7")


def _flush_words(words: list[tuple[str, bytes]], out: list[str]) -> None:
    # Adjacent words in the same charset are joined before decoding: encoders split
    # multi-byte characters across words.
    i = 0
    while i < len(words):
        codec = words[i][0]
        if codec == _UNDECODABLE:
            out.append("\ufffd")
            i += 1
            continue
        buf = bytearray(words[i][1])
        i += 1
        while i < len(words) and words[i][0] == codec and not codec.startswith(_SELF_CONTAINED):
            buf += words[i][1]
            i += 1
        text, _ = decode_codec(bytes(buf), codec)
        out.append(_CTRL_RE.sub("", text))  # §4.1.2.2: encoded control chars are dropped
    words.clear()


def decode_rfc2047(value: str, strict: bool = True) -> str:
    """Decode RFC 2047 encoded words (RFC 8621 §4.1.2.2 step 4).

    Encoded words glued to surrounding text ("foo=?utf-8?q?x?=") are left alone as the
    spec requires; whitespace between adjacent encoded words is dropped.  Leniency: two
    encoded words with no space between them are still decoded (common in the wild).
    ``strict=False`` skips the placement rule (for filename parameters, where encoded
    words are not allowed at all but mailers write "=?utf-8?b?...?=.pdf").
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[tuple[str, bytes]] = []
    pos = 0
    prev_end = -1
    n = len(value)
    for m in _EW_RE.finditer(value):
        st, en = m.span()
        gap = value[pos:st]
        before_ok = not strict or st == 0 or st == prev_end or value[st - 1] in _BEFORE_OK
        after_ok = not strict or en == n or value[en] in _AFTER_OK or value.startswith("=?", en)
        decoded = _decode_ew(m) if before_ok and after_ok else None
        if decoded is None:
            _flush_words(pending, out)
            out.append(gap)
            out.append(m.group(0))
            prev_end = -1
        else:
            if not (pending and not gap.strip()):
                _flush_words(pending, out)
                out.append(gap)
            pending.append(decoded)
            prev_end = en
        pos = en
    _flush_words(pending, out)
    out.append(value[pos:])
    return "".join(out)


def _nfc(text: str) -> str:
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)


def parse_text(value: str) -> str:
    """§4.1.2.2 Text form: unfold, decode encoded words, trim, NFC."""
    return _nfc(decode_rfc2047(unfold(value)).strip())


# --------------------------------------------------------------------------------------
# Comments, message ids, URLs, dates
# --------------------------------------------------------------------------------------


def strip_comments(value: str) -> str:
    """Remove (nested) RFC 5322 comments outside quoted strings; linear time."""
    if "(" not in value:
        return value
    out: list[str] = []
    depth = 0
    in_quote = False
    i = 0
    n = len(value)
    start = 0
    while i < n:
        c = value[i]
        if c == "\\":
            i += 2
            continue
        if depth == 0:
            if c == '"':
                in_quote = not in_quote
            elif c == "(" and not in_quote:
                out.append(value[start:i])
                out.append(" ")
                depth = 1
        else:
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    start = i + 1
        i += 1
    if depth == 0:
        out.append(value[start:])
    return "".join(out)


_WS_RE = re.compile(r"\s+")
# A quoted-string (its closing DQUOTE may be missing at the end of the text) or a run of other text
_QUOTED_OR_NOT_RE = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[^"]+', re.S)


def _without_cfws(text: str) -> str:
    """An addr-spec or msg-id written with CFWS inside: the comments and the white space outside
    quoted strings go; white space inside a quoted string is content (RFC 5322 §3.2.4), so
    ``<"joe smith"@example.org>`` keeps its space.  Linear, also with a stray DQUOTE."""
    text = strip_comments(text)
    if '"' not in text:
        return _WS_RE.sub("", text)
    return "".join(
        part if part[0] == '"' else _WS_RE.sub("", part) for part in _QUOTED_OR_NOT_RE.findall(text)
    )


def _comment_ends(s: str, i: int) -> tuple[int | None, dict[int, int]]:
    """Read the comment opening at s[i] == "(" (RFC 5322 §3.2.2: nested, quoted-pairs inside).

    Returns (index after its closing ")" or None if it never closes, {"(" index: end} for every
    comment inside that does close)."""
    ends: dict[int, int] = {}
    opened: list[int] = []
    n = len(s)
    j = i
    while j < n:
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "(":
            opened.append(j)
        elif c == ")" and opened:
            ends[opened.pop()] = j + 1
            if not opened:
                return j + 1, ends
        j += 1
    return None, ends


class _Comments:
    """Where the comments of one field end.

    A "(" whose comment never closes is an ordinary character: the field is read on as text rather
    than lost to the comment ("Joe (Work <joe@example.org>" keeps its address).  The first such "("
    is read to the end of the field once, and that one reading also tells which later "(" close
    (a comment from a later "(" reads the same text the same way), so stray parentheses never make
    the reading quadratic."""

    __slots__ = ("s", "known")

    def __init__(self, s: str) -> None:
        self.s = s
        self.known: dict[int, int] | None = None  # set once a comment was found not to close

    def end(self, i: int) -> int | None:
        """Index after the ")" closing the comment that opens at s[i], None if it never closes."""
        if self.known is not None:
            return self.known.get(i)
        end, inner = _comment_ends(self.s, i)
        if end is None:
            self.known = inner
        return end


# A msg-id holds no white space and no "<" or ">" (RFC 5322 §3.6.4), so wherever a bracket was lost
# the id is still unambiguous: "<id@host" ends at white space, at the next "<" or at the end of the
# field; "id@host>" starts after white space, a ">" or at the start.  Either needs its "@".
_MSG_ID_RE = re.compile(
    r"<([^<>]*)>"  # a whole msg-id (obsolete CFWS inside is removed below)
    r"|<([^<>\s]*@[^<>\s]*)(?=[\s<]|$)"  # its ">" lost
    r"|(?<![^\s>])([^<>\s]*@[^<>\s]*)>"  # its "<" lost
)


def parse_message_ids(value: str) -> list[str] | None:
    """§4.1.2.5 MessageIds form: msg-ids without CFWS and <>; None if none parse.

    Leniency where it is unambiguous: phrases around ids (obsolete In-Reply-To syntax) are
    ignored; a lone bracket-less token containing "@" is an id; and so is a token with "@" whose
    "<" or ">" was lost, anywhere in the field (``<agenda@example.org <b@example.org>`` gives
    both ids), so that a reply still finds its thread.  A quoted id-left (obsolete local-part)
    keeps the white space inside its quotes.
    """
    text = strip_comments(unfold(value))
    ids = [
        _without_cfws(m.group(1)) if m.group(1) is not None else m.group(m.lastindex)
        for m in _MSG_ID_RE.finditer(text)
    ]
    ids = [x for x in ids if x]
    if ids:
        return ids
    token = text.strip()
    if token and "@" in token and "<" not in token and ">" not in token and not _WS_RE.search(token):
        return [token]
    return None


# A <URL> (RFC 2369 §2: the angle brackets delimit it, so "(" and ")" inside are URL characters,
# RFC 3986 sub-delims), or a run of text outside brackets, or a lone "<"
_URL_PART_RE = re.compile(r"<([^<>]*)>|[^<(]+|<")


def parse_urls(value: str) -> list[str] | None:
    """§4.1.2.7 URLs form (RFC 2369): the <...> URLs, their folding white space removed; comments
    outside the brackets are dropped (also a <URL> inside one); None if none."""
    s = unfold(value)
    comments = _Comments(s)
    urls: list[str] = []
    pos = 0
    n = len(s)
    while pos < n:
        if s[pos] == "(":
            end = comments.end(pos)
            pos = pos + 1 if end is None else end  # a "(" that never closes is ordinary text
            continue
        m = _URL_PART_RE.match(s, pos)
        if m.group(1) is not None:
            url = _WS_RE.sub("", m.group(1))
            if url:
                urls.append(url)
        pos = m.end()
    return urls or None


# --------------------------------------------------------------------------------------
# Date (§4.1.2.6)
# --------------------------------------------------------------------------------------

_MONTHS: dict[str, int] = {}
for _i, _month in enumerate(("january", "february", "march", "april", "may", "june", "july", "august",
                             "september", "october", "november", "december"), 1):
    _MONTHS[_month] = _MONTHS[_month[:3]] = _i

# RFC 5322 §4.3 obs-zone names whose meaning is known (and "UTC"), in minutes east of UT.  Every
# other alphabetic zone (military letters but "Z", "CET", "AST", ...) is "unknown": "-0000".
_ZONE_NAMES = {"UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "EST": -300, "EDT": -240, "CST": -360,
               "CDT": -300, "MST": -420, "MDT": -360, "PST": -480, "PDT": -420}
_NUMERIC_ZONE_RE = re.compile(r"(?:GMT|UTC|UT)?([+-])(\d\d):?(\d\d)", re.I | re.A)
_MERIDIEM_RE = re.compile(r"([ap])\.?m\.?", re.I)
# hour ":" minute [":" second], also with "." (some mailers); AM/PM or a numeric zone may be glued on
_TIME_RE = re.compile(
    r"(\d{1,2})([:.])(\d\d)(?:\2(\d\d?))?([ap]\.?m\.?)?((?:GMT|UTC|UT)?[+-]\d\d:?\d\d)?", re.I | re.A)
# what a writer meant as a zone, readable or not ("CET", "+0100", "GMT+1", "0100"); any other token
# after the time ("version=2.40" from a damaged fold) is trailing text, and the zone is not given
_ZONE_LIKE_RE = re.compile(r"[A-Za-z]*[+-]*[0-9][0-9:]*|[A-Za-z]+|[+-].*")
_RFC850_DATE_RE = re.compile(r"(\d{1,2})-([A-Za-z]+)-(\d+)", re.A)  # "03-Feb-20" (RFC 850)
_DATE_SPLIT_RE = re.compile(r"[\s,]+")
_UNKNOWN = "unknown"  # a zone whose offset is not known: -0000


def _year(text: str) -> int | None:
    # RFC 5322 §4.3: a two-digit year 00-49 is 20xx, 50-99 is 19xx; a three-digit one is + 1900
    if not text.isascii() or not text.isdigit() or not 2 <= len(text) <= 4:
        return None
    year = int(text)
    if len(text) == 2:
        return year + (2000 if year < 50 else 1900)
    return year + 1900 if len(text) == 3 else year


def _day(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 2 else None


def _zone(text: str) -> int | str | None:
    """A zone token's offset in minutes, _UNKNOWN, or None if the token is no zone.

    RFC 5322 §3.3: "+hhmm", hours 00-99, minutes 00-59 ("+hh:mm" is unambiguous too); "-0000" and
    any alphabetic zone not known are unknown (§4.3).  Anything else ("+1", "+05", "0100") cannot
    be read without guessing, so a date holding one is no date."""
    m = _NUMERIC_ZONE_RE.fullmatch(text)
    if m:
        hours, minutes = int(m.group(2)), int(m.group(3))
        if minutes > 59:
            return None
        if hours == minutes == 0 and m.group(1) == "-":
            return _UNKNOWN
        return (hours * 60 + minutes) * (-1 if m.group(1) == "-" else 1)
    if text.isascii() and text.isalpha() and not _MERIDIEM_RE.fullmatch(text):
        return _ZONE_NAMES.get(text.upper(), _UNKNOWN)
    return None


def _calendar_date(tokens: list[str], i: int) -> tuple[int | None, int, int, int] | None:
    """(year or None when it follows the time, month, day, index after) of the date at tokens[i]:
    "3 Feb 2020", "03-Feb-20", "February 3 2020" or asctime's "Feb 3" (its year after the time)."""
    m = _RFC850_DATE_RE.fullmatch(tokens[i])
    if m:
        month = _MONTHS.get(m.group(2).lower())
        year = _year(m.group(3))
        return (year, month, int(m.group(1)), i + 1) if month and year is not None else None
    if i + 2 >= len(tokens):
        return None
    first, second, third = tokens[i], tokens[i + 1], tokens[i + 2]
    if _day(first) is not None and second.lower() in _MONTHS:
        year = _year(third)
        return (year, _MONTHS[second.lower()], _day(first), i + 3) if year is not None else None
    if first.lower() in _MONTHS and _day(second) is not None:
        if not _TIME_RE.fullmatch(third):  # "February 3 2020 8:59"
            year = _year(third)
            return (year, _MONTHS[first.lower()], _day(second), i + 3) if year is not None else None
        return None, _MONTHS[first.lower()], _day(second), i + 2  # asctime: "Feb 3 08:59:00 2020"
    return None


def _date_fields(tokens: list[str]) -> tuple[int, int, int, int, int, int, int | str] | None:
    """(year, month, day, hour, minute, second, zone) of an RFC 5322 date-time, or None.

    Every token is understood or the date is None: a token skipped unread must never change the
    instant ("8:59 PM" is not 08:59, "+05:30" is not +00:00).  Only what cannot change the
    instant is ignored: the day-of-week (a wrong one is common), a zone name after a numeric zone
    and any other text after a complete date-time."""
    if tokens and tokens[0].rstrip(".").isalpha() and tokens[0].lower() not in _MONTHS:
        tokens = tokens[1:]  # the day-of-week, not checked
    date = _calendar_date(tokens, 0) if tokens else None
    if date is None:
        return None
    year, month, day, i = date
    time = _TIME_RE.fullmatch(tokens[i]) if i < len(tokens) else None
    if time is None:
        return None
    rest = tokens[i + 1:]
    meridiem = time.group(5) or (rest.pop(0) if rest and _MERIDIEM_RE.fullmatch(rest[0]) else None)
    zone = time.group(6)
    if (zone is None and rest and _ZONE_LIKE_RE.fullmatch(rest[0])
            and (year is not None or not (rest[0].isascii() and rest[0].isdigit()))):
        zone = rest.pop(0)
    if year is None:  # asctime: the year after the time (and its zone, if any)
        year = _year(rest.pop(0)) if rest else None
        if year is None:
            return None
        if zone is None and rest:
            zone = rest.pop(0)
    if zone is not None and zone.isalpha() and rest and _NUMERIC_ZONE_RE.fullmatch(rest[0]):
        zone = rest.pop(0)  # "CET +0100", "GMT +0100": the numeric zone is the exact one
    if any(_MERIDIEM_RE.fullmatch(t) or _NUMERIC_ZONE_RE.fullmatch(t) for t in rest):
        return None  # a second AM/PM or zone after the date: which one holds is a guess
    offset = _UNKNOWN if zone is None else _zone(zone)  # RFC 5322 §4.3: no zone is as good as -0000
    hour = _hour(int(time.group(1)), meridiem)
    if offset is None or hour is None:
        return None
    second = int(time.group(4) or 0)
    return year, month, day, hour, int(time.group(3)), second, offset


def _hour(hour: int, meridiem: str | None) -> int | None:
    if meridiem is None:
        return hour
    if not 1 <= hour <= 12:
        return None  # "13:00 PM", "0:30 AM": which hour is meant is a guess
    return hour % 12 + (12 if meridiem[0] in "pP" else 0)


def parse_date(value: str) -> str | None:
    """§4.1.2.6 Date form: an RFC 3339 Date (RFC 8620 §1.4) keeping the header's own UTC offset
    ("2024-01-02T03:04:05+02:00"; "Z" for a zero or unknown offset), None if unparseable.

    RFC 5322 §3.3 allows offsets up to ±99:59, RFC 3339 only hours 00-23: a date with an offset of
    24 hours or more is given as the same instant in UTC.  Every value returned is one that
    ``datetime.fromisoformat`` reads (Email/query sorts by it)."""
    fields = _date_fields([t for t in _DATE_SPLIT_RE.split(strip_comments(unfold(value))) if t])
    if fields is None:
        return None
    year, month, day, hour, minute, second, zone = fields
    offset = 0 if zone == _UNKNOWN else zone
    try:
        stamp = datetime(year, month, day, hour, minute, min(second, 59))  # 60: a leap second
        if abs(offset) >= 24 * 60:
            stamp -= timedelta(minutes=offset)
            offset = 0
    except (ValueError, OverflowError):
        return None
    text = (f"{stamp.year:04d}-{stamp.month:02d}-{stamp.day:02d}"
            f"T{stamp.hour:02d}:{stamp.minute:02d}:{stamp.second:02d}")
    if not offset:
        return text + "Z"
    sign = "-" if offset < 0 else "+"
    return f"{text}{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"


# --------------------------------------------------------------------------------------
# Addresses (§4.1.2.3 / §4.1.2.4)
# --------------------------------------------------------------------------------------

# One token of an address-list ('"' and "(" are read apart, see _items).  An <addr> may be
# doubled ("<<a@b>>"); one whose ">" is lost ends before the next ",", ";" or "<".  An encoded
# word is one word even with "," ":" or ";" inside ("=?utf-8?q?Smith,_Joe?="): its "=?" and "?="
# are unambiguous edges, and mailers do write them so.  A backslash in an atom keeps the character
# after it in the atom ('Jo\"e' is one word, its '"' opens no quoted string).
_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
      | (?P<lt><+(?:[^<>]*>+|[^<>,;]*))
      | (?P<sp>[,;:])
      | (?P<stray>[>)]+)
      | (?P<ew>=\?[^?\s]+\?[bBqQ]\?[^?\s<>"]*\?=)
      | (?P<a>(?:[^\s"(),:;<>\\]|\\[^\s<>]?)+)""",
    re.X | re.S,
)
_ATOM_RE = re.compile(r'(?:[^\s"(),:;<>\\]|\\[^\s<>]?)+')
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_QP_RE = re.compile(r"\\(.)", re.S)

_ATOM, _QUOTED, _ANGLE = range(3)


class _Word:
    __slots__ = ("text", "raw", "space", "kind", "comment")

    def __init__(self, text: str, raw: str, space: bool, kind: int = _ATOM) -> None:
        self.text = text  # display text (a quoted string's quoted-pairs decoded)
        self.raw = raw  # as written, for rebuilding an addr-spec; for an <addr>, the address
        self.space = space  # white space or a comment before this word
        self.kind = kind
        self.comment: str | None = None  # the comment right after it


def _unquote(text: str) -> str:
    return _QP_RE.sub(r"\1", text) if "\\" in text else text


def _clean_angle(token: str) -> str:
    addr = _without_cfws(token.lstrip("<").rstrip(">"))
    if addr.startswith("@") and ":" in addr:  # obsolete source route "@a,@b:user@c"
        addr = addr.split(":", 1)[1]
    return addr


def _stray(s: str, pos: int, space: bool) -> tuple[_Word, int]:
    """A '"' or "(" that opens nothing (its quote or comment never closes), read as an ordinary
    character glued to the atom after it, so that the rest of the field is not swallowed: it stays
    in a display name ("Joe (Work") but never in an address (a delimiter, not part of one)."""
    m = _ATOM_RE.match(s, pos + 1)
    rest = m.group() if m else ""
    text = ("(" if s[pos] == "(" else "") + rest
    return _Word(text, rest, space), pos + 1 + len(rest)


def _items(s: str) -> Iterator[_Word | str]:
    """The words, <addr>s and list specials (",", ";", ":") of an address-list; a comment is kept
    on the item it follows (§4.1.2.3: the one after an addr-spec can be the name)."""
    comments = _Comments(s)
    quotes_close = True  # False once a '"' was found never to close: none after it can close then
    last: _Word | None = None
    space = False
    pos = 0
    n = len(s)
    while pos < n:
        c = s[pos]
        if c == "(":
            end = comments.end(pos)
            if end is not None:
                if last is not None and last.comment is None:
                    last.comment = _unquote(s[pos + 1:end - 1])
                pos, space = end, True
                continue
            word, pos = _stray(s, pos, space)
        elif c == '"':
            m = _QUOTED_RE.match(s, pos) if quotes_close else None
            if m is None:
                # every later '"' is escaped in this quote's reading, so it cannot close either
                quotes_close = False
                word, pos = _stray(s, pos, space)
            else:
                word, pos = _Word(_unquote(m.group(1)), m.group(0), space, _QUOTED), m.end()
        else:
            m = _TOKEN_RE.match(s, pos)
            kind, tok, pos = m.lastgroup, m.group(), m.end()
            if kind == "ws":
                space = True
                continue
            if kind == "stray":  # a ">" or ")" that closes nothing
                continue
            if kind == "sp":
                last, space = None, False
                yield tok
                continue
            if kind == "lt":
                word = _Word("", _clean_angle(tok), space, _ANGLE)
            else:  # an atom is shown as written (a backslash in it is no quoted-pair, RFC 5322 §3.2.3)
                word = _Word(tok, tok, space)
        last, space = word, False
        yield word


def _phrase(words: list[_Word]) -> str | None:
    # Unquoted words are decoded together (RFC 2047 §6.2: white space between adjacent encoded
    # words goes); a quoted string is decoded alone, so the space between two of them stays.
    pieces: list[str] = []
    atoms: list[str] = []
    for w in words:
        if not w.text:
            continue
        sep = " " if w.space and (pieces or atoms) else ""
        if w.kind == _QUOTED:
            if atoms:
                pieces.append(decode_rfc2047("".join(atoms)))
                atoms = []
            pieces.append(sep + decode_rfc2047(w.text))
        else:
            atoms.append(sep + w.text)
    if atoms:
        pieces.append(decode_rfc2047("".join(atoms)))
    return _nfc("".join(pieces).strip()) or None


def _units(run: list[_Word]) -> list[list[_Word]]:
    """The words of a run grouped into units: words written without white space between them, or
    with "@" or "." at the join (obsolete CFWS inside an addr-spec, RFC 5322 §4.4:
    "joe @ example.org") are one unit."""
    units: list[list[_Word]] = []
    for w in run:
        prev = units[-1][-1] if units else None
        if (prev is not None and prev.kind != _ANGLE and w.kind != _ANGLE
                and (not w.space or prev.raw.endswith(("@", ".")) or w.raw.startswith(("@", ".")))):
            units[-1].append(w)
        else:
            units.append([w])
    return units


def _is_address(unit: list[_Word]) -> bool:
    # RFC 5322 §3.2.3: "@" is a special, never in an atom of a display name: an unquoted word with
    # "@" is an addr-spec
    return unit[0].kind == _ANGLE or any(w.kind == _ATOM and "@" in w.raw for w in unit)


def _email(unit: list[_Word]) -> str:
    return "".join(w.raw for w in unit)


def _split_run(run: list[_Word]) -> tuple[list[tuple[list[_Word], list[_Word]]], list[_Word]]:
    """Split the words between two list separators into mailboxes.

    RFC 5322 §3.4: a mailbox ends with its address, a name-addr at its ">", so whatever follows
    an address starts the next mailbox, even without the "," ("Joe <a@x> Ann <b@x>", "a@x b@x").
    Returns ([(display-name words, address unit)], the words after the last address)."""
    pairs: list[tuple[list[_Word], list[_Word]]] = []
    pending: list[_Word] = []
    for unit in _units(run):
        if not _is_address(unit):
            pending.extend(unit)
            continue
        if (unit[0].kind == _ANGLE and not pending and pairs and pairs[-1][1][0].kind != _ANGLE
                and _email(pairs[-1][1]).casefold() == unit[0].raw.casefold()):
            # "joe@example.org <joe@example.org>": the address written again as its display name
            names, prev = pairs.pop()
            pending = names + prev
        pairs.append((pending, unit))
        pending = []
    return pairs, pending


def _box(names: list[_Word], unit: list[_Word]) -> EmailAddress:
    email = unit[0].raw if unit[0].kind == _ANGLE else _email(unit)
    return _mailbox(names, email, unit[-1].comment)


def _mailbox(names: list[_Word], email: str, comment: str | None) -> EmailAddress:
    name = _phrase(names)
    if name is None and comment:
        name = _nfc(decode_rfc2047(_WS_RE.sub(" ", comment)).strip()) or None
    return {"name": name, "email": email}


def _mailboxes(run: list[_Word]) -> list[EmailAddress]:
    pairs, trailing = _split_run(run)
    if not pairs:
        # no address at all ("Joe", "undisclosed recipients"): best effort, the words as the email
        units = [u for u in _units(trailing) if _email(u)]
        if not units:
            return []
        return [_mailbox([], " ".join(_email(u) for u in units), units[-1][-1].comment)]
    if trailing:  # words after the last address, before the ",": its name ("joe@x Joe Smith")
        names, unit = pairs[-1]
        pairs[-1] = (names + trailing, unit)
    return [_box(names, unit) for names, unit in pairs]


class _Groups:
    """The EmailAddressGroup list being built: named groups, and runs of mailboxes outside any."""

    def __init__(self) -> None:
        self.groups: list[dict] = []
        self.open: dict | None = None  # the "name: ...;" group being read
        self.loose: dict | None = None  # the current run of mailboxes outside any group

    def add(self, boxes: list[EmailAddress]) -> None:
        if not boxes:
            return
        target = self.open
        if target is None:
            if self.loose is None:
                self.loose = {"name": None, "addresses": []}
                self.groups.append(self.loose)
            target = self.loose
        target["addresses"].extend(boxes)

    def start(self, name: str | None) -> None:
        self.open = {"name": name, "addresses": []}
        self.groups.append(self.open)
        self.loose = None


def parse_grouped_addresses(value: str) -> list[dict]:
    """§4.1.2.4 GroupedAddresses form.  Best effort, never None: a mangled header still
    yields whatever mailboxes could be recognised (the spec type is not nullable)."""
    out = _Groups()
    run: list[_Word] = []
    for item in _items(unfold(value)):
        if isinstance(item, _Word):
            run.append(item)
        elif item == ":":
            pairs, names = _split_run(run)
            if out.open is not None and not names:
                run.append(_Word(":", ":", False))  # no group name before it: part of an address
                continue
            # a group's display name; one that opens while a group is still open (its ";" lost,
            # "G1: a@x, G2: b@x;") closes that group first
            out.add([_box(n, u) for n, u in pairs])
            out.start(_phrase(names))
            run = []
        else:  # "," or ";"
            out.add(_mailboxes(run))
            run = []
            if item == ";":
                out.open = None
    out.add(_mailboxes(run))
    return out.groups


# RFC 5322 §3.4.1 addr-spec (with RFC 6532 UTF-8): a dot-atom or quoted-string local part, "@", a
# dot-atom domain or a domain literal; nothing else (no spaces, commas, angle brackets, line breaks)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_ADDR_SPEC = re.compile(
    rf'(?:{_ATEXT}+(?:\.{_ATEXT}+)*|"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*")'
    rf"@(?:{_ATEXT}+(?:\.{_ATEXT}+)*|\[[^\[\]\\\s]*\])")


def is_addr_spec(value: str) -> bool:
    """Whether value is exactly one RFC 5322 addr-spec (``local@domain``), at most 254 characters:
    what an EmailAddress's email written into a header, or an SMTP path, may be."""
    return len(value) <= 254 and _ADDR_SPEC.fullmatch(value) is not None


def has_line_break(value: str) -> bool:
    """CR, LF or NUL: never allowed in a header value a client gives (no header injection)."""
    return "\r" in value or "\n" in value or "\x00" in value


def parse_addresses(value: str) -> list[EmailAddress]:
    """§4.1.2.3 Addresses form: every mailbox, group information discarded."""
    return [box for g in parse_grouped_addresses(value) for box in g["addresses"]]


def format_address_text(addresses: list[EmailAddress] | None) -> str:
    """Human text "Name <addr>, addr" (used for full-text indexing)."""
    out = []
    for a in addresses or ():
        name, email = a.get("name"), a.get("email") or ""
        out.append(f"{name} <{email}>" if name else email)
    return ", ".join(out)


# --------------------------------------------------------------------------------------
# header:{name}:as{Form}[:all]
# --------------------------------------------------------------------------------------

# Header fields defined by RFC 5322 and RFC 2369: only these have restricted forms.
_ADDRESS_FIELDS = frozenset(
    "from sender reply-to to cc bcc resent-from resent-sender resent-reply-to resent-to "
    "resent-cc resent-bcc".split()
)
_MSGID_FIELDS = frozenset("message-id in-reply-to references resent-message-id".split())
_DATE_FIELDS = frozenset(("date", "resent-date"))
_URL_FIELDS = frozenset(
    "list-help list-unsubscribe list-subscribe list-post list-owner list-archive".split()
)
_TEXT_FIELDS = frozenset(("subject", "comments", "keywords", "list-id"))
_KNOWN_FIELDS = (
    _ADDRESS_FIELDS
    | _MSGID_FIELDS
    | _DATE_FIELDS
    | _URL_FIELDS
    | _TEXT_FIELDS
    | frozenset(("return-path", "received"))
)
_FORM_FIELDS = {
    "Text": _TEXT_FIELDS,
    "Addresses": _ADDRESS_FIELDS,
    "GroupedAddresses": _ADDRESS_FIELDS,
    "MessageIds": _MSGID_FIELDS,
    "Date": _DATE_FIELDS,
    "URLs": _URL_FIELDS,
}


def _norm_form(form: str | None) -> str | None:
    if not form:
        return "Raw"
    if form.startswith("as") and form[2:] in FORMS:
        form = form[2:]
    return form if form in FORMS else None


def is_valid_header_form(name: str, form: str) -> bool:
    """False where RFC 8621 §4.1.2 forbids the form for that field (e.g. Subject as
    Addresses, From as Date).  Raw is always allowed; fields not defined by RFC 5322 or
    RFC 2369 (e.g. X-Foo, List-Id) allow every form.  Unknown form names are invalid."""
    form = _norm_form(form)
    if form is None:
        return False
    if form == "Raw":
        return True
    lname = name.lower()
    if lname not in _KNOWN_FIELDS:
        return True
    return lname in _FORM_FIELDS[form]


def parse_header_property(prop: str) -> tuple[str, str, bool] | None:
    """Split "header:{name}[:as{Form}][:all]" into (name, Form, all); None if malformed."""
    if not prop.startswith("header:"):
        return None
    parts = prop[7:].split(":")
    name = parts[0]
    if not name or any(not 33 <= ord(c) <= 126 for c in name):
        return None
    rest = parts[1:]
    all_ = False
    if rest and rest[-1] == "all":
        all_ = True
        rest = rest[:-1]
    form = "Raw"
    if rest:
        if len(rest) > 1 or not rest[0].startswith("as") or rest[0][2:] not in FORMS:
            return None
        form = rest[0][2:]
    return name, form, all_


def convert_value(raw: str, form: str) -> object:
    """One raw header value in the requested parsed form."""
    form = _norm_form(form) or "Raw"
    try:
        if form == "Raw":
            return raw
        if form == "Text":
            return parse_text(raw)
        if form == "Addresses":
            return parse_addresses(raw)
        if form == "GroupedAddresses":
            return parse_grouped_addresses(raw)
        if form == "MessageIds":
            return parse_message_ids(raw)
        if form == "Date":
            return parse_date(raw)
        return parse_urls(raw)
    except Exception:  # noqa: BLE001 - a header must never break a whole Email/get
        return None if form not in ("Addresses", "GroupedAddresses") else []


def header_value(headers: list[dict], name: str, form: str, all_: bool) -> object:
    """``header:{name}:as{form}[:all]`` (RFC 8621 §4.1.3) over a ``parse_headers`` list.

    Without ``all_``: the value of the LAST instance, or None.  With ``all_``: the list of
    every instance in message order (empty if none).  Names match case-insensitively.
    """
    lname = name.lower()
    raws = [h["value"] for h in headers if h["name"].lower() == lname]
    if all_:
        return [convert_value(v, form) for v in raws]
    return convert_value(raws[-1], form) if raws else None


# --------------------------------------------------------------------------------------
# Formatting (Email/set create, §4.6)
# --------------------------------------------------------------------------------------

_PHRASE_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
MAX_LINE = 78


def encode_text(text: str, header_name: str = "Subject") -> str:
    """Header text, RFC 2047-encoded (UTF-8) when it is not plain ASCII, folded."""
    text = _WS_RE.sub(" ", text) if ("\r" in text or "\n" in text) else text
    if text.isascii() and "=?" not in text and _longest_word(text) <= MAX_WORD:
        return fold_words(text, len(header_name) + 2)
    # encoded words split anywhere, so a word too long for one line still folds (RFC 5322 §2.1.1)
    return Header(text, "utf-8", header_name=header_name).encode(linesep="\r\n", maxlinelen=MAX_LINE)


MAX_WORD = 900  # a plain word longer than this is written as encoded words, to stay under 998 octets


def _longest_word(text: str) -> int:
    return max((len(w) for w in text.split(" ")), default=0)


def fold_words(text: str, used: int) -> str:
    """Fold plain ASCII text at spaces so lines stay within 78 characters if possible."""
    if used + len(text) <= MAX_LINE or " " not in text:
        return text
    out: list[str] = []
    line = used
    for i, word in enumerate(text.split(" ")):
        if i == 0:
            out.append(word)
            line += len(word)
        elif line + 1 + len(word) > MAX_LINE and line > 1:
            out.append("\r\n " + word)
            line = 1 + len(word)
        else:
            out.append(" " + word)
            line += 1 + len(word)
    return "".join(out)


def _encode_phrase(name: str, used: int = 0) -> str:
    """A display name as an RFC 5322 phrase; ``used``: octets already on its first line."""
    name = _WS_RE.sub(" ", name).strip()
    if not name.isascii() or "=?" in name or _longest_word(name) > MAX_WORD:
        # Header shortens its first line by len(header_name) + 2 (by 2 for "": used == 2 counts too)
        header = Header(name, "utf-8", header_name="x" * (used - 2) if used >= 2 else None)
        return header.encode(linesep="\r\n", maxlinelen=MAX_LINE)
    if _PHRASE_SPECIALS.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # RFC 5322 §2.2.3: folded at its spaces (inside a quoted-string too, §3.2.4: unfolding keeps
    # the space), so a long name never makes a line pass 998 octets
    return fold_words(name, used)


def format_mailbox(addr: EmailAddress, used: int = 0) -> str:
    name = addr.get("name")
    email = (addr.get("email") or "").strip()  # a space can only be in a quoted local part (is_addr_spec)
    if name:
        phrase = _encode_phrase(name, used)
        last = phrase.rsplit("\r\n", 1)[-1]
        # fold before the address when the phrase's last line leaves no room for it
        sep = "\r\n " if "\r\n" in phrase and len(last) + len(email) + 3 > MAX_LINE else " "
        return f"{phrase}{sep}<{email}>"
    return email


def fold_list(items: list[str], used: int, sep: str = ",") -> str:
    """Join structured items with ``sep`` + space, folding between items when long."""
    out: list[str] = []
    line = used
    for i, item in enumerate(items):
        head = item.split("\r\n", 1)[0]
        if i:
            if line + len(sep) + 1 + len(head) > MAX_LINE:
                out.append(sep + "\r\n ")
                line = 1
            else:
                out.append(sep + " ")
                line += len(sep) + 1
        out.append(item)
        line = len(item.rsplit("\r\n", 1)[-1]) + (0 if "\r\n" in item else line)
    return "".join(out)


def format_addresses(addresses: list[EmailAddress], used: int = 4) -> str:
    return fold_list([format_mailbox(a, used if i == 0 else 2) for i, a in enumerate(addresses)], used)


def format_grouped(groups: list[dict], used: int = 4) -> str:
    """GroupedAddresses as an address-list: ``Name: a, b;, c``, folded between addresses (inside
    a group too) like ``format_addresses``, so that no line passes 998 octets (RFC 5322 §2.1.1)."""
    items: list[str] = []
    for g in groups:
        boxes = [format_mailbox(a, 2) for a in g.get("addresses") or ()]
        if g.get("name") is None:
            items.extend(boxes)
            continue
        # "Name: a", b, ..., "z;": the group's addresses are items of the one list, folded alike
        head = _encode_phrase(g["name"], used if not items else 2) + ":"
        if not boxes:
            items.append(head + " ;")
            continue
        column = len(head.rsplit("\r\n", 1)[-1]) if "\r\n" in head else (used if not items else 2) + len(head)
        first = format_mailbox(g["addresses"][0], column + 1)
        glue = " " if column + 1 + len(first.split("\r\n", 1)[0]) <= MAX_LINE else "\r\n "
        boxes[0] = head + glue + first
        boxes[-1] += ";"
        items.extend(boxes)
    return fold_list(items, used)


def format_message_ids(ids: list[str], used: int = 12) -> str:
    return fold_list([f"<{i.strip().strip('<>')}>" for i in ids], used, sep="")


def format_urls(urls: list[str], used: int = 12) -> str:
    return fold_list([f"<{u.strip()}>" for u in urls], used)


def parse_jmap_date(value: str) -> datetime | None:
    """Parse an RFC 3339 JMAP Date/UTCDate; a missing offset is taken as UTC."""
    if not isinstance(value, str) or not 16 <= len(value) <= 40 or "T" not in value.upper():
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def format_date(dt: datetime) -> str:
    """RFC 5322 date-time keeping the offset: "Tue, 10 Jul 2018 11:03:11 +1000"."""
    return format_datetime(dt.replace(microsecond=0))
