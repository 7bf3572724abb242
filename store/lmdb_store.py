"""The LMDB backend of the store.

One LMDB environment per data directory; named databases hold one kind of key each. `A` is the account
id, `\\0` a separator (ids never contain NUL), `ts` a receivedAt in seconds as 8 bytes big-endian offset
by 2**62 so that byte order is time order, `n` an 8-byte big-endian counter.

| database  | key                          | value                                   | serves                       |
|-----------|------------------------------|-----------------------------------------|------------------------------|
| users     | username                     | user JSON (hash, accountId, email)      | auth, CLI                    |
| accounts  | A                            | account JSON                            | session                      |
| counters  | A\\0name                     | n                                       | id allocation, modseq, quota used/limits |
| blobs     | n (global blob sequence)     | raw bytes of a blob <= 1 MiB, stored once | small blob content, appended |
| blobguid  | sha256 (hex)                 | n (in `blobs`), or b"F" + size(n): a file | content addressing by guid   |
| blobref   | A\\0blobId                   | JSON {size, type, created[, released]}  | per-account blob access      |
| blobacct  | sha256\\0A                   | -                                       | which accounts have a blob (GC) |
| blobhold  | A\\0blobId\\0holder          | JSON {since}                            | blobs held alive by records  |
| emails    | A\\0emailId                  | email JSON (metadata, keywords, boxes)  | Email/get by id: O(log n)    |
| guid      | A\\0guid                     | emailId                                 | lookup by message guid       |
| mbuid     | A\\0mailboxId\\0uid(n)       | emailId                                 | mailbox + uid                |
| mbdate    | A\\0mailboxId\\0ts\\0emailId | -                                       | mailbox listing by date      |
| alldate   | A\\0ts\\0emailId             | -                                       | account listing by date      |
| mailboxes | A\\0mailboxId                | mailbox JSON incl. counts               | Mailbox/get by id            |
| mbthread  | A\\0mailboxId\\0threadId     | JSON [emails, unread emails]            | incremental thread counts    |
| mbkw      | A\\0mailboxId\\0keyword      | n emails with the keyword               | keyword totals without a scan |
| threads   | A\\0threadId                 | JSON [[ts, emailId], ...] by date       | Thread/get                   |
| msgid     | A\\0sha1(message-id)[:16]    | threadId                                | threading at ingest          |
| changes   | A\\0type\\0modseq(n)\\0id    | b"c" created, b"u" updated, b"k" counts, b"d" destroyed | /changes: O(changes) |
| states    | A\\0type                     | modseq(n) of the type's last change     | states                       |
| indexq    | A\\0seq(n)                   | JSON {"op": "add"/"del", "id": emailId, "at": unix s} | background indexer queue |
| records   | A\\0collection\\0id          | record JSON                             | generic collections by id    |
| recidx    | A\\0collection\\0prop\\0value\\0id | -                                  | declared indexes: =, range   |
| journal   | n (global commit sequence)   | JSON {"a": A, "c": {type: state}}       | change bus, push resume      |
| addresses | address or @domain (lower)   | username                                | RCPT TO, local delivery      |
| grants    | G\\0A\\0mailboxId or G\\0A\\0kind/id (G: grantee) | JSON {"rights": {...}, "subscribed": b} | what is shared with a user (mailboxes; address books, calendars) |
| tokens    | token id (``K...``)          | token JSON (user, secretHash, expiry)   | Bearer auth, `tidings token` |

Blobs larger than 1 MiB are files at ``<data>/blobs/ab/<sha256>`` (`store.blobfiles`): written to
a temp file while hashed, fsync'd, and renamed to their content address inside the write
transaction that records them, before it commits.  A blob of an account is *referenced* while an
email of the account is that message (`guid`) or a holder holds it (`blobhold`); an unreferenced
one is removed by `collect_garbage` once `created` (or `released`, when its last reference went)
is older than the grace period, and its content once no account has it (`blobacct`).

Quotas (store/base.py "Quotas"): ``used`` is the counter ``emails`` (messages) and ``octets``
(storage: the sum of the emails' ``size``), kept by add_email/destroy_email; a hard limit is the
counter ``limit:<resource>`` (absent: no limit).  Data directories made before quotas get
``octets`` counted once when opened (`_count_storage`, marked done by the global ``\0quotas``).

Every Writer is one LMDB write transaction: a message is stored wholly (blob, record, memberships,
thread, counts, change log, index queue) or not at all, and LMDB syncs on commit, so an
acknowledged write survives kill -9.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

import lmdb
import orjson

from . import blobfiles, ids, mapped
from .base import (
    QUOTA_RESOURCES,
    CannotCalculateChanges,
    Changes,
    Collection,
    NotFound,
    OverQuota,
    StorageFull,
    StorageUnavailable,
    StoreError,
    storage_error,
)

log = logging.getLogger("tidings.store")

_DBS = ("users", "accounts", "counters", "blobs", "blobguid", "blobref", "emails", "guid", "mbuid", "mbdate",
        "alldate", "mailboxes", "mbthread", "mbkw", "threads", "msgid", "changes", "states", "indexq",
        "records", "recidx", "journal", "addresses", "grants", "blobacct", "blobhold", "tokens", "outline",
        "mbkwdate")
_N = struct.Struct(">Q")
_TS_OFFSET = 1 << 62
SEP = b"\x00"


GC_BATCH = 1000  # keys per garbage-collection transaction: the writer lock is held briefly
_FILE = b"F"  # a blobguid value for a blob kept as a file: b"F" + size
_BLOB_SEQ = b"\x00blobseq"  # global counters (account ids never start with NUL)
_JOURNAL_SEQ = b"\x00journal"
_TOKEN_SEQ = b"\x00tokenseq"
_QUOTAS_COUNTED = b"\x00quotas"  # set once every account's storage counter is right (the migration)
_KEYWORD_DATES = b"\x00kwdates"  # set once the mbkwdate index holds every email (the migration)
_UPGRADED = b"\x00upgraded:"  # + a step's name: an upgrade the app made once (Store.mark_upgraded)
_USED = {"messages": "emails", "storage": "octets"}  # the counter holding each resource's `used`
JOURNAL_KEEP = 100_000  # journal entries kept for push resumption (older ones are pruned)

# The change-log codes of the first four types, kept so that existing data directories keep their
# states; every other type is logged under its own name.
_LEGACY_LOG = {"Mailbox": "m", "Email": "e", "Thread": "t", "Identity": "i"}


class MapFullError(StorageFull, lmdb.MapFullError):
    """The LMDB map is full: a StorageFull that is still the lmdb error it was."""


def _disk_failure(exc: BaseException, path: str) -> StorageUnavailable | None:
    """A write's exception as the store's error when the disk or the map caused it (see
    base.storage_error; lmdb's MapFullError and DiskError are those by their class)."""
    if isinstance(exc, StorageUnavailable):
        return exc
    if isinstance(exc, lmdb.MapFullError):
        return MapFullError("the database map is full; nothing was stored", detail=str(exc))
    if isinstance(exc, lmdb.DiskError):  # ENOSPC
        return StorageFull(detail=str(exc))
    return storage_error(exc, path)


def _log_code(type_name: str) -> bytes:
    return _LEGACY_LOG.get(type_name, type_name).encode()


def _index_values(value: object) -> list[bytes]:
    """Order-preserving index keys of one property value (a list gives one key per element):
    null < booleans < integers < strings; other values are not indexed."""
    if isinstance(value, list):
        return [k for v in value if not isinstance(v, list) for k in _index_values(v)]
    if value is None:
        return [b"\x00"]
    if isinstance(value, bool):
        return [b"\x01" + (b"\x01" if value else b"\x00")]
    if isinstance(value, int) and -(1 << 63) <= value < (1 << 63):
        return [b"\x02" + _N.pack(value + (1 << 63))]
    if isinstance(value, str):
        # NUL separates the value from the id: escape it (and the escape byte), keeping the order
        return [b"\x03" + value.encode().replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")]
    return []


def _keyword_date_key(mailbox_id: str, keyword: str, ts: bytes, eid: bytes) -> bytes:
    """An mbkwdate key (after the account prefix): mailbox, keyword, receivedAt, email id."""
    return mailbox_id.encode() + SEP + keyword.encode() + SEP + ts + SEP + eid


def _n(value: int) -> bytes:
    return _N.pack(value)


def _ts(seconds: int) -> bytes:
    return _N.pack(seconds + _TS_OFFSET)


def _unts(raw: bytes) -> int:
    return _N.unpack(raw)[0] - _TS_OFFSET


def _is_unread(keywords: dict) -> bool:
    # RFC 8621 §2: unread = neither $seen nor $draft
    return "$seen" not in keywords and "$draft" not in keywords


def _state_str(modseq: int) -> str:
    return str(modseq)


def _parse_state(state: str) -> tuple[int, str]:
    """A state is "modseq" or, mid-way through one modseq's changes, "modseq.lastId"."""
    head, _, last = state.partition(".")
    if not head.isdigit() or len(head) > 19:
        raise CannotCalculateChanges("unknown state")
    return int(head), last


class LmdbStore:
    def __init__(self, path: str, map_size: int = 1 << 36):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.env = lmdb.open(path, map_size=map_size, max_dbs=len(_DBS) + 2, max_readers=256,
                             readahead=False, metasync=True, sync=True)
        self.db = {name: self.env.open_db(name.encode()) for name in _DBS}
        self._listeners: list = []
        self.inline_max = int(os.environ.get("TIDINGS_BLOB_INLINE_MAX") or blobfiles.INLINE_MAX)
        self._index_addresses()
        self._index_blob_accounts()
        self._count_storage()
        self._index_keyword_dates()

    def _count_storage(self) -> None:
        """Data directories made before quotas: every account's storage counter (the sum of its
        emails' sizes), counted once; later the writers keep it."""
        with self._txn() as txn:
            if txn.get(_QUOTAS_COUNTED, db=self.db["counters"]) is not None:
                return
            totals: dict[bytes, int] = {}
            for key, raw in txn.cursor(db=self.db["emails"]):
                account = key.partition(SEP)[0]
                totals[account] = totals.get(account, 0) + int(orjson.loads(raw).get("size") or 0)
            for account, total in totals.items():
                txn.put(account + SEP + b"octets", _n(total), db=self.db["counters"])
            txn.put(_QUOTAS_COUNTED, _n(1), db=self.db["counters"])
            if totals:
                log.info("counted the storage of %d accounts for quotas", len(totals))

    def _index_keyword_dates(self) -> None:
        """Data directories made before the mbkwdate index (mailbox + keyword + receivedAt + id):
        every email's entries, once; later the writers keep it with the keyword counts."""
        with self._txn() as txn:
            if txn.get(_KEYWORD_DATES, db=self.db["counters"]) is not None:
                return
            n = 0
            for key, raw in txn.cursor(db=self.db["emails"]):
                account, _, eid = key.partition(SEP)
                record = orjson.loads(raw)
                ts = _ts(record["receivedAt"])
                for mailbox_id in record["mailboxIds"]:
                    for keyword in record["keywords"]:
                        txn.put(account + SEP + _keyword_date_key(mailbox_id, keyword, ts, eid), b"",
                                db=self.db["mbkwdate"])
                n += 1
            txn.put(_KEYWORD_DATES, _n(1), db=self.db["counters"])
            if n:
                log.info("indexed the keywords of %d emails by mailbox and date", n)

    def _index_addresses(self) -> None:
        """Data directories made before the addresses database: every user's address, once."""
        with self._txn() as txn:
            if txn.stat(self.db["addresses"])["entries"] or not txn.stat(self.db["users"])["entries"]:
                return
            for _, raw in txn.cursor(db=self.db["users"]):
                user = orjson.loads(raw)
                for addr in [user.get("email"), *user.get("aliases", ())]:
                    if addr:
                        txn.put(addr.lower().encode(), user["name"].encode(), db=self.db["addresses"])
            self._index_domains(txn)

    def _index_blob_accounts(self) -> None:
        """Data directories made before the blobacct database: which accounts have each blob."""
        with self._txn() as txn:
            if txn.stat(self.db["blobacct"])["entries"] or not txn.stat(self.db["blobref"])["entries"]:
                return
            for key in txn.cursor(db=self.db["blobref"]).iternext(values=False):
                account, _, blob_id = key.partition(SEP)
                guid = ids.guid_of(blob_id.decode())
                if guid:
                    txn.put(guid.encode() + SEP + account, b"", db=self.db["blobacct"])

    def close(self) -> None:
        self.env.close()

    # -- blobs
    def blob_sink(self) -> blobfiles.BlobSink:
        """A new blob's bytes, written piecewise (an upload streams into it); store it with
        `Writer.put_blob(sink, type)`, and close it (a context manager) in any case."""
        return blobfiles.BlobSink(self.path, self.inline_max)

    def healthy(self) -> None:
        """A read transaction and one get (microseconds): raises lmdb.Error if the store does not answer."""
        with self.env.begin() as txn:
            txn.get(b"health", db=self.db["counters"])

    def release_memory(self) -> None:
        """Drops this process's mapping of the data file's pages (`store.mapped`; the map is
        read-only): without it a bulk import's RSS grows with the size of the data it wrote."""
        path = os.path.realpath(os.path.join(self.path, "data.mdb"))
        mapped.drop_mappings(lambda mapped_path: mapped_path == path)

    # -- backup (`tidings backup`)
    def copy_to(self, path: str, compact: bool = True, progress=None) -> dict:
        """Writes a consistent copy of the whole store into the directory `path` (empty or new),
        while other processes keep reading and writing: the database as of one snapshot
        (`data.mdb`, compacted: free pages left out), and the blob files that snapshot refers to
        (`blobs/ab/<guid>`, hard links when `path` is on the data directory's file system, else
        synced copies).  progress(octets) follows the blob files.

        The files are pinned under the writer lock, in the same instant the snapshot is taken: the
        collector unlinks a file only under that lock after its record is gone, so every file the
        snapshot refers to exists then, and is hard-linked aside (`blobfiles.pin_all`) before any
        later commit can drop it.  The lock is held for those links only, not for the copy.
        Returns {"blobFiles", "blobBytes", "linked", "missing"}: missing lists the guids the
        snapshot refers to whose file was not there (a damaged data directory)."""
        os.makedirs(path, exist_ok=True)
        if os.path.exists(os.path.join(path, "data.mdb")):
            raise StoreError(f"{path} already holds a database")
        blobfiles.sweep_pins(self.path)
        pin = os.path.join(blobfiles.blob_dir(self.path),
                           f"{blobfiles.PIN_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
        lock = self.env.begin(write=True)  # the writer lock: no commit, no collector unlink meanwhile
        try:
            snapshot = self.env.begin()
            try:
                blobfiles.pin_all(self.path, pin)
            except BaseException:
                snapshot.abort()
                raise
        finally:
            lock.abort()
        report = {"blobFiles": 0, "blobBytes": 0, "linked": 0, "missing": []}
        try:
            try:
                wanted = [(key.decode(), _N.unpack(value[1:])[0])
                          for key, value in snapshot.cursor(db=self.db["blobguid"]) if value[:1] == _FILE]
                self.env.copy(path, compact=compact, txn=snapshot)
            finally:
                snapshot.abort()
            with open(os.path.join(path, "data.mdb"), "rb") as f:
                os.fsync(f.fileno())
            made: set[str] = set()
            for guid, size in wanted:
                source = os.path.join(pin, guid)
                if not os.path.exists(source):
                    report["missing"].append(guid)
                    continue
                target = blobfiles.path_of(path, guid)
                if os.path.dirname(target) not in made:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    made.add(os.path.dirname(target))
                report["linked"] += blobfiles.place(source, target, progress)
                report["blobFiles"] += 1
                report["blobBytes"] += size
            for d in made:
                blobfiles.fsync_dir(d)
            if made:
                blobfiles.fsync_dir(blobfiles.blob_dir(path))
            blobfiles.fsync_dir(path)
        finally:
            blobfiles.remove_tree(pin)
        return report

    # -- account-scoped transactions
    @contextmanager
    def read(self, account_id: str) -> Iterator[LmdbReader]:
        with self.env.begin(buffers=False) as txn:
            yield LmdbReader(self, txn, account_id)

    @contextmanager
    def write(self, account_id: str) -> Iterator[LmdbWriter]:
        """One write transaction on the account (base.Store.write); StorageFull/StorageUnavailable
        when the disk fails it, with the transaction aborted."""
        with self._txn() as txn:
            w = LmdbWriter(self, txn, account_id)
            yield w
            w.flush()
        if w.journaled:
            for listener in list(self._listeners):
                try:
                    listener(w.journaled)
                except Exception:  # noqa: BLE001 - a listener never fails a committed write
                    log.exception("commit listener failed")

    @contextmanager
    def _txn(self) -> Iterator[lmdb.Transaction]:
        """A write transaction, committed when the block ends, aborted if it raises; a failure the
        disk caused is raised as StorageFull/StorageUnavailable.  With writemap off (the default,
        kept on purpose) LMDB writes its pages with pwrite at commit, so a full disk is an ENOSPC
        from the commit and the aborted transaction leaves the file as it was; a writable memory
        map would instead take a SIGBUS when tmpfs or a sparse file has no page to give."""
        txn = self.env.begin(write=True)
        try:
            yield txn
            txn.commit()
        except BaseException as exc:
            txn.abort()
            failure = _disk_failure(exc, self.path)
            if failure is None or failure is exc:
                raise
            log.info("write refused: %s", failure)  # the caller says what it means for its client
            raise failure from exc

    # -- the journal: every commit's (account, {type: state}), in commit order
    def on_commit(self, listener) -> None:
        """Calls listener([(seq, account_id, {type: state}), ...]) after each commit of this process."""
        self._listeners.append(listener)

    def journal_head(self) -> int:
        with self.env.begin() as txn:
            raw = txn.get(_JOURNAL_SEQ, db=self.db["counters"])
        return _N.unpack(raw)[0] if raw else 0

    def journal(self, after: int, limit: int = 1000) -> tuple[list[tuple[int, str, dict]], bool]:
        """Entries with seq > after, oldest first, at most limit; and whether none between `after`
        and the first returned was pruned."""
        out: list[tuple[int, str, dict]] = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.db["journal"])
            if not cur.first():
                return out, True
            intact = _N.unpack(cur.key())[0] <= after + 1
            if cur.set_range(_n(after + 1)):
                for key, value in cur:
                    entry = orjson.loads(value)
                    out.append((_N.unpack(key)[0], entry["a"], entry["c"]))
                    if len(out) >= limit:
                        break
        return out, intact

    # -- users and accounts
    def create_user(self, name: str, password_hash: str, email: str) -> dict:
        with self._txn() as txn:
            if txn.get(name.encode(), db=self.db["users"]) is not None:
                raise StoreError(f"user {name!r} already exists")
            account_id = "A" + secrets.token_hex(5)
            now = int(time.time())
            user = {"name": name, "accountId": account_id, "passwordHash": password_hash,
                    "email": email, "created": now}
            account = {"id": account_id, "name": email, "user": name, "created": now}
            owner = txn.get(email.lower().encode(), db=self.db["addresses"])
            if owner is not None:
                raise StoreError(f"address {email!r} belongs to user {owner.decode()!r}")
            txn.put(name.encode(), orjson.dumps(user), db=self.db["users"])
            txn.put(email.lower().encode(), name.encode(), db=self.db["addresses"])
            self._index_domains(txn)
            txn.put(account_id.encode(), orjson.dumps(account), db=self.db["accounts"])
            w = LmdbWriter(self, txn, account_id)
            for role, mb_name, order in (("inbox", "Inbox", 1), ("drafts", "Drafts", 2),
                                         ("sent", "Sent", 3), ("archive", "Archive", 4),
                                         ("junk", "Junk", 5), ("trash", "Trash", 6)):
                w.create_mailbox({"name": mb_name, "role": role, "sortOrder": order})
            w.flush()
        return user

    def user(self, name: str) -> dict | None:
        with self.env.begin() as txn:
            raw = txn.get(name.encode(), db=self.db["users"])
        return orjson.loads(raw) if raw else None

    def users(self) -> list[dict]:
        with self.env.begin() as txn:
            return [orjson.loads(v) for _, v in txn.cursor(db=self.db["users"])]

    def set_password_hash(self, name: str, password_hash: str) -> None:
        with self._txn() as txn:
            raw = txn.get(name.encode(), db=self.db["users"])
            if raw is None:
                raise NotFound(f"no user {name!r}")
            user = orjson.loads(raw)
            user["passwordHash"] = password_hash
            txn.put(name.encode(), orjson.dumps(user), db=self.db["users"])

    def set_aliases(self, name: str, aliases: list[str]) -> dict:
        """Replaces the user's aliases (addresses ``local@domain`` or whole domains ``@domain``)."""
        with self._txn() as txn:
            raw = txn.get(name.encode(), db=self.db["users"])
            if raw is None:
                raise NotFound(f"no user {name!r}")
            user = orjson.loads(raw)
            addresses = self.db["addresses"]
            for alias in aliases:
                owner = txn.get(alias.lower().encode(), db=addresses)
                if owner is not None and owner.decode() != name:
                    raise StoreError(f"{alias!r} already belongs to user {owner.decode()!r}")
            for old in user.get("aliases", ()):
                txn.delete(old.lower().encode(), db=addresses)
            for alias in aliases:
                txn.put(alias.lower().encode(), name.encode(), db=addresses)
            user["aliases"] = list(aliases)
            txn.put(name.encode(), orjson.dumps(user), db=self.db["users"])
            self._index_domains(txn)
        return user

    def user_for_address(self, address: str) -> dict | None:
        """The user an address delivers to: its owner, else the owner of its whole domain."""
        address = address.lower()
        domain = "@" + address.rpartition("@")[2]
        with self.env.begin() as txn:
            name = txn.get(address.encode(), db=self.db["addresses"]) or txn.get(
                domain.encode(), db=self.db["addresses"])
            raw = txn.get(name, db=self.db["users"]) if name else None
        return orjson.loads(raw) if raw else None

    def is_local_domain(self, domain: str) -> bool:
        """Whether some user has an address or alias in the domain (mail to it is delivered here)."""
        domain = domain.lower()
        with self.env.begin() as txn:
            if txn.get(b"@" + domain.encode(), db=self.db["addresses"]) is not None:
                return True
            # the domains of all addresses are kept in the same database as "%domain" keys
            return txn.get(b"%" + domain.encode(), db=self.db["addresses"]) is not None

    # -- blob garbage collection (a background or CLI job: scanning is fine here)
    def collect_garbage(self, grace: float, dry_run: bool = False, now: float | None = None,
                        batch: int = GC_BATCH) -> dict:
        """Removes every account's access to blobs nothing references (no email of the account is
        the message, no holder holds it) whose `created`/`released` time is older than `grace`
        seconds, then the content of blobs no account has any more, and orphan files.  Returns
        {"blobs": n, "bytes": n, "files": n, "pending": n, "pendingBytes": n}: what was (with
        dry_run: would be) reclaimed, and what is unreferenced but still within its grace.

        It works in batches of at most `batch` keys, so that the single LMDB writer lock is never
        held for long (imports and Email/set wait for it): candidates are found in short read
        transactions, then removed in write transactions that check each one again under the
        lock, since an email, a hold or a new upload may have referenced it meanwhile."""
        now = time.time() if now is None else now
        report = {"blobs": 0, "bytes": 0, "files": 0, "pending": 0, "pendingBytes": 0}
        db = self.db
        dead_guids: set[bytes] = set()
        # (dry run only) what the run would remove, which must not keep a blob's content alive
        would_remove: set[bytes] = set()

        # 1. accounts' access to unreferenced blobs past their grace
        def removable(txn, keys: list[bytes]) -> list[bytes]:
            found = []
            for key in keys:
                value = txn.get(key, db=db["blobref"])
                if value is not None and self._gc_verdict(txn, key, value, grace, now) == "dead":
                    found.append(key)
            return found

        for chunk in self._gc_chunks("blobref", batch, lambda txn, key, value: self._gc_count(
                txn, key, value, grace, now, report)):
            if dry_run:
                would_remove.update(self._acct_key(key) for key in chunk)
                dead_guids.update(key.partition(SEP)[2][1:] for key in chunk)
                continue
            with self._txn() as txn:
                for key in removable(txn, chunk):  # again, under the writer lock
                    txn.delete(key, db=db["blobref"])
                    txn.delete(self._acct_key(key), db=db["blobacct"])
                    dead_guids.add(key.partition(SEP)[2][1:])

        # 2. access entries of accounts whose blob record is gone (a deleted user) no longer count
        def stale(txn, key: bytes, _value: bytes) -> bool:
            guid, _, account = key.partition(SEP)
            return txn.get(account + SEP + b"G" + guid, db=db["blobref"]) is None

        for chunk in self._gc_chunks("blobacct", batch, stale):
            if dry_run:
                would_remove.update(chunk)
                dead_guids.update(key.partition(SEP)[0] for key in chunk)
                continue
            with self._txn() as txn:
                for key in chunk:
                    if stale(txn, key, b""):
                        txn.delete(key, db=db["blobacct"])
                        dead_guids.add(key.partition(SEP)[0])

        # 3. content no account has (a deleted user's, or left by an older version)
        def unowned(txn, guid: bytes, _value: bytes) -> bool:
            probe = txn.cursor(db=db["blobacct"])
            return not (probe.set_range(guid + SEP) and probe.key().startswith(guid + SEP))

        for chunk in self._gc_chunks("blobguid", batch, unowned):
            dead_guids.update(chunk)

        # 4. the content of dead guids, if no account has it now; files go after the commit
        ordered = sorted(dead_guids)
        for i in range(0, len(ordered), batch):
            chunk = ordered[i:i + batch]
            files: list[str] = []
            with (self.env.begin() if dry_run else self._txn()) as txn:
                for guid in chunk:
                    if self._gc_owned(txn, guid, would_remove):
                        continue
                    where = txn.get(guid, db=db["blobguid"])
                    if where is None:
                        continue
                    report["blobs"] += 1
                    if where[:1] == _FILE:
                        report["bytes"] += _N.unpack(where[1:])[0]
                        files.append(guid.decode())
                    else:
                        report["bytes"] += len(txn.get(where, db=db["blobs"]) or b"")
                        if not dry_run:
                            txn.delete(where, db=db["blobs"])
                    if not dry_run:
                        txn.delete(guid, db=db["blobguid"])
            if dry_run:
                report["files"] += len(files)
            elif files:
                self._gc_unlink(files, report)
        if dry_run:
            return report

        # 5. orphans: files no transaction recorded (a crash between rename and commit), checked
        # again under the writer lock; and temp files of uploads that never finished
        orphans = []
        with self.env.begin() as txn:
            for guid, path, st in blobfiles.stored_files(self.path):
                if now - st.st_mtime > grace and txn.get(guid.encode(), db=db["blobguid"]) is None:
                    orphans.append((guid, path))
        for i in range(0, len(orphans), batch):
            with self._txn() as txn:
                for guid, path in orphans[i:i + batch]:
                    try:
                        st = os.stat(path)
                    except FileNotFoundError:
                        continue
                    if now - st.st_mtime > grace and txn.get(guid.encode(), db=db["blobguid"]) is None:
                        os.unlink(path)
                        report["files"] += 1
                        report["bytes"] += st.st_size
        for path, size in blobfiles.stale_temp_files(self.path, max(grace, blobfiles.TMP_MAX_AGE)):
            try:
                os.unlink(path)
                report["files"] += 1
                report["bytes"] += size
            except FileNotFoundError:
                pass
        return report

    @staticmethod
    def _acct_key(ref_key: bytes) -> bytes:
        """The blobacct key (guid NUL account) of a blobref key (account NUL "G" guid)."""
        account, _, blob_id = ref_key.partition(SEP)
        return blob_id[1:] + SEP + account

    def _gc_verdict(self, txn, key: bytes, value: bytes, grace: float, now: float) -> str | None:
        """Of a blobref entry: None while referenced (an email of the account is the message, or a
        holder holds it), "pending" within its grace period, else "dead"."""
        account, _, blob_id = key.partition(SEP)
        guid = ids.guid_of(blob_id.decode())
        if guid is None or txn.get(account + SEP + guid.encode(), db=self.db["guid"]) is not None:
            return None
        cur = txn.cursor(db=self.db["blobhold"])
        if cur.set_range(key + SEP) and cur.key().startswith(key + SEP):
            return None
        info = orjson.loads(value)
        return "pending" if max(info.get("created", 0), info.get("released", 0)) + grace > now else "dead"

    def _gc_count(self, txn, key: bytes, value: bytes, grace: float, now: float, report: dict) -> bool:
        verdict = self._gc_verdict(txn, key, value, grace, now)
        if verdict == "pending":
            report["pending"] += 1
            report["pendingBytes"] += orjson.loads(value).get("size", 0)
        return verdict == "dead"

    def _gc_owned(self, txn, guid: bytes, ignored: set[bytes]) -> bool:
        """Whether an account still has the blob (access entries in `ignored` do not count)."""
        prefix = guid + SEP
        cur = txn.cursor(db=self.db["blobacct"])
        if cur.set_range(prefix):
            for key in cur.iternext(values=False):
                if not key.startswith(prefix):
                    break
                if key not in ignored:
                    return True
        return False

    def _gc_unlink(self, files: list[str], report: dict) -> None:
        """Unlinks the files of removed blobs: under the writer lock (an upload renames its file
        into place inside a write transaction) and only if still not recorded."""
        with self._txn() as txn:
            for guid in files:
                if txn.get(guid.encode(), db=self.db["blobguid"]) is None:
                    try:
                        os.unlink(blobfiles.path_of(self.path, guid))
                        report["files"] += 1
                    except FileNotFoundError:
                        pass

    def _gc_chunks(self, db_name: str, batch: int, wanted) -> Iterator[list[bytes]]:
        """The keys of a database for which wanted(txn, key, value) is true, in lists read from at
        most `batch` entries each, every list in a read transaction of its own (a long scan pins
        no snapshot and takes no lock); resumes after the last key read."""
        start = b""
        while True:
            found, last = [], None
            with self.env.begin() as txn:
                cur = txn.cursor(db=self.db[db_name])
                if not cur.set_range(start):
                    return
                for n, (key, value) in enumerate(cur, 1):
                    last = key
                    if wanted(txn, key, value):
                        found.append(key)
                    if n >= batch:
                        break
                else:
                    last = None
            if found:
                yield found
            if last is None:
                return
            start = last + b"\0"  # the smallest key after `last`

    def _index_domains(self, txn) -> None:
        """Rewrites the "%domain" keys from the addresses (on user and alias changes: admin
        operations, where reading every address is fine; lookups stay one get)."""
        db = self.db["addresses"]
        domains = set()
        for key in list(txn.cursor(db=db).iternext(values=False)):
            if key.startswith(b"%"):
                txn.delete(key, db=db)
            else:
                domains.add(key.rpartition(b"@")[2])
        for domain in domains:
            txn.put(b"%" + domain, b"", db=db)

    def delete_user(self, name: str) -> None:
        """Removes the user and every key of its account (a CLI operation, not a request path)."""
        with self._txn() as txn:
            raw = txn.get(name.encode(), db=self.db["users"])
            if raw is None:
                raise NotFound(f"no user {name!r}")
            user = orjson.loads(raw)
            account_id = user["accountId"]
            for addr in [user.get("email"), *user.get("aliases", ())]:
                if addr and txn.get(addr.lower().encode(), db=self.db["addresses"]) == name.encode():
                    txn.delete(addr.lower().encode(), db=self.db["addresses"])
            self._index_domains(txn)
            # what this account shared (grants to it go with the prefix scan below)
            prefix = account_id.encode() + SEP
            cur = txn.cursor(db=self.db["mailboxes"])
            if cur.set_range(prefix):
                for key, value in cur:
                    if not key.startswith(prefix):
                        break
                    for grantee in orjson.loads(value).get("shareWith") or {}:
                        txn.delete(grantee.encode() + SEP + key, db=self.db["grants"])
            # and what it shared of other types (a CLI operation: the whole index is read once)
            owner_part = SEP + account_id.encode() + SEP
            for key in [k for k, _ in txn.cursor(db=self.db["grants"]) if owner_part in k]:
                txn.delete(key, db=self.db["grants"])
            txn.delete(name.encode(), db=self.db["users"])
            txn.delete(account_id.encode(), db=self.db["accounts"])
            for key, value in list(txn.cursor(db=self.db["tokens"])):
                if orjson.loads(value)["user"] == name:
                    txn.delete(key, db=self.db["tokens"])
            prefix = account_id.encode() + SEP
            for db_name in _DBS:
                if db_name in ("users", "accounts", "blobs", "blobguid", "addresses", "tokens"):
                    continue
                cur = txn.cursor(db=self.db[db_name])
                if cur.set_range(prefix):
                    while cur.key().startswith(prefix):
                        if not cur.delete():
                            break

    def grants_to(self, grantee: str) -> dict[str, dict[str, dict]]:
        """The mailboxes shared with an account: {owner account: {mailbox id: {"rights": {...},
        "subscribed": bool}}} (one prefix scan over the grantee's own grants)."""
        out: dict[str, dict[str, dict]] = {}
        prefix = grantee.encode() + SEP
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.db["grants"])
            if cur.set_range(prefix):
                for key, value in cur:
                    if not key.startswith(prefix):
                        break
                    owner, _, mailbox_id = key[len(prefix):].partition(SEP)
                    out.setdefault(owner.decode(), {})[mailbox_id.decode()] = orjson.loads(value)
        return out

    def upgraded(self, step: str) -> bool:
        with self.env.begin() as txn:
            return txn.get(_UPGRADED + step.encode(), db=self.db["counters"]) is not None

    def mark_upgraded(self, step: str) -> None:
        with self._txn() as txn:
            txn.put(_UPGRADED + step.encode(), _n(1), db=self.db["counters"])

    def account(self, account_id: str) -> dict | None:
        with self.env.begin() as txn:
            raw = txn.get(account_id.encode(), db=self.db["accounts"])
        return orjson.loads(raw) if raw else None

    # -- bearer tokens
    def create_token(self, user: str, secret_hash: str, name: str | None, expires: int | None) -> dict:
        with self._txn() as txn:
            raw = txn.get(user.encode(), db=self.db["users"])
            if raw is None:
                raise NotFound(f"no user {user!r}")
            seq = txn.get(_TOKEN_SEQ, db=self.db["counters"])
            number = (_N.unpack(seq)[0] if seq else 0) + 1
            txn.put(_TOKEN_SEQ, _n(number), db=self.db["counters"])
            record = {"id": ids.token_id(number), "user": user, "accountId": orjson.loads(raw)["accountId"],
                      "name": name, "secretHash": secret_hash, "created": int(time.time()),
                      "expires": expires, "lastUsed": None}
            txn.put(record["id"].encode(), orjson.dumps(record), db=self.db["tokens"])
        return record

    def token(self, token_id: str) -> dict | None:
        with self.env.begin() as txn:
            raw = txn.get(token_id.encode(), db=self.db["tokens"])
        return orjson.loads(raw) if raw else None

    def tokens(self, user: str | None = None) -> list[dict]:
        with self.env.begin() as txn:
            found = [orjson.loads(v) for _, v in txn.cursor(db=self.db["tokens"])]
        return sorted((t for t in found if user is None or t["user"] == user), key=lambda t: int(t["id"][1:], 16))

    def touch_token(self, token_id: str, when: int) -> None:
        with self._txn() as txn:
            raw = txn.get(token_id.encode(), db=self.db["tokens"])
            if raw is not None:
                record = orjson.loads(raw)
                record["lastUsed"] = when
                txn.put(token_id.encode(), orjson.dumps(record), db=self.db["tokens"])

    def revoke_token(self, token_id: str) -> dict:
        with self._txn() as txn:
            raw = txn.pop(token_id.encode(), db=self.db["tokens"])
        if raw is None:
            raise NotFound(f"no token {token_id!r}")
        return orjson.loads(raw)

    def account_ids(self) -> list[str]:
        with self.env.begin() as txn:
            return [k.decode() for k, _ in txn.cursor(db=self.db["accounts"])]

    # -- durable index queue
    def index_queue(self, account_id: str, limit: int, after: bytes | None = None) -> list[tuple[bytes, dict]]:
        prefix = account_id.encode() + SEP
        out = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.db["indexq"])
            if cur.set_range(after + b"\x00" if after is not None else prefix):
                for key, value in cur:
                    if not key.startswith(prefix) or len(out) >= limit:
                        break
                    out.append((key, orjson.loads(value)))
        return out

    def index_queue_ack(self, account_id: str, keys: list[bytes]) -> None:
        """Removes indexed entries and bumps the account's index generation, which tells other
        processes that the index changed."""
        gen_key = account_id.encode() + SEP + b"indexgen"
        with self._txn() as txn:
            for key in keys:
                txn.delete(key, db=self.db["indexq"])
            raw = txn.get(gen_key, db=self.db["counters"])
            txn.put(gen_key, _n((_N.unpack(raw)[0] if raw else 0) + 1), db=self.db["counters"])

    def queue_reindex(self, account_id: str) -> int:
        """Queues a rebuild of the account's index: a reset, then every email (a CLI operation)."""
        n = 0
        with self.write(account_id) as w:
            w._queue_index("reset", "")
            for email_id in list(w.email_ids_by_date(None)):
                w._queue_index("add", email_id)
                n += 1
        return n

    def index_generation(self, account_id: str) -> int:
        with self.env.begin() as txn:
            raw = txn.get(account_id.encode() + SEP + b"indexgen", db=self.db["counters"])
        return _N.unpack(raw)[0] if raw else 0

    def index_queue_length(self, account_id: str) -> int:
        """From the first and the last entry, not by counting (a scrape of /metrics asks during a
        bulk import of a million): entries are numbered by one counter per account and only ever
        taken from the head (`index_queue`, `index_queue_ack`), so they are one unbroken run."""
        prefix = account_id.encode() + SEP
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.db["indexq"])
            if not cur.set_range(prefix) or not cur.key().startswith(prefix):
                return 0
            first = _N.unpack(cur.key()[len(prefix):])[0]
            if not cur.set_range(account_id.encode() + b"\x01"):
                cur.last()
            else:
                cur.prev()
            return _N.unpack(cur.key()[len(prefix):])[0] - first + 1

    def accounts_with_index_queue(self) -> list[str]:
        """Accounts that have queued index work: one seek per such account, not a scan."""
        out = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.db["indexq"])
            found = cur.first()
            while found:
                account = cur.key().split(SEP, 1)[0]
                out.append(account.decode())
                found = cur.set_range(account + b"\x01")
        return out


