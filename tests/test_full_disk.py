"""A full disk leaves every component usable (issue 11; cases o01, o02, o03).

Each test runs a real `tidings serve` whose data directory is a small tmpfs mounted here (root
only: the tests skip when mounting is impossible), fills it, checks that writes fail with an
error a client can act on while reads go on, then makes room (`rm` of a filler file, or
`mount -o remount,size=...`) and checks that the same server process works again, with nothing
stored damaged.  Conditions are waited for with generous timeouts, never timed."""

from __future__ import annotations

import os
import secrets
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Jmap, Server, free_port, tidings

WAIT = 90.0  # seconds a condition may take on a loaded machine


class Disk:
    """A tmpfs mounted at `path`, unmounted (lazily, so a straggler cannot keep it) at teardown."""

    def __init__(self, path: Path, size: str):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill (needs root and mount): {done.stderr.strip()}")

    def resize(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def fill(self) -> Path:
        """Writes a filler file until the disk is full; returns it (unlink it to make room)."""
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            chunk = b"\0" * 65536
            while True:
                try:
                    os.write(fd, chunk)
                except OSError:
                    if len(chunk) == 1:
                        break
                    chunk = chunk[:len(chunk) // 2]
        finally:
            os.close(fd)
        return filler

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def disk(tmp_path) -> Iterator[Callable[[str], Disk]]:
    """disk(size) mounts a tmpfs of that size under tmp_path; servers started on it are stopped
    first at teardown, and every mount is undone whatever the test did."""
    mounted: list[Disk] = []
    servers: list[Server] = []

    def make(size: str) -> Disk:
        d = Disk(tmp_path / f"disk{len(mounted)}", size)
        mounted.append(d)
        return d

    make.servers = servers  # type: ignore[attr-defined]
    yield make
    for srv in servers:
        srv.stop()
    for d in mounted:
        d.unmount()


def start(disk_factory, data: Path, logs: Path, *extra: str) -> Server:
    srv = Server(data, extra=extra, log_dir=logs)
    disk_factory.servers.append(srv)
    return srv


def message(subject: str, body: str) -> bytes:
    return (f"From: Bob <bob@example.org>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def words(n: int) -> str:
    """n random words, 8 to a line: text an index has to store (no two messages compress alike)."""
    return "\r\n".join(" ".join(secrets.token_hex(4) for _ in range(min(8, n - i))) for i in range(0, n, 8))


def upload_status(client: Jmap, data: bytes, content_type: str = "message/rfc822") -> httpx.Response:
    url = client.session["uploadUrl"].replace("{accountId}", client.account_id)
    return client.http.post(url, content=data, headers={"Content-Type": content_type})


def text_search(client: Jmap, word: str) -> tuple[str, dict]:
    return client.call("Email/query", filter={"text": word})


def assert_unavailable(name: str, result: dict) -> None:
    """A method the disk failed: serverUnavailable with a description, never serverFail."""
    assert name == "error", (name, result)
    assert result["type"] == "serverUnavailable", result
    assert result.get("description"), result
    # plain words for the client: not the storage library's error text or the server's paths
    assert "/" not in result["description"] and "Error" not in result["description"], result


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def check_ok(data: Path) -> bool:
    done = tidings("check", "--user", "alice", data=data, check=False)
    return done.returncode == 0 and "0 queued: ok" in done.stdout


# ------------------------------------------------------------------------------------------ o03
def test_writes_on_a_full_disk_fail_cleanly_and_succeed_once_there_is_room(disk, tmp_path):
    """o03: an upload larger than the disk is a 507 problem JSON (not a plain 500 and a dropped
    connection); Email/set create and Email/import on a full disk answer serverUnavailable with a
    description, LMTP 452 4.3.1; the server answers the next request; once there is room the
    same writes succeed and what was stored before is intact."""
    d = disk("3m")
    data = d.path
    tidings("user", "add", "alice", "--password", "pw", "--email", "alice@example.com", data=data)
    lmtp_port = free_port()
    srv = start(disk, data, tmp_path, "--lmtp-port", str(lmtp_port))
    alice = Jmap(srv, "alice", "pw")
    inbox = alice.mailbox("inbox")
    earlier_raw = message("earlier", "stored before the disk filled " + words(20))
    earlier = alice.import_message(earlier_raw)

    big = upload_status(alice, os.urandom(4 << 20), "application/octet-stream")
    assert big.status_code == 507, big.text
    assert big.headers["content-type"] == "application/problem+json"
    problem = big.json()
    assert problem["status"] == 507 and "full" in problem["detail"], problem
    assert alice.ok("Mailbox/get", ids=[inbox])["list"][0]["id"] == inbox  # the next request

    # blobs for the imports below, uploaded while there is room
    pending = [alice.upload(message(f"pending {i}", words(400)))["blobId"] for i in range(6)]
    filler = d.fill()

    create = {"k": {"mailboxIds": {inbox: True}, "subject": "on a full disk",
                    "textBody": [{"partId": "1", "type": "text/plain"}],
                    "bodyValues": {"1": {"value": words(40_000)}}}}  # new pages LMDB cannot reuse
    assert_unavailable(*alice.call("Email/set", create=create))
    small = upload_status(alice, message("small", words(30_000)))
    assert small.status_code == 507 and small.headers["content-type"] == "application/problem+json", small.text
    # an import writes little: LMDB may still reuse freed pages for some; none may fail otherwise
    refused = 0
    for blob_id in pending:
        name, result = alice.call("Email/import", emails={"m": {"blobId": blob_id, "mailboxIds": {inbox: True}}})
        if name == "error":
            assert_unavailable(name, result)
            refused += 1
        else:
            assert name == "Email/import" and (result["created"] or result["notCreated"]), result
            if result["notCreated"]:
                assert result["notCreated"]["m"]["type"] != "serverFail", result
    assert refused, "every import on the full disk succeeded: the disk was not full"
    with smtplib.LMTP("127.0.0.1", lmtp_port) as lmtp:
        lmtp.ehlo("test")
        lmtp.mail("bob@example.org")
        lmtp.rcpt("alice@example.com")
        lmtp.putcmd("data")
        assert lmtp.getreply()[0] == 354
        lmtp.send(message("by lmtp", words(40_000)) + b".\r\n")
        code, reply = lmtp.getreply()
        assert (code, reply[:5]) == (452, b"4.3.1"), (code, reply)

    big_mail = message("by the CLI", words(40_000))
    delivered = tidings("deliver", "--user", "alice", input=big_mail.decode(), data=data, check=False)
    assert delivered.returncode == 75, delivered  # EX_TEMPFAIL: the MTA keeps the message
    assert "storage full" in delivered.stderr and "Traceback" not in delivered.stderr, delivered.stderr
    mbox = tmp_path / "in.mbox"
    mbox.write_bytes(b"From bob@example.org Mon Jan  1 10:00:00 2024\n" + big_mail.replace(b"\r\n", b"\n"))
    imported = tidings("import", "--user", "alice", "--no-progress", str(mbox), data=data, check=False)
    assert imported.returncode == 1, imported
    error_lines = imported.stderr.strip().splitlines()
    assert len(error_lines) == 1 and "disk is full" in error_lines[0], imported.stderr

    # reads go on, and nothing stored is damaged
    got = alice.ok("Email/get", ids=[earlier["id"]], properties=["subject", "blobId"])["list"][0]
    assert got["subject"] == "earlier"
    download = alice.session["downloadUrl"].replace("{accountId}", alice.account_id).replace(
        "{blobId}", got["blobId"]).replace("{type}", "message/rfc822").replace("{name}", "m.eml")
    assert alice.http.get(download).content == earlier_raw

    # room again: the same writes succeed, in the same server process
    filler.unlink()
    created = alice.ok("Email/set", create=create)["created"]
    assert created and "k" in created, created
    for blob_id in pending:
        name, result = alice.call("Email/import", emails={"m": {"blobId": blob_id, "mailboxIds": {inbox: True}}})
        assert name == "Email/import" and result["created"], result
    d.resize("300m")
    assert upload_status(alice, os.urandom(4 << 20), "application/octet-stream").status_code == 201
    assert alice.http.get(download).content == earlier_raw
    assert srv.proc.poll() is None
    log = srv.log_path.read_text()
    assert "Traceback" not in log, log


# ------------------------------------------------------------------------------------------ o01
def test_search_works_again_without_a_restart_once_a_full_disk_has_room(disk, tmp_path):
    """o01: the index commit fails on the full disk; text queries meanwhile answer
    serverUnavailable or a result, never serverFail; once the disk is enlarged the same process
    searches again, finds the last stored message, and the index queue drains."""
    d = disk("8m")
    data = d.path
    tidings("user", "add", "alice", "--password", "pw", "--email", "alice@example.com", data=data)
    srv = start(disk, data, tmp_path)
    alice = Jmap(srv, "alice", "pw")
    alice.import_message(message("first", "quokka " + words(50)))
    assert len(alice.ok("Email/query", filter={"text": "quokka"})["ids"]) == 1  # the index exists

    # import until the disk refuses: the index's segments and the store compete for the last room
    stored: list[tuple[str, str]] = []
    inbox = alice.mailbox("inbox")
    for i in range(400):
        marker = f"zebra{i}x"
        response = upload_status(alice, message(f"filler {i}", f"{marker} {words(4000)}"))
        if response.status_code != 201:
            assert response.status_code == 507 and response.headers["content-type"] == "application/problem+json"
            break
        name, result = alice.call("Email/import", emails={
            "m": {"blobId": response.json()["blobId"], "mailboxIds": {inbox: True}}})
        if name == "error":
            assert_unavailable(name, result)
            break
        stored.append((marker, result["created"]["m"]["id"]))
    else:
        pytest.fail("the disk never filled")
    assert stored
    d.fill()  # whatever room is left: the indexer cannot commit now

    name, result = text_search(alice, stored[-1][0])
    if name == "error":
        assert_unavailable(name, result)
    name, result = alice.call("SearchSnippet/get", filter={"text": "quokka"}, emailIds=[stored[0][1]])
    assert name == "SearchSnippet/get", (name, result)

    d.resize("300m")
    marker, email_id = stored[-1]

    def found() -> bool:
        name, result = text_search(alice, marker)
        return name == "Email/query" and result["ids"] == [email_id]

    wait_for(found, f"a text query finds {marker} without a restart")
    assert alice.ok("Email/query", filter={"text": stored[0][0]})["ids"] == [stored[0][1]]
    snippet = alice.ok("SearchSnippet/get", filter={"text": marker}, emailIds=[email_id])["list"][0]
    assert "<mark>" in (snippet["preview"] or ""), snippet
    wait_for(lambda: check_ok(data), "tidings check: every stored email indexed, nothing queued")
    assert srv.proc.poll() is None
    log = srv.log_path.read_text()
    # a full disk is one line when it starts, not a traceback every round
    assert "Traceback" not in log, log


# ------------------------------------------------------------------------------------------ o02
def test_index_created_on_a_full_disk_is_made_once_there_is_room(disk, tmp_path):
    """o02: the disk is full when the indexer first creates the account's index (messages
    queued); no empty marker stays behind, text queries answer serverUnavailable meanwhile, and
    once there is room the same process makes the index and answers."""
    d = disk("5m")
    data = d.path
    tidings("user", "add", "alice", "--password", "pw", "--email", "alice@example.com", data=data)
    start(disk, data, tmp_path).stop()  # a server ran here before (its key pair made), no mail yet
    for i in range(3):  # stored and queued for indexing, no index yet (no server runs)
        tidings("deliver", "--user", "alice", input=message(f"queued {i}", f"wombat{i} " + words(200)).decode(),
                data=data)
    filler = d.fill()
    srv = start(disk, data, tmp_path)
    alice = Jmap(srv, "alice", "pw")
    name, result = text_search(alice, "wombat1")
    if name == "error":
        assert_unavailable(name, result)
    index_dir = data / "index" / "tantivy" / alice.account_id
    assert not (index_dir / "tidings-index.json").exists() or (index_dir / "tidings-index.json").stat().st_size

    filler.unlink()
    assert len(wait_for(lambda: alice.ok("Email/query", filter={"text": "wombat1"})["ids"],
                        "the index is made once there is room")) == 1
    wait_for(lambda: check_ok(data), "tidings check is clean")
    assert "Traceback" not in srv.log_path.read_text()


@pytest.mark.parametrize("damage", ["empty marker", "garbled marker", "unmarked files"])
def test_unreadable_index_is_reported_by_check_and_rebuilt_at_the_next_search(damage, disk, tmp_path):
    """o02: an index a full disk (or an older version) left unreadable is reported by
    `tidings check` (no JSON traceback), and the server rebuilds it at the account's next text
    query instead of answering serverFail to every one; `tidings reindex` repairs it too."""
    d = disk("20m")
    data = d.path
    tidings("user", "add", "alice", "--password", "pw", "--email", "alice@example.com", data=data)
    srv = start(disk, data, tmp_path)
    alice = Jmap(srv, "alice", "pw")
    ids = [alice.import_message(message(f"m{i}", f"platypus{i} " + words(30)))["id"] for i in range(3)]
    assert alice.ok("Email/query", filter={"text": "platypus2"})["ids"] == [ids[2]]
    srv.stop()

    def break_index() -> None:
        index_dir = data / "index" / "tantivy" / alice.account_id
        marker = index_dir / "tidings-index.json"
        if damage == "empty marker":
            marker.write_bytes(b"")
        elif damage == "garbled marker":
            marker.write_bytes(b'{"engine": "tanti')
        else:
            marker.unlink()

    break_index()
    report = tidings("check", "--user", "alice", data=data, check=False)
    assert report.returncode == 1, report
    assert "UNREADABLE" in report.stdout and "tidings reindex" in report.stdout, report.stdout
    assert "Traceback" not in report.stderr, report.stderr

    srv = start(disk, data, tmp_path)
    alice = Jmap(srv, "alice", "pw")
    assert alice.ok("Email/query", filter={"text": "platypus2"})["ids"] == [ids[2]]
    assert alice.ok("Email/query", filter={"text": "platypus0"})["ids"] == [ids[0]]
    wait_for(lambda: check_ok(data), "tidings check is clean after the rebuild")
    srv.stop()

    break_index()  # and with no server: `tidings reindex` mends it
    tidings("reindex", "--user", "alice", data=data)
    assert check_ok(data)
