"""`tidings export`: a user's mail written back out as mbox files or a Maildir++ tree, such that
`tidings import` brings every message back byte for byte, with its keywords, its mailboxes and
its receivedAt.

mbox (mboxrd):
- Each message is preceded by a `From ` line with the envelope sender (the first From address,
  else MAILER-DAEMON) and receivedAt in UTC (`From alice@example.org Mon Jan  1 00:00:00 2024`),
  which the importer reads back as receivedAt; it is followed by one blank line.
- Lines of the message that start with `From `, `>From `, `>>From ` ... get one more `>` (mboxrd
  quoting); the importer takes exactly one away again.
- The keywords travel in one `X-Tidings-Keywords: $flagged $seen` line written right after the
  `From ` line, before the message's own header: like the `From ` line it is envelope, not message.
  `tidings import` reads it and drops it (it then ignores Status:/X-Status: fields, which stay in
  the message as they were); other mail readers show it as an ordinary extension field. A message
  whose last line has no line break gets ` (no-eol)` there, so that the line break mbox needs
  before the next `From ` line is not added to it on import.
- With --mailbox the mbox is FILE; without, FILE is a folder with one mbox per mailbox, named
  after the mailbox path (`Inbox.mbox`, `Archive.mbox`, `Archive/2019.mbox`).

Maildir (Maildir++):
- The inbox is the top folder; another mailbox is `.Name`, a child `.Parent.Child` (each with
  cur/ new/ tmp/ and a `maildirfolder` file); with --mailbox the folder is that mailbox's Maildir.
- Every message is a file in cur/ holding exactly its bytes, named `<receivedAt>.<email id>.tidings:2,
  <flags>`, its modification time set to receivedAt (the importer reads it back from there).
- Flags: S $seen, R $answered, F $flagged, D $draft, P $forwarded; any other keyword gets a
  letter a..z listed in the folder's `dovecot-keywords` file (Dovecot's convention, which the
  importer reads). Maildir has 26 such letters per folder: keywords beyond those are reported and
  left out.

In folder and file names, `%`, `/` and (Maildir) `.` of a mailbox name are written as `%25`,
`%2F`, `%2E`, and a leading `.` of an mbox name as `%2E`.

An email in several mailboxes is written in each. `tidings import` leaves a message the account
already holds as it is, except one it recognises as written by tidings export (the mbox line
above, the `.tidings:2,` Maildir file names): that one is put into the mailbox being imported too,
so importing each mailbox's file in turn gives the email all its mailboxes back. Everything is read
in one snapshot, so the export is consistent while the server runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
import time
from dataclasses import dataclass, field

from .mailimport import KEYWORDS_FIELD, MAILDIR_FLAGS, NO_EOL

_QUOTE = re.compile(rb"(?m)^(>*From )")
_FLAG_OF = {keyword: letter for letter, keyword in MAILDIR_FLAGS.items()}


def register(sub, common: argparse.ArgumentParser, formatter, parser_class, examples) -> None:
    """Adds `export` to the CLI's subcommands."""
    p = sub.add_parser(
        "export", parents=[common], formatter_class=formatter,
        help="write a user's mail out as mbox or Maildir (tidings import reads it back)",
        description=textwrap.dedent("""
            Writes the messages of a user's mailbox (--mailbox, by name or role), or of all their
            mailboxes, to PATH, exactly as stored: `tidings import` of what it writes gives back
            every message byte for byte, with its keywords, its receivedAt and its mailboxes.

            mbox (the default; mboxrd): each message gets a `From ` line with its sender and
            receivedAt, and an `X-Tidings-Keywords:` line after it with its keywords, which
            `tidings import` reads and drops again; lines starting `From ` or `>From ` get one
            more `>`. With --mailbox PATH is one file; without, PATH is a folder with one file
            per mailbox (Inbox.mbox, Archive.mbox, Archive/2019.mbox ...).

            Maildir (--format maildir, or a PATH ending in `/` or that is a folder): a Maildir++
            tree: the inbox at the top, other mailboxes as .Name and .Parent.Child folders. Each
            message is a file in cur/ with its keywords as flags in its name (S seen, R answered,
            F flagged, D draft, P forwarded; other keywords as letters a-z listed in
            dovecot-keywords) and receivedAt as its modification time.

            PATH must not exist (a folder may exist if empty). The export reads one snapshot: it
            is consistent, also while the server runs. On a terminal a progress bar follows the
            messages. To import back, run tidings import for each file or folder, with the
            mailbox it came from as --mailbox; an email in several mailboxes is in each one's
            file, and importing the next file adds that mailbox to it."""),
        epilog=examples("""
            tidings export --user alice --mailbox Inbox inbox.mbox
            tidings export --user alice alice-mail             (one mbox per mailbox)
            tidings export --user alice --format maildir ~/Maildir
            tidings export --user alice ~/Maildir/              (Maildir: trailing /)
            tidings import --user bob --mailbox Archive/2019 alice-mail/Archive/2019.mbox
            tidings import --user bob --mailbox Archive/2019 ~/Maildir/.Archive.2019
        """))
    p.add_argument("--user", required=True, metavar="NAME", help="whose mail")
    p.add_argument("--mailbox", metavar="NAME", help="only this mailbox (name, A/B path, or role); default: all")
    p.add_argument("--format", choices=("mbox", "maildir"),
                   help="mbox or maildir (default: maildir for a PATH ending in / or an existing folder, else mbox)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    p.add_argument("path", metavar="PATH", help="the mbox file, or folder, to write")
    p.set_defaults(func=cmd_export)


# --------------------------------------------------------------------------------------- formats
def from_line(record: dict) -> bytes:
    """The mbox separator of a message: envelope sender and receivedAt (UTC, asctime)."""
    sender = "MAILER-DAEMON"
    for addr in record.get("from") or ():
        candidate = (addr.get("email") or "").strip()
        if candidate and not any(ch.isspace() or ord(ch) < 33 or ord(ch) > 126 for ch in candidate):
            sender = candidate
            break
    stamp = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(int(record.get("receivedAt") or 0)))
    return f"From {sender} {stamp}\n".encode()


