"""vCard CHARSET labels are MIME charsets (app.mail.charsets), never Python codec names; every
imported string is valid Unicode; a card that cannot be read or stored fails alone.  Imported
in-process (`import_vcards`, what `tidings import --address-book` runs) and read back with the
real ContactCard/get."""

from __future__ import annotations

import orjson
import pytest

from app.contacts.importer import import_vcards
from app.contacts.vcard import parse_vcards
from app.protocol.registry import CONTACTS, CORE, load_methods
from app.protocol.request import CallContext, Limits
from store import open_store


def vcf(*cards: str) -> bytes:
    return "".join(f"BEGIN:VCARD\r\n{c}END:VCARD\r\n" for c in cards).encode()


@pytest.fixture
def account(tmp_path):
    store = open_store(str(tmp_path / "data"))
    user = store.create_user("zed", "h", "zed@example.com")
    yield store, user, tmp_path
    store.close()


def imported(account, data: bytes):
    """(the import report, the address book's ContactCards by name.full) after importing `data`."""
    store, user, tmp = account
    path = tmp / "cards.vcf"
    path.write_bytes(data)
    report = import_vcards(store, user["accountId"], "X", [str(path)])
    ctx = CallContext(
        store=store, user=user, limits=Limits(), using={CORE, CONTACTS}, method_capability=CONTACTS
    )
    got = load_methods()["ContactCard/get"].handler(ctx, {"accountId": user["accountId"], "ids": None})
    orjson.dumps(got)  # what the server writes: no lone surrogate
    return report, {c["name"]["full"]: c for c in got["list"]}


def test_codec_name_is_not_a_charset(account):
    # unicode_escape names a Python codec, not a charset: the text stays as it is (decoded as UTF-8)
    report, cards = imported(
        account,
        vcf(
            "VERSION:2.1\r\n"
            "N;CHARSET=unicode_escape;ENCODING=QUOTED-PRINTABLE:Caf\\u00e9;;;;\r\n"
            "FN;CHARSET=unicode_escape;ENCODING=QUOTED-PRINTABLE:Caf\\u00e9\r\n"
        ),
    )
    assert report.imported == 1 and not report.failed
    (card,) = cards.values()
    assert card["name"]["full"] == "Caf\\u00e9"
    assert card["name"]["components"] == [{"kind": "surname", "value": "Caf\\u00e9"}]


@pytest.mark.parametrize(
    "line", ["FN;CHARSET=utf-7:Plan a+2D0-b", "FN;CHARSET=utf-7;ENCODING=QUOTED-PRINTABLE:Plan a+2D0-b"]
)
def test_lone_surrogate_becomes_replacement_character(account, line):
    report, cards = imported(account, vcf(f"VERSION:2.1\r\n{line}\r\n"))
    assert report.imported == 1 and not report.failed
    assert list(cards) == ["Plan a\ufffdb"]


def test_punycode_is_not_a_charset_and_the_good_card_is_imported(account):
    report, cards = imported(
        account,
        vcf(
            "VERSION:2.1\r\nFN;CHARSET=punycode;ENCODING=QUOTED-PRINTABLE:caf-dma;x\r\n",
            "VERSION:3.0\r\nFN:Good Person\r\n",
        ),
    )
    assert report.imported == 2 and not report.failed
    assert sorted(cards) == ["Good Person", "caf-dma;x"]


def test_registered_labels_still_decode():
    cards = [
        p.card
        for p in parse_vcards(
            vcf(
                "VERSION:2.1\r\nFN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:Caf=E9\r\n",
                "VERSION:2.1\r\nFN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Caf=C3=A9\r\n",
                "VERSION:2.1\r\nFN;CHARSET=UTF-7:Caf+AOk-\r\n",
                "VERSION:2.1\r\nFN;CHARSET=ISO-8859-1:Café\r\n",  # 8-bit text of a UTF-8 file is UTF-8
            )
        )
    ]
    assert [c["name"]["full"] for c in cards] == ["Café"] * 4
    # a file that is not UTF-8: the label says what the octets of each value are
    data = (
        b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN;CHARSET=SHIFT_JIS:"
        + "山田".encode("shift_jis")
        + b"\r\nEND:VCARD\r\n"
    )
    assert next(parse_vcards(data)).card["name"]["full"] == "山田"


def test_unreadable_card_fails_alone_with_its_position(monkeypatch):
    import app.contacts.vcard as vcard

    real = vcard.lines_to_card

    def fragile(lines, text):
        if any(ln.value == "Bad Card" for ln in lines):
            raise UnicodeError("a decoder gave up")
        return real(lines, text)

    monkeypatch.setattr(vcard, "lines_to_card", fragile)
    got = list(parse_vcards(vcf("VERSION:3.0\r\nFN:Bad Card\r\n", "VERSION:3.0\r\nFN:Good Person\r\n")))
    assert got[0].card is None and got[0].line == 1 and "UnicodeError: a decoder gave up" in got[0].error
    assert got[1].card["name"]["full"] == "Good Person" and got[1].line == 5


def test_card_that_cannot_be_stored_fails_alone(account, monkeypatch):
    import app.contacts.importer as importer

    real = importer.stored_record

    def fragile(card):
        if card["name"]["full"] == "Bad Card":
            raise TypeError("str is not valid UTF-8: surrogates not allowed")
        return real(card)

    monkeypatch.setattr(importer, "stored_record", fragile)
    report, cards = imported(
        account,
        vcf("VERSION:3.0\r\nFN:First\r\n", "VERSION:3.0\r\nFN:Bad Card\r\n", "VERSION:3.0\r\nFN:Last\r\n"),
    )
    assert sorted(cards) == ["First", "Last"] and report.imported == 2 and report.book_created
    ((where, why),) = report.failed
    assert where.endswith("cards.vcf:5 (Bad Card)") and why.startswith("TypeError: str is not valid UTF-8")
