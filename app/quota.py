"""Quota (RFC 9425): /get, /changes, /query and /queryChanges of an account's quotas, declared on
the type registry; the `urn:ietf:params:jmap:quota` capability is in `app.capabilities`.

What is counted and kept is the store's (store/base.py "Quotas"): an account has a ``messages``
quota (resourceType ``count``: its emails) and a ``storage`` quota (``octets``: the raw size of
its emails, each message once; uploads are RFC 8620 §6's unreferenced blobs and do not count).
`used` is kept by the store in the transaction that adds or destroys an email, never counted here.

Decisions (RFC 9425 leaves them to the server):
* A Quota object exists while an administrator has set its hard limit (`tidings quota set`):
  ``hardLimit`` is a required UnsignedInt, so an unlimited resource has no Quota.  Setting a limit
  creates the object, changing it updates it, ``none`` destroys it (all seen by /changes and push).
* ``scope`` is ``account``; ``types`` is ``["Email"]``, shown only to a request using
  ``urn:ietf:params:jmap:mail`` (§4.1: a Quota with no type the client knows is not returned);
  ``warnLimit`` and ``softLimit`` are null (tidings enforces only the hard limit).
* A change of ``used`` only is logged as counts-only, so /changes answers
  ``updatedProperties: ["used"]`` (§4.2); a limit set or changed in between gives null.
* The ``name`` filter matches a case-insensitive substring; sorting by ``name`` and ``used`` (§4.3).

Refusals: the store raises `store.OverQuota`; `over_quota` is the one place that turns it into the
``overQuota`` SetError (RFC 8620 §5.3, RFC 8621 §4.8).
"""

from __future__ import annotations

from app.protocol.errors import set_error
from app.protocol.registry import MAIL, QUOTA
from app.protocol.types import DataType, Property, data_type
from store import QUOTA_RESOURCES, OverQuota, ids

_DESCRIPTIONS = {
    "messages": "The number of emails in the account, in all its mailboxes.",
    "storage": "The raw size in octets of the account's emails (RFC 5322 messages, each counted once); "
               "uploads not yet part of an email do not count.",
}


def over_quota(exc: OverQuota) -> dict:
    """The ``overQuota`` SetError (RFC 8620 §5.3) for a refusal of the store."""
    return set_error("overQuota", str(exc), resource=exc.resource)


class Quota(DataType):
    name = "Quota"
    capability = QUOTA
    methods = ("get", "changes", "query", "queryChanges")
    properties = {p: Property("*", nullable=True, server_set=True) for p in (
        "id", "resourceType", "used", "hardLimit", "warnLimit", "softLimit", "scope", "name", "types",
        "description")}
    conditions = {"name": "String", "scope": "String", "resourceType": "String", "type": "String"}
    sorts = ("name", "used")

    @staticmethod
    def _types(ctx) -> list[str]:
        # §4.1: only the types whose capability the request uses
        return ["Email"] if MAIL in ctx.using else []

    def fetch(self, ctx, reader, obj_id: str) -> dict | None:
        resource = ids.quota_resource(obj_id)
        if resource not in QUOTA_RESOURCES:
            return None
        usage = reader.quota()[resource]
        types = self._types(ctx)
        if usage["limit"] is None or not types:
            return None
        account = ctx.store.account(reader.account_id) or {}
        return {"id": obj_id, "resourceType": QUOTA_RESOURCES[resource], "used": usage["used"],
                "hardLimit": usage["limit"], "warnLimit": None, "softLimit": None, "scope": "account",
                "name": f"{account.get('name') or reader.account_id} {resource}", "types": types,
                "description": _DESCRIPTIONS[resource]}

    def all_ids(self, ctx, reader):
        if not self._types(ctx):
            return []
        return [ids.quota_id(r) for r, usage in reader.quota().items() if usage["limit"] is not None]

    def changes_extra(self, resp: dict, changes) -> None:
        # §4.2: only `used` changed since the old state (counts-only entries in the change log)
        resp["updatedProperties"] = ["used"] if changes.counts_only and changes.updated else None

    def match(self, ctx, cond: dict, obj: dict) -> bool:
        for key, value in cond.items():
            if key == "name" and value.casefold() not in obj["name"].casefold():
                return False
            if key == "type" and value not in obj["types"]:
                return False
            if key in ("scope", "resourceType") and obj[key] != value:
                return False
        return True


QUOTA_TYPE = data_type(Quota())
