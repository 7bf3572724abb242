"""vCard (RFC 6350 v4, RFC 2426 v3, and v2.1's quoted-printable) to JSContact Cards and back, after
RFC 9555 for what JSContact models.

The syntax layer is vobject's: `getLogicalLines` unfolds lines (and joins quoted-printable soft
line breaks), `parseLine` splits a line into name, parameters and value.  Values are decoded
here, not by vobject's behaviours: those keep only the first of several comma-separated text
values (a NOTE "Hello, world" would become "Hello").

Mapping (vCard -> Card; `card_to_vcard` writes the inverse as vCard 4.0):
FN name.full; N name.components (surname, given, given2, title, credential; RFC 9554's
surname2 and generation); NICKNAME nicknames; EMAIL emails; TEL phones (TYPE cell/voice/fax/pager/
text/video/textphone -> features); ADR addresses (pobox, ext, street, locality, region, code,
country -> postOfficeBox, apartment, name, locality, region, postcode, country; LABEL -> full);
ORG organizations (units); TITLE/ROLE titles; NOTE notes; BDAY/ANNIVERSARY/DEATHDATE anniversaries
(PartialDate, or Timestamp for a UTC date-time); URL links; IMPP onlineServices (X-SERVICE-TYPE;
v3's X-JABBER, X-SKYPE ... too); UID uid; REV updated; KIND kind (and Apple's
X-ADDRESSBOOKSERVER-KIND); MEMBER members (and X-ADDRESSBOOKSERVER-MEMBER); CATEGORIES keywords;
PRODID prodId; LANG preferredLanguages; PHOTO/LOGO/SOUND media (inline v3 data as a data: URI).
TYPE work/home -> contexts work/private; PREF (or v3's TYPE=pref) -> pref.  Other properties are
not modelled by JSContact's core and are dropped.  A card without UID gets a uid derived from its
text (the same file imports to the same uid twice).
"""

from __future__ import annotations

import base64
import hashlib
import io
import quopri
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from vobject.base import ParseError, getLogicalLines, parseLine

from app.mail.charsets import decode as decode_charset

__all__ = ["ParsedCard", "card_to_vcard", "parse_vcards"]

_FEATURES = ("mobile", "voice", "fax", "pager", "text", "video", "textphone", "main-number")
_IM_PROPS = {"X-JABBER": "Jabber", "X-SKYPE": "Skype", "X-AIM": "AIM", "X-ICQ": "ICQ", "X-MSN": "MSN",
             "X-YAHOO": "Yahoo", "X-GOOGLE-TALK": "GoogleTalk", "X-TWITTER": "Twitter"}
_ANNIVERSARIES = {"BDAY": "birth", "ANNIVERSARY": "wedding", "DEATHDATE": "death"}
# N's components in order (RFC 6350 §6.2.2, RFC 9554 §2.6 adds surname2 and generation)
_N_KINDS = ("surname", "given", "given2", "title", "credential", "surname2", "generation")
_ADR_KINDS = ("postOfficeBox", "apartment", "name", "locality", "region", "postcode", "country")


@dataclass
class ParsedCard:
    """One vCard of a file: the Card, or why it could not be read (line: where it begins)."""

    line: int
    card: dict | None = None
    error: str | None = None
    name: str = ""  # FN or UID, to name a failure


@dataclass
class _Line:
    name: str
    params: dict[str, list[str]]
    types: set[str]
    value: str
    number: int


# ------------------------------------------------------------------------------ value syntax
def _split(value: str, sep: str) -> list[str]:
    """Splits at unescaped separators (escapes kept for `_unescape`)."""
    out, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i:i + 2])
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(value: str) -> str:
    # RFC 6350 §3.4 escapes only \\ \, \; and \n (\: by some writers); any other backslash is text:
    # "\u00e9" in a value is those six characters, never an é
    return re.sub(r"\\([nN\\,;:])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


# C0 controls but TAB, CR and LF (those three are handled where they may occur), and DEL
_CONTROL_NOT_BREAK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_break(value: str) -> str:
    """CRLF and a lone CR or LF as one "\n" (each is a line break to some reader), and other
    control characters left out: RFC 6350 §3.3 allows none in a value (VALUE-CHAR, QSAFE-CHAR)."""
    return _CONTROL_NOT_BREAK.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def _escape(value: str) -> str:
    """A TEXT value as RFC 6350 §3.4 writes it: line breaks as \\n; backslash, comma, semicolon
    escaped."""
    value = _one_break(value)
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace(",", "\\,").replace(";", "\\;"))