class LmdbReader:
    def __init__(self, store: LmdbStore, txn: lmdb.Transaction, account_id: str):
        self.store = store
        self.txn = txn
        self.db = store.db
        self.account_id = account_id
        self.prefix = account_id.encode() + SEP

    # -- helpers
    def _get(self, db: str, key: bytes) -> bytes | None:
        return self.txn.get(self.prefix + key, db=self.db[db])

    def _json(self, db: str, key: bytes):
        raw = self.txn.get(self.prefix + key, db=self.db[db])
        return orjson.loads(raw) if raw is not None else None

    def _counter(self, name: str) -> int:
        raw = self._get("counters", name.encode())
        return _N.unpack(raw)[0] if raw else 0

    def _prefix_keys(self, db: str, prefix: bytes, reverse: bool = False,
                     lo: bytes | None = None, hi: bytes | None = None) -> Iterator[bytes]:
        """Keys starting with prefix, in [prefix+lo, prefix+hi), ascending or descending."""
        cur = self.txn.cursor(db=self.db[db])
        start = prefix + (lo or b"")
        # every prefix here ends with the NUL separator, so prefix[:-1] + 1 bounds it from above
        end = prefix + hi if hi is not None else prefix[:-1] + b"\x01"
        if not reverse:
            if not cur.set_range(start):
                return
            for key in cur.iternext(keys=True, values=False):
                if key >= end or not key.startswith(prefix):
                    return
                yield key
        else:
            if cur.set_range(end):
                if not cur.prev():
                    return
            elif not cur.last():
                return
            for key in cur.iterprev(keys=True, values=False):
                if key < start or not key.startswith(prefix):
                    return
                yield key

    # -- state
    def state(self, type_name: str) -> str:
        raw = self._get("states", _log_code(type_name))
        return _state_str(_N.unpack(raw)[0] if raw else 0)

    def changes(self, type_name: str, since: str, max_changes: int | None) -> Changes:
        """RFC 8620 §5.2, read from the log in modseq order: O(changes since)."""
        since_seq, since_id = _parse_state(since)
        current = int(self.state(type_name))
        if since_seq > current:
            raise CannotCalculateChanges("state is from the future")
        prefix = self.prefix + _log_code(type_name) + SEP
        if since_id:  # resume just after the last id returned at that modseq
            start = prefix + _n(since_seq) + SEP + since_id.encode() + b"\x00"
        else:
            start = prefix + _n(since_seq + 1)
        kinds: dict[str, bytes] = {}
        first_kind: dict[str, bytes] = {}
        last_pos = None
        has_more = False
        cur = self.txn.cursor(db=self.db["changes"])
        if cur.set_range(start):
            for key, value in cur:
                if not key.startswith(prefix):
                    break
                seq = _N.unpack(key[len(prefix):len(prefix) + 8])[0]
                obj_id = key[len(prefix) + 9:].decode()
                if max_changes is not None and obj_id not in kinds and len(kinds) >= max_changes:
                    has_more = True
                    break
                first_kind.setdefault(obj_id, value)
                prev = kinds.get(obj_id)
                if prev == b"d" and value != b"d":  # destroyed, then there again (a Quota whose
                    kinds[obj_id] = b"u"  # limit was removed and set again): it changed
                elif prev is None or value == b"d" or (value == b"u" and prev == b"k"):
                    kinds[obj_id] = value
                last_pos = (seq, obj_id)
        created, updated, destroyed = [], [], []
        counts_only = True
        for obj_id, kind in kinds.items():
            was_created = first_kind[obj_id] == b"c"
            if kind == b"d":
                if not was_created:  # created and destroyed within the window: never seen
                    destroyed.append(obj_id)
            elif was_created:
                created.append(obj_id)
            else:
                updated.append(obj_id)
                if kind != b"k":
                    counts_only = False
        if has_more and last_pos is not None:
            new_state = f"{last_pos[0]}.{last_pos[1]}"
        else:
            new_state = _state_str(current)
        return Changes(since, new_state, has_more, created, updated, destroyed,
                       counts_only and not created and not destroyed)

    # -- mailboxes
    def mailbox(self, mailbox_id: str) -> dict | None:
        return self._json("mailboxes", mailbox_id.encode())

    def mailboxes(self) -> list[dict]:
        cur = self.txn.cursor(db=self.db["mailboxes"])
        out = []
        if cur.set_range(self.prefix):
            for key, value in cur:
                if not key.startswith(self.prefix):
                    break
                out.append(orjson.loads(value))
        return out

    # -- emails
    def email(self, email_id: str) -> dict | None:
        return self._json("emails", email_id.encode())

    def has_email(self, email_id: str) -> bool:
        return self._get("emails", email_id.encode()) is not None

    def email_outline(self, email_id: str) -> list | None:
        return self._json("outline", email_id.encode())

    def email_by_guid(self, guid: str) -> dict | None:
        email_id = self._get("guid", guid.encode())
        return self.email(email_id.decode()) if email_id else None

    def email_ids_by_date(self, mailbox_id: str | None, descending: bool = True,
                          after: int | None = None, before: int | None = None) -> Iterator[str]:
        """Email ids ordered by receivedAt (then id), a range read of the date index.
        after: receivedAt >= after; before: receivedAt < before (RFC 8621 §4.4.1)."""
        if mailbox_id is None:
            db, prefix = "alldate", self.prefix
        else:
            db, prefix = "mbdate", self.prefix + mailbox_id.encode() + SEP
        lo = _ts(after) if after is not None else None
        hi = _ts(before) if before is not None else None
        skip = len(prefix) + 9
        for key in self._prefix_keys(db, prefix, reverse=descending, lo=lo, hi=hi):
            yield key[skip:].decode()

    def email_ids_by_keyword(self, mailbox_id: str, keyword: str, descending: bool = True) -> Iterator[str]:
        """The ids of the mailbox's emails that have the keyword, ordered by receivedAt (then id):
        a range read of the mbkwdate index."""
        prefix = self.prefix + _keyword_date_key(mailbox_id, keyword, b"", b"")[:-1]
        skip = len(prefix) + 9
        for key in self._prefix_keys("mbkwdate", prefix, reverse=descending):
            yield key[skip:].decode()

    def email_count(self) -> int:
        return self._counter("emails")

    def mailbox_keyword_count(self, mailbox_id: str, keyword: str) -> int:
        """How many emails in the mailbox have the keyword (kept incrementally)."""
        raw = self._get("mbkw", mailbox_id.encode() + SEP + keyword.encode())
        return _N.unpack(raw)[0] if raw else 0

    # -- threads
    def thread_ids(self, limit: int) -> list[str]:
        """Up to limit thread ids of the account (a bounded prefix read)."""
        out = []
        for key in self._prefix_keys("threads", self.prefix):
            if len(out) >= limit:
                break
            out.append(key[len(self.prefix):].decode())
        return out

    def thread(self, thread_id: str) -> list[str] | None:
        entries = self._json("threads", thread_id.encode())
        return [e[1] for e in entries] if entries else None

    # -- blobs
    def blob_info(self, blob_id: str) -> dict | None:
        return self._json("blobref", blob_id.encode())

    def _blob_where(self, blob_id: str) -> tuple[str, bytes] | None:
        """(guid, blobguid value) of a whole blob this account has, else None."""
        guid = ids.guid_of(blob_id)
        if guid is None or self._get("blobref", blob_id.encode()) is None:
            return None
        where = self.txn.get(guid.encode(), db=self.db["blobguid"])
        return (guid, where) if where is not None else None

    def blob(self, blob_id: str) -> bytes | None:
        found = self._blob_where(blob_id)
        if found is None:
            return None
        guid, where = found
        if where[:1] == _FILE:
            f = blobfiles.open_file(self.store.path, guid)
            if f is None:
                return None
            with f:
                return f.read()
        return self.txn.get(where, db=self.db["blobs"])

    def open_blob(self, blob_id: str):
        """A readable, seekable binary file of the blob (the caller closes it), else None: the file
        itself for a large blob (never read whole), a copy in memory for a small one."""
        found = self._blob_where(blob_id)
        if found is None:
            return None
        guid, where = found
        if where[:1] == _FILE:
            return blobfiles.open_file(self.store.path, guid)
        data = self.txn.get(where, db=self.db["blobs"])
        return io.BytesIO(data) if data is not None else None

    def blob_holders(self, blob_id: str) -> list[str]:
        prefix = self.prefix + blob_id.encode() + SEP
        return [key[len(prefix):].decode() for key in self._prefix_keys("blobhold", prefix)]

    def blob_referenced(self, blob_id: str) -> bool:
        """Whether an email of this account is the blob's message or a holder holds it."""
        guid = ids.guid_of(blob_id)
        if guid is not None and self._get("guid", guid.encode()) is not None:
            return True
        return bool(self.blob_holders(blob_id))


    # -- quotas (store/base.py "Quotas")
    def _limit(self, resource: str) -> int | None:
        # read once per transaction (a snapshot: only this writer's set_quota_limit changes it),
        # so that a batch of emails pays for it once, not on each of its three checks
        cache = self.__dict__.setdefault("_limits", {})
        if resource not in cache:
            raw = self._get("counters", b"limit:" + resource.encode())
            cache[resource] = _N.unpack(raw)[0] if raw is not None else None
        return cache[resource]

    def quota(self) -> dict[str, dict]:
        """{resource: {"used": n, "limit": n or None}}: two counter reads per resource."""
        return {r: {"used": self._counter(_USED[r]), "limit": self._limit(r)} for r in QUOTA_RESOURCES}

    def check_room(self, messages: int = 0, octets: int = 0) -> None:
        """OverQuota when `messages` more emails or `octets` more storage exceed a limit."""
        for resource, wanted in (("messages", messages), ("storage", octets)):
            if wanted <= 0:
                continue
            limit = self._limit(resource)
            if limit is not None:
                used = self._counter(_USED[resource])
                if used + wanted > limit:
                    raise OverQuota(resource, used, limit, wanted)

    # -- generic collections (store/base.py Collection)
    def record(self, collection: Collection, record_id: str) -> dict | None:
        return self._json("records", collection.name.encode() + SEP + record_id.encode())

    def record_ids(self, collection: Collection, index: str | None = None, *, equals: object = None,
                   lo: object = None, hi: object = None, reverse: bool = False) -> Iterator[str]:
        """Ids of a collection's records: all of them in id order (index None); or, by a declared
        index, those whose property equals `equals` (lo and hi None), or lies in [lo, hi) (either
        bound may be None), in the index's order."""
        coll = collection.name.encode() + SEP
        if index is None:
            prefix = self.prefix + coll
            for key in self._prefix_keys("records", prefix, reverse=reverse):
                yield key[len(prefix):].decode()
            return
        if index not in collection.indexes:
            raise StoreError(f"{collection.name} has no index on {index!r}")
        prefix = self.prefix + coll + index.encode() + SEP
        if lo is None and hi is None:
            for value in _index_values(equals)[:1]:
                start = prefix + value + SEP
                for key in self._prefix_keys("recidx", start, reverse=reverse):
                    yield key[len(start):].decode()
            return
        lo_key = _index_values(lo)[0] if lo is not None else None
        hi_key = _index_values(hi)[0] if hi is not None else None
        for key in self._prefix_keys("recidx", prefix, reverse=reverse, lo=lo_key, hi=hi_key):
            yield key.rsplit(SEP, 1)[1].decode()


