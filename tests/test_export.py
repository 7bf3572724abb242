"""`tidings export`, black-box through the CLI: what it writes, imported again with `tidings import`
into another account, gives back every message byte for byte, with its keywords (standard and
custom), its mailboxes (an email in two mailboxes, a nested mailbox) and its receivedAt; for mbox
(mboxrd) and Maildir++. The messages include body lines starting `From ` and `>From `, a message
without a final line break, CRLF and LF line ends, and a message whose own header has a Status
field that disagrees with its keywords."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Jmap, Server, tidings
from tests.test_durability import new_data_dir

RAW = [
    # (bytes, keywords, mailboxes by name, receivedAt)
    (b"From: a@example.com\r\nSubject: crlf\r\n\r\nFrom the start of a line\r\n>From quoted once\r\n"
     b">>From quoted twice\r\n\r\nFrom x@y Mon Jan  1 00:00:00 2024\r\nend\r\n",
     {"$seen": True, "$flagged": True}, ["Inbox"], "2021-03-04T05:06:07Z"),
    (b"From: b@example.com\nSubject: lf, no final line break\n\nFrom here on\n>From there\nlast line",
     {}, ["Inbox", "Projects"], "2020-01-01T00:00:00Z"),
    (b"From: c@example.com\nSubject: status disagrees\nStatus: RO\nX-Status: AF\n\nbody\n\n",
     {"$answered": True, "custom-label": True}, ["Projects/2024"], "2019-12-31T23:59:59Z"),
    (b"From: d@example.com\nSubject: draft\n\nFrom\n", {"$draft": True, "$forwarded": True, "$junk": True},
     ["Projects"], "2024-02-29T12:00:00Z"),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A data directory whose account holds RAW (made through a real server)."""
    tmp = tmp_path_factory.mktemp("export")
    data = new_data_dir(tmp, "alice")
    srv = Server(data)
    try:
        c = Jmap(srv, "alice", "alice-pw")
        projects = c.ok("Mailbox/set", create={"p": {"name": "Projects"}})["created"]["p"]["id"]
        sub = c.ok("Mailbox/set", create={"s": {"name": "2024", "parentId": projects}})["created"]["s"]["id"]
        ids = {"Inbox": c.mailbox("inbox"), "Projects": projects, "Projects/2024": sub}
        for raw, keywords, boxes, received in RAW:
            blob = c.upload(raw)
            r = c.ok("Email/import", emails={"m": {"blobId": blob["blobId"], "keywords": keywords,
                                                   "mailboxIds": {ids[b]: True for b in boxes},
                                                   "receivedAt": received}})
            assert r["created"], r
    finally:
        srv.stop()
    return data


def account(data: Path, user: str) -> dict:
    """{blobId: (raw bytes, keywords, mailbox paths, receivedAt)} of a user's account."""
    from app.export import mailbox_paths
    from store import open_store

    store = open_store(str(data))
    try:
        account_id = store.user(user)["accountId"]
        with store.read(account_id) as r:
            paths = {k: "/".join(v) for k, v in mailbox_paths(r.mailboxes()).items()}
            out = {}
            for email_id in r.email_ids_by_date(None):
                e = r.email(email_id)
                out[e["blobId"]] = (r.blob(e["blobId"]), sorted(e["keywords"]),
                                    sorted(paths[m] for m in e["mailboxIds"]), e["receivedAt"])
            return out
    finally:
        store.close()


def import_back(target: Path, pieces: list[tuple[str, Path]]) -> None:
    for mailbox, path in pieces:
        r = tidings("import", "--user", "bob", "--mailbox", mailbox, str(path), data=target, check=False)
        assert r.returncode == 0, r.stdout + r.stderr


def test_mbox_export_imports_back_byte_identical_with_keywords_mailboxes_and_received_at(source, tmp_path):
    out = tmp_path / "alice-mail"
    r = tidings("export", "--user", "alice", str(out), data=source)
    assert "exported 5 messages" in r.stdout  # one email is in two mailboxes: written in each
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.mbox")) == [
        "Archive.mbox", "Drafts.mbox", "Inbox.mbox", "Junk.mbox", "Projects.mbox", "Projects/2024.mbox",
        "Sent.mbox", "Trash.mbox"]
    text = (out / "Inbox.mbox").read_bytes()
    assert b"\n>From the start of a line\r\n>>From quoted once\r\n>>>From quoted twice\r\n" in text
    assert text.startswith(b"From b@example.com Wed Jan  1 00:00:00 2020\nX-Tidings-Keywords: (no-eol)\n")
    target = new_data_dir(tmp_path, "bob")
    import_back(target, [("Inbox", out / "Inbox.mbox"), ("Projects", out / "Projects.mbox"),
                         ("Projects/2024", out / "Projects" / "2024.mbox")])
    assert account(target, "bob") == account(source, "alice")


def test_maildir_export_imports_back_byte_identical_with_keywords_mailboxes_and_received_at(source, tmp_path):
    out = tmp_path / "Maildir"
    r = tidings("export", "--user", "alice", str(out) + "/", data=source)
    assert "as maildir" in r.stdout
    names = sorted(os.listdir(out / ".Projects" / "cur"))
    assert [n.rsplit(":2,", 1)[1] for n in names] == ["", "DPa"]  # $junk is custom letter a
    assert (out / ".Projects" / "dovecot-keywords").read_text() == "0 $junk\n"
    assert (out / ".Projects.2024" / "maildirfolder").exists()
    target = new_data_dir(tmp_path, "bob")
    import_back(target, [("Inbox", out), ("Projects", out / ".Projects"),
                         ("Projects/2024", out / ".Projects.2024")])
    assert account(target, "bob") == account(source, "alice")


def test_export_of_one_mailbox_writes_one_file_and_refuses_to_overwrite(source, tmp_path):
    out = tmp_path / "projects.mbox"
    r = tidings("export", "--user", "alice", "--mailbox", "projects", str(out), data=source)
    assert "Projects: 2 messages" in r.stdout
    assert out.read_bytes().count(b"\nX-Tidings-Keywords:") == 2
    r = tidings("export", "--user", "alice", "--mailbox", "projects", str(out), data=source, check=False)
    assert r.returncode == 1 and "exists" in r.stderr and r.stderr.strip().count("\n") == 0
    r = tidings("export", "--user", "alice", "--mailbox", "nope", str(tmp_path / "x.mbox"), data=source,
                check=False)
    assert r.returncode == 1 and "no mailbox" in r.stderr
    r = tidings("export", "--user", "alice", str(tmp_path / "all.mbox"), data=source, check=False)
    assert r.returncode == 1 and "one mbox per mailbox" in r.stderr


def test_import_of_a_foreign_mbox_still_reads_status_fields(tmp_path):
    """Only tidings export's own line replaces Status:/X-Status: as the source of keywords."""
    data = new_data_dir(tmp_path, "carl")
    mbox = tmp_path / "mutt.mbox"
    mbox.write_bytes(b"From someone Mon Jan  1 00:00:00 2024\nFrom: s@example.com\nSubject: s\nStatus: RO\n"
                     b"X-Status: F\n\nhi\n")
    tidings("import", "--user", "carl", str(mbox), data=data)
    [(raw, keywords, boxes, received)] = account(data, "carl").values()
    assert keywords == ["$flagged", "$seen"] and raw.startswith(b"From: s@example.com\n")
    assert received == 1704067200 and boxes == ["Inbox"]


def test_export_explains_itself_in_help(tmp_path):
    out = tidings("export", "--help", data=tmp_path).stdout
    assert "examples:" in out and "X-Tidings-Keywords" in out and "dovecot-keywords" in out
