"""The storage contract the JMAP layer calls; a second backend (PostgreSQL, later) implements it.

`app/` never touches LMDB: it opens a `Store`, asks it for a `Reader` (a consistent snapshot of one
account) or a `Writer` (one atomic transaction on one account) and calls the operations below.

Contract, for every backend:

* **Transactions.**  A Reader sees one consistent snapshot.  A Writer is one atomic transaction: all
  of its writes become visible together when the `with` block ends without an exception, or none
  do.  A write the caller saw committed survives a crash (kill -9, power loss where the disk keeps
  its promises).
* **Records** are JSON-compatible dicts, returned as fresh copies the caller may change.  Ids are
  opaque strings made by the store in the formats of `store.ids`, never reused.
* **States and changes.**  Each data type of an account has a state string (RFC 8620 §5.1); every
  Writer that changes objects of a type gives that type a new state at commit.  `changes` answers
  /changes from a log, in O(changes), not by comparing snapshots.  Types are named by their JMAP
  name; the store keeps no list of them.
* **Generic collections** (`Collection`): per-account JSON records with ids, an optional change
  log, and declared secondary indexes answering equality and range reads, so that a new data type
  needs no new storage code.
* **The journal**: every commit appends (seq, account, {type: new state}) under a global,
  increasing seq.  `journal` reads it back (push: what changed since an event id) and `on_commit`
  announces this process's commits right after they are durable (the change bus listens there).
* **Mail** (mailboxes, emails, threads, blobs, the index queue) keeps its own operations: counts,
  threading and the date indexes are kept in the same transaction as the message.
* **Blobs** are immutable bytes stored once by content (`store.ids`: ``G`` + sha256) and reached
  per account: an account reads a blob only after `put_blob` or `grant_blob` gave it access.
  `Store.blob_sink` takes a new blob piecewise (an upload streams into it without the body ever
  being in memory whole); `Writer.put_blob` stores bytes or a finished sink, durably at commit
  (for a blob kept outside the database, its bytes are synced before the commit that records
  it).  `Reader.open_blob` gives a seekable binary file to stream from; `Reader.blob` the bytes.
  A backend answers a blob larger than memory through `open_blob` without reading it whole.
* **Blob lifetime.**  A blob of an account is *referenced* while an email of the account is that
  message, or a *holder* holds it (`Writer.hold_blob(blob_id, holder)` until
  `release_blob(blob_id, holder)`: any record that is not an email and needs a blob kept, such as
  an outgoing message waiting to be sent, holds it under a name of its own, e.g.
  ``"submission:S12"``).  An account's access to an unreferenced blob ends when
  `Store.collect_garbage(grace)` runs more than `grace` seconds after the blob was last stored
  there (put, granted) or lost its last reference (email destroyed, hold released); the bytes go
  when no account has access any more.  The collector is a background or CLI job and may scan;
  nothing on a request path scans all blobs.
* **Bearer tokens** belong to a user and are kept with a hash of their secret only (`app.auth`
  makes the secret and the hash; the store never sees a secret).  Reading one is cheap enough to
  do on every request, which is how a revocation reaches every server process at once.  Deleting a
  user deletes their tokens.
* **Quotas** (RFC 9425; `QUOTA_RESOURCES`).  An account has two resources: ``messages`` (how
  many emails it holds) and ``storage`` (the sum of the raw sizes, in octets, of its emails: each
  message counted once, as Email/get's ``size`` shows it).  Uploads and other blobs that are no
  email's message do not count: they are RFC 8620 §6's unreferenced blobs, bounded by their grace
  period, not by the account's quota.  ``used`` of both is kept in the transaction that adds or
  destroys the email (never counted on read; an older data directory counts it once, when it
  is opened).  An administrator sets a hard limit per resource (`Writer.set_quota_limit`); a
  resource with a limit is a Quota object ``ids.quota_id(resource)`` whose state (type
  ``"Quota"``) changes with its ``used`` (logged as a counts-only change) and its limit.
  `Writer.add_email` refuses with `OverQuota` an email that would take a resource over its
  limit, before writing anything, so the caller may carry on in the same transaction;
  `Reader.check_room` applies the same rule to a planned write (an upload, a /set's creates).
* **A disk that fails a write** (full, ENOSPC/EDQUOT, or an I/O error, EIO) makes the write raise
  `StorageUnavailable` (`StorageFull` when the disk or the database map is full) with the
  transaction aborted: nothing of it is stored, what was stored before is intact, reads go on, and
  the same write succeeds once the disk has room again, without reopening anything.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

JournalEntry = tuple[int, str, dict]  # (seq, account id, {type name: new state})


class StoreError(Exception):
    """A domain rule the store refuses to break (the JMAP layer validates first; this is the backstop)."""


class NotFound(StoreError):
    pass


class CannotCalculateChanges(StoreError):
    pass


class OverQuota(StoreError):
    """The write would take a quota resource of the account over its hard limit (RFC 9425;
    answered as the ``overQuota`` SetError of RFC 8620 §5.3, LMTP ``552 5.2.2``).  Raised before
    anything was written.  resource: "messages" or "storage"; used, limit, wanted: in that
    resource's unit (emails or octets), wanted being what the refused write would add."""

    def __init__(self, resource: str, used: int, limit: int, wanted: int):
        unit = "octets" if resource == "storage" else "messages"
        super().__init__(f"over quota: {resource} would be {used + wanted} {unit}, the limit is {limit}")
        self.resource, self.used, self.limit, self.wanted = resource, used, limit, wanted


