"""SearchSnippet rendering (RFC 8621 §5), shared by every engine.

Matches are found with the same tokenisation as the index (analysis.token_spans maps tokens
back to the original text), so what is marked is exactly what made the Email match. Everything
outside ``<mark>`` is HTML-escaped (&, <, >). Engines need no stored text: the caller passes
the subject and body text.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator, Sequence
from functools import lru_cache

from .analysis import _CJK, Phrase, normalize, token_spans

PREVIEW_MAX_OCTETS = 255
_CONTEXT_BEFORE = 50        # characters of context kept before the first match
_WORD_SLACK = 20            # cut at a word boundary if one is within this many characters
_WS_RE = re.compile(r"\s+")


_CJK_RE = re.compile(f"[{_CJK}]")


def _esc(text: str) -> str:
    return html.escape(_WS_RE.sub(" ", text), quote=False)


@lru_cache(maxsize=1024)
def _ascii_phrase_re(phrase: Phrase) -> re.Pattern[str]:
    # In lower-cased ASCII text, tokens are runs of \w separated by runs of \W, so this finds the
    # token sequence, given that no word character precedes it (checked by the caller: a pattern
    # starting with a literal lets the regex engine use its fast literal search).
    return re.compile(r"\W+".join(map(re.escape, phrase)) + r"(?!\w)")


@lru_cache(maxsize=1024)
def _bounded_phrase_re(phrase: Phrase) -> re.Pattern[str]:
    # The same token sequence where CJK characters are tokens of their own: a token may touch one,
    # so the boundaries are "no non-CJK word character" on either side (in the pattern itself).
    return re.compile(rf"(?<![^\W{_CJK}])" + r"\W+".join(map(re.escape, phrase)) + rf"(?![^\W{_CJK}])")


def _bounded_occurrences(rx: re.Pattern[str], text: str, pos: int, endpos: int) -> Iterator[tuple[int, int]]:
    while True:
        m = rx.search(text, pos, endpos)
        if m is None:
            return
        yield m.span()
        pos = m.start() + 1         # occurrences may overlap


def _ascii_occurrences(rx: re.Pattern[str], text: str, pos: int, endpos: int) -> Iterator[tuple[int, int]]:
    while True:
        m = rx.search(text, pos, endpos)
        if m is None:
            return
        start = m.start()
        if start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_"):
            yield m.span()
        pos = start + 1             # not m.end(): occurrences may overlap


def _lowered_for_regex(text: str, phrases: Sequence[Phrase]) -> str | None:
    """``text.lower()`` when phrases can be found by a regex over it: no shortened tokens, no CJK
    in the phrases (one token per character, not separated by non-word characters), and
    lower-casing keeps every character's offset (true of almost all text); else None.  CJK in the
    text is fine: see `_bounded_phrase_re`."""
    if any("#" in t or _CJK_RE.search(t) for p in phrases for t in p):
        return None
    lowered = text.lower()
    if text.isascii() or (len(lowered) == len(text) and unicodedata.is_normalized("NFC", text)):
        return lowered
    return None


def find_matches(text: str, phrases: Sequence[Phrase], stop_after: int | None = None) -> list[tuple[int, int]]:
    """Sorted, merged (start, end) spans of ``text`` where one of ``phrases`` occurs.

    With ``stop_after``, matches starting more than ``stop_after`` characters after the first one
    may be left out (a preview never shows them)."""
    if not phrases or not text:
        return []
    lowered = _lowered_for_regex(text, phrases)
    if lowered is not None:
        # fast path (C regex scan over the lower-cased text, whose offsets are the text's)
        ascii_only = text.isascii()
        if ascii_only or not _CJK_RE.search(text):
            pattern, occurrences = _ascii_phrase_re, _ascii_occurrences
        else:
            pattern, occurrences = _bounded_phrase_re, _bounded_occurrences
        firsts = []
        for p in phrases:
            if (not ascii_only or all(t.isascii() for t in p)) and p[0] in lowered:  # cheap rejection
                first = next(occurrences(pattern(p), lowered, 0, len(lowered)), None)
                if first is not None:
                    firsts.append((first[0], p))
        if not firsts:
            return []
        # matches far beyond the first one never reach a preview: don't scan for them
        end = len(lowered) if stop_after is None else min(firsts)[0] + stop_after
        spans = []
        for start, p in firsts:
            spans.extend(occurrences(pattern(p), lowered, start, max(end, start + 1)))
    else:
        spans = _scan(text, phrases, stop_after)
    return merge_spans(spans)


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (start, end) spans sorted, overlapping or touching ones merged into one."""
    spans.sort()
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _scan(text: str, phrases: Sequence[Phrase], stop_after: int | None) -> list[tuple[int, int]]:
    """The general path: walk the tokens (with their offsets) and match phrases on the way."""
    if not any("#" in t for p in phrases for t in p):
        norm = normalize(text)          # cheap negative check before the per-character walk
        if not any(p[0] in norm for p in phrases):
            return []
    by_last: dict[str, list[Phrase]] = {}
    for p in phrases:
        by_last.setdefault(p[-1], []).append(p)
    longest = max(map(len, phrases))
    recent: list[tuple[str, int, int]] = []     # the last `longest` tokens
    spans: list[tuple[int, int]] = []
    limit: int | None = None
    for tok, start, end in token_spans(text):
        if limit is not None and start > limit:
            break
        recent.append((tok, start, end))
        if len(recent) > longest:
            del recent[0]
        for p in by_last.get(tok, ()):
            n = len(p)
            if n <= len(recent) and all(recent[-n + k][0] == p[k] for k in range(n - 1)):
                spans.append((recent[-n][1], end))
                if stop_after is not None and limit is None:
                    limit = spans[0][0] + stop_after
    return spans