def _verbatim(value: str) -> str:
    """A value written as it is (URI, uid, date): a control character still in it - in a card stored
    before JSContact validation refused them - percent-encoded (RFC 3986 §2.1), so that no value
    can end its content line and start one of the client's choosing."""
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", value)


def _param_value(value: str) -> str:
    """A parameter value decoded: RFC 6868 ^n ^^ ^' (and the common \\n)."""
    value = re.sub(r"\^(.)", lambda m: {"n": "\n", "^": "^", "'": '"'}.get(m.group(1), m.group(0)), value)
    return value.replace("\\n", "\n").replace("\\N", "\n")


def _param_out(value: str) -> str:
    """A parameter value as RFC 6868 §3 writes it: ^^ for ^, ^n for a line break (CR, LF or CRLF),
    ^' for a double quote; quoted when it has , ; or :."""
    value = _one_break(value).replace("^", "^^").replace("\n", "^n").replace('"', "^'")
    return f'"{value}"' if any(c in value for c in ",;:") else value


# ------------------------------------------------------------------------------ reading
def _decode_lines(text: str) -> Iterator[tuple[str, int]]:
    for line, number in getLogicalLines(io.StringIO(text)):
        yield line, max(number, 1)  # vobject counts the first line 0, the others from 1


def _content_line(raw: str, number: int, codec: str = "utf-8") -> _Line:
    """codec: what the file was decoded with (`_decode_file`), to have a value's octets again."""
    name, params, value, _group = parseLine(raw, number)
    pmap: dict[str, list[str]] = {}
    types: set[str] = set()
    for param in params:
        key = param[0].upper()
        values = [_param_value(v) for v in param[1:]]
        if not values:  # v2.1: TEL;CELL;VOICE - a bare type
            types.add(key.lower())
            continue
        pmap.setdefault(key, []).extend(values)
        if key == "TYPE":
            types.update(t.strip().lower() for v in values for t in v.split(",") if t.strip())
    encoding = (pmap.get("ENCODING") or [""])[0].upper()
    # v2.1's CHARSET is a MIME charset label: decoded as mail decodes one (app.mail.charsets), so
    # only IANA names count (never Python codec names such as unicode_escape or punycode: an
    # unknown label is UTF-8 with U+FFFD), and the text is valid Unicode (no lone surrogates)
    charset = (pmap.get("CHARSET") or [None])[0]
    if encoding == "QUOTED-PRINTABLE" or "quoted-printable" in types:
        data = quopri.decodestring(value.replace("=\n", "=\r\n").encode(codec))
        value = decode_charset(data, charset)[0].replace("\r\n", "\n")  # a decoded CRLF is a line break
    elif charset and encoding not in ("B", "BASE64") and "base64" not in types and (
            codec != "utf-8" or value.isascii()):
        # 8-bit text in a file that is valid UTF-8 throughout is UTF-8 (RFC 6350 §3.1) whatever an
        # old label claims; otherwise the label says what the octets are (7-bit UTF-7 too)
        value = decode_charset(value.encode(codec), charset)[0].replace("\r\n", "\n")
    return _Line(name.upper(), pmap, types, value, number)


def _contexts(line: _Line) -> dict | None:
    ctx = {}
    if "work" in line.types:
        ctx["work"] = True
    if "home" in line.types:
        ctx["private"] = True
    return ctx or None


def _pref(line: _Line) -> int | None:
    raw = (line.params.get("PREF") or [None])[0]
    if raw is not None:
        try:
            return min(100, max(1, int(raw)))
        except ValueError:
            return None
    return 1 if "pref" in line.types else None


def _with(obj: dict, **extra: object) -> dict:
    obj.update({k: v for k, v in extra.items() if v not in (None, {}, [], "")})
    return obj


