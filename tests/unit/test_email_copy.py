"""Email/copy and Blob/copy between two accounts a user may read: sharing will make such users; here
a call context that may read both accounts stands in for one (the handlers are the real ones)."""

from __future__ import annotations

import pytest

from app.access import Access
from app.mail.ingest import ingest
from app.protocol.registry import BLOB, CORE, MAIL, load_methods
from app.protocol.request import CallContext, Limits
from store import open_store

RAW = b"From: a@example.com\r\nSubject: shared\r\nMessage-ID: <shared@x>\r\n\r\nHello.\r\n"


class SharingContext(CallContext):
    """A user with every right in two accounts (real sharing grants per mailbox: tests/test_sharing.py)."""

    def accounts(self) -> dict:
        return {account: Access(account, owner=True) for account in self.user["readable"]}


@pytest.fixture
def setup(tmp_path):
    store = open_store(str(tmp_path / "data"))
    a = store.create_user("a", "h", "a@example.com")["accountId"]
    b = store.create_user("b", "h", "b@example.com")["accountId"]
    with store.write(a) as w:
        inbox_a = next(m["id"] for m in w.mailboxes() if m["role"] == "inbox")
        email, _, _ = ingest(w, RAW, {inbox_a: True}, {"$seen": True}, 1_700_000_000)
    with store.read(b) as r:
        archive_b = next(m["id"] for m in r.mailboxes() if m["role"] == "archive")
    ctx = SharingContext(store=store, user={"name": "a", "accountId": a, "readable": {a, b}}, limits=Limits(),
                         using={CORE, MAIL, BLOB}, method_capability=MAIL)
    yield store, ctx, a, b, email, archive_b
    store.close()


def handler(name: str):
    return load_methods()[name].handler


def test_email_copy_moves_the_message_with_on_success_destroy_original(setup):
    store, ctx, a, b, email, archive_b = setup
    responses = handler("Email/copy")(ctx, {"fromAccountId": a, "accountId": b, "onSuccessDestroyOriginal": True,
                                           "create": {"c": {"id": email["id"], "mailboxIds": {archive_b: True}}}})
    [(copy_name, copy), (set_name, destroyed)] = responses
    assert copy_name == "Email/copy" and set_name == "Email/set"
    created = copy["created"]["c"]
    assert set(created) == {"id", "blobId", "threadId", "size"}
    assert created["blobId"] == email["blobId"] and created["size"] == len(RAW)
    assert copy["notCreated"] is None and copy["fromAccountId"] == a and copy["accountId"] == b
    assert destroyed["destroyed"] == [email["id"]] and destroyed["accountId"] == a
    with store.read(b) as r:
        copied = r.email(created["id"])
        assert copied["mailboxIds"] == {archive_b: True} and copied["keywords"] == {"$seen": True}
        assert copied["receivedAt"] == 1_700_000_000
        assert r.blob(created["blobId"]) == RAW
    with store.read(a) as r:
        assert r.email(email["id"]) is None


def test_email_copy_refuses_a_duplicate_and_properties_other_than_the_three(setup):
    store, ctx, a, b, email, archive_b = setup
    args = {"fromAccountId": a, "accountId": b,
            "create": {"c": {"id": email["id"], "mailboxIds": {archive_b: True}}}}
    assert handler("Email/copy")(ctx, args)["created"]
    again = handler("Email/copy")(ctx, args)
    assert again["notCreated"]["c"]["type"] == "alreadyExists"
    assert again["notCreated"]["c"]["existingId"]
    bad = handler("Email/copy")(ctx, {**args, "create": {"d": {"id": email["id"], "subject": "changed",
                                                               "mailboxIds": {archive_b: True}}}})
    assert bad["notCreated"]["d"]["type"] == "invalidProperties"
    assert bad["notCreated"]["d"]["properties"] == ["subject"]
    missing = handler("Email/copy")(ctx, {**args, "create": {"e": {"id": "M9999999999"}}})
    assert missing["notCreated"]["e"]["type"] == "notFound"
    # a mailbox the target account does not have
    foreign = handler("Email/copy")(ctx, {"fromAccountId": a, "accountId": b,
                                          "create": {"f": {"id": email["id"], "mailboxIds": {"B999999": True}}}})
    assert foreign["notCreated"]["f"]["type"] == "invalidProperties"
    assert foreign["notCreated"]["f"]["properties"] == ["mailboxIds"]


def test_blob_copy_gives_the_other_account_the_blob_without_copying_bytes(setup):
    store, ctx, a, b, email, _ = setup
    res = handler("Blob/copy")(ctx, {"fromAccountId": a, "accountId": b, "blobIds": [email["blobId"]]})
    assert res["copied"] == {email["blobId"]: email["blobId"]} and res["notCopied"] is None
    with store.read(b) as r:
        assert r.blob(email["blobId"]) == RAW
