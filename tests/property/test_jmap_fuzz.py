"""Random JMAP requests against a live server (issue 9 hardening): random method names from the
method table (and a few unknown ones), random argument objects of random JSON shapes, now and then
the real accountId, a known argument name or a result reference to an earlier call.  Whatever the
request, the answer is HTTP 200 with a JMAP response or a request-level problem (400), never a 500,
never serverFail, and the server answers the next request.

``TIDINGS_HYPOTHESIS_FUZZ_EXAMPLES=N`` runs N requests (default 150: a few seconds, the bounded run
of ``make test``; ``make fuzz`` runs 5000 fresh ones).  ``TIDINGS_HYPOTHESIS_RANDOM=1`` draws fresh
examples instead of the fixed (derandomized) ones; ``TIDINGS_HYPOTHESIS_SHRINK=1`` shrinks a failure.
The server is its own (own data directory), since a random /set may change what other tests read.
"""

from __future__ import annotations

import os

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.protocol.registry import load_methods
from tests.conftest import CORE, MAIL, SUBMISSION, Jmap, Server, tidings
from tests.test_hardening import ARG_KINDS

EXAMPLES = int(os.environ.get("TIDINGS_HYPOTHESIS_FUZZ_EXAMPLES", "150"))
RANDOM = os.environ.get("TIDINGS_HYPOTHESIS_RANDOM", "") == "1"
SHRINK = os.environ.get("TIDINGS_HYPOTHESIS_SHRINK", "") == "1"

USING = [CORE, MAIL, SUBMISSION, "urn:ietf:params:jmap:vacationresponse", "urn:ietf:params:jmap:blob"]
NAMES = sorted(load_methods()) + ["Foo/get", "Email/nope", "", "Core/echo/x"]
PROPERTY_NAMES = ["id", "name", "parentId", "role", "sortOrder", "keywords", "mailboxIds", "subject", "from",
                  "bodyStructure", "textBody", "header:X-A:asAddresses", "identityId", "emailId", "envelope",
                  "isEnabled", "url", "types", "operator", "conditions", "text", "inMailbox", "property",
                  "isAscending", "blobId", "data:asText", "resultOf", "path"]

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
           | st.sampled_from(["#c0", "#x", "$seen", "inbox", "singleton", "1", "A", "/", "*", "AND", "NOT"]))
keys = st.text(max_size=10) | st.sampled_from(PROPERTY_NAMES) | st.sampled_from(sorted(ARG_KINDS))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(keys, inner, max_size=4), max_leaves=16)


@st.composite
def calls(draw, account_id: str):
    out = []
    for i in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(NAMES))
        args = draw(st.dictionaries(st.sampled_from(sorted(ARG_KINDS)) | st.text(max_size=8), json_values,
                                    max_size=5))
        if draw(st.booleans()):
            args["accountId"] = account_id
        if i and draw(st.integers(0, 3)) == 0:  # a result reference to the previous call
            arg = draw(st.sampled_from(["ids", "emailIds", "blobIds", "sinceState", "filter"]))
            args.pop(arg, None)
            args["#" + arg] = {"resultOf": f"c{i - 1}", "name": draw(st.sampled_from([out[-1][0], "Core/echo"])),
                               "path": draw(st.sampled_from(["/ids", "/list/*/id", "/x", "", "/*", "bad"]))}
        out.append([name, args, f"c{i}"])
    return out


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    data = tmp_path_factory.mktemp("fuzz")
    tidings("user", "add", "fuzz", "--password", "fuzz-pw", data=data)
    srv = Server(data)
    yield Jmap(srv, "fuzz", "fuzz-pw")
    srv.stop()


def test_random_requests_never_fail_the_server(fuzz_client):
    client = fuzz_client
    log = client.server.data / f"server-{client.server.port}.log"
    seen = {"requests": 0, "errors": 0, "problems": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
              suppress_health_check=list(HealthCheck), print_blob=False,
              phases=[p for p in Phase if SHRINK or p is not Phase.shrink])
    @given(method_calls=calls(client.account_id))
    def one(method_calls):
        r = client.http.post(client.api_url, json={"using": USING, "methodCalls": method_calls})
        seen["requests"] += 1
        assert r.status_code in (200, 400), (r.status_code, r.text[:500], method_calls)
        if r.status_code == 400:
            seen["problems"] += 1
            assert r.json()["type"].startswith("urn:ietf:params:jmap:error:"), r.text
            return
        for name, result, _ in r.json()["methodResponses"]:
            if name == "error":
                seen["errors"] += 1
                assert result["type"] != "serverFail", (result, method_calls)

    one()
    r = client.http.post(client.api_url, json={"using": [CORE], "methodCalls": [["Core/echo", {"a": 1}, "c"]]})
    assert r.json()["methodResponses"] == [["Core/echo", {"a": 1}, "c"]]
    assert "Traceback" not in log.read_text()
    print(f"\nfuzz: {seen}")


def test_random_bytes_as_a_request_body_are_a_problem_never_a_500(fuzz_client):
    client = fuzz_client

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
              suppress_health_check=list(HealthCheck), print_blob=False,
              phases=[p for p in Phase if SHRINK or p is not Phase.shrink])
    @given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def one(body):
        r = client.http.post(client.api_url, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code in (200, 400), (r.status_code, body)
        if r.status_code == 400:
            assert r.json()["type"] in ("urn:ietf:params:jmap:error:notJSON",
                                        "urn:ietf:params:jmap:error:notRequest"), r.text

    one()
    assert httpx.get(client.server.base + "/.well-known/jmap", auth=("fuzz", "fuzz-pw")).status_code == 200