def _date(value: str) -> dict | None:
    """A vCard date (or date-time) as a PartialDate or Timestamp (RFC 9553 §2.8.1)."""
    v = value.strip()
    m = re.fullmatch(r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})T([0-9]{2}):?([0-9]{2}):?([0-9]{2})Z", v)
    if m:
        y, mo, d, h, mi, s = m.groups()
        return {"@type": "Timestamp", "utc": f"{y}-{mo}-{d}T{h}:{mi}:{s}Z"}
    v = v.split("T", 1)[0]
    for pattern, keys in ((r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})", ("year", "month", "day")),
                          (r"--([0-9]{2})-?([0-9]{2})", ("month", "day")), (r"([0-9]{4})-([0-9]{2})", ("year", "month")),
                          (r"([0-9]{4})", ("year",)), (r"---([0-9]{2})", ("day",))):
        m = re.fullmatch(pattern, v)
        if m:
            out = {"@type": "PartialDate", **{k: int(x) for k, x in zip(keys, m.groups(), strict=True)}}
            if not 1 <= out.get("month", 1) <= 12 or not 1 <= out.get("day", 1) <= 31:
                return None
            return out
    return None


def _utc(value: str) -> str | None:
    m = re.fullmatch(r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})T([0-9]{2}):?([0-9]{2}):?([0-9]{2})(?:\.[0-9]+)?Z", value.strip())
    return "{}-{}-{}T{}:{}:{}Z".format(*m.groups()) if m else None


