"""Property-based tests of the MIME layer (issue 6, "Real mail as a test"): hypothesis builds raw
RFC 5322 messages with random header encodings, charsets, multipart trees and damage, together with
what a correct reader must find in them, and checks invariants that hold for any message.

What the strategy (``messages()``) generates:

* header fields Subject/From/To/Date/Message-ID/References/In-Reply-To in random order and case,
  folded or not: plain ASCII, raw UTF-8 (RFC 6532), RFC 2047 encoded words in many charsets with
  B and Q encodings (split over adjacent words, with RFC 2231 language tags), encoded words that
  must stay as they are (unknown charsets, Python codec names such as unicode_escape or punycode,
  unterminated words) and broken ones (bad base64, invalid octets, UTF-7 runs that decode to lone
  surrogates, multi-byte characters split between words); quoted-string, atom, encoded-word and
  comment display names; obsolete date zones; comments and a missing ``>`` in Message-ID;
* multipart trees (mixed, alternative, related, signed, digest, report, parallel, unknown) nested up
  to 5 deep, attached message/rfc822 messages (themselves generated, 2 levels), digests whose parts
  have no Content-Type, an inner multipart that reuses its parent's boundary, a missing close
  delimiter, a missing boundary parameter, boundaries that need quoting or RFC 2231 continuations,
  preambles and epilogues, comments in Content-Type;
* leaves text/plain, text/html (attributes with ``>`` and quotes, scripts, styles, comments,
  entities), text/rfc822-headers, images, application/*, PGP signatures, delivery-status, with
  Content-Transfer-Encoding none/7bit/8bit/binary/base64/quoted-printable/broken base64/unknown,
  charsets utf-8, us-ascii, iso-8859-1, windows-1252, iso-8859-15, koi8-r, windows-1251, shift_jis,
  iso-2022-jp, euc-jp, gb2312, euc-kr, utf-7, utf-16, utf-16be, made-up names and Python codec
  names that are no IANA charsets, written as token, quoted string, RFC 2231 ``charset*=``, with a
  comment or with junk after the quoted value (case m05); UTF-7 bodies with a run that decodes to a
  lone surrogate (cases m02, m03); names as filename/name parameters, RFC 2231 (with charset and
  continuations) and RFC 2047 inside quotes, also in UTF-7 with such a run;
* lines that are no header field inside a header section (case m01), and damage applied to the
  finished bytes: truncation, a line dropped or doubled, LF or CR line ends, NUL bytes, 8-bit
  bytes in the header, a very long line.

Invariants, for every message (``check_library``, on the pure functions of app.mail.mime):
nothing raises and nothing is logged at ERROR by "app.mail"; every string of parse_summary,
body_properties (all properties, all body values), parse_headers, every header_value form,
message_text and body_text is free of lone surrogates and serialises with orjson; preview is at
most 256 characters of plain text; neither textBody nor htmlBody holds both the text/plain and the
text/html child of one multipart/alternative; each bodyStructure node has the type its own header
declares, multiparts have subParts and no partId, leaves a partId; extract_part of each leaf gives
bytes; maxBodyValueBytes cuts give prefixes within the limit; no attribute, script, style or comment
of an HTML part reaches the preview or the text to index.  Messages without damage (line-end
changes and stray header lines count as none: a reader must cope with both) also carry the values
that must come back exactly: Subject, From, To, Date, Message-ID, References, the bodyStructure tree,
each text leaf's text and isEncodingProblem, charset, name, disposition, cid and decoded content, and
each text leaf's marker word as a word of its own in message_text.  ``test_server_*`` imports
messages into a real server and checks that Email/get with every property answers valid I-JSON and
that the blob downloads byte-identical.

``TIDINGS_HYPOTHESIS_EXAMPLES=N`` runs N examples (default 1000; the server test runs
``TIDINGS_HYPOTHESIS_SERVER_EXAMPLES``, default 100); ``TIDINGS_HYPOTHESIS_RANDOM=1`` draws fresh
examples instead of the fixed (derandomized) ones; ``TIDINGS_HYPOTHESIS_SHRINK=1`` shrinks a failing
example to a minimal one (off by default: shrinking takes a minute or more, too long for make test);
``TIDINGS_HYPOTHESIS_SKIP=a,b`` ignores the named invariants, to look for failures a more frequent
one hides.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.email.model import BODY_PART_PROPERTIES, PROPERTIES
from app.mail import mime
from app.mail.mime import (
    body_properties,
    extract_part,
    header_value,
    message_text,
    parse_headers,
    parse_summary,
)

EXAMPLES = int(os.environ.get("TIDINGS_HYPOTHESIS_EXAMPLES", "1000"))
SERVER_EXAMPLES = int(os.environ.get("TIDINGS_HYPOTHESIS_SERVER_EXAMPLES", "100"))
RANDOM = os.environ.get("TIDINGS_HYPOTHESIS_RANDOM", "") == "1"
SHRINK = os.environ.get("TIDINGS_HYPOTHESIS_SHRINK", "") == "1"
SKIP = frozenset(x.strip() for x in os.environ.get("TIDINGS_HYPOTHESIS_SKIP", "").split(",") if x.strip())

COMMON = dict(
    deadline=None,
    database=None,
    derandomize=not RANDOM,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
    phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
)

FORMS = ("Raw", "Text", "Addresses", "GroupedAddresses", "MessageIds", "Date", "URLs")
ALL_BODY_PROPS = [
    *BODY_PART_PROPERTIES,
    "header:Content-Type",
    "header:Content-Type:asText",
    "header:Content-Disposition:asText:all",
    "header:Content-ID:asMessageIds",
    "header:Content-Description:asText",
]

# --------------------------------------------------------------------------------------
# Invariant failures: one exception class per invariant, so hypothesis reports (and shrinks)
# each broken invariant separately.
# --------------------------------------------------------------------------------------


class InvariantError(AssertionError):
    pass


_ERRORS: dict[str, type] = {}


def fail(name: str, detail: object) -> None:
    if name in SKIP:
        return
    cls = _ERRORS.get(name)
    if cls is None:
        cls = _ERRORS[name] = type(f"Invariant_{name.replace('-', '_')}", (InvariantError,), {})
    raise cls(f"{name}: {detail}")


def check(cond: bool, name: str, detail: object = "") -> None:
    if not cond:
        fail(name, detail() if callable(detail) else detail)


# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------

# No word holds "q": boundaries and marker words do, so no text line can look like a delimiter
# and no text can hold a marker by chance.  No "<" either: a "<" in a preview is then a leak.
ASCII_WORDS = [
    "hello", "world", "Lunch", "on", "Friday", "invoice", "50%", "a+b=c", "x_y", "(paren)",
    "semi;colon", "email@example.org", "dash-ed", 'said"hi', "back\\slash", "[list]", "Re:",
    "comma,", "dot.", "a>b", "&amp;", "#1", "~tilde", "100$",
]  # fmt: skip
SCRIPT_WORDS = {
    "ascii": ASCII_WORDS,
    "latin": ["café", "Grüße", "naïve", "façade", "Ångström", "½", "€uro", "œuvre", "Ñandú", "Zürich"],
    "cyrillic": ["Привет", "мир", "ёжик", "Съешь", "Москва"],
    "japanese": ["こんにちは", "日本語", "テスト", "メール", "ｶﾀｶﾅ", "東京"],
    "chinese": ["中文", "邮件", "测试", "你好"],
    "korean": ["안녕하세요", "메일", "한국어"],
    "other": ["αβγ", "😀", "🎉", "e\u0301", "עברית", "العربية", "𝒜", "ﬁ"],
}
ALL_SCRIPTS = tuple(SCRIPT_WORDS) + ("any",)
RANDOM_WORD = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Co", "Zl", "Zp", "Zs"), exclude_characters="<q"),
    min_size=1,
    max_size=8,
)
UNKNOWN_WORDS = ["caf\\xe9", "\\u00e9t\\u00e9", "caf-dma", "xn--caf-dma", "pns", "plain", "text", "=3D"]


@dataclass(frozen=True)
class Charset:
    label: str  # as written in the message
    encoder: str  # Python codec the sender used
    model: str  # codec a correct reader decodes with (WHATWG: iso-8859-1 is windows-1252, ...)
    scripts: tuple[str, ...]

    @property
    def ascii_compatible(self) -> bool:
        return not self.encoder.startswith("utf-16")


CHARSETS = [
    Charset("utf-8", "utf-8", "utf-8", ALL_SCRIPTS),
    Charset("us-ascii", "ascii", "ascii", ("ascii",)),
    Charset("UTF-8", "utf-8", "utf-8", ALL_SCRIPTS),
    Charset("iso-8859-1", "latin-1", "cp1252", ("ascii", "latin")),
    Charset("windows-1252", "cp1252", "cp1252", ("ascii", "latin")),
    Charset("ISO-8859-15", "iso8859-15", "iso8859-15", ("ascii", "latin")),
    Charset("koi8-r", "koi8-r", "koi8-r", ("ascii", "cyrillic")),
    Charset("windows-1251", "cp1251", "cp1251", ("ascii", "cyrillic")),
    Charset("shift_jis", "shift_jis", "cp932", ("ascii", "japanese")),
    Charset("iso-2022-jp", "iso2022_jp", "iso2022_jp", ("ascii", "japanese")),
    Charset("euc-jp", "euc_jp", "euc_jp", ("ascii", "japanese")),
    Charset("gb2312", "gb2312", "gb18030", ("ascii", "chinese")),
    Charset("euc-kr", "euc_kr", "cp949", ("ascii", "korean")),
    Charset("utf-7", "utf-7", "utf-7", ALL_SCRIPTS),
    Charset("utf-16", "utf-16", "utf-16", ALL_SCRIPTS),
    Charset("UTF-16BE", "utf-16-be", "utf-16-be", ALL_SCRIPTS),
]
# Not IANA charsets: made up, or Python codec names (RFC 2047 §2, case m09). A reader treats them
# as unknown: body text is taken as it is and flagged, encoded words are left as they are.
UNKNOWN_CHARSETS = [
    "x-unknown", "utf-9", "latin-99", "unicode_escape", "unicode-escape", "raw_unicode_escape",
    "punycode", "rot13", "rot_13", "idna", "undefined", "charmap",
]  # fmt: skip

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
OBS_ZONES = {"GMT": 0, "UT": 0, "EST": -5, "EDT": -4, "CST": -6, "PDT": -7, "PST": -8}
ODD_LINES = [
    b"From alice@example.org Mon Jan  1 00:00:00 2024",
    b">From bob@example.org Tue Feb  2 00:00:00 2021",
    b"this line is not a header field",
    b"Xyz",
    b"\xe9t\xe9 sans deux-points",
    b"=?utf-8?B?bm90IGEgZmllbGQ=?=",
]
HIDDEN = ("zqattr", "zqscript", "zqstyle", "zqcomment")
TAG_RE = re.compile(
    r"<\s*/?\s*(?:p|a|div|img|script|style|br|table|tr|td|span|font|html|head|body|title|meta|input|b)\b"
    r"|<!--|<!doctype",
    re.I,
)
SURROGATE_RE = re.compile("[\ud800-\udfff]")
NOCHECK = object()


# --------------------------------------------------------------------------------------
# The model: what a correct reader finds in a generated message
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class Part:
    type: str | None  # the part's own (declared or default) type; None when it declares an unparsable one
    children: list[Part] | None = None
    text: str | None = None  # text leaf: its text (LF line ends), when it must come back exactly
    problem: bool | None = None  # expected isEncodingProblem of that text
    content: bytes | None = None  # expected decoded content (extract_part), when exact
    content_crlf: bool = False  # content holds line ends (not base64): a line-end change alters it
    name: object = NOCHECK
    charset: object = NOCHECK
    disposition: object = NOCHECK
    cid: object = NOCHECK


@dataclass(eq=False)
class Entity:
    fields: list[tuple[str, bytes]]
    body: bytes
    part: Part
    exact: bool  # the structure below (and incl.) this entity comes back as built
    visible: list[str] = field(default_factory=list)  # marker words message_text must hold


@dataclass(eq=False)
class Msg:
    raw: bytes
    root: Part
    expect: dict  # header-derived values that must come back exactly
    exact: bool  # bodyStructure / values must match ``root``
    visible: list[str]  # marker words that must be in message_text()["body"]
    html_checked: bool  # hidden markers must not leak (no damage that could expose them legitimately)
    damage: list[str]
    line_ends_changed: bool = False
    max_bytes: int = 0

    def __repr__(self) -> str:
        return f"Msg(damage={self.damage!r}, exact={self.exact}, raw={self.raw!r})"

    def _repr_pretty_(self, p, cycle) -> None:  # hypothesis prints failing examples with this
        p.text(repr(self))


def q_encode(data: bytes) -> str:
    out = []
    for b in data:
        c = chr(b)
        if c == " ":
            out.append("_")
        elif c.isascii() and (c.isalnum() or c in "!*+-/"):
            out.append(c)
        else:
            out.append(f"={b:02X}")
    return "".join(out)


def encodes(text: str, cs: Charset) -> bytes | None:
    """The bytes of text in cs, if a correct reader gets exactly text back from them."""
    try:
        data = text.encode(cs.encoder)
        return data if data.decode(cs.model) == text else None
    except (UnicodeError, LookupError):
        return None


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


# --------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------


class Gen:
    """Draws one message.  Choices shrink to the simplest case: sampled lists start with it and
    ``chance`` is False at 0."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.counter = 0
        self.parts = 0
        # no check for leaked markup: a multipart without boundary (its whole body, markup and all,
        # can only be shown as text) or UTF-16 HTML without BOM and charset (a browser shows it as text)
        self.html_unchecked = False

    def pick(self, seq):
        return self.draw(st.sampled_from(seq))

    def chance(self, pct: int) -> bool:
        return self.draw(st.integers(0, 99)) >= 100 - pct

    def weighted(self, weights: dict):
        """A key of weights, drawn with those weights; shrinks to the first key."""
        x = self.num(0, sum(weights.values()) - 1)
        for key, w in weights.items():
            if x < w:
                return key
            x -= w
        raise AssertionError("unreachable")

    def num(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def next_id(self) -> int:
        self.counter += 1
        return self.counter

    # -- words -------------------------------------------------------------------------

    def word(self, scripts: tuple[str, ...]) -> str:
        script = self.pick(scripts)
        if script == "any":
            return self.draw(RANDOM_WORD)
        return self.pick(SCRIPT_WORDS[script])

    def words(self, scripts: tuple[str, ...], lo: int = 1, hi: int = 5) -> str:
        return " ".join(self.word(scripts) for _ in range(self.num(lo, hi)))

    # -- header text (Subject, display names) --------------------------------------------

    def encoded_words(self, text: str) -> tuple[list[str], object]:
        """text as one or more adjacent encoded words; returns (words, decoded or NOCHECK)."""
        kind = self.pick(
            ["good", "good", "unknown", "unterminated", "bad-b64", "bad-octets", "utf7-bad", "split"]
        )
        if kind == "unknown":
            label = self.pick(UNKNOWN_CHARSETS)
            enc = self.pick("QB")
            payload = "caf\\xe9" if enc == "Q" else base64.b64encode(text.encode("utf-8")).decode()
            word = f"=?{label}?{enc}?{payload}?="
            return [word], word  # §4.1.2.2: only words in a known charset are decoded
        if kind == "unterminated":
            word = f"=?utf-8?Q?{q_encode(text.encode('utf-8'))}"
            return [word], word
        if kind == "bad-b64":
            return ["=?utf-8?B?!!!?="], NOCHECK
        if kind == "bad-octets":
            return [f"=?utf-8?Q?ab=FF=FE{self.pick(['', 'c', '=C3'])}?="], NOCHECK
        if kind == "utf7-bad":
            return [
                f"=?utf-7?{self.pick(['Q', 'B'])}?" + self.pick(["abc+2D0-def", "YWJjKzJEMC1kZWY="]) + "?="
            ], NOCHECK
        cs = self.pick(CHARSETS)
        if encodes(text, cs) is None:
            cs = CHARSETS[0]
        lang = self.pick(["", "", "*en", "*de-CH"])
        pieces = [text]
        if len(text) > 1 and self.chance(30):
            cut = self.num(1, len(text) - 1)
            pieces = [text[:cut], text[cut:]]
        out = []
        for piece in pieces:
            data = piece.encode(cs.encoder)
            if kind == "split" and len(data) > 1:
                out.append(data[: len(data) // 2])
                out.append(data[len(data) // 2 :])
            else:
                out.append(data)
        words = []
        for data in out:
            enc = self.pick("QBqb")
            payload = q_encode(data) if enc in "Qq" else base64.b64encode(data).decode()
            words.append(f"=?{cs.label}{lang}?{enc}?{payload}?=")
        if kind == "split":
            return words, NOCHECK  # RFC 2047 §5: a word holds whole characters
        return words, text

    def header_text(self, scripts: tuple[str, ...] = ALL_SCRIPTS) -> tuple[str, object]:
        """A Text-form header value (after the colon) and its decoded value or NOCHECK."""
        tokens: list[tuple[str, str, bool]] = []  # (raw, decoded, is decoded encoded word)
        exact = True
        for _ in range(self.num(1, 5)):
            kind = self.pick(["ascii", "utf8", "ew", "long"])
            if kind == "ascii":
                w = self.word(("ascii",))
                tokens.append((w, w, False))
            elif kind == "utf8":
                w = self.word(scripts)
                tokens.append((w, w, False))
            elif kind == "long":
                w = "long" * self.num(20, 400)
                tokens.append((w, w, False))
            else:
                text = self.words(scripts, 1, 3).strip()
                words, decoded = self.encoded_words(text)
                if decoded is NOCHECK:
                    exact = False
                    decoded = ""
                is_ew = words[0] != decoded or decoded == ""
                sep = self.pick([" ", "\r\n "])
                tokens.append((sep.join(words), decoded, is_ew))
        raw_parts: list[str] = []
        expected: list[str] = []
        prev_ew = False
        for i, (raw, decoded, is_ew) in enumerate(tokens):
            if i:
                sep = self.pick([" ", " ", "\r\n ", "\r\n\t"])
                raw_parts.append(sep)
                if not (prev_ew and is_ew):
                    expected.append(sep[-1])  # unfolding keeps the white space after the line break
            raw_parts.append(raw)
            expected.append(decoded)
            prev_ew = is_ew
        value = " " + "".join(raw_parts)
        return value, nfc("".join(expected).strip()) if exact else NOCHECK

    # -- addresses ------------------------------------------------------------------------

    def addr_spec(self) -> str:
        local = self.pick(["alice", "bob.smith", "c+tag", "d_e", "x1"]) + str(self.num(0, 99))
        domain = self.pick(["example.org", "EXAMPLE.com", "mail.example.net", "xn--bcher-kva.example"])
        return f"{local}@{domain}"

    def mailbox(self) -> tuple[str, object]:
        email = self.addr_spec()
        kind = self.pick(["bare", "atoms", "quoted", "ew", "angle", "comment", "mixed"])
        if kind == "bare":
            return email, {"name": None, "email": email}
        if kind == "angle":
            return f"<{email}>", {"name": None, "email": email}
        if kind == "atoms":
            name = " ".join(
                self.pick(["Alice", "Bob", "Example", "Jürgen", "Müller", "O'Neil", "José"])
                for _ in range(self.num(1, 3))
            )
            return f"{name} <{email}>", {"name": nfc(name), "email": email}
        if kind == "quoted":
            name = self.pick(["Smith, Bob", "Dr. Who", 'say "hi"', "a\\b", "x@y", "Zoë (home)", "semi;co"])
            escaped = name.replace("\\", "\\\\").replace('"', '\\"')
            return f'"{escaped}" <{email}>', {"name": nfc(name), "email": email}
        if kind == "comment":
            name = self.pick(["Alice Example", "Jürgen", "Team"])
            return f"{email} ({name})", {"name": nfc(name), "email": email}
        text = self.words(("ascii", "latin", "japanese", "any"), 1, 2).strip()
        words, decoded = self.encoded_words(text)
        if kind == "mixed":
            extra = self.pick(["Example", "Müller"])
            raw = " ".join(words) + " " + extra
            name = NOCHECK if decoded is NOCHECK else nfc(f"{decoded} {extra}".strip())
        else:
            raw = " ".join(words)
            name = NOCHECK if decoded is NOCHECK else (nfc(decoded.strip()) or None)
        return f"{raw} <{email}>", NOCHECK if name is NOCHECK else {"name": name, "email": email}

    def address_list(self, lo: int, hi: int) -> tuple[str, object]:
        if self.chance(5):
            return " undisclosed-recipients:;", []
        raws, expected = [], []
        group = self.chance(8)
        for _ in range(self.num(lo, hi)):
            raw, exp = self.mailbox()
            raws.append(raw)
            expected.append(exp)
        value = self.pick([", ", ",\r\n ", ",\r\n\t", ","]).join(raws)
        if group:
            value = f"Team: {value};"
        return " " + value, NOCHECK if any(e is NOCHECK for e in expected) else expected

    # -- other fields -----------------------------------------------------------------------

    def date(self) -> tuple[str, object]:
        base = datetime(1970, 1, 1) + timedelta(seconds=self.num(0, 4_000_000_000))
        if self.chance(15):
            zone = self.pick(list(OBS_ZONES))
            offset = OBS_ZONES[zone] * 60
            zone_text = zone
        else:
            offset = self.num(-12 * 4, 14 * 4) * 15
            sign = "-" if offset < 0 else "+"
            zone_text = f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
            if offset == 0 and self.chance(20):
                zone_text = "-0000"
        with_seconds = not self.chance(10)
        if not with_seconds:
            base = base.replace(second=0)
        day = str(base.day) if self.chance(30) else f"{base.day:02d}"
        clock = f"{base:%H:%M:%S}" if with_seconds else f"{base:%H:%M}"
        text = f"{day} {MONTHS[base.month - 1]} {base.year} {clock} {zone_text}"
        if not self.chance(20):
            text = f"{DAYS[base.weekday()]}, {text}"
        if self.chance(15):
            text += self.pick([" (UTC)", " (CET)", " (Pacific Standard Time)"])
        expected = base.replace(tzinfo=timezone(timedelta(minutes=offset)))
        return " " + text, expected

    def msg_id(self) -> str:
        left = self.pick(["abc", "CAH=x+y$z", "1234.5678", "a.b.c", "x_y-z"]) + str(self.next_id())
        return f"{left}@{self.pick(['example.org', 'mail.example.com', 'localhost'])}"

    def message_id_field(self) -> tuple[str, object]:
        mid = self.msg_id()
        kind = self.pick(["plain", "folded", "comment-before", "comment-after", "unclosed"])
        value = {
            "plain": f" <{mid}>",
            "folded": f"\r\n <{mid}>",
            "comment-before": f" (generated) <{mid}>",
            "comment-after": f" <{mid}> (generated)",
            "unclosed": f" <{mid}",  # case m08: unambiguous, the reader repairs it
        }[kind]
        return value, [mid]

    # -- bodies -------------------------------------------------------------------------------

    def plain_text(self, scripts: tuple[str, ...], marker: str) -> str:
        lines = []
        for _ in range(self.num(1, 5)):
            kind = self.pick(["words", "empty", "quoted", "long", "trailing-space", "signature"])
            if kind == "words":
                line = self.words(scripts, 1, 8)
            elif kind == "empty":
                line = ""
            elif kind == "quoted":
                line = "> " + self.words(scripts, 1, 4)
            elif kind == "long":
                line = " ".join([self.word(scripts)] * self.num(100, 600))
            elif kind == "trailing-space":
                line = self.words(scripts, 1, 3) + " " * self.num(1, 3)
            else:
                line = "-- "
            lines.append(line)
        lines[0] = f"{lines[0]} {marker}".strip()
        return "\n".join(lines) + ("\n" if self.chance(60) else "")

    def html_text(self, scripts: tuple[str, ...], marker: str) -> str:
        n = self.next_id()

        def visible() -> str:
            return html.escape(self.words(scripts, 1, 4), quote=False) + self.pick(
                [
                    "",
                    " &amp; more",
                    " &eacute;t&eacute;",
                    " &#233;&#x263A;",
                    " 1 &lt; 2",
                    "&nbsp;x",
                    " &copy;",
                ]
            )

        fragments = [
            lambda v: f"<p>{v}</p>",
            lambda v: (
                f'<a href="https://example.org/?a=1&amp;b=2" title="next -> zqattr{n}x" '
                f"data-track='it\"s zqattr{n}x > here'>{v}</a>"
            ),
            lambda v: f'<img src="cid:img{n}@example.org" alt="a > b zqattr{n}x">{v}',
            lambda v: f'<div style="font-family:\'Segoe UI\'" onclick="if(a>b){{zqattr{n}x()}}">{v}</div>',
            lambda v: (
                f"<script type=\"text/javascript\">if (a < b && c > d) {{ x = '<p>zqscript{n}x</p>'; }}"
                f"</script>{v}"
            ),
            lambda v: f'<style>p > a {{ content: "zqstyle{n}x"; }}</style>{v}',
            lambda v: f"<!-- zqcomment{n}x <p>hidden</p> -->{v}",
            lambda v: f"<table><tr><td>{v}</td><td>&nbsp;</td></tr></table>",
            lambda v: f"<font color=red size=2>{v}</font><br/>",
            lambda v: f"<SCRIPT>zqscript{n}x()</SCRIPT>{v}",
            lambda v: f'<a\nhref="https://example.org/"\ntitle="zqattr{n}x">{v}</a>',
            lambda v: f'<input value="<b>zqattr{n}x</b>">{v}',
            lambda v: f"<p title='x>y zqattr{n}x' class=a>{v}</p>",
        ]
        parts = [self.pick(fragments)(visible()) for _ in range(self.num(1, 6))]
        shown = self.pick(
            [
                f"<p>{marker}</p>",
                f"<div>{marker}</div>",
                f"<br>{marker}<br>",
                f"<table><tr><td>cell</td><td>{marker}</td><td>cell</td></tr></table>",
                f"<ul><li>{marker}</li><li>item</li></ul>",
            ]
        )
        parts.insert(self.num(0, len(parts)), shown)  # a word of its own for a reader
        sep = self.pick(["", "\n", "\n\n"])
        body = sep.join(parts)
        if self.chance(40):
            head = '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>T</title>'
            if self.chance(50):
                head += f"<style>body {{ color: red }} /* zqstyle{n}x */</style>"
            body = f"{head}</head>\n<body>\n{body}\n</body></html>"
        return body + ("\n" if self.chance(50) else "")

    # -- parameters -----------------------------------------------------------------------------

    def charset_param(self, label: str) -> tuple[str | None, object]:
        """Rendered charset parameter and the charset a reader must report."""
        form = self.pick(["token", "quoted", "none", "2231", "name-case", "comment", "junk"])
        token_ok = re.fullmatch(r"[A-Za-z0-9!#$%&'*+^_`{|}~.-]+", label) is not None
        if form == "token" and token_ok:
            return f"charset={label}", label
        if form == "none":
            return None, "us-ascii"
        if form == "2231":
            return f"charset*=us-ascii''{label}", label
        if form == "name-case":
            return f'Charset="{label}"', label
        if form == "comment":
            return f'charset="{label}" (declared)', label
        if form == "junk":
            return f'charset="{label}"\\r\\n', label  # case m05
        return f'charset="{label}"', label

    def name_params(self) -> tuple[list[str], list[str], object]:
        """(Content-Type params, Content-Disposition params, expected name)."""
        name = self.pick(
            [
                "report.pdf",
                "Grüße.txt",
                "報告書.pdf",
                "a;b c.txt",
                'a "b" c.txt',
                "café.txt",
                "x" * 150 + ".bin",
                "報告書" * 40 + ".pdf",
            ]
        )
        kind = self.pick(
            ["quoted", "token", "2231", "2231-cont", "cont", "ct-name", "2047", "latin1", "utf7"]
        )
        if kind == "utf7":  # a UTF-7 run that decodes to a lone surrogate, in RFC 2231 and RFC 2047 form
            return (
                ['name="=?utf-7?Q?abc+2D0-def?=.txt"'],
                [
                    self.pick(
                        ["filename*=utf-7''abc%2B2D0-def.txt", 'filename="=?utf-7?B?YWJjKzJEMC1kZWY=?="']
                    )
                ],
                NOCHECK,
            )
        if kind == "token" and re.fullmatch(r"[A-Za-z0-9._-]+", name):
            return [], [f"filename={name}"], name
        if kind == "2231" or (kind == "token" and not name.isascii()):
            return [], [f"filename*=utf-8''{quote(name, safe='')}"], name
        if kind == "2231-cont":
            enc = quote(name, safe="")
            cuts = sorted({0, len(enc), *[self.num(0, len(enc)) for _ in range(self.num(1, 3))]})
            chunks = [enc[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if enc[a:b]]
            # never cut inside a %XX escape
            fixed: list[str] = []
            for c in chunks:
                if fixed and (fixed[-1].endswith("%") or fixed[-1][-2:-1] == "%"):
                    fixed[-1] += c
                else:
                    fixed.append(c)
            params = [
                f"filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{c}" for i, c in enumerate(fixed)
            ]
            return [], params, name
        if kind == "cont" and name.isascii() and '"' not in name:
            k = max(1, len(name) // 2)
            return [], [f'filename*0="{name[:k]}"', f'filename*1="{name[k:]}"'], name
        if kind == "ct-name":
            escaped = name.replace("\\", "\\\\").replace('"', '\\"')
            if name.isascii():
                return [f'name="{escaped}"'], [], name
            return [f"name*=utf-8''{quote(name, safe='')}"], [], name
        if kind == "2047":
            word = "=?utf-8?B?" + base64.b64encode(name.encode()).decode() + "?="
            return [f'name="{word}"'], [f'filename="{word}"'], name  # Outlook & co
        if kind == "latin1":
            try:
                data = name.encode("latin-1")
                return [], [f"filename*=iso-8859-1'fr'{quote(data, safe='')}"], name
            except UnicodeEncodeError:
                pass
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return [], [f'filename="{escaped}"'], name

    def content_type(self, ctype: str, params: list[str]) -> str:
        if self.chance(20):
            ctype = self.pick([ctype.upper(), ctype.title()])
        if self.chance(5):
            ctype += " (comment)"  # RFC 2045 §5.1 allows comments
        if not params:
            return " " + ctype
        sep = self.pick(["; ", ";\r\n\t", ";", ";\r\n "])
        return " " + ctype + sep + sep.join(params)

    # -- transfer encodings ---------------------------------------------------------------------

    def transfer(self, data_crlf: bytes, data_lf: bytes, ascii_compatible: bool, text: bool):
        """(CTE header value or None, encoded body, content exact?, known CTE)."""
        cte = self.pick(
            ["none", "7bit", "8bit", "base64", "quoted-printable", "binary", "broken-base64", "unknown"]
        )
        seven_ok = data_crlf.isascii() and all(len(line) <= 998 for line in data_crlf.split(b"\r\n"))
        if cte in ("none", "7bit") and not seven_ok:
            cte = "8bit"
        if cte in ("8bit", "binary", "none", "7bit", "unknown") and not (ascii_compatible and text):
            cte = "base64"
        spelled = {
            "7bit": self.pick(["7bit", "7BIT"]),
            "8bit": self.pick(["8bit", "8BIT"]),
            "binary": "binary",
            "base64": self.pick(["base64", "Base64", "BASE64", " base64 (encoded)"]).strip(),
            "quoted-printable": self.pick(["quoted-printable", "Quoted-Printable"]),
            "broken-base64": "base64",
            "unknown": self.pick(["x-unknown", "8-bit", "x-uuencode"]),
        }
        if cte == "none":
            return None, data_crlf, True, True
        if cte in ("7bit", "8bit", "binary"):
            return spelled[cte], data_crlf, True, True
        if cte == "unknown":
            return spelled[cte], data_crlf, False, False
        if cte == "quoted-printable":
            if ascii_compatible and text:
                body = binascii.b2a_qp(data_lf, istext=True).replace(b"\n", b"\r\n")
            else:
                body = binascii.b2a_qp(data_crlf, istext=False).replace(b"\n", b"\r\n")
            return spelled[cte], body, True, True
        body = base64.encodebytes(data_crlf).replace(b"\n", b"\r\n")
        if cte == "broken-base64":
            how = self.pick(["junk", "no-padding", "inner-padding", "cut"])
            if how == "junk":
                i = self.num(0, len(body))
                body = body[:i] + self.pick([b"!", b"*#", b"\xff", b" . "]) + body[i:]
            elif how == "no-padding":
                body = body.replace(b"=", b"")
            elif how == "inner-padding":
                i = self.num(0, len(body))
                body = body[:i] + b"=" + body[i:]
            else:
                body = body.rstrip()[: -self.num(1, 3)] if len(body.rstrip()) > 3 else b""
            return spelled[cte], body, False, True
        return spelled[cte], body, True, True

    # -- entities ---------------------------------------------------------------------------------

    def entity(
        self, depth: int, msg_depth: int, ancestors: tuple[bytes, ...], default: str, kind: str | None = None
    ) -> Entity:
        self.parts += 1
        small = self.parts > 14 or depth >= 5
        if kind is None:
            weights = {
                "text": 30,
                "html": 20,
                "multipart": 45 if depth == 0 else 20,
                "image": 8,
                "application": 6,
                "rfc822": 5,
                "signature": 2,
                "status": 2,
                "headers": 2,
            }
            if small:
                del weights["multipart"]
            if small or msg_depth >= 2:
                del weights["rfc822"]
            kind = self.weighted(weights)
        if kind == "multipart":
            ent = self.multipart(depth, msg_depth, ancestors)
        elif kind in ("text", "html", "headers"):
            ent = self.text_leaf(kind, default)
        elif kind == "rfc822":
            ent = self.rfc822_leaf(msg_depth, default)
        else:
            ent = self.binary_leaf(kind)
        if len(ent.fields) >= 2 and self.chance(5):
            # case m01: a line that is no field inside the header section, with a field after it
            i = self.num(1, len(ent.fields) - 1)
            ent.fields.insert(i, ("", self.pick(ODD_LINES)))
        return ent

    def disposition(self, part: Part, ct_params: list[str], pct: int) -> list[str]:
        """Content-Disposition values (0 or 1) for a leaf; name parameters may go to ct_params."""
        disp = self.pick(["inline", "attachment"]) if self.chance(pct) else None
        name = None
        cd_params: list[str] = []
        if self.chance(pct):
            ct_p, cd_params, name = self.name_params()
            ct_params.extend(ct_p)
            if cd_params and disp is None:
                disp = "attachment"
        part.disposition = disp
        part.name = name
        if disp is None:
            return []
        value = disp.upper() if self.chance(10) else disp
        if cd_params:
            sep = self.pick(["; ", ";\r\n\t"])
            value += sep + sep.join(cd_params)
        return [value]

    def leaf_fields(
        self, ct: str | None, cte: str | None, part: Part, disp_values: list[str], cid: str | None
    ) -> list[tuple[str, bytes]]:
        fields: list[tuple[str, bytes]] = []
        if ct is not None:
            fields.append((self.pick(["Content-Type", "Content-type", "content-type"]), ct.encode("utf-8")))
        if cte is not None:
            fields.append(("Content-Transfer-Encoding", (" " + cte).encode()))
        for value in disp_values:
            fields.append(("Content-Disposition", (" " + value).encode("utf-8")))
        if cid is not None:
            fields.append(("Content-ID", f" <{cid}>".encode()))
            part.cid = cid
        else:
            part.cid = None
        if self.chance(10):
            value, _ = self.header_text()
            fields.append(("Content-Description", value.encode("utf-8")))
        if self.chance(20):
            fields = self.draw(st.permutations(fields))
        return fields

    def text_leaf(self, kind: str, default: str) -> Entity:
        n = self.next_id()
        marker = f"zqvis{n}x"
        subtype = {"text": "plain", "html": "html", "headers": "rfc822-headers"}[kind]
        mode = (
            "normal" if kind == "headers" else self.weighted({"normal": 86, "unknown": 8, "utf7-broken": 6})
        )
        unknown = mode == "unknown"
        if kind == "headers":
            cs = CHARSETS[1]
            text = f"From: someone@example.org\nSubject: bounced {marker}\nMessage-ID: <b{n}@example.org>\n"
        elif unknown:
            cs = None
            words = " ".join(self.pick(UNKNOWN_WORDS) for _ in range(self.num(1, 4)))
            text = f"{words} {marker}\n" if kind == "text" else f"<p>{words} {marker}</p>\n"
        elif mode == "utf7-broken":  # cases m02/m03: a UTF-7 run that decodes to a lone surrogate
            cs = CHARSETS[[c.label for c in CHARSETS].index("utf-7")]
            text = f"Key fragment: abc+2D0-def {marker}\n"
            if kind == "html":
                text = f"<p>{text}</p>"
        else:
            cs = self.pick(CHARSETS)
            text = (
                self.plain_text(cs.scripts, marker) if kind == "text" else self.html_text(cs.scripts, marker)
            )
        crlf = text.replace("\n", "\r\n")
        part = Part(type=f"text/{subtype}")
        exact_text = True
        expected_text = text
        if mode == "utf7-broken":
            label = cs.label
            data_crlf, data_lf = crlf.encode("ascii"), text.encode("ascii")
            problem = True
            ascii_compat = True
            expected_text = text.replace("+2D0-", "\ufffd")  # RFC 8621 §4.1.4: U+FFFD, and go on
        elif cs is None:
            label = self.pick(UNKNOWN_CHARSETS)
            data_crlf, data_lf = crlf.encode("ascii"), text.encode("ascii")
            problem = True
            ascii_compat = True
        else:
            label = cs.label
            problem = False
            ascii_compat = cs.ascii_compatible
            data_crlf = encodes(crlf, cs)
            if data_crlf is None:  # cannot be written in cs: mislabelled UTF-8
                exact_text = False
                data_crlf, data_lf = crlf.encode("utf-8"), text.encode("utf-8")
                ascii_compat = True
            else:
                data_lf = text.encode(cs.encoder)
        params: list[str] = []
        charset_param, charset = self.charset_param(label)
        if charset_param is not None:
            params.append(charset_param)
        elif not (crlf.isascii() and data_crlf == crlf.encode("ascii")):
            exact_text = False  # no charset: us-ascii
        if (cs is None or mode == "utf7-broken") and charset_param is None:
            problem = False  # no charset at all: plain us-ascii text
            exact_text = False
        bom = data_crlf.startswith((b"\xff\xfe", b"\xfe\xff"))
        if kind == "html" and not ascii_compat and charset_param is None and not bom:
            self.html_unchecked = True
        if kind == "text" and self.chance(10):
            params.append(self.pick(["format=flowed", "format=flowed; delsp=yes", 'markup="none"']))
        part.charset = charset
        cte, body, content_exact, known = self.transfer(data_crlf, data_lf, ascii_compat, True)
        if not (content_exact and known):
            exact_text = False
        disp_values = self.disposition(part, params, 15)
        omit_ct = kind == "text" and default == "text/plain" and charset_param is None and self.chance(20)
        if omit_ct and params:
            omit_ct = False
        ct = None if omit_ct else self.content_type(f"text/{subtype}", params)
        if ct is not None and kind == "text" and self.chance(3):
            ct = " " + self.pick(["text", "text/", "plain"]) + "; charset=utf-8"
            part.type = None
            part.charset = part.name = NOCHECK
            exact_text = False
        if exact_text:
            part.text = expected_text
            part.problem = problem
        part.content = data_crlf if content_exact else None
        part.content_crlf = not (cte and "base64" in cte.lower())
        fields = self.leaf_fields(ct, cte, part, disp_values, None)
        visible = [marker] if exact_text else []
        return Entity(fields, body, part, True, visible)

    def binary_leaf(self, kind: str) -> Entity:
        if kind == "image":
            ctype, magic = self.pick(
                [
                    ("image/png", b"\x89PNG\r\n\x1a\n"),
                    ("image/jpeg", b"\xff\xd8\xff\xe0"),
                    ("image/gif", b"GIF89a"),
                ]
            )
            data = magic + self.draw(st.binary(max_size=96))
        elif kind == "application":
            ctype = self.pick(
                [
                    "application/octet-stream",
                    "application/pdf",
                    "application/zip",
                    "application/vnd.example+json",
                    "application/ms-tnef",
                ]
            )
            data = self.draw(st.binary(max_size=96))
        elif kind == "signature":
            ctype = "application/pgp-signature"
            data = (
                b"-----BEGIN PGP SIGNATURE-----\r\n\r\niD8DBQFexampleAAAA\r\n=abcd\r\n"
                b"-----END PGP SIGNATURE-----\r\n"
            )
        else:
            ctype = "message/delivery-status"
            data = (
                b"Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; x@example.org\r\n"
                b"Action: failed\r\nStatus: 5.0.0\r\n"
            )
        part = Part(type=ctype)
        ascii_text = data.isascii()
        cte, body, content_exact, known = self.transfer(
            data, data.replace(b"\r\n", b"\n"), ascii_text, ascii_text
        )
        params: list[str] = []
        disp_values = self.disposition(part, params, 50)
        cid = f"img{self.next_id()}@example.org" if kind == "image" and self.chance(40) else None
        ct = self.content_type(ctype, params)
        part.content = data if content_exact and known else None
        part.content_crlf = not (cte and "base64" in cte.lower())
        fields = self.leaf_fields(ct, cte, part, disp_values, cid)
        return Entity(fields, body, part, True)

    def rfc822_leaf(self, msg_depth: int, default: str) -> Entity:
        inner = self.message(msg_depth + 1)
        part = Part(type="message/rfc822")
        cte = None if self.chance(60) else ("7bit" if inner.raw.isascii() else "8bit")
        params: list[str] = []
        disp_values = self.disposition(part, params, 20)
        omit_ct = default == "message/rfc822" and not params and self.chance(50)
        ct = None if omit_ct else self.content_type("message/rfc822", params)
        part.content = inner.raw
        part.content_crlf = True
        fields = self.leaf_fields(ct, cte, part, disp_values, None)
        visible = inner.visible if inner.exact and msg_depth < 2 else []
        return Entity(fields, inner.raw, part, True, list(visible))

    def multipart(self, depth: int, msg_depth: int, ancestors: tuple[bytes, ...]) -> Entity:
        sub = self.pick(
            ["mixed", "alternative", "related", "signed", "digest", "report", "parallel", "x-custom"]
        )
        n = self.next_id()
        if ancestors and self.chance(8):
            boundary = ancestors[-1]  # case m06: an inner part reuses its parent's boundary
            reused = True
        else:
            prefix = self.pick(
                ["", "=_", "----=_NextPart_000_", "b1_", "Apple-Mail=_", "part boundary ", "x:y/"]
            )
            boundary = f"{prefix}q{n}z{self.num(0, 9999)}".encode()
            reused = False
        inner = (*ancestors, boundary)
        children: list[Entity] = []
        if sub == "alternative" and self.chance(70):
            children = [
                self.entity(depth + 1, msg_depth, inner, "text/plain", "text"),
                self.entity(
                    depth + 1, msg_depth, inner, "text/plain", self.pick(["html", "html", "multipart"])
                ),
            ]
        elif sub == "related":
            children = [
                self.entity(depth + 1, msg_depth, inner, "text/plain", self.pick(["html", "multipart"]))
            ]
            children += [
                self.entity(depth + 1, msg_depth, inner, "text/plain", "image") for _ in range(self.num(1, 2))
            ]
        elif sub == "signed":
            children = [
                self.entity(depth + 1, msg_depth, inner, "text/plain"),
                self.entity(depth + 1, msg_depth, inner, "text/plain", "signature"),
            ]
        elif sub == "digest":
            kind = "rfc822" if msg_depth < 2 and self.parts < 14 else "text"
            children = [
                self.entity(depth + 1, msg_depth, inner, "message/rfc822", kind)
                for _ in range(self.num(1, 3))
            ]
        elif sub == "report":
            children = [
                self.entity(depth + 1, msg_depth, inner, "text/plain", "text"),
                self.entity(depth + 1, msg_depth, inner, "text/plain", "status"),
                self.entity(depth + 1, msg_depth, inner, "text/plain", "headers"),
            ]
        else:
            children = [self.entity(depth + 1, msg_depth, inner, "text/plain") for _ in range(self.num(1, 4))]
        closed = not self.chance(10)
        has_param = not self.chance(4)
        if not has_param:
            self.html_unchecked = True
        exact = has_param and all(c.exact for c in children) and (closed or not reused)
        params: list[str] = []
        b = boundary.decode()
        if has_param:
            token = re.fullmatch(r"[A-Za-z0-9'+_.-]+", b) is not None
            form = self.pick(["quoted", "token", "2231"])
            if form == "token" and token:
                params.append(f"boundary={b}")
            elif form == "2231" and len(b) > 2:
                k = len(b) // 2
                params.append(f'boundary*0="{b[:k]}"; boundary*1="{b[k:]}"')
            else:
                params.append(f'boundary="{b}"')
        if sub == "related" and self.chance(50):
            params.append('type="text/html"')
        if sub == "signed":
            params.append('protocol="application/pgp-signature"; micalg=pgp-sha256')
        if sub == "report":
            params.append("report-type=delivery-status")
        if len(params) > 1 and self.chance(30):
            params.reverse()
        ct = self.content_type(f"multipart/{sub}", params)
        body = bytearray()
        if self.chance(30):
            body += b"This is a multi-part message in MIME format.\r\n"
            if self.chance(30):
                body += b"\r\n"
        for child in children:
            body += (
                b"--"
                + boundary
                + self.pick([b"\r\n", b"  \r\n"])
                + render(child.fields, child.body)
                + b"\r\n"
            )
        if closed:
            body += b"--" + boundary + b"--"
            if self.chance(30):
                body += b"\r\nepilogue text\r\n"
        else:
            del body[-2:]  # the last part runs to the end
        part = Part(type=f"multipart/{sub}", children=[c.part for c in children])
        fields = [("Content-Type", ct.encode("utf-8"))]
        visible = [m for c in children for m in c.visible] if exact else []
        return Entity(fields, bytes(body), part, exact, visible)

    # -- messages ---------------------------------------------------------------------------------

    def message(self, msg_depth: int = 0) -> Msg:
        fields: list[tuple[str, bytes]] = []
        expect: dict = {}
        if not self.chance(5):
            value, expect["subject"] = self.header_text()
            fields.append((self.pick(["Subject", "SUBJECT", "subject"]), value.encode("utf-8")))
        else:
            expect["subject"] = None
        if not self.chance(5):
            value, expect["from"] = self.address_list(1, 2)
            fields.append(("From", value.encode("utf-8")))
        else:
            expect["from"] = None
        if not self.chance(10):
            value, expect["to"] = self.address_list(1, 3)
            fields.append(("To", value.encode("utf-8")))
        else:
            expect["to"] = None
        if not self.chance(5):
            value, expect["sentAt"] = self.date()
            fields.append(("Date", value.encode()))
        else:
            expect["sentAt"] = None
        if not self.chance(5):
            value, expect["messageId"] = self.message_id_field()
            fields.append((self.pick(["Message-ID", "Message-Id"]), value.encode()))
        else:
            expect["messageId"] = None
        if self.chance(40):
            refs = [self.msg_id() for _ in range(self.num(1, 4))]
            fields.append(
                (
                    "References",
                    (" " + self.pick([" ", "\r\n ", "\r\n\t"]).join(f"<{r}>" for r in refs)).encode(),
                )
            )
            fields.append(("In-Reply-To", f" <{refs[-1]}>".encode()))
            expect["references"] = refs
        else:
            expect["references"] = None
        if self.chance(30):
            fields.append(
                (
                    "Received",
                    b" from mx.example.org (mx.example.org [192.0.2.1])\r\n\tby example.net;"
                    b" Mon, 1 Jan 2024 00:00:00 +0000",
                )
            )
        if self.chance(10):
            fields.append(("X-Long", b" " + b"x" * self.num(999, 5000)))
        if self.chance(10):
            fields.append(("X-Latin", b" caf\xe9 8-bit header octets"))
        if self.chance(10):
            fields.append(("X-Mailer", b" hypothesis =?utf-8?Q?caf=C3=A9?="))
        if not self.chance(10):
            fields.append(("MIME-Version", b" 1.0"))
        ent = self.entity(0, msg_depth, (), "text/plain")
        odd = [f for f in ent.fields if not f[0]]
        fields = fields + [f for f in ent.fields if f[0]]
        if self.chance(30):
            fields = self.draw(st.permutations(fields))
        if self.chance(8):
            odd.append(("", self.pick(ODD_LINES)))
        for line in odd:  # never first or last: a field follows it (else it may be a body's first line)
            fields.insert(self.num(1, len(fields) - 1), line)
        raw = render(fields, ent.body)
        return Msg(
            raw=raw,
            root=ent.part,
            expect=expect,
            exact=ent.exact,
            visible=ent.visible,
            html_checked=True,
            damage=[],
        )

    def damage(self, msg: Msg) -> None:
        raw = msg.raw
        if self.chance(20):
            mode = self.pick(["lf", "mixed"])
            if mode == "lf":
                raw = raw.replace(b"\r\n", b"\n")
            else:
                lines = raw.split(b"\r\n")
                keep = self.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
                out = bytearray()
                for i, line in enumerate(lines):
                    out += line
                    if i < len(lines) - 1:
                        out += b"\r\n" if keep[i] else b"\n"
                raw = bytes(out)
            msg.damage.append(f"line-ends:{mode}")
            msg.line_ends_changed = True
        if self.chance(40):
            for _ in range(self.num(1, 3)):
                op = self.pick(
                    ["truncate", "drop-line", "dup-line", "nul", "8bit-header", "cr-only", "long-line"]
                )
                msg.damage.append(op)
                lines = raw.split(b"\n")
                if op == "truncate" and raw:
                    raw = raw[: self.num(0, len(raw) - 1)]
                elif op == "drop-line" and len(lines) > 1:
                    del lines[self.num(0, len(lines) - 1)]
                    raw = b"\n".join(lines)
                elif op == "dup-line":
                    i = self.num(0, len(lines) - 1)
                    lines.insert(i, lines[i])
                    raw = b"\n".join(lines)
                elif op == "nul":
                    i = self.num(0, len(raw))
                    raw = raw[:i] + b"\x00" + raw[i:]
                elif op == "8bit-header":
                    end = raw.find(b"\n\n") if b"\r\n\r\n" not in raw else raw.find(b"\r\n\r\n")
                    i = self.num(0, max(0, end))
                    raw = raw[:i] + self.pick([b"\xe9", b"\xff\xfe", b"\xc3", b"\x80"]) + raw[i:]
                elif op == "cr-only":
                    i = self.num(0, len(lines) - 1)
                    raw = b"\n".join(lines[:i]) + b"\r" + b"\n".join(lines[i:]).replace(b"\r\n", b"\r", 3)
                elif op == "long-line":
                    i = self.num(0, len(lines) - 1)
                    lines[i] = lines[i] + b"y" * self.num(1000, 20000)
                    raw = b"\n".join(lines)
            hard = [d for d in msg.damage if not d.startswith("line-ends")]
            if hard:
                msg.exact = False
                msg.expect = {}
                msg.visible = []
                msg.html_checked = all(d == "truncate" for d in hard)
        msg.raw = raw


def render(fields: list[tuple[str, bytes]], body: bytes) -> bytes:
    out = bytearray()
    for name, value in fields:
        if name:
            out += name.encode("ascii") + b":" + value + b"\r\n"
        else:
            out += value + b"\r\n"  # a line that is no field
    return bytes(out) + b"\r\n" + body


@st.composite
def messages(draw) -> Msg:
    gen = Gen(draw)
    msg = gen.message()
    gen.damage(msg)
    if gen.html_unchecked:
        msg.html_checked = False
    msg.max_bytes = gen.num(1, 400)
    return msg


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def strings(obj, path: str = ""):
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from strings(k, path + "/<key>")
            yield from strings(v, f"{path}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from strings(v, f"{path}/{i}")


def check_unicode(obj, what: str) -> None:
    for path, s in strings(obj):
        check(not SURROGATE_RE.search(s), "no-lone-surrogates", lambda p=path, s=s: f"{what}{p}: {s!r}")
    try:
        orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError) as exc:
        fail("orjson-serialisable", f"{what}: {exc}")


def _strip_comments(value: str) -> str:
    out, depth, quoted, i = [], 0, False, 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            if depth == 0:
                out.append(value[i : i + 2])
            i += 2
            continue
        if depth == 0 and c == '"':
            quoted = not quoted
        if not quoted and c == "(":
            depth += 1
        elif depth and c == ")":
            depth -= 1
        elif depth == 0:
            out.append(c)
        i += 1
    return "".join(out)


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CT_RE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*(?:;.*)?", re.S)


def declared_type(headers: list[dict], default: str | None) -> str | None:
    """The type a part's own header declares: the parsable Content-Type, or the default when
    there is none; None when it has an unparsable one or several that disagree."""
    values = [h["value"] for h in headers if h["name"].lower() == "content-type"]
    if not values:
        return default
    types = set()
    for v in values:
        m = _CT_RE.fullmatch(_strip_comments(re.sub(r"\r?\n", "", v)))
        if m is None:
            return None
        types.add(f"{m.group(1)}/{m.group(2)}".lower())
    return types.pop() if len(types) == 1 else None


def walk(node: dict, parent: dict | None = None):
    yield node, parent
    for child in node.get("subParts") or ():
        yield from walk(child, node)


def check_structure(bs: dict, built: bool) -> list[dict]:
    """Shape rules of every bodyStructure node; returns the leaves.  built: the tree is the one the
    generator built (else a part without header in a digest may be a reader's stand-in for an
    unsplittable body, not a message/rfc822)."""
    leaves = []
    for node, parent in walk(bs):
        ptype = node.get("type")
        check(isinstance(ptype, str) and "/" in ptype, "type-is-media-type", lambda n=node: n.get("type"))
        if not isinstance(ptype, str):
            continue
        if ptype.startswith("multipart/"):
            check(isinstance(node.get("subParts"), list), "multipart-has-subParts", ptype)
            check(
                node.get("partId") is None and node.get("blobId") is None,
                "multipart-no-partId",
                node.get("partId"),
            )
        else:
            check(
                isinstance(node.get("partId"), str) and node.get("subParts") is None,
                "leaf-has-partId",
                lambda n=node: (n.get("type"), n.get("partId"), n.get("subParts") is not None),
            )
            leaves.append(node)
        default: str | None = "text/plain"
        if parent is not None and parent.get("type") == "multipart/digest":
            default = "message/rfc822" if built else None
        own = declared_type(node.get("headers") or [], default)
        if own is not None:
            check(
                ptype == own,
                "type-is-own-content-type",
                lambda n=node, o=own: (
                    f"bodyStructure says {n.get('type')!r}, the part declares {o!r}; "
                    f"headers={n.get('headers')!r}"
                ),
            )
    return leaves


def compare_tree(got: dict, want: Part, path: str = "root") -> None:
    if want.type is not None:
        check(
            got.get("type") == want.type,
            "tree-type-as-built",
            lambda: f"{path}: got {got.get('type')!r}, built {want.type!r}",
        )
    if want.children is None:
        check(
            got.get("subParts") is None, "tree-shape-as-built", lambda: f"{path}: built a leaf, got subParts"
        )
        return
    subs = got.get("subParts") or []
    check(
        len(subs) == len(want.children),
        "tree-shape-as-built",
        lambda: (
            f"{path} ({want.type}): built {len(want.children)} parts, got {[s.get('type') for s in subs]!r}"
        ),
    )
    for i, (g, w) in enumerate(zip(subs, want.children, strict=False)):
        compare_tree(g, w, f"{path}.{i + 1}")


def pairs(got: dict, want: Part):
    yield got, want
    for g, w in zip(got.get("subParts") or [], want.children or [], strict=False):
        yield from pairs(g, w)


def check_library(msg: Msg) -> None:
    raw = msg.raw
    collect = _Collect()
    logger = logging.getLogger("app.mail")
    logger.addHandler(collect)
    try:
        summary = parse_summary(raw)
        body = body_properties(
            raw, want_structure=True, want_text=True, want_html=True, want_attachments=True,
            body_props=ALL_BODY_PROPS, fetch_text=True, fetch_html=True, fetch_all=True, max_bytes=0,
            blob_prefix="B.",
        )  # fmt: skip
        cut = body_properties(
            raw, want_structure=False, want_text=True, want_html=True, want_attachments=False,
            body_props=None, fetch_text=True, fetch_html=True, fetch_all=False, max_bytes=msg.max_bytes,
            blob_prefix="B.",
        )  # fmt: skip
        headers = parse_headers(raw)
        forms = {}
        for name in {h["name"] for h in headers} | {"Subject", "From", "X-Absent"}:
            for form in FORMS:
                for all_ in (False, True):
                    forms[f"{name}:{form}:{all_}"] = header_value(headers, name, form, all_)
        text = message_text(raw)
        btext = mime.body_text(raw) if hasattr(mime, "body_text") else ""
        bs = body.get("bodyStructure")
        leaf_ids = [n.get("partId") for n, _ in walk(bs) if n.get("partId")] if isinstance(bs, dict) else []
        extracted = {pid: extract_part(raw, pid) for pid in leaf_ids}
    finally:
        logger.removeHandler(collect)
    check(
        not collect.records,
        "no-logged-error",
        lambda: "; ".join(
            f"{r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else r.getMessage() for r in collect.records
        ),
    )

    check_unicode(summary, "parse_summary")
    check_unicode(body, "body_properties")
    check_unicode(cut, "body_properties(max_bytes)")
    check_unicode(headers, "parse_headers")
    check_unicode(forms, "header_value")
    check_unicode(text, "message_text")
    check_unicode(btext, "body_text")

    check(summary.get("size") == len(raw), "size", summary.get("size"))
    preview = summary.get("preview")
    check(
        isinstance(preview, str) and len(preview) <= 256,
        "preview-at-most-256",
        lambda: (len(preview), preview),
    )
    if msg.html_checked:  # line damage can take an HTML part's Content-Type away: its markup is then text
        check(not TAG_RE.search(preview), "preview-plain-text", preview)

    check(isinstance(bs, dict), "bodyStructure-present", bs)
    leaves = check_structure(bs, msg.exact)
    leaf_by_id = {n["partId"]: n for n in leaves}

    for key in ("textBody", "htmlBody", "attachments"):
        for p in body.get(key) or []:
            check(p.get("partId") in leaf_by_id, "lists-hold-leaves", lambda k=key, p=p: (k, p.get("partId")))
    text_ids = {p.get("partId") for p in body.get("textBody") or []}
    html_ids = {p.get("partId") for p in body.get("htmlBody") or []}
    for node, _ in walk(bs):
        if node.get("type") != "multipart/alternative":
            continue
        kids = node.get("subParts") or []
        plain = {k.get("partId") for k in kids if k.get("type") == "text/plain"}
        htm = {k.get("partId") for k in kids if k.get("type") == "text/html"}
        for name, ids in (("textBody", text_ids), ("htmlBody", html_ids)):
            check(
                not (plain & ids and htm & ids),
                "alternative-not-both",
                lambda n=name, i=ids, a=plain, b=htm: (
                    f"{n} holds both alternatives: {sorted(a & i)} and {sorted(b & i)}"
                ),
            )

    values = body.get("bodyValues") or {}
    for pid, leaf in leaf_by_id.items():
        if leaf["type"].startswith("text/"):
            check(pid in values, "bodyValues-for-every-text-leaf", pid)
    for pid, value in (cut.get("bodyValues") or {}).items():
        full = values.get(pid, {}).get("value")
        v = value.get("value")
        check(
            len(v.encode("utf-8")) <= msg.max_bytes,
            "truncated-within-max-bytes",
            (pid, msg.max_bytes, len(v)),
        )
        if isinstance(full, str):
            check(full.startswith(v), "truncated-is-prefix", (pid, v[-20:]))
            check(
                value.get("isTruncated") == (v != full), "isTruncated-flag", (pid, value.get("isTruncated"))
            )

    for pid, got in extracted.items():
        check(
            isinstance(got, tuple) and isinstance(got[0], bytes),
            "extract_part-returns-bytes",
            lambda p=pid, g=got: (p, type(g).__name__ if not isinstance(g, tuple) else type(g[0]).__name__),
        )
        if isinstance(got, tuple):
            check(got[1] == leaf_by_id[pid]["type"], "extract_part-type", lambda p=pid, g=got: (p, g[1]))

    for key in ("subject", "from", "to", "cc", "bcc", "body"):
        check(isinstance(text.get(key), str), "message_text-strings", key)
    if msg.html_checked:
        for marker in HIDDEN:
            check(marker not in preview, "html-hidden-not-in-preview", lambda m=marker: f"{m} in {preview!r}")
            check(
                marker not in text["body"],
                "html-hidden-not-in-text",
                lambda m=marker: f"{m}: ...{text['body'][max(0, text['body'].find(m) - 80) :][:160]!r}",
            )
            check(marker not in btext, "html-hidden-not-in-body_text", marker)
    for marker in msg.visible:
        check(
            marker in text["body"],
            "visible-text-in-message_text",
            lambda m=marker: f"{m} not in {text['body']!r}",
        )
        check(
            re.search(rf"(?:^|\s){marker}(?:\s|$)", text["body"]) is not None,
            "visible-text-is-a-word",  # block elements and table cells separate words
            lambda m=marker: f"{m} glued to its neighbours: {text['body']!r}",
        )

    # -- what must come back as built --------------------------------------------------------------
    exp = msg.expect
    if "subject" in exp and exp["subject"] is not NOCHECK:
        check(
            summary.get("subject") == exp["subject"],
            "subject-as-built",
            lambda: f"got {summary.get('subject')!r}, built {exp['subject']!r}",
        )
    for key in ("from", "to"):
        if key in exp and exp[key] is not NOCHECK:
            check(
                summary.get(key) == exp[key],
                f"{key}-as-built",
                lambda k=key: f"got {summary.get(k)!r}, built {exp[k]!r}",
            )
    if "sentAt" in exp:
        got = summary.get("sentAt")
        want = exp["sentAt"]
        if want is None:
            check(got is None, "sentAt-as-built", got)
        else:
            ok = isinstance(got, str)
            if ok:
                try:
                    g = datetime.fromisoformat(got.replace("Z", "+00:00"))
                    ok = g == want and g.utcoffset() == want.utcoffset()
                except ValueError:
                    ok = False
            check(ok, "sentAt-as-built", lambda: f"got {got!r}, built {want.isoformat()}")
    for key in ("messageId", "references"):
        if key in exp:
            check(
                summary.get(key) == exp[key],
                f"{key}-as-built",
                lambda k=key: f"got {summary.get(k)!r}, built {exp[k]!r}",
            )

    if not msg.exact:
        return
    compare_tree(bs, msg.root)
    for got, want in pairs(bs, msg.root):
        if want.children is not None or got.get("subParts") is not None:
            continue
        pid = got.get("partId")
        if want.text is not None:
            v = values.get(pid) or {}
            check(
                v.get("value") == want.text,
                "text-as-built",
                lambda v=v, w=want, g=got: (
                    f"part {g.get('partId')} ({g.get('type')}, charset {g.get('charset')!r}): "
                    f"got {v.get('value')!r}, built {w.text!r}"
                ),
            )
            check(
                v.get("isEncodingProblem") == want.problem,
                "isEncodingProblem",
                lambda v=v, w=want, g=got: (
                    f"part {g.get('partId')} charset {g.get('charset')!r}: "
                    f"got {v.get('isEncodingProblem')}, expected {w.problem}"
                ),
            )
            check(v.get("isTruncated") is False, "not-truncated", pid)
        if want.charset is not NOCHECK:
            check(
                got.get("charset") == want.charset,
                "charset-as-built",
                lambda g=got, w=want: (g.get("charset"), w.charset),
            )
        if want.name is not NOCHECK:
            check(
                got.get("name") == want.name, "name-as-built", lambda g=got, w=want: (g.get("name"), w.name)
            )
        if want.disposition is not NOCHECK:
            check(
                got.get("disposition") == want.disposition,
                "disposition-as-built",
                lambda g=got, w=want: (g.get("disposition"), w.disposition),
            )
        if want.cid is not NOCHECK:
            check(got.get("cid") == want.cid, "cid-as-built", lambda g=got, w=want: (g.get("cid"), w.cid))
        if want.content is not None and not (want.content_crlf and msg.line_ends_changed):
            data = extracted.get(pid)
            check(
                data is not None and data[0] == want.content,
                "content-as-built",
                lambda d=data, w=want, p=pid: f"part {p}: got {d[0] if d else None!r}, built {w.content!r}",
            )


@settings(max_examples=EXAMPLES, **COMMON)
@given(msg=messages())
def test_mime_invariants_on_generated_messages(msg: Msg) -> None:
    check_library(msg)


# --------------------------------------------------------------------------------------
# Through a real server: import + Email/get with every property is valid I-JSON
# --------------------------------------------------------------------------------------


def _no_duplicate_keys(pairs_: list) -> dict:
    keys = [k for k, _ in pairs_]
    assert len(keys) == len(set(keys)), f"duplicate keys in a JSON object: {keys}"
    return dict(pairs_)


def strict_json(content: bytes) -> object:
    """I-JSON (RFC 7493): UTF-8, no duplicate names, no lone surrogates."""
    text = content.decode("utf-8")  # raises on invalid UTF-8
    obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    for path, s in strings(obj):
        assert not SURROGATE_RE.search(s), f"lone surrogate at {path}: {s!r}"
    return obj


GET_PROPERTIES = [
    *PROPERTIES,
    "header:Subject:asText",
    "header:From:asAddresses",
    "header:To:asGroupedAddresses:all",
    "header:Date:asDate",
    "header:Message-ID:asMessageIds",
    "header:References:asMessageIds:all",
    "header:X-Latin:asText",
    "header:X-Mailer:asText",
]


@settings(max_examples=SERVER_EXAMPLES, **COMMON)
@given(msg=messages())
def test_server_import_and_get_of_generated_messages(alice, msg: Msg) -> None:
    raw = msg.raw
    blob = alice.upload(raw)
    spec = {"blobId": blob["blobId"], "mailboxIds": {alice.mailbox("inbox"): True}}
    r = alice.http.post(
        alice.api_url,
        json={
            "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
            "methodCalls": [["Email/import", {"accountId": alice.account_id, "emails": {"m": spec}}, "0"]],
        },
    )
    assert r.status_code == 200, r.text
    name, result, _ = strict_json(r.content)["methodResponses"][0]
    assert name == "Email/import", result
    if result.get("created"):
        email_id = result["created"]["m"]["id"]
    else:
        err = (result.get("notCreated") or {}).get("m") or {}
        if err.get("type") == "alreadyExists":
            email_id = err["existingId"]
        else:
            # a damaged blob may have lost every header field: it may be refused as not mail (issue 6
            # class 12); a message as built may not
            hard = [d for d in msg.damage if not d.startswith("line-ends")]
            assert hard and err.get("type") == "invalidEmail", f"import refused: {err}"
            return
    r = alice.http.post(alice.api_url, json={
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Email/get", {
            "accountId": alice.account_id, "ids": [email_id], "properties": GET_PROPERTIES,
            "bodyProperties": list(ALL_BODY_PROPS), "fetchAllBodyValues": True,
        }, "0"]],
    })  # fmt: skip
    assert r.status_code == 200, r.text
    name, result, _ = strict_json(r.content)["methodResponses"][0]
    assert name == "Email/get", result
    assert [e["id"] for e in result["list"]] == [email_id] and not result["notFound"], result
    email = result["list"][0]
    assert email["size"] == len(raw)
    url = alice.session["downloadUrl"]
    for key, value in {
        "accountId": alice.account_id,
        "blobId": email["blobId"],
        "name": "m.eml",
        "type": "message/rfc822",
    }.items():
        url = url.replace("{" + key + "}", quote(value, safe=""))
    d = alice.http.get(url)
    assert d.status_code == 200 and d.content == raw, "the raw message does not download byte-identical"
