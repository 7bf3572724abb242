"""VacationResponse (RFC 8621 §8) and the automatic replies it sends (RFC 3834).

The object: /get and /set on the type registry.  There is exactly one per account, id
``"singleton"``; /set may only update it (create and destroy answer the ``singleton`` SetError,
RFC 8621 §10.6).  Until first set it reads as disabled with every other property null.  It is kept
in generic storage as one record whose own id never shows: `fetch` maps "singleton" to it.

The replies (`auto_reply`, a pure function, and `reply_for`, which adds the once-per-sender memory
in the store): a message delivered by LMTP or `tidings deliver` is answered when the response is
enabled and the delivery time lies in [fromDate, toDate), and none of RFC 3834's reasons not to
answer holds:

* §2: the sender (the envelope's, i.e. Return-Path) is not null, not MAILER-DAEMON, LISTSERV,
  majordomo, ``owner-*``, ``*-owner`` or ``*-request``, and not one of the user's own addresses;
* §2: the message is not automatic (``Auto-Submitted`` other than ``no``) and not list or bulk
  mail (any ``List-*`` field, ``Precedence: bulk``, ``list`` or ``junk``);
* §2: one of the user's addresses is in To, Cc, Bcc or Resent-To/-Cc/-Bcc (not merely Bcc'd by
  the envelope: mail to a list the user is on, forwarded mail);
* §2: a sender is answered at most once per `PERIOD` (7 days), remembered durably per account.

The reply (§3.1): From the user's address the message was sent to, To the envelope sender,
``Subject: Auto: <original>`` (or the configured subject), In-Reply-To and References,
``Auto-Submitted: auto-replied``, the configured text body (from the HTML one when only that is
set, else a short default) and HTML body; it goes out with the null envelope sender (§3.3).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from app.addresses import addresses_of, may_send_as
from app.mail.headers import (
    has_line_break,
    parse_addresses,
    parse_jmap_date,
    parse_message_ids,
    parse_text,
    split_header_block,
    strip_comments,
)
from app.mail.mime import build_message, html_to_text
from app.protocol.errors import set_error
from app.protocol.registry import VACATION
from app.protocol.types import DataType, Property, data_type
from store import Collection

SINGLETON = "singleton"
PERIOD = 7 * 24 * 3600  # seconds: a sender gets at most one reply in this time (RFC 3834 §2)
DEFAULT_TEXT = "I am away and will read your message when I am back.\r\n"

_FIELDS = ("isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody")
DISABLED = {"id": SINGLETON, "isEnabled": False, "fromDate": None, "toDate": None, "subject": None,
            "textBody": None, "htmlBody": None}

# who was answered when: {"sender": lower-cased address, "at": epoch seconds}
REPLIES = Collection("VacationReply", "R", log=None, indexes=("sender", "at"))


class VacationResponse(DataType):
    name = "VacationResponse"
    capability = VACATION
    methods = ("get", "set")
    collection = Collection("VacationResponse", "V", log="VacationResponse")
    properties = {
        "id": Property("Id", server_set=True),
        "isEnabled": Property("Boolean", default=False),
        "fromDate": Property("UTCDate", nullable=True, default=None),
        "toDate": Property("UTCDate", nullable=True, default=None),
        "subject": Property("String", nullable=True, default=None),
        "textBody": Property("String", nullable=True, default=None),
        "htmlBody": Property("String", nullable=True, default=None),
    }

    def _record_id(self, reader) -> str | None:
        return next(iter(reader.record_ids(self.collection)), None)

    def fetch(self, ctx, reader, obj_id: str) -> dict | None:
        return vacation_of(reader) if obj_id == SINGLETON else None

    def all_ids(self, ctx, reader):
        return [SINGLETON]

    def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
        return {}, set_error("singleton", "there is only one VacationResponse, \"singleton\": update it")

    def validate(self, ctx, reader, obj: dict, current: dict | None, problems: dict[str, str]) -> dict:
        # the subject is written as the reply's Subject field: a line break would end that field
        # (o04), and the reply could not be built at all
        subject = obj.get("subject")
        if isinstance(subject, str) and has_line_break(subject):
            problems["subject"] = "must be one line: no CR, LF or NUL (it becomes the Subject header field)"
        return obj

    def check_destroy(self, ctx, reader, obj: dict, args: dict) -> dict | None:
        return set_error("singleton", "the VacationResponse cannot be destroyed: update isEnabled to false")

    def update(self, ctx, writer, obj_id: str, current: dict, changes: dict) -> dict | None:
        # a new absence, or a new message, is news to everyone: the once-per-sender memory starts
        # over (as Sieve vacation's :handle does for a changed reason, RFC 5230 §4.2)
        turned_on = changes.get("isEnabled") is True and not current.get("isEnabled")
        reworded = any(k in changes and changes[k] != current.get(k) for k in ("subject", "textBody", "htmlBody"))
        if turned_on or reworded:
            for reply_id in list(writer.record_ids(REPLIES)):
                writer.destroy_record(REPLIES, reply_id)
        record_id = self._record_id(writer)
        if record_id is None:
            stored = {k: v for k, v in DISABLED.items() if k != "id"}
            writer.create_record(self.collection, {**stored, **changes})
        else:
            writer.update_record(self.collection, record_id, {**writer.record(self.collection, record_id),
                                                              **changes})
        return None


VACATION_RESPONSE = data_type(VacationResponse())


def vacation_of(reader) -> dict:
    """The account's VacationResponse as /get shows it."""
    record_id = next(iter(reader.record_ids(VACATION_RESPONSE.collection)), None)
    record = reader.record(VACATION_RESPONSE.collection, record_id) if record_id else None
    if record is None:
        return dict(DISABLED)
    return {**DISABLED, **{k: record[k] for k in _FIELDS if k in record}, "id": SINGLETON}


