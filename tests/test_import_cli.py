"""Bulk import keeps going (issue 6, class 12): one bad file in a folder or archive is reported with
its reason and the rest is imported; what is not mail is never stored as a clean message; an empty
file creates nothing.

Each test runs the real `tidings import` (a subprocess) on real files in a temp directory, over its
own data directory, and reads the result back through the store (or a served Mailbox/get)."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import pytest

from store import open_store
from tests.conftest import Jmap, Server, tidings

NOT_MAIL = "not an email message: no header field of a message (From, Date, Subject, ...)"


# ------------------------------------------------------------------------------------------ helpers
def message(i: int, extra: str = "") -> bytes:
    return (f"{extra}From: Sender {i} <s{i}@example.org>\nTo: u@example.org\nSubject: message {i}\n"
            f"Message-ID: <m{i}@example.org>\nDate: Tue, 02 Jan 2024 10:{i % 60:02d}:00 +0000\n\n"
            f"body of message {i}\n").encode()


def new_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    tidings("user", "add", "u", "--password", "u-pw", data=data)
    return data


def run_import(data: Path, *args) -> tuple[int, str, str]:
    r = tidings("import", "--user", "u", "--no-progress", *map(str, args), data=data, check=False)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout, r.stderr


def summary(out: str) -> tuple[dict, list[str], list[str]]:
    """(the four counts, the "failed: ..." lines, the "note: ..." lines) of an import summary."""
    labels = ("imported", "malformed but stored", "already present", "failed")
    counts, failed, notes = {}, [], []
    for line in out.splitlines():
        line = line.strip()
        label, _, n = line.rpartition(":")
        if label in labels and n.strip().isdigit():
            counts[label] = int(n)
        elif line.startswith("failed: "):
            failed.append(line[len("failed: "):])
        elif line.startswith("note: "):
            notes.append(line[len("note: "):])
    return counts, failed, notes


def counts(imported=0, malformed=0, present=0, failed=0) -> dict:
    return {"imported": imported, "malformed but stored": malformed, "already present": present,
            "failed": failed}


def mailboxes(data: Path) -> list[dict]:
    store = open_store(str(data))
    try:
        acc = store.user("u")["accountId"]
        with store.read(acc) as r:
            return r.mailboxes()
    finally:
        store.close()


def stored(data: Path, name: str = "Inbox") -> list[bytes]:
    """The raw messages in the mailbox called name, oldest first."""
    store = open_store(str(data))
    try:
        acc = store.user("u")["accountId"]
        with store.read(acc) as r:
            mb = next(b for b in r.mailboxes() if b["name"] == name)
            return [r.blob(r.email(i)["blobId"]) for i in r.email_ids_by_date(mb["id"], descending=False)]
    finally:
        store.close()


def mbox(*messages: bytes) -> bytes:
    out = b""
    for i, raw in enumerate(messages):
        out += f"From sender@example.org Tue Jan  2 10:{i % 60:02d}:00 2024\n".encode() + raw + b"\n"
    return out


@pytest.fixture
def folder_of_47(tmp_path) -> Path:
    """47 message files; m23.eml has no header at all (only body text)."""
    folder = tmp_path / "saved"
    folder.mkdir()
    for i in range(1, 48):
        raw = b"Hi all,\n\nsee you on Monday.\n" if i == 23 else message(i)
        (folder / f"m{i:02d}.eml").write_bytes(raw)
    return folder


# ------------------------------------------------------------------------------------------- folders
def test_folder_with_one_headerless_file_imports_the_other_46_given_as_47_files(tmp_path, folder_of_47):
    data = new_data(tmp_path)
    files = sorted(folder_of_47.iterdir())
    assert len(files) == 47
    rc, out, err = run_import(data, *files)
    assert rc == 1, (out, err)
    assert out.startswith("47 messages ")
    assert summary(out) == (counts(imported=46, failed=1), [f"{folder_of_47 / 'm23.eml'}: {NOT_MAIL}"], [])
    assert len(stored(data)) == 46
    assert b"see you on Monday" not in b"".join(stored(data))


def test_plain_folder_of_message_files_is_imported_file_by_file(tmp_path, folder_of_47):
    """A folder that is not a Maildir: each file in it is a message file (today: refused as "not a
    Maildir")."""
    data = new_data(tmp_path)
    rc, out, err = run_import(data, folder_of_47)
    assert rc == 1, (out, err)
    assert summary(out) == (counts(imported=46, failed=1), [f"{folder_of_47 / 'm23.eml'}: {NOT_MAIL}"], [])
    assert stored(data) == [message(i) for i in range(1, 48) if i != 23]
    # again: all present, the bad one still listed
    rc, out, _ = run_import(data, folder_of_47)
    assert rc == 1 and summary(out)[0] == counts(present=46, failed=1)


def test_plain_folder_leaves_out_subfolders_and_hidden_files_and_reads_mbox_files(tmp_path):
    data = new_data(tmp_path)
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "inner.eml").write_bytes(message(9))
    (folder / ".hidden.eml").write_bytes(message(8))
    (folder / "a.eml").write_bytes(message(1))
    (folder / "b.mbox").write_bytes(mbox(message(2), message(3)))
    (folder / "c").write_bytes(message(4))  # no extension: its start says it is a message
    rc, out, err = run_import(data, folder)
    assert rc == 0, (out, err)
    assert summary(out) == (counts(imported=4), [], [
        f"{folder / 'sub'}: a folder inside the folder, not imported (import it with its own command)"])
    assert sorted(stored(data)) == [message(i) for i in (1, 2, 3, 4)]


