"""RFC 8620 core protocol, black-box over HTTP: the session resource, authentication, request-level
problem details, method-level errors, result references, creation ids, the standard /get and /changes
argument rules, CORS, robustness against malformed input, and that every registered method answers."""

from __future__ import annotations

import base64
import json
import os
import random
import urllib.parse

import httpx
import pytest

from app.protocol import types as types_registry
from app.protocol.registry import load_methods
from tests.conftest import CORE, MAIL, SUBMISSION, Jmap, tidings, unique

URN = "urn:ietf:params:jmap:error:"
CORE_LIMITS = ("maxSizeUpload", "maxConcurrentUpload", "maxSizeRequest", "maxConcurrentRequests",
               "maxCallsInRequest", "maxObjectsInGet", "maxObjectsInSet")


# ----------------------------------------------------------------------------------------- helpers
def post_api(client: Jmap, body: bytes | str, content_type: str = "application/json") -> httpx.Response:
    if isinstance(body, str):
        body = body.encode()
    return client.http.post(client.api_url, content=body, headers={"Content-Type": content_type})


def post_json(client: Jmap, obj: object) -> httpx.Response:
    return post_api(client, json.dumps(obj))


def assert_problem(r: httpx.Response, type_: str, status: int = 400) -> dict:
    """A request-level error: RFC 7807 problem JSON with the JMAP error urn (RFC 8620 §3.6.1)."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0].strip() in ("application/problem+json",
                                                               "application/json"), r.headers
    problem = r.json()
    assert problem["type"] == URN + type_, problem
    assert problem.get("status", status) == status, problem
    return problem


def responses(client: Jmap, calls: list, using: list[str] | None = None, **extra) -> list:
    body = {"using": using or [CORE, MAIL, SUBMISSION], "methodCalls": calls, **extra}
    r = client.http.post(client.api_url, json=body)
    assert r.status_code == 200, r.text
    return r.json()["methodResponses"]


def error_of(client: Jmap, method: str, args: dict, using: list[str] | None = None) -> dict:
    """Calls one method expecting a method-level error; returns the error object."""
    args = dict(args)
    args.setdefault("accountId", client.account_id)
    [(name, result, call_id)] = responses(client, [[method, args, "e0"]], using)
    assert call_id == "e0"
    assert name == "error", (name, result)
    assert isinstance(result.get("type"), str)
    return result


def absolute(client: Jmap, url: str) -> str:
    return urllib.parse.urljoin(client.server.base + "/.well-known/jmap", url)


def expand(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", urllib.parse.quote(value, safe=""))
    return template


def basic(user: str, password: str) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# ------------------------------------------------------------------------------ session resource
def test_session_advertises_core_limits_capabilities_and_accounts(alice):
    s = alice.session
    core = s["capabilities"][CORE]
    for limit in CORE_LIMITS:
        assert isinstance(core[limit], int) and not isinstance(core[limit], bool), limit
        assert core[limit] > 0, limit
    assert isinstance(core["collationAlgorithms"], list)
    assert MAIL in s["capabilities"]
    account_id = s["primaryAccounts"][MAIL]
    account = s["accounts"][account_id]
    assert isinstance(account["name"], str) and account["name"]
    assert account["isPersonal"] is True
    assert account["isReadOnly"] is False
    assert MAIL in account["accountCapabilities"]
    # every capability an account offers is a server capability, but principals:owner, which
    # RFC 9670 §2 puts only in accountCapabilities
    owner = "urn:ietf:params:jmap:principals:owner"
    assert set(account["accountCapabilities"]) - {owner} <= set(s["capabilities"])
    assert owner not in s["capabilities"]
    assert account["accountCapabilities"][owner] == {"accountIdForPrincipal": account_id, "principalId": account_id}
    assert s["username"] == "alice"
    assert isinstance(s["state"], str) and s["state"]


def test_primary_accounts_omit_core_as_the_rfc_recommends(alice):
    """RFC 8620 §2 primaryAccounts: "urn:ietf:params:jmap:core SHOULD NOT be present"."""
    primary = alice.session["primaryAccounts"]
    assert CORE not in primary, primary
    assert primary[MAIL] == alice.account_id


def test_session_url_templates_carry_the_rfc_variables(alice):
    s = alice.session
    assert isinstance(s["apiUrl"], str) and s["apiUrl"]
    for var in ("accountId", "blobId", "type", "name"):
        assert "{" + var + "}" in s["downloadUrl"], var
    assert "{accountId}" in s["uploadUrl"]
    for var in ("types", "closeafter", "ping"):
        assert "{" + var + "}" in s["eventSourceUrl"], var


def test_session_urls_are_absolute_so_third_party_clients_can_use_them(alice):
    """jmapc and most clients use apiUrl/uploadUrl/... as they are: they must be absolute URLs
    (RFC 8620 §2 names them URLs; every example in the RFC is absolute) that reach this server."""
    s = alice.session
    for key in ("apiUrl", "downloadUrl", "uploadUrl", "eventSourceUrl"):
        parsed = urllib.parse.urlsplit(s[key])
        assert parsed.scheme in ("http", "https") and parsed.netloc, (key, s[key])
    assert s["apiUrl"].startswith(alice.server.base), (s["apiUrl"], alice.server.base)


def test_session_resource_is_not_cached(alice):
    r = alice.http.get("/.well-known/jmap")
    assert r.status_code == 200
    assert "no-store" in r.headers.get("cache-control", "") or "no-cache" in r.headers.get("cache-control", "")


def test_session_state_is_echoed_as_session_state_in_api_responses(alice):
    body = alice.request([["Core/echo", {}, "c"]])
    assert body["sessionState"] == alice.session["state"]


def test_session_is_per_user(alice, bob):
    assert bob.session["username"] == "bob"
    assert bob.account_id != alice.account_id
    assert alice.account_id not in bob.session["accounts"]


def test_session_url_templates_work_for_upload_and_download(alice):
    s = alice.session
    data = f"template check {unique()}".encode()
    up = alice.http.post(absolute(alice, expand(s["uploadUrl"], accountId=alice.account_id)), content=data,
                         headers={"Content-Type": "application/octet-stream"})
    assert up.status_code == 201, up.text
    url = expand(s["downloadUrl"], accountId=alice.account_id, blobId=up.json()["blobId"], name="x.bin",
                 type="application/octet-stream")
    down = alice.http.get(absolute(alice, url))
    assert down.status_code == 200
    assert down.content == data


# --------------------------------------------------------------------------------- authentication
def _protected_requests(alice: Jmap) -> list[tuple[str, str, dict]]:
    s = alice.session
    api = absolute(alice, s["apiUrl"])
    upload = absolute(alice, expand(s["uploadUrl"], accountId=alice.account_id))
    download = absolute(alice, expand(s["downloadUrl"], accountId=alice.account_id, blobId="Gdeadbeef",
                                      name="x", type="text/plain"))
    events = absolute(alice, expand(s["eventSourceUrl"], types="*", closeafter="state", ping="0"))
    body = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]]})
    return [("GET", alice.server.base + "/.well-known/jmap", {}),
            ("POST", api, {"content": body, "headers": {"Content-Type": "application/json"}}),
            ("POST", upload, {"content": b"data", "headers": {"Content-Type": "text/plain"}}),
            ("GET", download, {}),
            ("GET", events, {})]


@pytest.mark.parametrize("credentials", [None, ("alice", "wrong-password"), ("nobody", "alice-pw"),
                                         ("alice", "")], ids=["none", "wrong-password", "unknown-user",
                                                              "empty-password"])
def test_missing_or_wrong_credentials_get_401_with_www_authenticate(alice, credentials):
    for method, url, kw in _protected_requests(alice):
        headers = dict(kw.get("headers", {}))
        if credentials:
            headers.update(basic(*credentials))
        r = httpx.request(method, url, content=kw.get("content"), headers=headers, timeout=30)
        assert r.status_code == 401, (method, url, r.status_code, r.text)
        assert r.headers.get("www-authenticate", "").lower().startswith("basic"), (url, r.headers)


@pytest.mark.parametrize("header", ["Basic !!!notbase64", "Bearer sometoken", "Basic " +
                                    base64.b64encode(b"no-colon").decode(), "Basic"])
def test_malformed_authorization_header_gets_401_not_500(alice, header):
    r = httpx.get(alice.server.base + "/.well-known/jmap", headers={"Authorization": header}, timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers.get("www-authenticate", "").lower().startswith("basic")


def test_changed_password_takes_effect_at_once(server):
    name = unique("pw")
    data = server.data
    tidings("user", "add", name, "--password", "first-pw", "--email", f"{name}@example.com", data=data)
    url = server.base + "/.well-known/jmap"
    assert httpx.get(url, auth=(name, "first-pw"), timeout=30).status_code == 200
    # a second request hits the server's credential cache
    assert httpx.get(url, auth=(name, "first-pw"), timeout=30).status_code == 200

    tidings("user", "passwd", name, "--password", "second-pw", data=data)
    assert httpx.get(url, auth=(name, "first-pw"), timeout=30).status_code == 401
    assert httpx.get(url, auth=(name, "second-pw"), timeout=30).status_code == 200
    assert httpx.get(url, auth=(name, "second-pw"), timeout=30).status_code == 200

    # and back again: the cache must not keep either password alive
    tidings("user", "passwd", name, "--password", "first-pw", data=data)
    assert httpx.get(url, auth=(name, "second-pw"), timeout=30).status_code == 401
    assert httpx.get(url, auth=(name, "first-pw"), timeout=30).status_code == 200


def test_utf8_password_is_accepted(server):
    """The server advertises Basic with charset="UTF-8" (RFC 7617)."""
    name = unique("utf")
    password = "p\u00e4ssw\u00f6rd \u2603"
    tidings("user", "add", name, "--password", password, "--email", f"{name}@example.com", data=server.data)
    url = server.base + "/.well-known/jmap"
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    assert httpx.get(url, headers={"Authorization": f"Basic {token}"}, timeout=30).status_code == 200
    assert httpx.get(url, auth=(name, "passwords"), timeout=30).status_code == 401


def test_deleted_user_is_refused_at_once(server):
    name = unique("del")
    tidings("user", "add", name, "--password", "pw", "--email", f"{name}@example.com", data=server.data)
    url = server.base + "/.well-known/jmap"
    assert httpx.get(url, auth=(name, "pw"), timeout=30).status_code == 200
    tidings("user", "delete", name, "--yes", data=server.data)
    assert httpx.get(url, auth=(name, "pw"), timeout=30).status_code == 401


# ---------------------------------------------------------------------- request-level errors
@pytest.mark.parametrize("body", [b"this is not json", b"{\"using\": [", b"\xff\xfe\x00garbage", b"",
                                  b"{'using': []}", b"NaN", b"[1e400]"],
                         ids=["text", "truncated", "binary", "empty", "single-quotes", "nan", "infinity"])
def test_body_that_is_not_json_is_a_notjson_problem(alice, body):
    problem = assert_problem(post_api(alice, body), "notJSON")
    assert problem.get("detail")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_request_that_is_not_of_type_application_json_is_notjson(alice, content_type):
    """RFC 8620 §3.6.1 notJSON: "The content type of the request was not application/json or ..."."""
    body = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]]})
    assert_problem(post_api(alice, body, content_type), "notJSON")


def test_application_json_with_charset_parameter_is_accepted(alice):
    body = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {"a": 1}, "c"]]})
    r = post_api(alice, body, "application/json; charset=utf-8")
    assert r.status_code == 200, r.text
    assert r.json()["methodResponses"] == [["Core/echo", {"a": 1}, "c"]]


@pytest.mark.parametrize("body", [
    [],
    "a string",
    42,
    None,
    {},
    {"using": [CORE]},
    {"methodCalls": []},
    {"using": "urn:ietf:params:jmap:core", "methodCalls": []},
    {"using": [CORE, 5], "methodCalls": []},
    {"using": [CORE], "methodCalls": {}},
    {"using": [CORE], "methodCalls": [["Core/echo", {}]]},
    {"using": [CORE], "methodCalls": [["Core/echo", {}, "c", "extra"]]},
    {"using": [CORE], "methodCalls": [["Core/echo", [], "c"]]},
    {"using": [CORE], "methodCalls": [["Core/echo", {}, 5]]},
    {"using": [CORE], "methodCalls": [[5, {}, "c"]]},
    {"using": [CORE], "methodCalls": ["Core/echo"]},
    {"using": [CORE], "methodCalls": [], "createdIds": []},
    {"using": [CORE], "methodCalls": [], "createdIds": {"a": 5}},
], ids=lambda b: json.dumps(b)[:40])
def test_json_that_is_not_a_request_is_a_notrequest_problem(alice, body):
    problem = assert_problem(post_json(alice, body), "notRequest")
    assert problem.get("detail")


def test_unknown_request_properties_are_ignored(alice):
    r = post_json(alice, {"using": [CORE], "methodCalls": [["Core/echo", {"a": 1}, "c"]], "future": {"x": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["methodResponses"] == [["Core/echo", {"a": 1}, "c"]]


def test_empty_method_calls_answer_an_empty_response(alice):
    r = post_json(alice, {"using": [CORE], "methodCalls": []})
    assert r.status_code == 200, r.text
    assert r.json()["methodResponses"] == []
    assert "sessionState" in r.json()


def test_unknown_capability_is_a_request_level_error(alice):
    r = post_json(alice, {"using": [CORE, "https://example.com/apis/foobar"],
                          "methodCalls": [["Core/echo", {}, "c"]]})
    problem = assert_problem(r, "unknownCapability")
    assert "https://example.com/apis/foobar" in problem.get("detail", "")


def test_more_calls_than_max_calls_in_request_is_a_limit_problem(alice):
    limit = alice.session["capabilities"][CORE]["maxCallsInRequest"]
    calls = [["Core/echo", {"i": i}, f"c{i}"] for i in range(limit)]
    ok = post_json(alice, {"using": [CORE], "methodCalls": calls})
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["methodResponses"]) == limit
    calls.append(["Core/echo", {}, "one-too-many"])
    problem = assert_problem(post_json(alice, {"using": [CORE], "methodCalls": calls}), "limit")
    assert problem["limit"] == "maxCallsInRequest"


def test_request_larger_than_max_size_request_is_a_limit_problem(alice):
    limit = alice.session["capabilities"][CORE]["maxSizeRequest"]
    assert limit <= 64_000_000, "test would send too much"
    body = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {"pad": "x" * limit}, "c"]]})
    r = post_api(alice, body)
    problem = assert_problem(r, "limit", 413 if r.status_code == 413 else 400)
    assert problem["limit"] == "maxSizeRequest"


def test_oversized_chunked_request_without_content_length_is_a_limit_problem(alice):
    limit = alice.session["capabilities"][CORE]["maxSizeRequest"]
    head = b'{"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {"pad": "'
    tail = b'"}, "c"]]}'

    def chunks():
        yield head
        sent = 0
        piece = b"y" * 65536
        while sent <= limit:
            yield piece
            sent += len(piece)
        yield tail

    r = alice.http.post(alice.api_url, content=chunks(), headers={"Content-Type": "application/json"})
    problem = assert_problem(r, "limit", 413 if r.status_code == 413 else 400)
    assert problem["limit"] == "maxSizeRequest"
    # the connection pool and the server are fine afterwards
    assert alice.request([["Core/echo", {"ok": True}, "c"]])["methodResponses"][0][1] == {"ok": True}


# --------------------------------------------------------------------------- method processing
def test_core_echo_returns_its_arguments_unchanged(alice):
    args = {"hello": True, "high": 5, "list": [1, "two", None, {"x": [3.5]}], "nested": {"a": {"b": "c"}},
            "unicode": "h\u00e9llo \u2603 \U0001f600"}
    body = alice.request([["Core/echo", args, "e1"]], using=[CORE])
    assert body["methodResponses"] == [["Core/echo", args, "e1"]]


def test_method_calls_are_answered_in_order_with_their_call_ids(alice):
    calls = [["Core/echo", {"n": i}, f"id-{i}"] for i in range(10)]
    body = alice.request(calls, using=[CORE])
    assert body["methodResponses"] == [["Core/echo", {"n": i}, f"id-{i}"] for i in range(10)]


def test_unknown_method_is_a_method_error_and_later_calls_still_run(alice):
    res = responses(alice, [["Foo/bar", {}, "a"], ["Core/echo", {"after": 1}, "b"]])
    assert res[0][0] == "error" and res[0][1]["type"] == "unknownMethod" and res[0][2] == "a"
    assert res[1] == ["Core/echo", {"after": 1}, "b"]


def test_method_without_its_capability_in_using_is_unknown_method(alice):
    err = error_of(alice, "Mailbox/get", {"ids": None}, using=[CORE])
    assert err["type"] == "unknownMethod"
    err = error_of(alice, "Identity/get", {"ids": None}, using=[CORE, MAIL])
    assert err["type"] == "unknownMethod"
    # with the capability it works
    assert alice.ok("Mailbox/get", ids=[])["list"] == []


def test_account_of_another_user_is_account_not_found_and_next_request_works(alice, bob):
    res = responses(alice, [["Mailbox/get", {"accountId": bob.account_id, "ids": None}, "a"],
                            ["Mailbox/get", {"accountId": alice.account_id, "ids": []}, "b"]])
    assert res[0][0] == "error" and res[0][1]["type"] == "accountNotFound"
    assert res[1][0] == "Mailbox/get"
    err = error_of(alice, "Mailbox/get", {"accountId": "Anonexistent", "ids": None})
    assert err["type"] == "accountNotFound"
    assert alice.ok("Mailbox/get", ids=None)["list"], "alice's next request works"
    # bob's data was not touched or revealed
    names = {mb["name"] for mb in bob.ok("Mailbox/get", ids=None)["list"]}
    assert "Inbox" in names or names


@pytest.mark.parametrize("args, mentions", [
    ({"ids": "notalist"}, "ids"),
    ({"ids": [1, 2]}, "ids"),
    ({"ids": None, "bogus": 1}, "bogus"),
    ({"ids": None, "properties": "name"}, "properties"),
    ({"ids": None, "properties": ["name", "noSuchProperty"]}, "noSuchProperty"),
    ({"ids": None, "accountId": 5}, "accountId"),
])
def test_wrong_argument_types_are_invalid_arguments_with_a_description(alice, args, mentions):
    err = error_of(alice, "Mailbox/get", args)
    assert err["type"] == "invalidArguments", err
    assert mentions in err.get("description", ""), err


def test_missing_account_id_is_invalid_arguments(alice):
    [(name, result, _)] = responses(alice, [["Mailbox/get", {"ids": None}, "c"]])
    assert name == "error" and result["type"] == "invalidArguments"


def test_more_ids_than_max_objects_in_get_is_request_too_large(alice):
    limit = alice.session["capabilities"][CORE]["maxObjectsInGet"]
    err = error_of(alice, "Mailbox/get", {"ids": [f"B{i:06x}" for i in range(limit + 1)]})
    assert err["type"] == "requestTooLarge"
    ok = alice.ok("Mailbox/get", ids=[f"nope{i}" for i in range(limit)])
    assert len(ok["notFound"]) == limit


def test_more_objects_than_max_objects_in_set_is_request_too_large(alice):
    limit = alice.session["capabilities"][CORE]["maxObjectsInSet"]
    err = error_of(alice, "Mailbox/set", {"destroy": [f"nope{i}" for i in range(limit + 1)]})
    assert err["type"] == "requestTooLarge"


def test_get_returns_not_found_ids_and_always_includes_id(alice):
    inbox = alice.mailbox("inbox")
    res = alice.ok("Mailbox/get", ids=[inbox, "no-such-mailbox"], properties=["name"])
    assert res["notFound"] == ["no-such-mailbox"]
    assert res["list"] == [{"id": inbox, "name": res["list"][0]["name"]}]
    assert isinstance(res["state"], str)


# -------------------------------------------------------------------------- result references
def test_result_reference_feeds_ids_from_a_query_into_a_get(alice):
    res = responses(alice, [
        ["Mailbox/query", {"accountId": alice.account_id, "filter": {"role": "inbox"}}, "q"],
        ["Mailbox/get", {"accountId": alice.account_id,
                         "#ids": {"resultOf": "q", "name": "Mailbox/query", "path": "/ids"}}, "g"]])
    assert res[1][0] == "Mailbox/get", res[1]
    assert [mb["role"] for mb in res[1][1]["list"]] == ["inbox"]


def test_result_reference_star_maps_through_arrays_and_flattens(alice):
    res = responses(alice, [
        ["Core/echo", {"items": [{"ids": ["a", "b"]}, {"ids": ["c"]}, {"ids": []}],
                       "objs": [{"x": {"y": 1}}, {"x": {"y": 2}}]}, "src"],
        ["Core/echo", {"#flat": {"resultOf": "src", "name": "Core/echo", "path": "/items/*/ids"},
                       "#mapped": {"resultOf": "src", "name": "Core/echo", "path": "/objs/*/x/y"},
                       "#indexed": {"resultOf": "src", "name": "Core/echo", "path": "/items/1/ids/0"},
                       "plain": "kept"}, "dst"]], using=[CORE])
    assert res[1] == ["Core/echo", {"flat": ["a", "b", "c"], "mapped": [1, 2], "indexed": "c",
                                    "plain": "kept"}, "dst"]


def test_result_reference_star_over_mailbox_get_list(alice):
    res = responses(alice, [
        ["Mailbox/get", {"accountId": alice.account_id, "ids": None, "properties": ["id"]}, "all"],
        ["Mailbox/get", {"accountId": alice.account_id, "properties": ["role"],
                         "#ids": {"resultOf": "all", "name": "Mailbox/get", "path": "/list/*/id"}}, "again"]])
    assert res[1][0] == "Mailbox/get", res[1]
    assert [m["id"] for m in res[1][1]["list"]] == [m["id"] for m in res[0][1]["list"]]


def test_result_reference_star_on_an_object_is_a_plain_member_name(alice):
    """RFC 8620 §3.7 gives "*" a meaning only on arrays; on an object it is an ordinary JSON Pointer
    (RFC 6901) reference token, so a member literally named "*" must be selected."""
    res = responses(alice, [
        ["Core/echo", {"m": {"*": "star", "other": "x"}}, "src"],
        ["Core/echo", {"#v": {"resultOf": "src", "name": "Core/echo", "path": "/m/*"}}, "dst"]], using=[CORE])
    assert res[1] == ["Core/echo", {"v": "star"}, "dst"], res[1]


def test_result_reference_pointer_escapes_are_decoded(alice):
    res = responses(alice, [
        ["Core/echo", {"a/b": {"m~n": 7}}, "src"],
        ["Core/echo", {"#v": {"resultOf": "src", "name": "Core/echo", "path": "/a~1b/m~0n"}}, "dst"]],
        using=[CORE])
    assert res[1] == ["Core/echo", {"v": 7}, "dst"]


@pytest.mark.parametrize("ref", [
    {"resultOf": "src", "name": "Core/echo", "path": "/nope"},
    {"resultOf": "src", "name": "Core/echo", "path": "/list/5"},
    {"resultOf": "src", "name": "Core/echo", "path": "/list/x"},
    {"resultOf": "src", "name": "Core/echo", "path": "/scalar/deeper"},
    {"resultOf": "src", "name": "Mailbox/query", "path": "/list"},
    {"resultOf": "unknown-call", "name": "Core/echo", "path": "/list"},
    {"resultOf": "later", "name": "Core/echo", "path": "/list"},
    {"resultOf": "src", "name": "Core/echo"},
    "not-an-object",
], ids=["missing-member", "index-out-of-range", "non-numeric-index", "into-scalar", "wrong-name",
        "unknown-call-id", "forward-reference", "no-path", "not-an-object"])
def test_unresolvable_result_reference_is_invalid_result_reference(alice, ref):
    res = responses(alice, [
        ["Core/echo", {"list": [1, 2], "scalar": 3}, "src"],
        ["Core/echo", {"#value": ref}, "ref"],
        ["Core/echo", {"after": True}, "later"]], using=[CORE])
    assert res[1][0] == "error" and res[1][1]["type"] == "invalidResultReference", res[1]
    assert res[1][2] == "ref"
    assert res[2] == ["Core/echo", {"after": True}, "later"]


def test_reference_to_an_error_response_by_method_name_fails(alice):
    res = responses(alice, [
        ["Mailbox/get", {"accountId": "nope", "ids": None}, "bad"],
        ["Mailbox/get", {"accountId": alice.account_id,
                         "#ids": {"resultOf": "bad", "name": "Mailbox/get", "path": "/list/*/id"}}, "g"]])
    assert res[0][0] == "error"
    assert res[1][0] == "error" and res[1][1]["type"] == "invalidResultReference"


def test_argument_given_both_plain_and_as_reference_is_invalid_arguments(alice):
    res = responses(alice, [
        ["Mailbox/query", {"accountId": alice.account_id}, "q"],
        ["Mailbox/get", {"accountId": alice.account_id, "ids": [],
                         "#ids": {"resultOf": "q", "name": "Mailbox/query", "path": "/ids"}}, "g"]])
    assert res[1][0] == "error" and res[1][1]["type"] == "invalidArguments", res[1]


# ------------------------------------------------------------------------------------ creation ids
def test_creation_id_reference_resolves_in_a_later_call(alice):
    name = unique("cid")
    res = responses(alice, [
        ["Mailbox/set", {"accountId": alice.account_id, "create": {"x": {"name": name}}}, "s"],
        ["Mailbox/get", {"accountId": alice.account_id, "ids": ["#x"]}, "g"]])
    assert res[0][0] == "Mailbox/set" and res[0][1]["created"]["x"]["id"], res[0]
    new_id = res[0][1]["created"]["x"]["id"]
    assert res[1][0] == "Mailbox/get"
    assert [(m["id"], m["name"]) for m in res[1][1]["list"]] == [(new_id, name)]


def test_created_ids_round_trip_includes_given_and_new_ids(alice):
    inbox = alice.mailbox("inbox")
    name = unique("rt")
    r = alice.http.post(alice.api_url, json={
        "using": [CORE, MAIL],
        "createdIds": {"given": inbox},
        "methodCalls": [
            ["Mailbox/get", {"accountId": alice.account_id, "ids": ["#given"], "properties": ["role"]}, "g"],
            ["Mailbox/set", {"accountId": alice.account_id,
                             "create": {"child": {"name": name, "parentId": "#given"}}}, "s"]]})
    assert r.status_code == 200, r.text
    body = r.json()
    get, setr = body["methodResponses"]
    assert get[0] == "Mailbox/get" and get[1]["list"] == [{"id": inbox, "role": "inbox"}], get
    assert setr[0] == "Mailbox/set" and setr[1]["created"], setr
    new_id = setr[1]["created"]["child"]["id"]
    assert body["createdIds"] == {"given": inbox, "child": new_id}
    [mb] = alice.ok("Mailbox/get", ids=[new_id])["list"]
    assert mb["parentId"] == inbox


def test_created_ids_is_absent_from_the_response_unless_given(alice):
    body = alice.request([["Mailbox/set", {"accountId": alice.account_id,
                                           "create": {"k": {"name": unique("ci")}}}, "s"]])
    assert "createdIds" not in body
    r = alice.http.post(alice.api_url, json={"using": [CORE], "createdIds": {},
                                             "methodCalls": [["Core/echo", {}, "c"]]})
    assert r.status_code == 200 and r.json()["createdIds"] == {}


# --------------------------------------------------------------------------------------- /changes
@pytest.mark.parametrize("state", ["garbage", "-1", "99999999999999", "", "state-from-elsewhere", "1e5"])
def test_changes_from_an_unknown_state_is_cannot_calculate_changes(alice, state):
    err = error_of(alice, "Mailbox/changes", {"sinceState": state})
    assert err["type"] == "cannotCalculateChanges", err


@pytest.mark.parametrize("max_changes", [0, -1, "5", 1.5])
def test_changes_with_bad_max_changes_is_invalid_arguments(alice, max_changes):
    state = alice.ok("Mailbox/get", ids=[])["state"]
    err = error_of(alice, "Mailbox/changes", {"sinceState": state, "maxChanges": max_changes})
    assert err["type"] == "invalidArguments", err


def test_changes_without_since_state_is_invalid_arguments(alice):
    assert error_of(alice, "Mailbox/changes", {})["type"] == "invalidArguments"


def test_changes_from_current_state_is_empty(alice):
    state = alice.ok("Mailbox/get", ids=[])["state"]
    ch = alice.ok("Mailbox/changes", sinceState=state)
    assert ch["oldState"] == state and ch["newState"] == state
    assert ch["hasMoreChanges"] is False
    assert ch["created"] == ch["updated"] == ch["destroyed"] == []


def test_changes_pages_with_max_changes_through_intermediate_states(alice):
    start = alice.ok("Mailbox/get", ids=[])["state"]
    created = []
    # three separate transactions and one with four creates: pages cross and split transactions
    for _ in range(3):
        res = alice.ok("Mailbox/set", create={"a": {"name": unique("pg")}})
        created.append(res["created"]["a"]["id"])
    res = alice.ok("Mailbox/set", create={f"b{i}": {"name": unique("pg")} for i in range(4)})
    created += [res["created"][f"b{i}"]["id"] for i in range(4)]
    current = alice.ok("Mailbox/get", ids=[])["state"]

    seen: list[str] = []
    state, pages = start, 0
    while True:
        ch = alice.ok("Mailbox/changes", sinceState=state, maxChanges=2)
        pages += 1
        assert pages < 20, "no progress"
        assert ch["oldState"] == state
        ids = ch["created"] + ch["updated"] + ch["destroyed"]
        assert len(ids) <= 2, ch
        assert not set(ids) & set(seen), ("an id came back in a later page", ch)
        seen += ch["created"]
        assert not ch["updated"] and not ch["destroyed"], ch
        if not ch["hasMoreChanges"]:
            assert ch["newState"] == current
            break
        assert ch["newState"] != state, "an intermediate state must move forward"
        state = ch["newState"]
    assert sorted(seen) == sorted(created)
    assert pages >= 4


def test_changes_collapse_create_then_update_and_create_then_destroy(alice):
    start = alice.ok("Mailbox/get", ids=[])["state"]
    a = alice.ok("Mailbox/set", create={"a": {"name": unique("cl")}})["created"]["a"]["id"]
    b = alice.ok("Mailbox/set", create={"b": {"name": unique("cl")}})["created"]["b"]["id"]
    alice.ok("Mailbox/set", update={a: {"name": unique("cl")}})
    alice.ok("Mailbox/set", destroy=[b])
    ch = alice.ok("Mailbox/changes", sinceState=start)
    assert ch["created"] == [a]
    assert ch["updated"] == [] and ch["destroyed"] == []
    middle = alice.ok("Mailbox/set", update={a: {"name": unique("cl")}})["oldState"]
    alice.ok("Mailbox/set", destroy=[a])
    ch = alice.ok("Mailbox/changes", sinceState=middle)
    assert ch["destroyed"] == [a] and ch["updated"] == [] and ch["created"] == []


# ------------------------------------------------------------------------------------------- CORS
def test_cors_preflight_allows_browser_clients(alice):
    for path in ("/jmap/api/", "/.well-known/jmap", f"/jmap/upload/{alice.account_id}/"):
        r = httpx.options(alice.server.base + path, headers={
            "Origin": "https://webmail.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"}, timeout=30)
        assert r.status_code in (200, 204), (path, r.status_code, r.text)
        assert r.headers.get("access-control-allow-origin") in ("*", "https://webmail.example.org"), r.headers
        allowed = r.headers.get("access-control-allow-headers", "").lower()
        assert "authorization" in allowed or allowed == "*", r.headers


def test_cors_headers_on_actual_responses(alice):
    origin = {"Origin": "https://webmail.example.org"}
    r = alice.http.post(alice.api_url, json={"using": [CORE], "methodCalls": []}, headers=origin)
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") in ("*", "https://webmail.example.org")
    r = httpx.get(alice.server.base + "/.well-known/jmap", headers=origin, timeout=30)
    assert r.status_code == 401
    assert r.headers.get("access-control-allow-origin") in ("*", "https://webmail.example.org")


# ----------------------------------------------------------------------------------- robustness
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _changed_something(result: dict) -> bool:
    return any(result.get(key) for key in ("created", "updated", "destroyed", "list", "ids"))


def test_server_survives_a_flood_of_malformed_requests(alice):
    rng = random.Random(8620)
    acct = alice.account_id
    bodies: list[bytes] = [os.urandom(rng.randint(1, 4000)) for _ in range(30)]
    bodies += [
        _nested(100_000).encode(),
        ('{"using": ["' + CORE + '"], "methodCalls": [["Core/echo", {"x": ' + _nested(5000) + '}, "c"]]}').encode(),
        ('{"using": ["' + CORE + '"], "methodCalls": [["Core/echo", {"x": ' + _nested(600) + '}, "c"]]}').encode(),
        ('{"using": ["' + CORE + '"], "methodCalls": [["Core/echo", {"x": ' + _nested(300) + '}, "c"]]}').encode(),
        ('{"using": ["' + CORE + '"], "methodCalls": [["Core/echo", {"x": ' + _nested(252) + '}, "c"]]}').encode(),
        ('{"a":' * 2000 + '1' + '}' * 2000).encode(),
        b'{"using": ["' + CORE.encode() + b'"], "methodCalls": [["Core/echo", {"n": 1' + b"0" * 5000 + b'}, "c"]]}',
        b'{"using": ["' + CORE.encode() + b'"], "methodCalls": [["Core/echo", {"n": 1e400}, "c"]]}',
        b'{"using": ["' + CORE.encode() + b'"], "methodCalls": [["Core/echo", {"n": -1e-400}, "c"]]}',
        b'{"using": ["' + CORE.encode() + b'"], "methodCalls": [["Core/echo", {"s": "\\ud800"}, "c"]]}',
        b'\xef\xbb\xbf{"using": [], "methodCalls": []}',
        b'{"using": [], "methodCalls": []} trailing',
        b'{"using": ["\xff\xfe"], "methodCalls": []}',
        b"\x00" * 1000,
        b'{"using": [' + b'"x",' * 100000 + b'"y"], "methodCalls": []}',
    ]
    # calls whose arguments break the type signature: an error, or a /set that changes nothing
    bad_args = [
        ("Mailbox/get", {"ids": {"a": 1}}), ("Mailbox/get", {"ids": [[["x"]]]}),
        ("Mailbox/get", {"properties": [1, 2]}), ("Mailbox/get", {"ids": 10**30}),
        ("Mailbox/query", {"position": "x"}), ("Mailbox/query", {"position": 10**30}),
        ("Mailbox/query", {"limit": -5}), ("Mailbox/query", {"limit": 1e300}),
        ("Mailbox/query", {"anchor": 5}), ("Mailbox/query", {"filter": 5}),
        ("Mailbox/query", {"filter": {"operator": "XOR", "conditions": []}}),
        ("Mailbox/query", {"filter": {"operator": "AND", "conditions": "x"}}),
        ("Mailbox/query", {"filter": {"operator": "NOT", "conditions": [5]}}),
        ("Mailbox/query", {"filter": {"name": 5}}), ("Mailbox/query", {"filter": {"parentId": ["x"]}}),
        ("Mailbox/query", {"sort": "name"}), ("Mailbox/query", {"sort": [{"property": 5}]}),
        ("Mailbox/query", {"sort": [{"property": "name", "isAscending": "yes"}]}),
        ("Mailbox/query", {"sort": [{"property": "name", "collation": 5}]}),
        ("Mailbox/query", {"sortAsTree": "yes"}),
        ("Mailbox/changes", {"sinceState": 5}), ("Mailbox/changes", {"sinceState": "1", "maxChanges": 2**64}),
        ("Mailbox/changes", {"sinceState": "1", "maxChanges": 1e300}),
        ("Mailbox/changes", {"sinceState": "9" * 100}),
        ("Mailbox/queryChanges", {"sinceQueryState": None}),
        ("Mailbox/queryChanges", {"sinceQueryState": "1", "maxChanges": "x"}),
        ("Mailbox/set", {"create": []}), ("Mailbox/set", {"create": {"a": 5}}),
        ("Mailbox/set", {"create": {"a": {"name": ["x"]}}}),
        ("Mailbox/set", {"create": {"a": {"name": "x" * 100_000}}}),
        ("Mailbox/set", {"create": {"a": {"name": None, "sortOrder": 2**70, "parentId": 5, "role": 5,
                                          "isSubscribed": "yes"}}}),
        ("Mailbox/set", {"update": {"nope": {"name/x/y": 1}}}), ("Mailbox/set", {"update": []}),
        ("Mailbox/set", {"update": {"nope": 5}}),
        ("Mailbox/set", {"destroy": "x"}), ("Mailbox/set", {"destroy": [5]}),
        ("Mailbox/set", {"ifInState": 5}), ("Mailbox/set", {"onDestroyRemoveEmails": "yes"}),
        ("Thread/get", {"ids": "x"}), ("Thread/changes", {"sinceState": {}}),
        ("Identity/get", {"ids": [None]}),
        ("Email/get", {"ids": "x"}), ("Email/get", {"ids": [], "properties": ["header:"]}),
        ("Email/get", {"ids": [], "maxBodyValueBytes": -1}), ("Email/get", {"ids": [], "bodyProperties": 5}),
        ("Email/set", {"update": {"x": {"keywords": 5}}}),
        ("Email/import", {"emails": []}), ("Email/import", {"emails": {"a": {"blobId": 5}}}),
        ("Email/import", {"emails": {"a": {"blobId": "Gnope", "mailboxIds": [], "receivedAt": "yesterday"}}}),
        ("Email/changes", {"sinceState": "x", "maxChanges": -3}),
    ]
    # extreme but well-typed values: any answer but serverFail
    extreme_args = [
        ("Mailbox/query", {"position": 2**53 - 1}), ("Mailbox/query", {"position": -(2**53 - 1)}),
        ("Mailbox/query", {"limit": 2**53 - 1}), ("Mailbox/query", {"anchorOffset": -(2**53 - 1)}),
        ("Mailbox/query", {"position": 9223372036854775807}),
        ("Mailbox/query", {"filter": json.loads('{"operator": "AND", "conditions": [' * 200 + ']}' * 200)}),
        ("Mailbox/changes", {"sinceState": "1", "maxChanges": 2**53 - 1}),
        ("Email/get", {"ids": [], "maxBodyValueBytes": 2**53 - 1}),
    ]
    calls = [(m, a, True) for m, a in bad_args] + [(m, a, False) for m, a in extreme_args]
    for method, args, _ in calls:
        body = {"using": [CORE, MAIL, SUBMISSION],
                "methodCalls": [[method, {"accountId": acct, **args}, "bad"], ["Core/echo", {"ok": 1}, "after"]]}
        bodies.append(json.dumps(body).encode())
    strict = {json.dumps({"using": [CORE, MAIL, SUBMISSION],
                          "methodCalls": [[m, {"accountId": acct, **a}, "bad"],
                                          ["Core/echo", {"ok": 1}, "after"]]}).encode()
              for m, a, is_bad in calls if is_bad}
    # wrong types at the request level
    for body in ({"using": [CORE], "methodCalls": [["Core/echo", {"#x": {"resultOf": 5, "name": [],
                                                                         "path": None}}, "c"]]},
                 {"using": [CORE], "methodCalls": [["Core/echo", {"#x": None}, "c"]]},
                 {"using": [CORE], "methodCalls": [["Core/echo", {"#x": {"resultOf": "c", "name": "Core/echo",
                                                                         "path": "/" + "/".join(["*"] * 500)}},
                                                    "c"]]},
                 {"using": {"a": 1}, "methodCalls": None},
                 {"using": [CORE], "methodCalls": [[None, None, None]]}):
        bodies.append(json.dumps(body).encode())

    failures = []
    for body in bodies:
        try:
            try:
                r = post_api(alice, body)
            except httpx.TransportError:  # a kept-alive connection dropped after an earlier failure
                r = post_api(alice, body)
        except httpx.TransportError as exc:
            failures.append((body[:80], "connection failed", repr(exc)))
            continue
        if r.status_code >= 500:
            failures.append((body[:80], r.status_code, r.text[:200]))
            continue
        if r.status_code == 200:
            for name, result, call_id in r.json()["methodResponses"]:
                if name == "error" and result.get("type") == "serverFail":
                    failures.append((body[:120], "serverFail", result))
                if call_id == "bad" and body in strict and name != "error" and _changed_something(result):
                    failures.append((body[:120], "accepted a malformed call", name, result))
            if body.startswith(b'{"using": ["urn') and b'"after"' in body:
                assert r.json()["methodResponses"][-1] == ["Core/echo", {"ok": 1}, "after"]
        else:
            assert r.status_code in (400, 413, 422), (body[:80], r.status_code)
            assert r.headers["content-type"].startswith("application/"), r.headers
    # the server is alive and well
    assert alice.request([["Core/echo", {"alive": True}, "c"]])["methodResponses"] == [
        ["Core/echo", {"alive": True}, "c"]]
    assert alice.ok("Mailbox/get", ids=None)["list"]
    assert not failures, failures


def test_core_echo_of_a_deeply_nested_but_valid_request_does_not_fail_the_request(alice):
    """Whatever the server's JSON depth limit, a request it accepted must get a JMAP answer, not a 500."""
    for depth in (100, *range(245, 260), 300, 600, 1000):
        body = '{"using": ["' + CORE + '"], "methodCalls": [["Core/echo", {"x": ' + _nested(depth) + '}, "c"]]}'
        try:
            r = post_api(alice, body)
        except httpx.TransportError as exc:
            raise AssertionError(f"depth {depth}: connection failed: {exc!r}") from None
        assert r.status_code != 500, (depth, r.text[:200])
        if r.status_code == 200:
            [(name, result, _)] = r.json()["methodResponses"]
            assert name in ("Core/echo", "error"), name
        else:
            assert_problem(r, r.json()["type"].removeprefix(URN), r.status_code)


