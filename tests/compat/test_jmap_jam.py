"""Interoperability with jmap-jam (npm), a TypeScript JMAP client that only speaks Bearer: its own login
flow through Node against tidings over TLS (the test CA of conftest.py, given to Node with
NODE_EXTRA_CA_CERTS), with a token from `tidings token create`. The package is installed from
tests/compat/jam/package-lock.json into tests/compat/jam/node_modules (not committed) by `npm ci`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.compat.jmapc_support import USER, import_over_http, message
from tests.conftest import MAIL, tidings, unique

JAM = Path(__file__).parent / "jam"


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are not installed (Debian: apt-get install -y nodejs npm)")
    if not (JAM / "node_modules" / "jmap-jam" / "package.json").is_file():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JAM, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"npm ci failed (is the npm registry reachable?):\n{done.stderr}"
    return node


def run_jam(node: str, server, token: str) -> dict:
    env = {**os.environ, "JAM_SESSION_URL": server.base + "/.well-known/jmap", "JAM_TOKEN": token,
           "NODE_EXTRA_CA_CERTS": str(server.ca_file)}
    done = subprocess.run([node, "jam.mjs"], cwd=JAM, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_jmap_jam_logs_in_with_a_token_and_reads_mail(node, tls_server, http):
    session = http.get("/.well-known/jmap").json()
    account = session["primaryAccounts"][MAIL]
    inbox = next(mb["id"] for mb in http.post(session["apiUrl"], json={
        "using": ["urn:ietf:params:jmap:core", MAIL],
        "methodCalls": [["Mailbox/get", {"accountId": account, "ids": None}, "m"]]}
    ).json()["methodResponses"][0][1]["list"] if mb["role"] == "inbox")
    subject = unique("jam ")
    created = import_over_http(http, account, message(subject, f"<{unique('jam')}@example.net>"), inbox)
    token = tidings("token", "create", "--user", USER, "--name", "jmap-jam",
                    data=tls_server.data).stdout.splitlines()[-1]

    out = run_jam(node, tls_server, token)

    assert out["username"] == USER
    assert out["accountId"] == account
    assert {"urn:ietf:params:jmap:core", MAIL} <= set(out["capabilities"])
    assert out["apiUrl"] == tls_server.base + "/jmap/api/"
    assert out["mailboxRoles"] == ["archive", "drafts", "inbox", "junk", "sent", "trash"]
    assert out["inboxId"] == inbox
    assert out["queryIds"][0] == created["id"]
    first = out["emails"][0]
    assert first == {"id": created["id"], "subject": subject, "mailboxIds": {inbox: True},
                     "from": [{"name": "Dave Example", "email": "dave@example.net"}]}
    assert [e["id"] for e in out["emails"]] == out["queryIds"]
    assert out["refused"]["status"] == 401 and out["refused"]["type"] == "about:blank"
