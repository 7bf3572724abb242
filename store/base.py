"""The storage interface the JMAP layer calls.

`app/` never touches LMDB: it opens a `Store`, asks it for a `Reader` (a consistent snapshot of one
account) or a `Writer` (one atomic transaction on one account) and calls the domain operations below.
A distributed backend implements the same three classes.

Records are plain dicts (JSON-compatible). Object ids and states are opaque strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

# Data types that keep a change log, by their one-letter log code.
TYPES = {"Mailbox": "m", "Email": "e", "Thread": "t", "Identity": "i"}


class StoreError(Exception):
    """A domain rule the store refuses to break (the JMAP layer validates first; this is the backstop)."""


class NotFound(StoreError):
    pass


@dataclass
class Changes:
    """Result of a /changes read: ids are deduplicated and collapsed as RFC 8620 §5.2 asks."""

    old_state: str
    new_state: str
    has_more: bool
    created: list[str]
    updated: list[str]
    destroyed: list[str]
    counts_only: bool  # Mailbox: every update only touched the count properties


class CannotCalculateChanges(StoreError):
    pass


class Reader(Protocol):
    account_id: str

    # state
    def state(self, type_name: str) -> str: ...
    def changes(self, type_name: str, since: str, max_changes: int | None) -> Changes: ...

    # mailboxes (an account has few: listing them all is bounded)
    def mailbox(self, mailbox_id: str) -> dict | None: ...
    def mailboxes(self) -> list[dict]: ...

    # emails
    def email(self, email_id: str) -> dict | None: ...
    def email_by_guid(self, guid: str) -> dict | None: ...
    def email_ids_by_date(self, mailbox_id: str | None, descending: bool = True,
                          after: int | None = None, before: int | None = None) -> Iterator[str]: ...
    def email_count(self) -> int: ...

    # threads
    def thread(self, thread_id: str) -> list[str] | None: ...
    def thread_ids(self, limit: int) -> list[str]: ...

    # blobs
    def blob(self, blob_id: str) -> bytes | None: ...
    def blob_info(self, blob_id: str) -> dict | None: ...


class Writer(Reader, Protocol):
    def create_mailbox(self, fields: dict) -> dict: ...
    def update_mailbox(self, mailbox_id: str, fields: dict) -> dict: ...
    def destroy_mailbox(self, mailbox_id: str) -> None: ...

    def add_email(self, summary: dict, guid: str, mailbox_ids: dict, keywords: dict,
                  received_at: int) -> tuple[dict, bool]: ...
    def update_email(self, email_id: str, keywords: dict | None = None,
                     mailbox_ids: dict | None = None) -> dict: ...
    def destroy_email(self, email_id: str) -> None: ...

    def put_blob(self, data: bytes, media_type: str) -> dict: ...


class Store(Protocol):
    def read(self, account_id: str) -> AbstractContextManager[Reader]: ...
    def write(self, account_id: str) -> AbstractContextManager[Writer]: ...

    # users and accounts
    def create_user(self, name: str, password_hash: str, email: str) -> dict: ...
    def user(self, name: str) -> dict | None: ...
    def users(self) -> list[dict]: ...
    def set_password_hash(self, name: str, password_hash: str) -> None: ...
    def delete_user(self, name: str) -> None: ...
    def account(self, account_id: str) -> dict | None: ...

    # the durable indexing queue (drained by the background indexer)
    def index_queue(self, account_id: str, limit: int) -> list[tuple[bytes, dict]]: ...
    def index_queue_ack(self, account_id: str, keys: list[bytes]) -> None: ...

    def close(self) -> None: ...
