"""Text normalisation and tokenisation shared by every engine (index side, query side, snippets).

Both engines index the *output* of this module (tokens joined by single spaces) and build their
queries from it too, so they return the same results by construction.

The rules (documented for users):

* Case-insensitive: text is put in Unicode NFC form (so composed and decomposed accents are the
  same) and lower-cased with ``str.lower``.
* Diacritics are significant: "café" and "cafe" are different words, and so are "Straße" and
  "strasse". A search finds exactly the words it names; folding accents would make a search for
  "résumé" return every "resume" and cost precision. (Decided for tidings 0.1; both engines.)
* Tokens are runs of word characters (``\\w``, as in the benchmark's model), except that every
  CJK ideograph, kana and Hangul syllable is a token by itself: text without spaces is found by
  any run of its characters, searched as a phrase of one-character tokens.
* No stemming, no stop words: every word is indexed and every word of a query must match.
* A token longer than ``MAX_TOKEN_CHARS`` is replaced by its first characters plus a hash of the
  whole token (still exact, but keeps base64 blobs and the like from bloating the term dictionary
  and from hitting engine term-size limits).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from itertools import filterfalse

# CJK ideographs (incl. extensions and compatibility ideographs), kana, Hangul syllables and the
# ideographic iteration marks: each character is one token. Superset of the benchmark's _CJK.
_CJK = (
    "\u3005-\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
    "\U00020000-\U0002fa1f\U00030000-\U0003134f"
)
TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")

MAX_TOKEN_CHARS = 64
_LONG_PREFIX = 40

_SPACE_RE = re.compile(r"\s+")
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"',
                         "\u00bb": '"'})


def normalize(text: str) -> str:
    """Case-folded form of ``text`` (see the module docstring)."""
    if text.isascii():
        return text.lower()          # the common case, and 10x faster
    return unicodedata.normalize("NFC", text).lower()


def _shorten(token: str) -> str:
    digest = hashlib.blake2b(token.encode(), digest_size=8).hexdigest()
    return f"{token[:_LONG_PREFIX]}#{digest}"   # '#' is no word character: no clash with real tokens


# ASCII characters that are not word characters become spaces, every other byte (UTF-8's
# multi-byte sequences too) stays: for the split of `_split_words`
_ASCII_SEPARATORS = bytes(b if chr(b).isalnum() or b == 0x5F or b >= 0x80 else 0x20 for b in range(256))
_CLEAN_TOKEN_RE = re.compile(rf"[^\W{_CJK}]+")


def _split_words(text: str) -> list[str]:
    """``TOKEN_RE.findall(text)``, three times as fast on mail: ASCII separators become spaces
    (a byte table) and the text is split at white space (both in C); only a piece holding a
    non-ASCII separator or a CJK character goes through the regex.  Every white-space character
    is a non-word character, so the split never joins or cuts what the regex would not."""
    if text.isascii():
        return text.encode().translate(_ASCII_SEPARATORS).decode().split()
    pieces = text.encode("utf-8", "surrogatepass").translate(_ASCII_SEPARATORS) \
        .decode("utf-8", "surrogatepass").split()
    if all(_CLEAN_TOKEN_RE.fullmatch(p) for p in filterfalse(str.isascii, pieces)):
        return pieces
    tokens: list[str] = []
    for piece in pieces:
        if piece.isascii():
            tokens.append(piece)
        else:
            tokens.extend(TOKEN_RE.findall(piece))
    return tokens


def tokenize(text: str) -> list[str]:
    """Normalised tokens of ``text``, in order."""
    tokens = _split_words(normalize(text))
    if tokens and max(map(len, tokens)) > MAX_TOKEN_CHARS:
        tokens = [_shorten(t) if len(t) > MAX_TOKEN_CHARS else t for t in tokens]
    return tokens


def index_text(text: str) -> str:
    """What an engine indexes for a text field: the tokens joined by single spaces (both engines
    split that on spaces and nothing else, so positions are the token positions)."""
    return " ".join(tokenize(text)) if text else ""


# ------------------------------------------------------------------------------------ headers
def header_key(name: str) -> str | None:
    """Normalised header name (case-insensitive), or None for a name that can hold nothing."""
    key = _SPACE_RE.sub("_", name.strip().lower())
    if not key:
        return None
    return _shorten(key) if len(key) > MAX_TOKEN_CHARS else key


def header_index_text(headers: Iterable[tuple[str, str]]) -> str:
    """Index text of the ``headers`` field.

    Each header field becomes a marker token ``name:`` (for "has this header") followed by its
    value tokens prefixed with ``name:``. The marker sits between two fields of the same name, so a
    value phrase never matches across two header fields.
    """
    out: list[str] = []
    for name, value in headers:
        key = header_key(name)
        if key is None:
            continue
        prefix = key + ":"
        out.append(prefix)
        out.extend(prefix + t for t in tokenize(value or ""))
    return " ".join(out)


def header_query_tokens(name: str, value: str | None) -> tuple[str, ...]:
    """Tokens (one phrase) for the ``header`` filter: the marker alone for [name] or a value without
    words, else the prefixed value tokens: the value matches as a phrase ("contains the text")."""
    key = header_key(name)
    if key is None:
        return ()
    prefix = key + ":"
    words = tokenize(value) if value else []
    return tuple(prefix + t for t in words) if words else (prefix,)


# ------------------------------------------------------------------------------------ queries
Phrase = tuple[str, ...]


def parse_query_text(text: str) -> list[Phrase]:
    """Split a user's search string into phrases that must all match.

    ``"quoted text"`` is one phrase; every other whitespace-separated word is a phrase of its own
    tokens (one token usually; "bob@example.com", "e-mail" and "山田太郎" give several, which must be
    adjacent and in order). An unbalanced quote is ignored. Duplicates are dropped.
    """
    parts = text.translate(_QUOTES).split('"')
    phrases: list[Phrase] = []
    for i, part in enumerate(parts):
        quoted = i % 2 == 1 and i < len(parts) - 1
        for chunk in [part] if quoted else part.split():
            toks = tuple(tokenize(chunk))
            if toks and toks not in phrases:
                phrases.append(toks)
    return phrases


# ------------------------------------------------------------------------------------ spans
_ASCII_RUN_RE = re.compile(r"[\x00-\x7f]+")


def _normalize_with_offsets(text: str) -> tuple[str, Sequence[int], Sequence[int]]:
    """``normalize(text)`` plus, for every character of it, the start and end offsets in ``text``
    of the character (with its combining marks) it came from. ASCII runs map one to one; other
    characters are normalised one cluster (base + combining marks) at a time."""
    if unicodedata.is_normalized("NFC", text):
        low = text.lower()
        if len(low) == len(text):  # the usual case: lower-casing kept every offset
            return low, range(len(text)), range(1, len(text) + 1)
    norm: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    n = len(text)
    i = 0
    while i < n:
        # an ASCII run maps one to one, except a last letter that carries combining marks
        m = _ASCII_RUN_RE.match(text, i)
        if m:
            e = m.end()
            if e < n and unicodedata.combining(text[e]):
                e -= 1
            if e > i:
                norm.append(text[i:e].lower())
                starts.extend(range(i, e))
                ends.extend(range(i + 1, e + 1))
                i = e
                continue
        # any other character is normalised together with the combining marks that follow it
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        piece = normalize(text[i:j])
        if piece:
            norm.append(piece)
            starts.extend([i] * len(piece))
            ends.extend([j] * len(piece))
        elif ends:
            ends[-1] = j        # a dropped mark belongs to the character before it
        i = j
    return "".join(norm), starts, ends


def token_spans(text: str) -> Iterator[tuple[str, int, int]]:
    """Yield ``(token, start, end)`` for the tokens of ``text``, offsets into the original string.

    Lazy, so a caller that needs only the first matches stops early. The tokens equal
    ``tokenize(text)`` except in exotic cases (conjoining Hangul jamo), where a snippet may miss a
    highlight; search results never depend on this function.
    """
    if text.isascii():
        for m in TOKEN_RE.finditer(text.lower()):
            tok = m.group()
            yield (_shorten(tok) if len(tok) > MAX_TOKEN_CHARS else tok), m.start(), m.end()
        return
    norm, starts, ends = _normalize_with_offsets(text)
    for m in TOKEN_RE.finditer(norm):
        tok = m.group()
        yield (_shorten(tok) if len(tok) > MAX_TOKEN_CHARS else tok), starts[m.start()], ends[m.end() - 1]