def mark(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """All of ``text``, escaped, with ``spans`` in <mark>."""
    out: list[str] = []
    pos = 0
    for s, e in spans:
        out.append(_esc(text[pos:s]))
        out.append("<mark>" + _esc(text[s:e]) + "</mark>")
        pos = e
    out.append(_esc(text[pos:]))
    return "".join(out)


def _size(html_text: str) -> int:
    return len(html_text.encode())


def _fit(text: str, budget: int, from_end: bool = False) -> str:
    """Escaped form of the longest prefix (suffix with ``from_end``) of ``text`` that fits
    ``budget`` octets, cut at a word boundary when one is near."""
    if budget <= 0:
        return ""
    # a little more raw text than the budget is usually enough; if whitespace runs collapsed it
    # below the budget, four times as much is (a character is >= 1 octet)
    cap = budget + 16
    whole = _WS_RE.sub(" ", text[-cap:] if from_end else text[:cap])
    if len(whole) <= budget and len(text) > cap:
        cap = 4 * budget + 16
        whole = _WS_RE.sub(" ", text[-cap:] if from_end else text[:cap])
    part = whole[-budget:] if from_end else whole[:budget]     # a character is >= 1 octet
    if _size(html.escape(part, quote=False)) > budget:
        lo, hi = 0, len(part)
        while lo < hi:                  # binary search: characters are 1-4 octets, entities 4-5
            mid = (lo + hi + 1) // 2
            if _size(html.escape(part[len(part) - mid:] if from_end else part[:mid], quote=False)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        part = part[len(part) - lo:] if from_end else part[:lo]
    if len(part) < len(whole) or len(text) > cap:      # cut: prefer a word boundary if one is near
        if from_end and 0 <= part.find(" ") < _WORD_SLACK:
            part = part[part.find(" "):]
        elif not from_end and part.rfind(" ") > len(part) - _WORD_SLACK:
            part = part[: part.rfind(" ")]
    return html.escape(part, quote=False)


def preview(text: str, spans: Sequence[tuple[int, int]], max_octets: int = PREVIEW_MAX_OCTETS) -> str:
    """An excerpt of ``text`` around its first match, escaped and marked, <= ``max_octets``: a
    little context before the first match (at most a third of the room), then the text after it
    with any further matches marked."""
    first = spans[0][0]
    lead = text[max(0, first - _CONTEXT_BEFORE):first]
    if first > len(lead):                       # we cut into the text: start at a word boundary
        space = _WS_RE.search(lead)
        lead = lead[space.end():] if space else lead
    out = [_fit(lead, max_octets // 3, from_end=True).lstrip()]
    budget = max_octets - _size(out[0])
    pos = first
    for s, e in spans:
        gap = _esc(text[pos:s])
        marked = "<mark>" + _esc(text[s:e]) + "</mark>"
        if _size(gap) + _size(marked) > budget:
            if s == first:     # the first match must show: drop the context, cut an enormous phrase
                return "<mark>" + _fit(text[s:e], max_octets - len("<mark></mark>")) + "</mark>"
            out.append(_fit(text[pos:s], budget))
            return "".join(out).rstrip()
        out.append(gap + marked)
        budget -= _size(gap) + _size(marked)
        pos = e
    out.append(_fit(text[pos:], budget))
    return "".join(out).rstrip()


def make_snippet(
    subject: str | None,
    body: str | None,
    subject_phrases: Sequence[Phrase],
    body_phrases: Sequence[Phrase],
) -> dict[str, str | None]:
    """One SearchSnippet's ``subject`` and ``preview`` (None where nothing matched)."""
    subj_spans = find_matches(subject or "", subject_phrases)
    body_spans = find_matches(body or "", body_phrases, stop_after=2 * PREVIEW_MAX_OCTETS)
    return {
        "subject": mark(subject or "", subj_spans) if subj_spans else None,
        "preview": preview(body or "", body_spans) if body_spans else None,
    }