def lines_to_card(lines: list[_Line], text: str) -> dict:
    """The Card of one vCard's content lines (see the module docstring for the mapping)."""
    card: dict = {"@type": "Card", "version": "1.0"}
    counters: dict[str, int] = {}

    def put(prop: str, prefix: str, obj: dict) -> None:
        counters[prop] = counters.get(prop, 0) + 1
        card.setdefault(prop, {})[f"{prefix}{counters[prop]}"] = obj

    name: dict = {}
    for line in lines:
        n, v = line.name, line.value
        if n == "FN" and "full" not in name and _unescape(v).strip():
            name["full"] = _unescape(v)
        elif n == "N" and "components" not in name:
            comps = []
            parts = _split(v, ";")
            order = (3, 1, 2, 0, 5, 4, 6)  # title, given, given2, surname, surname2, credential, generation
            for i in order:
                if i < len(parts):
                    for value in _split(parts[i], ","):
                        if _unescape(value).strip():
                            comps.append({"kind": _N_KINDS[i], "value": _unescape(value)})
            if comps:
                name["components"] = comps
        elif n == "NICKNAME":
            for value in _split(v, ","):
                if _unescape(value).strip():
                    put("nicknames", "k", _with({"name": _unescape(value)}, contexts=_contexts(line),
                                                pref=_pref(line)))
        elif n == "EMAIL" and v.strip():
            put("emails", "e", _with({"address": _unescape(v).strip()}, contexts=_contexts(line),
                                     pref=_pref(line)))
        elif n == "TEL" and v.strip():
            features = {f: True for f in _FEATURES if f in line.types}
            if "cell" in line.types:
                features["mobile"] = True
            put("phones", "p", _with({"number": _unescape(v).strip()}, features=features,
                                     contexts=_contexts(line), pref=_pref(line)))
        elif n == "ADR":
            parts = _split(v, ";")
            comps = []
            for i, kind in enumerate(_ADR_KINDS):
                if i < len(parts):
                    for value in _split(parts[i], ","):
                        if _unescape(value).strip():
                            comps.append({"kind": kind, "value": _unescape(value)})
            label = (line.params.get("LABEL") or [None])[0]
            cc = (line.params.get("CC") or [None])[0]
            if comps or label:
                put("addresses", "a", _with({"components": comps} if comps else {}, full=label,
                                            countryCode=cc, contexts=_contexts(line), pref=_pref(line)))
        elif n == "ORG":
            parts = [_unescape(p) for p in _split(v, ";")]
            if any(p.strip() for p in parts):
                org = _with({}, name=parts[0] or None,
                            units=[{"name": u} for u in parts[1:] if u.strip()],
                            contexts=_contexts(line))
                put("organizations", "o", org)
        elif n in ("TITLE", "ROLE") and v.strip():
            put("titles", "t", {"name": _unescape(v), "kind": n.lower()})
        elif n == "NOTE" and v.strip():
            put("notes", "n", {"note": _unescape(v)})
        elif n in _ANNIVERSARIES:
            date = _date(_unescape(v))
            if date is not None:
                put("anniversaries", "d", {"kind": _ANNIVERSARIES[n], "date": date})
        elif n == "URL" and v.strip():
            put("links", "l", _with({"uri": _unescape(v).strip()}, contexts=_contexts(line), pref=_pref(line)))
        elif n == "IMPP" and v.strip():
            service = (line.params.get("X-SERVICE-TYPE") or [None])[0]
            put("onlineServices", "s", _with({"uri": _unescape(v).strip()}, service=service,
                                             contexts=_contexts(line), pref=_pref(line)))
        elif n in _IM_PROPS and v.strip():
            put("onlineServices", "s", _with({"user": _unescape(v).strip(), "service": _IM_PROPS[n]},
                                             contexts=_contexts(line)))
        elif n == "UID" and v.strip():
            card["uid"] = _unescape(v).strip()
        elif n == "REV":
            utc = _utc(v)
            if utc:
                card["updated"] = utc
        elif n in ("KIND", "X-ADDRESSBOOKSERVER-KIND") and v.strip():
            card["kind"] = _unescape(v).strip().lower()
        elif n in ("MEMBER", "X-ADDRESSBOOKSERVER-MEMBER") and v.strip():
            card.setdefault("members", {})[_unescape(v).strip()] = True
        elif n == "CATEGORIES":
            for value in _split(v, ","):
                if _unescape(value).strip():
                    card.setdefault("keywords", {})[_unescape(value).strip()] = True
        elif n == "PRODID" and v.strip():
            card["prodId"] = _unescape(v)
        elif n == "LANG" and v.strip():
            put("preferredLanguages", "g", _with({"language": v.strip()}, contexts=_contexts(line),
                                                 pref=_pref(line)))
        elif n in ("PHOTO", "LOGO", "SOUND") and v.strip():
            encoding = (line.params.get("ENCODING") or [""])[0].lower()
            media_type = None
            if encoding in ("b", "base64") or "base64" in line.types:
                kinds = [t for t in line.types if t not in ("base64", "pref", "work", "home")]
                media_type = f"{'audio' if n == 'SOUND' else 'image'}/{kinds[0]}" if kinds else None
                uri = f"data:{media_type or 'application/octet-stream'};base64,{''.join(v.split())}"
            else:
                uri = v.strip()
                media_type = (line.params.get("MEDIATYPE") or [None])[0]
            put("media", "m", _with({"kind": {"PHOTO": "photo", "LOGO": "logo", "SOUND": "sound"}[n],
                                     "uri": uri}, mediaType=media_type, contexts=_contexts(line),
                                    pref=_pref(line)))
    if card.get("kind") not in (None, "individual", "group", "org", "location", "device", "application"):
        card.pop("kind")  # an unknown vCard kind has no JSContact value
    if name:
        card["name"] = name
    if "uid" not in card:  # RFC 9555 §2.1.1: generated, the same for the same vCard
        card["uid"] = f"urn:uuid:{uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=5)}"
    return card


