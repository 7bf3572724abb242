"""Bad input gets a clear error and changes nothing (issue 9 hardening; cases of
../shared/cases/operations/README.md)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.protocol.registry import METHODS, load_methods
from app.protocol.types import TYPES
from tests.conftest import CORE, MAIL, SUBMISSION, Jmap, Server, tidings, unique, wait_until


@pytest.mark.parametrize("prop, value", [
    # o04: an email that is not one addr-spec would be written as a second recipient
    ("to", [{"name": "Bob", "email": "a@b.c>, <evil@x.y"}]),
    ("to", [{"name": "Bob", "email": "a@b.c\r\nBcc: evil@x.y"}]),
    ("cc", [{"email": "two@x.y three@x.y"}]),
    ("from", [{"email": ""}]),
    ("bcc", [{"name": "Eve\r\nBcc: evil@x.y", "email": "eve@x.y"}]),
    ("header:Reply-To:asAddresses", [{"email": "a@b.c, evil@x.y"}]),
    ("header:To:asGroupedAddresses", [{"name": "g", "addresses": [{"email": "<evil@x.y>"}]}]),
    ("subject", "hello\r\nBcc: evil@x.y"),
    ("header:X-Note:asText", "one\nBcc: evil@x.y"),
])
def test_email_set_refuses_header_injection_and_stores_nothing(alice, prop, value):
    before = alice.ok("Email/get", ids=[])["state"]
    res = alice.ok("Email/set", create={"x": {"mailboxIds": {alice.mailbox("drafts"): True},
                                              "subject": unique("inj "), prop: value}})
    err = res["notCreated"]["x"]
    assert err["type"] == "invalidProperties" and err["properties"] == [prop], err
    assert err["description"]
    assert alice.ok("Email/get", ids=[])["state"] == before


def test_valid_unusual_addresses_are_still_written(alice):
    res = alice.ok("Email/set", create={"x": {"mailboxIds": {alice.mailbox("drafts"): True}, "to": [
        {"name": "Quoted", "email": '"a b"@example.org'}, {"email": "jörg@bücher.example"},
        {"email": "x@[192.0.2.1]"}]}})
    email_id = res["created"]["x"]["id"]
    raw = alice.ok("Email/get", ids=[email_id], properties=["header:To"])["list"][0]["header:To"]
    assert raw == ' Quoted <"a b"@example.org>, jörg@bücher.example, x@[192.0.2.1]'



# ------------------------------------------------------------------------------------- helpers
STATE_TYPES = ("Mailbox", "Email", "Thread", "Identity", "EmailSubmission", "VacationResponse", "Principal")


def states(client) -> dict[str, str]:
    """Every type's state, in one request: equal before and after means nothing stored changed."""
    calls = [[f"{t}/get", {"accountId": client.account_id, "ids": []}, t] for t in STATE_TYPES]
    using = [CORE, MAIL, SUBMISSION, "urn:ietf:params:jmap:vacationresponse", "urn:ietf:params:jmap:principals"]
    return {r[2]: r[1]["state"] for r in client.request(calls, using=using)["methodResponses"]}


def assert_alive(client) -> None:
    assert client.request([["Core/echo", {"alive": True}, "c"]])["methodResponses"] == [
        ["Core/echo", {"alive": True}, "c"]]


def log_since(server, offset: int) -> str:
    return (server.data / f"server-{server.port}.log").read_text()[offset:]


def log_size(server) -> int:
    return len((server.data / f"server-{server.port}.log").read_text())


