"""The background indexer (app.search.SearchService) with a real store and the real engines: new
mail is added to the index as soon as it is stored and committed by the next search, or within
the commit interval; queue entries leave only with a commit."""

from __future__ import annotations

import pytest

from app.mail.ingest import ingest
from app.search import SearchService
from indexer import Match
from store import open_store
from tests.conftest import wait_until


@pytest.fixture(params=["tantivy", "whoosh"])
def service(tmp_path, request):
    store = open_store(str(tmp_path / "data"))
    search = SearchService(store, str(tmp_path / "data"), request.param)
    account = store.create_user("u", "hash", "u@example.com")["accountId"]
    yield store, search, account
    search.close()
    store.close()


def deliver(store, account: str, word: str) -> str:
    raw = f"Subject: about {word}\r\nMessage-ID: <{word}@example.com>\r\n\r\nthe word is {word}\r\n".encode()
    with store.write(account) as w:
        inbox = next(m["id"] for m in w.mailboxes() if m["role"] == "inbox")
        record, _, _ = ingest(w, raw, {inbox: True}, {}, 1_700_000_000)
    return record["id"]


def indexer_after_first_commit(store, search, account: str, interval: float) -> None:
    """Starts the background indexer and waits for its first commit (of one delivered message)."""
    search.start(interval=interval)
    deliver(store, account, "firstword")
    wait_until(lambda: store.index_queue_length(account) == 0, "the first commit")


def test_new_mail_is_added_at_once_and_committed_by_the_next_search(service):
    store, search, account = service
    indexer_after_first_commit(store, search, account, 3600)  # from now on only a search commits
    assert search.index.search(account, Match("body", "firstword"))

    latest = deliver(store, account, "betaword")
    wait_until(lambda: search._pending.get(account), "the new mail to be added")  # not committed
    assert store.index_queue_length(account) == 1  # queued until its commit
    assert search.index.search(account, Match("body", "betaword")) == set()

    search.ensure_fresh(account)
    assert search.index.search(account, Match("body", "betaword")) == {latest}
    assert store.index_queue_length(account) == 0


def test_what_was_added_is_committed_when_the_indexer_stops(service):
    store, search, account = service
    indexer_after_first_commit(store, search, account, 3600)
    latest = deliver(store, account, "deltaword")
    wait_until(lambda: search._pending.get(account), "the new mail to be added")

    search.stop()
    assert store.index_queue_length(account) == 0
    assert search.index.search(account, Match("body", "deltaword")) == {latest}


def test_added_mail_is_committed_within_the_interval_without_a_search(service):
    store, search, account = service
    indexer_after_first_commit(store, search, account, 0.3)
    latest = deliver(store, account, "zetaword")
    wait_until(lambda: store.index_queue_length(account) == 0, "the commit")
    assert search.index.search(account, Match("body", "zetaword")) == {latest}