# Quota resources (RFC 9425 §3.2 ResourceType of each) in the order Quota/get lists them
QUOTA_RESOURCES: dict[str, str] = {"messages": "count", "storage": "octets"}


class StorageUnavailable(StoreError):
    """The disk failed a write (an I/O error, a read-only file system): nothing was written, and
    the write may succeed later.  The JMAP layer answers ``serverUnavailable`` (methods), 503 or
    507 (uploads), LMTP a 4xx, `tidings deliver` EX_TEMPFAIL.

    The message (``str(exc)``) is for clients: plain, without the library's own error text, which
    is kept in ``detail`` for the server's log (`logged`)."""

    def __init__(self, message: str = "the server could not write to its disk; nothing was stored",
                 detail: str | None = None):
        super().__init__(message)
        self.detail = detail

    def logged(self) -> str:
        """The message with the library's error text, for the log."""
        return f"{self} ({self.detail})" if self.detail else str(self)


class StorageFull(StorageUnavailable):
    """The disk (or the database's map) has no room for the write; nothing was written."""

    def __init__(self, message: str = "the server's disk is full; nothing was stored", detail: str | None = None):
        super().__init__(message, detail)


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FAILED_ERRNOS = (errno.EIO, errno.EROFS)
# libraries that lose the errno on the way (lmdb's generic Error, tantivy's ValueError) keep its text
_FULL_TEXTS = tuple(os.strerror(n) for n in _FULL_ERRNOS)
_FAILED_TEXTS = tuple(os.strerror(n) for n in _FAILED_ERRNOS)


LOW_SPACE = 4 << 20  # free octets under which a failed write is put down to a full disk


