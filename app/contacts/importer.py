"""`tidings import --address-book NAME file.vcf`: vCard files into an address book.

Each card of each file is converted (`app.contacts.vcard`), validated as a JSContact Card and stored
in the address book named (case-insensitively; created when missing, when the first card is
stored; "Contacts" is the default one).  A card whose uid is already in that address book replaces
it (keeping its id and ``created``): importing the same file twice stores nothing new, and an
updated export refreshes the cards.  A malformed card fails alone, with where and why; the rest
is imported.  Cards are written 200 per transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.mailimport import is_fatal

from .addressbook import ADDRESS_BOOK
from .card import CARDS, now_utc, stored_record
from .jscontact import check_card
from .vcard import ParsedCard, parse_vcards

BATCH = 200


@dataclass
class VcardReport:
    book_name: str = ""
    book_created: bool = False
    imported: int = 0
    updated: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, why)


def _find_book(store, account_id: str, name: str) -> dict | None:
    with store.read(account_id) as r:
        for book_id in ADDRESS_BOOK.all_ids(None, r):
            book = ADDRESS_BOOK.fetch(None, r, book_id)
            if book and book["name"].casefold() == name.casefold():
                return book
    return None


def import_vcards(store, account_id: str, book_name: str, paths: list[str],
                  on_card: Callable[[], None] | None = None) -> VcardReport:
    """Imports the vCard files into the account's address book `book_name`; see the module
    docstring.  on_card() is called after each card (for a progress display)."""
    report = VcardReport(book_name=book_name)
    book = _find_book(store, account_id, book_name)
    book_id = book["id"] if book else None
    if book:
        report.book_name = book["name"]
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            report.failed.append((path, exc.strerror or str(exc)))
            continue
        pending: list[tuple[str, ParsedCard]] = []
        for parsed in parse_vcards(data):
            where = f"{path}:{parsed.line}" + (f" ({parsed.name})" if parsed.name else "")
            if parsed.error:
                report.failed.append((where, parsed.error))
            else:
                problems = check_card(parsed.card)
                if problems:
                    report.failed.append((where, "; ".join(f"{p}: {w}" for p, w in problems.items())))
                else:
                    pending.append((where, parsed))
            if on_card:
                on_card()
            if len(pending) >= BATCH:
                book_id = _store(store, account_id, book_id, book_name, pending, report)
                pending = []
        if pending:
            book_id = _store(store, account_id, book_id, book_name, pending, report)
    return report


class _Rollback(Exception):
    pass


def _store(store, account_id: str, book_id: str | None, book_name: str, cards: list[tuple[str, ParsedCard]],
           report: VcardReport) -> str | None:
    """Stores the cards in one transaction.  A card whose storing raises fails alone, as a message
    does in the mail import (app.mailimport): the transaction rolls back, the cards before it are
    stored again without it, it is reported, and the rest go on.  A storage error ends the import."""
    start = 0
    while start < len(cards):
        before = (book_id, report.book_created, report.imported, report.updated)
        failure: tuple[int, Exception] | None = None
        try:
            with store.write(account_id) as w:
                for i in range(start, len(cards)):
                    try:
                        book_id = _store_card(w, book_id, book_name, cards[i][1], report)
                    except Exception as exc:
                        if is_fatal(exc):  # a storage error ends the import, as in the mail import
                            raise
                        failure = (i, exc)
                        raise _Rollback from exc
        except _Rollback:
            pass
        if failure is None:
            return book_id
        book_id, report.book_created, report.imported, report.updated = before  # rolled back
        i, exc = failure
        if i > start:
            book_id = _store(store, account_id, book_id, book_name, cards[start:i], report)
        report.failed.append((cards[i][0], f"{type(exc).__name__}: {exc}"[:300]))
        start = i + 1
    return book_id


def _store_card(w, book_id: str | None, book_name: str, parsed: ParsedCard, report: VcardReport) -> str:
    if book_id is None:  # created with the first card stored in it
        book_id = ADDRESS_BOOK.create(None, w, {"name": book_name, "description": None, "sortOrder": 0,
                                                 "isSubscribed": True, "shareWith": None})["id"]
        report.book_created = True
    card = dict(parsed.card)
    existing = next((i for i in w.record_ids(CARDS, "uid", equals=card["uid"])
                     if book_id in ((w.record(CARDS, i) or {}).get("addressBookIds") or {})), None)
    card.setdefault("updated", now_utc())
    if existing is not None:
        old = w.record(CARDS, existing)
        card["created"] = old.get("created") or card["updated"]
        card["addressBookIds"] = old.get("addressBookIds") or {book_id: True}
        w.update_record(CARDS, existing, stored_record(card))
        report.updated += 1
    else:
        card.setdefault("created", now_utc())
        card["addressBookIds"] = {book_id: True}
        w.create_record(CARDS, stored_record(card))
        report.imported += 1
    return book_id
