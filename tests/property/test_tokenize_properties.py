"""The tokeniser's fast split (indexer.analysis._split_words) finds exactly the tokens of the
regular expression that defines them (TOKEN_RE), on any text: the index, the queries and the
snippets rely on one definition of a token."""

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.analysis import TOKEN_RE, _split_words, normalize, tokenize

# mail-like text: ASCII words and punctuation, Latin letters with accents, typographic separators
# (no-break space, quotes, dashes, ellipsis), CJK, combining marks, digits of other scripts,
# control characters, lone surrogates and characters of every plane
_PIECES = st.one_of(
    st.text(alphabet="abcXYZ019_ .,;:-'\"()[]<>/\\@#$%^&*+=!?\t\n\r\x0b\x0c\x1c\x1f\x7f", max_size=12),
    st.sampled_from(["café", "Søren", "naïve", "Straße", "don’t", "—", "…", "«x»", "\u00a0", "\u3000",
                     "\u2028", "\u0085", "日本語", "한국어", "ガ", "e\u0301", "²½", "٣", "\ud800", "\U0001f600",
                     "\U00020000", "ǅ", "ﬁ", "İ", "K"]),
    st.text(max_size=6),
)
TEXTS = st.lists(_PIECES, max_size=20).map("".join)


@settings(max_examples=600, deadline=None)
@given(TEXTS)
def test_the_fast_split_finds_the_regex_tokens(text):
    lowered = normalize(text)
    assert _split_words(lowered) == TOKEN_RE.findall(lowered)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_tokens_are_the_regex_tokens_of_the_normal_form(text):
    expected = TOKEN_RE.findall(normalize(text))
    got = tokenize(text)
    assert len(got) == len(expected)
    assert [t for t in got if "#" not in t] == [t for t in expected if len(t) <= 64]
