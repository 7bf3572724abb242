"""Containers shared by their own ``shareWith`` (RFC 9670 §4): AddressBook (RFC 9610 §2) and
Calendar (the JMAP Calendars draft), and what a grantee may do with them and their contents.

The owner shares a container with ``shareWith`` ({principal id: rights}); the store indexes it by
grantee (`Writer.share`), so the account shows up in the grantee's session with the capability
of the container's type (app.access).  Decisions, for both types:

* A grantee sees a container shared with them (a Calendar only with a right other than
  mayReadFreeBusy: the draft says such a calendar "must behave as though it did not exist"), with
  ``myRights`` as granted, their own ``isSubscribed`` (false until they subscribe, as RFC 9610 §2
  advises for shared books; kept per user), and ``shareWith`` only when they hold ``mayAdmin``.
* A grantee changes only ``isSubscribed`` (their own) and, with ``mayAdmin``, ``shareWith``, never
  giving a right they do not hold to a principal who did not have it (``forbidden``, RFC 9610
  §2.3); renaming and the other properties stay the owner's.  Only the owner creates containers
  in an account (``mayCreateAddressBook``/``mayCreateCalendar`` false for a grantee); destroying
  one needs ``mayDelete``, and its contents' write right when contents go with it.
* Contents (ContactCard, CalendarEvent) are readable in a container with the read right
  (``mayRead``, ``mayReadItems``) and show only the containers the grantee sees; moving them needs
  the write right (``mayWrite``, ``mayWriteAll``) on every container they are added to or taken
  from, any other change and a destroy need it on every container they are in (the Calendars
  draft's rule, applied to cards too).  Containers the grantee does not see stay as they are when
  the grantee sets the whole id map.
"""

from __future__ import annotations

from collections.abc import Callable

from app.access import normal_share_with, share_with_problem
from app.protocol.errors import set_error
from app.protocol.standard import same_json
from store import NotFound

# what a grantee may change of a shared container (the rest is the owner's)
GRANTEE_SETTABLE = {"isSubscribed", "shareWith"}


def access_of(ctx, account_id: str):
    """The caller's app.access.Access to an account, or None for a server-internal read (an
    export by the owner) that sees everything."""
    return ctx.access(account_id) if ctx is not None and hasattr(ctx, "access") else None


def reading_context(store, user: dict, account_id: str):
    """What a download route (vCard, iCalendar) reads an account with: a call context of the user,
    so that a grantee sees what they may read; None if the user may not use the account."""
    from app.protocol.request import CallContext

    ctx = CallContext(store=store, user=user, limits=None, using=set())
    return ctx if ctx.may_read_account(account_id) else None