def disk_nearly_full(path: str | os.PathLike[str]) -> bool:
    """Whether the file system holding path has less than LOW_SPACE free for unprivileged use."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < LOW_SPACE


def storage_error(exc: BaseException, path: str | os.PathLike[str] | None = None) -> StorageUnavailable | None:
    """What `exc` (or an exception it was raised from) means if the disk caused it: the
    StorageUnavailable itself, a StorageFull for ENOSPC/EDQUOT, a StorageUnavailable for EIO/EROFS
    (from an OSError's errno, else from the errno's text in the message); None for anything else.
    With `path` (where the write went), an EIO on a nearly full disk is a StorageFull: LMDB
    reports a short write, which is how a full disk ends a write, as EIO."""
    failure = _storage_error(exc)
    if (failure is not None and not isinstance(failure, StorageFull) and path is not None
            and disk_nearly_full(path)):
        return StorageFull(detail=failure.logged())
    return failure


def _storage_error(exc: BaseException) -> StorageUnavailable | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageUnavailable):
            return current
        code = current.errno if isinstance(current, OSError) else None
        text = str(current)
        if code in _FULL_ERRNOS or (code is None and any(t in text for t in _FULL_TEXTS)):
            return StorageFull(detail=text)
        if code in _FAILED_ERRNOS or (code is None and any(t in text for t in _FAILED_TEXTS)):
            return StorageUnavailable(detail=text)
        current = current.__cause__ or current.__context__
    return None


@dataclass(frozen=True)
class Collection:
    """A kind of record kept per account in generic storage, declared by the data-type registry.

    name: the storage name (also what counters and keys are named after); id_prefix: record ids
    are ``id_prefix`` + a hex counter (`store.ids.record_id`); log: the type name whose state and
    change log the collection's writes update, or None; indexes: properties with a secondary index
    (a list value is indexed by each of its elements)."""

    name: str
    id_prefix: str
    log: str | None = None
    indexes: tuple[str, ...] = ()


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


class Reader(Protocol):
    account_id: str

    # -- states (any type name)
    def state(self, type_name: str) -> str:
        """The type's current state in this account ("0" before its first change)."""

    def changes(self, type_name: str, since: str, max_changes: int | None) -> Changes:
        """RFC 8620 §5.2 since the state `since`; raises CannotCalculateChanges for a state the
        log cannot answer.  With max_changes, at most that many ids and an intermediate state."""

    # -- generic collections
    def record(self, collection: Collection, record_id: str) -> dict | None: ...

    def record_ids(self, collection: Collection, index: str | None = None, *, equals: object = None,
                   lo: object = None, hi: object = None, reverse: bool = False) -> Iterator[str]:
        """All ids of the collection (index None, id order); or by a declared index those whose
        property equals `equals`, or lies in [lo, hi) when a bound is given (index order:
        null < booleans < integers < strings).  StoreError for an index not declared."""

    # -- mailboxes (an account has few: listing them all is bounded)
    def mailbox(self, mailbox_id: str) -> dict | None: ...
    def mailboxes(self) -> list[dict]: ...
    def mailbox_keyword_count(self, mailbox_id: str, keyword: str) -> int: ...

    # -- emails
    def email(self, email_id: str) -> dict | None: ...

    def has_email(self, email_id: str) -> bool:
        """Whether the account has this email: what email() is not None says, without decoding
        the record."""

    def email_outline(self, email_id: str) -> list | None:
        """The MIME outline add_email stored with the email (summary["outline"], opaque JSON owned
        by app.mail.mime), or None (none stored: emails stored before outlines existed)."""

    def email_by_guid(self, guid: str) -> dict | None: ...
    def email_ids_by_date(self, mailbox_id: str | None, descending: bool = True,
                          after: int | None = None, before: int | None = None) -> Iterator[str]: ...

    def email_ids_by_keyword(self, mailbox_id: str, keyword: str, descending: bool = True) -> Iterator[str]:
        """The ids of the mailbox's emails with the keyword, in email_ids_by_date's order (an
        index kept by the writers, so that inMailbox + hasKeyword reads no email records)."""

    def email_count(self) -> int: ...

    # -- threads
    def thread(self, thread_id: str) -> list[str] | None: ...
    def thread_ids(self, limit: int) -> list[str]: ...

    # -- blobs (whole blobs "G<guid>" this account has access to; part ids are app/blob's)
    def blob(self, blob_id: str) -> bytes | None:
        """The bytes (in memory: for MIME parsing and small blobs; downloads use open_blob)."""

    def open_blob(self, blob_id: str) -> BinaryIO | None:
        """A readable, seekable binary file of the blob, which the caller closes; it stays
        readable after the Reader ends (and after a collector removed the blob meanwhile)."""

    def blob_info(self, blob_id: str) -> dict | None:
        """{"blobId", "size", "type", "created"[, "released"]} of a blob of this account."""

    def blob_holders(self, blob_id: str) -> list[str]:
        """The holders holding the blob in this account (`Writer.hold_blob`)."""

    def blob_referenced(self, blob_id: str) -> bool:
        """Whether an email of this account is the blob's message or a holder holds it."""

    # -- quotas (see "Quotas" above)
    def quota(self) -> dict[str, dict]:
        """{resource: {"used": n, "limit": n or None}} for each of `QUOTA_RESOURCES` (None: no
        limit, no Quota object).  One read per resource; nothing is counted."""

    def check_room(self, messages: int = 0, octets: int = 0) -> None:
        """Raises `OverQuota` when `messages` more emails or `octets` more storage would take the
        account over a limit (used + wanted > limit); adding nothing is always allowed."""


