"""AddressBook (RFC 9610 §2): /get, /changes and /set, kept in generic storage.

Decisions:
* Every account has a default address book, id ``Bdefault`` (`DEFAULT_ID`), named "Contacts".
  Like the default Identity it exists without being stored (no write on account creation, so
  accounts made before contacts existed have one too) and is stored, under that id, the first
  time it changes.  It is the default (``isDefault: true``) while no stored address book is;
  ``onSuccessSetIsDefault`` moves the flag, storing both books, so the virtual one never
  reappears once another is the default.
* The default address book cannot be destroyed (``forbidden``; ``myRights.mayDelete`` is false
  for it): make another one the default first.  ``addressBookHasContents`` (§2.3) refuses to
  destroy a book with cards unless ``onDestroyRemoveContents`` is true; then its cards leave it,
  and those in no other book are destroyed.
* Shared with ``shareWith`` ({principal id: AddressBookRights}); what a grantee sees and may do
  is app/sharing.py's.  The owner has every right (mayDelete aside, above).
* ``onSuccessSetIsDefault`` is applied in a second transaction right after the /set's (the
  machinery's /set has no hook between its writes and its commit); the response's ``newState``
  is the state after both, and the books whose flag changed are in ``created``/``updated``.
"""

from __future__ import annotations

from functools import partial

from app.protocol import machinery
from app.protocol.errors import invalid_arguments, set_error
from app.protocol.registry import CONTACTS, register
from app.protocol.types import DataType, Property, data_type
from app.sharing import SharedContainer, access_of
from store import Collection

DEFAULT_ID = "Bdefault"
DEFAULT_NAME = "Contacts"
_INTERNAL = ()


RIGHTS = ("mayRead", "mayWrite", "mayAdmin", "mayDelete")


def rights(is_default: bool) -> dict[str, bool]:
    """AddressBookRights (§2) of the owner."""
    return {"mayRead": True, "mayWrite": True, "mayAdmin": True, "mayDelete": not is_default}