# ------------------------------------------------------------------------------ automatic replies
def is_active(vacation: dict, now: float) -> bool:
    """Enabled, and now in [fromDate, toDate)."""
    if not vacation.get("isEnabled"):
        return False
    start = parse_jmap_date(vacation["fromDate"]) if vacation.get("fromDate") else None
    end = parse_jmap_date(vacation["toDate"]) if vacation.get("toDate") else None
    moment = datetime.fromtimestamp(now, UTC)
    return (start is None or start <= moment) and (end is None or moment < end)


_ROBOT_LOCALS = ("mailer-daemon", "listserv", "majordomo")


def is_robot_sender(sender: str) -> bool:
    """A sender RFC 3834 §2 says never to answer: null, or a mailer or list address."""
    local, at, domain = sender.strip().strip("<>").rpartition("@")
    if not at or not local or not domain:
        return True  # null (<>) or not an address at all
    local = local.lower().strip('"')
    return (local in _ROBOT_LOCALS or local.startswith("owner-") or local.endswith("-owner")
            or local.endswith("-request"))


def _fields(raw: bytes) -> list[tuple[str, str]]:
    fields, _ = split_header_block(raw)
    return fields


def _last(fields: list[tuple[str, str]], name: str) -> str | None:
    found = None
    for n, v in fields:
        if n.lower() == name:
            found = v
    return found


def why_not(user: dict, vacation: dict, envelope_sender: str, raw: bytes, now: float) -> str | None:
    """Why this delivery gets no automatic reply (ignoring the once-per-sender memory), or None."""
    if not is_active(vacation, now):
        return "vacation response not active"
    if is_robot_sender(envelope_sender):
        return "null, mailer or list sender"
    if may_send_as(user, envelope_sender.strip("<>")):
        return "sent by the user"
    fields = _fields(raw)
    names = {n.lower() for n, _ in fields}
    auto = _last(fields, "auto-submitted")
    if auto is not None and strip_comments(auto).strip().lower() != "no":
        return "Auto-Submitted message"
    if any(n.startswith("list-") for n in names):
        return "mailing list message"
    precedence = _last(fields, "precedence")
    if precedence is not None and strip_comments(precedence).strip().lower() in ("bulk", "list", "junk"):
        return "bulk message"
    if _addressed_as(user, fields) is None:
        return "none of the user's addresses in To or Cc"
    return None


