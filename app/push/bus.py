"""The change bus: every committed write's change reaches the push connections of every serving
process (EventSource and WebSocket, RFC 8620 §7.3, RFC 8887).

A change is the store's journal entry ``(seq, account id, {type name: new state})``: ``seq`` is
global and increases with every commit, so "everything up to seq N" is one number, the event id
and pushState a client resumes from (`app.push.state`).

The interface (`ChangeBus`) is kept narrow so that a networked bus (NATS, PostgreSQL
LISTEN/NOTIFY) can implement it for more than one machine:

* ``publish(entries)``: called in the committing process once the commit is durable (the store's
  ``on_commit``), from any thread, never blocking for long;
* ``subscribe(accounts, types) -> Subscription``, on the event loop: the subscription collects the
  changes of those accounts and types, merged, until its one consumer takes them
  (``await subscription.next()``);
* ``seq``: every change up to it has been offered to every subscription;
* ``start()`` on the serving process's event loop; ``shutdown()`` ends every subscription (their
  consumers see `BusClosed`); ``close()`` frees what the bus holds.

The fan-out to subscriptions (`ChangeBus._deliver`) is shared by every implementation.

One machine: `LocalBus`
-----------------------
The journal in the store is the payload; the bus only says "look". Each serving process (each
uvicorn worker) binds a Unix datagram socket ``<data>/bus/<pid>.<random>.sock`` and runs ONE
watcher: the socket is registered with the event loop (``add_reader``, no thread), and on a
wake-up the watcher reads ``store.journal(seq)`` on the loop (an LMDB read of the new entries,
microseconds) and fans the entries out. Every process that commits, the CLI as well
(`announce_commits`, installed where the CLI opens the store), sends a one-byte datagram to
every socket in ``<data>/bus/`` after each commit that changed a state; a socket nobody is bound
to any more (a process that died) refuses it and is removed. A serving process's own commits wake
its watcher directly. As a fallback against a lost datagram the watcher also reads the journal
every `FALLBACK_SECONDS`.

Why so: no request path and no connection polls the store (one journal read per commit per
process, whatever the number of connections); commits are never slowed by readers (a datagram
send does not wait: a full receive queue already has a wake-up in it); order and completeness come
from the journal (seqs are assigned in commit order by LMDB's single writer, so reading after the
last seq seen misses nothing); and it needs nothing beyond the data directory: no broker, no
extra port, no coordination between workers. Measured (loadtests/push_bench.py): see README.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Iterable

from .. import ipc

log = logging.getLogger("tidings.push")

JournalEntry = tuple[int, str, dict]  # (seq, account id, {type name: new state}), as store.JournalEntry

FALLBACK_SECONDS = 2.0  # the watcher reads the journal at least this often, wake-up or not
READ_LIMIT = 1000  # journal entries per read
BUS_DIR = "bus"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path, less the terminating NUL


class BusClosed(Exception):
    """The bus is shutting down: the subscription's connection should end."""


class Resync:
    """Returned by `Subscription.next` when changes may have been missed (the journal was pruned
    past what the bus had read): the consumer sends the current states instead."""


RESYNC = Resync()


