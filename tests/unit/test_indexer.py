"""The full-text index library, run against every engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer import (
    And,
    HeaderMatch,
    IndexDoc,
    Match,
    Not,
    Or,
    SearchIndex,
    UnsupportedQuery,
    open_index,
)
from indexer.analysis import normalize, parse_query_text, tokenize

ENGINES = ["tantivy", "whoosh"]
ACC = "Aacc1"

DOCS = [
    IndexDoc("M1", subject="Quarterly report", from_="Alice Martin <alice@example.com>",
             to="Bob <bob@example.org>", body="Please find the category list attached. See you at the end of the day."),
    IndexDoc("M2", subject="Re: the cat", from_="山田太郎 <taro@example.jp>", cc="Carol <carol@corp.example>",
             body="The end, of day one: the cat sat.", headers=[("List-Id", "Tidings dev <dev.tidings.example>"),
                                                                ("X-Spam-Status", "No, score=1.2")]),
    IndexDoc("M3", subject="Café menu <b>&", from_="José Núñez <jose@cafe.example>", bcc="dave@example.com",
             body="Our cafe opens at nine. The quarterly numbers are in.", headers=[("X-Spam-Status", "Yes, score=9")]),
]


@pytest.fixture(params=ENGINES)
def idx(request, tmp_path) -> SearchIndex:
    index = open_index(request.param, str(tmp_path / "index"))
    index.add(ACC, DOCS)
    index.commit(ACC)
    yield index
    index.close()


def ids(index: SearchIndex, query, account: str = ACC) -> list[str]:
    return sorted(index.search(account, query))


# --------------------------------------------------------------------------- analysis
def test_normalisation_rules():
    assert normalize("CAFÉ Straße") == "café straße"
    assert normalize("Cafe\u0301") == normalize("Café")          # decomposed == composed (NFC)
    assert tokenize("Full-width naïve") == ["full", "width", "naïve"]
    assert tokenize("山田太郎さん and 한국어") == ["山", "田", "太", "郎", "さ", "ん", "and", "한", "국", "어"]
    assert tokenize("ガ") == ["ガ"]            # kana voicing is not a diacritic
    assert parse_query_text('bob@example.com "end of  the day" e-mail "unbalanced') == [
        ("bob", "example", "com"), ("end", "of", "the", "day"), ("e", "mail"), ("unbalanced",)]
    long = "x" * 200
    assert tokenize(long) == tokenize(long.upper()) and len(tokenize(long)[0]) < 64


# --------------------------------------------------------------------------- words and phrases
def test_case_insensitive_word(idx):
    assert ids(idx, Match("text", "QUARTERLY")) == ["M1", "M3"]
    assert ids(idx, Match("body", "Category")) == ["M1"]


def test_whole_words_only(idx):
    assert ids(idx, Match("body", "cat")) == ["M2"]          # not "category" in M1
    assert ids(idx, Match("body", "categ")) == []


def test_all_words_must_match(idx):
    assert ids(idx, Match("text", "quarterly report")) == ["M1"]
    assert ids(idx, Match("text", "quarterly nine")) == ["M3"]
    assert ids(idx, Match("text", "quarterly nonexistent")) == []


def test_phrase_adjacency_order_and_stop_words(idx):
    assert ids(idx, Match("body", '"end of the day"')) == ["M1"]    # not "the end, of day one"
    assert ids(idx, Match("body", '"of the"')) == ["M1"]
    assert ids(idx, Match("body", '"day the of end"')) == []
    assert ids(idx, Match("body", "end of the day")) == ["M1", "M2"]  # bare words: any order


def test_text_words_may_come_from_different_fields(idx):
    assert ids(idx, Match("text", "report bob")) == ["M1"]         # subject + to


def test_diacritics_are_significant(idx):
    assert ids(idx, Match("text", "cafe")) == ["M3"]          # the body's "cafe"
    assert ids(idx, Match("subject", "CAFÉ")) == ["M3"]
    assert ids(idx, Match("subject", "cafe")) == []           # the subject says "Café"
    assert ids(idx, Match("body", "café")) == []
    assert ids(idx, Match("from", "núñez")) == ["M3"]
    assert ids(idx, Match("from", "nunez")) == []


def test_empty_query_text_matches_nothing(idx):
    assert ids(idx, Match("text", '  "" -- ')) == []


# --------------------------------------------------------------------------- addresses
def test_address_forms(idx):
    assert ids(idx, Match("from", "alice@example.com")) == ["M1"]
    assert ids(idx, Match("from", "alice")) == ["M1"]              # local part and display name
    assert ids(idx, Match("from", "example.com")) == ["M1"]        # domain
    assert ids(idx, Match("from", "Martin")) == ["M1"]             # display-name word
    assert ids(idx, Match("to", "bob@example.org")) == ["M1"]
    assert ids(idx, Match("cc", "corp.example")) == ["M2"]
    assert ids(idx, Match("bcc", "dave@example.com")) == ["M3"]
    assert ids(idx, Match("text", "dave@example.com")) == ["M3"]   # text covers bcc
    assert ids(idx, Match("from", "bob@example.org")) == []        # field restriction
    assert ids(idx, Match("from", "example.org")) == []


def test_cjk_display_name(idx):
    assert ids(idx, Match("from", "山田太郎")) == ["M2"]
    assert ids(idx, Match("from", "田太")) == ["M2"]               # any run of its characters
    assert ids(idx, Match("from", "太田")) == []                   # but in order


def test_subject_only(idx):
    assert ids(idx, Match("subject", "category")) == []            # a body word
    assert ids(idx, Match("subject", "cat")) == ["M2"]
    assert ids(idx, Match("body", "report")) == []


# --------------------------------------------------------------------------- headers
def test_header_name_and_value(idx):
    assert ids(idx, HeaderMatch("list-id")) == ["M2"]
    assert ids(idx, HeaderMatch("X-SPAM-STATUS")) == ["M2", "M3"]
    assert ids(idx, HeaderMatch("X-Spam-Status", "yes")) == ["M3"]
    assert ids(idx, HeaderMatch("List-Id", "dev.tidings.example")) == ["M2"]
    assert ids(idx, HeaderMatch("List-Id", "example dev")) == []   # the value is one phrase
    assert ids(idx, HeaderMatch("X-Spam-Status", "")) == ["M2", "M3"]
    assert ids(idx, HeaderMatch("Subject", "cat")) == []           # only the given headers
    assert ids(idx, HeaderMatch("X-Missing")) == []


# --------------------------------------------------------------------------- boolean
def test_and_or_not(idx):
    assert ids(idx, And([Match("text", "quarterly"), Match("from", "alice")])) == ["M1"]
    assert ids(idx, Or([Match("subject", "cat"), Match("subject", "menu")])) == ["M2", "M3"]
    assert ids(idx, Not(Match("text", "quarterly"))) == ["M2"]
    assert ids(idx, And([Match("text", "quarterly"), Not(Match("from", "alice"))])) == ["M3"]
    assert ids(idx, Not(Not(Match("subject", "cat")))) == ["M2"]
    assert ids(idx, Or([Not(Match("text", "quarterly")), Match("from", "alice")])) == ["M1", "M2"]
    assert ids(idx, And([])) == ["M1", "M2", "M3"]
    assert ids(idx, Or([])) == []
    assert ids(idx, Not(Match("text", ""))) == ["M1", "M2", "M3"]


def test_unknown_field_is_unsupported(idx):
    with pytest.raises(UnsupportedQuery):
        idx.search(ACC, Match("attachmentName", "x"))
    with pytest.raises(UnsupportedQuery):
        idx.search(ACC, And([Match("text", "a"), Not(Match("nope", "b"))]))
    with pytest.raises(UnsupportedQuery):
        idx.search("Aempty", Match("nope", "x"))
    with pytest.raises(UnsupportedQuery):
        idx.snippets(ACC, Match("nope", "x"), ["M1"], {"M1": ("s", "b")})


# --------------------------------------------------------------------------- updates, accounts
def test_delete_and_update(idx):
    assert idx.doc_count(ACC) == 3
    idx.add(ACC, [IndexDoc("M1", subject="Rewritten subject")])
    idx.delete(ACC, ["M3", "M404"])
    assert ids(idx, Match("subject", "quarterly")) == ["M1"]      # not visible before commit
    idx.commit(ACC)
    assert idx.doc_count(ACC) == 2
    assert ids(idx, Match("subject", "quarterly")) == []
    assert ids(idx, Match("subject", "rewritten")) == ["M1"]
    assert ids(idx, Match("text", "cafe")) == []
    assert ids(idx, Not(Match("subject", "rewritten"))) == ["M2"]
    # replace twice before one commit, and add + delete in one batch
    idx.add(ACC, [IndexDoc("M5", subject="first")])
    idx.add(ACC, [IndexDoc("M5", subject="second"), IndexDoc("M6", subject="second")])
    idx.delete(ACC, ["M6"])
    idx.commit(ACC)
    assert ids(idx, Match("subject", "first")) == []
    assert ids(idx, Match("subject", "second")) == ["M5"]
    assert idx.doc_count(ACC) == 3


def test_accounts_are_isolated(idx):
    other = "Aother"
    assert ids(idx, Match("text", "quarterly"), other) == []
    assert ids(idx, Not(Match("text", "quarterly")), other) == []
    assert idx.doc_count(other) == 0
    idx.add(other, [IndexDoc("M1", subject="Other account")])
    idx.commit(other)
    assert ids(idx, Match("subject", "other"), other) == ["M1"]
    assert ids(idx, Match("subject", "other")) == []
    assert ids(idx, Match("subject", "quarterly"), other) == []
    idx.drop(other)
    assert idx.doc_count(other) == 0
    assert ids(idx, Match("subject", "other"), other) == []
    assert idx.doc_count(ACC) == 3
    idx.add(other, [IndexDoc("M2", subject="Rebuilt")])             # rebuild after a drop
    idx.commit(other)
    assert ids(idx, Match("subject", "rebuilt"), other) == ["M2"]


def test_tantivy_keeps_only_a_few_writers_open_and_never_drops_uncommitted_work(tmp_path):
    """Each open writer holds up to its heap of memory: a server of many accounts keeps at most
    max_writers open, closing the least recently used one that has nothing uncommitted."""
    from indexer.tantivy_engine import TantivyIndex

    index = TantivyIndex(tmp_path / "index", max_writers=2)
    try:
        accounts = [f"Aw{n}" for n in range(5)]
        index.add(accounts[0], [IndexDoc("M1", subject="pending zero")])  # not committed yet
        for n, account in enumerate(accounts[1:], 1):
            index.add(account, [IndexDoc("M1", subject=f"word{n} here")])
            index.commit(account)
            assert len(index._writers) <= 2  # the uncommitted one among them
        index.commit(accounts[0])  # its writer was kept, so its document is there
        assert ids(index, Match("subject", "pending"), accounts[0]) == ["M1"]
        for n, account in enumerate(accounts[1:], 1):
            assert ids(index, Match("subject", f"word{n}"), account) == ["M1"]
        index.add(accounts[1], [IndexDoc("M2", subject="again")])  # a closed writer reopens
        index.commit(accounts[1])
        assert ids(index, Match("subject", "again"), accounts[1]) == ["M2"]
        assert len(index._writers) <= 2
    finally:
        index.close()


def test_long_ids_and_bad_account_ids(idx):
    long_id = "M" + "x" * 40
    idx.add(ACC, [IndexDoc(long_id, subject="lengthy id")])
    idx.commit(ACC)
    assert ids(idx, Match("subject", "lengthy")) == [long_id]
    with pytest.raises(ValueError):
        idx.search("../etc", Match("text", "x"))


def test_reopen_keeps_documents(idx, tmp_path):
    engine = idx.engine
    idx.close()
    again = open_index(engine, str(tmp_path / "index"))
    try:
        assert again.doc_count(ACC) == 3
        assert ids(again, Match("from", "田太")) == ["M2"]
    finally:
        again.close()


def test_other_engines_index_is_refused(idx, tmp_path):
    other = open_index("whoosh" if idx.engine == "tantivy" else "tantivy", str(tmp_path / "index"))
    try:
        with pytest.raises(RuntimeError, match="reindex"):
            other.search(ACC, Match("text", "cafe"))
    finally:
        other.close()


class Killed(BaseException):
    """Stands for a kill -9: nothing after it runs, what was written stays."""


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("marker", ["none", "empty"])
def test_account_index_creation_survives_a_kill(engine, marker, tmp_path, monkeypatch):
    """A kill while an account's first index is made (the engine's files written, the marker not
    yet or only created empty) left a directory that was refused as a foreign index until a
    reindex: the background indexer retried forever and `tidings check` never became clean.
    The next process sees no index yet, and the first commit makes it."""
    import indexer.base as base

    root = tmp_path / "index"
    first = open_index(engine, str(root))

    def killed_at_marker(directory, content):
        if marker == "empty":
            (directory / base.MARKER).write_text("")
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(base, "write_marker", killed_at_marker)
        with pytest.raises(Killed):
            first.add(ACC, DOCS)     # tantivy makes the index for its writer, whoosh at commit
            first.commit(ACC)
    again = open_index(engine, str(root))   # the restarted process
    try:
        assert again.search(ACC, Not(Match("text", ""))) == set()   # as `tidings check` asks
        again.add(ACC, DOCS)
        again.commit(ACC)
        assert again.doc_count(ACC) == 3
        assert ids(again, Match("text", "cafe")) == ["M3"]
    finally:
        again.close()
    assert sorted(p.name for p in root.iterdir()) == [ACC]   # the interrupted creation is gone


def test_dropped_account_index_leaves_nothing_half_removed(idx, tmp_path, monkeypatch):
    """A kill while an account's index is deleted (`tidings reindex`) leaves no partial directory
    under the account's name."""
    import shutil

    import indexer.base as base

    root = tmp_path / "index"
    real_rmtree = shutil.rmtree

    def killed_in_rmtree(path, *a, **kw):
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            (path / base.MARKER).unlink()   # part of the directory is deleted, the marker first
            raise Killed
        return real_rmtree(path, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(shutil, "rmtree", killed_in_rmtree)
        with pytest.raises(Killed):
            idx.drop(ACC)
    engine = idx.engine
    again = open_index(engine, str(root))
    try:
        assert again.search(ACC, Not(Match("text", ""))) == set()
        again.add(ACC, DOCS[:1])
        again.commit(ACC)
        assert again.doc_count(ACC) == 1
    finally:
        again.close()


def test_open_index_rejects_unknown_engine(tmp_path):
    with pytest.raises(ValueError, match="unknown search engine 'lucene'"):
        open_index("lucene", str(tmp_path))


# --------------------------------------------------------------------------- snippets
PREVIEWS = {d.email_id: (d.subject, d.body) for d in DOCS}


def test_snippets_mark_and_escape(idx):
    snip = idx.snippets(ACC, Match("text", "cafe"), ["M3", "M1", "M404"], PREVIEWS)
    assert set(snip) == {"M3", "M1"}                                 # unknown ids are left out
    assert snip["M3"]["subject"] is None                            # "Café" is not "cafe"
    assert idx.snippets(ACC, Match("text", "menu"), ["M3"], PREVIEWS)["M3"]["subject"] == \
        "Café <mark>menu</mark> &lt;b&gt;&amp;"
    assert snip["M3"]["preview"] == "Our <mark>cafe</mark> opens at nine. The quarterly numbers are in."
    assert snip["M1"] == {"subject": None, "preview": None}


def test_snippet_fields_follow_the_condition(idx):
    snip = idx.snippets(ACC, Match("subject", "quarterly"), ["M1", "M3"], PREVIEWS)
    assert snip["M1"] == {"subject": "<mark>Quarterly</mark> report", "preview": None}
    assert snip["M3"] == {"subject": None, "preview": None}
    snip = idx.snippets(ACC, And([Match("body", '"end of the day"'), Not(Match("text", "category"))]),
                        ["M1", "M2"], PREVIEWS)
    assert snip["M1"]["preview"].endswith("at the <mark>end of the day</mark>.")
    assert "category" in snip["M1"]["preview"] and "<mark>category" not in snip["M1"]["preview"]
    assert snip["M2"]["preview"] is None                             # words present, not the phrase


def test_preview_is_short_and_around_the_match(idx):
    body = "lorem ipsum " * 100 + "the <needle> & more " + "dolor sit amet " * 100
    snip = idx.snippets(ACC, Match("body", "needle"), ["X"], {"X": (None, body)})["X"]
    assert snip["subject"] is None
    prev = snip["preview"]
    assert "<mark>needle</mark>&gt; &amp; more" in prev
    assert len(prev.encode()) <= 255 and prev.split()[0] in ("lorem", "ipsum")      # whole words
    cjk = "文字" * 300 + "山田太郎" + "文字" * 300
    prev = idx.snippets(ACC, Match("body", "田太"), ["X"], {"X": ("", cjk)})["X"]["preview"]
    assert "山<mark>田太</mark>郎" in prev and len(prev.encode()) <= 255


def test_search_top_pages_in_sort_key_order(tmp_path):
    for engine in ENGINES:
        index = open_index(engine, str(tmp_path / engine))
        docs = [IndexDoc(f"M{n}", subject=f"common word{n % 2}", sort_key=key)
                for n, key in enumerate([50, 10, 40, 30, 20])]
        index.add(ACC, docs + [IndexDoc("M9", subject="other")])
        index.commit(ACC)
        assert index.search_top(ACC, Match("subject", "common"), 0, 3) == (5, ["M0", "M2", "M3"])
        assert index.search_top(ACC, Match("subject", "common"), 3, 3) == (5, ["M4", "M1"])
        assert index.search_top(ACC, Match("subject", "common"), 0, 2, descending=False) == (5, ["M1", "M4"])
        assert index.search_top(ACC, Match("subject", "word1"), 0, 10) == (2, ["M3", "M1"])
        assert index.search_top(ACC, Match("subject", "absent"), 0, 10) == (0, [])
        index.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("content", [b"", b'{"engine": "tant', b"[]"])
def test_unreadable_marker_is_reported_as_damaged_and_a_drop_repairs_it(engine, content, tmp_path):
    """An empty or half-written marker (a full disk under an older version) was a JSON decode error
    on every search and in `tidings check`; it is IndexDamaged, which the app repairs by a rebuild."""
    from indexer import IndexDamaged, IndexMismatch

    root = tmp_path / "index"
    first = open_index(engine, str(root))
    first.add(ACC, DOCS)
    first.commit(ACC)
    first.close()
    (root / ACC / "tidings-index.json").write_bytes(content)
    again = open_index(engine, str(root))
    try:
        with pytest.raises(IndexDamaged) as caught:
            again.verify(ACC)
        assert isinstance(caught.value, IndexMismatch)  # callers that repair a mismatch repair this too
        with pytest.raises(IndexDamaged):
            again.search(ACC, Match("text", "cafe"))
        again.drop(ACC)
        again.add(ACC, DOCS)
        again.commit(ACC)
        assert ids(again, Match("text", "cafe")) == ["M3"]
    finally:
        again.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_marker_is_written_atomically(engine, tmp_path):
    """No temp file is left beside the marker, and the marker is whole JSON."""
    import json

    root = tmp_path / "index"
    index = open_index(engine, str(root))
    try:
        index.add(ACC, DOCS)
        index.commit(ACC)
    finally:
        index.close()
    assert json.loads((root / ACC / "tidings-index.json").read_text())["engine"] == engine
    assert not list((root / ACC).glob(".tidings-index.json*"))


@pytest.mark.parametrize("text", [
    "漢字abc def漢字 and abc def again",
    "日本語のテキストで general と書く。general-purpose 漢general字",
    "café abc def 東京 ABC\tDEF; abcdef xabc def abc_def",
    "Ünïcödé 中文 abc def 中 abc def中",
    "한국어 abc 한 def abc def 끝",
])
def test_the_regex_path_finds_what_the_token_walk_finds_in_text_with_cjk(text):
    # text with CJK characters (each one a token) takes the regular expression too: same spans
    from indexer.snippets import _scan, find_matches, merge_spans

    for phrases in ([("abc", "def")], [("general",)], [("abc",), ("def",)], [("café",)]):
        assert find_matches(text, phrases) == merge_spans(_scan(text, phrases, None)), (text, phrases)


def test_a_word_touching_cjk_characters_is_found_and_a_longer_word_is_not():
    from indexer.snippets import find_matches

    assert find_matches("漢字abc def漢字 and abc def again", [("abc", "def")]) == [(2, 9), (16, 23)]
    assert find_matches("漢xabc def 字", [("abc", "def")]) == []  # "xabc" is another token


def test_a_preview_after_a_long_run_of_whitespace_still_fills_its_room():
    # the text after the match starts with a whitespace run that collapses to one space: the
    # preview takes more text until the 255 octets are used, cut at a word boundary
    from indexer.snippets import PREVIEW_MAX_OCTETS, find_matches, preview

    text = "match" + " " * 600 + "word " * 200
    out = preview(text, find_matches(text, [("match",)]))
    assert out.startswith("<mark>match</mark> word word")
    assert PREVIEW_MAX_OCTETS - 10 <= len(out.encode()) <= PREVIEW_MAX_OCTETS
    assert out.endswith("word")
