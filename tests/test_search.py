"""Full-text search, black-box over HTTP (issue 3; RFC 8621 §4.4.1 text conditions, §5 SearchSnippet).

Every test runs against both engines: the module fixture starts one real `tidings serve
--search-engine <engine>` per engine over its own data directory and imports a small corpus of
hand-written RFC 5322 messages into one account (and a little mail into a second account on the same
server). Tests that change the account use their own unique words, so they never disturb the
queries on the shared corpus.

The documented search rules (indexer/analysis.py): case-insensitive (NFC + lower-case), diacritics
significant ("café" != "cafe"), whole words only, no stemming, no stop words, every CJK character
its own token (so a run of characters is a phrase), several words must all match, a quoted string
is a phrase (adjacent, in order).

| name   | mailbox  | from                                | to / cc / bcc                                  | subject / body words                  |
|--------|----------|-------------------------------------|------------------------------------------------|---------------------------------------|
| plain  | inbox    | Alice Example <alice@example.com>   | to bob@example.org                             | Pomegranate / Kumquat cartography     |
| eod1   | inbox    | Grace Hopperton <grace@example.com> | to alice@example.com                           | "at the end of the day"               |
| eod2   | inbox    | Grace Hopperton <grace@example.com> | to team@example.com                            | "the end, of day one"                 |
| ccmsg  | inbox    | Carol Quillsworth <carol@...net>    | to Dave <dave@..com>, cc Erin Ccperson <erin@..net>, bcc frank@bccdomain.example | Minutes |
| cjk    | inbox    | 山田太郎 <yamada@example.jp> (=?utf-8?B?)| to alice@example.com                        | 会議のお知らせ / 明日の会議は東京で行います |
| html   | inbox    | henry@example.com                   | to alice                                       | text/html only: The <b>Xylophone</b> concert, cr&egrave;me |
| att    | inbox    | ivy@example.com                     | to alice                                       | text attachment: saffronella          |
| hdr    | inbox    | builds@ci.example.com               | to alice; X-Priority: 1; List-Id: <dev.lists.example.com> | Build broken               |
| own    | Projects | jack@example.com                    | to alice                                       | Gazebo                                |
| cafe1  | inbox    | kate@example.com                    | to alice                                       | Café meeting / CAFÉ, MixedCase        |
| cafe2  | inbox    | kate@example.com                    | to alice                                       | cafe (no accent)                      |
| lh1    | inbox    | lena@example.com  ($flagged)        | to alice                                       | Lighthouse / beacon (biggest)         |
| lh2    | inbox    | lena@example.com  (reply to lh1)    | to alice                                       | Re: Lighthouse (smallest)             |
| lh3    | inbox    | lena@example.com                    | to alice                                       | Lighthouse keeper (middle size)       |
| esc    | inbox    | mike@example.com                    | to alice                                       | "<b> & </b> Escapetest"               |
"""

from __future__ import annotations

import base64
import unicodedata
from dataclasses import dataclass, field

import pytest

from tests.conftest import CORE, Jmap, Server, tidings, unique

ENGINES = ["tantivy", "whoosh"]


