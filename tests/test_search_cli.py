"""The full-text index from the command line (issue 3, Design): `tidings import` indexes what it
imports (itself when no server runs, through the running server's background indexer otherwise),
`tidings check` compares store and index, `tidings reindex --search-engine` is all an engine switch
takes, and the durable indexing queue survives a kill -9 of the server.

Each test works on its own temporary data directory with the real CLI (subprocesses) and, where
stated, a real `tidings serve`."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Jmap, Server, tidings

N = 12  # messages of the standard mbox
SHARED = "harbourmaster"


# ------------------------------------------------------------------------------------------ helpers
def mbox_message(i: int, word: str, tag: str) -> str:
    """One mbox entry (LF line ends, as mbox files have them)."""
    return (f"From sender{i}@example.com Mon Jan {i % 28 + 1:2d} 10:{i % 60:02d}:00 2024\n"
            f"From: Sender {i} <sender{i}@example.com>\n"
            "To: user@example.com\n"
            f"Subject: {word.capitalize()} report {i}\n"
            f"Message-ID: <{tag}-{i}@example.com>\n"
            f"Date: Mon, {i % 28 + 1:02d} Jan 2024 10:{i % 60:02d}:00 +0000\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=us-ascii\n"
            "\n"
            f"The {word} logbook entry number {i} mentions {tag}{i} once.\n"
            "\n")


def write_mbox(path: Path, n: int, word: str = SHARED, tag: str = "tidewater") -> Path:
    path.write_text("".join(mbox_message(i, word, tag) for i in range(n)))
    return path


def new_data(tmp_path: Path, name: str = "data") -> Path:
    data = tmp_path / name
    data.mkdir()
    tidings("user", "add", "user", "--password", "user-pw", "--email", "user@example.com", data=data)
    return data


def imported(tmp_path: Path, *engine: str) -> Path:
    """A data directory with user "user" and the standard mbox imported by `tidings import`."""
    data = new_data(tmp_path)
    mbox = write_mbox(tmp_path / "in.mbox", N)
    r = tidings("import", "--user", "user", "--no-progress", str(mbox), *engine, data=data, check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return data


def check(data: Path, *args: str) -> tuple[int, str]:
    r = tidings("check", *args, data=data, check=False)
    return r.returncode, r.stdout + r.stderr


def assert_check_ok(data: Path, stored: int, *args: str) -> str:
    rc, out = check(data, *args)
    assert rc == 0, out
    line = next(line for line in out.splitlines() if line.startswith("user"))
    numbers = [int(n) for n in re.findall(r"\d+", line)]
    assert numbers.count(stored) >= 2, line  # emails stored and documents indexed
    assert "ok" in line.lower() and "different" not in out.lower(), out
    return out


def search(client: Jmap, flt: dict) -> list[str]:
    r = client.ok("Email/query", filter=flt, calculateTotal=True, limit=1000)
    assert r["total"] == len(r["ids"]), r
    return r["ids"]


def assert_standard_mbox_found(client: Jmap) -> dict[int, str]:
    """The standard mbox's messages, each found by its own word and all by the shared one."""
    found = {}
    for i in range(N):
        ids = search(client, {"text": f"tidewater{i}"})
        assert len(ids) == 1, (i, ids)
        found[i] = ids[0]
    assert set(search(client, {"text": SHARED})) == set(found.values())
    assert search(client, {"body": '"logbook entry number 5"'}) == [found[5]]
    assert search(client, {"from": "sender7@example.com"}) == [found[7]]
    assert search(client, {"subject": "report 11"}) == [found[11]]
    assert search(client, {"subject": "logbook"}) == []
    return found


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------ tests
def test_import_indexes_and_check_reports_counts(tmp_path):
    data = imported(tmp_path)
    out = assert_check_ok(data, N)
    assert f"{N}" in out
    # the user filter gives the same answer
    assert_check_ok(data, N, "--user", "user")