class LmdbWriter(LmdbReader):
    def __init__(self, store: LmdbStore, txn: lmdb.Transaction, account_id: str):
        super().__init__(store, txn, account_id)
        self._log: dict[tuple[str, str], bytes] = {}
        self.journaled: list[tuple[int, str, dict]] = []  # what this transaction's commit will announce
        # mbkw changes of this transaction, written once at flush: marking 50 emails read or
        # flagged in one mailbox is then one read and one write of each count, not 50
        self._kw_delta: dict[bytes, int] = {}

    # -- helpers
    def _put(self, db: str, key: bytes, value: bytes) -> None:
        self.txn.put(self.prefix + key, value, db=self.db[db])

    def _put_new(self, db: str, key: bytes, value: bytes) -> None:
        """A new key that is usually the database's largest (the next email id of the account
        with the last prefix): appended, so that LMDB fills its pages instead of splitting them in
        half (a million emails took 2.25 GB instead of 1.2); else an ordinary put."""
        if not self.txn.put(self.prefix + key, value, db=self.db[db], append=True):
            self.txn.put(self.prefix + key, value, db=self.db[db])

    def _delete(self, db: str, key: bytes) -> None:
        self.txn.delete(self.prefix + key, db=self.db[db])

    def _next(self, name: str) -> int:
        value = self._counter(name) + 1
        self._put("counters", name.encode(), _n(value))
        return value

    def _add_counter(self, name: str, delta: int) -> None:
        self._put("counters", name.encode(), _n(max(0, self._counter(name) + delta)))

    def _changed(self, type_name: str, obj_id: str, kind: bytes) -> None:
        key = (type_name, obj_id)
        prev = self._log.get(key)
        if prev is None:
            self._log[key] = kind
        elif kind == b"d":
            if prev == b"c":  # created and destroyed in one transaction: nobody ever saw it
                del self._log[key]
            else:
                self._log[key] = b"d"
        elif prev == b"d":  # destroyed and there again in one transaction: changed
            self._log[key] = b"u"
        elif prev == b"k" and kind == b"u":
            self._log[key] = b"u"

    def mailbox_keyword_count(self, mailbox_id: str, keyword: str) -> int:
        key = mailbox_id.encode() + SEP + keyword.encode()
        return super().mailbox_keyword_count(mailbox_id, keyword) + self._kw_delta.get(key, 0)

    def flush(self) -> None:
        """The pending keyword counts; one modseq per transaction; each touched type's state becomes it."""
        for key, delta in self._kw_delta.items():
            if delta:
                raw = self._get("mbkw", key)
                value = (_N.unpack(raw)[0] if raw else 0) + delta
                if value > 0:
                    self._put("mbkw", key, _n(value))
                else:
                    self._delete("mbkw", key)
        self._kw_delta.clear()
        if not self._log:
            return
        modseq = self._next("modseq")
        seq = _n(modseq)
        touched = set()
        for (type_name, obj_id), kind in self._log.items():
            self._put("changes", _log_code(type_name) + SEP + seq + SEP + obj_id.encode(), kind)
            touched.add(type_name)
        for type_name in touched:
            self._put("states", _log_code(type_name), seq)
        self._log.clear()
        self._journal({type_name: _state_str(modseq) for type_name in sorted(touched)})

    def _journal(self, changed: dict[str, str]) -> None:
        raw = self.txn.get(_JOURNAL_SEQ, db=self.db["counters"])
        seq = (_N.unpack(raw)[0] if raw else 0) + 1
        self.txn.put(_JOURNAL_SEQ, _n(seq), db=self.db["counters"])
        self.txn.put(_n(seq), orjson.dumps({"a": self.account_id, "c": changed}), db=self.db["journal"],
                     append=True)
        self.journaled.append((seq, self.account_id, changed))
        if seq % 1024 == 0 and seq > JOURNAL_KEEP:  # prune now and then, oldest first
            cur = self.txn.cursor(db=self.db["journal"])
            if cur.first():
                while cur.key() < _n(seq - JOURNAL_KEEP) and cur.delete():
                    pass

    # -- blobs
    def put_blob(self, data: bytes | blobfiles.BlobSink, media_type: str) -> dict:
        """Stores a blob (bytes, or a `BlobSink` an upload streamed into) once by its content and
        gives this account access to it; storing it again restarts its grace period."""
        sink = data if isinstance(data, blobfiles.BlobSink) else None
        if sink is not None:
            guid, size = sink.finish(), sink.size
        else:
            guid, size = ids.content_address(data), len(data)
        blob_id = ids.blob_id(guid)
        if self.txn.get(guid.encode(), db=self.db["blobguid"]) is None:
            if size > self.store.inline_max:
                if sink is None:
                    blobfiles.install_bytes(self.store.path, guid, data)
                elif sink.in_memory:  # a sink made with a larger threshold
                    blobfiles.install_bytes(self.store.path, guid, sink.data())
                else:
                    blobfiles.install(sink)
                self.txn.put(guid.encode(), _FILE + _n(size), db=self.db["blobguid"])
            else:
                if sink is not None:
                    if sink.in_memory:
                        data = sink.data()
                    else:
                        with open(sink.tmp_path, "rb") as f:
                            data = f.read()
                # stored under a sequence number: appending in key order keeps writes sequential
                # (random sha256 keys scatter page splits over the whole tree)
                raw = self.txn.get(_BLOB_SEQ, db=self.db["counters"])
                seq = _n((_N.unpack(raw)[0] if raw else 0) + 1)
                self.txn.put(_BLOB_SEQ, seq, db=self.db["counters"])
                self.txn.put(seq, data, db=self.db["blobs"], append=True)
                self.txn.put(guid.encode(), seq, db=self.db["blobguid"])
        info = self.blob_info(blob_id)
        now = int(time.time())
        if info is None:
            info = {"blobId": blob_id, "size": size, "type": media_type, "created": now}
            self.txn.put(guid.encode() + SEP + self.prefix[:-1], b"", db=self.db["blobacct"])
        else:
            info["created"] = now  # RFC 8620 §6: a re-upload resets the expiry
            info.pop("released", None)
        self._put("blobref", blob_id.encode(), orjson.dumps(info))
        return info

    def grant_blob(self, blob_id: str, from_reader: LmdbReader) -> dict | None:
        """Gives this account access to a whole blob `from_reader`'s account has (Blob/copy): no
        bytes are copied.  Returns the blob's info here, None if the other account has no such blob."""
        info = from_reader.blob_info(blob_id)
        if info is None or from_reader._blob_where(blob_id) is None:
            return None
        mine = self.blob_info(blob_id)
        now = int(time.time())
        if mine is None:
            mine = {"blobId": blob_id, "size": info["size"], "type": info.get("type"), "created": now}
            self.txn.put(ids.guid_of(blob_id).encode() + SEP + self.prefix[:-1], b"", db=self.db["blobacct"])
        else:
            mine["created"] = now
            mine.pop("released", None)
        self._put("blobref", blob_id.encode(), orjson.dumps(mine))
        return mine

    def _released(self, blob_id: str) -> None:
        """The blob lost a reference: its grace period starts now (GC removes it after that if
        nothing references it any more)."""
        info = self.blob_info(blob_id)
        if info is not None:
            info["released"] = int(time.time())
            self._put("blobref", blob_id.encode(), orjson.dumps(info))

    def hold_blob(self, blob_id: str, holder: str) -> None:
        """Keeps a blob of this account alive while `holder` (e.g. "submission:S12") holds it.
        NotFound if the account has no such blob."""
        if self._blob_where(blob_id) is None:
            raise NotFound(blob_id)
        if SEP.decode() in holder:
            raise StoreError("a holder name cannot contain NUL")
        self._put("blobhold", blob_id.encode() + SEP + holder.encode(), orjson.dumps({"since": int(time.time())}))

    def release_blob(self, blob_id: str, holder: str) -> None:
        """Ends `holder`'s hold (no-op if it held nothing); the grace period starts again."""
        key = blob_id.encode() + SEP + holder.encode()
        if self._get("blobhold", key) is not None:
            self._delete("blobhold", key)
            self._released(blob_id)

    # -- mailboxes
    def create_mailbox(self, fields: dict) -> dict:
        mailbox_id = ids.mailbox_id(self._next("mailbox"))
        record = {"id": mailbox_id, "name": fields["name"], "parentId": fields.get("parentId"),
                  "role": fields.get("role"), "sortOrder": fields.get("sortOrder", 0),
                  "isSubscribed": fields.get("isSubscribed", True), "totalEmails": 0,
                  "unreadEmails": 0, "totalThreads": 0, "unreadThreads": 0,
                  "shareWith": fields.get("shareWith")}
        self._put("mailboxes", mailbox_id.encode(), orjson.dumps(record))
        self._grant(mailbox_id, None, record["shareWith"])
        self._changed("Mailbox", mailbox_id, b"c")
        return record

    def update_mailbox(self, mailbox_id: str, fields: dict) -> dict:
        record = self.mailbox(mailbox_id)
        if record is None:
            raise NotFound(mailbox_id)
        before = record.get("shareWith")
        record.update(fields)
        self._put("mailboxes", mailbox_id.encode(), orjson.dumps(record))
        if "shareWith" in fields:
            self._grant(mailbox_id, before, record["shareWith"])
        self._changed("Mailbox", mailbox_id, b"u")
        return record

    def destroy_mailbox(self, mailbox_id: str) -> None:
        record = self.mailbox(mailbox_id)
        if record is None:
            raise NotFound(mailbox_id)
        if record["totalEmails"]:
            raise StoreError("mailbox has emails")
        self._delete("mailboxes", mailbox_id.encode())
        self._grant(mailbox_id, record.get("shareWith"), None)
        self._changed("Mailbox", mailbox_id, b"d")

    # -- sharing: the grants index mirrors every shareWith, keyed by grantee
    def share(self, kind: str, obj_id: str, before: dict | None, after: dict | None) -> None:
        if kind == "Mailbox" or "/" in kind:
            raise StoreError(f"cannot share a {kind} this way")
        self._grant(f"{kind}/{obj_id}", before, after)

    def _grant(self, shared_key: str, before: dict | None, after: dict | None) -> None:
        """shared_key: a mailbox id, or kind/id (`share`); ids never hold "/" (RFC 8620 §1.2)."""
        db = self.store.db["grants"]
        owner = self.account_id.encode()
        for grantee in set(before or {}) | set(after or {}):
            key = grantee.encode() + SEP + owner + SEP + shared_key.encode()
            rights = (after or {}).get(grantee)
            if not rights:
                self.txn.delete(key, db=db)
                continue
            old = self.txn.get(key, db=db)
            subscribed = orjson.loads(old)["subscribed"] if old else False
            self.txn.put(key, orjson.dumps({"rights": rights, "subscribed": subscribed}), db=db)

    def set_subscribed_for(self, grantee: str, mailbox_id: str, subscribed: bool, kind: str = "Mailbox") -> None:
        shared_key = mailbox_id if kind == "Mailbox" else f"{kind}/{mailbox_id}"
        key = grantee.encode() + SEP + self.account_id.encode() + SEP + shared_key.encode()
        old = self.txn.get(key, db=self.store.db["grants"])
        if old is None:
            raise NotFound(mailbox_id)
        grant = orjson.loads(old)
        grant["subscribed"] = subscribed
        self.txn.put(key, orjson.dumps(grant), db=self.store.db["grants"])
        self._changed(kind, mailbox_id, b"u")

    def _mailbox_counts(self, mailbox_id: str, thread_id: str, d_total: int, d_unread: int) -> None:
        """Applies an email's arrival/departure/flag change to a mailbox's four counts, using the
        per-(mailbox, thread) tallies so that thread counts never need a scan."""
        key = mailbox_id.encode() + SEP + thread_id.encode()
        tally = self._json("mbthread", key) or [0, 0]
        before = tally[:]
        tally[0] += d_total
        tally[1] += d_unread
        if tally[0] <= 0:
            self._delete("mbthread", key)
        else:
            self._put("mbthread", key, orjson.dumps(tally))
        mb = self.mailbox(mailbox_id)
        if mb is None:
            return
        mb["totalEmails"] = max(0, mb["totalEmails"] + d_total)
        mb["unreadEmails"] = max(0, mb["unreadEmails"] + d_unread)
        mb["totalThreads"] = max(0, mb["totalThreads"] + (tally[0] > 0) - (before[0] > 0))
        mb["unreadThreads"] = max(0, mb["unreadThreads"] + (tally[1] > 0) - (before[1] > 0))
        self._put("mailboxes", mailbox_id.encode(), orjson.dumps(mb))
        self._changed("Mailbox", mailbox_id, b"k")

    def _keyword_counts(self, mailbox_id: str, keywords, delta: int, ts: bytes, eid: bytes) -> None:
        """An email with these keywords entered (delta 1) or left (-1) the mailbox, or gained or
        lost them there: the per-mailbox keyword counts and the mbkwdate index follow."""
        for keyword in keywords:
            key = mailbox_id.encode() + SEP + keyword.encode()
            self._kw_delta[key] = self._kw_delta.get(key, 0) + delta  # written at flush
            dated = _keyword_date_key(mailbox_id, keyword, ts, eid)
            if delta > 0:
                self._put("mbkwdate", dated, b"")
            else:
                self._delete("mbkwdate", dated)

    # -- emails
    def add_email(self, summary: dict, guid: str, mailbox_ids: dict, keywords: dict,
                  received_at: int) -> tuple[dict, bool]:
        """Stores a parsed message whose raw bytes are already the blob `G<guid>`.
        Returns (record, created); an already present guid returns the existing record."""
        existing = self._get("guid", guid.encode())
        if existing is not None:
            return self.email(existing.decode()), False
        size = int(summary.get("size") or 0)
        self.check_room(messages=1, octets=size)  # before any write: nothing partial on refusal
        if self._get("blobref", ids.blob_id(guid).encode()) is None:
            raise NotFound("blob")
        for mailbox_id in mailbox_ids:
            if self.mailbox(mailbox_id) is None:
                raise NotFound(mailbox_id)
        email_id = ids.email_id(self._next("email"))
        thread_id = self._thread_for(summary.get("thread_ids") or [])
        record = {k: v for k, v in summary.items() if k not in ("thread_ids", "defects", "outline")}
        record.update({"id": email_id, "blobId": ids.blob_id(guid), "threadId": thread_id,
                       "mailboxIds": dict.fromkeys(mailbox_ids, True),
                       "keywords": dict.fromkeys(keywords, True), "receivedAt": int(received_at)})
        record["uids"] = {}
        ts = _ts(int(received_at))
        unread = _is_unread(record["keywords"])
        for mailbox_id in mailbox_ids:
            uid = self._next("uid:" + mailbox_id)
            record["uids"][mailbox_id] = uid
            self._put("mbuid", mailbox_id.encode() + SEP + _n(uid), email_id.encode())
            self._put("mbdate", mailbox_id.encode() + SEP + ts + SEP + email_id.encode(), b"")
            self._mailbox_counts(mailbox_id, thread_id, 1, int(unread))
            self._keyword_counts(mailbox_id, record["keywords"], 1, ts, email_id.encode())
        self._put("alldate", ts + SEP + email_id.encode(), b"")
        self._put_new("emails", email_id.encode(), orjson.dumps(record))
        if summary.get("outline") is not None:
            self._put_new("outline", email_id.encode(), orjson.dumps(summary["outline"]))
        self._put("guid", guid.encode(), email_id.encode())
        entries = self._json("threads", thread_id.encode()) or []
        entries.append([int(received_at), email_id])
        entries.sort()
        self._put("threads", thread_id.encode(), orjson.dumps(entries))
        self._add_counter("emails", 1)
        self._add_counter("octets", size)
        self._quota_used_changed()
        self._queue_index("add", email_id)
        self._changed("Email", email_id, b"c")
        self._changed("Thread", thread_id, b"c" if len(entries) == 1 else b"u")
        return record, True

    def _thread_for(self, message_ids: list[str]) -> str:
        """Joins the thread of any message this one names (Message-ID, In-Reply-To, References) or
        starts one; then records its ids so later replies, and earlier-sent parents, find it."""
        keys = [hashlib.sha1(m.encode()).digest()[:16] for m in message_ids]
        thread_id = None
        for key in keys:
            found = self._get("msgid", key)
            if found is not None:
                thread_id = found.decode()
                break
        if thread_id is None:
            thread_id = ids.thread_id(self._next("thread"))
        for key in keys:
            if self._get("msgid", key) is None:
                self._put("msgid", key, thread_id.encode())
        return thread_id

    def _queue_index(self, op: str, email_id: str) -> None:
        # "at": when it was queued, for the index lag of /metrics (app.metrics)
        self._put("indexq", _n(self._next("indexq")),
                  orjson.dumps({"op": op, "id": email_id, "at": int(time.time())}))

    def update_email(self, email_id: str, keywords: dict | None = None,
                     mailbox_ids: dict | None = None, record: dict | None = None) -> dict:
        # decoding the record is a fifth of a keyword update's time: once is enough
        record = record if record is not None else self.email(email_id)
        if record is None:
            raise NotFound(email_id)
        old_boxes = set(record["mailboxIds"])
        old_unread = _is_unread(record["keywords"])
        new_boxes = set(mailbox_ids) if mailbox_ids is not None else old_boxes
        new_keywords = dict.fromkeys(keywords, True) if keywords is not None else record["keywords"]
        new_unread = _is_unread(new_keywords)
        if not new_boxes:
            raise StoreError("an email must be in at least one mailbox")
        for mailbox_id in new_boxes - old_boxes:
            if self.mailbox(mailbox_id) is None:
                raise NotFound(mailbox_id)
        thread_id = record["threadId"]
        ts = _ts(record["receivedAt"])
        eid = email_id.encode()
        for mailbox_id in old_boxes - new_boxes:
            uid = record["uids"].pop(mailbox_id, None)
            if uid is not None:
                self._delete("mbuid", mailbox_id.encode() + SEP + _n(uid))
            self._delete("mbdate", mailbox_id.encode() + SEP + ts + SEP + eid)
            self._mailbox_counts(mailbox_id, thread_id, -1, -int(old_unread))
            self._keyword_counts(mailbox_id, record["keywords"], -1, ts, eid)
        for mailbox_id in new_boxes - old_boxes:
            uid = self._next("uid:" + mailbox_id)
            record["uids"][mailbox_id] = uid
            self._put("mbuid", mailbox_id.encode() + SEP + _n(uid), eid)
            self._put("mbdate", mailbox_id.encode() + SEP + ts + SEP + eid, b"")
            self._mailbox_counts(mailbox_id, thread_id, 1, int(new_unread))
            self._keyword_counts(mailbox_id, new_keywords, 1, ts, eid)
        if keywords is not None:
            gone = set(record["keywords"]) - set(new_keywords)
            came = set(new_keywords) - set(record["keywords"])
            for mailbox_id in old_boxes & new_boxes:
                self._keyword_counts(mailbox_id, gone, -1, ts, eid)
                self._keyword_counts(mailbox_id, came, 1, ts, eid)
        if old_unread != new_unread:
            delta = int(new_unread) - int(old_unread)
            for mailbox_id in old_boxes & new_boxes:
                self._mailbox_counts(mailbox_id, thread_id, 0, delta)
        record["mailboxIds"] = dict.fromkeys(sorted(new_boxes), True)
        record["keywords"] = new_keywords
        self._put("emails", eid, orjson.dumps(record))
        # a Thread's only property is its emailIds, unchanged here (RFC 8621 §3)
        self._changed("Email", email_id, b"u")
        return record

    def destroy_email(self, email_id: str) -> None:
        record = self.email(email_id)
        if record is None:
            raise NotFound(email_id)
        thread_id = record["threadId"]
        ts = _ts(record["receivedAt"])
        eid = email_id.encode()
        unread = _is_unread(record["keywords"])
        for mailbox_id in record["mailboxIds"]:
            uid = record["uids"].get(mailbox_id)
            if uid is not None:
                self._delete("mbuid", mailbox_id.encode() + SEP + _n(uid))
            self._delete("mbdate", mailbox_id.encode() + SEP + ts + SEP + eid)
            self._mailbox_counts(mailbox_id, thread_id, -1, -int(unread))
            self._keyword_counts(mailbox_id, record["keywords"], -1, ts, eid)
        self._delete("alldate", ts + SEP + eid)
        self._delete("emails", eid)
        self._delete("outline", eid)
        self._delete("guid", ids.guid_of(record["blobId"]).encode())
        self._released(record["blobId"])
        entries = [e for e in (self._json("threads", thread_id.encode()) or []) if e[1] != email_id]
        if entries:
            self._put("threads", thread_id.encode(), orjson.dumps(entries))
            self._changed("Thread", thread_id, b"u")
        else:
            self._delete("threads", thread_id.encode())
            self._changed("Thread", thread_id, b"d")
        self._add_counter("emails", -1)
        self._add_counter("octets", -int(record.get("size") or 0))
        self._quota_used_changed()
        self._queue_index("del", email_id)
        self._changed("Email", email_id, b"d")

    # -- quotas
    def _quota_used_changed(self) -> None:
        """Both resources' `used` changed: a counts-only change of each Quota object that exists
        (an account without limits pays one read per resource, no write)."""
        for resource in QUOTA_RESOURCES:
            if self._limit(resource) is not None:
                self._changed("Quota", ids.quota_id(resource), b"k")

    def set_quota_limit(self, resource: str, limit: int | None) -> None:
        """Sets or (None) removes a resource's hard limit; its Quota object comes and goes with it."""
        if resource not in QUOTA_RESOURCES:
            raise StoreError(f"unknown quota resource {resource!r}")
        if limit is not None and not 0 <= limit < 2**53:
            raise StoreError("a limit is an UnsignedInt (0 to 2^53-1)")
        had = self._limit(resource)
        self.__dict__.setdefault("_limits", {})[resource] = limit
        key = b"limit:" + resource.encode()
        if limit is None:
            if had is not None:
                self._delete("counters", key)
                self._changed("Quota", ids.quota_id(resource), b"d")
            return
        if had != limit:
            self._put("counters", key, _n(limit))
            self._changed("Quota", ids.quota_id(resource), b"c" if had is None else b"u")

    # -- generic collections
    def _index(self, collection: Collection, record_id: str, record: dict, put: bool) -> None:
        coll = collection.name.encode() + SEP
        for prop in collection.indexes:
            for value in _index_values(record.get(prop)):
                key = coll + prop.encode() + SEP + value + SEP + record_id.encode()
                if put:
                    self._put("recidx", key, b"")
                else:
                    self._delete("recidx", key)

    def create_record(self, collection: Collection, fields: dict, record_id: str | None = None) -> dict:
        """Stores a new record under a new id (``ids.record_id``), indexed, logged as created; or
        under a derived `record_id`, logged as updated (see store.base)."""
        kind = b"c"
        if record_id is None:
            record_id = ids.record_id(collection.id_prefix, self._next("rec:" + collection.name))
        else:
            kind = b"u"
        if self.record(collection, record_id) is not None:
            raise StoreError(f"{collection.name} {record_id} exists")
        record = {**fields, "id": record_id}
        self._put("records", collection.name.encode() + SEP + record_id.encode(), orjson.dumps(record))
        self._index(collection, record_id, record, put=True)
        if collection.log:
            self._changed(collection.log, record_id, kind)
        return record

    def update_record(self, collection: Collection, record_id: str, record: dict) -> dict:
        """Replaces a record as a whole (the caller applied the patch); logged as updated."""
        old = self.record(collection, record_id)
        if old is None:
            raise NotFound(record_id)
        record = {**record, "id": record_id}
        self._index(collection, record_id, old, put=False)
        self._put("records", collection.name.encode() + SEP + record_id.encode(), orjson.dumps(record))
        self._index(collection, record_id, record, put=True)
        if collection.log:
            self._changed(collection.log, record_id, b"u")
        return record

    def destroy_record(self, collection: Collection, record_id: str) -> None:
        old = self.record(collection, record_id)
        if old is None:
            raise NotFound(record_id)
        self._index(collection, record_id, old, put=False)
        self._delete("records", collection.name.encode() + SEP + record_id.encode())
        if collection.log:
            self._changed(collection.log, record_id, b"d")