def _decode_file(data: bytes) -> tuple[str, str]:
    """(the file's text, the codec that gives a value's octets back from it)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def parse_vcards(data: bytes) -> Iterator[ParsedCard]:
    """Every vCard of a file, in order: each a Card or an error; a bad card does not stop the rest.
    Text outside BEGIN:VCARD/END:VCARD is reported as an error of its own."""
    text, codec = _decode_file(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    current: list[tuple[str, int]] | None = None
    start = 0
    stray: int | None = None
    for raw, number in _decode_lines(text):
        head = raw.strip().upper()
        if head == "BEGIN:VCARD":
            if current is not None:
                yield ParsedCard(start, error="BEGIN:VCARD before the END:VCARD of the card before")
            current, start = [], number
            continue
        if current is None:
            if stray is None:
                stray = number
                yield ParsedCard(stray, error="text outside BEGIN:VCARD ... END:VCARD")
            continue
        if head == "END:VCARD":
            yield _one_card(current, start, codec)
            current = None
            stray = None
            continue
        current.append((raw, number))
    if current is not None:
        yield ParsedCard(start, error="no END:VCARD")


def _one_card(raw_lines: list[tuple[str, int]], start: int, codec: str) -> ParsedCard:
    try:
        return _read_card(raw_lines, start, codec)
    except Exception as exc:  # noqa: BLE001 - a card that cannot be read fails alone, not its file
        return ParsedCard(start, error=f"cannot be read: {type(exc).__name__}: {exc}"[:300])


def _read_card(raw_lines: list[tuple[str, int]], start: int, codec: str) -> ParsedCard:
    lines = []
    for raw, number in raw_lines:
        try:
            lines.append(_content_line(raw, number, codec))
        except ParseError:
            return ParsedCard(start, error=f"line {number} is not a vCard content line: {raw[:60]!r}")
    version = next((ln.value.strip() for ln in lines if ln.name == "VERSION"), None)
    label = next((_unescape(ln.value) for ln in lines if ln.name == "FN"), "") or \
        next((ln.value for ln in lines if ln.name == "UID"), "")
    if version not in ("2.1", "3.0", "4.0"):
        return ParsedCard(start, error=f"VERSION {version!r}: tidings reads vCard 2.1, 3.0 and 4.0", name=label)
    text = "\n".join(raw for raw, _ in raw_lines)
    return ParsedCard(start, card=lines_to_card(lines, text), name=label)


# ------------------------------------------------------------------------------ writing
def _fold(line: str) -> str:
    """RFC 6350 §3.2: lines of at most 75 octets, never splitting a UTF-8 sequence."""
    out, cur, size = [], [], 0
    for ch in line:
        n = len(ch.encode())
        if size + n > 75:
            out.append("".join(cur))
            cur, size = [" "], 1
        cur.append(ch)
        size += n
    out.append("".join(cur))
    return "\r\n".join(out)


def _types(obj: dict, extra: tuple[str, ...] = ()) -> list[str]:
    ctx = obj.get("contexts") or {}
    return list(extra) + (["work"] if ctx.get("work") else []) + (["home"] if ctx.get("private") else [])


def _date_out(date: dict) -> str | None:
    if date.get("@type") == "Timestamp" or "utc" in date:
        return date["utc"].replace("-", "").replace(":", "")
    y, m, d = date.get("year"), date.get("month"), date.get("day")
    if y and m and d:
        return f"{y:04d}{m:02d}{d:02d}"
    if m and d:
        return f"--{m:02d}{d:02d}"
    if y and m:
        return f"{y:04d}-{m:02d}"
    if y:
        return f"{y:04d}"
    return f"---{d:02d}" if d else None


def card_to_vcard(card: dict) -> str:
    """The Card as a vCard 4.0 (RFC 6350), CRLF line ends, folded."""
    out: list[str] = []

    def add(name: str, value: str, params: dict | None = None) -> None:
        """One content line: value already in its vCard form (TEXT through _escape), made safe
        again here whatever it is; every parameter value through _param_out."""
        value = _verbatim(value)
        head = name
        for key, val in (params or {}).items():
            if val is None or val == [] or val == "":
                continue
            head += f";{key}=" + (",".join(_param_out(v) for v in val) if isinstance(val, list)
                                  else _param_out(str(val)))
        out.append(_fold(f"{head}:{value}"))

    def maps(prop: str) -> list[dict]:
        value = card.get(prop)
        return [v for v in value.values() if isinstance(v, dict)] if isinstance(value, dict) else []

    add("VERSION", "4.0")
    if card.get("prodId"):
        add("PRODID", _escape(card["prodId"]))
    add("UID", card.get("uid", ""))
    if card.get("kind"):
        add("KIND", _escape(card["kind"]))
    name = card.get("name") or {}
    comps = [c for c in name.get("components") or [] if isinstance(c, dict)]
    full = name.get("full") or " ".join(c["value"] for c in comps if c.get("kind") != "separator") or next(
        (o.get("name") for o in maps("organizations") if o.get("name")), None) or next(
        (e["address"] for e in maps("emails")), "")
    add("FN", _escape(full))
    if comps:
        fields = [",".join(_escape(c["value"]) for c in comps if c.get("kind") == kind) for kind in _N_KINDS]
        while len(fields) > 5 and not fields[-1]:
            fields.pop()
        add("N", ";".join(fields))
    for nick in maps("nicknames"):
        add("NICKNAME", _escape(nick["name"]), {"TYPE": _types(nick), "PREF": nick.get("pref")})
    for email in maps("emails"):
        add("EMAIL", _escape(email["address"]), {"TYPE": _types(email), "PREF": email.get("pref")})
    for phone in maps("phones"):
        features = [("cell" if f == "mobile" else f) for f in (phone.get("features") or {})]
        number = phone["number"]
        add("TEL", number if number.startswith("tel:") else _escape(number),
            {"VALUE": "uri" if number.startswith("tel:") else None, "TYPE": _types(phone, tuple(features)),
             "PREF": phone.get("pref")})
    for adr in maps("addresses"):
        acomps = [c for c in adr.get("components") or [] if isinstance(c, dict)]
        fields = [",".join(_escape(c["value"]) for c in acomps if c.get("kind") == kind) for kind in _ADR_KINDS]
        add("ADR", ";".join(fields), {"LABEL": adr.get("full"), "CC": adr.get("countryCode"),
                                      "TYPE": _types(adr), "PREF": adr.get("pref")})
    for org in maps("organizations"):
        parts = [org.get("name") or ""] + [u["name"] for u in org.get("units") or [] if isinstance(u, dict)]
        add("ORG", ";".join(_escape(p) for p in parts), {"TYPE": _types(org)})
    for title in maps("titles"):
        add("ROLE" if title.get("kind") == "role" else "TITLE", _escape(title["name"]))
    for note in maps("notes"):
        add("NOTE", _escape(note["note"]))
    for ann in maps("anniversaries"):
        prop = {v: k for k, v in _ANNIVERSARIES.items()}.get(ann.get("kind"))
        value = _date_out(ann.get("date") or {})
        if prop and value:
            add(prop, value)
    for link in maps("links"):
        add("URL", link["uri"], {"TYPE": _types(link), "PREF": link.get("pref")})
    for svc in maps("onlineServices"):
        if svc.get("uri"):
            add("IMPP", svc["uri"], {"X-SERVICE-TYPE": svc.get("service"), "TYPE": _types(svc),
                                     "PREF": svc.get("pref")})
        elif svc.get("user"):  # no URI: the vCard 3 form of its service, when there is one
            prop = {v: k for k, v in _IM_PROPS.items()}.get(svc.get("service") or "", "X-IM")
            add(prop, _escape(svc["user"]), {"TYPE": _types(svc)})
    for lang in maps("preferredLanguages"):
        add("LANG", _escape(lang["language"]), {"TYPE": _types(lang), "PREF": lang.get("pref")})
    for media in maps("media"):
        if media.get("uri"):
            add({"photo": "PHOTO", "logo": "LOGO", "sound": "SOUND"}.get(media.get("kind"), "PHOTO"),
                media["uri"], {"MEDIATYPE": media.get("mediaType") if not media["uri"].startswith("data:")
                               else None, "TYPE": _types(media), "PREF": media.get("pref")})
    if card.get("keywords"):
        add("CATEGORIES", ",".join(_escape(k) for k in card["keywords"]))
    for member in card.get("members") or {}:
        add("MEMBER", member)
    if card.get("updated"):
        add("REV", card["updated"].replace("-", "").replace(":", "").split(".")[0].rstrip("Z") + "Z")
    return "BEGIN:VCARD\r\n" + "".join(line + "\r\n" for line in out) + "END:VCARD\r\n"


def data_uri_bytes(uri: str) -> bytes | None:
    """The bytes of a base64 data: URI, or None."""
    m = re.match(r"data:[^,]*;base64,(.*)", uri, re.S)
    return base64.b64decode(m.group(1)) if m else None
