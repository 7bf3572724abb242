"""The `tidings` command line: users, import (mbox, .eml, Maildir), errors, serve.

Commands run in-process through `app.cli.main` with a temp `--data`; results are read back through
the store. One test runs `tidings serve` as a real process."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from app.auth import verify_password
from app.cli import main
from app.mailimport import Importer, date_header, maildir_flags, open_source, parse_from_line, read_mbox
from store import open_store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def data(tmp_path):
    return str(tmp_path / "data")


@pytest.fixture
def cli(capsys, monkeypatch, data):
    """cli(*args, stdin=None) -> (exit status, stdout, stderr), with --data set."""
    monkeypatch.delenv("TIDINGS_DATA", raising=False)

    def run(*args, stdin: str | None = None, data_dir: str | None = data):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        argv = list(args) + (["--data", data_dir] if data_dir else [])
        rc = main(argv)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@contextmanager
def opened(data):
    store = open_store(data)
    try:
        yield store
    finally:
        store.close()


def account(data, name="alice"):
    with opened(data) as s:
        return s.user(name)["accountId"]


def mailbox_emails(data, name="alice", mailbox_name=None, role="inbox"):
    """[(email record, raw bytes)] of one mailbox, oldest first."""
    acc = account(data, name)
    with opened(data) as s, s.read(acc) as r:
        boxes = r.mailboxes()
        mb = next(b for b in boxes if (b["name"] == mailbox_name if mailbox_name else b.get("role") == role))
        ids = list(r.email_ids_by_date(mb["id"], descending=False))
        out = []
        for i in ids:
            rec = r.email(i)
            out.append((rec, r.blob(rec["blobId"])))
        return out, mb


def inbox_id(store, acc):
    with store.read(acc) as r:
        return next(b["id"] for b in r.mailboxes() if b["role"] == "inbox")


def counts(out: str) -> dict:
    """The four counts of an import summary."""
    labels = ("imported", "malformed but stored", "already present", "failed")
    found = {}
    for line in out.splitlines():
        label, _, n = line.strip().rpartition(":")
        if label in labels and n.strip().isdigit():
            found[label] = int(n)
    return found


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------------------------- users
def test_user_add_list_passwd_delete(cli, data):
    rc, out, _ = cli("user", "add", "alice", "--password", "pw-one")
    assert rc == 0 and "alice" in out
    rc, _, _ = cli("user", "add", "bob", "--password-stdin", "--email", "bob@example.org",
                   stdin="stdin-pw\n")
    assert rc == 0
    with opened(data) as s:
        alice, bob = s.user("alice"), s.user("bob")
        assert alice["email"] == "alice@localhost"
        assert bob["email"] == "bob@example.org"
        assert verify_password(alice["passwordHash"], "pw-one")
        assert verify_password(bob["passwordHash"], "stdin-pw")
        assert not verify_password(bob["passwordHash"], "stdin-pw\n")
        assert "pw-one" not in alice["passwordHash"]
        with s.read(alice["accountId"]) as r:
            roles = {b["role"] for b in r.mailboxes()}
        assert {"inbox", "drafts", "sent", "archive", "junk", "trash"} <= roles

    rc, out, _ = cli("user", "list")
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "EMAIL", "ACCOUNT"]
    assert lines[1].split() == ["alice", "alice@localhost", alice["accountId"]]
    assert lines[2].split() == ["bob", "bob@example.org", bob["accountId"]]
    # aligned: every column starts at the same offset
    assert len({line.index(acc) for line, acc in zip(lines[1:], [alice["accountId"], bob["accountId"]],
                                                        strict=True)}) == 1

    rc, _, _ = cli("user", "passwd", "alice", "--password", "pw-two")
    assert rc == 0
    with opened(data) as s:
        h = s.user("alice")["passwordHash"]
    assert verify_password(h, "pw-two") and not verify_password(h, "pw-one")

    rc, _, err = cli("user", "delete", "alice")  # not a terminal, no --yes
    assert rc == 1 and "--yes" in one_line_error(err)
    with opened(data) as s:
        assert s.user("alice") is not None

    rc, _, _ = cli("user", "delete", "alice", "--yes")
    assert rc == 0
    with opened(data) as s:
        assert s.user("alice") is None
        assert s.account(alice["accountId"]) is None
        assert [u["name"] for u in s.users()] == ["bob"]


def test_user_errors(cli, data):
    rc, _, err = cli("user", "list")
    assert rc == 1 and "no tidings data" in one_line_error(err)
    assert not os.path.exists(os.path.join(data, "data.mdb"))

    rc, _, err = cli("user", "add", "alice")  # no password, stdin not a terminal
    assert rc == 1 and "--password-stdin" in one_line_error(err)
    rc, _, err = cli("user", "add", "alice", "--password-stdin", stdin="\n")
    assert rc == 1 and "empty" in one_line_error(err)
    rc, _, err = cli("user", "add", "al:ice", "--password", "x")
    assert rc == 1 and "':'" in one_line_error(err)
    rc, _, err = cli("user", "add", "alice", "--password", "x", "--email", "nope")
    assert rc == 1 and "email" in one_line_error(err)

    assert cli("user", "add", "alice", "--password", "x")[0] == 0
    rc, _, err = cli("user", "add", "alice", "--password", "y")
    assert rc == 1 and "already exists" in one_line_error(err)
    rc, _, err = cli("user", "passwd", "nobody", "--password", "y")
    assert rc == 1 and "no user 'nobody'" in one_line_error(err)
    rc, _, err = cli("user", "delete", "nobody", "--yes")
    assert rc == 1 and "no user 'nobody'" in one_line_error(err)
    rc, _, err = cli("user", "add", "bob", "--password", "x", "--password-stdin")
    assert rc == 2 and "not allowed with" in one_line_error(err)


def test_terminal_prompts(cli, data, monkeypatch, capsys):
    """On a terminal: the password is asked twice, deletion asks for the user name."""
    class Tty(io.StringIO):
        def isatty(self):
            return True

    answers = iter(["tty-pw", "tty-pw", "one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr(sys, "stdin", Tty())
    assert main(["user", "add", "alice", "--data", data]) == 0
    capsys.readouterr()
    assert main(["user", "passwd", "alice", "--data", data]) == 1  # "one" != "two"
    assert "do not match" in one_line_error(capsys.readouterr().err)
    with opened(data) as s:
        assert verify_password(s.user("alice")["passwordHash"], "tty-pw")

    monkeypatch.setattr("builtins.input", lambda prompt="": "alicia")
    assert main(["user", "delete", "alice", "--data", data]) == 1
    assert "not confirmed" in capsys.readouterr().err
    with opened(data) as s:
        assert s.user("alice") is not None
    monkeypatch.setattr("builtins.input", lambda prompt="": "alice")
    assert main(["user", "delete", "alice", "--data", data]) == 0
    with opened(data) as s:
        assert s.user("alice") is None


def test_data_option_everywhere(cli, data, monkeypatch, tmp_path):
    assert cli("--data", data, "user", "add", "alice", "--password", "x", data_dir=None)[0] == 0
    rc, out, _ = cli("user", "--data", data, "list", data_dir=None)
    assert rc == 0 and "alice" in out
    rc, out, _ = cli("user", "list", "--data", data, data_dir=None)
    assert rc == 0 and "alice" in out
    monkeypatch.setenv("TIDINGS_DATA", data)
    rc, out, _ = cli("user", "list", data_dir=None)
    assert rc == 0 and "alice" in out
    # the subcommand's --data wins over the main parser's
    other = str(tmp_path / "other")
    assert cli("--data", data, "user", "add", "zed", "--password", "x", "--data", other,
               data_dir=None)[0] == 0
    with opened(other) as s:
        assert s.user("zed") is not None
    with opened(data) as s:
        assert s.user("zed") is None


def test_help_and_version(cli):
    for args in ([], ["serve"], ["user"], ["user", "add"], ["user", "list"], ["user", "passwd"],
                 ["user", "delete"], ["import"]):
        rc, out, _ = cli(*args, "--help", data_dir=None)
        assert rc == 0
        assert "usage: tidings" in out and "examples:" in out, args
    rc, out, _ = cli("--version", data_dir=None)
    assert rc == 0 and out.startswith("tidings ")
    rc, _, err = cli(data_dir=None)
    assert rc == 2 and "required: COMMAND" in one_line_error(err)
    rc, _, err = cli("frobnicate", data_dir=None)
    assert rc == 2 and one_line_error(err).startswith("tidings: error:")


def test_python_dash_m_and_errors_as_a_process(tmp_path):
    env = {**os.environ, "TIDINGS_DATA": str(tmp_path / "d")}
    p = subprocess.run([sys.executable, "-m", "app", "--version"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("tidings ")
    missing = str(tmp_path / "missing.mbox")
    p = subprocess.run([sys.executable, "-m", "app", "import", "--user", "x", missing], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip() == f"tidings import: error: {missing}: no such file or folder"


# -------------------------------------------------------------------------------------------- import
MSG1 = (b"From: Ann <ann@example.org>\nTo: alice@localhost\nSubject: first\n"
        b"Message-ID: <m1@example.org>\nDate: Tue, 02 Jan 2024 10:00:00 +0000\n\nhello\n")
# its body has a line starting "From " after a blank line and one starting ">From ": in the mbox
# file they are written ">From " and ">>From " (mboxrd) and must come back as they were
MSG2 = (b"From: Bob <bob@example.org>\nTo: alice@localhost\nSubject: quoting From\n"
        b"Message-ID: <m2@example.org>\nIn-Reply-To: <m1@example.org>\n\nSee below.\n\n"
        b"From the start, this line begins with From.\n>From a quoted one.\nbye\n")
MSG3_MALFORMED = (b"From: Ca\xefrol <carol@example.org>\nSubject: caf\xe9 \xff\xfe broken\n"
                  b"Content-Type: multipart/mixed\n\nno boundary at all\n")


def mbox(*messages: tuple[bytes, str]) -> bytes:
    """messages as (raw, From_ date): mboxrd-escaped, each followed by a blank line."""
    out = b""
    for raw, date in messages:
        body = b"\n".join(b">" + line if line.lstrip(b">").startswith(b"From ") else line
                          for line in raw.split(b"\n"))
        out += f"From sender@example.org {date}\n".encode() + body + b"\n"
    return out


@pytest.fixture
def alice(cli):
    assert cli("user", "add", "alice", "--password", "pw")[0] == 0
    return "alice"


def test_import_mbox_then_reimport_is_idempotent(cli, data, alice, tmp_path):
    path = tmp_path / "mail.mbox"
    # MSG2 is written already escaped once; mbox() escapes it again as mboxrd does
    path.write_bytes(mbox((MSG1, "Tue Jan  2 10:00:00 2024"), (MSG2, "Wed Jan  3 11:30:15 2024"),
                          (MSG3_MALFORMED, "Thu Jan  4 12:00:00 2024")))
    assert b"\n>From the start" in path.read_bytes() and b"\n>>From a quoted" in path.read_bytes()
    rc, out, err = cli("import", "--user", "alice", str(path))
    assert rc == 0, err
    assert counts(out) == {"imported": 2, "malformed but stored": 1, "already present": 0, "failed": 0}

    emails, inbox = mailbox_emails(data)
    assert inbox["totalEmails"] == 3 and inbox["unreadEmails"] == 3
    assert [raw for _, raw in emails] == [MSG1, MSG2, MSG3_MALFORMED]
    assert emails[0][0]["receivedAt"] == 1704189600  # the From_ line, 2024-01-02 10:00:00 UTC
    assert emails[1][0]["receivedAt"] == 1704281415
    assert emails[0][0]["threadId"] == emails[1][0]["threadId"]  # In-Reply-To joins the thread
    assert b"\n\nFrom the start" in emails[1][1] and b"\n>From a quoted" in emails[1][1]

    rc, out, _ = cli("import", "--user", "alice", str(path))
    assert rc == 0
    assert counts(out) == {"imported": 0, "malformed but stored": 0, "already present": 3, "failed": 0}
    emails, inbox = mailbox_emails(data)
    assert len(emails) == 3 and inbox["totalEmails"] == 3


def test_mbox_reader_unescapes_and_splits(tmp_path):
    body_from = b"Subject: x\n\nparagraph\n\nFrom here on an unescaped line, no date in it\nend\n"
    data = mbox((MSG1, "Tue Jan  2 10:00:00 2024")) + b"From a@b Wed Jan  3 11:30:15 2024\n" + body_from
    data += b"\nFrom c@d Thu Jan  4 12:00:00 2024\r\nSubject: crlf\r\nStatus: RO\r\nX-Status: AF\r\n\r\n"
    data += b">From crlf\r\nbody\r\n\r\n"
    path = tmp_path / "m.mbox"
    path.write_bytes(data)
    msgs = list(read_mbox(str(path)))
    assert [m.data for m in msgs] == [MSG1, body_from,
                                      b"Subject: crlf\r\nStatus: RO\r\nX-Status: AF\r\n\r\nFrom crlf\r\nbody\r\n"]
    assert msgs[2].keywords == {"$seen", "$answered", "$flagged"}
    assert msgs[0].keywords == frozenset()
    assert msgs[-1].consumed == len(data)
    assert msgs[1].received_at == 1704281415
    # gzip is read as it is
    gz = tmp_path / "m.mbox.gz"
    gz.write_bytes(gzip.compress(data))
    assert open_source(str(gz)).kind == "mbox"
    assert [m.data for m in read_mbox(str(gz))] == [m.data for m in msgs]


def test_from_line_and_date_header_parsing():
    assert parse_from_line(b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n") == 1310126914
    assert parse_from_line(b"From - Fri Jul  8 12:08:34 2011\n") == 1310126914
    assert parse_from_line(b"From x@y Fri Jul  8 12:08 2011\n") == 1310126880
    assert parse_from_line(b"From x@y Fri Jul  8 12:08:34 +0200 2011\n") == 1310126914 - 7200
    assert parse_from_line(b"From x@y sometime\n") is None
    assert date_header(b"Subject: a\nDate: Tue, 02 Jan 2024\n 10:00:00 +0100\n\nDate: no\n") == 1704186000
    assert date_header(b"Subject: a\n\nDate: Tue, 02 Jan 2024 10:00:00 +0000\n") is None
    assert date_header(b"Date: garbage\n\n") is None


def test_import_failures_are_reported_not_fatal(cli, data, alice, tmp_path):
    path = tmp_path / "f.mbox"
    path.write_bytes(mbox((MSG1, "Tue Jan  2 10:00:00 2024"), (b"", "Tue Jan  2 10:00:01 2024"),
                          (MSG2, "Tue Jan  2 10:00:02 2024")))
    rc, out, _ = cli("import", "--user", "alice", "--no-progress", str(path))
    assert rc == 1
    assert counts(out) == {"imported": 2, "malformed but stored": 0, "already present": 0, "failed": 1}
    assert "f.mbox message 2" in out and "empty message" in out
    emails, _ = mailbox_emails(data)
    assert [raw for _, raw in emails] == [MSG1, MSG2]


def test_ingest_exception_rolls_back_only_that_message(data, alice, monkeypatch, tmp_path):
    """A message whose ingest raises after writing part of itself leaves no trace; the others in its
    batch are stored."""
    import app.mailimport as mi

    real = mi.ingest

    def flaky(writer, raw, *args, **kwargs):
        if b"BOOM" in raw:
            writer.put_blob(raw, "message/rfc822")  # a partial write that must be rolled back
            raise RuntimeError("parser exploded")
        return real(writer, raw, *args, **kwargs)

    monkeypatch.setattr(mi, "ingest", flaky)
    boom = b"Subject: BOOM\n\nx\n"
    msgs = [b"Subject: m%d\nMessage-ID: <%d@x>\n\nbody %d\n" % (i, i, i) for i in range(7)]
    path = tmp_path / "b.mbox"
    path.write_bytes(mbox(*[(m, f"Tue Jan  2 10:00:{i:02d} 2024")
                            for i, m in enumerate(msgs[:3] + [boom] + msgs[3:])]))
    acc = account(data)
    with opened(data) as store:
        report = Importer(store, acc, inbox_id(store, acc), batch_size=5).run([open_source(str(path))])
    assert report.imported == 7 and report.present == 0
    offset = path.read_bytes().index(b"From sender@example.org Tue Jan  2 10:00:03")
    assert report.failed == [(f"{path} message 4 (byte {offset})", "RuntimeError: parser exploded")]
    emails, inbox = mailbox_emails(data)
    assert [raw for _, raw in emails] == msgs and inbox["totalEmails"] == 7
    with opened(data) as store, store.read(acc) as r:
        assert r.blob_info("G" + hashlib.sha256(boom).hexdigest()) is None


def test_short_transactions_and_small_batches(data, alice, tmp_path):
    msgs = [b"Subject: n%d\n\nbody %d\n" % (i, i) for i in range(12)]
    path = tmp_path / "s.mbox"
    path.write_bytes(mbox(*[(m, f"Tue Jan  2 10:00:{i:02d} 2024") for i, m in enumerate(msgs)]))
    acc = account(data)
    with opened(data) as store:
        report = Importer(store, acc, inbox_id(store, acc), batch_size=5, txn_seconds=0.0,
                          keywords={"$seen"}).run([open_source(str(path))])
    assert report.imported == 12
    emails, inbox = mailbox_emails(data)
    assert [raw for _, raw in emails] == msgs
    assert all(rec["keywords"] == {"$seen": True} for rec, _ in emails)
    assert inbox["unreadEmails"] == 0


def test_import_into_named_and_new_mailboxes(cli, data, alice, tmp_path):
    path = tmp_path / "one.eml"
    path.write_bytes(MSG1)
    assert cli("import", "--user", "alice", "--mailbox", "ARCHIVE", str(path))[0] == 0  # by name
    emails, mb = mailbox_emails(data, role="archive")
    assert [raw for _, raw in emails] == [MSG1]
    assert emails[0][0]["receivedAt"] == 1704189600  # the Date header of an .eml

    other = tmp_path / "two.eml"
    other.write_bytes(MSG2)
    rc, _, err = cli("import", "--user", "alice", "--mailbox", "Lists/Python", str(other))
    assert rc == 0 and "created mailbox 'Lists/Python'" in err
    acc = account(data)
    with opened(data) as s, s.read(acc) as r:
        boxes = r.mailboxes()
    lists = next(b for b in boxes if b["name"] == "Lists")
    python = next(b for b in boxes if b["name"] == "Python")
    assert lists["parentId"] is None and python["parentId"] == lists["id"]
    assert python["totalEmails"] == 1 and python["role"] is None

    # again: the mailbox is found, not created twice; the message is already present
    rc, out, err = cli("import", "--user", "alice", "--mailbox", "Lists/Python", str(other))
    assert rc == 0 and "created" not in err and counts(out)["already present"] == 1
    with opened(data) as s, s.read(acc) as r:
        assert len(r.mailboxes()) == len(boxes)

    third = tmp_path / "three.eml"
    third.write_bytes(b"Subject: to junk\n\nspam\n")
    assert cli("import", "--user", "alice", "--mailbox", "junk", "--keyword", "$Seen", str(third))[0] == 0
    emails, _ = mailbox_emails(data, role="junk")
    assert emails[0][0]["keywords"] == {"$seen": True}


def test_import_maildir_with_flags(cli, data, alice, tmp_path):
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    files = {
        "new/1700000001.M1P1.host": b"Subject: new one\n\nunseen\n",
        "cur/1700000002.M2P1.host:2,S": b"Subject: seen\n\nread\n",
        "cur/1700000003.M3P1.host,S=42:2,FRS": b"Subject: flagged answered\n\nx\n",
        "cur/1700000004.M4P1.host:2,DT": b"Subject: draft trashed\n\ny\n",
        "cur/1700000005.M5P1.host:2,Sa": b"Subject: custom\n\nz\n",
        "tmp/1700000006.M6P1.host": b"Subject: not yet delivered\n\nnope\n",
    }
    for i, (name, raw) in enumerate(sorted(files.items())):
        (md / name).write_bytes(raw)
        os.utime(md / name, (1700000000 + i * 60, 1700000000 + i * 60))
    (md / "dovecot-keywords").write_text("0 $Important\n1 Work\n")
    rc, out, err = cli("import", "--user", "alice", str(md))
    assert rc == 0, err
    emails, inbox = mailbox_emails(data)
    by_subject = {raw.split(b"\n")[0][9:].decode(): rec for rec, raw in emails}
    assert set(by_subject) == {"new one", "seen", "flagged answered", "draft trashed", "custom"}
    assert by_subject["new one"]["keywords"] == {}
    assert by_subject["seen"]["keywords"] == {"$seen": True}
    assert by_subject["flagged answered"]["keywords"] == {"$flagged": True, "$answered": True, "$seen": True}
    assert by_subject["draft trashed"]["keywords"] == {"$draft": True}
    assert by_subject["custom"]["keywords"] == {"$seen": True, "$important": True}
    mtimes = {name: 1700000000 + i * 60 for i, name in enumerate(sorted(files))}
    assert by_subject["seen"]["receivedAt"] == mtimes["cur/1700000002.M2P1.host:2,S"]
    assert inbox["unreadEmails"] == 1  # only "new one": $seen or $draft count as read

    assert maildir_flags("x:2,PS") == {"$forwarded", "$seen"}
    assert maildir_flags("no-info-part") == frozenset()


def test_import_errors(cli, data, alice, tmp_path):
    good = tmp_path / "g.eml"
    good.write_bytes(MSG1)
    rc, _, err = cli("import", "--user", "nobody", str(good))
    assert rc == 1 and one_line_error(err) == "tidings import: error: no user 'nobody' (list them with: tidings user list)"
    missing = tmp_path / "nope.mbox"
    rc, _, err = cli("import", "--user", "alice", str(good), str(missing))
    assert rc == 1 and one_line_error(err) == f"tidings import: error: {missing}: no such file or folder"
    rc, _, err = cli("import", "--user", "alice", "--keyword", "bad word", str(good))
    assert rc == 1 and "bad keyword" in one_line_error(err)
    rc, _, err = cli("import", str(good))
    assert rc == 2 and "--user" in one_line_error(err)
    rc, _, err = cli("import", "--user", "alice", "--mailbox", "A//B", str(good))
    assert rc == 1 and one_line_error(err) == "tidings import: error: bad mailbox path 'A//B'"
    emails, _ = mailbox_emails(data)
    assert emails == []  # nothing was imported by the refused commands
    # bad files (not mail, unreadable, empty) are no error of the command: see tests/test_import_cli.py


def test_storage_error_ends_the_run_and_keeps_what_was_stored(cli, data, alice, monkeypatch, tmp_path):
    """Only a storage error (here a full LMDB map) ends an import; bad files never do."""
    import lmdb

    import app.mailimport as mi

    real = mi.ingest

    def full(writer, raw, *args, **kwargs):
        if b"Subject: m3" in raw:
            raise lmdb.MapFullError("mdb_put: MDB_MAP_FULL: Environment mapsize limit reached")
        return real(writer, raw, *args, **kwargs)

    monkeypatch.setattr(mi, "ingest", full)
    msgs = [b"Subject: m%d\nMessage-ID: <%d@x>\n\nbody %d\n" % (i, i, i) for i in range(5)]
    path = tmp_path / "s.mbox"
    path.write_bytes(mbox(*[(m, f"Tue Jan  2 10:00:{i:02d} 2024") for i, m in enumerate(msgs)]))
    rc, out, err = cli("import", "--user", "alice", "--no-progress", "--batch", "1", str(path))
    assert rc == 1 and out == ""
    assert one_line_error(err).startswith("tidings import: error: stopped after storing 3 messages: "
                                          "MapFullError: the database map is full; nothing was stored "
                                          "(mdb_put: MDB_MAP_FULL")
    emails, _ = mailbox_emails(data)
    assert [raw for _, raw in emails] == msgs[:3]


def test_progress_bar_runs_to_the_end_through_failed_and_empty_files(cli, alice, monkeypatch, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.eml").write_bytes(MSG1)
    (folder / "b.txt").write_bytes(b"not mail at all\n" * 100)
    (folder / "z.eml").write_bytes(b"\n  \n\n")  # last, no messages: the bar still counts its bytes
    (folder / "d.mbox").write_bytes(mbox((MSG2, "Tue Jan  2 10:00:00 2024")))
    (folder / "e.eml").write_bytes(b"")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    rc, out, err = cli("import", "--user", "alice", str(folder))
    assert rc == 1
    assert counts(out) == {"imported": 2, "malformed but stored": 0, "already present": 0, "failed": 1}
    total = sum(p.stat().st_size for p in folder.iterdir())
    final = err.rstrip().split("\r")[-1]
    assert "importing: 100%" in final and "3 msgs" in final, err
    assert f"{total / 1024:.2f}k/{total / 1024:.2f}k" in final, final


def test_progress_bar_follows_bytes_across_sources(capsys):
    from app.cli import _Bar
    from app.mailimport import RawMessage

    bar = _Bar([100, 50])
    bar.message(0, RawMessage(b"x", "a", consumed=60))
    bar.message(0, RawMessage(b"x", "a", consumed=100))
    bar.message(1, RawMessage(b"x", "b", consumed=20))
    assert bar.tqdm.n == 120 and bar.tqdm.total == 150 and bar.count == 3
    bar.close()
    assert "msgs" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- serve
def test_serve_argument_errors(cli, tmp_path):
    rc, _, err = cli("serve", "--tls-cert", str(tmp_path / "c.pem"))
    assert rc == 1 and "go together" in one_line_error(err)
    rc, _, err = cli("serve", "--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem"))
    assert rc == 1 and "no such file" in one_line_error(err)
    rc, _, err = cli("serve", "--search-engine", "lucene")
    assert rc == 2 and "invalid choice" in one_line_error(err)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_demo_answers_session(tmp_path):
    import httpx

    port = _free_port()
    data = str(tmp_path / "data")
    env = {**os.environ, "TIDINGS_DEMO_PASSWORD": "demo-pw"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--demo", "--data", data,
                             "--port", str(port), "--no-access-log"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/.well-known/jmap"
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]
        token = base64.b64encode(b"demo:demo-pw").decode()
        r = httpx.get(url, headers={"Authorization": "Basic " + token}, timeout=10)
        assert r.status_code == 200 and r.json()["username"] == "demo"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert f"http://127.0.0.1:{port}/.well-known/jmap" in out
    assert "demo-pw" not in out  # a chosen password is never printed
    with opened(data) as s:
        assert s.user("demo")["email"] == "demo@localhost"
