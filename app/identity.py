"""Identity (RFC 8621 §6): /get, /changes and /set, kept in generic storage.

Which addresses a user may send as is configured, not chosen by clients: the user's own address
and the aliases and whole domains given with `tidings user alias` (`app.addresses`).  An identity
for any other address is refused with ``forbiddenFrom`` (§6.3); ``*@domain`` is accepted for a
domain the user has whole.

Every account has a default identity for the user's own address, id ``I`` + the account id
(`store.ids.identity_id`): it exists without being stored, is stored the first time it is
changed (under that same id), and cannot be destroyed (``mayDelete: false``).  Identities a client
creates get ids ``I`` + a lower-case hex counter, which never equal a default identity's id
(account ids begin with an upper-case ``A``).

``name``, ``replyTo`` and ``bcc`` end up in the header fields of messages a client composes, so
they are held to what Email/set writes into a header (case o04): a name without line breaks, each
email one addr-spec (`app.mail.headers.is_addr_spec`); else invalidProperties naming the path.
"""

from __future__ import annotations

from app.addresses import may_send_as
from app.mail.headers import has_line_break, is_addr_spec
from app.protocol.errors import set_error
from app.protocol.registry import SUBMISSION
from app.protocol.types import DataType, Property, data_type
from store import Collection, ids


def default_identity(user: dict) -> dict:
    return {"id": ids.identity_id(user["accountId"]), "name": user.get("displayName") or user["name"],
            "email": user.get("email") or f"{user['name']}@localhost", "replyTo": None, "bcc": None,
            "textSignature": "", "htmlSignature": "", "mayDelete": False}


def may_use(user: dict, address: str) -> bool:
    """Whether the user may have an identity for this address (``*@domain``: the whole domain)."""
    if address.startswith("*@"):
        return any(a.lower() == address[1:].lower() for a in user.get("aliases", ()))
    return may_send_as(user, address)


def address_problems(address: dict, path: str) -> dict[str, str]:
    """What Email/set would refuse in an EmailAddress (already of the right shape) it writes into
    a header: an email that is not exactly one addr-spec ("a@b.c>, <evil@x.y" would be a second
    recipient), a name with a line break (a header field of its own)."""
    problems = {}
    if not is_addr_spec(address["email"]):
        problems[f"{path}/email"] = "must be one email address (an RFC 5322 addr-spec)"
    if isinstance(address.get("name"), str) and has_line_break(address["name"]):
        problems[f"{path}/name"] = "must not contain line breaks"
    return problems


class Identity(DataType):
    name = "Identity"
    capability = SUBMISSION
    methods = ("get", "changes", "set")
    collection = Collection("Identity", "I", log="Identity")
    properties = {
        "id": Property("Id", server_set=True),
        "name": Property("String", default=""),
        "email": Property("String", immutable=True),
        "replyTo": Property("EmailAddress[]", nullable=True, default=None),
        "bcc": Property("EmailAddress[]", nullable=True, default=None),
        "textSignature": Property("String", default=""),
        "htmlSignature": Property("String", default=""),
        "mayDelete": Property("Boolean", server_set=True),
    }

    def _default_id(self, ctx) -> str:
        return ids.identity_id(ctx.user["accountId"])

    def fetch(self, ctx, reader, identity_id: str) -> dict | None:
        record = reader.record(self.collection, identity_id)
        if record is not None:
            return record
        if identity_id == self._default_id(ctx) and reader.account_id == ctx.user["accountId"]:
            return default_identity(ctx.user)
        return None

    def all_ids(self, ctx, reader):
        default = self._default_id(ctx)
        if reader.account_id == ctx.user["accountId"]:
            yield default
        yield from (i for i in reader.record_ids(self.collection) if i != default)

    def validate(self, ctx, reader, obj: dict, current: dict | None, problems: dict[str, str]) -> dict:
        if isinstance(obj.get("name"), str) and has_line_break(obj["name"]):
            problems["name"] = "must not contain line breaks (it is written into a header field)"
        for prop in ("replyTo", "bcc"):
            for i, address in enumerate(obj.get(prop) or ()):
                problems.update(address_problems(address, f"{prop}/{i}"))
        return obj

    def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
        fields, error = super().prepare_create(ctx, reader, obj)
        if error is None and not may_use(ctx.user, fields["email"]):
            error = set_error("forbiddenFrom", f"{ctx.user['name']} may not send as {fields['email']!r}; "
                              "an administrator adds addresses with `tidings user alias`")
        return fields, error

    def check_destroy(self, ctx, reader, obj: dict, args: dict) -> dict | None:
        if not obj.get("mayDelete"):
            return set_error("forbidden", "the identity of the user's own address cannot be destroyed")
        return None

    def create(self, ctx, writer, fields: dict) -> dict:
        return writer.create_record(self.collection, {**fields, "mayDelete": True})

    def update(self, ctx, writer, obj_id: str, current: dict, changes: dict) -> dict | None:
        if writer.record(self.collection, obj_id) is None:  # the default identity, first changed
            record = {**current, **changes}
            record.pop("id", None)
            writer.create_record(self.collection, record, record_id=obj_id)
            return None
        return super().update(ctx, writer, obj_id, current, changes)


IDENTITY = data_type(Identity())