class Writer(Reader, Protocol):
    # -- generic collections
    def create_record(self, collection: Collection, fields: dict, record_id: str | None = None) -> dict:
        """Stores fields as a new record with a new id, logged as created; or with `record_id` (an
        id the caller made with `store.ids`, for an object whose id is derived and that existed
        before it was stored, like an account's default Identity: logged as updated; StoreError if
        the record exists).  Returns it (with "id")."""

    def update_record(self, collection: Collection, record_id: str, record: dict) -> dict:
        """Replaces the record as a whole; NotFound if there is none."""

    def destroy_record(self, collection: Collection, record_id: str) -> None:
        """NotFound if there is none."""

    # -- mail
    def create_mailbox(self, fields: dict) -> dict: ...
    def update_mailbox(self, mailbox_id: str, fields: dict) -> dict: ...
    def destroy_mailbox(self, mailbox_id: str) -> None: ...

    def add_email(self, summary: dict, guid: str, mailbox_ids: dict, keywords: dict,
                  received_at: int) -> tuple[dict, bool]:
        """Stores a parsed message whose bytes are the blob ``G<guid>``, and summary["outline"]
        apart from the record (`email_outline`); (record, created): an
        account holding the guid already returns that email.  OverQuota (nothing written) when
        one more message or summary["size"] more octets would exceed a limit."""
    def update_email(self, email_id: str, keywords: dict | None = None,
                     mailbox_ids: dict | None = None, record: dict | None = None) -> dict:
        """New keywords and/or mailboxIds (None: unchanged); returns the record.  ``record`` is
        the email as `email(email_id)` returned it in this same transaction, when the caller has
        it: it spares a second read (a backend may ignore it) and may be changed in place."""
    def destroy_email(self, email_id: str) -> None: ...

    def set_quota_limit(self, resource: str, limit: int | None) -> None:
        """Sets (an UnsignedInt) or removes (None) the hard limit of a resource of
        `QUOTA_RESOURCES`; the Quota object is created, updated or destroyed with it.  Limits
        lower than ``used`` are allowed (the account then only shrinks)."""

    def put_blob(self, data: bytes | BlobSink, media_type: str) -> dict:
        """Stores a blob given as bytes or as a finished `Store.blob_sink` and gives this account
        access to it (its grace period restarts if it had it).  Returns its blob_info."""

    def grant_blob(self, blob_id: str, from_reader: Reader) -> dict | None:
        """Gives this account access to a blob of `from_reader`'s account without copying bytes
        (Blob/copy); None if that account has no such blob."""

    def hold_blob(self, blob_id: str, holder: str) -> None:
        """Keeps the blob alive in this account until `release_blob(blob_id, holder)`; a holder
        is any name without NUL; holding twice is holding once.  NotFound for a blob the account
        does not have."""

    def release_blob(self, blob_id: str, holder: str) -> None:
        """Ends the hold (a no-op if there is none); the blob's grace period starts now."""

    def set_subscribed_for(self, grantee: str, mailbox_id: str, subscribed: bool, kind: str = "Mailbox") -> None:
        """A grantee's own isSubscribed of a mailbox (or, with `kind`, an AddressBook or Calendar)
        shared with them (RFC 8621 §2: "stored separately per user"), logged as a change of that
        object for the grantee's clients; NotFound if it is not shared with them.  A create, update
        or destroy of a mailbox with ``shareWith`` keeps `Store.grants_to` in step in the same
        transaction."""

    def share(self, kind: str, obj_id: str, before: dict | None, after: dict | None) -> None:
        """Keeps `Store.grants_to` in step with the ``shareWith`` ({grantee account id: rights}) of
        a generic record of type `kind` ("AddressBook", "Calendar") going from `before` to
        `after` (None: not shared; a destroyed record's after is None).  Mailboxes do this
        themselves.  A grantee's isSubscribed survives a change of their rights."""

    def flush(self) -> None:
        """Records this transaction's changes so far under a new state (done again at commit)."""


class BlobSink(Protocol):
    """A new blob's bytes, written piecewise; `finish` returns its guid (sha256 hex).  Close it
    (context manager) whether or not it was stored."""

    size: int

    def write(self, chunk: bytes) -> None: ...
    def finish(self) -> str: ...
    def close(self) -> None: ...