class Subscription:
    """One push connection's view of the bus: the changes of its accounts and types, merged (the
    latest state of each account and type) until the consumer takes them, so that a slow consumer
    costs at most one entry per account and type.

    ``floor``: changes with a seq at or below it are not returned (the connection already sent
    them, e.g. when it resumed from a Last-Event-ID)."""

    def __init__(self, bus: ChangeBus, accounts: Iterable[str], types: Iterable[str] | None, floor: int):
        self.bus = bus
        self.accounts = tuple(dict.fromkeys(accounts))
        self.types = None if types is None else frozenset(types)
        self.floor = floor
        self._pending: dict[tuple[str, str], tuple[int, str]] = {}
        self._wake = asyncio.Event()
        self._resync = False
        self.closed = False

    def offer(self, seq: int, account_id: str, changed: dict) -> None:
        if seq <= self.floor:
            return
        woke = False
        for type_name, state in changed.items():
            if self.types is None or type_name in self.types:
                self._pending[(account_id, type_name)] = (seq, state)
                woke = True
        if woke:
            self._wake.set()

    def resync(self) -> None:
        self._resync = True
        self._wake.set()

    def end(self) -> None:
        """Ends the subscription from the bus's side (shutdown): `next` raises BusClosed."""
        self.closed = True
        self._wake.set()

    async def next(self, timeout: float | None = None) -> dict[str, dict[str, str]] | Resync | None:
        """Waits for changes and returns them as {account id: {type: state}}, or RESYNC; None
        when `timeout` seconds pass first. Raises BusClosed once the bus shuts down. An empty
        dict is possible (every pending change was under the floor)."""
        if not self._pending and not self._resync and not self.closed:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        if self.closed:
            raise BusClosed
        if self._resync:
            self._resync = False
            self._pending.clear()
            return RESYNC
        out: dict[str, dict[str, str]] = {}
        for (account_id, type_name), (seq, state) in self._pending.items():
            if seq > self.floor:
                out.setdefault(account_id, {})[type_name] = state
        self._pending.clear()
        return out

    def close(self) -> None:
        """The consumer is done (its connection ended)."""
        self.closed = True
        self.bus._unsubscribe(self)