class SharedContainer:
    """Mixin of a DataType whose objects are shared by their ``shareWith``."""

    right_names: tuple[str, ...] = ()  # the rights object's properties, in the RFC's order
    rights_name: str = ""  # "AddressBookRights"
    read_right: str = ""  # what reads the contents: "mayRead"
    write_right: str = ""  # what writes the contents: "mayWrite"

    def sees(self, access, obj_id: str) -> bool:
        """Whether the user sees the container (the owner: every one; a grantee: those granted to
        them, app.access having left out grants that show nothing, such as free-busy alone)."""
        return access is None or access.owner or access.grant_of(self.name, obj_id) is not None

    def shared_ids(self, access, reader) -> list[str]:
        """The stored containers a grantee sees, in id order."""
        return [i for i in sorted(access.shared.get(self.name, {}))
                if self.sees(access, i) and reader.record(self.collection, i) is not None]

    def shown(self, access, obj: dict, owner_rights: dict[str, bool]) -> dict:
        """A stored container as this user sees it (module docstring)."""
        if access is None or access.owner:
            obj["myRights"] = owner_rights
            obj["shareWith"] = obj.get("shareWith") or None
            return obj
        obj["myRights"] = access.rights_of(self.name, obj["id"], self.right_names)
        obj["isSubscribed"] = bool(access.grant_of(self.name, obj["id"])["subscribed"])
        if not obj["myRights"].get("mayAdmin"):
            obj["shareWith"] = None
        return obj

    def check_share_with(self, ctx, reader, obj: dict, current: dict | None, problems: dict[str, str]) -> None:
        """invalidProperties for a bad shareWith; a good one normalised (app.access)."""
        if obj.get("shareWith") is None:
            return
        why = share_with_problem(ctx.store, reader.account_id, obj["shareWith"], self.right_names,
                                 self.rights_name, (current or {}).get("shareWith"))
        if why:
            problems["shareWith"] = why
        else:
            obj["shareWith"] = normal_share_with(obj["shareWith"], self.right_names)

    def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
        from app.protocol import machinery

        fields, error = machinery.prepare_create(self, ctx, reader, obj)
        return fields, error or self.grantee_error(ctx, reader, fields, None)

    def prepare_update(self, ctx, reader, current: dict, patch: dict, resolve) -> tuple[dict, dict | None]:
        from app.protocol import machinery

        fields, error = machinery.prepare_update(self, ctx, reader, current, patch, resolve)
        return fields, error or self.grantee_error(ctx, reader, fields, current)

    def grantee_error(self, ctx, reader, fields: dict, current: dict | None) -> dict | None:
        """The SetError refusing a grantee's create or update of a container, or None."""
        access = access_of(ctx, reader.account_id)
        if access is None or access.owner:
            return None
        if current is None:
            return set_error("forbidden", f"only the owner of the account creates a {self.name} in it")
        changed = {k for k, v in fields.items() if not same_json(v, current.get(k))}
        if changed - GRANTEE_SETTABLE:
            return set_error("forbidden", f"only the owner changes {', '.join(sorted(changed - GRANTEE_SETTABLE))} "
                             f"of a shared {self.name}; a grantee sets isSubscribed, and shareWith with mayAdmin")
        if "shareWith" not in changed:
            return None
        obj_id = current["id"]
        if not access.may_in(self.name, obj_id, "mayAdmin"):
            return set_error("forbidden", "changing shareWith needs mayAdmin")
        mine = access.rights_of(self.name, obj_id, self.right_names)
        before = current.get("shareWith") or {}
        for principal, rights in (fields["shareWith"] or {}).items():
            had = before.get(principal) or {}
            for right, value in rights.items():
                if value and not had.get(right) and not mine.get(right):
                    return set_error("forbidden", f"{right} cannot be given to {principal}: the user does not "
                                     "hold it (RFC 9610 §2.3)")
        return None

    def destroy_error(self, ctx, reader, obj_id: str, has_contents: bool) -> dict | None:
        """The SetError refusing a grantee's destroy of a container, or None."""
        access = access_of(ctx, reader.account_id)
        if access is None or access.owner:
            return None
        if not access.may_in(self.name, obj_id, "mayDelete"):
            return set_error("forbidden", f"destroying this {self.name} needs mayDelete")
        if has_contents and not access.may_in(self.name, obj_id, self.write_right):
            return set_error("forbidden", f"removing its contents needs {self.write_right}")
        return None

    def grantee_changes(self, ctx, writer, obj_id: str, changes: dict) -> dict:
        """A grantee's isSubscribed kept for them alone (store.Writer.set_subscribed_for); the
        changes left to store on the container."""
        access = access_of(ctx, writer.account_id)
        if access is None or access.owner or "isSubscribed" not in changes:
            return changes
        changes = dict(changes)
        try:
            writer.set_subscribed_for(ctx.user["accountId"], obj_id, changes.pop("isSubscribed"), kind=self.name)
        except NotFound:  # no longer shared with them (revoked earlier in this request): nothing of theirs
            pass
        return changes

    # -- storing (the container's own record; its default exists before it is first stored)
    def new_record(self, fields: dict) -> dict:
        """The record a create stores."""
        return fields

    def first_record(self, current: dict, changes: dict) -> dict:
        """The record of the container that exists without being stored (the default), first changed."""
        return {k: v for k, v in {**current, **changes}.items() if k not in ("id", "myRights")}

    def create(self, ctx, writer, fields: dict) -> dict:
        record = writer.create_record(self.collection, self.new_record(fields))
        self.share_changed(writer, record["id"], None, record.get("shareWith"))
        return self.to_jmap(ctx, record)

    def update(self, ctx, writer, obj_id: str, current: dict, changes: dict) -> dict | None:
        changes = self.grantee_changes(ctx, writer, obj_id, changes)
        record = writer.record(self.collection, obj_id)
        if record is None:  # the default, first changed: stored under its id
            record = self.first_record(current, changes)
            writer.create_record(self.collection, record, record_id=obj_id)
            self.share_changed(writer, obj_id, None, record.get("shareWith"))
            return None
        if changes:
            writer.update_record(self.collection, obj_id, {**record, **changes})
            if "shareWith" in changes:
                self.share_changed(writer, obj_id, record.get("shareWith"), changes["shareWith"], ctx)
        return None

    def share_changed(self, writer, obj_id: str, before: dict | None, after: dict | None, ctx=None) -> None:
        """Keeps the grants index in step with a stored shareWith (store.Writer.share); the next
        call of the request reads the grants again (a grantee may have changed their own)."""
        if before or after:
            writer.share(self.name, obj_id, before, after)
            if ctx is not None and hasattr(ctx, "forget_accounts"):
                ctx.forget_accounts()