# ------------------------------------------------------------------------------------------ corpus
def mail(headers: list[str], body: list[str] | str) -> bytes:
    """An RFC 5322 message with CRLF line ends."""
    lines = body if isinstance(body, list) else body.split("\n")
    return ("\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def b_word(text: str) -> str:
    """An RFC 2047 encoded-word (UTF-8, base64)."""
    return "=?utf-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def b64_lines(text: str) -> list[str]:
    data = base64.b64encode(text.encode()).decode()
    return [data[i:i + 76] for i in range(0, len(data), 76)]


TEXT = "Content-Type: text/plain; charset=us-ascii"
PADDING = [f"filler text line number {i} for the size of this message" for i in range(60)]


def corpus_messages() -> dict[str, tuple[bytes, str, dict]]:
    """name -> (raw message, mailbox role or name, keywords)."""
    to_alice = "To: Alice Example <alice@example.com>"
    msgs = {
        "plain": mail(["From: Alice Example <alice@example.com>", "To: bob@example.org",
                       "Subject: Quarterly report: Pomegranate", "Message-ID: <plain@example.com>",
                       "Date: Mon, 01 Jan 2024 10:00:00 +0000", "MIME-Version: 1.0", TEXT],
                      "Kumquat figures are in. The report is final.\nSee the cartography appendix."),
        "eod1": mail(["From: Grace Hopperton <grace@example.com>", "To: alice@example.com",
                      "Subject: Daily wrap", "Message-ID: <eod1@example.com>", "MIME-Version: 1.0", TEXT],
                     "We will finish this at the end of the day, promise."),
        "eod2": mail(["From: Grace Hopperton <grace@example.com>", "To: team@example.com",
                      "Subject: Trip planning", "Message-ID: <eod2@example.com>", "MIME-Version: 1.0", TEXT],
                     "This is the end, of day one of the trip."),
        "ccmsg": mail(["From: Carol Quillsworth <carol@example.net>", "To: Dave <dave@example.com>",
                       "Cc: Erin Ccperson <erin@example.net>", "Bcc: frank@bccdomain.example",
                       "Subject: Minutes", "Message-ID: <ccmsg@example.net>", "MIME-Version: 1.0", TEXT],
                      "Minutes from the weekly sync."),
        "cjk": mail([f"From: {b_word('山田太郎')} <yamada@example.jp>", "To: alice@example.com",
                     f"Subject: {b_word('会議のお知らせ')}", "Message-ID: <cjk@example.jp>", "MIME-Version: 1.0",
                     "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"],
                    b64_lines("明日の会議は東京で行います。よろしくお願いします。")),
        "html": mail(["From: henry@example.com", to_alice, "Subject: Concert tonight",
                      "Message-ID: <html@example.com>", "MIME-Version: 1.0",
                      "Content-Type: text/html; charset=us-ascii"],
                     '<html><head><style>p { color: qqstylezz; }</style></head><body>'
                     '<div class="qqzzattr" id="wrapperzz"><p>The <b>Xylophone</b> concert '
                     'is tonight</p><p>Dessert: cr&egrave;me br&ucirc;l&eacute;e</p></div></body></html>'),
        "att": mail(["From: ivy@example.com", to_alice, "Subject: Recipe",
                     "Message-ID: <att@example.com>", "MIME-Version: 1.0",
                     'Content-Type: multipart/mixed; boundary="XXsep"'],
                    ["--XXsep", TEXT, "", "See the attached recipe.", "--XXsep",
                     'Content-Type: text/plain; charset=us-ascii; name="recipe.txt"',
                     'Content-Disposition: attachment; filename="recipe.txt"', "",
                     "The secret ingredient is saffronella.", "--XXsep--"]),
        "hdr": mail(["From: builds@ci.example.com", to_alice, "Subject: Build broken",
                     "Message-ID: <hdr@ci.example.com>", "X-Priority: 1",
                     "List-Id: Dev list <dev.lists.example.com>", "X-Label: alpha beta", "X-Label: gamma delta",
                     "MIME-Version: 1.0", TEXT],
                    "The nightly build is broken again."),
        "own": mail(["From: jack@example.com", to_alice, "Subject: Gazebo construction",
                     "Message-ID: <own@example.com>", "MIME-Version: 1.0", TEXT],
                    "Timber order for the gazebo."),
        "cafe1": mail(["From: kate@example.com", to_alice, "Subject: =?utf-8?Q?Caf=C3=A9?= meeting",
                       "Message-ID: <cafe1@example.com>", "MIME-Version: 1.0",
                       "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"],
                      "Meet at the CAFÉ near the station. MixedCase words here."),
        "cafe2": mail(["From: kate@example.com", to_alice, "Subject: Closed",
                       "Message-ID: <cafe2@example.com>", "MIME-Version: 1.0", TEXT],
                      "The cafe is closed today."),
        "lh1": mail(["From: lena@example.com", to_alice, "Subject: Lighthouse",
                     "Message-ID: <lh1@example.com>", "MIME-Version: 1.0", TEXT],
                    ["The beacon of the lighthouse is lit."] + PADDING),
        "lh2": mail(["From: lena@example.com", to_alice, "Subject: Re: Lighthouse",
                     "Message-ID: <lh2@example.com>", "In-Reply-To: <lh1@example.com>",
                     "References: <lh1@example.com>", "MIME-Version: 1.0", TEXT],
                    "ok"),
        "lh3": mail(["From: lena@example.com", to_alice, "Subject: Lighthouse keeper",
                     "Message-ID: <lh3@example.com>", "MIME-Version: 1.0", TEXT],
                    ["The keeper arrives on Monday."] + PADDING[:20]),
        "esc": mail(["From: mike@example.com", to_alice, "Subject: <b> & </b> Escapetest",
                     "Message-ID: <esc@example.com>", "MIME-Version: 1.0", TEXT],
                    "escapetest body with <tags> & ampersands"),
    }
    boxes = {name: "inbox" for name in msgs}
    boxes["own"] = "Projects"
    keywords = {name: {} for name in msgs}
    keywords["lh1"] = {"$flagged": True}
    return {name: (raw, boxes[name], keywords[name]) for name, raw in msgs.items()}


OTHER_SECRET = "otterlingsecret"


@dataclass
class Corpus:
    engine: str
    server: Server
    client: Jmap
    other: Jmap  # a second user on the same server
    inbox: str
    projects: str
    ids: dict[str, str]  # name -> email id
    threads: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    other_ids: dict[str, str] = field(default_factory=dict)

    def names(self, ids: list[str]) -> list[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return [by_id.get(i, i) for i in ids]

    def query(self, flt: dict | None, **args) -> dict:
        return self.client.ok("Email/query", filter=flt, **args)

    def q(self, flt: dict | None, **args) -> list[str]:
        """The result names, in order."""
        return self.names(self.query(flt, **args)["ids"])

    def s(self, flt: dict | None, **args) -> set[str]:
        """The result names, as a set (for tests of what matches, not of order)."""
        names = self.q(flt, **args)
        assert len(names) == len(set(names)), names
        return set(names)


@pytest.fixture(scope="module", params=ENGINES)
def corpus(request, tmp_path_factory) -> Corpus:
    engine = request.param
    data = tmp_path_factory.mktemp(f"search-{engine}")
    tidings("user", "add", "alice", "--password", "alice-pw", "--email", "alice@example.com", data=data)
    tidings("user", "add", "otto", "--password", "otto-pw", "--email", "otto@example.com", data=data)
    server = Server(data, extra=("--search-engine", engine))
    try:
        client = Jmap(server, "alice", "alice-pw")
        other = Jmap(server, "otto", "otto-pw")
        inbox = client.mailbox("inbox")
        r = client.ok("Mailbox/set", create={"p": {"name": "Projects"}})
        projects = r["created"]["p"]["id"]
        emails = {}
        for i, (name, (raw, box, keywords)) in enumerate(corpus_messages().items()):
            blob = client.upload(raw)
            emails[name] = {"blobId": blob["blobId"], "mailboxIds": {inbox if box == "inbox" else projects: True},
                            "keywords": keywords, "receivedAt": f"2024-01-{i + 1:02d}T10:00:00Z"}
        r = client.ok("Email/import", emails=emails)
        assert r.get("notCreated") is None and len(r["created"]) == len(emails), r
        created = r["created"]
        c = Corpus(engine, server, client, other, inbox, projects, {k: v["id"] for k, v in created.items()},
                   {k: v["threadId"] for k, v in created.items()}, {k: v["size"] for k, v in created.items()})
        # the premises of the sort and thread tests
        assert c.threads["lh1"] == c.threads["lh2"] != c.threads["lh3"], c.threads
        assert c.sizes["lh2"] < c.sizes["lh3"] < c.sizes["lh1"], c.sizes
        # the other account: its own secret, and a byte-identical copy of alice's "plain"
        o_inbox = other.mailbox("inbox")
        secret = mail(["From: zoe@example.com", "To: otto@example.com", f"Subject: {OTHER_SECRET} plans",
                       "Message-ID: <otto1@example.com>", "MIME-Version: 1.0", TEXT],
                      f"Only otto may find {OTHER_SECRET}.")
        c.other_ids["secret"] = other.import_message(secret, o_inbox)["id"]
        c.other_ids["plain"] = other.import_message(corpus_messages()["plain"][0], o_inbox)["id"]
        yield c
    finally:
        server.stop()


def method_error(client: Jmap, method: str, **args) -> dict:
    name, result = client.call(method, args)
    assert name == "error", (name, result)
    return result


def import_new(c: Corpus, subject: str, body: str, mailbox: str | None = None) -> str:
    """Imports a new message (UTF-8 body) into alice's account; returns its id."""
    raw = mail(["From: nora@example.com", "To: alice@example.com", f"Subject: {subject}",
                f"Message-ID: <{unique('mid')}@example.com>", "MIME-Version: 1.0",
                "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"], body)
    return c.client.import_message(raw, mailbox or c.inbox)["id"]


# ---------------------------------------------------------------------------------- word semantics
def test_words_are_case_insensitive(corpus):
    for word in ("pomegranate", "POMEGRANATE", "pOmEgRaNaTe", "Pomegranate"):
        assert corpus.s({"text": word}) == {"plain"}, word
    for word in ("mixedcase", "MIXEDCASE", "MixedCase"):
        assert corpus.s({"text": word}) == {"cafe1"}, word
    assert corpus.s({"body": "KUMQUAT"}) == {"plain"}


def test_non_ascii_words_are_case_insensitive_and_diacritics_are_significant(corpus):
    assert corpus.s({"text": "café"}) == {"cafe1"}  # subject "Café", body "CAFÉ"
    assert corpus.s({"body": "café"}) == {"cafe1"}  # the body has only the upper-case "CAFÉ"
    assert corpus.s({"subject": "CAFÉ"}) == {"cafe1"}
    assert corpus.s({"text": unicodedata.normalize("NFD", "café")}) == {"cafe1"}  # decomposed accent
    assert corpus.s({"text": "cafe"}) == {"cafe2"}  # documented: "café" and "cafe" differ


def test_words_match_whole_words_only(corpus):
    assert corpus.s({"text": "cartography"}) == {"plain"}
    for part in ("cart", "carto", "graphy", "cartograph", "cartographyx", "pomegran", "kumqua"):
        assert corpus.s({"text": part}) == set(), part


def test_every_word_must_match(corpus):
    assert corpus.s({"text": "kumquat report"}) == {"plain"}
    assert corpus.s({"text": "kumquat xylophone"}) == set()
    assert corpus.s({"text": "lighthouse keeper"}) == {"lh3"}
    # subject word + body word of the same email, under `text`
    assert corpus.s({"text": "pomegranate cartography"}) == {"plain"}


def test_no_stemming_in_subject_and_address_fields(corpus):
    # the issue allows stemming only for text and body; tidings documents none at all
    assert corpus.s({"subject": "reports"}) == set()
    assert corpus.s({"subject": "quarter"}) == set()
    assert corpus.s({"from": "alices"}) == set()
    assert corpus.s({"to": "bobs"}) == set()
    assert corpus.s({"text": "figure"}) == set()  # the body says "figures"


def test_stop_words_are_words(corpus):
    # no stop words: "of" and "the" are indexed and searchable
    assert {"eod1", "eod2"} <= corpus.s({"text": "of"})
    assert {"eod1", "eod2"} <= corpus.s({"body": "the"})
    # unquoted: all words must match, in any order, anywhere
    assert corpus.s({"body": "end of the day"}) == {"eod1", "eod2"}
    assert corpus.s({"body": "day the of end"}) == {"eod1", "eod2"}


def test_quoted_phrase_needs_adjacent_words_in_order(corpus):
    assert corpus.s({"text": '"end of the day"'}) == {"eod1"}
    assert corpus.s({"body": '"end of the day"'}) == {"eod1"}
    assert corpus.s({"body": '"of the day"'}) == {"eod1"}
    assert corpus.s({"body": '"end of day"'}) == {"eod2"}  # punctuation is no word
    assert corpus.s({"body": '"the end of"'}) == {"eod1", "eod2"}
    assert corpus.s({"body": '"day the of end"'}) == set()
    assert corpus.s({"body": '"day end"'}) == set()
    # a phrase and a word together
    assert corpus.s({"body": '"end of the day" promise'}) == {"eod1"}
    assert corpus.s({"body": '"end of the day" trip'}) == set()
    # a phrase never spans the subject and the body
    assert corpus.s({"text": '"pomegranate kumquat"'}) == set()
    # HTML markup does not break adjacency of the text around it
    assert corpus.s({"text": '"the xylophone concert"'}) == {"html"}


# ---------------------------------------------------------------------------------- address fields
def test_from_matches_whole_address_local_part_domain_and_display_name(corpus):
    assert corpus.s({"from": "alice@example.com"}) == {"plain"}
    assert corpus.s({"from": "ALICE@EXAMPLE.COM"}) == {"plain"}
    assert corpus.s({"from": "alice"}) == {"plain"}
    assert corpus.s({"from": "Alice Example"}) == {"plain"}
    assert corpus.s({"from": '"Alice Example"'}) == {"plain"}
    assert corpus.s({"from": '"Quillsworth Carol"'}) == {"ccmsg"}  # display name, then the address
    assert corpus.s({"from": '"net example"'}) == set()
    assert corpus.s({"from": "carol@example.net"}) == {"ccmsg"}
    assert corpus.s({"from": "carol"}) == {"ccmsg"}
    assert corpus.s({"from": "example.net"}) == {"ccmsg"}
    assert corpus.s({"from": "Quillsworth"}) == {"ccmsg"}
    assert corpus.s({"from": "ci.example.com"}) == {"hdr"}
    from_example_com = corpus.s({"from": "example.com"})
    assert {"plain", "eod1", "eod2", "html", "hdr", "lh1"} <= from_example_com
    assert not {"ccmsg", "cjk"} & from_example_com


def test_from_does_not_match_other_address_fields(corpus):
    # alice is in many To fields, erin in a Cc, frank in a Bcc
    assert corpus.s({"from": "erin@example.net"}) == set()
    assert corpus.s({"from": "frank"}) == set()
    assert corpus.s({"from": "bob@example.org"}) == set()
    assert corpus.s({"from": "dave"}) == set()


def test_from_cjk_display_name_and_runs_of_its_characters(corpus):
    assert corpus.s({"from": "山田太郎"}) == {"cjk"}
    assert corpus.s({"from": "田太"}) == {"cjk"}
    assert corpus.s({"from": "山田"}) == {"cjk"}
    assert corpus.s({"from": "太郎"}) == {"cjk"}
    assert corpus.s({"from": "太田"}) == set()  # the characters, but not in this order
    assert corpus.s({"from": "山田花子"}) == set()
    assert corpus.s({"from": "yamada@example.jp"}) == {"cjk"}
    assert corpus.s({"text": "山田太郎"}) == {"cjk"}


def test_cjk_text_without_spaces_is_found_by_any_run(corpus):
    assert corpus.s({"body": "東京"}) == {"cjk"}
    assert corpus.s({"body": "京で行"}) == {"cjk"}
    assert corpus.s({"text": "明日の会議"}) == {"cjk"}
    assert corpus.s({"body": "東京都"}) == set()
    assert corpus.s({"body": "京東"}) == set()
    assert corpus.s({"subject": "お知らせ"}) == {"cjk"}
    assert corpus.s({"subject": "東京"}) == set()  # body only


def test_to_cc_bcc_are_each_restricted_to_their_field(corpus):
    assert corpus.s({"to": "bob@example.org"}) == {"plain"}
    assert corpus.s({"to": "bob"}) == {"plain"}
    assert corpus.s({"to": "dave@example.com"}) == {"ccmsg"}
    assert corpus.s({"to": "Dave"}) == {"ccmsg"}
    assert corpus.s({"to": "team"}) == {"eod2"}
    assert corpus.s({"to": "erin"}) == set()
    assert corpus.s({"to": "frank"}) == set()
    assert corpus.s({"to": "carol"}) == set()
    assert {"eod1", "cjk", "html", "lh1"} <= corpus.s({"to": "alice@example.com"})
    assert "plain" not in corpus.s({"to": "alice"})  # alice is plain's sender

    assert corpus.s({"cc": "erin@example.net"}) == {"ccmsg"}
    assert corpus.s({"cc": "Ccperson"}) == {"ccmsg"}
    assert corpus.s({"cc": "erin"}) == {"ccmsg"}
    assert corpus.s({"cc": "dave"}) == set()
    assert corpus.s({"cc": "frank"}) == set()
    assert corpus.s({"cc": "carol"}) == set()

    assert corpus.s({"bcc": "frank@bccdomain.example"}) == {"ccmsg"}
    assert corpus.s({"bcc": "bccdomain.example"}) == {"ccmsg"}
    assert corpus.s({"bcc": "frank"}) == {"ccmsg"}
    assert corpus.s({"bcc": "erin"}) == set()
    assert corpus.s({"bcc": "dave"}) == set()


# ---------------------------------------------------------------------------------- subject, body, text
def test_subject_never_matches_body_only_words(corpus):
    assert corpus.s({"subject": "pomegranate"}) == {"plain"}
    assert corpus.s({"subject": "kumquat"}) == set()
    assert corpus.s({"subject": "cartography"}) == set()
    assert corpus.s({"subject": "saffronella"}) == set()
    assert corpus.s({"subject": "xylophone"}) == set()
    assert corpus.s({"subject": "alice"}) == set()  # an address is no subject word
    assert corpus.s({"subject": "lighthouse"}) == {"lh1", "lh2", "lh3"}
    assert corpus.s({"subject": "beacon"}) == set()


def test_body_never_matches_subject_only_words(corpus):
    assert corpus.s({"body": "kumquat"}) == {"plain"}
    assert corpus.s({"body": "pomegranate"}) == set()
    assert corpus.s({"body": "quarterly"}) == set()
    assert corpus.s({"body": "minutes"}) == {"ccmsg"}
    assert corpus.s({"body": "beacon"}) == {"lh1"}
    assert corpus.s({"body": "lighthouse"}) == {"lh1"}  # only lh1's body has it
    assert corpus.s({"body": "grace"}) == set()  # nor addresses
    assert corpus.s({"body": "meeting"}) == set()  # "Café meeting" is cafe1's subject


def test_text_covers_addresses_subject_and_bodies(corpus):
    assert corpus.s({"text": "pomegranate"}) == {"plain"}  # subject
    assert corpus.s({"text": "kumquat"}) == {"plain"}  # body
    assert corpus.s({"text": "Quillsworth"}) == {"ccmsg"}  # from display name
    assert corpus.s({"text": "carol@example.net"}) == {"ccmsg"}  # from address
    assert corpus.s({"text": "dave@example.com"}) == {"ccmsg"}  # to
    assert corpus.s({"text": "Ccperson"}) == {"ccmsg"}  # cc
    assert corpus.s({"text": "bccdomain"}) == {"ccmsg"}  # bcc
    assert corpus.s({"text": "yamada"}) == {"cjk"}
    assert corpus.s({"text": "bob@example.org"}) == {"plain"}


def test_html_body_text_is_found_but_not_its_markup(corpus):
    assert corpus.s({"text": "xylophone"}) == {"html"}
    assert corpus.s({"body": "xylophone concert"}) == {"html"}
    for markup in ("div", "html", "qqzzattr", "wrapperzz", "class", "href", "p", "b"):
        assert "html" not in corpus.s({"text": markup}), markup
        assert "html" not in corpus.s({"body": markup}), markup
    assert corpus.s({"body": "div"}) == set()
    assert corpus.s({"text": "qqstylezz"}) == set()  # a style sheet is no text
    # character references are text once decoded
    assert corpus.s({"body": '"crème brûlée"'}) == {"html"}
    assert corpus.s({"body": "egrave"}) == set() and corpus.s({"body": "eacute"}) == set()


def test_text_attachments_are_searched_by_text_and_body(corpus):
    assert corpus.s({"text": "saffronella"}) == {"att"}
    assert corpus.s({"body": "saffronella"}) == {"att"}
    assert corpus.s({"body": '"secret ingredient is saffronella"'}) == {"att"}
    assert corpus.s({"text": "recipe"}) == {"att"}  # subject and body part


def test_header_by_name(corpus):
    assert corpus.s({"header": ["X-Priority"]}) == {"hdr"}
    assert corpus.s({"header": ["x-priority"]}) == {"hdr"}  # header names are case-insensitive
    assert corpus.s({"header": ["List-Id"]}) == {"hdr"}
    assert corpus.s({"header": ["X-No-Such-Header"]}) == set()
    assert corpus.s({"header": ["Cc"]}) == {"ccmsg"}
    assert corpus.s({"header": ["Bcc"]}) == {"ccmsg"}
    assert corpus.s({"header": ["In-Reply-To"]}) == {"lh2"}
    assert corpus.s({"header": ["References"]}) == {"lh2"}


def test_header_by_name_and_value(corpus):
    assert corpus.s({"header": ["X-Priority", "1"]}) == {"hdr"}
    assert corpus.s({"header": ["X-PRIORITY", "1"]}) == {"hdr"}
    assert corpus.s({"header": ["X-Priority", "5"]}) == set()
    assert corpus.s({"header": ["List-Id", "dev.lists.example.com"]}) == {"hdr"}
    assert corpus.s({"header": ["List-Id", "lists"]}) == {"hdr"}
    assert corpus.s({"header": ["List-Id", "other.lists.example.com"]}) == set()
    # the value is that header's, not another's
    assert corpus.s({"header": ["X-Priority", "dev"]}) == set()
    assert corpus.s({"header": ["Subject", "pomegranate"]}) == {"plain"}
    assert corpus.s({"header": ["Subject", "kumquat"]}) == set()
    assert corpus.s({"header": ["List-Id", "DEV.LISTS.EXAMPLE.COM"]}) == {"hdr"}  # case-insensitive
    # the value of a header field that appears twice: each field on its own
    assert corpus.s({"header": ["X-Label", "gamma"]}) == {"hdr"}
    assert corpus.s({"header": ["X-Label", "alpha beta"]}) == {"hdr"}
    assert corpus.s({"header": ["X-Label", "beta gamma"]}) == set()
    # an RFC 2047 encoded value is searched decoded
    assert corpus.s({"header": ["Subject", "お知らせ"]}) == {"cjk"}
    assert corpus.s({"header": ["From", "山田太郎"]}) == {"cjk"}


def test_encoded_bodies_and_subjects_are_searched_decoded(corpus):
    c = corpus
    tag = unique("enc")
    raw = (f"From: nora@example.com\r\nTo: alice@example.com\r\n"
           f"Subject: =?iso-8859-1?Q?Gr=FC=DFe_aus_Berlin?= {tag}\r\n"
           f"Message-ID: <{tag}@example.com>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           f"The word super=\r\ncalifragilistic{tag} is split by a soft line break.\r\n"
           f"Le caf=E9 est ferm=E9 {tag}.\r\n").encode()
    email_id = c.client.import_message(raw, c.inbox)["id"]
    assert c.client.ok("Email/query", filter={"body": f"supercalifragilistic{tag}"})["ids"] == [email_id]
    assert c.client.ok("Email/query", filter={"body": f'"le café est fermé {tag}"'})["ids"] == [email_id]
    assert c.client.ok("Email/query", filter={"subject": f"grüße {tag}"})["ids"] == [email_id]
    assert c.client.ok("Email/query", filter={"subject": f'"GRÜSSE aus" {tag}'})["ids"] == []  # ß is no ss
    assert c.client.ok("Email/query", filter={"body": f"super {tag}"})["ids"] == []


def test_decomposed_accents_are_found_and_marked(corpus):
    # text in NFD (as some clients write it): found by the composed word, and marked in the snippet
    c = corpus
    tag = unique("nfd")
    subject = unicodedata.normalize("NFD", f"Résumé {tag}")
    body = unicodedata.normalize("NFD", f"Please send your résumé by Friday. {tag}")
    raw = mail(["From: nora@example.com", "To: alice@example.com", f"Subject: {b_word(subject)}",
                f"Message-ID: <{tag}@example.com>", "MIME-Version: 1.0",
                "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"], body)
    email_id = c.client.import_message(raw, c.inbox)["id"]
    for flt in ({"body": f"résumé {tag}"}, {"subject": f"RÉSUMÉ {tag}"}, {"text": f"résumé {tag}"}):
        assert c.client.ok("Email/query", filter=flt)["ids"] == [email_id], flt
    assert c.client.ok("Email/query", filter={"text": f"resume {tag}"})["ids"] == []
    r = c.client.ok("SearchSnippet/get", filter={"text": "résumé"}, emailIds=[email_id])
    snippet = r["list"][0]
    assert snippet["subject"] is not None and snippet["preview"] is not None, snippet
    assert "<mark>résumé</mark>" in unicodedata.normalize("NFC", snippet["preview"]), snippet
    assert "<mark>Résumé</mark>" in unicodedata.normalize("NFC", snippet["subject"]), snippet


# ---------------------------------------------------------------------------------- combinations
def test_text_with_in_mailbox(corpus):
    assert corpus.s({"text": "gazebo"}) == {"own"}
    assert corpus.s({"text": "gazebo", "inMailbox": corpus.projects}) == {"own"}
    assert corpus.s({"text": "gazebo", "inMailbox": corpus.inbox}) == set()
    assert corpus.s({"text": "pomegranate", "inMailbox": corpus.projects}) == set()
    assert corpus.s({"text": "gazebo", "inMailboxOtherThan": [corpus.inbox]}) == {"own"}
    flt = {"operator": "AND", "conditions": [{"inMailbox": corpus.inbox}, {"subject": "lighthouse"}]}
    assert corpus.s(flt) == {"lh1", "lh2", "lh3"}


def test_text_with_keywords(corpus):
    assert corpus.s({"text": "lighthouse", "hasKeyword": "$flagged"}) == {"lh1"}
    assert corpus.s({"text": "lighthouse", "notKeyword": "$flagged"}) == {"lh2", "lh3"}
    flt = {"operator": "AND", "conditions": [{"hasKeyword": "$flagged"}, {"subject": "keeper"}]}
    assert corpus.s(flt) == set()


def test_text_under_not(corpus):
    flt = {"operator": "AND", "conditions": [
        {"subject": "lighthouse"}, {"operator": "NOT", "conditions": [{"text": "keeper"}]}]}
    assert corpus.s(flt) == {"lh1", "lh2"}
    everything_else = corpus.s({"operator": "NOT", "conditions": [{"subject": "lighthouse"}]})
    assert not everything_else & {"lh1", "lh2", "lh3"}
    assert {"plain", "cjk", "own", "esc"} <= everything_else
    flt = {"operator": "AND", "conditions": [
        {"inMailbox": corpus.projects}, {"operator": "NOT", "conditions": [{"text": "gazebo"}]}]}
    assert corpus.s(flt) == set()
    flt = {"operator": "AND", "conditions": [
        {"inMailbox": corpus.projects}, {"operator": "NOT", "conditions": [{"text": "pomegranate"}]}]}
    assert corpus.s(flt) == {"own"}


def test_text_under_or(corpus):
    flt = {"operator": "OR", "conditions": [{"subject": "pomegranate"}, {"from": "yamada"}]}
    assert corpus.s(flt) == {"plain", "cjk"}
    flt = {"operator": "OR", "conditions": [{"text": "gazebo"}, {"hasKeyword": "$flagged"}]}
    assert corpus.s(flt) == {"own", "lh1"}
    flt = {"operator": "OR", "conditions": [{"text": "saffronella"}, {"header": ["X-Priority", "1"]},
                                            {"cc": "erin"}]}
    assert corpus.s(flt) == {"att", "hdr", "ccmsg"}


def test_several_text_properties_in_one_condition_all_apply(corpus):
    assert corpus.s({"from": "lena", "subject": "keeper"}) == {"lh3"}
    assert corpus.s({"from": "lena", "body": "beacon"}) == {"lh1"}
    assert corpus.s({"from": "grace", "body": "pomegranate"}) == set()
    assert corpus.s({"from": "builds", "header": ["X-Priority"]}) == {"hdr"}
    flt = {"operator": "AND", "conditions": [{"from": "lena"}, {"body": "beacon"}]}
    assert corpus.s(flt) == {"lh1"}


def test_text_with_sorts(corpus):
    flt = {"subject": "lighthouse"}
    assert corpus.q(flt) == ["lh3", "lh2", "lh1"]  # default: newest first
    assert corpus.q(flt, sort=[{"property": "receivedAt", "isAscending": True}]) == ["lh1", "lh2", "lh3"]
    assert corpus.q(flt, sort=[{"property": "receivedAt", "isAscending": False}]) == ["lh3", "lh2", "lh1"]
    assert corpus.q(flt, sort=[{"property": "size", "isAscending": True}]) == ["lh2", "lh3", "lh1"]
    assert corpus.q(flt, sort=[{"property": "size", "isAscending": False}]) == ["lh1", "lh3", "lh2"]
    assert corpus.q(flt, sort=[{"property": "subject", "isAscending": True},
                               {"property": "receivedAt", "isAscending": True}]) == ["lh1", "lh2", "lh3"]


def test_text_with_collapse_threads(corpus):
    flt = {"subject": "lighthouse"}
    assert corpus.q(flt, collapseThreads=True) == ["lh3", "lh2"]
    assert corpus.q(flt, collapseThreads=True, sort=[{"property": "receivedAt", "isAscending": True}]) \
        == ["lh1", "lh3"]
    r = corpus.query(flt, collapseThreads=True, calculateTotal=True)
    assert r["total"] == 2
    # only matching emails represent their thread: lh2 is newer but does not match "beacon"
    assert corpus.q({"text": "beacon"}, collapseThreads=True) == ["lh1"]


def test_text_with_position_limit_and_total(corpus):
    flt = {"subject": "lighthouse"}
    asc = [{"property": "receivedAt", "isAscending": True}]
    r = corpus.query(flt, sort=asc, position=1, limit=1, calculateTotal=True)
    assert corpus.names(r["ids"]) == ["lh2"] and r["total"] == 3 and r["position"] == 1
    r = corpus.query(flt, sort=asc, position=0, limit=2, calculateTotal=True)
    assert corpus.names(r["ids"]) == ["lh1", "lh2"] and r["total"] == 3
    r = corpus.query(flt, sort=asc, position=-1, calculateTotal=True)
    assert corpus.names(r["ids"]) == ["lh3"] and r["position"] == 2 and r["total"] == 3
    r = corpus.query(flt, sort=asc, position=10, calculateTotal=True)
    assert r["ids"] == [] and r["total"] == 3
    r = corpus.query(flt, sort=asc, anchor=corpus.ids["lh2"], anchorOffset=0, limit=5)
    assert corpus.names(r["ids"]) == ["lh2", "lh3"] and r["position"] == 1
    r = corpus.query(flt, sort=[{"property": "size", "isAscending": True}], position=1, limit=1,
                     calculateTotal=True)
    assert corpus.names(r["ids"]) == ["lh3"] and r["total"] == 3
    r = corpus.query({"text": "nosuchwordanywhere"}, calculateTotal=True)
    assert r["ids"] == [] and r["total"] == 0
    r = corpus.query({"text": "lighthouse", "inMailbox": corpus.inbox}, calculateTotal=True, limit=1)
    assert corpus.names(r["ids"]) == ["lh3"] and r["total"] == 3


# ---------------------------------------------------------------------------------- changes
def apply_changes(old: list[str], changes: dict) -> list[str]:
    """RFC 8620 §5.6: remove every removed id, then insert the added ones at their indexes."""
    removed = set(changes["removed"])
    out = [i for i in old if i not in removed]
    for item in sorted(changes["added"], key=lambda a: a["index"]):
        out.insert(item["index"], item["id"])
    return out


def check_query_changes(c: Corpus, flt: dict, old: dict, must_add: set[str], must_remove: set[str]) -> dict:
    sort = [{"property": "receivedAt", "isAscending": False}]
    now = c.client.ok("Email/query", filter=flt, sort=sort)
    name, r = c.client.call("Email/queryChanges", filter=flt, sort=sort, sinceQueryState=old["queryState"])
    if name == "error":
        assert r["type"] == "cannotCalculateChanges", r
        return now
    assert name == "Email/queryChanges", r
    assert r["oldQueryState"] == old["queryState"] and r["newQueryState"] == now["queryState"], (r, now)
    assert apply_changes(old["ids"], r) == now["ids"], (old["ids"], r, now["ids"])
    assert must_add <= {a["id"] for a in r["added"]}, r
    assert must_remove <= set(r["removed"]), r
    return now


def test_query_changes_with_text_filter(corpus):
    c = corpus
    word = unique("qchg")
    sort = [{"property": "receivedAt", "isAscending": False}]
    flt = {"text": word}
    first = import_new(c, f"{word} one", "first")
    old = c.client.ok("Email/query", filter=flt, sort=sort)
    assert old["ids"] == [first]
    added = import_new(c, "second", f"body has {word}")
    import_new(c, "unrelated", "no such word here " + unique("x"))  # changes the state, not the results
    now = check_query_changes(c, flt, old, {added}, set())
    assert set(now["ids"]) == {first, added}
    c.client.ok("Email/set", destroy=[added])
    later = check_query_changes(c, flt, now, set(), {added})
    assert later["ids"] == [first]


def test_query_changes_with_phrase_filter_and_keyword_update(corpus):
    c = corpus
    word = unique("qph")
    flt = {"operator": "AND", "conditions": [{"body": f'"{word} alpha"'}, {"notKeyword": "$seen"}]}
    sort = [{"property": "receivedAt", "isAscending": False}]
    a = import_new(c, "phrase a", f"{word} alpha")
    import_new(c, "phrase b", f"alpha {word}")  # wrong order: never a result
    old = c.client.ok("Email/query", filter=flt, sort=sort)
    assert old["ids"] == [a]
    c.client.ok("Email/set", update={a: {"keywords/$seen": True}})
    check_query_changes(c, flt, old, set(), {a})


def test_query_changes_with_text_filter_and_collapse_threads(corpus):
    c = corpus
    word = unique("qthr")
    flt = {"text": word}
    sort = [{"property": "receivedAt", "isAscending": False}]
    root_mid = f"<{word}-root@example.com>"
    raw = mail(["From: nora@example.com", "To: alice@example.com", f"Subject: {word} thread",
                f"Message-ID: {root_mid}", "MIME-Version: 1.0", TEXT], "root")
    root = c.client.import_message(raw, c.inbox, received_at="2030-01-01T00:00:00Z")
    old = c.client.ok("Email/query", filter=flt, sort=sort, collapseThreads=True)
    assert old["ids"] == [root["id"]]
    reply = mail(["From: nora@example.com", "To: alice@example.com", f"Subject: Re: {word} thread",
                  f"Message-ID: <{word}-reply@example.com>", f"In-Reply-To: {root_mid}",
                  f"References: {root_mid}", "MIME-Version: 1.0", TEXT], "reply")
    reply_id = c.client.import_message(reply, c.inbox, received_at="2030-01-02T00:00:00Z")
    assert reply_id["threadId"] == root["threadId"]
    now = c.client.ok("Email/query", filter=flt, sort=sort, collapseThreads=True)
    assert now["ids"] == [reply_id["id"]]  # the newest matching email stands for the thread
    name, r = c.client.call("Email/queryChanges", filter=flt, sort=sort, collapseThreads=True,
                            sinceQueryState=old["queryState"])
    if name == "error":
        assert r["type"] == "cannotCalculateChanges", r
    else:
        assert name == "Email/queryChanges", r
        assert apply_changes(old["ids"], r) == now["ids"], (old["ids"], r, now["ids"])
        assert root["id"] in r["removed"] and reply_id["id"] in {a["id"] for a in r["added"]}, r


# ---------------------------------------------------------------------------------- freshness
def test_read_your_writes_import_then_query_next_request(corpus):
    for i in range(20):
        word = unique("ryw")
        email_id = import_new(corpus, f"fresh {word}", f"number {i} with {word}")
        r = corpus.client.ok("Email/query", filter={"text": word}, calculateTotal=True)
        assert r["ids"] == [email_id] and r["total"] == 1, (i, r)


def test_read_your_writes_in_one_request(corpus):
    c = corpus
    word = unique("one")
    raw = mail(["From: nora@example.com", "To: alice@example.com", f"Subject: {word}",
                f"Message-ID: <{word}@example.com>", "MIME-Version: 1.0", TEXT], "same request")
    blob = c.client.upload(raw)
    resp = c.client.request([
        ["Email/import", {"accountId": c.client.account_id,
                          "emails": {"n": {"blobId": blob["blobId"], "mailboxIds": {c.inbox: True}}}}, "a"],
        ["Email/query", {"accountId": c.client.account_id, "filter": {"subject": word}}, "b"],
    ])["methodResponses"]
    assert resp[0][0] == "Email/import", resp
    assert resp[1][0] == "Email/query", resp
    assert resp[1][1]["ids"] == [resp[0][1]["created"]["n"]["id"]]


def test_email_created_with_email_set_is_found_at_once(corpus):
    c = corpus
    word = unique("draft")
    drafts = c.client.mailbox("drafts")
    r = c.client.ok("Email/set", create={"d": {
        "mailboxIds": {drafts: True}, "keywords": {"$draft": True},
        "from": [{"name": "Alice Example", "email": "alice@example.com"}],
        "to": [{"name": "Quentin Draftee", "email": "quentin@example.org"}],
        "subject": f"Draft {word}",
        "bodyValues": {"b": {"value": f"draft body zanzibar{word}"}},
        "textBody": [{"partId": "b", "type": "text/plain"}]}})
    assert r.get("created"), r
    email_id = r["created"]["d"]["id"]
    assert c.client.ok("Email/query", filter={"subject": word})["ids"] == [email_id]
    assert c.client.ok("Email/query", filter={"body": f"zanzibar{word}"})["ids"] == [email_id]
    assert c.client.ok("Email/query", filter={"to": "Draftee", "subject": word})["ids"] == [email_id]


def test_destroyed_email_is_no_longer_found(corpus):
    c = corpus
    word = unique("gone")
    email_id = import_new(c, f"doomed {word}", "bye")
    assert c.client.ok("Email/query", filter={"subject": word})["ids"] == [email_id]
    r = c.client.ok("Email/set", destroy=[email_id])
    assert r["destroyed"] == [email_id], r
    assert c.client.ok("Email/query", filter={"subject": word})["ids"] == []
    assert c.client.ok("Email/query", filter={"text": word}, calculateTotal=True)["total"] == 0
    r = c.client.ok("SearchSnippet/get", filter={"text": word}, emailIds=[email_id])
    assert r["list"] == [] and r["notFound"] == [email_id]


def test_moved_email_is_found_in_its_new_mailbox(corpus):
    c = corpus
    word = unique("move")
    email_id = import_new(c, f"moving {word}", "box")
    c.client.ok("Email/set", update={email_id: {"mailboxIds": {c.projects: True}}})
    assert c.client.ok("Email/query", filter={"text": word, "inMailbox": c.projects})["ids"] == [email_id]
    assert c.client.ok("Email/query", filter={"text": word, "inMailbox": c.inbox})["ids"] == []


def test_other_accounts_mail_is_never_found(corpus):
    c = corpus
    assert c.s({"text": OTHER_SECRET}) == set()
    assert c.s({"subject": OTHER_SECRET}) == set()
    assert c.other.ok("Email/query", filter={"text": OTHER_SECRET})["ids"] == [c.other_ids["secret"]]
    # the same message in both accounts: each finds only its own copy
    assert c.other.ok("Email/query", filter={"subject": "pomegranate"})["ids"] == [c.other_ids["plain"]]
    assert c.q({"subject": "pomegranate"}) == ["plain"]
    assert c.other.ok("Email/query", filter={"text": "lighthouse"})["ids"] == []
    # and a new import into one account stays there
    word = unique("priv")
    import_new(c, word, "mine")
    assert c.other.ok("Email/query", filter={"text": word})["ids"] == []
    # snippets for the id of another account's email: ids are per account, so it is either unknown
    # here or one of alice's own emails; either way nothing of otto's text shows
    r = c.client.ok("SearchSnippet/get", filter={"text": OTHER_SECRET}, emailIds=[c.other_ids["secret"]])
    assert all(s["subject"] is None and s["preview"] is None for s in r["list"]), r
    assert len(r["list"]) + len(r["notFound"] or []) == 1, r


# ---------------------------------------------------------------------------------- SearchSnippet/get
def snippets(c: Corpus, flt: dict | None, names: list[str]) -> dict[str, dict]:
    r = c.client.ok("SearchSnippet/get", filter=flt, emailIds=[c.ids[n] for n in names])
    assert r["accountId"] == c.client.account_id
    assert not r.get("notFound"), r
    by_id = {s["emailId"]: s for s in r["list"]}
    assert set(by_id) == {c.ids[n] for n in names}, r
    return {n: by_id[c.ids[n]] for n in names}


def test_snippet_marks_matched_word_in_subject_and_preview(corpus):
    s = snippets(corpus, {"text": "report"}, ["plain"])["plain"]
    assert s["subject"] == "Quarterly <mark>report</mark>: Pomegranate"
    assert "<mark>report</mark>" in s["preview"]
    s = snippets(corpus, {"text": "POMEGRANATE"}, ["plain"])["plain"]
    assert s["subject"] == "Quarterly report: <mark>Pomegranate</mark>"
    assert s["preview"] is None  # not in the body
    s = snippets(corpus, {"text": "kumquat"}, ["plain"])["plain"]
    assert s["subject"] is None
    assert s["preview"].startswith("<mark>Kumquat</mark> figures are in.")


def test_snippet_marks_phrase_only_where_it_occurs(corpus):
    got = snippets(corpus, {"body": '"end of the day"'}, ["eod1", "eod2"])
    assert "<mark>end of the day</mark>" in got["eod1"]["preview"].replace("</mark> <mark>", " ")
    assert got["eod1"]["subject"] is None
    assert got["eod2"]["preview"] is None and got["eod2"]["subject"] is None


def test_snippet_of_html_and_cjk_and_attachment(corpus):
    got = snippets(corpus, {"text": "xylophone"}, ["html"])["html"]
    assert "<mark>Xylophone</mark>" in got["preview"]
    assert "div" not in got["preview"] and "qqzzattr" not in got["preview"] and "<b>" not in got["preview"]
    got = snippets(corpus, {"text": "東京"}, ["cjk"])["cjk"]
    assert "<mark>東京</mark>" in got["preview"] and got["subject"] is None
    got = snippets(corpus, {"subject": "会議"}, ["cjk"])["cjk"]
    assert got["subject"] == "<mark>会議</mark>のお知らせ"
    got = snippets(corpus, {"body": "saffronella"}, ["att"])["att"]
    assert "<mark>saffronella</mark>" in got["preview"]
    got = snippets(corpus, {"text": "café"}, ["cafe1", "cafe2"])
    assert got["cafe1"]["subject"] == "<mark>Café</mark> meeting"
    assert "<mark>CAFÉ</mark>" in got["cafe1"]["preview"]
    assert got["cafe2"]["subject"] is None and got["cafe2"]["preview"] is None


def test_snippet_escapes_html(corpus):
    s = snippets(corpus, {"text": "escapetest"}, ["esc"])["esc"]
    assert s["subject"] == "&lt;b&gt; &amp; &lt;/b&gt; <mark>Escapetest</mark>"
    assert s["preview"] == "<mark>escapetest</mark> body with &lt;tags&gt; &amp; ampersands"


def test_snippet_is_null_where_nothing_matched(corpus):
    got = snippets(corpus, {"text": "pomegranate"}, ["plain", "eod1", "lh1"])
    assert got["eod1"] == {"emailId": corpus.ids["eod1"], "subject": None, "preview": None}
    assert got["lh1"]["subject"] is None and got["lh1"]["preview"] is None
    # a subject condition matched the subject only: the body is not "matched text"
    s = snippets(corpus, {"subject": "report"}, ["plain"])["plain"]
    assert s["subject"] == "Quarterly <mark>report</mark>: Pomegranate" and s["preview"] is None
    # a word under NOT is never marked
    s = snippets(corpus, {"operator": "NOT", "conditions": [{"text": "kumquat"}]}, ["plain"])["plain"]
    assert s["subject"] is None and s["preview"] is None


def test_snippet_for_filter_without_text_is_null(corpus):
    for flt in (None, {"inMailbox": corpus.inbox}, {"hasKeyword": "$flagged"}):
        got = snippets(corpus, flt, ["plain", "lh1"])
        for s in got.values():
            assert s["subject"] is None and s["preview"] is None, (flt, s)


def test_snippet_preview_is_at_most_255_octets(corpus):
    s = snippets(corpus, {"text": "filler"}, ["lh1"])["lh1"]
    assert "<mark>filler</mark>" in s["preview"]
    assert len(s["preview"].encode()) <= 255, s["preview"]


def test_snippet_preview_around_a_match_deep_in_the_body(corpus):
    s = snippets(corpus, {"body": "59"}, ["lh1"])["lh1"]  # the last padding line
    assert "<mark>59</mark>" in s["preview"] and len(s["preview"].encode()) <= 255, s
    s = snippets(corpus, {"body": "report"}, ["plain"])["plain"]
    assert s["subject"] is None and "<mark>report</mark>" in s["preview"]


def test_snippet_preview_of_long_multibyte_text_stays_within_255_octets(corpus):
    c = corpus
    word = unique("mb")
    email_id = import_new(c, f"multibyte {word}", "前置き" * 40 + " 東京タワー " + "東京です。" * 200 + f" {word}")
    r = c.client.ok("SearchSnippet/get", filter={"body": "東京"}, emailIds=[email_id])
    preview = r["list"][0]["preview"]
    assert "<mark>東京</mark>" in preview, preview
    assert len(preview.encode()) <= 255, (len(preview.encode()), preview)
    assert preview.count("<mark>") == preview.count("</mark>"), preview


def test_snippet_not_found_for_unknown_ids(corpus):
    c = corpus
    r = c.client.ok("SearchSnippet/get", filter={"text": "pomegranate"},
                    emailIds=[c.ids["plain"], "Mnosuchemail", "another-unknown"])
    assert [s["emailId"] for s in r["list"]] == [c.ids["plain"]]
    assert sorted(r["notFound"]) == ["Mnosuchemail", "another-unknown"]
    assert r["list"][0]["subject"] == "Quarterly report: <mark>Pomegranate</mark>"


def test_snippet_too_many_ids_is_request_too_large(corpus):
    c = corpus
    limit = c.client.session["capabilities"][CORE]["maxObjectsInGet"]
    err = method_error(c.client, "SearchSnippet/get", accountId=c.client.account_id, filter={"text": "x"},
                       emailIds=[f"M{i}" for i in range(limit + 1)])
    assert err["type"] == "requestTooLarge", err


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("flt", [
    {"text": 5},
    {"from": None},
    {"subject": ["pomegranate"]},
    {"body": {"word": "x"}},
    {"to": True},
    {"header": ["X-Priority", "1", "extra"]},
    {"header": []},
    {"header": "X-Priority"},
    {"header": [1]},
    {"header": ["X-Priority", 1]},
    {"operator": "AND", "conditions": [{"cc": 3}]},
    {"operator": "NOT", "conditions": [{"header": ["a", "b", "c"]}]},
])
def test_invalid_text_filter_is_invalid_arguments(corpus, flt):
    for method in ("Email/query", "SearchSnippet/get", "Email/queryChanges"):
        args = {"accountId": corpus.client.account_id, "filter": flt}
        if method == "SearchSnippet/get":
            args["emailIds"] = [corpus.ids["plain"]]
        if method == "Email/queryChanges":
            args["sinceQueryState"] = corpus.query(None)["queryState"]
        err = method_error(corpus.client, method, **args)
        assert err["type"] == "invalidArguments", (method, flt, err)


@pytest.mark.parametrize("text", ['"', '"unbalanced phrase', "***", 'a"b"c', "\\", "(", "AND OR NOT",
                                  "subject:pomegranate", "*", "x" * 300, "pomegran*", "+kumquat -report",
                                  "\u0000", "   ", "", "😀", "a" * 70 + " " + "b" * 70])
def test_odd_text_is_answered_never_server_fail(corpus, text):
    for cond in ("text", "from", "subject", "body"):
        name, r = corpus.client.call("Email/query", filter={cond: text})
        assert name == "Email/query", (cond, text, r)
        name, r = corpus.client.call("SearchSnippet/get", filter={cond: text}, emailIds=[corpus.ids["plain"]])
        assert name == "SearchSnippet/get", (cond, text, r)
    name, r = corpus.client.call("Email/query", filter={"header": ["X-Priority", text]})
    assert name == "Email/query", (text, r)


def test_query_syntax_is_not_interpreted(corpus):
    # no engine query language leaks through: these are words, not operators or fields
    assert corpus.s({"text": "subject:pomegranate"}) == set()  # tokens "subject", "pomegranate"
    assert corpus.s({"text": "pomegran*"}) == set()
    assert corpus.s({"text": "+kumquat -report"}) == {"plain"}  # two words, both in plain
    assert corpus.s({"text": "kumquat OR xylophone"}) == set()
