"""MIME charset labels and decoding to valid Unicode.

A charset label in mail is a name from the IANA "Character Sets" registry (RFC 2978; RFC 2045
§5.1, RFC 2047 §2, RFC 2231 §4), never a name of the decoder that happens to implement it.
Python's codec registry knows many names that are no charset at all (``unicode_escape``,
``punycode``, ``rot13``, ``idna``, ``base64``, ``zlib`` ...); looking a label up there would
let a message decide which transformation the server runs on its bytes.  So labels are looked
up in ``LABELS`` only: the IANA names and aliases of the charsets Python can decode, plus the
WHATWG Encoding Standard's labels for them (what browsers and most mailers accept).  Where the
two disagree on a decoder, WHATWG's choice wins because it is what senders really used:
ISO-8859-1 is decoded as windows-1252, GB2312/GBK as GB18030, Shift_JIS as windows-31j,
EUC-KR as windows-949.  An unknown label is decoded as UTF-8 and flagged as an encoding
problem (RFC 8621 §4.1.4 bodyValues: "isEncodingProblem").

Every string this module returns is valid Unicode: no lone surrogates.  Python's UTF-7
decoder, for one, yields them for a malformed run ("+2D0-" is a lone U+D834); RFC 8620 §1.5
(I-JSON) forbids them in what the server writes, and RFC 8621 §4.1.4 asks for U+FFFD where
text cannot be decoded.  ``valid_text`` is the one place that repairs them.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

__all__ = ["LABELS", "codec_for", "decode", "decode_codec", "valid_json", "valid_text"]


def _labels() -> dict[str, str]:
    table: dict[str, str] = {}

    def add(codec: str, *labels: str) -> None:
        for label in labels:
            table[label] = codec

    add("ascii", "us-ascii", "iso-ir-6", "ansi_x3.4-1968", "ansi_x3.4-1986", "iso_646.irv:1991",
        "iso646-us", "us", "ibm367", "cp367", "csascii", "ascii")
    add("utf-8", "utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8",
        "x-unicode20utf8", "csutf8",
        "utf8mb4")  # MySQL's name, seen in PHP mailers; unambiguously UTF-8
    add("utf-7", "utf-7", "unicode-1-1-utf-7", "csunicode11utf7", "csutf7")
    add("utf-16", "utf-16", "csutf16")
    add("utf-16-be", "utf-16be", "unicodefffe", "csutf16be")
    add("utf-16-le", "utf-16le", "unicodefeff", "csutf16le", "csunicode", "iso-10646-ucs-2", "ucs-2")
    add("utf-32", "utf-32", "csutf32")
    add("utf-32-be", "utf-32be", "csutf32be")
    add("utf-32-le", "utf-32le", "csutf32le")
    # ISO-8859-1 and its WHATWG labels: windows-1252, a superset every sender meant
    add("cp1252", "iso-8859-1", "iso-ir-100", "iso_8859-1", "iso_8859-1:1987", "latin1", "l1",
        "ibm819", "cp819", "csisolatin1", "iso8859-1", "iso88591", "windows-1252", "cp1252",
        "x-cp1252", "cswindows1252")
    latin = {2: (101, "latin2", "l2", 1987), 3: (109, "latin3", "l3", 1988), 4: (110, "latin4", "l4", 1988),
             5: (144, "cyrillic", None, 1988), 6: (127, "arabic", None, 1987),
             7: (126, "greek", "greek8", 1987), 8: (138, "hebrew", None, 1988),
             9: (148, "latin5", "l5", 1989), 10: (157, "latin6", "l6", 1992)}
    for n, (ir, alias1, alias2, year) in latin.items():
        codec = f"iso8859_{n}" if n != 9 else "cp1254"  # WHATWG: ISO-8859-9 is windows-1254
        add(codec, f"iso-8859-{n}", f"iso_8859-{n}", f"iso_8859-{n}:{year}", f"iso-ir-{ir}",
            f"iso8859-{n}", f"iso8859{n}", alias1)
        if alias2:
            add(codec, alias2)
    add("iso8859_5", "csisolatincyrillic")
    add("iso8859_6", "csisolatinarabic", "asmo-708", "ecma-114", "iso-8859-6-e", "iso-8859-6-i",
        "csiso88596e", "csiso88596i")
    add("iso8859_7", "csisolatingreek", "elot_928", "ecma-118", "sun_eu_greek")
    add("iso8859_8", "csisolatinhebrew", "iso-8859-8-e", "iso-8859-8-i", "csiso88598e", "csiso88598i",
        "visual", "logical")
    add("cp1254", "csisolatin5")
    add("iso8859_10", "csisolatin6")
    for n, extra in ((13, ("latin7", "l7")), (14, ("latin8", "l8", "iso-ir-199", "iso-celtic")),
                     (15, ("latin-9", "latin9", "l9", "csisolatin9")), (16, ("latin10", "l10", "iso-ir-226"))):
        add(f"iso8859_{n}", f"iso-8859-{n}", f"iso_8859-{n}", f"iso8859-{n}", f"iso8859{n}", *extra)
    for n in range(1250, 1259):
        add(f"cp{n}", f"windows-{n}", f"cp{n}", f"x-cp{n}", f"cswindows{n}")
    add("cp874", "windows-874", "tis-620", "cstis620", "iso-8859-11", "iso8859-11", "iso885911", "dos-874")
    add("koi8_r", "koi8-r", "koi8", "koi", "cskoi8r", "koi8_r")
    add("koi8_u", "koi8-u", "koi8-ru", "cskoi8u")
    add("mac_roman", "macintosh", "mac", "csmacintosh", "x-mac-roman")
    add("mac_cyrillic", "x-mac-cyrillic", "x-mac-ukrainian")
    for n in (437, 775, 850, 852, 855, 857, 858, 860, 861, 862, 863, 864, 865, 866, 869):
        add(f"cp{n}", f"ibm{n}", f"cp{n}", str(n), f"csibm{n}", f"cspc{n}")
    add("cp437", "cspc8codepage437")
    add("cp850", "cspc850multilingual")
    add("cp862", "cspc862latinhebrew")
    add("cp775", "cspc775baltic")
    add("cp866", "csibm866")
    add("cp932", "shift_jis", "shift-jis", "ms_kanji", "csshiftjis", "x-sjis", "sjis", "ms932",
        "windows-31j", "cswindows31j")
    add("euc_jp", "euc-jp", "cseucpkdfmtjapanese", "x-euc-jp", "extended_unix_code_packed_format_for_japanese")
    add("iso2022_jp", "iso-2022-jp", "csiso2022jp")
    add("iso2022_jp_2", "iso-2022-jp-2", "csiso2022jp2")
    add("iso2022_kr", "iso-2022-kr", "csiso2022kr")
    add("cp949", "euc-kr", "cseuckr", "ks_c_5601-1987", "ks_c_5601-1989", "ksc5601", "ksc_5601",
        "korean", "iso-ir-149", "csksc56011987", "windows-949", "cp949")
    add("gb18030", "gb18030", "csgb18030", "gbk", "csgbk", "cp936", "ms936", "windows-936", "x-gbk",
        "gb2312", "csgb2312", "chinese", "iso-ir-58", "csiso58gb231280", "gb_2312-80", "gb_2312")
    add("hz", "hz-gb-2312")
    add("cp950", "big5", "csbig5", "cn-big5", "x-x-big5", "big-5")
    add("big5hkscs", "big5-hkscs")
    table.pop("", None)
    return table


LABELS: dict[str, str] = _labels()
"""Charset label (lower case) -> Python codec name."""


@lru_cache(maxsize=512)
def codec_for(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None if the label is not a registered
    charset (IANA or WHATWG) that Python can decode.  Case-insensitive; surrounding quotes and
    white space are ignored; an "x-" prefix in front of a known label is tolerated."""
    if not label:
        return None
    key = label.strip().strip("\"'").strip().lower()
    if not key or len(key) > 64:
        return None
    codec = LABELS.get(key)
    if codec is None and key.startswith("x-"):
        codec = LABELS.get(key[2:])
    return codec


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> tuple[str, bool]:
    """(text with every lone surrogate replaced by U+FFFD, whether there was one).

    A string decoded by Python can only hold surrogates as lone code points, so each one found
    is unpaired and cannot be written as UTF-8 or I-JSON."""
    if text.isascii() or not _SURROGATE_RE.search(text):
        return text, False
    return _SURROGATE_RE.sub("\ufffd", text), True


