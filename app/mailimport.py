"""Bulk import of existing mail (`tidings import`): mbox files, single .eml files, plain folders of
such files, and Maildir folders.

Readers are generators that yield one `RawMessage` at a time, so memory stays flat whatever the size
of the archive: an mbox is split on its `From ` lines as it is read, line by line. The `Importer`
hands messages to `app.mail.ingest.ingest` (the one path by which mail enters the store) in batches,
one store write transaction per batch. A batch is cut after `batch_size` messages, `batch_bytes`
bytes or `txn_seconds` inside its transaction, so a running server is never kept waiting long for
the write lock. Re-importing is harmless: a message whose bytes the account already holds is
counted as "already present" and not stored again.

Formats:
- mbox (mboxrd and the common mboxo): a message starts at a `From ` line at the start of the file
  or after a blank line; later separators must carry a time (`From sender Mon Jan  1 00:00:00 2024`),
  so an unescaped "From here on..." paragraph in a body does not split a message. `>From ` lines
  lose one `>` (mboxrd unescaping); the blank line mbox puts after each message is dropped. The
  separator's date becomes receivedAt; `Status:`/`X-Status:` headers (mutt, Thunderbird) give
  keywords. A gzip-compressed mbox is read as it is.
- .eml: one message per file; receivedAt from its Date header.
- Maildir: the messages in `cur/` and `new/`; receivedAt from the file's mtime (the delivery
  time, as Dovecot uses it); flags from the file name: S $seen, R $answered, F $flagged,
  D $draft, P $forwarded (T, "trashed", is ignored), and Dovecot's lowercase keyword letters
  when a `dovecot-keywords` file names them. Maildir++ subfolders (`.Sent` etc.) are separate
  Maildirs: import each with its own `--mailbox`.
- A plain folder (no cur/ or new/): each regular file directly in it is a source of its own, an
  .eml or an mbox as its start says, in name order. Hidden files are left out; subfolders are not
  entered (a subfolder is another mailbox: import it on its own) and are listed in the report.

Bad input never ends the run (`Importer.run`): a file that cannot be read, a gzip file that is
corrupt, a file or message that is not mail (`app.mail.mime.message_problem`: no header field a
message has) is a failure of that file or message, with its reason, and the rest is imported. An
empty file (or an mbox or folder without messages) is noted as "no messages" and is no failure.
Only storage errors (a full disk or map) end the run. A UTF-8 byte-order mark and blank lines in
front of a file's first line are dropped. The target mailbox is created only when a message is
about to be stored in it, so an import that stores nothing creates nothing.
"""

from __future__ import annotations

import calendar
import email.utils
import gzip
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from store import OverQuota, ids, storage_error

from .mail.ingest import ingest
from .mail.mime import message_problem
from .mailbox.model import name_key, normalize_name

MAX_LINE = 1 << 20  # read mbox lines in pieces of at most this many bytes
SNIFF = 1 << 16  # bytes read from the start of a file to tell what it is
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark some editors write in front of a text file
RELEASE_EVERY = 100  # messages stored between two releases of the store's mapped pages

