"""The standard methods written once (app/protocol/machinery.py), exercised through the request
pipeline on a real store with a type declared only in the tests (tests/tiny_type.py), and with
PushSubscription, which is declared only on the registry."""

from __future__ import annotations

import base64

import pytest

import tests.tiny_type  # noqa: F401  (registers Note)
from app.access import Access
from app.protocol.errors import MethodError
from app.protocol.registry import CORE, load_methods
from app.protocol.request import CallContext, Limits, process
from app.protocol.types import TYPES
from store import open_store
from tests.tiny_type import NOTES

load_methods()


class Ctx(CallContext):
    """A caller who may use several accounts (sharing will give real users that; /copy needs it)."""

    accounts: tuple[str, ...] = ()

    def account_id(self, args: dict) -> str:
        account_id = args.get("accountId")
        if account_id not in self.accounts:
            raise MethodError("accountNotFound", f"no account {account_id!r}")
        return account_id

    def access(self, account_id: str) -> Access:
        return Access(account_id, owner=True)


@pytest.fixture
def env(tmp_path):
    store = open_store(str(tmp_path / "data"), map_size=1 << 28)
    a = store.create_user("u", "x", "u@x")["accountId"]
    b = store.create_user("v", "x", "v@x")["accountId"]
    yield store, a, b
    store.close()


def call(env, method: str, args: dict, user: str = "u", account: str | None = None) -> tuple[str, dict]:
    store, a, b = env
    me = a if user == "u" else b

    def factory(using):
        ctx = Ctx(store=store, user={"accountId": me, "name": user}, limits=Limits(), using=using)
        ctx.accounts = (a, b)
        return ctx

    if TYPES[method.split("/")[0]].account_scoped:
        args = {"accountId": account or me, **args}
    resp = process({"using": [CORE, NOTES], "methodCalls": [[method, args, "c"]]}, factory, {CORE, NOTES})
    name, result, _ = resp["methodResponses"][0]
    return name, result


def ok(env, method: str, args: dict, **kw) -> dict:
    name, result = call(env, method, args, **kw)
    assert name == method, result
    return result


def test_a_type_declared_in_a_test_gets_every_standard_method(env):
    res = ok(env, "Note/set", {"create": {"a": {"title": "alpha", "priority": 2},
                                          "b": {"title": "beta", "folder": "work", "tags": ["x"]}}})
    a, b = res["created"]["a"], res["created"]["b"]
    # §5.3: the created object carries what the client did not send: id, server-set and defaults
    assert set(a) == {"id", "folder", "tags", "done", "created"}
    assert (a["folder"], a["done"], a["tags"]) == ("inbox", False, [])
    got = ok(env, "Note/get", {"ids": [a["id"], "nope"], "properties": ["title", "priority"]})
    assert got["list"] == [{"id": a["id"], "title": "alpha", "priority": 2}] and got["notFound"] == ["nope"]
    state = got["state"]
    ok(env, "Note/set", {"update": {a["id"]: {"priority": 7, "tags": ["y"]}}, "destroy": [b["id"]],
                         "ifInState": state})
    ch = ok(env, "Note/changes", {"sinceState": state})
    assert (ch["created"], ch["updated"], ch["destroyed"]) == ([], [a["id"]], [b["id"]])
    q = ok(env, "Note/query", {"filter": {"folder": "inbox"}, "sort": [{"property": "priority"}],
                               "calculateTotal": True})
    assert q["ids"] == [a["id"]] and q["total"] == 1
    qc = ok(env, "Note/queryChanges", {"sinceQueryState": state, "filter": {"folder": "inbox"}})
    assert qc["added"] == [{"id": a["id"], "index": 0}] and b["id"] in qc["removed"]


def test_invalid_properties_lists_every_bad_property_with_a_description(env):
    res = ok(env, "Note/set", {"create": {"x": {"title": "", "priority": -1, "tags": "no", "done": 1,
                                                "bogus": True, "created": "2020-01-01T00:00:00Z"}}})
    err = res["notCreated"]["x"]
    assert err["type"] == "invalidProperties"
    assert set(err["properties"]) == {"title", "priority", "tags", "done", "bogus", "created"}
    for prop in err["properties"]:
        assert f"{prop}: " in err["description"]
    missing = ok(env, "Note/set", {"create": {"y": {}}})["notCreated"]["y"]
    assert missing["properties"] == ["title"] and "required" in missing["description"]


def test_an_update_may_repeat_a_server_set_value_but_not_change_it_and_types_are_exact(env):
    a = ok(env, "Note/set", {"create": {"a": {"title": "t", "priority": 1}}})["created"]["a"]
    res = ok(env, "Note/set", {"update": {a["id"]: {"created": a["created"], "priority": 2}}})
    assert res["updated"] == {a["id"]: None}
    res = ok(env, "Note/set", {"update": {a["id"]: {"created": "2030-01-01T00:00:00Z", "priority": True}}})
    assert set(res["notUpdated"][a["id"]]["properties"]) == {"created", "priority"}


def test_the_final_state_is_judged_not_the_steps(env):
    res = ok(env, "Note/set", {"create": {"a": {"title": "one"}, "b": {"title": "two"}}})
    a, b = res["created"]["a"]["id"], res["created"]["b"]["id"]
    swapped = ok(env, "Note/set", {"update": {a: {"title": "two"}, b: {"title": "one"}}})
    assert swapped["notUpdated"] is None
    clash = ok(env, "Note/set", {"update": {a: {"title": "same"}, b: {"title": "same"}}})
    assert set(clash["notUpdated"]) == {a, b}


