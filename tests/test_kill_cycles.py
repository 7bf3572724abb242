"""kill -9 in the middle of concurrent writes, a few times over: every acknowledged write is there
afterwards, the mailbox counts equal a recount, threads are consistent, the index catches up and
`tidings check` is clean.

Two importers (upload + Email/import, some of them replies that join an earlier thread) and one
editor (Email/set: keywords, moves, destroys) write concurrently; after a random delay the server
gets SIGKILL. A write counts as acknowledged only when its whole response was read. A write in
flight at the kill may or may not have been applied, and the checks allow exactly that much.
The seed is random per run and printed with any failure (TIDINGS_KILL_SEED=N repeats a run)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

from tests.conftest import Jmap, Server, tidings
from tests.test_durability import new_data_dir

CYCLES = 4


@dataclass
class Ledger:
    """What the server acknowledged, and the one write per thread that was in flight at a kill."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    imported: dict[str, str] = field(default_factory=dict)  # email id -> its unique search word
    parent: dict[str, str] = field(default_factory=dict)  # reply id -> the email it replied to
    keywords: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # acked keywords
    mailbox: dict[str, str] = field(default_factory=dict)  # email id -> mailbox of its last acked move
    maybe_mailbox: dict[str, str] = field(default_factory=dict)  # a move in flight at a kill
    destroyed: set[str] = field(default_factory=set)
    maybe_destroyed: set[str] = field(default_factory=set)
    maybe_keywords: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    maybe_imported: set[str] = field(default_factory=set)  # search words of imports in flight


def raw_message(word: str, reply_to: str | None = None) -> bytes:
    fields = ["From: Writer <writer@example.com>", "To: carol@example.com",
              f"Subject: {'Re: ' if reply_to else ''}kill test {word}",
              "Date: Mon, 15 Jan 2024 10:00:00 +0000", f"Message-ID: <{word}@kill.example>"]
    if reply_to:
        fields += [f"In-Reply-To: <{reply_to}@kill.example>", f"References: <{reply_to}@kill.example>"]
    return ("\r\n".join(fields) + f"\r\n\r\nBody {word}.\r\n").encode()


