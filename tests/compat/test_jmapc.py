"""Interoperability with a real third-party client: jmapc (PyPI) against tidings served over TLS with a
test certificate from trustme (fixtures in conftest.py). jmapc only speaks https and uses the session's
URLs as they are."""

from __future__ import annotations

import ssl

import httpx
from jmapc import (
    EmailQueryFilterCondition,
    Ref,
)
from jmapc.methods import (
    CoreEcho,
    CoreEchoResponse,
    CustomMethod,
    CustomResponse,
    EmailChanges,
    EmailChangesResponse,
    EmailGet,
    EmailGetResponse,
    EmailQuery,
    EmailQueryResponse,
    EmailSet,
    EmailSetResponse,
    IdentityGet,
    IdentityGetResponse,
    MailboxGet,
    MailboxGetResponse,
    MailboxQuery,
    MailboxQueryResponse,
    ThreadGet,
    ThreadGetResponse,
)
from jmapc.models import MailboxQueryFilterCondition

from tests.compat.jmapc_support import EMAIL, PASSWORD, USER, import_over_http, inbox_id, message
from tests.conftest import MAIL, unique


# -------------------------------------------------------------------------------------------- tests
def test_jmapc_loads_the_session_over_tls(client):
    session = client.jmap_session
    assert session.username == USER
    assert session.primary_accounts.mail
    assert session.capabilities.core.max_calls_in_request > 0
    assert MAIL in session.capabilities.urns
    assert client.account_id == session.primary_accounts.mail


def test_jmapc_core_echo(client):
    res = client.request(CoreEcho(data={"hello": "world", "n": [1, 2]}))
    assert isinstance(res, CoreEchoResponse), res
    assert res.data == {"hello": "world", "n": [1, 2]}


def test_jmapc_mailbox_get_lists_the_inbox(client):
    res = client.request(MailboxGet(ids=None))
    assert isinstance(res, MailboxGetResponse), res
    roles = {mb.role: mb for mb in res.data}
    assert {"inbox", "drafts", "sent", "trash", "junk", "archive"} <= set(roles)
    assert roles["inbox"].name and roles["inbox"].total_emails is not None


def test_jmapc_mailbox_query_with_a_result_reference(client):
    res = client.request([MailboxQuery(filter=MailboxQueryFilterCondition(role="inbox")),
                          MailboxGet(ids=Ref("/ids"))])
    assert isinstance(res[0].response, MailboxQueryResponse), res[0]
    assert isinstance(res[1].response, MailboxGetResponse), res[1]
    assert [mb.role for mb in res[1].response.data] == ["inbox"]


def test_jmapc_finds_and_reads_a_message_imported_over_http(client, http):
    inbox = inbox_id(client)
    subject = unique("jmapc subject ")
    imported = import_over_http(http, client.account_id, message(subject, f"<{unique('j')}@example.net>"),
                                inbox)
    res = client.request([
        EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=inbox)),
        EmailGet(ids=Ref("/ids"), properties=["id", "subject", "from", "to", "threadId", "receivedAt",
                                               "mailboxIds", "preview"])])
    query, get = res[0].response, res[1].response
    assert isinstance(query, EmailQueryResponse), query
    assert imported["id"] in query.ids
    assert isinstance(get, EmailGetResponse), get
    email = next(e for e in get.data if e.id == imported["id"])
    assert email.subject == subject
    assert email.mail_from[0].email == "dave@example.net"
    assert email.mail_from[0].name == "Dave Example"
    assert email.to[0].email == EMAIL
    assert email.thread_id == imported["threadId"]
    assert email.mailbox_ids == {inbox: True}
    assert email.received_at is not None
    assert "Hi Carol" in (email.preview or "")


