"""Who may do what in which account: the one place that decides it (RFC 9670 sharing, with the
Mailbox rights of RFC 8621 §2).

A user owns one account and has every right in it.  Another user's mailbox is shared with them by
the owner's ``shareWith`` on that Mailbox ({principal id: MailboxRights}; a principal id is the
account id of its user), which the store indexes by grantee (`Store.grants_to`).  The accounts a
user may use are their own and every account with at least one mailbox shared with them; in a
shared account they see only the shared mailboxes, and the emails in at least one mailbox shared
with ``mayReadItems`` (§2: "Email objects may be fetched if they are in at least one Mailbox with
this permission"), with ``mailboxIds`` showing only mailboxes they can see.

Address books and calendars are shared the same way, by their own ``shareWith`` (RFC 9610 §2
AddressBookRights, the JMAP Calendars draft's CalendarRights): `Access.shared` holds those grants by
type, and an account offers a grantee the capabilities of what is shared in it (`capabilities`).

Grants are read from the store once per request (one short prefix scan), so a revocation takes
effect on the next request, whichever process serves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.protocol.registry import BLOB, CALENDARS, CONTACTS, CORE, MAIL

RIGHTS = ("mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords", "mayCreateChild",
          "mayRename", "mayDelete", "maySubmit")
OWNER_RIGHTS = dict.fromkeys(RIGHTS, True)
NO_RIGHTS = dict.fromkeys(RIGHTS, False)
WRITE_RIGHTS = tuple(r for r in RIGHTS if r != "mayReadItems")


# what a grantee may use in an account, by the type of what is shared there (RFC 9670 §1.4: an
# account's capabilities are the data types the user can access in it)
SHARED_CAPABILITIES = {"Mailbox": (MAIL, BLOB), "AddressBook": (CONTACTS,), "Calendar": (CALENDARS,)}
# rights that alone show nothing (the Calendars draft: free-busy is for Principal/getAvailability)
_UNSEEN = {"Calendar": ("mayReadFreeBusy",)}
# the rights that change something, of each shared type (an account with none is isReadOnly)
_WRITE_RIGHTS = {"AddressBook": ("mayWrite", "mayAdmin", "mayDelete"),
                 "Calendar": ("mayWriteAll", "mayWriteOwn", "mayUpdatePrivate", "mayRSVP", "mayAdmin", "mayDelete")}


@dataclass
class Access:
    """A user's view of one account."""

    account_id: str
    owner: bool
    grants: dict[str, dict] = field(default_factory=dict)  # mailbox id -> {"rights", "subscribed"}
    grantee: str | None = None  # the user's own account id (a principal id), in a shared account
    # the other shared types: type name -> {id: {"rights", "subscribed"}}
    shared: dict[str, dict[str, dict]] = field(default_factory=dict)

    @property
    def capabilities(self) -> set[str]:
        """The capabilities this user may use in the account (a grantee: those of what is shared)."""
        kinds = ({"Mailbox"} if self.grants else set()) | {k for k, v in self.shared.items() if v}
        return {CORE, *(urn for kind in kinds for urn in SHARED_CAPABILITIES.get(kind, ()))}

    def grant_of(self, kind: str, obj_id: str) -> dict | None:
        """The grant of an AddressBook or Calendar to this (non-owner) user, or None."""
        return self.shared.get(kind, {}).get(obj_id)

    def rights_of(self, kind: str, obj_id: str, names: tuple[str, ...]) -> dict[str, bool]:
        """The user's rights on an AddressBook or Calendar: every one for the owner, else the grant's."""
        if self.owner:
            return dict.fromkeys(names, True)
        granted = (self.grant_of(kind, obj_id) or {}).get("rights") or {}
        return {name: bool(granted.get(name)) for name in names}

    def may_in(self, kind: str, obj_id: str, right: str) -> bool:
        return self.owner or bool(((self.grant_of(kind, obj_id) or {}).get("rights") or {}).get(right))

    def with_right(self, kind: str, right: str) -> set[str] | None:
        """The AddressBooks or Calendars on which the user has `right`; None: all (the owner)."""
        if self.owner:
            return None
        return {i for i, g in self.shared.get(kind, {}).items() if g["rights"].get(right)}

    def learn(self, mailbox: dict) -> None:
        """A mailbox this request created or changed, whose grant the grants read at the start of
        the request does not know yet (its shareWith says what the user may do)."""
        rights = (mailbox.get("shareWith") or {}).get(self.grantee) if not self.owner else None
        if rights:
            known = self.grants.get(mailbox["id"], {})
            self.grants[mailbox["id"]] = {"rights": rights, "subscribed": known.get("subscribed", False)}

    def rights(self, mailbox_id: str) -> dict[str, bool]:
        """The MailboxRights of the user on a mailbox of this account (§2 myRights)."""
        if self.owner:
            return dict(OWNER_RIGHTS)
        grant = self.grants.get(mailbox_id)
        return {**NO_RIGHTS, **{k: v for k, v in grant["rights"].items() if k in NO_RIGHTS}} if grant else dict(NO_RIGHTS)

    def may(self, mailbox_id: str, right: str) -> bool:
        return self.owner or bool(self.grants.get(mailbox_id, {}).get("rights", {}).get(right))

    def sees_mailbox(self, mailbox_id: str) -> bool:
        return self.owner or mailbox_id in self.grants

    def readable(self) -> set[str] | None:
        """The mailboxes whose emails the user may read; None: all of them (the owner)."""
        if self.owner:
            return None
        return {m for m, g in self.grants.items() if g["rights"].get("mayReadItems")}

    def may_read_email(self, record: dict) -> bool:
        if self.owner:
            return True
        return any(self.may(m, "mayReadItems") for m in record.get("mailboxIds") or {})

    def shown_mailbox_ids(self, mailbox_ids: dict) -> dict:
        """An email's mailboxIds as this user sees them (only mailboxes they can see)."""
        if self.owner:
            return mailbox_ids
        return {m: v for m, v in mailbox_ids.items() if m in self.grants}

    @property
    def read_only(self) -> bool:
        """No right to change anything in the account (the session's isReadOnly)."""
        if self.owner:
            return False
        return not (any(g["rights"].get(r) for g in self.grants.values() for r in WRITE_RIGHTS)
                    or any(g["rights"].get(r) for kind, objs in self.shared.items() for g in objs.values()
                           for r in _WRITE_RIGHTS.get(kind, ())))