def importer(c: Jmap, ledger: Ledger, mailboxes: list[str], name: str, rng: random.Random,
             stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        word = f"{name}w{n}z{rng.randrange(10**9)}"
        with ledger.lock:
            words = {w: i for i, w in ledger.imported.items()}
            parent_word = rng.choice(sorted(words)) if words and rng.random() < 0.3 else None
        ledger.maybe_imported.add(word)
        try:
            blob = c.upload(raw_message(word, parent_word))
            keywords = {"$seen": True} if rng.random() < 0.5 else {}
            r = c.ok("Email/import", emails={"m": {"blobId": blob["blobId"], "keywords": keywords,
                                                   "mailboxIds": {rng.choice(mailboxes): True}}})
        except (httpx.HTTPError, AssertionError):
            return  # the server is gone: this import stays "maybe"
        created = r["created"]["m"]
        with ledger.lock:
            ledger.imported[created["id"]] = word
            ledger.maybe_imported.discard(word)
            if parent_word:
                ledger.parent[created["id"]] = words[parent_word]
            ledger.keywords[created["id"]].update(keywords)


def editor(c: Jmap, ledger: Ledger, mailboxes: list[str], rng: random.Random, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        with ledger.lock:
            live = sorted(set(ledger.imported) - ledger.destroyed - ledger.maybe_destroyed)
        if not live:
            time.sleep(0.02)
            continue
        n += 1
        email_id = rng.choice(live)
        action = rng.random()
        try:
            if action < 0.6:
                keyword = f"k{n}" if rng.random() < 0.5 else "$seen"
                ledger.maybe_keywords[email_id].add(keyword)
                r = c.ok("Email/set", update={email_id: {f"keywords/{keyword}": True}})
                assert email_id in r["updated"], r
                with ledger.lock:
                    ledger.keywords[email_id].add(keyword)
            elif action < 0.9:
                target = rng.choice(mailboxes)
                ledger.maybe_mailbox[email_id] = target
                r = c.ok("Email/set", update={email_id: {"mailboxIds": {target: True}}})
                assert email_id in r["updated"], r
                with ledger.lock:
                    ledger.mailbox[email_id] = target
                del ledger.maybe_mailbox[email_id]
            else:
                ledger.maybe_destroyed.add(email_id)
                r = c.ok("Email/set", destroy=[email_id])
                assert r["destroyed"] == [email_id], r
                with ledger.lock:
                    ledger.destroyed.add(email_id)
                ledger.maybe_destroyed.discard(email_id)
        except (httpx.HTTPError, AssertionError):
            return


def get_all(c: Jmap, ids: list[str], properties: list[str] | None,
            method: str = "Email/get") -> tuple[list[dict], list[str]]:
    """/get in pages of 500 (under maxObjectsInGet)."""
    found, missing = [], []
    for i in range(0, len(ids), 500):
        r = c.ok(method, ids=ids[i:i + 500], properties=properties)
        found += r["list"]
        missing += r["notFound"]
    return found, missing


def run_cycle(data, ledger: Ledger, rng: random.Random) -> None:
    srv = Server(data)
    try:
        clients = [Jmap(srv, "carol", "carol-pw") for _ in range(3)]
        mailboxes = [mb["id"] for mb in clients[0].ok("Mailbox/get", ids=None)["list"]
                     if mb["role"] in ("inbox", "archive", None)]
        stop = threading.Event()
        threads = [threading.Thread(target=importer, args=(clients[i], ledger, mailboxes, f"i{i}",
                                                           random.Random(rng.random()), stop))
                   for i in range(2)]
        threads.append(threading.Thread(target=editor, args=(clients[2], ledger, mailboxes,
                                                             random.Random(rng.random()), stop)))
        for t in threads:
            t.start()
        time.sleep(rng.uniform(1.0, 3.0))
        srv.proc.kill()  # SIGKILL while the three writers are busy
        stop.set()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
    finally:
        srv.stop(kill=True)
    assert srv.proc.returncode == -9


def test_acknowledged_writes_survive_repeated_kill_9_under_concurrent_writes(tmp_path):
    seed = int(os.environ.get("TIDINGS_KILL_SEED") or random.randrange(1, 10**9))
    rng = random.Random(seed)
    why = f"(TIDINGS_KILL_SEED={seed})"
    data = new_data_dir(tmp_path, "carol")
    ledger = Ledger()
    for _ in range(CYCLES):
        run_cycle(data, ledger, rng)
    assert len(ledger.imported) >= 10, f"too few writes were acknowledged to test anything {why}"

    srv = Server(data)
    try:
        c = Jmap(srv, "carol", "carol-pw")
        alive = sorted(set(ledger.imported) - ledger.destroyed - ledger.maybe_destroyed)
        got, not_found = get_all(c, sorted(ledger.imported), ["mailboxIds", "keywords", "threadId"])
        by_id = {e["id"]: e for e in got}
        # every acknowledged import is there, with every acknowledged keyword and move
        for email_id in alive:
            assert email_id in by_id, f"acknowledged import {email_id} lost {why}"
            e = by_id[email_id]
            assert ledger.keywords[email_id] <= set(e["keywords"]), (email_id, e, why)
            assert set(e["keywords"]) - ledger.keywords[email_id] <= ledger.maybe_keywords[email_id], \
                (email_id, e, why)
            if email_id in ledger.mailbox:
                allowed = {ledger.mailbox[email_id], ledger.maybe_mailbox.get(email_id)}
                assert set(e["mailboxIds"]) <= allowed and len(e["mailboxIds"]) == 1, (email_id, e, why)
        for email_id in ledger.destroyed:
            assert email_id in not_found, f"acknowledged destroy of {email_id} undone {why}"

        # the account holds only acknowledged writes and those in flight at a kill
        everything = c.ok("Email/query", limit=10_000)["ids"]
        extra = set(everything) - set(ledger.imported)
        extra_subjects = {e["subject"].split()[-1] for e in get_all(c, sorted(extra), ["subject"])[0]}
        assert extra_subjects <= ledger.maybe_imported, (extra_subjects - ledger.maybe_imported, why)

        # threads: a reply shares its parent's thread; Thread/get lists exactly its emails, in order
        emails = get_all(c, everything, ["threadId", "mailboxIds", "keywords"])[0]
        for reply, parent in ledger.parent.items():
            if reply in by_id and parent in by_id:
                assert by_id[reply]["threadId"] == by_id[parent]["threadId"], (reply, parent, why)
        members = defaultdict(set)
        for e in emails:
            members[e["threadId"]].add(e["id"])
        threads, missing = get_all(c, sorted(members), None, "Thread/get")
        assert missing == [], why
        for t in threads:
            assert set(t["emailIds"]) == members[t["id"]], (t, why)

        # mailbox counts equal a recount (RFC 8621 §2: the simple unreadThreads definition)
        for mb in c.ok("Mailbox/get", ids=None)["list"]:
            inside = [e for e in emails if mb["id"] in e["mailboxIds"]]
            unread = [e for e in inside if "$seen" not in e["keywords"] and "$draft" not in e["keywords"]]
            recount = {"totalEmails": len(inside), "unreadEmails": len(unread),
                       "totalThreads": len({e["threadId"] for e in inside}),
                       "unreadThreads": len({e["threadId"] for e in unread})}
            assert {k: mb[k] for k in recount} == recount, (mb["name"], why)
            assert sorted(c.ok("Email/query", filter={"inMailbox": mb["id"]}, limit=10_000)["ids"]) == \
                sorted(e["id"] for e in inside), (mb["name"], why)

        # the index caught up: every email is found by its own word, and nothing destroyed is
        words = {e: w for e, w in ledger.imported.items()}
        for email_id in everything:
            word = words.get(email_id)
            if word:
                found = c.ok("Email/query", filter={"text": word})["ids"]
                assert found == [email_id], (word, found, why)
        for email_id in ledger.destroyed:
            assert c.ok("Email/query", filter={"text": ledger.imported[email_id]})["ids"] == [], why
    finally:
        srv.stop()
    print(f"{CYCLES} kill -9 cycles: {len(ledger.imported)} imports, {len(ledger.destroyed)} destroys, "
          f"{sum(map(len, ledger.keywords.values()))} keywords, {len(ledger.mailbox)} moves acknowledged "
          f"and checked {why}")
    check = tidings("check", "--user", "carol", data=data, check=False)
    assert check.returncode == 0, (check.stdout, check.stderr, why)
    assert "ok" in check.stdout, (check.stdout, why)