# `From sender Mon Jan  1 00:00:00 2024`, optionally with seconds missing or a zone before the year
_FROM_DATE = re.compile(
    rb"^From \S*\s+(?:[A-Za-z]{3},?\s+)?([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"\s+(?:([A-Z]{3,4}|[+-]\d{4})\s+)?(\d{4})")
_MONTHS = {m.encode(): i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_HAS_TIME = re.compile(rb"\d{1,2}:\d{2}")
_HEADER_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_ESCAPED_FROM = re.compile(rb"^>+From ")
# a first line that is one of these fields makes a message mail for message_problem: the common
# case, answered without parsing the header section (message_problem takes about 10 us a message)
_MAIL_START = re.compile(rb"(?i)(?:return-path|received|delivered-to|from|date|subject|to|message-id"
                         rb"|mime-version|x-original-to|envelope-to):")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_DATE_HEADER = re.compile(rb"(?im)^date[ \t]*:((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)")

# RFC 8621 §4.1.1: a keyword is 1-255 printable ASCII characters other than these
_KEYWORD = re.compile(r'^[!#$&\'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]{1,255}$')

MAILDIR_FLAGS = {"S": "$seen", "R": "$answered", "F": "$flagged", "D": "$draft", "P": "$forwarded"}
STATUS_FLAGS = {"R": "$seen"}  # mbox Status: R read, O old (neither new nor seen: ignored)
X_STATUS_FLAGS = {"A": "$answered", "F": "$flagged", "T": "$draft"}  # D (deleted) is ignored
# `tidings export` writes the keywords of a message in an mbox on this line right after the
# `From ` line (app/export.py); read back and dropped, like the `From ` line
KEYWORDS_FIELD = b"X-Tidings-Keywords:"
NO_EOL = "(no-eol)"  # on that line: the message's last line has no line break
EXPORTED_NAME = re.compile(r"\.tidings(?:[:!;]2,|$)")  # a Maildir file name tidings export made


def parse_keywords_field(line: bytes) -> tuple[frozenset[str], bool] | None:
    """(keywords, no final line break) of an `X-Tidings-Keywords:` line, or None for another line."""
    if line[:len(KEYWORDS_FIELD)].lower() != KEYWORDS_FIELD.lower():
        return None
    words = line[len(KEYWORDS_FIELD):].decode("ascii", "replace").split()
    return frozenset(w.lower() for w in words if w != NO_EOL and valid_keyword(w)), NO_EOL in words


class SourceError(Exception):
    """A command-line path that cannot be imported at all (it does not exist)."""


@dataclass
class RawMessage:
    data: bytes
    where: str  # "file.mbox message 12 (byte 3456)": names it in reports
    received_at: int | None = None  # from the container (mbox From_ line, Maildir mtime)
    keywords: frozenset[str] = frozenset()
    consumed: int = 0  # bytes of the source consumed up to and including this message
    error: str | None = None  # set when the message (or its whole file) could not even be read
    # written by `tidings export` (its mbox line, its Maildir file names): the message belongs in the
    # target mailbox also when the account holds it already (an email in several mailboxes is in
    # each mailbox's export); other already present messages are left as they are
    place: bool = False


def valid_keyword(keyword: str) -> bool:
    return bool(_KEYWORD.match(keyword))


def strip_lead(data: bytes) -> bytes:
    """A message file without the UTF-8 byte-order mark and blank lines in front of its first line:
    neither is part of the message (an empty first line would make the whole file its body)."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    return data.lstrip(b"\r\n")


# ----------------------------------------------------------------------------------------- sources
SUBFOLDER_NOTE = "a folder inside the folder, not imported (import it with its own command)"


@dataclass
class Source:
    """One thing to read messages from. kind: "mbox", "eml", "maildir"; "empty" (no messages);
    "bad" (error says why it cannot be imported: unreadable, corrupt gzip, not mail); "skipped"
    (note says why); None for a file in a folder, looked at only when its turn comes."""

    path: str
    kind: str | None
    size: int  # bytes on disk, for progress
    where: str = ""  # how reports name it: the path as given on the command line
    error: str | None = None
    note: str | None = None

    def __post_init__(self):
        self.where = self.where or self.path

    def messages(self) -> Iterator[RawMessage]:
        if self.kind is None:
            self.kind, self.error = sniff(self.path)
        if self.kind == "mbox":
            return read_mbox(self.path, self.where)
        if self.kind == "maildir":
            return read_maildir(self.path, self.where)
        if self.kind == "eml":
            return read_eml(self.path, self.where)
        if self.kind == "bad":
            return iter([RawMessage(b"", self.where, consumed=self.size, error=self.error)])
        return iter(())


def read_problem(exc: BaseException) -> str:
    """The reason a file could not be read, for reports."""
    if isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error)):
        return f"not a readable gzip file ({exc})"
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror or exc}"
    return str(exc)


def sniff(path: str) -> tuple[str, str | None]:
    """What the file at path holds, from its start: ("mbox" | "eml" | "empty", None), or ("bad",
    reason) for a file that cannot be read or is not mail."""
    try:
        with _open_mail_file(path) as (f, _raw):
            head = f.read(SNIFF)
            if head.startswith(BOM):
                head = head[len(BOM):]
            while not head.strip():  # only white space so far
                more = f.read(SNIFF)
                if not more:
                    return "empty", None
                head = more.lstrip()
    except (OSError, EOFError, zlib.error) as exc:
        return "bad", read_problem(exc)
    first = head.lstrip(b"\r\n")
    if first.startswith(b"From ") and not _HEADER_FIELD.match(first):
        if not path.lower().endswith(".eml"):
            return "mbox", None
        return "eml", None
    if _HEADER_FIELD.match(first):
        return "eml", None  # whether its fields make it mail is judged per message
    problem = message_problem(first)  # a stray first line may still be followed by a header
    if problem is None:
        return "eml", None
    return "bad", problem


def open_source(path: str) -> Source:
    """The source of one file or Maildir folder. Raises SourceError for a path that does not exist;
    any other problem (unreadable, not mail) is carried by the Source and reported when it is read."""
    if os.path.isdir(path):
        if _is_maildir(path):
            return Source(path, "maildir", _maildir_size(path))
        raise SourceError(f"{path}: is a folder but not a Maildir (open_sources reads each file in it)")
    if not os.path.exists(path):
        raise SourceError(f"{path}: no such file or folder")
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    kind, error = sniff(path)
    return Source(path, kind, size, error=error)


def open_sources(path: str) -> list[Source]:
    """The sources a command-line path names: a file or a Maildir is one; a plain folder gives one
    per regular file directly in it, by name (hidden files left out; subfolders listed as skipped;
    an empty folder is one "empty" source). Raises SourceError for a path that does not exist."""
    if not os.path.isdir(path):
        return [open_source(path)]
    if _is_maildir(path):
        return [Source(path, "maildir", _maildir_size(path))]
    try:
        with os.scandir(path) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        return [Source(path, "bad", 0, error=f"cannot read the folder: {exc.strerror or exc}")]
    sources = []
    for entry in entries:
        full = os.path.join(path, entry.name)
        try:
            if entry.is_dir():
                sources.append(Source(full, "skipped", 0, note=SUBFOLDER_NOTE))
            elif entry.is_file():
                sources.append(Source(full, None, entry.stat().st_size))
            else:
                sources.append(Source(full, "skipped", 0, note="not a regular file, not imported"))
        except OSError as exc:
            sources.append(Source(full, "bad", 0, error=read_problem(exc)))
    return sources or [Source(path, "empty", 0)]


def _is_maildir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "cur")) or os.path.isdir(os.path.join(path, "new"))


class _open_mail_file:
    """Opens a file for reading, transparently gunzipping; yields (stream, raw file) so that progress
    can follow the position in the file on disk."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.raw = open(self.path, "rb")  # noqa: SIM115
        try:
            magic = self.raw.read(2)
            self.raw.seek(0)
            self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb") if magic == b"\x1f\x8b" else self.raw
        except BaseException:
            self.raw.close()
            raise
        return self.stream, self.raw

    def __exit__(self, *exc):
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()


def parse_from_line(line: bytes) -> int | None:
    """The UTC timestamp of an mbox `From ` separator line, or None."""
    m = _FROM_DATE.match(line)
    if not m:
        return None
    month = _MONTHS.get(m.group(1).title())
    if month is None:
        return None
    try:
        day, hour, minute = int(m.group(2)), int(m.group(3)), int(m.group(4))
        second = int(m.group(5) or 0)
        year = int(m.group(7))
        ts = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    zone = m.group(6)
    if zone and zone[:1] in b"+-":
        offset = (int(zone[1:3]) * 60 + int(zone[3:5])) * 60
        ts -= offset if zone[:1] == b"+" else -offset
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return ts


def _status_keywords(name: bytes, value: bytes, into: set[str]) -> None:
    table = STATUS_FLAGS if name == b"status" else X_STATUS_FLAGS
    for ch in value.strip().decode("ascii", "replace"):
        if ch in table:
            into.add(table[ch])


def read_mbox(path: str, where: str | None = None) -> Iterator[RawMessage]:
    """Yields the messages of an mbox file one by one (see the module docstring for the rules)."""
    name = where or os.path.basename(path)
    with _open_mail_file(path) as (f, raw):
        compressed = f is not raw
        pos = 0  # bytes of (uncompressed) input read so far
        lines: list[bytes] = []
        received: int | None = None
        keywords: set[str] = set()
        in_headers = False
        started = False  # a separator has been seen
        start_pos = 0
        count = 0
        prev_blank = True
        at_line_start = True
        lead = False

        exported: tuple[frozenset[str], bool] | None = None  # the X-Tidings-Keywords line's

        def finish() -> RawMessage:
            nonlocal count
            count += 1
            if lines and lines[-1] in (b"\n", b"\r\n"):
                lines.pop()  # the blank line mbox adds before the next separator
            data = b"".join(lines)
            if exported is not None and exported[1] and data.endswith(b"\n"):
                data = data[:-1]  # the message had no final line break (tidings export said so)
            consumed = raw.tell() if compressed else pos
            found = exported[0] if exported is not None else frozenset(keywords)
            return RawMessage(data, f"{name} message {count} (byte {start_pos})", received, found, consumed,
                              place=exported is not None)

        while True:
            line = f.readline(MAX_LINE)
            if not line:
                break
            if pos == 0 and line.startswith(BOM):
                pos += len(BOM)
                line = line[len(BOM):]
            line_start = at_line_start
            at_line_start = line.endswith(b"\n")
            if (line_start and prev_blank and line.startswith(b"From ")
                    and (not started or _HAS_TIME.search(line))):
                if started:
                    yield finish()
                started = True
                lines = []
                received = parse_from_line(line)
                keywords = set()
                exported = None
                in_headers = True
                start_pos = pos
                pos += len(line)
                prev_blank = False
                lead = True  # the next line may be tidings export's X-Tidings-Keywords line
                continue
            if lead:
                lead = False
                exported = parse_keywords_field(line) if line_start else None
                if exported is not None:  # envelope, like the From line: not part of the message
                    pos += len(line)
                    continue
            pos += len(line)
            if not started and not line.strip():
                continue  # blank lines before the first separator
            if not started:
                # text before the first separator: not mbox after all; treat it as one message
                started = True
                in_headers = True
                start_pos = 0
            if line_start:
                if _ESCAPED_FROM.match(line):
                    line = line[1:]
                if in_headers:
                    if line in (b"\n", b"\r\n"):
                        in_headers = False
                    elif line[:1] in (b"S", b"s", b"X", b"x"):
                        head, sep, value = line.partition(b":")
                        lowered = head.strip().lower()
                        if sep and lowered in (b"status", b"x-status") and exported is None:
                            _status_keywords(lowered, value, keywords)
            prev_blank = line_start and line in (b"\n", b"\r\n")
            lines.append(line)
        if started:
            yield finish()


def read_eml(path: str, where: str | None = None) -> Iterator[RawMessage]:
    """Yields the one message of an .eml file. A read error is raised (Importer.run reports it)."""
    with _open_mail_file(path) as (f, raw):
        data = f.read()
        size = raw.tell()
    yield RawMessage(strip_lead(data), where or os.path.basename(path), None, frozenset(), size)


def _maildir_entries(path: str) -> Iterator[tuple[str, os.DirEntry]]:
    for sub in ("new", "cur"):
        folder = os.path.join(path, sub)
        if not os.path.isdir(folder):
            continue
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                yield sub, entry


def _maildir_size(path: str) -> int:
    total = 0
    try:
        for _sub, entry in _maildir_entries(path):
            try:
                total += entry.stat().st_size
            except OSError:
                pass
    except OSError:
        pass  # an unreadable cur/ or new/ is reported when the Maildir is read
    return total


def _dovecot_keywords(path: str) -> dict[str, str]:
    """Dovecot's `dovecot-keywords` file maps the lowercase flag letters a..z to keyword names."""
    out = {}
    try:
        with open(os.path.join(path, "dovecot-keywords"), encoding="utf-8", errors="replace") as f:
            for line in f:
                idx, _, word = line.strip().partition(" ")
                if idx.isascii() and idx.isdigit() and int(idx) < 26 and valid_keyword(word):
                    out[chr(ord("a") + int(idx))] = word.lower()
    except OSError:
        pass
    return out


def maildir_flags(filename: str, custom: dict[str, str] | None = None) -> frozenset[str]:
    """Keywords from a Maildir file name's info part (`...:2,FRS`)."""
    for marker in (":2,", "!2,", ";2,"):
        if marker in filename:
            flags = filename.rsplit(marker, 1)[1]
            break
    else:
        return frozenset()
    out = set()
    for ch in flags:
        if ch in MAILDIR_FLAGS:
            out.add(MAILDIR_FLAGS[ch])
        elif custom and ch in custom:
            out.add(custom[ch])
    return frozenset(out)


def read_maildir(path: str, where: str | None = None) -> Iterator[RawMessage]:
    custom = _dovecot_keywords(path)
    folder = os.path.normpath(where) if where else os.path.basename(os.path.normpath(path))
    consumed = 0
    for sub, entry in _maildir_entries(path):
        try:
            st = entry.stat()
            with open(entry.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue  # moved or expunged by a running mail client since the listing
        except OSError as exc:
            yield RawMessage(b"", f"{folder}/{sub}/{entry.name}", None, frozenset(), consumed,
                             error=f"unreadable: {exc.strerror or exc}")
            continue
        consumed += st.st_size
        keywords = maildir_flags(entry.name, custom) if sub == "cur" else frozenset()
        yield RawMessage(strip_lead(data), f"{folder}/{sub}/{entry.name}", int(st.st_mtime), keywords,
                         consumed, place=bool(EXPORTED_NAME.search(entry.name)))


def date_header(data: bytes) -> int | None:
    """The Date header of a raw message as a UTC timestamp, or None if missing or unparseable."""
    head = data[: 1 << 18]
    m = _HEADER_END.search(head)
    if m:
        head = head[: m.start()]
    found = _DATE_HEADER.search(head)
    if not found:
        return None
    value = re.sub(rb"\r?\n[ \t]", b" ", found.group(1)).decode("ascii", "replace").strip()
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    try:
        if parsed.tzinfo is None:
            return calendar.timegm(parsed.timetuple())
        return int(parsed.timestamp())
    except (OverflowError, ValueError, OSError):
        return None


# ---------------------------------------------------------------------------------------- importer
@dataclass
class Report:
    imported: int = 0  # stored, parsed cleanly
    malformed: int = 0  # stored, with parser defects
    present: int = 0  # the account already held these exact bytes
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, reason): messages or files
    malformed_examples: list[tuple[str, str]] = field(default_factory=list)
    defect_counts: dict[str, int] = field(default_factory=dict)  # category -> messages with it
    notes: list[tuple[str, str]] = field(default_factory=list)  # (where, note): "no messages", skipped
    bytes: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.imported + self.malformed + self.present + len(self.failed)


def _message_problem(data: bytes) -> str | None:
    """Why data is not a message to store ("empty message", "not an email message ..."), or None."""
    if _MAIL_START.match(data):
        return None
    if not data.strip():
        return "empty message"
    return message_problem(data)


def is_fatal(exc: BaseException) -> bool:
    """Storage errors (disk or map full, corrupt environment) end the whole import; anything else
    (a parser failure on one odd message) fails only that message."""
    return (type(exc).__module__.split(".")[0] in ("lmdb",) or isinstance(exc, MemoryError)
            or storage_error(exc) is not None)  # e.g. ENOSPC writing a large message's blob file


class _Rollback(Exception):
    pass


class Importer:
    """Feeds messages into one account's mailbox in batched write transactions.

    mailbox_id is the target; when it is None the mailbox `create_path` (a list of names, see
    `find_mailbox`) is created in the transaction that stores the first message not already in the
    account, so that an import that stores nothing creates nothing (`created_mailbox` tells)."""

    def __init__(self, store, account_id: str, mailbox_id: str | None, keywords: set[str] | frozenset[str] = (),
                 batch_size: int = 500, batch_bytes: int = 32 << 20, txn_seconds: float = 1.0,
                 now: Callable[[], float] = time.time,
                 after_batch: Callable[[dict[str, bytes]], None] | None = None,
                 create_path: list[str] | None = None):
        if mailbox_id is None and not create_path:
            raise ValueError("no mailbox: give mailbox_id or create_path")
        self.store = store
        self.account_id = account_id
        self.mailbox_id = mailbox_id
        self.create_path = create_path
        self.created_mailbox = False
        self.keywords = frozenset(keywords)
        self.batch_size = max(1, batch_size)
        self.batch_bytes = batch_bytes
        self.txn_seconds = txn_seconds
        self.now = now
        # after_batch(stored) gets {email id: raw bytes} of what a batch stored, e.g. to index it
        # from memory rather than reading every message back out of the store
        self.after_batch = after_batch
        self._stored: dict[str, bytes] = {}
        self.report = Report()
        self.stopped_at: str | None = None  # the message an over-quota refusal stopped the run at

    def run(self, sources: list[Source],
            on_message: Callable[[int, RawMessage], None] | None = None,
            on_source_done: Callable[[int], None] | None = None) -> Report:
        """Imports every message of every source; on_message(source index, message) and
        on_source_done(source index) follow progress. A message or file that cannot be read or is not mail is reported failed and the
        run goes on; only a storage error (see is_fatal) or store.OverQuota (the account's quota is
        reached: what came before is stored, `stopped_at` names the refused message) ends it, raised."""
        started = time.monotonic()
        try:
            batch: list[RawMessage] = []
            size = 0
            for index, source in enumerate(sources):
                count = 0
                for msg in self._read(source):
                    count += 1
                    self.report.bytes += len(msg.data)
                    problem = msg.error or _message_problem(msg.data)
                    if problem:
                        self.report.failed.append((msg.where, problem))
                    else:
                        batch.append(msg)
                        size += len(msg.data)
                    if len(batch) >= self.batch_size or size >= self.batch_bytes:
                        self._store_batch(batch)
                        batch, size = [], 0
                        self._batch_done()
                    if on_message:
                        on_message(index, msg)
                if not count:
                    self.report.notes.append((source.where, source.note or "no messages"))
                if on_source_done:
                    on_source_done(index)
            if batch:
                self._store_batch(batch)
            self._batch_done()
        finally:
            self.report.seconds = time.monotonic() - started
        return self.report

    @staticmethod
    def _read(source: Source) -> Iterator[RawMessage]:
        """source's messages; a read error (unreadable file, corrupt gzip) ends that source with a
        failed entry instead of the run. Only errors raised while reading are caught here."""
        it = source.messages()
        count = 0
        while True:
            try:
                msg = next(it)
            except StopIteration:
                return
            except (OSError, EOFError, zlib.error) as exc:
                reason = read_problem(exc)
                if count:
                    reason += f" (after message {count}; the messages before it are imported)"
                yield RawMessage(b"", source.where, consumed=source.size, error=reason)
                return
            count += 1
            yield msg

    def _received_at(self, msg: RawMessage) -> int:
        if msg.received_at is not None:
            return msg.received_at
        found = date_header(msg.data)
        return found if found is not None else int(self.now())

    def _batch_done(self) -> None:
        stored, self._stored = self._stored, {}
        if self.after_batch:
            self.after_batch(stored)

    def _one(self, writer, msg: RawMessage) -> tuple[bool, list[str]]:
        present = writer.email_by_guid(ids.content_address(msg.data))
        if present is not None:
            # already in the account (as ingest would find): nothing to store, no mailbox to create;
            # but a message of tidings export goes into this mailbox too (see RawMessage.place)
            if msg.place and (self.mailbox_id is None or self.mailbox_id not in present["mailboxIds"]):
                if self.mailbox_id is None:
                    self.mailbox_id = create_mailbox_path(writer, self.create_path)["id"]
                if self.mailbox_id not in present["mailboxIds"]:
                    writer.update_email(present["id"], mailbox_ids={**present["mailboxIds"], self.mailbox_id: True})
            return False, []
        if self.mailbox_id is None:
            self.mailbox_id = create_mailbox_path(writer, self.create_path)["id"]
        keywords = dict.fromkeys(sorted(self.keywords | msg.keywords), True)
        record, created, defects = ingest(writer, msg.data, {self.mailbox_id: True}, keywords,
                                          self._received_at(msg))
        if created:
            self._stored[record["id"]] = msg.data
        return created, list(defects or [])

    def _tally(self, batch: list[RawMessage], results: list[tuple[bool, list[str]]]) -> None:
        for msg, (created, defects) in zip(batch, results, strict=True):
            if not created:
                self.report.present += 1
            elif defects:
                self.report.malformed += 1
                for category in {d.split(":", 1)[0] for d in defects}:
                    self.report.defect_counts[category] = self.report.defect_counts.get(category, 0) + 1
                if len(self.report.malformed_examples) < 10:
                    self.report.malformed_examples.append((msg.where, str(defects[0])))
            else:
                self.report.imported += 1

    @contextmanager
    def _transaction(self) -> Iterator[object]:
        """One write transaction. A mailbox created in it exists only once it commits: when the
        transaction rolls back, it is forgotten (to be created again)."""
        before = self.mailbox_id
        try:
            with self.store.write(self.account_id) as writer:
                yield writer
        except BaseException:
            self.mailbox_id = before
            raise
        if before is None and self.mailbox_id is not None:
            self.created_mailbox = True

    def _store_batch(self, batch: list[RawMessage]) -> None:
        """Ingests a batch in as few transactions as possible. A message whose ingest raises makes
        its transaction roll back (it may have written part of itself); the messages before it are
        then stored again in a transaction of their own, it is reported failed, and the rest go on."""
        start = 0
        while start < len(batch):
            results: list[tuple[bool, list[str]]] = []
            failure: tuple[int, Exception] | None = None
            stop = len(batch)
            try:
                with self._transaction() as writer:
                    t0 = time.monotonic()
                    for i in range(start, len(batch)):
                        try:
                            results.append(self._one(writer, batch[i]))
                        except Exception as exc:
                            if is_fatal(exc):
                                raise
                            failure = (i, exc)
                            raise _Rollback from exc
                        if time.monotonic() - t0 > self.txn_seconds:
                            stop = i + 1  # commit now; the rest go in the next transaction
                            break
                        if (i - start) % RELEASE_EVERY == RELEASE_EVERY - 1:
                            # each lookup in the indexes maps the pages around it (the kernel's
                            # fault-around): a batch alone would map tens of megabytes
                            self.store.release_memory()
            except _Rollback:
                pass
            if failure is None:
                self._tally(batch[start:stop], results)
                start = stop
                continue
            i, exc = failure
            if i > start:
                with self._transaction() as writer:
                    results = [self._one(writer, m) for m in batch[start:i]]
                self._tally(batch[start:i], results)
            if isinstance(exc, OverQuota):  # the account is full: the run stops here (RFC 9425)
                self.stopped_at = batch[i].where
                self._batch_done()  # what was stored is indexed as after any batch
                raise exc
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.report.failed.append((batch[i].where, reason[:300]))
            start = i + 1


def find_mailbox(store, account_id: str, name: str | None) -> tuple[dict | None, list[str]]:
    """The mailbox to import into: the inbox when name is None; else the mailbox with that name
    (case-insensitive; top-level first) or that role. Returns (mailbox, []) when it exists, else
    (None, the `/`-separated path of names to create, see create_mailbox_path). Raises ValueError
    for an empty name or path part."""
    with store.read(account_id) as r:
        boxes = r.mailboxes()
    if name is None:
        for mb in boxes:
            if mb.get("role") == "inbox":
                return mb, []
        name = "Inbox"
    wanted = name.strip()
    if not wanted:
        raise ValueError("the mailbox name is empty")
    folded = name_key(wanted)
    by_name = sorted((mb for mb in boxes if name_key(mb["name"]) == folded),
                     key=lambda mb: (mb.get("parentId") is not None, mb["id"]))
    if by_name:
        return by_name[0], []
    for mb in boxes:
        if (mb.get("role") or "") == wanted.lower():
            return mb, []
    parts = [p.strip() for p in wanted.split("/")] if "/" in wanted else [wanted]
    if any(not p for p in parts):
        raise ValueError(f"bad mailbox path {name!r}")
    return None, parts


def create_mailbox_path(writer, parts: list[str]) -> dict:
    """Inside writer's transaction: the mailbox at the path `parts` from the top, each missing
    level created."""
    parent = None
    current = writer.mailboxes()
    match = None
    for part in parts:
        match = next((mb for mb in current if mb.get("parentId") == parent
                      and name_key(mb["name"]) == name_key(part)), None)
        if match is None:
            match = writer.create_mailbox({"name": normalize_name(part), "parentId": parent})
            current.append(match)
        parent = match["id"]
    return match


def find_or_create_mailbox(store, account_id: str, name: str | None) -> tuple[dict, bool]:
    """find_mailbox, creating the mailbox now when it is missing. Returns (mailbox, created)."""
    mailbox, parts = find_mailbox(store, account_id, name)
    if mailbox is not None:
        return mailbox, False
    with store.write(account_id) as w:
        return create_mailbox_path(w, parts), True
