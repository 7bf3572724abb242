"""One tidings over TLS for every jmapc test: a certificate for 127.0.0.1 from a trustme test CA,
the user carol, and jmapc's Client (with requests trusting the test CA) plus an httpx client."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trustme
from jmapc import Client

from tests.compat.jmapc_support import EMAIL, PASSWORD, USER
from tests.conftest import Server, tidings


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory):
    """A tidings serving https with a certificate for 127.0.0.1 issued by a test CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certs = tmp_path_factory.mktemp("tls")
    chain, key, ca_file = certs / "chain.pem", certs / "key.pem", certs / "ca.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key.write_bytes(cert.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    data = tmp_path_factory.mktemp("tlsdata")
    tidings("user", "add", USER, "--password", PASSWORD, "--email", EMAIL, data=data)
    with pytest.MonkeyPatch.context() as mp:
        # requests (inside jmapc, and its EventSource client) trusts the test CA
        mp.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
        srv = Server(data, tls=(str(chain), str(key)))
        srv.ca_file = ca_file
        yield srv
        srv.stop()


@pytest.fixture(scope="session")
def client(tls_server) -> Client:
    c = Client.create_with_password(host=f"127.0.0.1:{tls_server.port}", user=USER, password=PASSWORD)
    c.requests_session.verify = str(tls_server.ca_file)
    yield c
    c.requests_session.close()  # an idle keep-alive connection would hold up the server's shutdown


@pytest.fixture(scope="session")
def http(tls_server):
    """httpx against the TLS server, verifying its certificate with the test CA."""
    context = ssl.create_default_context(cafile=str(tls_server.ca_file))
    with httpx.Client(base_url=tls_server.base, auth=(USER, PASSWORD), verify=context, timeout=60) as h:
        yield h