# ------------------------------------------------------------------------------------------- not mail
def test_text_files_without_message_fields_are_refused_as_not_mail(tmp_path):
    data = new_data(tmp_path)
    config = tmp_path / "settings.conf"
    config.write_text("# editor settings\nfont: mono\nsize: 12\n\n[colors]\nbg = black\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("Shopping list\n- milk\n- bread\n")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01")
    good = tmp_path / "good.eml"
    good.write_bytes(message(1))
    rc, out, _ = run_import(data, config, notes, photo, good)
    assert rc == 1
    assert summary(out) == (counts(imported=1, failed=3), [
        f"{config}: {NOT_MAIL}", f"{notes}: {NOT_MAIL}", f"{photo}: {NOT_MAIL}"], [])
    assert stored(data) == [message(1)]


def test_mbox_with_one_message_that_is_not_mail_imports_the_rest(tmp_path):
    data = new_data(tmp_path)
    path = tmp_path / "archive.mbox"
    raw = mbox(message(1), b"just a paragraph of text\nand another line\n", message(3), b"", message(5))
    path.write_bytes(raw)
    second = raw.index(b"From sender@example.org Tue Jan  2 10:01:00 2024")
    fourth = raw.index(b"From sender@example.org Tue Jan  2 10:03:00 2024")
    rc, out, _ = run_import(data, path)
    assert rc == 1
    assert summary(out) == (counts(imported=3, failed=2), [
        f"{path} message 2 (byte {second}): {NOT_MAIL}",
        f"{path} message 4 (byte {fourth}): empty message"], [])
    assert stored(data) == [message(1), message(3), message(5)]


def test_maildir_with_one_message_that_is_not_mail_imports_the_rest(tmp_path):
    data = new_data(tmp_path)
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    (md / "cur" / "1.host:2,S").write_bytes(message(1))
    (md / "cur" / "2.host:2,S").write_bytes(b"key=value\n")
    (md / "new" / "3.host").write_bytes(message(3))
    (md / "new" / "4.host").write_bytes(b"")
    rc, out, _ = run_import(data, md)
    assert rc == 1
    counted, failed, notes = summary(out)
    assert counted == counts(imported=2, failed=2) and notes == []
    assert sorted(failed) == [f"{md}/cur/2.host:2,S: {NOT_MAIL}", f"{md}/new/4.host: empty message"]
    assert sorted(stored(data)) == [message(1), message(3)]


