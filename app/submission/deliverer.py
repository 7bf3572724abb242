"""The deliverer: takes entries of the outgoing queue (`app.submission.outbox`) when they are due
and delivers them, locally or through the relay, then records the outcome.

One process delivers: the serving process that holds the flock ``<data>/outbox/deliverer.lock``
(the others try again every few seconds, so a worker that dies is replaced).  It learns of new
entries from the change bus (their writes are logged as "Outbox"), whichever process or CLI
command wrote them, and sweeps every account's queue at start and every `SWEEP_SECONDS`.

An attempt first takes the entry: in one transaction its ``due`` becomes now + `LEASE_SECONDS`
and ``attempts`` grows (while it is leased, the EmailSubmission cannot be canceled); then it
sends; then, in one transaction, it records each recipient's reply (2xx: done, 5xx: failed for
good, 4xx: tried again after a backoff; the submission is ``final`` once a recipient has the
message) and removes the entry once every recipient is done or `GIVE_UP_SECONDS` have passed.  An
attempt that fails inside tidings (an exception, not a reply) is logged in one line and retried,
`MAX_INTERNAL_FAILURES` times at most: then its recipients fail for good.  A deliverer that dies
mid-attempt leaves the lease, which the next one (at start) or the lease's end releases: the
message is sent again, to the recipients whose outcome was not recorded (at-least-once; the window
is the time between the relay's reply to DATA and the commit after it).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import threading
import time

from app import delivery, ipc
from app.protocol.types import TYPES
from app.push.bus import RESYNC, BusClosed
from store import CannotCalculateChanges

from . import outbox, relay
from .relay import RelayConfig, RelayUnavailable

log = logging.getLogger("tidings.submission")

LOCK_RETRY_SECONDS = 5.0
SWEEP_SECONDS = 60.0
LEASE_SECONDS = 15 * 60
BUSY_RECHECK_SECONDS = 0.5
CONCURRENCY = 4
RETRY_BASE = float(os.environ.get("TIDINGS_SMTP_RETRY_BASE", "60"))  # first retry after, seconds
RETRY_MAX = 4 * 3600.0
GIVE_UP_SECONDS = float(os.environ.get("TIDINGS_SMTP_GIVE_UP", str(5 * 86400)))  # RFC 5321 §4.5.4.1
MAX_INTERNAL_FAILURES = 3  # attempts that fail inside tidings (not a reply of a server) before giving up


def backoff(attempts: int) -> float:
    return min(RETRY_BASE * 2 ** max(attempts - 1, 0), RETRY_MAX)


class Deliverer:
    """Runs on the serving process's event loop (`start`, `close`)."""

    def __init__(self, store, data_dir: str, bus, relay_config: RelayConfig | None):
        self.store = store
        self.bus = bus
        self.relay = relay.Relay(relay_config) if relay_config is not None else None
        self.directory = os.path.join(data_dir, "outbox")
        os.makedirs(self.directory, exist_ok=True)
        self._fd: int | None = None
        self._task: asyncio.Task | None = None
        self._heap: list[tuple[float, str, str]] = []  # (due, account, entry id)
        self._heap_lock = threading.Lock()  # pushed to from worker threads
        self._busy: set[str] = set()
        self._seen: dict[str, str] = {}  # account -> the "Outbox" state last read
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task] = set()
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._take_over())

    async def close(self) -> None:
        self._stopped = True
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._task, *self._tasks] if t is not None), return_exceptions=True)
        if self.relay is not None:
            await self.relay.close()
        if self._fd is not None:
            ipc.unlock(self._fd)
            self._fd = None

    async def _take_over(self) -> None:
        while not self._stopped:
            self._fd = ipc.try_lock(os.path.join(self.directory, "deliverer.lock"))
            if self._fd is not None:
                break
            await asyncio.sleep(LOCK_RETRY_SECONDS)
        log.info("submission: this process (pid %d) delivers the outgoing queue (relay: %s)", os.getpid(),
                 f"{self.relay.config.host}:{self.relay.config.port}" if self.relay else "none, local delivery only")
        sub = self.bus.subscribe_everywhere(["Outbox"])
        try:
            await asyncio.to_thread(self._sweep, True)
            swept = time.monotonic()
            while not self._stopped:
                self._launch_due()
                wait = SWEEP_SECONDS - (time.monotonic() - swept)
                if self._heap:
                    wait = min(wait, self._heap[0][0] - time.time())
                try:
                    changed = await sub.next(timeout=max(wait, 0.01))
                except BusClosed:
                    return
                if changed is RESYNC or time.monotonic() - swept >= SWEEP_SECONDS:
                    await asyncio.to_thread(self._sweep, False)
                    swept = time.monotonic()
                elif changed:
                    for account_id in changed:
                        await asyncio.to_thread(self._scan_changes, account_id)
        finally:
            sub.close()

    # -- finding due entries
    def _sweep(self, starting: bool) -> None:
        for user in self.store.users():
            self._scan(user["accountId"], starting)

    def _scan(self, account_id: str, starting: bool) -> None:
        """(in a thread) Puts every queue entry of the account in the schedule; at start, releases
        the leases a dead deliverer left (see the module docstring)."""
        with self.store.read(account_id) as reader:
            self._seen[account_id] = reader.state("Outbox")
            entries = [reader.record(outbox.OUTBOX, i) for i in list(reader.record_ids(outbox.OUTBOX))]
        self._schedule_entries(account_id, entries, starting)

    def _scan_changes(self, account_id: str) -> None:
        """(in a thread) Schedules the entries written since the account was last read, from the
        change log: O(changes), however long the queue."""
        since = self._seen.get(account_id)
        if since is None:
            return self._scan(account_id, False)
        with self.store.read(account_id) as reader:
            try:
                changes = reader.changes("Outbox", since, None)
            except CannotCalculateChanges:
                changes = None
            if changes is not None:
                self._seen[account_id] = changes.new_state
                entries = [reader.record(outbox.OUTBOX, i) for i in changes.created + changes.updated]
        if changes is None:
            return self._scan(account_id, False)
        self._schedule_entries(account_id, entries, False)

    def _schedule_entries(self, account_id: str, entries: list[dict | None], starting: bool) -> None:
        for entry in filter(None, entries):
            due = entry["due"]
            if starting and entry.get("leased"):
                due = time.time()
            key = account_id + "/" + entry["id"]
            if key not in self._busy:
                self._schedule(due, account_id, entry["id"])

    def _schedule(self, due: float, account_id: str, entry_id: str) -> None:
        with self._heap_lock:
            heapq.heappush(self._heap, (due, account_id, entry_id))

    def _launch_due(self) -> None:
        now = time.time()
        seen = set()
        while True:
            with self._heap_lock:
                if not self._heap or self._heap[0][0] > now:
                    break
                _, account_id, entry_id = heapq.heappop(self._heap)
            key = account_id + "/" + entry_id
            if key in seen:
                continue
            if key in self._busy:
                # its attempt is still finishing (a loaded machine can take longer than a short
                # backoff): look again shortly rather than drop it until the next sweep
                seen.add(key)
                self._schedule(now + BUSY_RECHECK_SECONDS, account_id, entry_id)
                continue
            seen.add(key)
            self._busy.add(key)
            task = asyncio.get_running_loop().create_task(self._attempt(account_id, entry_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- one attempt
    async def _attempt(self, account_id: str, entry_id: str) -> None:
        key = account_id + "/" + entry_id
        try:
            async with self._slots:
                taken = await asyncio.to_thread(self._take, account_id, entry_id)
                if taken is None:
                    return
                entry, raw = taken
                replies = await self._send(entry, raw)
                await asyncio.to_thread(self._record, account_id, entry_id, replies)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one entry's trouble never stops the queue
            # one line per attempt (the traceback at debug level): an entry that keeps failing must
            # not fill the log with tracebacks at every retry
            log.debug("submission: delivery of %s in %s failed", entry_id, account_id, exc_info=True)
            try:
                gave_up = await asyncio.to_thread(self._release, account_id, entry_id, exc)
            except Exception as again:  # noqa: BLE001 - the lease then ends by itself (LEASE_SECONDS)
                log.error("submission: cannot release %s in %s: %s: %s", entry_id, account_id,
                          type(again).__name__, again)
            else:
                log.error("submission: delivery of %s in %s failed inside tidings (%s: %s); %s", entry_id,
                          account_id, type(exc).__name__, exc,
                          "given up" if gave_up else "it is tried again")
        finally:
            self._busy.discard(key)

    def _take(self, account_id: str, entry_id: str) -> tuple[dict, bytes] | None:
        now = time.time()
        with self.store.write(account_id) as w:
            entry = w.record(outbox.OUTBOX, entry_id)
            if entry is None or (entry["due"] > now and not entry.get("leased")):
                return None
            raw = w.blob(entry["blobId"])
            if raw is None:
                log.error("submission: the message of %s in %s is gone; dropping it", entry_id, account_id)
                self._finish(w, entry, {r["email"]: (554, "554 5.3.0 the message to send is gone", "no")
                                        for r in outbox.pending(entry)})
                return None
            entry.update(due=int(now + LEASE_SECONDS), leased=True, attempts=entry["attempts"] + 1)
            w.update_record(outbox.OUTBOX, entry_id, entry)
        return entry, raw

    async def _send(self, entry: dict, raw: bytes) -> dict[str, tuple[int, str, str]]:
        """{recipient: (reply code, smtpReply, what a 2xx means: "yes" stored here, "unknown"
        relayed)}."""
        replies: dict[str, tuple[int, str, str]] = {}
        remote = []
        for rcpt in outbox.pending(entry):
            email = rcpt["email"]
            domain = email.rpartition("@")[2]
            if not await asyncio.to_thread(self.store.is_local_domain, domain):
                remote.append(rcpt)
                continue
            replies[email] = await asyncio.to_thread(self._deliver_local, entry["mailFrom"], email, raw)
        if remote and self.relay is None:
            for rcpt in remote:
                replies[rcpt["email"]] = (550, "550 5.7.1 this server has no SMTP relay for other domains", "no")
        elif remote:
            try:
                sent = await self.relay.send(entry["mailFrom"], entry.get("mailParameters"), remote, raw)
                replies.update({email: (code, reply, "unknown") for email, (code, reply) in sent.items()})
            except RelayUnavailable as exc:
                log.warning("submission: %s", exc.reply)
                replies.update({r["email"]: (451, exc.reply, "no") for r in remote})
        return replies

    def _deliver_local(self, mail_from: str, address: str, raw: bytes) -> tuple[int, str, str]:
        user = self.store.user_for_address(address)
        if user is None:
            return 550, f"550 5.1.1 <{address}>: no such user here", "no"
        try:  # as the LMTP listener delivers: trace fields, duplicates recognised, vacation replies
            delivery.deliver(self.store, user, raw, envelope_sender=mail_from,
                             trace=delivery.trace_fields(mail_from, address, protocol="local"),
                             reply_queue=outbox.enqueue)
        except delivery.NotAMessage as exc:
            return 554, f"554 5.6.0 not a message: {exc}", "no"
        except delivery.MailboxFull as exc:  # the recipient's quota, as LMTP answers it
            return 552, f"552 5.2.2 <{address}>: mailbox full ({exc})", "no"
        except delivery.TemporaryFailure as exc:  # of this recipient only
            return (452 if exc.full else 451), f"{452 if exc.full else 451} 4.3.{1 if exc.full else 0} " \
                f"local delivery failed: {exc}", "no"
        return 250, "250 2.0.0 delivered", "yes"

    def _release(self, account_id: str, entry_id: str, exc: Exception) -> bool:
        """After an attempt that failed inside tidings: the entry is tried again after the backoff,
        up to `MAX_INTERNAL_FAILURES` times (or until `GIVE_UP_SECONDS`), then its recipients left
        fail for good (``delivered: no``, the reason in smtpReply) through `_finish`, so the
        submission ends.  Returns whether it gave up."""
        with self.store.write(account_id) as w:
            entry = w.record(outbox.OUTBOX, entry_id)
            if entry is None or not entry.get("leased"):
                return False
            entry["internalFailures"] = entry.get("internalFailures", 0) + 1
            if entry["internalFailures"] < MAX_INTERNAL_FAILURES \
                    and time.time() - entry["created"] < GIVE_UP_SECONDS:
                entry.update(due=int(time.time() + backoff(entry["attempts"])), leased=False)
                w.update_record(outbox.OUTBOX, entry_id, entry)
                self._schedule(entry["due"], account_id, entry_id)
                return False
            reply = " ".join(f"554 5.3.0 tidings could not send this ({type(exc).__name__}: {exc})".split())[:500]
            self._finish(w, entry, {r["email"]: (554, reply, "no") for r in outbox.pending(entry)})
            return True

    def _record(self, account_id: str, entry_id: str, replies: dict[str, tuple[int, str, str]]) -> None:
        with self.store.write(account_id) as w:
            entry = w.record(outbox.OUTBOX, entry_id)
            if entry is not None:
                self._finish(w, entry, replies)

    def _finish(self, w, entry: dict, replies: dict[str, tuple[int, str, str]]) -> None:
        known = {r["email"] for r in entry["rcptTo"]}
        for email, (code, reply, success) in replies.items():
            if email not in known:
                continue
            if code >= 400:
                log.warning("submission: %s to %s: %s", entry["id"], email, reply)
            delivered = outbox.QUEUED if 400 <= code < 500 else "no" if code >= 500 else success
            entry["status"][email] = {"smtpReply": reply, "delivered": delivered}
        left = outbox.pending(entry)
        if left and time.time() - entry["created"] >= GIVE_UP_SECONDS:
            for rcpt in left:
                last = entry["status"][rcpt["email"]]["smtpReply"]
                entry["status"][rcpt["email"]] = {"smtpReply": last, "delivered": "no"}
            left = []
        if entry.get("submissionId"):
            TYPES["EmailSubmission"].on_status(w, entry["submissionId"], entry["status"])
        if left:
            entry.update(due=int(time.time() + backoff(entry["attempts"])), leased=False)
            w.update_record(outbox.OUTBOX, entry["id"], entry)
            self._schedule(entry["due"], w.account_id, entry["id"])
        else:
            outbox.remove(w, entry)