class Store(Protocol):
    def read(self, account_id: str) -> AbstractContextManager[Reader]: ...
    def write(self, account_id: str) -> AbstractContextManager[Writer]:
        """StorageFull when the disk or the database is full, StorageUnavailable when the disk
        failed the write otherwise (the transaction is aborted in both cases)."""

    # -- blobs
    def blob_sink(self) -> BlobSink: ...

    def collect_garbage(self, grace: float, dry_run: bool = False, now: float | None = None,
                        batch: int = 1000) -> dict:
        """Removes unreferenced blobs older than `grace` seconds (see "Blob lifetime") and files no
        commit recorded.  Returns {"blobs", "bytes", "files", "pending", "pendingBytes"}: blobs and
        octets reclaimed (dry_run: reclaimable), files unlinked, and the unreferenced blobs still
        within their grace.  Safe while servers and commands write concurrently: it works in
        transactions of at most `batch` items, checking each again before removing it, so writers
        never wait long for it; a file goes only after the removal of its blob committed."""

    def copy_to(self, path: str, compact: bool = True, progress: Callable[[int], None] | None = None) -> dict:
        """A consistent copy of the whole store (one snapshot: database and the blob files it
        refers to) written into the directory `path`, while others keep reading and writing;
        `store.restore_copy(path, data_dir)` installs it.  Returns {"blobFiles", "blobBytes",
        "linked", "missing"} (missing: guids the snapshot refers to whose file was absent)."""

    # -- the journal (the change bus reads it)
    def on_commit(self, listener: Callable[[list[JournalEntry]], None]) -> None:
        """listener(entries) is called after each commit of this process that changed a state."""

    def journal_head(self) -> int:
        """The seq of the last journal entry (0 if none)."""

    def journal(self, after: int, limit: int = 1000) -> tuple[list[JournalEntry], bool]:
        """Entries with seq > after, oldest first, at most limit; and False if entries after
        `after` were already pruned (the reader missed some)."""

    # -- users and accounts
    def create_user(self, name: str, password_hash: str, email: str) -> dict: ...
    def user(self, name: str) -> dict | None: ...
    def users(self) -> list[dict]: ...
    def set_password_hash(self, name: str, password_hash: str) -> None: ...
    def delete_user(self, name: str) -> None: ...
    def set_aliases(self, name: str, aliases: list[str]) -> dict:
        """Replaces the user's aliases (``local@domain`` or a whole domain ``@domain``); StoreError
        when one belongs to another user.  Returns the user."""

    def user_for_address(self, address: str) -> dict | None:
        """The user mail to `address` is delivered to (case-insensitive): the owner of the address
        (a user's own or an alias), else of its domain (``@domain``); None if nobody's."""

    def is_local_domain(self, domain: str) -> bool:
        """Whether mail to the domain is this server's to deliver (some user has an address in it)."""

    def account(self, account_id: str) -> dict | None: ...

    # -- upgrades of stored data that only the app knows how to make (app.server at start)
    def upgraded(self, step: str) -> bool:
        """Whether the upgrade named `step` was recorded as done (`mark_upgraded`) in this data
        directory; a new data directory has every step to do (each a no-op without data)."""

    def mark_upgraded(self, step: str) -> None:
        """Records the upgrade `step` as done, durably."""

    # -- sharing (a ``shareWith``, {grantee account id: rights}, is indexed by grantee)
    def grants_to(self, grantee: str) -> dict[str, dict[str, dict]]:
        """{owner account id: {key: {"rights": {right: bool}, "subscribed": bool}}} for every
        object shared with `grantee`, as committed; the key is a mailbox's id, or ``kind/id`` for
        an object of another type (`Writer.share`: "AddressBook/B1").  O(grants of that grantee)."""

    # -- bearer tokens: {"id", "user", "accountId", "name", "secretHash", "created", "expires",
    #    "lastUsed"}; times are Unix seconds, expires and lastUsed may be None (never)
    def create_token(self, user: str, secret_hash: str, name: str | None, expires: int | None) -> dict:
        """Stores a new token of `user` under a new id (`store.ids.token_id`, never reused).
        NotFound when there is no such user."""

    def token(self, token_id: str) -> dict | None: ...

    def tokens(self, user: str | None = None) -> list[dict]:
        """Every token (of `user` only, when given), oldest first.  An admin read: it may scan."""

    def touch_token(self, token_id: str, when: int) -> None:
        """Records `when` as the token's lastUsed (a no-op for a token that is gone)."""

    def revoke_token(self, token_id: str) -> dict:
        """Deletes the token and returns what it was; NotFound if there is none."""

    # -- the durable indexing queue (drained by the background indexer)
    def index_queue(self, account_id: str, limit: int, after: bytes | None = None) -> list[tuple[bytes, dict]]:
        """The account's oldest queued entries, (key, {"op", "id", "at"}), at most limit; with
        ``after`` (a key it returned), only those queued after that one."""
    def index_queue_ack(self, account_id: str, keys: list[bytes]) -> None: ...
    def index_generation(self, account_id: str) -> int: ...
    def queue_reindex(self, account_id: str) -> int: ...
    def index_queue_length(self, account_id: str) -> int: ...
    def accounts_with_index_queue(self) -> list[str]: ...

    def release_memory(self) -> None:
        """Gives back memory the backend holds only as a cache (a no-op where there is none)."""

    def healthy(self) -> None:
        """Returns when the store answers a read (`GET /healthz`); raises when it does not."""

    def close(self) -> None: ...
