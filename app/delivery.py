"""Local delivery: a message handed over by an MTA (the LMTP listener, `app.lmtp`, or a pipe into
`tidings deliver`) goes into a user's mailbox by the same `ingest` as import, so it is threaded,
counted, queued for the indexer and announced on the change bus like any other new mail.

One `deliver` call is one write transaction on the recipient's account; it returns only after the
commit, which is synced, so an MTA is told "delivered" only for mail that is durable.  In the same
transaction the message is remembered by its digest (the envelope sender and the bytes as handed
over), so that the same message handed over again (an MTA retrying a delivery whose "250" it never
read) finds the copy already there instead of storing a second one, and any automatic reply
(`app.vacation`) is queued in it too.

Trace fields (RFC 5321 §4.4): ``Return-Path`` with the envelope sender and a ``Received`` field are
prepended, unless the message already starts with a Return-Path (an MTA's pipe transport that
adds it, Postfix's ``R`` flag).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from app.mail.headers import message_problem, split_header_block
from app.mail.ingest import ingest
from app.mailbox.model import name_key
from app.mailimport import create_mailbox_path
from store import Collection, OverQuota, StorageFull, storage_error

log = logging.getLogger("tidings.delivery")

# what was delivered, by digest, for recognising a message handed over again; kept `KEEP` seconds
# (longer than an MTA keeps retrying: Postfix gives up after 5 days), pruned a few at a time
DELIVERIES = Collection("Delivery", "D", log=None, indexes=("digest", "at"))
KEEP = 7 * 24 * 3600


class NotAMessage(Exception):
    """The input is not mail (empty, or no header field a message has): a permanent refusal."""


class MailboxFull(Exception):
    """The message would take the account over a quota (RFC 9425; `store.OverQuota`): refused,
    nothing stored.  LMTP answers ``552 5.2.2`` (RFC 3463 X.2.2 "mailbox full"), `tidings
    deliver` exits 73 (EX_CANTCREAT): permanent, like the 5xx, so the sender learns of it."""


class TemporaryFailure(Exception):
    """Delivery failed for now (storage full, an I/O error): the MTA should try again later."""

    def __init__(self, message: str, full: bool = False):
        super().__init__(message)
        self.full = full


@dataclass
class Delivered:
    email_id: str
    created: bool  # False: the account already held this message (delivered before)
    defects: list[str] = field(default_factory=list)
    replied: bool = False  # an automatic reply was queued (RFC 3834)


def hostname() -> str:
    return socket.gethostname() or "localhost"


def trace_fields(envelope_sender: str, recipient: str | None, *, protocol: str, helo: str | None = None,
                 peer: str | None = None, by: str | None = None, now: float | None = None) -> bytes:
    """``Return-Path`` and ``Received`` (RFC 5321 §4.4) for a message delivered here."""
    when = format_datetime(datetime.fromtimestamp(time.time() if now is None else now, UTC))
    sender = _clean(envelope_sender)
    parts = []
    if helo or peer:
        parts.append(f"from {_clean(helo) or 'unknown'}" + (f" ([{_clean(peer)}])" if peer else ""))
    parts.append(f"by {_clean(by) or hostname()} (tidings) with {protocol} id {secrets.token_hex(8)}")
    if recipient:
        parts.append(f"for <{_clean(recipient)}>")
    received = "Received: " + "\r\n\t".join(parts) + f"; {when}"
    return f"Return-Path: <{sender}>\r\n{received}\r\n".encode()


def _clean(text: str | None) -> str:
    """Text for a trace field: no line breaks, no angle brackets or control characters."""
    if not text:
        return ""
    return "".join(ch for ch in text if ch.isprintable() and ch not in "<>\r\n")[:256]


def has_return_path(raw: bytes) -> bool:
    return raw[:12].lower() == b"return-path:"


def digest(envelope_sender: str, raw: bytes) -> str:
    return hashlib.sha256(envelope_sender.lower().encode() + b"\0" + raw).hexdigest()[:40]


def check_message(raw: bytes) -> None:
    problem = message_problem(raw)
    if problem is not None:
        raise NotAMessage(problem)


def deliver(store, user: dict, raw: bytes, *, envelope_sender: str, trace: bytes = b"",
            mailbox: str | None = None, now: float | None = None, reply_queue=None) -> Delivered:
    """Stores `trace + raw` in the user's mailbox (the one with role inbox, or the one named
    `mailbox`, created when missing) and returns once it is durable.  reply_queue(writer, mail_from,
    rcpt_to, raw) queues an automatic reply in the same transaction (None: none is sent).
    Raises NotAMessage, MailboxFull (over quota), or TemporaryFailure for anything else."""
    check_message(raw)
    now = time.time() if now is None else now
    key = digest(envelope_sender, raw)
    account_id = user["accountId"]
    try:
        with store.write(account_id) as w:
            earlier = _earlier(w, key)
            if earlier is not None:
                return Delivered(earlier["id"], created=False)
            mailbox_id = _mailbox_id(w, mailbox)
            record, created, defects = ingest(w, trace + raw, {mailbox_id: True}, {}, int(now))
            _forget_old(w, now)
            w.create_record(DELIVERIES, {"digest": key, "at": int(now), "emailId": record["id"]})
            replied = False
            if created and reply_queue is not None:
                from app.vacation import reply_for

                reply = reply_for(w, user, envelope_sender, raw, now)
                if reply is not None:
                    reply_queue(w, mail_from="", rcpt_to=[envelope_sender.strip("<>")], raw=reply)
                    replied = True
            return Delivered(record["id"], created, list(defects or []), replied)
    except OverQuota as exc:
        log.warning("delivery to %s refused: %s", user["name"], exc)
        raise MailboxFull(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - whatever it was, the MTA keeps the message and retries
        failure = storage_error(exc)
        if failure is not None:  # the disk's trouble, not the code's: one line, no traceback
            log.warning("delivery to %s failed: %s", user["name"], failure.logged())
            raise TemporaryFailure(str(failure), full=isinstance(failure, StorageFull)) from exc
        log.exception("delivery to %s failed", user["name"])
        raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc


def _earlier(w, key: str) -> dict | None:
    """The email an earlier delivery of the same message made, if it is still there."""
    for record_id in w.record_ids(DELIVERIES, "digest", equals=key):
        record = w.record(DELIVERIES, record_id)
        email = w.email(record["emailId"]) if record else None
        if email is not None:
            return email
    return None


def _mailbox_id(w, name: str | None) -> str:
    boxes = w.mailboxes()
    if name is None:
        for mb in boxes:
            if mb.get("role") == "inbox":
                return mb["id"]
        name = "Inbox"
    wanted = name_key(name.strip())
    for mb in sorted(boxes, key=lambda mb: (mb.get("parentId") is not None, mb["id"])):
        if name_key(mb["name"]) == wanted or (mb.get("role") or "") == name.strip().lower():
            return mb["id"]
    parts = [p.strip() for p in name.split("/")]
    return create_mailbox_path(w, parts)["id"]


def _forget_old(w, now: float, limit: int = 20) -> None:
    old = []
    for record_id in w.record_ids(DELIVERIES, "at", hi=int(now - KEEP)):
        old.append(record_id)
        if len(old) >= limit:
            break
    for record_id in old:
        w.destroy_record(DELIVERIES, record_id)


def split_envelope_lead(raw: bytes) -> tuple[bytes, str | None]:
    """A message from a pipe may start with an mbox ``From sender date`` line (Postfix's ``F``
    flag): returns the message without it and the sender it names."""
    if raw.startswith(b"From "):
        line, _, rest = raw.partition(b"\n")
        words = line[5:].decode("latin-1").split()
        sender = words[0] if words else None
        return rest, (None if sender in (None, "MAILER-DAEMON") else sender)
    return raw, None


def return_path(raw: bytes) -> str | None:
    """The address of a Return-Path field the message starts with ("" for <>)."""
    if not has_return_path(raw):
        return None
    fields, _ = split_header_block(raw)
    value = fields[0][1].strip() if fields else ""
    return value.strip("<>").strip()
