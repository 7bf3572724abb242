"""Principal (RFC 9670 §3): the users of this server, so that a user can find whom to share with;
the ``urn:ietf:params:jmap:principals`` and ``...:principals:owner`` capabilities.

Decisions (RFC 9670 leaves them to the server):
* Every user is a Principal of type ``individual`` whose id is the id of their account (so a
  ``shareWith`` key, a principal id, names the account it grants to).  Every user sees every
  other user's name and address: tidings serves one organisation; a deployment that needs a
  private directory has to wait for groups of users.
* Principals are in each user's own account (``accountIdForPrincipal``); ``accounts`` lists the
  accounts of that principal the user may use.
* Principal/set is not offered: principals are managed with ``tidings user`` (RFC 9670 §3.3 "may,
  and probably will, reject any change").
* The state covers the directory (names, addresses); /changes answers ``cannotCalculateChanges``
  when it differs (the directory keeps no change log), so clients fetch it again.
"""

from __future__ import annotations

import hashlib

import orjson

from app.protocol.errors import MethodError
from app.protocol.registry import PRINCIPALS, method
from app.protocol.types import Capability, DataType, Property, capability, data_type

PRINCIPALS_OWNER = "urn:ietf:params:jmap:principals:owner"

capability(Capability(PRINCIPALS, account=lambda server, account: (
    {"currentUserPrincipalId": account["user"]["accountId"]} if account.get("owner", True) else {})))
# RFC 9670 §2: only in accountCapabilities, every account owned by a principal (shared ones too)
capability(Capability(PRINCIPALS_OWNER, primary=False, shared=True, session=None, account=lambda server, account: {
    "accountIdForPrincipal": account["user"]["accountId"], "principalId": account["id"]}))


def _principal(ctx, user: dict, usable: dict) -> dict:
    account_id = user["accountId"]
    account = None
    if account_id in usable:
        access = usable[account_id]
        account = {account_id: {"name": user.get("email") or user["name"], "isPersonal": access.owner,
                                "isReadOnly": access.read_only}}
    return {"id": account_id, "type": "individual", "name": user.get("displayName") or user["name"],
            "description": None, "email": user.get("email"), "timeZone": None, "capabilities": {},
            "accounts": account}


class Principal(DataType):
    name = "Principal"
    capability = PRINCIPALS
    methods = ("get", "query")  # /changes below: the directory keeps no change log
    properties = {
        "id": Property("Id", server_set=True),
        "type": Property("String", server_set=True),
        "name": Property("String", server_set=True),
        "description": Property("String", nullable=True, server_set=True),
        "email": Property("String", nullable=True, server_set=True),
        "timeZone": Property("String", nullable=True, server_set=True),
        "capabilities": Property("Object", server_set=True),
        "accounts": Property("Object", nullable=True, server_set=True),
    }
    conditions = {"accountIds": "String[]", "email": "String", "name": "String", "text": "String",
                  "type": "String", "timeZone": "String"}
    sorts = ("name", "email")

    def current_state(self, ctx, reader) -> str:
        return directory_state(ctx.store)

    def _check_home(self, ctx, reader) -> None:
        if reader.account_id != ctx.user["accountId"]:
            raise MethodError("accountNotSupportedByMethod", "Principals are in the user's own account")

    def fetch(self, ctx, reader, obj_id: str) -> dict | None:
        self._check_home(ctx, reader)
        account = ctx.store.account(obj_id)
        user = ctx.store.user(account["user"]) if account else None
        return _principal(ctx, user, ctx.accounts()) if user else None

    def all_ids(self, ctx, reader):
        self._check_home(ctx, reader)
        return [u["accountId"] for u in ctx.store.users()]

    def match(self, ctx, cond: dict, obj: dict) -> bool:
        for key, value in cond.items():
            if value is None:  # a condition given as null is no condition
                continue
            if key == "accountIds":
                if not set(value) & set(obj.get("accounts") or {}):
                    return False
            elif key == "text":
                haystack = " ".join(filter(None, (obj["name"], obj.get("email"), obj.get("description"))))
                if value.casefold() not in haystack.casefold():
                    return False
            elif key in ("email", "name"):
                if value.casefold() not in (obj.get(key) or "").casefold():
                    return False
            elif obj.get(key) != value:
                return False
        return True


PRINCIPAL = data_type(Principal())


def directory_state(store) -> str:
    """A state for the directory: changes when a user, a name or an address changes."""
    users = sorted((u["accountId"], u["name"], u.get("email"), u.get("displayName")) for u in store.users())
    return hashlib.sha256(orjson.dumps(users)).hexdigest()[:16]


@method("Principal/changes", PRINCIPALS)
def principal_changes(ctx, args: dict) -> dict:
    from app.protocol.standard import check_known_args, uint_arg

    check_known_args(args, {"accountId", "sinceState", "maxChanges"})
    account_id = ctx.account_id(args)
    if account_id != ctx.user["accountId"]:
        raise MethodError("accountNotSupportedByMethod", "Principals are in the user's own account")
    uint_arg(args, "maxChanges", None, minimum=1)
    state = directory_state(ctx.store)
    if args.get("sinceState") != state:
        raise MethodError("cannotCalculateChanges", "the directory keeps no change log: fetch it again")
    return {"accountId": account_id, "oldState": state, "newState": state, "hasMoreChanges": False,
            "created": [], "updated": [], "destroyed": []}

