"""MIME header parameters as RFC 2045 §5.1 and RFC 2231 define them, read and written.

Reading (Content-Type, Content-Disposition)::

    value     := main *( ";" parameter )
    parameter := attribute "=" ( token / quoted-string )

A quoted string is unquoted (backslash pairs undone); a token ends at white space (``_TOKEN_RE``);
what follows a value up to the next ";" is junk and dropped (``charset="UTF-8"\\r\\n`` and
``charset=UTF-8 format=flowed`` give ``UTF-8``).  RFC 2231 extended parameters
(``name*=charset'lang'%XX``, continuations ``name*0``, ``name*1*`` ...) are joined and decoded
with the charset they name, looked up like every other label in ``app.mail.charsets`` (never a
Python codec name).  The stdlib's parameter parsing is not used because it does neither.

Writing: ``format_params`` gives ``; a=b`` sections folded so that no line passes 78 octets where
that is possible, and values that are not plain ASCII, or too long for one line, as RFC 2231
continuations (``filename*0*=utf-8''...;`` ``filename*1*=...``), so no generated line ever
passes the 998 octets of RFC 5322 §2.1.1.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

from .charsets import decode

__all__ = ["format_params", "parse_params"]

_SECTION_RE = re.compile(r"^(.*?)\*(\d+)(\*?)$", re.ASCII)  # RFC 2231 §3: section numbers are ASCII
_TSPECIALS_OR_SPACE = re.compile(r'[\s()<>@,;:\\"/\[\]?=]')
# RFC 2045 §5.1: an unquoted value is a token, which ends at white space or a tspecial; what follows
# it up to the next ";" is junk (``charset=iso-8859-1 format=flowed``, ``charset=utf-8,``).  Leniency:
# the tspecials that real mailers write inside unquoted boundaries and names (RFC 2046 §5.1.1 bchars
# "=/:?", and "@[]<>", as in ``boundary=----=_Part_1``) do not end it: there the whole run is the only
# plausible value.  A quote, a backslash or a comma never continues a value a mailer meant.
_TOKEN_RE = re.compile(r'[^\s;",\\]*')
# A name is text a user reads, not a token: some mailers write it unquoted with spaces
# (``filename=My Document.pdf``), and the whole of it is the only plausible reading; it ends at the
# next ";", where another parameter starts after a missing one (``name=a.pdf size=3``) or at a quote;
# a trailing comma is dropped as for a token.
_NAME_ATTRS = frozenset(("name", "filename"))
_NEXT_PARAM_RE = re.compile(r"\s+[A-Za-z0-9!#$%&'*+.^_`|~-]+\s*=|\"")
MAX_LINE = 78


def _split(value: str) -> list[tuple[str, str]]:
    """[(attribute, raw value)] of the parameters after the main value."""
    out: list[tuple[str, str]] = []
    n = len(value)
    i = value.find(";")
    if i < 0:
        return out
    i += 1
    while i < n:
        # attribute: up to "=" (or to ";" for a parameter without a value, which is skipped)
        eq = value.find("=", i)
        semi = value.find(";", i)
        if eq < 0:
            break
        if 0 <= semi < eq:
            i = semi + 1
            continue
        attr = value[i:eq].strip().lower()
        j = eq + 1
        while j < n and value[j] in " \t":
            j += 1
        if j < n and value[j] == '"':
            buf: list[str] = []
            j += 1
            while j < n and value[j] != '"':
                if value[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(value[j])
                j += 1
            raw = "".join(buf)
            semi = value.find(";", j)  # whatever follows the closing quote is junk
        elif attr in _NAME_ATTRS:
            semi = value.find(";", j)
            end = n if semi < 0 else semi
            missing_semi = _NEXT_PARAM_RE.search(value, j, end)
            raw = value[j : missing_semi.start() if missing_semi else end].strip().rstrip(",").rstrip()
        else:
            m = _TOKEN_RE.match(value, j)
            raw = m.group()
            semi = value.find(";", m.end())  # whatever follows the token is junk, as after a quote
        if attr:
            out.append((attr, raw))
        if semi < 0:
            break
        i = semi + 1
    return out


def parse_params(value: str) -> tuple[str, dict[str, str]]:
    """Split an unfolded, comment-free Content-Type or Content-Disposition value.

    Returns (main value lower-cased and stripped, e.g. ``text/plain`` or ``attachment``;
    {attribute lower-cased: decoded value}).  The first instance of an attribute wins; an
    RFC 2231 value wins over a plain one of the same name.  Never raises.
    """
    semi = value.find(";")  # the main value is a token: a ";" always ends it
    main = value[:semi].strip().lower() if semi >= 0 else value.strip().lower()
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}  # name* (one section, encoded)
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for attr, raw in _split(value) if semi >= 0 else ():
        m = _SECTION_RE.match(attr)
        if m:
            name, number, star = m.group(1), int(m.group(2)), bool(m.group(3))
            if number < 1000:
                sections.setdefault(name, {}).setdefault(number, (raw, star))
        elif attr.endswith("*"):
            extended.setdefault(attr[:-1], raw)
        else:
            plain.setdefault(attr, raw)
    params = dict(plain)
    for name, raw in extended.items():
        params[name] = _decode_2231([(raw, True)])
    for name, parts in sections.items():
        if name in extended:
            continue
        run = []
        for k in range(len(parts)):
            if k not in parts:
                break  # RFC 2231 §3: sections are numbered from 0 without gaps
            run.append(parts[k])
        if run:
            params[name] = _decode_2231(run)
    return main, params


def _decode_2231(run: list[tuple[str, bool]]) -> str:
    """Join RFC 2231 sections [(raw, encoded)] and decode them with the charset of the first."""
    charset = None
    data = bytearray()
    for index, (raw, encoded) in enumerate(run):
        if encoded:
            if index == 0:
                parts = raw.split("'", 2)
                if len(parts) == 3:
                    charset, raw = parts[0] or None, parts[2]
            data += unquote_to_bytes(raw)
        else:
            data += raw.encode("utf-8", "surrogatepass")
    if not any(encoded for _, encoded in run):
        return data.decode("utf-8", "replace")
    return decode(bytes(data), charset)[0]


def _needs_2231(value: str) -> bool:
    return not value.isascii() or bool(re.search(r"[\x00-\x1f\x7f]", value))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_params(params: list[tuple[str, str]], used: int) -> str:
    """``; key=value`` for each parameter, folded.  ``used`` is the length of the line so far
    (e.g. ``len("Content-Type: text/plain")``).  Values are quoted when they are not a token;
    non-ASCII values, and values too long for one line, become RFC 2231 sections of at most
    ``MAX_LINE`` octets each (UTF-8, percent-encoded)."""
    items: list[str] = []
    for key, value in params:
        if not _needs_2231(value) and len(key) + len(value) + 4 <= MAX_LINE - 1:
            items.append(f"{key}={value}" if value and not _TSPECIALS_OR_SPACE.search(value) else
                         f"{key}={_quoted(value)}")
        else:
            items.extend(_sections(key, value))
    out: list[str] = []
    line = used
    for item in items:
        if line + 2 + len(item) > MAX_LINE:
            out.append(";\r\n " + item)
            line = 1 + len(item)
        else:
            out.append("; " + item)
            line += 2 + len(item)
    return "".join(out)


def _sections(key: str, value: str) -> list[str]:
    encoded = _needs_2231(value)
    room = MAX_LINE - len(key) - 12  # " key*NN*=" plus ";"
    chunks: list[str] = []
    if encoded:
        pieces = [quote(ch, safe="!#$&+-.^_`|~") for ch in value]  # a character is never split
        first = "utf-8''"
        current = first
        for piece in pieces:
            if len(current) + len(piece) > room and current not in ("", first):
                chunks.append(current)
                current = ""
            current += piece
        chunks.append(current)
    else:
        step = max(room - 2, 8)
        chunks = [value[i : i + step] for i in range(0, len(value), step)] or [""]
    if len(chunks) == 1 and encoded:
        return [f"{key}*={chunks[0]}"]
    star = "*" if encoded else ""
    return [f"{key}*{i}{star}={c if encoded else _quoted(c)}" for i, c in enumerate(chunks)]