def restore_copy(source: str, data_dir: str, progress=None) -> dict:
    """Installs a copy made by `LmdbStore.copy_to` into data_dir, which holds no database: the
    database file, then each blob file (hard-linked when on one file system: blob files are
    immutable; else copied), each checked against its content address first, everything synced.
    progress(octets) follows the blob files.  Raises StoreError for a copy that is incomplete or
    damaged, before the database is put in place.  Returns {"blobFiles", "blobBytes"}."""
    database = os.path.join(source, "data.mdb")
    if not os.path.isfile(database):
        raise StoreError(f"{source}: no data.mdb")
    if os.path.exists(os.path.join(data_dir, "data.mdb")):
        raise StoreError(f"{data_dir} already holds a database")
    os.makedirs(data_dir, exist_ok=True)
    report = {"blobFiles": 0, "blobBytes": 0}
    made: set[str] = set()
    for guid, path, st in sorted(blobfiles.stored_files(source)):
        if not blobfiles.verify(path, guid, progress):
            raise StoreError(f"blob file {path} is damaged: its bytes do not match its name")
        target = blobfiles.path_of(data_dir, guid)
        if os.path.dirname(target) not in made:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            made.add(os.path.dirname(target))
        if not os.path.exists(target):
            blobfiles.place(path, target)
        report["blobFiles"] += 1
        report["blobBytes"] += st.st_size
    for d in made:
        blobfiles.fsync_dir(d)
    if made:
        blobfiles.fsync_dir(blobfiles.blob_dir(data_dir))
    partial = os.path.join(data_dir, "data.mdb.restoring")
    with open(database, "rb") as fin, open(partial, "wb") as fout:
        while chunk := fin.read(8 << 20):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    os.rename(partial, os.path.join(data_dir, "data.mdb"))
    blobfiles.fsync_dir(data_dir)
    return report