def nested(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def with_deep(obj: object, **deep: str) -> str:
    """obj as JSON with each string "@name" replaced by the JSON text deep[name] (the encoders of
    the client refuse to write what this test must send)."""
    text = json.dumps(obj)
    for name, value in deep.items():
        text = text.replace(f'"@{name}"', value)
    return text


def deep_list(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def post_raw(client, body: str) -> dict:
    r = client.http.post(client.api_url, content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    return r.json()


# ------------------------------------------------------------------ o06: deep values, the class
@pytest.mark.parametrize("depth", [101, 900])
@pytest.mark.parametrize("prop, make", [
    ("header:X-A:asAddresses", lambda d: nested(d, {"email": "a@b.c"})),  # the case as reported
    ("bodyStructure", lambda d: nested(d // 2, {"type": "text/plain", "partId": "1"})),
    ("textBody", lambda d: nested(d, {"partId": "1", "type": "text/plain"})),
    ("keywords", lambda d: {"$seen": nested(d, True)}),
    ("header:X-B:asText", lambda d: nested(d, "x")),
])
def test_a_deep_value_in_email_set_create_names_the_property_and_logs_no_traceback(server, alice, prop, make, depth):
    """o06: a value nested deeper than any JMAP value needs is refused before recursive code sees it."""
    before, offset = states(alice), log_size(server)
    value = make(depth)
    if prop == "bodyStructure":  # {"subParts": [{"subParts": [...]}]}: two JSON levels a MIME level
        value = {"type": "text/plain", "partId": "1"}
        for _ in range(depth // 2):
            value = {"type": "multipart/mixed", "subParts": [value]}
    res = alice.ok("Email/set", create={"x": {"mailboxIds": {alice.mailbox("drafts"): True}, prop: value}})
    err = res["notCreated"]["x"]
    assert err == {"type": "invalidProperties", "properties": [prop],
                   "description": f"{prop}: nested more than 100 levels deep"}
    assert states(alice) == before
    assert_alive(alice)
    assert "Traceback" not in log_since(server, offset)


def test_a_value_at_the_depth_limit_reaches_the_type_checks(alice):
    """The guard is at 100 levels: a 100-level value gets the type's own answer, not the guard's."""
    res = alice.ok("Email/set", create={"x": {"mailboxIds": {alice.mailbox("drafts"): True},
                                              "header:X-A:asAddresses": nested(99, {"email": "a@b.c"})}})
    err = res["notCreated"]["x"]
    assert err["properties"] == ["header:X-A:asAddresses"] and "nested" not in err["description"], err


@pytest.mark.parametrize("type_name, make_patch", [
    ("Mailbox", lambda d: {"name": nested(d, "x")}),
    ("Mailbox", lambda d: {"myRights/mayRename": nested(d, True)}),
    ("Email", lambda d: {"keywords/$x": nested(d, True)}),
    ("Email", lambda d: {"mailboxIds": nested(d, {})}),
])
def test_a_deep_value_in_a_patch_names_the_path_and_changes_nothing(server, alice, type_name, make_patch):
    if type_name == "Mailbox":
        obj_id = alice.ok("Mailbox/set", create={"m": {"name": unique("deep")}})["created"]["m"]["id"]
    else:
        obj_id = alice.import_message(f"Subject: {unique('deep')}\r\n\r\nx\r\n".encode())["id"]
    before, offset = states(alice), log_size(server)
    patch = make_patch(900)
    res = alice.ok(f"{type_name}/set", update={obj_id: patch})
    [path] = patch
    assert res["notUpdated"][obj_id] == {"type": "invalidProperties", "properties": [path],
                                         "description": f"{path}: nested more than 100 levels deep"}
    assert states(alice) == before
    assert_alive(alice)
    assert "Traceback" not in log_since(server, offset)


def test_a_deeply_nested_filter_is_unsupported_filter_in_every_query(server, alice):
    offset = log_size(server)
    # 450 operators: 900 JSON levels, under the parser's 1024
    flt = '{"operator": "NOT", "conditions": [' * 450 + '{"text": "x"}' + "]}" * 450
    calls = [[m, {"accountId": alice.account_id, "filter": "@flt", **extra}, m] for m, extra in (
        ("Email/query", {}), ("Mailbox/query", {}), ("EmailSubmission/query", {}),
        ("SearchSnippet/get", {"emailIds": []}),
        ("Email/queryChanges", {"sinceQueryState": "0"}), ("Mailbox/queryChanges", {"sinceQueryState": "0"}))]
    body = with_deep({"using": [CORE, MAIL, SUBMISSION], "methodCalls": calls}, flt=flt)
    for name, result, call_id in post_raw(alice, body)["methodResponses"]:
        assert (name, result) == ("error", {"type": "unsupportedFilter",
                                            "description": "filter is nested too deeply"}), call_id
    assert_alive(alice)
    assert "Traceback" not in log_since(server, offset)


def test_deep_values_elsewhere_answer_a_clear_error_and_the_server_goes_on(server, alice):
    """Result references, Core/echo, /get and /changes arguments: each deep value gets a method
    error (or, for echo, its value back), never serverFail, never a traceback."""
    offset = log_size(server)
    acct = alice.account_id
    calls = [
        ["Core/echo", {"x": "@d200"}, "echo-ok"],  # within the encoder's 255 levels
        ["Core/echo", {"x": "@d900"}, "echo"],
        ["Mailbox/get", {"accountId": acct, "ids": "@d900"}, "get"],
        ["Mailbox/get", {"accountId": acct, "#ids": {"resultOf": "echo-ok", "name": "Core/echo",
                                                     "path": "/x" + "/0" * 200}}, "ref"],
        ["Mailbox/get", {"accountId": acct, "#ids": {"resultOf": "echo-ok", "name": "Core/echo",
                                                     "path": "/x" + "/*" * 300}}, "ref-star"],
        ["Mailbox/changes", {"accountId": acct, "sinceState": "@d900"}, "changes"],
        ["Email/import", {"accountId": acct, "emails": {"e": {"blobId": "@d900"}}}, "import"],
    ]
    body = with_deep({"using": [CORE, MAIL], "methodCalls": calls}, d200=deep_list(200), d900=deep_list(900))
    out = {c: (n, r) for n, r, c in post_raw(alice, body)["methodResponses"]}
    assert out["echo-ok"] == ("Core/echo", {"x": json.loads(deep_list(200))})
    assert out["echo"] == ("error", {"type": "invalidArguments", "description":
                                     "the response would be nested deeper than JSON allows here (255 levels)"})
    ids_error = ("error", {"type": "invalidArguments", "description": "ids must be an array of ids or null"})
    assert out["get"] == ids_error
    assert out["ref"] == ids_error  # resolves to the innermost 1
    assert out["ref-star"][0] == "error" and out["ref-star"][1]["type"] == "invalidResultReference", out["ref-star"]
    assert out["changes"] == ("error", {"type": "invalidArguments", "description": "sinceState must be a string"})
    assert out["import"][0] == "Email/import" and out["import"][1]["notCreated"]["e"]["type"] == "invalidProperties"
    assert_alive(alice)
    assert "Traceback" not in log_since(server, offset)


# ---------------------------------------------------- o09: client values compared as JSON, the class
def test_sort_order_true_on_a_mailbox_whose_sort_order_is_1_is_invalid_properties(alice):
    """o09 as reported."""
    mailbox_id = alice.ok("Mailbox/set", create={"m": {"name": unique("o09"), "sortOrder": 1}})["created"]["m"]["id"]
    before = states(alice)
    res = alice.ok("Mailbox/set", update={mailbox_id: {"sortOrder": True}})
    assert res["notUpdated"][mailbox_id] == {"type": "invalidProperties", "properties": ["sortOrder"],
                                             "description": "sortOrder: must be an integer"}
    assert states(alice) == before


@pytest.mark.parametrize("patch, prop", [
    ({"totalEmails": False}, "totalEmails"),  # server-set, stored 0
    ({"unreadThreads": 0.0}, "unreadThreads"),
    ({"myRights": {k: 1 for k in ("mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords",
                                  "mayCreateChild", "mayRename", "mayDelete", "maySubmit")}}, "myRights"),
    ({"isSubscribed": 1}, "isSubscribed"),
])
def test_a_mailbox_value_equal_only_in_python_is_refused_not_a_no_op(alice, patch, prop):
    mailbox_id = alice.ok("Mailbox/set", create={"m": {"name": unique("o09")}})["created"]["m"]["id"]
    before = states(alice)
    res = alice.ok("Mailbox/set", update={mailbox_id: patch})
    err = res["notUpdated"][mailbox_id]
    assert err["type"] == "invalidProperties" and err["properties"] == [prop], err
    assert states(alice) == before


@pytest.mark.parametrize("make_patch, prop", [
    (lambda inbox: {"keywords": {"$seen": 1}}, "keywords"),
    (lambda inbox: {"keywords/$seen": 1}, "keywords"),
    (lambda inbox: {"mailboxIds": {inbox: 1}}, "mailboxIds"),
    (lambda inbox: {f"mailboxIds/{inbox}": 1}, "mailboxIds"),
    (lambda inbox: {"size": "SIZE"}, "size"),
    (lambda inbox: {"hasAttachment": 0}, "hasAttachment"),
])
def test_an_email_value_equal_only_in_python_is_refused_not_a_no_op(alice, make_patch, prop):
    """keywords and mailboxIds hold true, never 1; a server-set property repeated as another JSON
    type is not its current value."""
    inbox = alice.mailbox("inbox")
    email = alice.import_message(f"Subject: {unique('o09')}\r\n\r\nx\r\n".encode(), keywords={"$seen": True})
    patch = make_patch(inbox)
    if prop == "size":
        patch = {"size": float(email["size"])}
    before = states(alice)
    res = alice.ok("Email/set", update={email["id"]: patch})
    err = res["notUpdated"][email["id"]]
    assert err["type"] == "invalidProperties" and err["properties"] == [prop], err
    assert states(alice) == before
    got = alice.ok("Email/get", ids=[email["id"]], properties=["keywords", "mailboxIds"])["list"][0]
    assert got["keywords"] == {"$seen": True} and got["mailboxIds"] == {inbox: True}


def test_repeating_a_server_set_value_exactly_is_still_allowed(alice):
    """RFC 8620 §5.3: the current value of a server-set property may be sent back."""
    mailbox_id = alice.ok("Mailbox/set", create={"m": {"name": unique("o09")}})["created"]["m"]["id"]
    res = alice.ok("Mailbox/set", update={mailbox_id: {"totalEmails": 0, "sortOrder": 0}})
    assert res["updated"] == {mailbox_id: None}, res


# ------------------------------------------------------------------ every advertised limit
# maxSizeRequest, maxCallsInRequest, maxObjectsInGet and maxObjectsInSet: tests/test_protocol.py;
# maxSizeUpload: tests/test_blob_thread_identity.py; maxMailboxDepth and maxSizeMailboxName:
# tests/test_mailbox.py.  Here: the two concurrency limits and maxMailboxesPerEmail.
@pytest.fixture(scope="module")
def hold_server(tmp_path_factory):
    """A server of its own with the test-only Test/hold method (tests/hold_method.py)."""
    data = tmp_path_factory.mktemp("hold")
    tidings("user", "add", "carol", "--password", "carol-pw", data=data)
    srv = Server(data, env={"TIDINGS_EXTRA_TYPES": "tests.hold_method"})
    yield srv
    (data / "release").touch()
    srv.stop()


def test_a_request_beyond_max_concurrent_requests_is_a_429_limit_problem(hold_server):
    carol = Jmap(hold_server, "carol", "carol-pw")
    limit = carol.session["capabilities"][CORE]["maxConcurrentRequests"]
    data = hold_server.data
    (data / "release").unlink(missing_ok=True)

    def held(n: int) -> httpx.Response:
        body = {"using": [CORE], "methodCalls": [["Test/hold", {"data": str(data), "n": str(n)}, "h"]]}
        return httpx.post(carol.api_url, json=body, auth=("carol", "carol-pw"), timeout=60)

    with ThreadPoolExecutor(limit) as pool:
        holding = [pool.submit(held, n) for n in range(limit)]
        wait_until(lambda: len(list(data.glob("held-*"))) == limit, "the held requests", interval=0.05)
        r = carol.http.post(carol.api_url, json={"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]]})
        assert r.status_code == 429, r.text
        problem = r.json()
        assert problem["type"] == "urn:ietf:params:jmap:error:limit" and problem["limit"] == "maxConcurrentRequests"
        assert problem["detail"]
        (data / "release").touch()
        assert [f.result().json()["methodResponses"] for f in holding] == [
            [["Test/hold", {"n": str(n)}, "h"]] for n in range(limit)]
    assert_alive(carol)  # the slots are free again


def test_an_upload_beyond_max_concurrent_upload_is_a_429_limit_problem(hold_server):
    carol = Jmap(hold_server, "carol", "carol-pw")
    limit = carol.session["capabilities"][CORE]["maxConcurrentUpload"]
    url = carol.session["uploadUrl"].replace("{accountId}", carol.account_id)
    release = threading.Event()

    def stalled_body():
        yield b"From: a@b.c\r\n"
        release.wait(30)  # the upload holds its slot until the test lets it finish
        yield b"\r\nbody\r\n"

    def upload() -> httpx.Response:
        return httpx.post(url, content=stalled_body(), auth=("carol", "carol-pw"), timeout=60,
                          headers={"Content-Type": "message/rfc822"})

    with ThreadPoolExecutor(limit) as pool:
        uploading = [pool.submit(upload) for _ in range(limit)]
        time.sleep(1)  # the uploads have taken their slots (nothing observable tells when)
        r = carol.http.post(url, content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 429, r.text
        problem = r.json()
        assert problem["type"] == "urn:ietf:params:jmap:error:limit" and problem["limit"] == "maxConcurrentUpload"
        release.set()
        assert [f.result().status_code for f in uploading] == [201] * limit
    assert carol.upload(b"after", "text/plain")["size"] == 5


def test_an_email_in_more_than_max_mailboxes_per_email_is_invalid_properties(alice):
    limit = alice.session["accounts"][alice.account_id]["accountCapabilities"][MAIL]["maxMailboxesPerEmail"]
    assert limit == 100
    res = alice.ok("Mailbox/set", create={f"m{i}": {"name": unique("many")} for i in range(limit + 1)})
    ids = [res["created"][f"m{i}"]["id"] for i in range(limit + 1)]
    ok = alice.ok("Email/set", create={"x": {"mailboxIds": {i: True for i in ids[:limit]}, "subject": unique("in")}})
    assert ok["created"]["x"]["id"]
    before = states(alice)
    res = alice.ok("Email/set", create={"x": {"mailboxIds": {i: True for i in ids}, "subject": unique("in")}},
                   update={ok["created"]["x"]["id"]: {f"mailboxIds/{ids[limit]}": True}})
    assert res["notCreated"]["x"]["properties"] == ["mailboxIds"]
    assert res["notUpdated"][ok["created"]["x"]["id"]] == res["notCreated"]["x"] == {
        "type": "invalidProperties", "properties": ["mailboxIds"],
        "description": f"mailboxIds: an email may be in at most {limit} mailboxes"}
    assert states(alice) == before


# ------------------------------------------------- wrong types for every argument of every method
# The JSON type of every argument name the methods take (RFC 8620 §5, RFC 8621, RFC 9404).
ARG_KINDS = {
    "accountId": "str", "fromAccountId": "str", "ids": "list", "properties": "strlist", "sinceState": "str",
    "maxChanges": "uint", "create": "map", "update": "map", "destroy": "list", "ifInState": "str",
    "ifFromInState": "str", "destroyFromIfInState": "str", "filter": "map", "sort": "list", "position": "int",
    "anchor": "str", "anchorOffset": "int", "limit": "uint", "calculateTotal": "bool", "sinceQueryState": "str",
    "upToId": "str", "bodyProperties": "strlist", "fetchTextBodyValues": "bool", "fetchHTMLBodyValues": "bool",
    "fetchAllBodyValues": "bool", "maxBodyValueBytes": "uint", "collapseThreads": "bool",
    "onDestroyRemoveEmails": "bool", "onSuccessUpdateEmail": "map", "onSuccessDestroyEmail": "list",
    "sortAsTree": "bool", "filterAsTree": "bool", "emails": "map", "blobIds": "list", "emailIds": "list",
    "onSuccessDestroyOriginal": "bool", "typeNames": "list", "offset": "uint", "length": "uint",
    # contacts and calendars (RFC 9610, JMAP Calendars)
    "onDestroyRemoveContents": "bool", "onSuccessSetIsDefault": "str", "onDestroyRemoveEvents": "bool",
    "expandRecurrences": "bool", "timeZone": "str", "recurrenceOverridesBefore": "str",
    "recurrenceOverridesAfter": "str", "reduceParticipants": "bool", "sendSchedulingMessages": "bool",
}
# values of another JSON type, numbers beyond I-JSON's 2^53 (RFC 8620 §1.3), fractions
WRONG = {
    "str": [1, True, [], {}],
    "bool": [1, 0, "true", [], {}],
    "uint": [-1, 1.5, "1", True, [], 2**53, 2**64],
    "int": ["1", True, 1.5, {}, 2**53, -(2**53), 2**64],
    "list": ["x", 1, True, {}],
    "strlist": ["x", 1, [1], [None], {}],
    "map": ["x", 1, True, []],
}
STANDARD_ARGS = {
    "get": ("ids", "properties"), "changes": ("sinceState", "maxChanges"),
    "set": ("ifInState", "create", "update", "destroy"),
    "query": ("filter", "sort", "position", "anchor", "anchorOffset", "limit", "calculateTotal"),
    "queryChanges": ("filter", "sort", "sinceQueryState", "maxChanges", "upToId", "calculateTotal"),
    "copy": ("fromAccountId", "ifFromInState", "ifInState", "create", "onSuccessDestroyOriginal",
             "destroyFromIfInState"),
}
OWN_ARGS = {  # methods that are not the standard ones of a type
    "Core/echo": (),
    "Email/import": ("ifInState", "emails"),
    "Email/parse": ("blobIds", "properties", "bodyProperties", "fetchTextBodyValues", "fetchHTMLBodyValues",
                    "fetchAllBodyValues", "maxBodyValueBytes"),
    "Email/query": STANDARD_ARGS["query"] + ("collapseThreads",),
    "Email/queryChanges": STANDARD_ARGS["queryChanges"] + ("collapseThreads",),
    "EmailSubmission/set": STANDARD_ARGS["set"] + ("onSuccessUpdateEmail", "onSuccessDestroyEmail"),
    "SearchSnippet/get": ("filter", "emailIds"),
    "Blob/upload": ("create",), "Blob/get": ("ids", "properties", "offset", "length"),
    "Blob/lookup": ("typeNames", "ids"), "Blob/copy": ("fromAccountId", "blobIds"),
    "CalendarEvent/parse": ("blobIds", "properties"),
}


def method_args(name: str) -> tuple[str, ...]:
    """The arguments of a method, from the method table and the type registry."""
    type_name, _, verb = name.partition("/")
    if name in OWN_ARGS:
        return OWN_ARGS[name]
    dt = TYPES[type_name]
    extra = {"get": dt.get_args, "set": dt.set_args, "query": dt.query_args, "queryChanges": dt.query_args}
    return STANDARD_ARGS[verb] + tuple(extra.get(verb, ()))


def base_args(name: str, client, states_now: dict, query_states: dict) -> dict:
    """Arguments with which the method succeeds, so that one wrong argument is the only fault."""
    type_name, _, verb = name.partition("/")
    scoped = type_name not in TYPES or TYPES[type_name].account_scoped
    args = {"accountId": client.account_id} if scoped and name != "Core/echo" else {}
    args.update({} if type_name in ("SearchSnippet", "Blob") else {"get": {"ids": []}, "changes": {"sinceState": states_now.get(type_name, "0")},
                 "queryChanges": {"sinceQueryState": query_states.get(type_name, "0")}}.get(verb, {}))
    args.update({"Email/import": {"emails": {}}, "Email/parse": {"blobIds": []},
                 "SearchSnippet/get": {"emailIds": [], "filter": None}, "Blob/upload": {"create": {}},
                 "Blob/get": {"ids": []}, "Blob/lookup": {"typeNames": [], "ids": []},
                 "Blob/copy": {"fromAccountId": client.account_id, "blobIds": []},
                 "CalendarEvent/parse": {"blobIds": []}}.get(name, {}))
    return args


VACATION = "urn:ietf:params:jmap:vacationresponse"
BLOB = "urn:ietf:params:jmap:blob"
ALL_USING = [CORE, MAIL, SUBMISSION, VACATION, BLOB, "urn:ietf:params:jmap:principals", "urn:ietf:params:jmap:quota"]
METHOD_ERRORS = {"invalidArguments", "unsupportedFilter", "unsupportedSort", "requestTooLarge",
                 "cannotCalculateChanges", "invalidResultReference", "stateMismatch", "accountNotFound",
                 "fromAccountNotFound", "anchorNotFound", "unknownMethod"}


@pytest.mark.parametrize("name", sorted(set(load_methods()) - {"Test/hold"}))
def test_every_argument_of_wrong_type_is_a_method_error_and_changes_nothing(alice, name):
    """For each argument of the method (and one unknown argument), each value of a wrong JSON type
    gets a method-level error with a description; never serverFail, never a success."""
    if METHODS[name].capability not in alice.session["capabilities"]:
        pytest.skip(f"{METHODS[name].capability} not advertised")
    using = list(alice.session["capabilities"])  # every capability: new data types are covered too
    before = states(alice)
    queries = {t: alice.request([[f"{t}/query", {"accountId": alice.account_id}, "q"]], using=using)
               ["methodResponses"][0][1]["queryState"] for t in ("Email", "Mailbox", "EmailSubmission")}
    base = base_args(name, alice, before, queries)
    [(answer, result, _)] = alice.request([[name, base, "base"]], using=using)["methodResponses"]
    base_fails = name.endswith("/copy") and name != "Blob/copy"  # §5.4: the accounts must differ
    assert (answer == "error") == base_fails, (answer, result)
    cases = [(arg, value) for arg in ("accountId", *method_args(name)) if arg in base or arg != "accountId"
             for value in WRONG[ARG_KINDS[arg]]]
    if name != "Core/echo":
        cases.append(("noSuchArgument", 1))
    else:
        cases = []
    failures = []
    for i in range(0, len(cases), 50):
        chunk = cases[i:i + 50]
        calls = [[name, {**base, arg: value}, f"{arg}={value!r}"] for arg, value in chunk]
        for answer, result, call_id in alice.request(calls, using=using)["methodResponses"]:
            if answer != "error" or result.get("type") not in METHOD_ERRORS or not result.get("description"):
                failures.append((call_id, answer, result))
    assert not failures, failures
    assert states(alice) == before
    print(f"{name}: {len(cases)} wrong arguments")


# ------------------------------------------------------------------ mail that attacks the parser
def _deep_multipart(levels: int) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(levels))
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(levels)))
    return b"Subject: deep\r\nMIME-Version: 1.0\r\n" + head + b"Content-Type: text/plain\r\n\r\ninnermost" + tail


def _many_parts(n: int) -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(n))
    return (b'Subject: many\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n'
            + parts + b"--p--\r\n")


ATTACKS = {
    "multipart nested 3000 levels": lambda: _deep_multipart(3000),
    "message/rfc822 nested 500 levels": lambda: b"Subject: outer\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 500
    + b"Subject: inner\r\n\r\nbody\r\n",
    "20000 parts": lambda: _many_parts(20000),
    "a 4 MB header line": lambda: b"Subject: " + b"A" * 4_000_000 + b"\r\n\r\nbody\r\n",
    "100000 header fields": lambda: b"".join(b"X-H%d: v\r\n" % i for i in range(100_000)) + b"\r\nbody\r\n",
    "4 MB folded To header": lambda: b"To: " + b",\r\n ".join(b"u%d@example.org" % i for i in range(200_000))
    + b"\r\n\r\nbody\r\n",
    "bad base64 and quoted-printable": lambda: (
        b'Subject: =?utf-8?B?!!!notbase64?= =?x-unknown?Q?=ZZ?=\r\nMIME-Version: 1.0\r\n'
        b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n--q\r\nContent-Type: text/plain; charset=utf-8\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n%%%%not base64 at all====\r\n--q\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"=ZZ=\r\n=4\r\n--q\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\xff\xfe\xc3(\xed\xa0\x80\r\n--q--\r\n"),
    "NUL bytes in headers and body": lambda: b"Subject: a\x00b\r\nFrom: x\x00@y.z\r\nX-N\x00: v\r\n\r\nbo\x00dy\r\n",
    "no header/body separator, bare CR and LF": lambda: b"Subject: x\rFrom: y\nTo: z" + b"\r" * 1000,
    "random binary": lambda: bytes(range(256)) * 4000,
    "empty": lambda: b"",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_mail_that_attacks_the_parser_is_stored_and_served_or_refused_clearly(server, alice, attack):
    """Email/import and Email/parse of each message: stored and readable through every property,
    or refused with a SetError that has a description; then the server still answers. Time and
    memory are measured and printed (run with -s), not asserted."""
    raw = ATTACKS[attack]()
    offset = log_size(server)
    blob = alice.upload(raw)
    started = time.monotonic()
    calls = [
        ["Email/import", {"accountId": alice.account_id, "emails": {"m": {
            "blobId": blob["blobId"], "mailboxIds": {alice.mailbox("inbox"): True}}}}, "i"],
        ["Email/get", {"accountId": alice.account_id, "#ids": {"resultOf": "i", "name": "Email/import",
                                                               "path": "/created/*/id"},
                       "properties": ["subject", "from", "to", "preview", "bodyStructure", "bodyValues",
                                      "textBody", "htmlBody", "attachments", "headers", "size"],
                       "fetchAllBodyValues": True, "maxBodyValueBytes": 1000}, "g"],
        ["Email/parse", {"accountId": alice.account_id, "blobIds": [blob["blobId"]],
                         "properties": ["subject", "preview", "bodyStructure", "bodyValues"],
                         "fetchAllBodyValues": True, "maxBodyValueBytes": 1000}, "p"],
    ]
    r = alice.http.post(alice.api_url, json={"using": [CORE, MAIL], "methodCalls": calls})
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text[:300]
    out = {c: (n, a) for n, a, c in r.json()["methodResponses"]}
    name, imported = out["i"]
    assert name == "Email/import", imported
    if imported["created"]:
        email_id = imported["created"]["m"]["id"]
        name, got = out["g"]
        assert name == "Email/get" and [e["id"] for e in got["list"]] == [email_id], got
        assert isinstance(got["list"][0]["preview"], str)
        assert got["list"][0]["size"] == len(raw)
        alice.ok("Email/set", destroy=[email_id])  # keeps the shared account small
    else:
        error = imported["notCreated"]["m"]
        assert error["type"] in ("invalidEmail", "tooLarge") and error["description"], error
    name, parsed = out["p"]
    assert name == "Email/parse", parsed
    assert (parsed["parsed"] or {}).keys() | set(parsed["notParsable"] or []) == {blob["blobId"]}
    assert_alive(alice)
    assert "Traceback" not in log_since(server, offset)
    rss = _server_memory(server)
    print(f"\n{attack}: {len(raw)} octets, import+get+parse {elapsed:.2f} s, server VmRSS {rss[0]} kB, "
          f"VmHWM {rss[1]} kB")


def _server_memory(server) -> tuple[int, int]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


# ------------------------------------------------------------ output that reaches a browser is safe
def test_search_snippets_escape_html_and_only_mark_is_markup(alice):
    word = unique("zqx")
    raw = (f"Subject: <script>alert(1)</script> {word} & <b>bold</b>\r\nFrom: a@b.c\r\n"
           "Content-Type: text/html; charset=utf-8\r\n\r\n"
           f"<p>before <img src=x onerror=alert(2)> &lt;i&gt; {word} \"quoted\" 'single'</p>\r\n").encode()
    email_id = alice.import_message(raw)["id"]
    res = alice.ok("SearchSnippet/get", filter={"text": word}, emailIds=[email_id])
    [snippet] = res["list"]
    for field in ("subject", "preview"):
        text = snippet[field]
        assert f"<mark>{word}</mark>" in text, (field, text)
        bare = text.replace("<mark>", "").replace("</mark>", "")
        assert "<" not in bare and ">" not in bare, (field, text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in snippet["subject"] and "&amp;" in snippet["subject"]
    assert "&lt;i&gt;" in snippet["preview"] and "onerror" not in snippet["preview"]


def test_the_preview_of_an_html_email_is_text(alice):
    word = unique("pv")
    raw = (f"Subject: {word}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           f"<html><head><style>p {{color: red}}</style><script>steal()</script></head>"
           f"<body><p>Hello <b>{word}</b> &amp; welcome</p></body></html>\r\n").encode()
    email_id = alice.import_message(raw)["id"]
    [email] = alice.ok("Email/get", ids=[email_id], properties=["preview"])["list"]
    assert email["preview"] == f"Hello {word} & welcome"


@pytest.mark.parametrize("name", ["a\r\nX-Evil: 1.txt", 'a"; filename="evil.exe', "a\nSet-Cookie: x=1",
                                  "../../etc/passwd", "a\x00b.txt"])
def test_a_download_name_cannot_inject_headers(alice, name):
    blob = alice.upload(b"hello", "text/plain")
    url = (alice.session["downloadUrl"].replace("{accountId}", alice.account_id)
           .replace("{blobId}", blob["blobId"]).replace("{name}", urllib.parse.quote(name, safe=""))
           .replace("{type}", "text/plain"))
    r = alice.http.get(url)
    assert "x-evil" not in r.headers and "set-cookie" not in r.headers
    if "\n" in name:  # the download route's name matches no line break: not found, nothing sent
        assert r.status_code == 404 and r.content != b"hello", r.headers
        return
    assert r.status_code == 200 and r.content == b"hello"
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
    assert "x-evil" not in r.headers and "set-cookie" not in r.headers
    assert r.headers["content-type"] == "text/plain" and r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("accept", ["text/html\r\nX-Evil: 1", "text/html\nX-Evil: 1", "text", "<b>/x",
                                    "text/plain; charset=\"x\r\ny\""])
def test_a_download_type_that_is_not_a_media_type_is_refused(alice, accept):
    blob = alice.upload(b"hello", "text/plain")
    url = (alice.session["downloadUrl"].replace("{accountId}", alice.account_id)
           .replace("{blobId}", blob["blobId"]).replace("{name}", "x.txt"))
    r = alice.http.get(url.replace("{type}", urllib.parse.quote(accept, safe="")))
    assert r.status_code == 400 and "x-evil" not in r.headers, r.headers
    assert r.json()["detail"] == "the type in the download URL is not a media type"