_RECIPIENT_FIELDS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


def _addressed_as(user: dict, fields: list[tuple[str, str]]) -> str | None:
    """The first of the user's addresses among the message's recipients, as written there."""
    for name, value in fields:
        if name.lower() in _RECIPIENT_FIELDS:
            for addr in parse_addresses(value):
                if addr.get("email") and may_send_as(user, addr["email"]):
                    return addr["email"]
    return None


def auto_reply(user: dict, vacation: dict, envelope_sender: str, raw: bytes, now: float) -> bytes | None:
    """The RFC 3834 reply to a message delivered to `user` at `now` (epoch seconds), or None when
    none is due (see `why_not`; the once-per-sender rule is `reply_for`'s)."""
    if why_not(user, vacation, envelope_sender, raw, now) is not None:
        return None
    fields = _fields(raw)
    sender = envelope_sender.strip().strip("<>")
    own = _addressed_as(user, fields) or addresses_of(user)[0]
    subject = vacation.get("subject")
    if not subject:
        original = _last(fields, "subject")
        original = parse_text(original).strip() if original is not None else ""
        subject = "Auto: " + (original or "(no subject)")  # RFC 3834 §3.1.5
    message_id = parse_message_ids(_last(fields, "message-id") or "") or []
    references = parse_message_ids(_last(fields, "references") or "") or \
        parse_message_ids(_last(fields, "in-reply-to") or "") or []
    text, html = vacation.get("textBody"), vacation.get("htmlBody")
    if text is None:
        # one line per block of the HTML, without the blank lines its markup leaves
        text = "\n".join(line.strip() for line in html_to_text(html).splitlines() if line.strip()) \
            if html else DEFAULT_TEXT
    create: dict = {
        "from": [{"name": user.get("displayName") or user["name"], "email": own}],
        "to": [{"email": sender}],
        "subject": subject,
        "sentAt": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "header:Auto-Submitted:asText": "auto-replied",  # RFC 3834 §5
        "bodyValues": {"t": {"value": text}},
        "textBody": [{"partId": "t", "type": "text/plain"}],
    }
    if message_id:  # RFC 3834 §3.1.6
        create["inReplyTo"] = message_id[:1]
        create["references"] = [*references, message_id[0]][-20:]
    if html:
        create["bodyValues"]["h"] = {"value": html}
        create["htmlBody"] = [{"partId": "h", "type": "text/html"}]
    reply, error = build_message(create, lambda blob_id: None)
    return reply if not error else None


def reply_for(writer, user: dict, envelope_sender: str, raw: bytes, now: float | None = None) -> bytes | None:
    """Inside the recipient account's write transaction: the reply to send for this delivery, or
    None; a reply returned is remembered (the sender gets no other for `PERIOD`), and the caller
    queues it in the same transaction, so that both happen or neither does."""
    now = time.time() if now is None else now
    vacation = vacation_of(writer)
    if not vacation["isEnabled"]:
        return None
    reply = auto_reply(user, vacation, envelope_sender, raw, now)
    if reply is None:
        return None
    sender = envelope_sender.strip().strip("<>").lower()
    _forget_old(writer, now)
    for record_id in list(writer.record_ids(REPLIES, "sender", equals=sender)):
        record = writer.record(REPLIES, record_id)
        if record and now - record["at"] < PERIOD:
            return None  # answered within the period
        writer.destroy_record(REPLIES, record_id)
    writer.create_record(REPLIES, {"sender": sender, "at": int(now)})
    return reply


def _forget_old(writer, now: float, limit: int = 20) -> None:
    """Drops a few memories older than the period (bounded work per delivery keeps them bounded)."""
    old = []
    for record_id in writer.record_ids(REPLIES, "at", hi=int(now - PERIOD)):
        old.append(record_id)
        if len(old) >= limit:
            break
    for record_id in old:
        writer.destroy_record(REPLIES, record_id)