# ----------------------------------------------------------------------------------- unreadable files
def test_corrupt_gzip_fails_alone_and_keeps_the_messages_before_the_damage(tmp_path):
    data = new_data(tmp_path)
    whole = gzip.compress(mbox(*[message(i) + os.urandom(3000).hex().encode() + b"\n" for i in range(1, 41)]))
    broken = tmp_path / "broken.mbox.gz"
    broken.write_bytes(whole[: len(whole) // 2])  # cut in the middle
    garbled = tmp_path / "garbled.mbox.gz"
    garbled.write_bytes(b"\x1f\x8b" + b"\x00" * 40)  # a gzip magic and nothing readable
    after = tmp_path / "after.eml"
    after.write_bytes(message(99))
    rc, out, _ = run_import(data, broken, garbled, after)
    assert rc == 1
    counted, failed, notes = summary(out)
    assert len(failed) == 2 and notes == []
    assert re.fullmatch(re.escape(f"{broken}: not a readable gzip file (") + r".+\) \(after message \d+; "
                        r"the messages before it are imported\)", failed[0]), failed[0]
    assert failed[1].startswith(f"{garbled}: not a readable gzip file (")
    kept = stored(data)
    assert 5 < len(kept) < 40 and message(99) in kept
    assert counted == counts(imported=len(kept), failed=2)


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_file_that_cannot_be_read_fails_alone(tmp_path):
    """/proc/self/mem is a regular file whose reading at offset 0 fails (EIO), even for root."""
    data = new_data(tmp_path)
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.eml").write_bytes(message(1))
    (folder / "b.eml").symlink_to("/proc/self/mem")
    (folder / "c.eml").write_bytes(message(3))
    rc, out, _ = run_import(data, folder)
    assert rc == 1
    assert summary(out) == (counts(imported=2, failed=1),
                            [f"{folder / 'b.eml'}: cannot read it: Input/output error"], [])
    assert stored(data) == [message(1), message(3)]


# -------------------------------------------------------------------------------------------- empty
def test_empty_file_is_no_messages_and_creates_no_mailbox(tmp_path):
    data = new_data(tmp_path)
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.mbox"
    blank.write_bytes(b"\n\n  \n")
    folder = tmp_path / "nothing"
    folder.mkdir()
    before = mailboxes(data)
    rc, out, err = run_import(data, "--mailbox", "Old/Letters", empty, blank, folder)
    assert rc == 0, (out, err)
    assert summary(out) == (counts(), [], [f"{empty}: no messages", f"{blank}: no messages",
                                          f"{folder}: no messages"])
    assert out.startswith("0 messages ") and "  mailbox 'Old/Letters' not created: nothing was stored" in out
    assert "created" not in err
    assert mailboxes(data) == before
    srv = Server(data)
    try:
        names = {mb["name"] for mb in Jmap(srv, "u", "u-pw").ok("Mailbox/get", ids=None)["list"]}
    finally:
        srv.stop()
    assert "Old" not in names and "Letters" not in names and "Inbox" in names


def test_mailbox_is_created_with_the_first_message_stored_in_it(tmp_path):
    data = new_data(tmp_path)
    one = tmp_path / "one.eml"
    one.write_bytes(message(1))
    assert run_import(data, one)[0] == 0  # into the inbox
    # only a message the account already holds, and a file that is not mail: nothing to store
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    rc, out, err = run_import(data, "--mailbox", "Later", one, bad)
    assert rc == 1 and summary(out)[0] == counts(present=1, failed=1)
    assert "  mailbox 'Later' not created: nothing was stored" in out and "created" not in err
    assert "Later" not in {mb["name"] for mb in mailboxes(data)}
    two = tmp_path / "two.eml"
    two.write_bytes(message(2))
    rc, out, err = run_import(data, "--mailbox", "Later", bad, one, two)
    assert rc == 1 and summary(out)[0] == counts(imported=1, present=1, failed=1)
    assert "created mailbox 'Later'" in err and "not created" not in out
    assert stored(data, "Later") == [message(2)]


# ------------------------------------------------------------------------------------------ sniffing
def test_message_files_starting_with_any_field_a_bom_or_blank_lines_are_mail(tmp_path):
    data = new_data(tmp_path)
    folder = tmp_path / "odd"
    folder.mkdir()
    files = {
        "return-path.eml": message(1, "Return-Path: <s1@example.org>\n"),
        "x-foo.eml": message(2, "X-Foo: bar\n"),
        "received.txt": message(3, "Received: from mx.example.org by mx2.example.org; "
                                   "Tue, 02 Jan 2024 10:03:00 +0000\n"),
        "bom.eml": b"\xef\xbb\xbf" + message(4),
        "blank-lines-first.eml": b"\n\r\n" + message(5),
        "blank-lines-first.mbox": b"\n\n" + mbox(message(6), message(7)),
        "bom.mbox": b"\xef\xbb\xbf" + mbox(message(8)),
    }
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    rc, out, err = run_import(data, folder)
    assert rc == 0, (out, err)
    assert summary(out) == (counts(imported=8), [], [])
    expected = [files["return-path.eml"], files["x-foo.eml"], files["received.txt"]] + [
        message(i) for i in (4, 5, 6, 7, 8)]  # without the byte-order mark and the blank lines
    assert sorted(stored(data)) == sorted(expected)


def test_the_summary_counts_malformed_messages_by_defect_category(tmp_path):
    data = new_data(tmp_path)
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.eml").write_bytes(message(1))
    (folder / "bad-date.eml").write_bytes(message(2).replace(b"Date: Tue, 02 Jan 2024 10:02:00 +0000",
                                                             b"Date: yesterday-ish"))
    (folder / "stray.eml").write_bytes(message(3, extra="X-First: 1\nFrom old-client  Mon Jan  1 2024\n"))
    (folder / "unclosed.eml").write_bytes(
        message(4).replace(b"\n\nbody", b"\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nbody"))
    status, out, _ = run_import(data, folder)
    assert status == 0
    assert summary(out)[0] == counts(imported=1, malformed=3)
    [line] = [x.strip() for x in out.splitlines() if x.strip().startswith("defects:")]
    assert line == "defects: date-invalid 1, header-stray-line 1, multipart-no-close-boundary 1"
