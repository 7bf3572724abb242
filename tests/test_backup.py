"""`tidings backup` and `tidings restore`, black-box: a backup taken while a real server runs and
mail is being written is one consistent snapshot; a server started on the restored data directory
answers Email/query, Email/get, searches and blob downloads (also of a message over 1 MiB, kept as
a file outside the database) as the original did; damaged backups and unsafe targets are refused
with one-line errors."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from tests.conftest import Jmap, Server, tidings
from tests.test_blob_thread_identity import download_url
from tests.test_durability import message, new_data_dir

PROPS = ["id", "blobId", "threadId", "mailboxIds", "keywords", "receivedAt", "size", "subject", "from"]


def big_message() -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    return message("big one", body="") + line * (1_600_000 // len(line))  # over 1 MiB: a blob file


def everything(c: Jmap) -> dict:
    """Every email of the account, as Email/query (by date) and Email/get show them."""
    ids = c.ok("Email/query", sort=[{"property": "receivedAt", "isAscending": True}],
               limit=10_000)["ids"]
    got = c.ok("Email/get", ids=ids, properties=PROPS)["list"] if ids else []
    return {e["id"]: e for e in got} | {"_order": ids}


def download(c: Jmap, blob_id: str) -> bytes:
    r = c.http.get(download_url(c, blob_id, "m.eml", "message/rfc822"))
    assert r.status_code == 200, r.status_code
    return r.content


def restore(backup: Path, target: Path, *extra: str):
    return tidings("restore", str(backup), *extra, data=target, check=False)


def test_backup_while_the_server_writes_restores_to_a_server_that_answers_the_same(tmp_path):
    data = new_data_dir(tmp_path, "alice")
    srv = Server(data)
    try:
        c = Jmap(srv, "alice", "alice-pw")
        archive = c.ok("Mailbox/set", create={"a": {"name": "Archive2"}})["created"]["a"]["id"]
        big = c.import_message(big_message(), mailbox=archive, keywords={"$flagged": True})
        for i in range(20):
            c.import_message(message(f"before {i}", body=f"needle{i % 3} text"),
                             keywords={"$seen": True} if i % 2 else {})
        stop, written = threading.Event(), []

        def writer():  # keeps importing (and flagging) while the backup runs
            w = Jmap(srv, "alice", "alice-pw")
            n = 0
            while not stop.is_set():
                created = w.import_message(message(f"during {n}", body="needle1 during"))
                w.ok("Email/set", update={created["id"]: {"keywords/$flagged": True}})
                written.append(created["id"])
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while len(written) < 3:
                threading.Event().wait(0.05)
            backup = tmp_path / "backup"
            out = tidings("backup", str(backup), data=data)
            assert "the full-text index is not in the backup" in out.stdout
        finally:
            stop.set()
            thread.join()
        assert len(written) >= 3
        original = everything(c)
        searches = {word: _search(c, word) for word in ("needle0", "needle1", "needle2")}
        manifest = json.loads((backup / "manifest.json").read_text())
        assert manifest["format"] == "tidings-backup" and manifest["blobFiles"]["count"] == 1
        assert not (backup / "index").exists() and not (backup / "lock.mdb").exists()
        # the big message is a blob file in the backup (hard link or copy), named by its content
        assert (backup / "blobs" / big["blobId"][1:3] / big["blobId"][1:]).is_file()
    finally:
        srv.stop()

    target = tmp_path / "restored"
    r = restore(backup, target)
    assert r.returncode == 0, r.stderr
    assert "restored 1 user," in r.stdout
    srv2 = Server(target)
    try:
        c2 = Jmap(srv2, "alice", "alice-pw")
        restored = everything(c2)
        order = restored.pop("_order")
        # one snapshot: a prefix of what was written, each email exactly as it was then or since
        # (the writer only adds emails, then flags them: a restored one may still be unflagged)
        assert manifest["emails"] == len(order) >= 21
        assert order == [i for i in original["_order"] if i in restored]
        for email_id, email in restored.items():
            now = dict(original[email_id])
            if email["keywords"] != now["keywords"]:
                assert email_id in written and now["keywords"] == {**email["keywords"], "$flagged": True}
                now["keywords"] = email["keywords"]
            assert email == now
        # mailbox counts agree with what the restored store holds
        boxes = c2.ok("Mailbox/get", ids=None)["list"]
        total = {mb["id"]: mb["totalEmails"] for mb in boxes}
        for mb_id, n in total.items():
            assert n == len(c2.ok("Email/query", filter={"inMailbox": mb_id}, limit=10_000)["ids"])
        # the index was rebuilt: searches answer as the original did for the restored emails
        for word, before in searches.items():
            found = _search(c2, word)
            assert found and found == before & set(restored)
        for email_id in order[:5] + [big["id"]]:
            assert download(c2, restored[email_id]["blobId"]) == _bytes_of(data, restored[email_id]["blobId"])
        assert len(download(c2, big["blobId"])) > 1 << 20
    finally:
        srv2.stop()


def _search(c: Jmap, word: str) -> set[str]:
    return set(c.ok("Email/query", filter={"text": word}, limit=10_000)["ids"])


def _bytes_of(data: Path, blob_id: str) -> bytes:
    """A blob's bytes read from a data directory with no server on it."""
    from store import open_store

    store = open_store(str(data))
    try:
        for user in store.users():
            with store.read(user["accountId"]) as r:
                raw = r.blob(blob_id)
                if raw is not None:
                    return raw
    finally:
        store.close()
    raise AssertionError(f"no blob {blob_id}")