def content_error(ctx, reader, container: SharedContainer, before: dict | None, after: dict | None,
                  what: str, other_changes: bool = True, also: Callable[[str], bool] | None = None) -> dict | None:
    """The SetError refusing a grantee's write of a ContactCard or CalendarEvent (`what`) whose
    containers go from `before` (None: a create) to `after` (None: a destroy), or None: the write
    right is needed on each container it enters or leaves and, for `other_changes` (any change
    besides its containers) or a destroy, on every container it is in (the Calendars draft:
    "other changes ... in *all* calendars to which the event belongs"); `also(container id)` says
    whether another right allows this write there (CalendarEvent: mayWriteOwn, mayRSVP)."""
    access = access_of(ctx, reader.account_id)
    if access is None or access.owner:
        return None
    old, new = set(before or {}), set(after or {})
    if after is None:
        needs = old
    elif before is None:
        needs = new
    else:
        needs = (old ^ new) | (old if other_changes else set())
    right = container.write_right
    missing = sorted(c for c in needs if not access.may_in(container.name, c, right) and not (also and also(c)))
    if missing:
        shown = [c if container.sees(access, c) else "one you do not see" for c in missing]
        return set_error("forbidden", f"changing this {what} needs {right} on {container.name} "
                         f"{', '.join(dict.fromkeys(shown))}")
    return None


def readable(ctx, reader, container: SharedContainer, containers: dict | None) -> dict | None:
    """A content's container map as the user sees it, or None when they may not read it."""
    access = access_of(ctx, reader.account_id)
    if access is None or access.owner:
        return containers
    if not any(access.may_in(container.name, c, container.read_right) for c in containers or {}):
        return None
    return {c: v for c, v in (containers or {}).items() if container.sees(access, c)}


def readable_ids(reader, access, container: SharedContainer, collection, index: str):
    """The ids of the contents a grantee may read, through the container index (no scan)."""
    seen: set[str] = set()
    for container_id in sorted(access.with_right(container.name, container.read_right) or ()):
        for obj_id in reader.record_ids(collection, index, equals=container_id):
            if obj_id not in seen:
                seen.add(obj_id)
                yield obj_id


def keep_hidden(ctx, reader, container: SharedContainer, stored: dict | None, wanted: dict) -> dict:
    """A grantee's new container map with the containers they do not see kept from the stored one."""
    access = access_of(ctx, reader.account_id)
    if access is None or access.owner or not stored:
        return wanted
    return {**{c: v for c, v in stored.items() if not container.sees(access, c)}, **wanted}