def test_wrong_http_methods_are_refused_cleanly(alice):
    assert alice.http.get(alice.api_url).status_code in (404, 405)
    assert alice.http.put(alice.api_url, content=b"{}").status_code in (404, 405)
    assert alice.http.delete("/.well-known/jmap").status_code in (404, 405)


# ---------------------------------------------------------------------- every registered method
METHODS = load_methods()
TYPES = types_registry.TYPES

SPECIAL_ARGS = {
    "Core/echo": {"echoed": True},
    "Email/import": {"emails": {}},
    "Email/parse": {"blobIds": []},
    "Blob/copy": {"blobIds": []},
    "Blob/upload": {"create": {}},
    "Blob/lookup": {"typeNames": [], "ids": []},
    "SearchSnippet/get": {"emailIds": [], "filter": None},
    "VacationResponse/get": {"ids": None},
    "Identity/get": {"ids": None},
    "CalendarEvent/parse": {"blobIds": []},
}


def _calls_for(name: str, account_id: str) -> list:
    """Minimal valid calls ending with one to `name` (call id "target")."""
    type_name, _, verb = name.partition("/")
    scoped = type_name not in TYPES or TYPES[type_name].account_scoped  # PushSubscription is not (§7.2)
    acct = {"accountId": account_id} if scoped else {}
    if name in SPECIAL_ARGS:
        args = dict(SPECIAL_ARGS[name])
        if name != "Core/echo":
            args.update(acct)
        if verb == "copy":
            args["fromAccountId"] = account_id
        return [[name, args, "target"]]
    if verb == "copy":  # a data type's /copy (RFC 8620 §5.4)
        return [[name, {**acct, "fromAccountId": account_id, "create": {}}, "target"]]
    if verb == "get":
        return [[name, {**acct, "ids": []}, "target"]]
    if verb == "changes":
        getter = f"{type_name}/get"
        assert getter in METHODS, f"{name} without {getter}: cannot find a state to start from"
        return [[getter, {**acct, "ids": []}, "state"],
                [name, {**acct, "#sinceState": {"resultOf": "state", "name": getter, "path": "/state"}},
                 "target"]]
    if verb == "query":
        return [[name, {**acct}, "target"]]
    if verb == "queryChanges":
        query = f"{type_name}/query"
        assert query in METHODS, f"{name} without {query}"
        return [[query, {**acct}, "q"],
                [name, {**acct, "#sinceQueryState": {"resultOf": "q", "name": query, "path": "/queryState"}},
                 "target"]]
    if verb == "set":
        return [[name, {**acct, "create": {}}, "target"]]
    return [[name, {**acct}, "target"]]


def verb_of(name: str) -> str:
    return name.partition("/")[2]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_answers_with_its_own_name(alice, name):
    method = METHODS[name]
    advertised = alice.session["capabilities"]
    using = [CORE] + ([method.capability] if method.capability != CORE else [])
    if method.capability not in advertised:
        # a capability the server does not advertise cannot be used at all
        r = post_json(alice, {"using": using, "methodCalls": _calls_for(name, alice.account_id)})
        assert_problem(r, "unknownCapability")
        return
    assert method.capability in alice.session["accounts"][alice.account_id]["accountCapabilities"] \
        or method.capability == CORE, f"{name}: capability {method.capability} not offered by the account"
    res = responses(alice, _calls_for(name, alice.account_id), using=using)
    if verb_of(name) == "copy" and name != "Blob/copy":
        # RFC 8620 §5.4: fromAccountId MUST differ from accountId, and a user has one account
        # until sharing lands (calendars: owner-only): the only answer today is invalidArguments
        assert [r[1]["type"] for r in res] == ["invalidArguments"], res
        return
    errors = [r for r in res if r[0] == "error"]
    assert not errors, errors
    target = [r for r in res if r[2] == "target"]
    assert target and target[0][0] == name, res