def mbox_entry(record: dict, raw: bytes) -> bytes:
    """One message as the mbox export writes it (see the module docstring)."""
    words = sorted(record.get("keywords") or {})
    eol = raw.endswith(b"\n")
    if not eol:
        words.append(NO_EOL)
    lead = KEYWORDS_FIELD + b"".join(b" " + w.encode() for w in words) + b"\n"
    body = _QUOTE.sub(rb">\1", raw)
    return from_line(record) + lead + body + (b"\n" if eol else b"\n\n")


def _escape(name: str, dots: bool) -> str:
    out = name.replace("%", "%25").replace("/", "%2F")
    if dots:
        out = out.replace(".", "%2E")
    elif out.startswith("."):
        out = "%2E" + out[1:]
    return "".join(ch if ord(ch) >= 32 and ord(ch) != 127 else f"%{ord(ch):02X}" for ch in out)


def mailbox_paths(mailboxes: list[dict]) -> dict[str, list[str]]:
    """{mailbox id: its names from the top}."""
    by_id = {mb["id"]: mb for mb in mailboxes}
    paths: dict[str, list[str]] = {}

    def path(mb_id: str, seen: frozenset = frozenset()) -> list[str]:
        if mb_id not in paths:
            mb = by_id[mb_id]
            parent = mb.get("parentId")
            head = path(parent, seen | {mb_id}) if parent in by_id and parent not in seen else []
            paths[mb_id] = head + [mb["name"]]
        return paths[mb_id]

    for mb_id in by_id:
        path(mb_id)
    return paths


@dataclass
class Report:
    written: list[tuple[str, int, str]] = field(default_factory=list)  # (mailbox path, messages, where)
    messages: int = 0
    bytes: int = 0
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (where, keyword) not representable


class _Maildir:
    """One Maildir folder being written."""

    def __init__(self, path: str, subfolder: bool):
        self.path = path
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)
        if subfolder:
            open(os.path.join(path, "maildirfolder"), "wb").close()
        self.letters: dict[str, str] = {}

    def letter(self, keyword: str) -> str | None:
        if keyword not in self.letters:
            if len(self.letters) >= 26:
                return None
            self.letters[keyword] = chr(ord("a") + len(self.letters))
        return self.letters[keyword]

    def add(self, record: dict, raw: bytes, report: Report) -> None:
        flags = []
        for keyword in sorted(record.get("keywords") or {}):
            letter = _FLAG_OF.get(keyword) or self.letter(keyword)
            if letter is None:
                report.dropped.append((self.path, keyword))
            else:
                flags.append(letter)
        received = int(record.get("receivedAt") or 0)
        name = f"{received}.{record['id']}.tidings:2,{''.join(sorted(flags))}"
        tmp = os.path.join(self.path, "tmp", name)
        with open(tmp, "xb") as f:
            f.write(raw)
        final = os.path.join(self.path, "cur", name)
        os.rename(tmp, final)
        os.utime(final, (received, received))

    def close(self) -> None:
        if self.letters:
            with open(os.path.join(self.path, "dovecot-keywords"), "w", encoding="utf-8") as f:
                for keyword, letter in self.letters.items():
                    f.write(f"{ord(letter) - ord('a')} {keyword}\n")