class ChangeBus:
    """The interface every bus implements, and the in-process fan-out they share (see the module
    docstring). Subscriptions are kept per account, so a change costs O(its account's
    subscriptions), not O(all connections)."""

    def __init__(self) -> None:
        self.seq = 0
        self._by_account: dict[str, set[Subscription]] = {}
        self._everywhere: set[Subscription] = set()
        self.stopping = False

    # -- what an implementation provides
    def start(self) -> None:
        raise NotImplementedError

    def publish(self, entries: list[JournalEntry]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        self.shutdown()

    # -- shared
    def subscribe(self, accounts: Iterable[str], types: Iterable[str] | None = None) -> Subscription:
        sub = Subscription(self, accounts, types, floor=self.seq)
        if self.stopping:
            sub.end()
            return sub
        for account_id in sub.accounts:
            self._by_account.setdefault(account_id, set()).add(sub)
        return sub

    def subscribe_everywhere(self, types: Iterable[str]) -> Subscription:
        """A subscription to the changes of every account (a background service such as the
        outgoing mail queue, not a client connection)."""
        sub = Subscription(self, (), types, floor=self.seq)
        if self.stopping:
            sub.end()
        else:
            self._everywhere.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._everywhere.discard(sub)
        for account_id in sub.accounts:
            subs = self._by_account.get(account_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_account[account_id]

    def subscriptions(self) -> int:
        return len({s for subs in self._by_account.values() for s in subs})

    def _deliver(self, entries: list[JournalEntry]) -> None:
        """Offers entries (in seq order, none seen before) to the subscriptions of their accounts."""
        for seq, account_id, changed in entries:
            for sub in self._by_account.get(account_id, ()):
                sub.offer(seq, account_id, changed)
            for sub in self._everywhere:
                sub.offer(seq, account_id, changed)
            if seq > self.seq:
                self.seq = seq

    def _resync_all(self) -> None:
        for subs in self._by_account.values():
            for sub in subs:
                sub.resync()
        for sub in self._everywhere:
            sub.resync()

    def shutdown(self) -> None:
        """Ends every subscription and refuses new ones (their connections close)."""
        self.stopping = True
        for sub in {s for subs in self._by_account.values() for s in subs} | self._everywhere:
            sub.end()
        self._by_account.clear()
        self._everywhere.clear()


# ---------------------------------------------------------------------------------- one machine
def _bus_dir(data_dir: str) -> str:
    return os.path.join(os.path.abspath(data_dir), BUS_DIR)


class _Waker:
    """Sends a one-byte wake-up datagram to every bus socket in a directory but our own, and
    removes the sockets of processes that are gone. The listing is cached until the directory
    changes (its mtime), so a commit costs a stat() and one sendto() per serving process."""

    def __init__(self, directory: str, own: str | None = None):
        self.directory = directory
        self.own = own
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self._names: list[str] = []
        self._mtime = -1
        self._dir_fd: int | None = None

    def _address(self, name: str) -> str:
        path = os.path.join(self.directory, name)
        if len(path.encode()) <= _SUN_PATH_MAX:
            return path
        if self._dir_fd is None:  # a long data path: reach the socket through a directory fd
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    def _listing(self) -> list[str]:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return []
        if mtime != self._mtime:
            self._mtime = mtime
            self._names = [n for n in os.listdir(self.directory) if n.endswith(".sock") and n != self.own]
        return self._names

    def wake(self) -> None:
        for name in self._listing():
            try:
                self._sock.sendto(b"!", self._address(name))
            except ConnectionRefusedError:  # nobody bound: the process died without removing it
                try:
                    os.unlink(os.path.join(self.directory, name))
                except FileNotFoundError:
                    pass
                self._mtime = -1
            except (BlockingIOError, FileNotFoundError, PermissionError):
                pass  # a full queue holds a wake-up already; a socket just removed needs none
            except OSError as exc:
                log.debug("bus: cannot wake %s: %s", name, exc)

    def close(self) -> None:
        self._sock.close()
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


def announce_commits(store, data_dir: str) -> None:
    """Makes a process that writes but does not serve (the CLI: import, user add ...) wake the
    serving processes after each of its commits that changed a state."""
    waker = _Waker(_bus_dir(data_dir))

    def listener(entries: list[JournalEntry]) -> None:
        waker.wake()

    store.on_commit(listener)


class LocalBus(ChangeBus):
    """The change bus of one machine: a journal watcher per process, woken by datagrams (see the
    module docstring)."""

    def __init__(self, store, data_dir: str, fallback: float = FALLBACK_SECONDS):
        super().__init__()
        self.store = store
        self.directory = _bus_dir(data_dir)
        self.fallback = fallback
        self.name = f"{os.getpid()}.{secrets.token_hex(4)}.sock"
        self._waker = _Waker(self.directory, own=self.name)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.wakeups = 0  # datagrams received (for tests and measurements)

    def start(self) -> None:
        """On the event loop: binds this process's socket and starts watching the journal."""
        self._loop = asyncio.get_running_loop()
        self.seq = self.store.journal_head()
        os.makedirs(self.directory, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        sock.bind(self._waker._address(self.name))
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._on_datagram)
        self.store.on_commit(self.publish)
        self._timer = self._loop.call_later(self.fallback, self._on_timer)
        log.debug("bus: watching the journal from seq %d (%s)", self.seq, self.name)

    def publish(self, entries: list[JournalEntry]) -> None:
        """After a commit of this process (any thread): wake our watcher and the other processes'."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._schedule)
            except RuntimeError:  # the loop closed meanwhile
                pass
        self._waker.wake()

    def _on_datagram(self) -> None:
        while True:
            try:
                self._sock.recv(64)
                self.wakeups += 1
            except (BlockingIOError, OSError):
                break
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.catch_up)

    def _on_timer(self) -> None:
        self.catch_up()
        if not self.stopping:
            self._timer = self._loop.call_later(self.fallback, self._on_timer)

    def catch_up(self) -> None:
        """Reads the journal after `seq` and fans out what is new (on the event loop)."""
        self._scheduled = False
        if self.stopping:
            return
        while True:
            try:
                entries, intact = self.store.journal(self.seq, READ_LIMIT)
            except Exception:  # noqa: BLE001 - the watcher keeps watching; the next wake-up retries
                log.exception("bus: cannot read the journal")
                return
            if not intact:
                log.warning("bus: journal entries after %d were pruned before they were read; "
                            "every push connection gets the current states", self.seq)
                self._resync_all()
            if entries:
                self._deliver(entries)
            if len(entries) < READ_LIMIT:
                return

    async def close(self) -> None:
        self.shutdown()
        if self._timer is not None:
            self._timer.cancel()
        if self._sock is not None:
            ipc.close_socket(self._loop, self._sock, os.path.join(self.directory, self.name))
            self._sock = None
        self._waker.close()