def test_jmapc_thread_get_groups_a_reply_with_its_parent(client, http):
    inbox = inbox_id(client)
    parent_id = f"<{unique('p')}@example.net>"
    parent = import_over_http(http, client.account_id, message(unique("thread "), parent_id), inbox)
    reply = import_over_http(http, client.account_id, message(unique("re "), f"<{unique('r')}@example.net>",
                                                              in_reply_to=parent_id), inbox)
    res = client.request(ThreadGet(ids=[parent["threadId"]]))
    assert isinstance(res, ThreadGetResponse), res
    [thread] = res.data
    assert thread.id == parent["threadId"] == reply["threadId"]
    assert set(thread.email_ids) == {parent["id"], reply["id"]}


def test_jmapc_identity_get(client):
    res = client.request(IdentityGet())
    assert isinstance(res, IdentityGetResponse), res
    [identity] = res.data
    assert identity.email == EMAIL
    assert identity.id


def test_jmapc_email_set_updates_keywords(client, http):
    inbox = inbox_id(client)
    imported = import_over_http(http, client.account_id, message(unique("flag "), f"<{unique('f')}@example.net>"),
                                inbox)
    before = client.request(EmailGet(ids=[], properties=["id"]))
    assert isinstance(before, EmailGetResponse), before
    res = client.request(EmailSet(update={imported["id"]: {"keywords/$flagged": True, "keywords/$seen": True}}))
    assert isinstance(res, EmailSetResponse), res
    assert res.updated is not None and imported["id"] in res.updated, res
    got = client.request(EmailGet(ids=[imported["id"]], properties=["keywords"]))
    assert isinstance(got, EmailGetResponse), got
    assert got.data[0].keywords == {"$flagged": True, "$seen": True}
    changes = client.request(EmailChanges(since_state=before.state))
    assert isinstance(changes, EmailChangesResponse), changes
    assert imported["id"] in changes.updated

    res = client.request(EmailSet(update={imported["id"]: {"keywords/$flagged": None}}))
    assert isinstance(res, EmailSetResponse) and imported["id"] in (res.updated or {}), res
    got = client.request(EmailGet(ids=[imported["id"]], properties=["keywords"]))
    assert got.data[0].keywords == {"$seen": True}


ATTACHED = (
    "From: Dave Example <dave@example.net>\r\n"
    f"To: {EMAIL}\r\n"
    "Subject: {subject}\r\n"
    "Message-ID: <{msgid}@example.net>\r\n"
    "Date: Thu, 04 Jan 2024 08:30:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Notes attached.\r\n"
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8; name=\"notes.txt\"\r\n"
    "Content-Disposition: attachment; filename=\"notes.txt\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "bGluZSBvbmUKbGluZSB0d28K\r\n"
    "--b1--\r\n"
)


def test_jmapc_uploads_a_message_and_downloads_its_attachment(client, tmp_path):
    eml = tmp_path / "message.eml"
    eml.write_bytes(ATTACHED.replace("{subject}", unique("upload ")).replace("{msgid}", unique("u")).encode())
    blob = client.upload_blob(eml)
    assert blob.size == eml.stat().st_size
    assert blob.type == "message/rfc822"

    call = CustomMethod(data={"accountId": client.account_id, "emails": {
        "m": {"blobId": blob.id, "mailboxIds": {inbox_id(client): True}}}})
    call.jmap_method = "Email/import"
    call.using = {MAIL}
    res = client.request(call)
    assert isinstance(res, CustomResponse), res
    email_id = res.data["created"]["m"]["id"]

    got = client.request(EmailGet(ids=[email_id], properties=["attachments", "hasAttachment"]))
    assert isinstance(got, EmailGetResponse), got
    [email] = got.data
    assert email.has_attachment is True
    [attachment] = email.attachments
    assert attachment.name == "notes.txt"
    target = tmp_path / "notes.txt"
    client.download_attachment(attachment, target)
    assert target.read_bytes() == b"line one\nline two\n"


def test_tls_server_certificate_verifies_with_the_test_ca(tls_server):
    """The TLS server presents a certificate for 127.0.0.1 that the test CA vouches for."""
    context = ssl.create_default_context(cafile=str(tls_server.ca_file))
    r = httpx.get(tls_server.base + "/.well-known/jmap", verify=context, auth=(USER, PASSWORD), timeout=30)
    assert r.status_code == 200
