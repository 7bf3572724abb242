"""Helpers shared by the jmapc interoperability tests: the account's owner, raw JMAP over httpx for
what jmapc 0.4 cannot send itself (Email/import), and small RFC 5322 messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from jmapc import Client, Mailbox
from jmapc.methods import MailboxGet, MailboxGetResponse, MailboxSet, MailboxSetResponse

from tests.conftest import CORE, MAIL, unique

USER, PASSWORD, EMAIL = "carol", "carol-pw", "carol@example.com"


def api(http: httpx.Client, calls: list) -> list:
    session = http.get("/.well-known/jmap").json()
    r = http.post(session["apiUrl"], json={"using": [CORE, MAIL], "methodCalls": calls})
    assert r.status_code == 200, r.text
    return r.json()["methodResponses"]


def utc_date(moment: datetime) -> str:
    """A UTCDate (RFC 8620 §1.4) in whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hours_ago(hours: float) -> str:
    return utc_date(datetime.now(UTC) - timedelta(hours=hours))


def import_over_http(http: httpx.Client, account_id: str, raw: bytes, mailbox_id: str,
                     received_at: str | None = None, keywords: dict | None = None) -> dict:
    session = http.get("/.well-known/jmap").json()
    up = http.post(session["uploadUrl"].replace("{accountId}", account_id), content=raw,
                   headers={"Content-Type": "message/rfc822"})
    assert up.status_code == 201, up.text
    spec = {"blobId": up.json()["blobId"], "mailboxIds": {mailbox_id: True}, "keywords": keywords or {}}
    if received_at:
        spec["receivedAt"] = received_at
    [(name, result, _)] = api(http, [["Email/import", {"accountId": account_id, "emails": {"m": spec}}, "i"]])
    assert name == "Email/import" and result["created"], result
    return result["created"]["m"]


def message(subject: str, msgid: str, in_reply_to: str | None = None, body: str = "Hi Carol, hello.") -> bytes:
    lines = ["From: Dave Example <dave@example.net>", f"To: Carol <{EMAIL}>", f"Subject: {subject}",
             f"Message-ID: {msgid}", "Date: Wed, 03 Jan 2024 08:30:00 +0000"]
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()


def inbox_id(client: Client) -> str:
    return mailbox_with_role(client, "inbox")


def mailbox_with_role(client: Client, role: str) -> str:
    res = client.request(MailboxGet(ids=None))
    assert isinstance(res, MailboxGetResponse), res
    return next(mb.id for mb in res.data if mb.role == role)


def new_mailbox(client: Client, prefix: str = "box ") -> tuple[str, str]:
    """A fresh top-level mailbox made with jmapc's Mailbox/set; returns (id, name)."""
    name = unique(prefix)
    res = client.request(MailboxSet(create={"new": Mailbox(name=name)}))
    assert isinstance(res, MailboxSetResponse), res
    assert res.created and res.created["new"] and res.created["new"].id, res
    return res.created["new"].id, name