def test_creation_references_and_ids_created_earlier_in_the_request(env):
    res = ok(env, "Note/set", {"create": {"a": {"title": "first"}}, "update": {"#a": {"priority": 3}},
                               "destroy": []})
    assert res["updated"] == {res["created"]["a"]["id"]: None}
    assert ok(env, "Note/get", {"ids": [res["created"]["a"]["id"]]})["list"][0]["priority"] == 3


def test_query_uses_a_declared_index_and_checks_the_rest(env):
    ok(env, "Note/set", {"create": {str(i): {"title": f"n{i}", "folder": "f" if i % 2 else "g", "priority": i}
                                    for i in range(10)}})
    q = ok(env, "Note/query", {"filter": {"operator": "AND", "conditions": [{"folder": "f"}, {"title": "n"}]},
                               "sort": [{"property": "priority", "isAscending": False}], "position": 1,
                               "limit": 2, "calculateTotal": True})
    titles = [n["title"] for n in ok(env, "Note/get", {"ids": q["ids"]})["list"]]
    assert titles == ["n7", "n5"] and q["total"] == 5 and q["position"] == 1
    name, err = call(env, "Note/query", {"filter": {"color": "red"}})
    assert (name, err["type"]) == ("error", "unsupportedFilter")
    name, err = call(env, "Note/query", {"sort": [{"property": "done"}]})
    assert (name, err["type"]) == ("error", "unsupportedSort")


def test_copy_between_accounts_and_destroy_the_original(env):
    store, a, b = env
    src = ok(env, "Note/set", {"create": {"a": {"title": "moving", "priority": 4}}})["created"]["a"]["id"]
    resp = process({"using": [CORE, NOTES], "methodCalls": [["Note/copy", {
        "fromAccountId": a, "accountId": b, "create": {"c": {"id": src, "folder": "copied"}},
        "onSuccessDestroyOriginal": True}, "k"]]},
        lambda using: _ctx(store, a, b, using), {CORE, NOTES})
    (copy_name, copied, _), (set_name, destroyed, _) = resp["methodResponses"]
    assert (copy_name, set_name) == ("Note/copy", "Note/set")
    new_id = copied["created"]["c"]["id"]
    assert destroyed["destroyed"] == [src]
    got = ok(env, "Note/get", {"ids": [new_id]}, account=b)["list"][0]
    assert (got["title"], got["priority"], got["folder"]) == ("moving", 4, "copied")
    name, err = call(env, "Note/copy", {"fromAccountId": a, "create": {}}, account=a)
    assert err["type"] == "invalidArguments"  # the same account


def _ctx(store, a, b, using):
    ctx = Ctx(store=store, user={"accountId": a, "name": "u"}, limits=Limits(), using=using)
    ctx.accounts = (a, b)
    return ctx


# ---------------------------------------------------------------------------------- PushSubscription

P256DH = base64.urlsafe_b64encode(b"\x04" + b"k" * 64).decode().rstrip("=")
AUTH = base64.urlsafe_b64encode(b"s" * 16).decode().rstrip("=")


def test_push_subscription_rules(env):
    store, a, _ = env
    res = ok(env, "PushSubscription/set", {"create": {"s": {
        "deviceClientId": "dev1", "url": "https://push.example/x", "types": ["Email"],
        "keys": {"p256dh": P256DH, "auth": AUTH}, "expires": "2999-01-01T00:00:00Z"}}})
    assert "accountId" not in res and "oldState" not in res  # §7.2: neither
    created = res["created"]["s"]
    assert created["verificationCode"] is None and created["expires"] < "2999"
    sid = created["id"]
    got = ok(env, "PushSubscription/get", {"ids": None})
    assert "state" not in got and "accountId" not in got
    [sub] = got["list"]
    assert "url" not in sub and "keys" not in sub  # never returned by default
    assert ok(env, "PushSubscription/get", {"ids": [sid], "properties": ["url", "keys"]})["list"][0] == \
        {"id": sid, "url": None, "keys": None}
    # another user sees nothing of it
    assert ok(env, "PushSubscription/get", {"ids": [sid]}, user="v")["notFound"] == [sid]
    wrong = ok(env, "PushSubscription/set", {"update": {sid: {"verificationCode": "guess"}}})
    assert wrong["notUpdated"][sid]["properties"] == ["verificationCode"]
    from app.pushsubscription import PUSH_SUBSCRIPTION

    with store.read(a) as r:
        code = r.record(PUSH_SUBSCRIPTION.collection, sid)["expectedCode"]
    right = ok(env, "PushSubscription/set", {"update": {sid: {"verificationCode": code}}})
    assert right["updated"] == {sid: None}
    immutable = ok(env, "PushSubscription/set", {"update": {sid: {"url": "https://other/"}}})
    assert immutable["notUpdated"][sid]["properties"] == ["url"]
    bad = ok(env, "PushSubscription/set", {"create": {"t": {"deviceClientId": "d", "url": "http://insecure/",
                                                             "types": ["Nope"], "keys": {"p256dh": "x"}}}})
    assert set(bad["notCreated"]["t"]["properties"]) == {"url", "types", "keys"}
    assert ok(env, "PushSubscription/set", {"destroy": [sid]})["destroyed"] == [sid]