def export(store, account_id: str, mailbox_id: str | None, fmt: str, path: str, on_message=None) -> Report:
    """Writes the account's mailbox (or every mailbox, for None) to path in fmt ("mbox" or
    "maildir"), from one snapshot; on_message() after each message written."""
    report = Report()
    with store.read(account_id) as r:
        boxes = r.mailboxes()
        paths = mailbox_paths(boxes)
        chosen = [mb for mb in boxes if mailbox_id is None or mb["id"] == mailbox_id]
        # parents before children, the inbox first
        chosen.sort(key=lambda mb: (mb.get("role") != "inbox", [n.casefold() for n in paths[mb["id"]]]))
        for mb in chosen:
            names = paths[mb["id"]]
            shown = "/".join(names)
            if fmt == "mbox":
                target = path if mailbox_id is not None else os.path.join(
                    path, *[_escape(n, dots=False) for n in names[:-1]], _escape(names[-1], dots=False) + ".mbox")
                os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
                folder = None
                out = open(target, "xb")  # noqa: SIM115 - closed below
            else:
                top = mailbox_id is not None or mb.get("role") == "inbox"
                target = path if top else os.path.join(path, "." + ".".join(_escape(n, dots=True) for n in names))
                folder = _Maildir(target, subfolder=not top)
                out = None
            count = 0
            try:
                for email_id in r.email_ids_by_date(mb["id"], descending=False):
                    record = r.email(email_id)
                    raw = r.blob(record["blobId"]) if record else None
                    if raw is None:
                        continue
                    if out is not None:
                        out.write(mbox_entry(record, raw))
                    else:
                        folder.add(record, raw, report)
                    count += 1
                    report.bytes += len(raw)
                    if on_message:
                        on_message()
            finally:
                if out is not None:
                    out.flush()
                    os.fsync(out.fileno())
                    out.close()
                if folder is not None:
                    folder.close()
            report.messages += count
            report.written.append((shown, count, target))
        if fmt == "maildir" and mailbox_id is None and not any(mb.get("role") == "inbox" for mb in chosen):
            _Maildir(path, subfolder=False)  # the top folder is a Maildir in any case
    return report


# ------------------------------------------------------------------------------------------ command
def cmd_export(args: argparse.Namespace) -> int:
    from app.cli import CliError, _data_dir, _open, _user, existing_mailbox

    target = args.path
    fmt = args.format or ("maildir" if target.endswith(("/", os.sep)) or os.path.isdir(target) else "mbox")
    target = os.path.abspath(target)
    single_file = fmt == "mbox" and args.mailbox is not None
    if single_file:
        if os.path.lexists(target):
            raise CliError(f"{args.path} exists: give a new file name")
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            raise CliError(f"{parent}: no such folder")
    else:
        if fmt == "mbox" and target.lower().endswith(".mbox"):
            raise CliError("exporting every mailbox writes one mbox per mailbox into a folder: give a folder "
                           "name (not *.mbox), or one --mailbox")
        if os.path.lexists(target) and not (os.path.isdir(target) and not os.listdir(target)):
            raise CliError(f"{args.path} exists and is not an empty folder: give a new or empty folder")
    store = _open(_data_dir(args))
    started = time.monotonic()
    try:
        user = _user(store, args.user)
        account_id = user["accountId"]
        mailbox_id = None
        if args.mailbox is not None:
            mailbox_id = existing_mailbox(store, account_id, args.user, args.mailbox)["id"]
        bar = None
        if not args.no_progress and sys.stderr.isatty():
            from tqdm import tqdm

            with store.read(account_id) as r:
                total = sum(mb.get("totalEmails") or 0 for mb in r.mailboxes()
                            if mailbox_id is None or mb["id"] == mailbox_id)
            bar = tqdm(total=total, unit="msg", desc="exporting", file=sys.stderr, dynamic_ncols=True)
        try:
            report = export(store, account_id, mailbox_id, fmt, target,
                            on_message=(lambda: bar.update(1)) if bar else None)
        except OSError as exc:
            raise CliError(f"cannot write {exc.filename or target}: {exc.strerror or exc}") from exc
        finally:
            if bar:
                bar.close()
    finally:
        store.close()
    seconds = time.monotonic() - started
    print(f"exported {report.messages} messages ({report.bytes / 1e6:.1f} MB) of {user['name']} as {fmt} "
          f"to {target} in {seconds:.1f} s:")
    for shown, count, where in report.written:
        print(f"  {shown}: {count} messages in {where}")
    for where, keyword in report.dropped[:20]:
        print(f"  not kept: keyword {keyword!r} in {where} (Maildir has letters for 26 keywords per folder)")
    return 1 if report.dropped else 0