class AddressBook(SharedContainer, DataType):
    name = "AddressBook"
    right_names = RIGHTS
    rights_name = "AddressBookRights"
    read_right = "mayRead"
    write_right = "mayWrite"
    capability = CONTACTS
    methods = ("get", "changes")  # /set is registered below, with onSuccessSetIsDefault
    collection = Collection("AddressBook", "B", log="AddressBook", indexes=("isDefault",))
    set_args = ("onDestroyRemoveContents", "onSuccessSetIsDefault")
    properties = {
        "id": Property("Id", server_set=True),
        "name": Property("String"),
        "description": Property("String", nullable=True, default=None),
        "sortOrder": Property("UnsignedInt", default=0),
        "isDefault": Property("Boolean", server_set=True),
        "isSubscribed": Property("Boolean", default=True),
        "shareWith": Property("Id[Object]", nullable=True, default=None),
        "myRights": Property("Object", server_set=True),
    }

    # -- reading
    def _stored_default(self, reader) -> str | None:
        return next(iter(reader.record_ids(self.collection, "isDefault", equals=True)), None)

    def _virtual_default(self, reader) -> dict | None:
        """The default address book as it is before it was ever stored, or None."""
        if reader.record(self.collection, DEFAULT_ID) is not None or self._stored_default(reader) is not None:
            return None
        return {"id": DEFAULT_ID, "name": DEFAULT_NAME, "description": None, "sortOrder": 0, "isDefault": True,
                "isSubscribed": True, "shareWith": None}

    def fetch(self, ctx, reader, obj_id: str) -> dict | None:
        access = access_of(ctx, reader.account_id)
        if not self.sees(access, obj_id):
            return None
        record = reader.record(self.collection, obj_id)
        if record is None and obj_id == DEFAULT_ID:
            record = self._virtual_default(reader)
        return self.shown(access, self.to_jmap(ctx, record), rights(bool(record.get("isDefault")))) \
            if record is not None else None

    def to_jmap(self, ctx, record: dict) -> dict:
        obj = {k: v for k, v in record.items() if k not in _INTERNAL}
        obj["isDefault"] = bool(obj.get("isDefault"))
        obj["myRights"] = rights(obj["isDefault"])
        return obj

    def all_ids(self, ctx, reader):
        access = access_of(ctx, reader.account_id)
        if access is not None and not access.owner:
            yield from self.shared_ids(access, reader)
            return
        if self._virtual_default(reader) is not None:
            yield DEFAULT_ID
        yield from reader.record_ids(self.collection)

    # -- writing
    def validate(self, ctx, reader, obj: dict, current: dict | None, problems: dict[str, str]) -> dict:
        name = obj.get("name")
        if isinstance(name, str) and not 1 <= len(name.encode()) <= 255:
            problems["name"] = "must be 1 to 255 octets of UTF-8"
        if isinstance(obj.get("sortOrder"), int) and obj["sortOrder"] >= 2**31:
            problems["sortOrder"] = "must be below 2^31"
        self.check_share_with(ctx, reader, obj, current, problems)
        return obj

    def new_record(self, fields: dict) -> dict:
        return {**fields, "isDefault": False}

    def check_set_args(self, ctx, args: dict) -> None:
        if not isinstance(args.get("onDestroyRemoveContents", False), bool):
            raise invalid_arguments("onDestroyRemoveContents must be a boolean")
        target = args.get("onSuccessSetIsDefault")
        if target is not None and not isinstance(target, str):
            raise invalid_arguments("onSuccessSetIsDefault must be an id or null")

    def check_destroy(self, ctx, reader, obj: dict, args: dict) -> dict | None:
        if obj.get("isDefault"):
            return set_error("forbidden", "the default address book cannot be destroyed; make another one the "
                             "default first (onSuccessSetIsDefault)")
        from .card import CARDS

        has_cards = next(iter(reader.record_ids(CARDS, "_books", equals=obj["id"])), None) is not None
        refused = self.destroy_error(ctx, reader, obj["id"], has_cards)
        if refused:
            return refused
        if not args.get("onDestroyRemoveContents") and has_cards:
            return set_error("addressBookHasContents", f"address book {obj['id']} has contact cards; destroy "
                             "them first or set onDestroyRemoveContents")
        return None

    def destroy(self, ctx, writer, obj_id: str, current: dict, args: dict) -> None:
        from .card import remove_from_book

        remove_from_book(writer, obj_id)
        record = writer.record(self.collection, obj_id)
        if record is not None:
            self.share_changed(writer, obj_id, record.get("shareWith"), None)
            writer.destroy_record(self.collection, obj_id)

    # -- onSuccessSetIsDefault (§2.3)
    def make_default(self, ctx, writer, book_id: str) -> dict[str, bool]:
        """Makes book_id the default; {book id: its new isDefault} for each book that changed."""
        target = self.fetch(ctx, writer, book_id)
        if target is None or target["isDefault"]:
            return {}
        changed = {}
        old = self._stored_default(writer) or (DEFAULT_ID if self._virtual_default(writer) else None)
        if old is not None:
            current = self.fetch(ctx, writer, old)
            self.update(ctx, writer, old, current, {"isDefault": False})
            changed[old] = False
        self.update(ctx, writer, book_id, self.fetch(ctx, writer, book_id), {"isDefault": True})
        changed[book_id] = True
        return changed


ADDRESS_BOOK = data_type(AddressBook())


def set_address_books(dt: AddressBook, ctx, args: dict) -> dict:
    """AddressBook/set (RFC 9610 §2.3): the standard /set, then onSuccessSetIsDefault when every
    operation succeeded."""
    resp = machinery.set_(dt, ctx, args)
    target = args.get("onSuccessSetIsDefault")
    if target is None or resp["notCreated"] or resp["notUpdated"] or resp["notDestroyed"]:
        return resp
    if not ctx.access(resp["accountId"]).owner:
        return resp  # §2.3: a change "not permitted ... for policy reasons" is ignored: the owner's
    book_id = ctx.resolve_id(target)
    if book_id is None:
        return resp  # §2.3: an id that is not found is ignored
    with ctx.store.write(resp["accountId"]) as w:
        changed = dt.make_default(ctx, w, book_id)
        w.flush()
        resp["newState"] = w.state(dt.name)
    created_keys = {v["id"]: k for k, v in (resp["created"] or {}).items()}
    for obj_id, is_default in changed.items():
        extra = {"isDefault": is_default, "myRights": rights(is_default)}
        if obj_id in created_keys:
            resp["created"][created_keys[obj_id]].update(extra)
        else:
            resp["updated"] = {**(resp["updated"] or {}), obj_id: extra}
    return resp


register("AddressBook/set", CONTACTS, partial(set_address_books, ADDRESS_BOOK))
