"""ContactCard (RFC 9610 §3): /get, /changes, /query, /queryChanges, /set and /copy, kept in generic
storage.  A ContactCard is a JSContact Card (RFC 9553) with ``id`` and ``addressBookIds``.

Validation (`app.contacts.jscontact`): a create, and the card an update would leave, is checked
whole; invalidProperties names every bad path (``emails/e1/address``) with its reason.  The
server fills in what RFC 9553 requires and the client left out: ``@type`` "Card", ``version``
"1.0", ``uid`` (``urn:uuid:`` + a random UUID), ``created`` (now).  ``updated`` is set to now on
every create and update, unless the client sets it in that call (an import keeps a vCard's REV);
a server-set value is returned in ``created``/``updated`` (RFC 8620 §5.3).

/get returns only the properties a card has (JSContact has no nulls), and always ``id``.

/query: every FilterCondition of §3.3.1 and the sorts of §3.3.2 (created, updated, name/given,
name/surname, name/surname2).  inAddressBook, uid, hasMember and kind are answered by declared
indexes; a text condition (phone's digits aside) by the ``_words`` index of every word of the
card, the search index's tokens (`indexer.analysis`): the cards holding the query's longest word,
then checked as `app.contacts.match` describes.  Cards stored before that index get it when the
server starts (`index_words`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from app.protocol.errors import ProblemError, invalid_properties
from app.protocol.registry import CONTACTS
from app.protocol.standard import apply_patch, patch_set_error
from app.protocol.types import DataType, Property, data_type
from app.sharing import access_of, content_error, keep_hidden, readable, readable_ids
from indexer import analysis
from store import Collection

from . import match
from .jscontact import CARD_PROPERTIES, check_card

log = logging.getLogger("tidings.contacts")

# _books: the addressBookIds, _members: the members' uids, _kind: kind or its default "individual";
# stored with the card for the declared indexes, never shown
# _words: every token of the card's text (the "text" condition's values), for the text conditions
CARDS = Collection("ContactCard", "C", log="ContactCard", indexes=("_books", "uid", "_members", "_kind", "_words"))
_INTERNAL = ("_books", "_members", "_kind", "_words")
_WORDS_STEP = "contact-card-words"  # the upgrade that gave cards stored earlier their _words
_SERVER_UPDATED = "_serverUpdated"
_DATE_CONDITIONS = {"createdBefore": ("created", False), "createdAfter": ("created", True),
                    "updatedBefore": ("updated", False), "updatedAfter": ("updated", True)}


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        return None


def stored_record(card: dict) -> dict:
    """The record kept for a card: the card and the values its indexes need."""
    members = card.get("members") if isinstance(card.get("members"), dict) else {}
    words = {t for value in match.field_values(card, "text") for t in analysis.tokenize(value)}
    return {**{k: v for k, v in card.items() if k not in ("id", *_INTERNAL)},
            "_books": sorted(card.get("addressBookIds") or {}), "_members": sorted(members),
            "_kind": card.get("kind") or "individual", "_words": sorted(words)}


def index_words(store) -> int:
    """Gives every card stored before the ``_words`` index its words, once per data directory (at
    server start, recorded with `Store.mark_upgraded`; not on a request path); returns how many
    cards it updated."""
    if store.upgraded(_WORDS_STEP):
        return 0
    done = 0
    for user in store.users():
        with store.read(user["accountId"]) as r:
            if all("_words" in (r.record(CARDS, i) or {"_words": 1}) for i in r.record_ids(CARDS)):
                continue  # no write (and no sync) for an account with nothing to do
        with store.write(user["accountId"]) as w:
            for card_id in list(w.record_ids(CARDS)):
                record = w.record(CARDS, card_id)
                if record is not None and "_words" not in record:
                    w.update_record(CARDS, card_id, stored_record(record))
                    done += 1
    store.mark_upgraded(_WORDS_STEP)
    if done:
        log.info("contact search: %d card(s) given their words index", done)
    return done


def remove_from_book(writer, book_id: str) -> None:
    """Takes every card out of an address book being destroyed; a card left in none is destroyed
    (RFC 9610 §2.3 onDestroyRemoveContents)."""
    for card_id in list(writer.record_ids(CARDS, "_books", equals=book_id)):
        record = writer.record(CARDS, card_id)
        books = {b: True for b in record.get("addressBookIds") or {} if b != book_id}
        if books:
            writer.update_record(CARDS, card_id, stored_record({**record, "addressBookIds": books}))
        else:
            writer.destroy_record(CARDS, card_id)


class ContactCard(DataType):
    name = "ContactCard"
    capability = CONTACTS
    methods = ("get", "changes", "set", "query", "queryChanges", "copy")
    collection = CARDS
    properties = {
        "id": Property("Id", server_set=True),
        "addressBookIds": Property("Id[Boolean]"),
        **{p: Property("*", nullable=True, default=None) for p in CARD_PROPERTIES if p not in ("id",
                                                                                              "addressBookIds")},
    }
    conditions = {"inAddressBook": "Id", "uid": "String", "hasMember": "String", "kind": "String",
                  **{c: "UTCDate" for c in _DATE_CONDITIONS}, **{c: "String" for c in match.TEXT_CONDITIONS}}
    sorts = ("created", "updated", "name/given", "name/surname", "name/surname2")

    # -- reading (in a shared account: the cards of the books shared with mayRead, app/sharing.py)
    def to_jmap(self, ctx, record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in _INTERNAL}

    def fetch(self, ctx, reader, obj_id: str) -> dict | None:
        record = reader.record(self.collection, obj_id)
        if record is None:
            return None
        from .addressbook import ADDRESS_BOOK

        books = readable(ctx, reader, ADDRESS_BOOK, record.get("addressBookIds"))
        return None if books is None else {**self.to_jmap(ctx, record), "addressBookIds": books}

    def all_ids(self, ctx, reader):
        access = access_of(ctx, reader.account_id)
        if access is None or access.owner:
            return reader.record_ids(self.collection)
        from .addressbook import ADDRESS_BOOK

        return readable_ids(reader, access, ADDRESS_BOOK, self.collection, "_books")

    def render(self, ctx, reader, obj: dict, props: list[str], opts: object) -> dict:
        return {p: obj[p] for p in props if p in obj}  # JSContact: an absent property is left out

    # -- writing
    def _check(self, ctx, reader, card: dict, problems: dict[str, str], stored: dict | None = None) -> None:
        """stored: the books the card is in now (a grantee keeps those they do not see)."""
        problems.update(check_card(card))
        books = card.get("addressBookIds")
        if "addressBookIds" not in card or books == {}:
            problems["addressBookIds"] = "a card belongs to at least one address book (RFC 9610 §3)"
        elif isinstance(books, dict) and "addressBookIds" not in problems:
            from .addressbook import ADDRESS_BOOK

            for book_id in books:
                if book_id not in (stored or {}) and ADDRESS_BOOK.fetch(ctx, reader, book_id) is None:
                    problems[f"addressBookIds/{book_id}"] = "no such address book"

    def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
        problems: dict[str, str] = {}
        if obj.get("id") is not None:
            problems["id"] = "server-set property"
        card = {k: v for k, v in obj.items() if v is not None and k != "id"}
        card.setdefault("@type", "Card")
        card.setdefault("version", "1.0")
        card.setdefault("uid", f"urn:uuid:{uuid.uuid4()}")
        card.setdefault("created", now_utc())
        card.setdefault("updated", now_utc())
        self._check(ctx, reader, card, problems)
        if problems:
            return card, invalid_properties(problems)
        from .addressbook import ADDRESS_BOOK

        return card, content_error(ctx, reader, ADDRESS_BOOK, None, card["addressBookIds"], self.name)

    def prepare_update(self, ctx, reader, current: dict, patch: dict, resolve) -> tuple[dict, dict | None]:
        mutable = [p for p in self.properties if p != "id"]
        # a vendor property (with ':') may be patched too
        mutable += [path.split("/", 1)[0] for path in patch if ":" in path.split("/", 1)[0]]
        patched, problems, patch_errors = apply_patch(current, patch, mutable)
        card = {k: v for k, v in patched.items() if v is not None and k != "id"}
        from .addressbook import ADDRESS_BOOK

        stored = (reader.record(self.collection, current["id"]) or {}).get("addressBookIds")
        if isinstance(card.get("addressBookIds"), dict):  # the books a grantee does not see stay
            card["addressBookIds"] = keep_hidden(ctx, reader, ADDRESS_BOOK, stored, resolve(
                {"addressBookIds": card["addressBookIds"]})["addressBookIds"])
        if not any(path.split("/", 1)[0] == "updated" for path in patch):
            card["updated"] = now_utc()
            card[_SERVER_UPDATED] = True  # returned in /set's updated (taken out before storing)
        for key in ("@type", "version", "uid"):
            if key not in card:
                problems[key] = "required in a Card"
        self._check(ctx, reader, {k: v for k, v in card.items() if k != _SERVER_UPDATED}, problems, stored)
        error = patch_set_error(problems, patch_errors)
        if isinstance(card.get("addressBookIds"), dict):
            others = any(path.split("/", 1)[0] != "addressBookIds" for path in patch)
            error = error or content_error(ctx, reader, ADDRESS_BOOK, stored, card["addressBookIds"], self.name,
                                           others)
        return card, error

    def check_destroy(self, ctx, reader, obj: dict, args: dict) -> dict | None:
        from .addressbook import ADDRESS_BOOK

        stored = (reader.record(self.collection, obj["id"]) or {}).get("addressBookIds")
        return content_error(ctx, reader, ADDRESS_BOOK, stored, None, self.name)

    def create(self, ctx, writer, fields: dict) -> dict:
        return self.to_jmap(ctx, writer.create_record(self.collection, stored_record(fields)))

    def update(self, ctx, writer, obj_id: str, current: dict, changes: dict) -> dict | None:
        changes = dict(changes)
        server_set = changes.pop(_SERVER_UPDATED, False)
        writer.update_record(self.collection, obj_id, stored_record(changes))
        # RFC 8620 §5.3: a property the server changed is returned (updated, set to now)
        return {"updated": changes["updated"]} if server_set else None

    def copy_fields(self, ctx, from_reader, source: dict) -> dict:
        # address books are per account: the copy's are given, or the default one (copy_defaults)
        return {k: v for k, v in source.items() if k not in ("id", "addressBookIds")}

    def copy_defaults(self, ctx, writer, obj: dict) -> dict:
        if "addressBookIds" in obj:
            return obj
        from .addressbook import ADDRESS_BOOK

        default = next((i for i in ADDRESS_BOOK.all_ids(ctx, writer)
                        if (ADDRESS_BOOK.fetch(ctx, writer, i) or {}).get("isDefault")), None)
        return {**obj, "addressBookIds": {default: True}} if default else obj

    # -- /query
    def index_for(self, cond: dict) -> tuple[str, object] | None:
        for key, index in (("uid", "uid"), ("inAddressBook", "_books"), ("hasMember", "_members"),
                           ("kind", "_kind")):
            if isinstance(cond.get(key), str):
                return index, cond[key]
        for key in match.TEXT_CONDITIONS:  # every word must be in the card: its longest narrows most
            if key != "phone" and isinstance(cond.get(key), str):
                words = [t for phrase in analysis.parse_query_text(cond[key]) for t in phrase]
                if words:
                    return "_words", max(words, key=len)
        return None

    def match(self, ctx, cond: dict, obj: dict) -> bool:
        for key, value in cond.items():
            if value is None:
                continue
            if key == "inAddressBook":
                ok = value in (obj.get("addressBookIds") or {})
            elif key == "uid":
                ok = obj.get("uid") == value
            elif key == "hasMember":
                ok = value in (obj.get("members") or {})
            elif key == "kind":
                ok = (obj.get("kind") or "individual") == value
            elif key in _DATE_CONDITIONS:
                prop, after = _DATE_CONDITIONS[key]
                have, bound = _instant(obj.get(prop)), _instant(value)
                ok = have is not None and (have >= bound if after else have < bound)
            else:
                ok = match.matches(value, match.field_values(obj, key), phone=key == "phone")
            if not ok:
                return False
        return True

    def sort_value(self, ctx, obj: dict, prop: str, collation: str | None) -> object:
        if prop.startswith("name/"):
            return match.sort_name(obj, prop[5:])
        instant = _instant(obj.get(prop))
        return instant.timestamp() if instant else None


CONTACT_CARD = data_type(ContactCard())


def _vcard(record: dict) -> str:
    """One stored card as vCard 4.0; raises ProblemError (500, saying which card and why) when it
    cannot be written: a record stored before a validation the writer relies on."""
    from .vcard import card_to_vcard

    try:
        return card_to_vcard(CONTACT_CARD.to_jmap(None, record))
    except Exception as exc:  # noqa: BLE001 - any failure of one card is reported, never a traceback
        raise ProblemError("about:blank", 500, f"contact card {str(record.get('uid'))[:80]!r} cannot be "
                           f"written as vCard: {type(exc).__name__}: {exc}"[:300]) from exc


def _vcards(records) -> str:
    """The cards of an address book; one that cannot be written is left out, with a log line, so
    that it does not make the whole book unreadable."""
    out = []
    for record in records:
        try:
            out.append(_vcard(record))
        except ProblemError as err:
            log.warning("left out of the vCard export: %s", err.detail)
    return "".join(out)


def export_vcards(store, user: dict, account_id: str, obj_id: str) -> str | None:
    """The vCard 4.0 text of a ContactCard (its id) or of every card of an AddressBook (its id),
    for the download route ``/jmap/vcard/{accountId}/{id}`` (app.server); None if neither, or if
    the user may not read it (a grantee reads the books shared with mayRead, app/sharing.py).
    Raises ProblemError for a single card that cannot be written (`_vcard`)."""
    from app.sharing import reading_context

    from .addressbook import ADDRESS_BOOK

    ctx = reading_context(store, user, account_id)
    if ctx is None:
        return None
    with store.read(account_id) as r:
        card = CONTACT_CARD.fetch(ctx, r, obj_id)
        if card is not None:
            return _vcard({**r.record(CARDS, obj_id), "addressBookIds": card["addressBookIds"]})
        book = ADDRESS_BOOK.fetch(ctx, r, obj_id)
        if book is None or not book["myRights"]["mayRead"]:
            return None
        return _vcards(r.record(CARDS, i) for i in r.record_ids(CARDS, "_books", equals=obj_id))