def accounts_for(store, user: dict) -> dict[str, Access]:
    """Every account the user may use: their own first, then the accounts sharing with them."""
    own = user["accountId"]
    out = {own: Access(own, owner=True)}
    for owner, grants in store.grants_to(own).items():
        if owner != own and store.account(owner) is not None:
            mailboxes, shared = {}, {}
            for key, grant in grants.items():
                kind, _, obj_id = key.rpartition("/")  # "kind/id" (Writer.share), or a mailbox id
                if kind and not any(v for r, v in grant["rights"].items() if r not in _UNSEEN.get(kind, ())):
                    continue  # a calendar with mayReadFreeBusy alone "must behave as though it did not exist"
                if kind:
                    shared.setdefault(kind, {})[obj_id] = grant
                else:
                    mailboxes[key] = grant
            if mailboxes or shared:
                out[owner] = Access(owner, owner=False, grants=mailboxes, grantee=own, shared=shared)
    return out


def share_with_problem(store, owner: str, share_with: dict, names: tuple[str, ...], what: str,
                       before: dict | None = None) -> str | None:
    """Why a ``shareWith`` value ({principal id: rights}, RFC 9670 §4) cannot be stored, or None:
    the owner named, a new principal (not in `before`, the value as it is) that does not exist, a
    rights object that is not one (`what`: "MailboxRights") or has a property outside `names` or a
    value that is not a boolean.  A principal already there may be gone (a deleted user): the
    owner must still be able to edit the rest."""
    for principal, rights in share_with.items():
        if principal == owner:
            return "the owner's rights are implicit: the owner cannot be a sharee (RFC 9670 §4)"
        if principal not in (before or {}) and store.account(principal) is None:
            return f"no principal {principal!r}"
        if not isinstance(rights, dict):
            return f"the rights of {principal!r} must be a {what} object"
        for right, value in rights.items():
            if right not in names:
                return f"{right!r} is not a {what} property"
            if not isinstance(value, bool):
                return f"{right} must be true or false"
    return None


def normal_share_with(share_with: dict | None, names: tuple[str, ...]) -> dict | None:
    """A checked shareWith as stored: rights not given are false; a principal given no right at
    all is no sharee; none left is null."""
    return {p: {r: bool(rights.get(r)) for r in names}
            for p, rights in (share_with or {}).items() if any(rights.values())} or None