def _surrogate_free(codec: str) -> bool:
    """Whether the codec's decoder can never yield a lone surrogate: UTF-8 and ASCII (read as
    UTF-8 or windows-1252) reject them, and a one-octet-per-character table maps none to one."""
    if codec in ("utf-8", "ascii"):
        return True
    if codecs.lookup(codec).incrementaldecoder.__mro__[1] is not codecs.IncrementalDecoder:
        return False  # stateful or multi-octet (CJK, UTF-16/32/7): left to valid_text
    try:
        table = bytes(range(256)).decode(codec, "replace")
    except Exception:  # noqa: BLE001 - a stateful codec may refuse the octets outright
        return False
    return len(table) == 256 and not _SURROGATE_RE.search(table)


_SURROGATE_FREE = frozenset(c for c in set(LABELS.values()) if _surrogate_free(c))


def decode_codec(data: bytes, codec: str) -> tuple[str, bool]:
    """Like ``decode``, for a codec ``codec_for`` returned."""
    text, problem = _decode_with(data, codec)
    if codec in _SURROGATE_FREE:  # the search for lone surrogates costs as much as the decoding
        return text, problem
    text, bad = valid_text(text)
    return text, problem or bad


def valid_json(obj: object) -> object:
    """A JSON value with `valid_text` applied to every string in it, keys included."""
    if isinstance(obj, str):
        return valid_text(obj)[0]
    if isinstance(obj, list):
        return [valid_json(x) for x in obj]
    if isinstance(obj, dict):
        return {valid_json(k): valid_json(v) for k, v in obj.items()}
    return obj


def _decode_with(data: bytes, codec: str) -> tuple[str, bool]:
    if codec == "ascii":
        # RFC 6532: undeclared 8-bit text is UTF-8 far more often than anything else
        if data.isascii():
            return data.decode("ascii"), False
        try:
            return data.decode("utf-8"), False
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace"), True
    try:
        return data.decode(codec), False
    except UnicodeDecodeError:
        if codec == "cp1252":  # five octets windows-1252 leaves undefined: ISO-8859-1 has them
            return data.decode("latin-1"), False
    except Exception:  # noqa: BLE001 - some decoders raise other errors on garbage
        return data.decode("utf-8", "replace"), True
    try:
        return data.decode(codec, "replace"), True
    except Exception:  # noqa: BLE001
        return data.decode("utf-8", "replace"), True


def decode(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Text of ``data`` in the MIME charset ``charset``: (text, is_encoding_problem).

    No charset means US-ASCII (RFC 2045 §5.2), read as UTF-8 when the octets are valid UTF-8.
    An unknown label decodes as UTF-8 with U+FFFD and is an encoding problem; so is any octet
    the charset cannot decode, and any lone surrogate a decoder produced.
    """
    codec = codec_for(charset) if charset else "ascii"
    if codec is None:
        return valid_text(data.decode("utf-8", "replace"))[0], True
    return decode_codec(data, codec)
