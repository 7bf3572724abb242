"""Bulk import of existing mail (`tidings import`): mbox files, single .eml files and Maildir folders.

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
"""

from __future__ import annotations

import calendar
import email.utils
import gzip
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .mail.ingest import ingest

MAX_LINE = 1 << 20  # read mbox lines in pieces of at most this many bytes

# `From sender Mon Jan  1 00:00:00 2024`, optionally with seconds missing or a zone before the year
_FROM_DATE = re.compile(
    rb"^From \S*\s+(?:[A-Za-z]{3},?\s+)?([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"\s+(?:([A-Z]{3,4}|[+-]\d{4})\s+)?(\d{4})")
_MONTHS = {m.encode(): i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_HAS_TIME = re.compile(rb"\d{1,2}:\d{2}")
_HEADER_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_ESCAPED_FROM = re.compile(rb"^>+From ")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_DATE_HEADER = re.compile(rb"(?im)^date[ \t]*:((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)")

# RFC 8621 §4.1.1: a keyword is 1-255 printable ASCII characters other than these
_KEYWORD = re.compile(r'^[!#$&\'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]{1,255}$')

MAILDIR_FLAGS = {"S": "$seen", "R": "$answered", "F": "$flagged", "D": "$draft", "P": "$forwarded"}
STATUS_FLAGS = {"R": "$seen"}  # mbox Status: R read, O old (neither new nor seen: ignored)
X_STATUS_FLAGS = {"A": "$answered", "F": "$flagged", "T": "$draft"}  # D (deleted) is ignored


class SourceError(Exception):
    """A file or folder that cannot be imported at all (missing, unreadable, not mail)."""


@dataclass
class RawMessage:
    data: bytes
    where: str  # "file.mbox message 12 (byte 3456)": names it in reports
    received_at: int | None = None  # from the container (mbox From_ line, Maildir mtime)
    keywords: frozenset[str] = frozenset()
    consumed: int = 0  # bytes of the source consumed up to and including this message
    error: str | None = None  # set when the message could not even be read


def valid_keyword(keyword: str) -> bool:
    return bool(_KEYWORD.match(keyword))


# ----------------------------------------------------------------------------------------- sources
@dataclass
class Source:
    path: str
    kind: str  # "mbox", "eml" or "maildir"
    size: int  # bytes on disk, for progress

    def messages(self) -> Iterator[RawMessage]:
        if self.kind == "mbox":
            return read_mbox(self.path)
        if self.kind == "maildir":
            return read_maildir(self.path)
        return read_eml(self.path)


def open_source(path: str) -> Source:
    """Works out what `path` is. Raises SourceError for a missing path or an unknown kind of folder."""
    if os.path.isdir(path):
        if not (os.path.isdir(os.path.join(path, "cur")) or os.path.isdir(os.path.join(path, "new"))):
            raise SourceError(f"{path}: is a folder but not a Maildir (it has no cur/ or new/)")
        return Source(path, "maildir", _maildir_size(path))
    if not os.path.exists(path):
        raise SourceError(f"{path}: no such file or folder")
    try:
        size = os.path.getsize(path)
        with _open_mail_file(path) as (f, _raw):
            head = f.read(4096)
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc
    except (gzip.BadGzipFile, EOFError) as exc:
        raise SourceError(f"{path}: not a readable gzip file ({exc})") from exc
    first = head.lstrip(b"\r\n")
    if first.startswith(b"From ") and not path.lower().endswith(".eml"):
        return Source(path, "mbox", size)
    if first and not _HEADER_FIELD.match(first) and not first.startswith(b"From "):
        raise SourceError(f"{path}: neither an mbox file nor an email message (it does not start with "
                          "'From ' or a header field)")
    return Source(path, "eml", size)


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


def read_mbox(path: str) -> Iterator[RawMessage]:
    """Yields the messages of an mbox file one by one (see the module docstring for the rules)."""
    name = os.path.basename(path)
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

        def finish() -> RawMessage:
            nonlocal count
            count += 1
            if lines and lines[-1] in (b"\n", b"\r\n"):
                lines.pop()  # the blank line mbox adds before the next separator
            data = b"".join(lines)
            consumed = raw.tell() if compressed else pos
            return RawMessage(data, f"{name} message {count} (byte {start_pos})", received,
                              frozenset(keywords), consumed)

        while True:
            line = f.readline(MAX_LINE)
            if not line:
                break
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
                in_headers = True
                start_pos = pos
                pos += len(line)
                prev_blank = False
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
                        if sep and lowered in (b"status", b"x-status"):
                            _status_keywords(lowered, value, keywords)
            prev_blank = line_start and line in (b"\n", b"\r\n")
            lines.append(line)
        if started:
            yield finish()


def read_eml(path: str) -> Iterator[RawMessage]:
    try:
        with _open_mail_file(path) as (f, _raw):
            data = f.read()
        size = os.path.getsize(path)
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc
    yield RawMessage(data, os.path.basename(path), None, frozenset(), size)


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
    for _sub, entry in _maildir_entries(path):
        try:
            total += entry.stat().st_size
        except OSError:
            pass
    return total


def _dovecot_keywords(path: str) -> dict[str, str]:
    """Dovecot's `dovecot-keywords` file maps the lowercase flag letters a..z to keyword names."""
    out = {}
    try:
        with open(os.path.join(path, "dovecot-keywords"), encoding="utf-8", errors="replace") as f:
            for line in f:
                idx, _, word = line.strip().partition(" ")
                if idx.isdigit() and int(idx) < 26 and valid_keyword(word):
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


def read_maildir(path: str) -> Iterator[RawMessage]:
    custom = _dovecot_keywords(path)
    folder = os.path.basename(os.path.normpath(path))
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
        yield RawMessage(data, f"{folder}/{sub}/{entry.name}", int(st.st_mtime), keywords, consumed)


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
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    malformed_examples: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.imported + self.malformed + self.present + len(self.failed)


def _is_fatal(exc: BaseException) -> bool:
    """Storage errors (disk or map full, corrupt environment) end the whole import; anything else
    (a parser failure on one odd message) fails only that message."""
    return type(exc).__module__.split(".")[0] in ("lmdb",) or isinstance(exc, MemoryError)


class _Rollback(Exception):
    pass


class Importer:
    """Feeds messages into one account's mailbox in batched write transactions."""

    def __init__(self, store, account_id: str, mailbox_id: str, keywords: set[str] | frozenset[str] = (),
                 batch_size: int = 500, batch_bytes: int = 32 << 20, txn_seconds: float = 1.0,
                 now: Callable[[], float] = time.time,
                 after_batch: Callable[[dict[str, bytes]], None] | None = None):
        self.store = store
        self.account_id = account_id
        self.mailbox_id = mailbox_id
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

    def run(self, sources: list[Source],
            on_message: Callable[[int, RawMessage], None] | None = None) -> Report:
        """Imports every message of every source; on_message(source index, message) follows
        progress."""
        started = time.monotonic()
        try:
            batch: list[RawMessage] = []
            size = 0
            for index, source in enumerate(sources):
                for msg in source.messages():
                    self.report.bytes += len(msg.data)
                    if msg.error:
                        self.report.failed.append((msg.where, msg.error))
                    elif not msg.data.strip():
                        self.report.failed.append((msg.where, "empty message"))
                    else:
                        batch.append(msg)
                        size += len(msg.data)
                    if len(batch) >= self.batch_size or size >= self.batch_bytes:
                        self._store_batch(batch)
                        batch, size = [], 0
                        self._batch_done()
                    if on_message:
                        on_message(index, msg)
            if batch:
                self._store_batch(batch)
            self._batch_done()
        finally:
            self.report.seconds = time.monotonic() - started
        return self.report

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
                if len(self.report.malformed_examples) < 10:
                    self.report.malformed_examples.append((msg.where, str(defects[0])))
            else:
                self.report.imported += 1

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
                with self.store.write(self.account_id) as writer:
                    t0 = time.monotonic()
                    for i in range(start, len(batch)):
                        try:
                            results.append(self._one(writer, batch[i]))
                        except Exception as exc:
                            if _is_fatal(exc):
                                raise
                            failure = (i, exc)
                            raise _Rollback from exc
                        if time.monotonic() - t0 > self.txn_seconds:
                            stop = i + 1  # commit now; the rest go in the next transaction
                            break
            except _Rollback:
                pass
            if failure is None:
                self._tally(batch[start:stop], results)
                start = stop
                continue
            i, exc = failure
            if i > start:
                with self.store.write(self.account_id) as writer:
                    results = [self._one(writer, m) for m in batch[start:i]]
                self._tally(batch[start:i], results)
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.report.failed.append((batch[i].where, reason[:300]))
            start = i + 1


def find_or_create_mailbox(store, account_id: str, name: str | None) -> tuple[dict, bool]:
    """The mailbox to import into: the inbox when name is None; else the mailbox with that name
    (case-insensitive; top-level first) or that role; else a `/`-separated path of names, created
    as needed. Returns (mailbox, created)."""
    with store.read(account_id) as r:
        boxes = r.mailboxes()
    if name is None:
        for mb in boxes:
            if mb.get("role") == "inbox":
                return mb, False
        name = "Inbox"
    wanted = name.strip()
    if not wanted:
        raise ValueError("the mailbox name is empty")
    folded = wanted.casefold()
    by_name = sorted((mb for mb in boxes if mb["name"].casefold() == folded),
                     key=lambda mb: (mb.get("parentId") is not None, mb["id"]))
    if by_name:
        return by_name[0], False
    for mb in boxes:
        if (mb.get("role") or "").casefold() == folded:
            return mb, False
    parts = [p.strip() for p in wanted.split("/")] if "/" in wanted else [wanted]
    if any(not p for p in parts):
        raise ValueError(f"bad mailbox path {name!r}")
    with store.write(account_id) as w:
        parent = None
        created = False
        current = w.mailboxes()
        for part in parts:
            match = next((mb for mb in current if mb.get("parentId") == parent
                          and mb["name"].casefold() == part.casefold()), None)
            if match is None:
                match = w.create_mailbox({"name": part, "parentId": parent})
                current.append(match)
                created = True
            parent = match["id"]
    return match, created
