"""The change bus's parts that a live server does not show: a subscription merges changes and
honours its floor and types; the waker reaches live sockets (also in a data directory whose path is
too long for a socket address) and removes those of dead processes; the watcher reads the journal
when woken, and on its fallback timer without a wake-up."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from app.push.bus import RESYNC, BusClosed, ChangeBus, LocalBus, _Waker


def test_subscription_merges_changes_above_its_floor_for_its_accounts_and_types():
    async def scenario():
        bus = ChangeBus()
        bus.seq = 10
        sub = bus.subscribe(["A1"], ["Email", "Mailbox"])
        bus._deliver([(9, "A1", {"Email": "9"}),  # at or below the floor: already sent
                      (11, "A1", {"Email": "11", "Thread": "11"}),
                      (12, "A2", {"Email": "12"}),  # another account
                      (13, "A1", {"Email": "13", "Mailbox": "13"})])
        got = await sub.next(1)
        bus._deliver([(14, "A1", {"Mailbox": "14"})])
        sub.floor = 20  # a resume read up to 20 after the change was offered: it is not sent again
        below = await sub.next(1)
        nothing = await sub.next(0.05)
        sub.resync()
        resync = await sub.next(1)
        bus.shutdown()
        with pytest.raises(BusClosed):
            await sub.next(1)
        return got, below, nothing, resync, bus.seq

    got, below, nothing, resync, seq = asyncio.run(scenario())
    assert got == {"A1": {"Email": "13", "Mailbox": "13"}}
    assert below == {}
    assert nothing is None
    assert resync is RESYNC
    assert seq == 14


def test_waker_reaches_live_sockets_also_through_a_long_path_and_removes_dead_ones(tmp_path):
    directory = tmp_path / ("d" * 60) / ("e" * 60) / "bus"
    directory.mkdir(parents=True)
    assert len(str(directory / "1.x.sock")) > 107  # too long for sockaddr_un
    waker = _Waker(str(directory))
    live = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    live.bind(waker._address("1.live.sock"))
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(waker._address("2.dead.sock"))
    dead.close()  # the file stays, as after a process that was killed
    live.settimeout(2)
    waker.wake()
    assert live.recv(16) == b"!"
    assert sorted(os.listdir(directory)) == ["1.live.sock"]
    live.close()
    waker.close()


class FakeStore:
    def __init__(self):
        self.entries: list[tuple[int, str, dict]] = []
        self.listeners = []

    def journal_head(self) -> int:
        return self.entries[-1][0] if self.entries else 0

    def journal(self, after: int, limit: int = 1000):
        return [e for e in self.entries if e[0] > after][:limit], True

    def on_commit(self, listener) -> None:
        self.listeners.append(listener)


def test_watcher_reads_the_journal_on_a_datagram_and_on_its_fallback_timer(tmp_path):
    async def scenario():
        store = FakeStore()
        bus = LocalBus(store, str(tmp_path), fallback=0.3)
        bus.start()
        sub = bus.subscribe(["A1"], None)
        # another process commits, then wakes us
        store.entries.append((1, "A1", {"Email": "1"}))
        _Waker(bus.directory).wake()
        woken = await sub.next(0.25)  # well before the fallback read
        # a commit whose wake-up was lost: the fallback read finds it
        store.entries.append((2, "A1", {"Email": "2"}))
        fallback = await sub.next(2)
        await bus.close()
        return woken, fallback, bus.wakeups, os.listdir(bus.directory)

    woken, fallback, wakeups, left = asyncio.run(scenario())
    assert woken == {"A1": {"Email": "1"}}
    assert fallback == {"A1": {"Email": "2"}}
    assert wakeups == 1
    assert left == []  # the socket is removed on close
