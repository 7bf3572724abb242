"""Who may do what in which account: the one place that decides it (RFC 9670 sharing, with the
Mailbox rights of RFC 8621 §2).

A user owns one account and has every right in it.  Another user's mailbox is shared with them by
the owner's ``shareWith`` on that Mailbox ({principal id: MailboxRights}; a principal id is the
account id of its user), which the store indexes by grantee (`Store.grants_to`).  The accounts a
user may use are their own and every account with at least one mailbox shared with them; in a
shared account they see only the shared mailboxes, and the emails in at least one mailbox shared
with ``mayReadItems`` (§2: "Email objects may be fetched if they are in at least one Mailbox with
this permission"), with ``mailboxIds`` showing only mailboxes they can see.

Grants are read from the store once per request (one short prefix scan), so a revocation takes
effect on the next request, whichever process serves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RIGHTS = ("mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords", "mayCreateChild",
          "mayRename", "mayDelete", "maySubmit")
OWNER_RIGHTS = dict.fromkeys(RIGHTS, True)
NO_RIGHTS = dict.fromkeys(RIGHTS, False)
WRITE_RIGHTS = tuple(r for r in RIGHTS if r != "mayReadItems")


@dataclass
class Access:
    """A user's view of one account."""

    account_id: str
    owner: bool
    grants: dict[str, dict] = field(default_factory=dict)  # mailbox id -> {"rights", "subscribed"}
    grantee: str | None = None  # the user's own account id (a principal id), in a shared account

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
        return not self.owner and not any(g["rights"].get(r) for g in self.grants.values() for r in WRITE_RIGHTS)


def accounts_for(store, user: dict) -> dict[str, Access]:
    """Every account the user may use: their own first, then the accounts sharing with them."""
    own = user["accountId"]
    out = {own: Access(own, owner=True)}
    for owner, grants in store.grants_to(own).items():
        if owner != own and store.account(owner) is not None:
            out[owner] = Access(owner, owner=False, grants=grants, grantee=own)
    return out