def test_a_blob_file_the_collector_removes_after_the_snapshot_is_still_in_the_backup(tmp_path):
    """The files are pinned with the snapshot: a collector unlinking them while the database is
    copied (here: every file, the moment the copy starts) takes nothing from the backup."""
    from store import open_store, restore_copy
    from store.blobfiles import stored_files

    data = tmp_path / "data"
    store = open_store(str(data))
    big = os.urandom(1_200_000)
    with store.write("A1") as w:
        info = w.put_blob(big, "application/octet-stream")

    class Unlinking:  # the environment, with a copy that first lets "the collector" unlink files
        def __init__(self, env):
            self.env = env

        def __getattr__(self, name):
            return getattr(self.env, name)

        def copy(self, path, **kw):
            for _guid, path_, _st in list(stored_files(str(data))):
                os.unlink(path_)
            return self.env.copy(path, **kw)

    real = store.env
    store.env = Unlinking(real)
    try:
        report = store.copy_to(str(tmp_path / "backup"))
    finally:
        store.env = real
        store.close()
    assert report["blobFiles"] == 1 and report["missing"] == []
    assert not list(stored_files(str(data)))  # the originals are gone
    assert not [n for n in os.listdir(data / "blobs") if n.startswith("backup-")]  # no pins left behind
    restore_copy(str(tmp_path / "backup"), str(tmp_path / "restored"))
    again = open_store(str(tmp_path / "restored"))
    try:
        with again.read("A1") as r:
            assert r.blob(info["blobId"]) == big
    finally:
        again.close()


def test_backup_refuses_a_destination_that_is_not_empty(tmp_path):
    data = new_data_dir(tmp_path, "dora")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "something").write_text("x")
    r = tidings("backup", str(dest), data=data, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "is not empty" in r.stderr
    assert os.listdir(dest) == ["something"]
    r = tidings("backup", str(data / "inside"), data=data, check=False)
    assert r.returncode == 1 and "inside the data directory" in r.stderr


def test_restore_refuses_a_damaged_backup_before_writing_anything(tmp_path):
    data = new_data_dir(tmp_path, "erin")
    tidings("backup", str(tmp_path / "b"), data=data)
    database = tmp_path / "b" / "data.mdb"
    raw = bytearray(database.read_bytes())
    raw[5000] ^= 0xFF
    database.write_bytes(bytes(raw))
    target = tmp_path / "target"
    r = restore(tmp_path / "b", target)
    assert r.returncode == 1 and "damaged" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not target.exists()
    r = restore(tmp_path / "nothing-here", target)
    assert r.returncode == 1 and "no such folder" in r.stderr


def test_restore_replaces_data_only_with_force_and_never_under_a_running_server(tmp_path):
    data = new_data_dir(tmp_path, "fred")
    tidings("backup", str(tmp_path / "b"), data=data)
    other = tmp_path / "other"
    tidings("user", "add", "gina", "--password", "gina-pw", data=other)
    r = restore(tmp_path / "b", other)
    assert r.returncode == 1 and "--force" in r.stderr
    srv = Server(other)
    try:
        r = restore(tmp_path / "b", other, "--force")
        assert r.returncode == 1 and "stop it first" in r.stderr
    finally:
        srv.stop()
    r = restore(tmp_path / "b", other, "--force")
    assert r.returncode == 0, r.stderr
    users = tidings("user", "list", data=other).stdout
    assert "fred" in users and "gina" not in users
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    r = restore(tmp_path / "b", stranger, "--force")
    assert r.returncode == 1 and "holds no tidings data" in r.stderr
    assert (stranger / "notes.txt").read_text() == "mine"


def test_backup_and_restore_explain_themselves_in_help(tmp_path):
    for command in ("backup", "restore"):
        out = tidings(command, "--help", data=tmp_path).stdout
        assert "examples:" in out and "index" in out