def test_server_finds_messages_imported_by_the_cli(tmp_path):
    data = imported(tmp_path)
    server = Server(data)
    try:
        client = Jmap(server, "user", "user-pw")
        before = assert_standard_mbox_found(client)
        # a reindex while the server runs is queued for the server; searches stay exact meanwhile
        r = tidings("reindex", "--user", "user", data=data, check=False)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert assert_standard_mbox_found(client) == before
    finally:
        server.stop()
    assert_check_ok(data, N)


def test_check_reports_a_difference_when_the_index_lacks_messages(tmp_path):
    data = imported(tmp_path)  # indexed with tantivy, the default
    rc, out = check(data, "--search-engine", "whoosh")  # whoosh has indexed nothing yet
    assert rc == 1, out
    assert str(N) in out and re.search(r"differ|missing|not indexed", out, re.I), out
    assert_check_ok(data, N, "--search-engine", "tantivy")


def test_engine_switch_is_config_plus_reindex(tmp_path):
    data = imported(tmp_path)
    server = Server(data)
    try:
        before = assert_standard_mbox_found(Jmap(server, "user", "user-pw"))
    finally:
        server.stop()
    r = tidings("reindex", "--search-engine", "whoosh", data=data, check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert str(N) in r.stdout + r.stderr, r.stdout + r.stderr  # progress / count of what it indexed
    assert_check_ok(data, N, "--search-engine", "whoosh")
    server = Server(data, extra=("--search-engine", "whoosh"))
    try:
        after = assert_standard_mbox_found(Jmap(server, "user", "user-pw"))
    finally:
        server.stop()
    assert after == before
    # reindexing one user's account alone works too, and leaves the index whole
    r = tidings("reindex", "--user", "user", "--search-engine", "whoosh", data=data, check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert_check_ok(data, N, "--search-engine", "whoosh")


def test_reindex_repairs_what_check_reports(tmp_path):
    data = imported(tmp_path)
    rc, _ = check(data, "--search-engine", "whoosh")
    assert rc == 1
    r = tidings("reindex", "--user", "user", "--search-engine", "whoosh", data=data, check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert_check_ok(data, N, "--search-engine", "whoosh")


def crash_message(i: int) -> bytes:
    return (f"From: crash{i}@example.com\r\nTo: user@example.com\r\nSubject: Crash test {i}\r\n"
            f"Message-ID: <crash-{i}@example.com>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"survivor body crashword{i}\r\n").encode()


@pytest.mark.parametrize("engine", ["tantivy", "whoosh"])
@pytest.mark.parametrize("when", ["after-last-import", "during-imports"])
def test_index_queue_survives_kill_9(tmp_path, engine, when):
    """300 messages imported over JMAP, then the server is killed with SIGKILL: right after the last
    import is acknowledged, or while imports (and so the indexer) are still going on. After a restart
    every stored message (and so every acknowledged one) is soon searchable, and check says ok."""
    data = new_data(tmp_path)
    total, batch = 300, (50 if when == "after-last-import" else 10)
    acknowledged: dict[int, str] = {}
    server = Server(data, extra=("--search-engine", engine))
    try:
        client = Jmap(server, "user", "user-pw")
        inbox = client.mailbox("inbox")
        blobs = [client.upload(crash_message(i))["blobId"] for i in range(total)]
        killer = None
        for start in range(0, total, batch):
            emails = {f"e{i}": {"blobId": blobs[i], "mailboxIds": {inbox: True}}
                      for i in range(start, min(total, start + batch))}
            try:
                r = client.ok("Email/import", emails=emails)
            except httpx.HTTPError:
                assert killer is not None  # only once the server is being killed
                break
            assert len(r["created"]) == len(emails), r
            acknowledged.update({int(k[1:]): v["id"] for k, v in r["created"].items()})
            if when == "during-imports":
                time.sleep(0.03)  # lets the background indexer work between the imports
                if start == total // 2:
                    killer = threading.Timer(0.05, server.proc.kill)
                    killer.start()
        if killer is not None:
            killer.join()
    finally:
        server.stop(kill=True)  # SIGKILL (at once, unless the timer did it already)
    assert len(acknowledged) >= total // 2
    server = Server(data, extra=("--search-engine", engine))
    try:
        # the background indexer resumes from the durable queue by itself (no search asked for it)
        # (a generous bound: on a loaded 2-core machine 10 s was once not enough for Whoosh)
        last: list = []
        try:
            wait_for(lambda: (last.append(check(data, "--search-engine", engine)) or last[-1][0] == 0), 30,
                     "the restarted server indexes what was queued before the crash")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last check: {last[-1]}") from None
        client = Jmap(server, "user", "user-pw")
        stored = client.ok("Email/query", filter=None, calculateTotal=True, limit=1)["total"]
        assert stored >= len(acknowledged)
        assert len(search(client, {"text": "survivor"})) == stored
        for i, email_id in acknowledged.items():
            assert search(client, {"body": f"crashword{i}"}) == [email_id], i
    finally:
        server.stop()
    out = assert_check_ok(data, stored, "--search-engine", engine)
    assert re.search(r"\b0 queued", out) or "queued" not in out, out


def test_import_while_server_runs_is_indexed_by_the_server(tmp_path):
    """The CLI cannot be the index writer while the server is: the server's background indexer indexes
    the import by itself (watched with `tidings check`, since a JMAP text query would index the queue
    on demand), and a text query right after an import finds it (read-your-writes)."""
    data = new_data(tmp_path)
    server = Server(data)
    try:
        client = Jmap(server, "user", "user-pw")
        client.ok("Mailbox/get", ids=None)  # the server is up and serving the account
        first = write_mbox(tmp_path / "first.mbox", N)
        r = tidings("import", "--user", "user", "--no-progress", str(first), data=data, check=False)
        assert r.returncode == 0, (r.stdout, r.stderr)
        # the background indexer of the server picks them up, without any search asking for it
        wait_for(lambda: check(data)[0] == 0, 5, "the running server indexes a CLI import")
        assert_standard_mbox_found(client)
        # read-your-writes: the very next text query after the import finds the new messages
        second = write_mbox(tmp_path / "second.mbox", N, word="quayside", tag="estuary")
        r = tidings("import", "--user", "user", "--no-progress", str(second), data=data, check=False)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert len(search(client, {"text": "quayside"})) == N
        assert len(search(client, {"text": "estuary3"})) == 1
    finally:
        server.stop()
    assert_check_ok(data, 2 * N)


@pytest.mark.parametrize("engine", ["tantivy", "whoosh"])
def test_read_your_writes_across_worker_processes(tmp_path, engine):
    """With `--workers 2` one process is the index writer and the other only searches: a client's import
    is found by its next text query whichever worker answers, and a destroyed email is gone at once."""
    data = new_data(tmp_path)
    server = Server(data, extra=("--search-engine", engine, "--workers", "2"))
    try:
        inbox = Jmap(server, "user", "user-pw").mailbox("inbox")
        for i in range(15):
            word = f"workerword{i}x"
            # a new connection for each request: the kernel hands each to either worker
            email_id = Jmap(server, "user", "user-pw").import_message(
                (f"From: w{i}@example.com\r\nTo: user@example.com\r\nSubject: Worker {i}\r\n"
                 f"Message-ID: <worker-{i}@example.com>\r\n\r\nbody {word}\r\n").encode(), inbox)["id"]
            assert search(Jmap(server, "user", "user-pw"), {"text": word}) == [email_id], i
            if i % 3 == 0:
                Jmap(server, "user", "user-pw").ok("Email/set", destroy=[email_id])
                assert search(Jmap(server, "user", "user-pw"), {"text": word}) == [], i
    finally:
        server.stop()
    assert_check_ok(data, 10, "--search-engine", engine)
