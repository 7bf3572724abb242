"""The outgoing mail queue: durable in the store, one entry per message to send.

An entry lives in the sender's account (generic collection ``Outbox``; its writes are logged under
the internal type name "Outbox", which no client sees, so that the change bus wakes the deliverer
in whichever process holds that role).  It is written in the same transaction as what asks for
the send (an EmailSubmission create, a vacation reply to a delivered message), so an acknowledged
submission is in the queue, and a rolled-back one never is.

Entry (JSON)::

    {"mailFrom": "a@example.org" | "", "mailParameters": {..} | null,
     "rcptTo": [{"email": "b@example.net", "parameters": {..} | null}, ...],
     "blobId": "G<sha256>",             # the message exactly as it is sent
     "submissionId": "U1" | null,       # the EmailSubmission to keep informed
     "due": 1767225600,                 # epoch seconds of the next attempt; null when started
     "attempts": 0, "created": 1767225600,
     "status": {"b@example.net": {"smtpReply": "...", "delivered": "queued"}}}

A recipient is done once its status is ``yes``, ``no`` or ``unknown`` (relayed); the entry is
removed when every recipient is done.  The message blob is held (`Writer.hold_blob`) while the
entry exists, so blob garbage collection never takes it.
"""

from __future__ import annotations

import time

from store import Collection

OUTBOX = Collection("Outbox", "Q", log="Outbox", indexes=("due", "submissionId"))
QUEUED = "queued"
DONE = ("yes", "no", "unknown")


def enqueue(writer, *, mail_from: str, rcpt_to: list[str] | list[dict], raw: bytes,
            mail_parameters: dict | None = None, submission_id: str | None = None,
            due: float | None = None) -> str:
    """Puts a message in the writer's account's queue, in the writer's transaction; returns the
    entry id.  rcpt_to: addresses, or Address objects with RCPT parameters (RFC 8621 §7)."""
    now = int(time.time())
    rcpts = [r if isinstance(r, dict) else {"email": r, "parameters": None} for r in rcpt_to]
    info = writer.put_blob(raw, "message/rfc822")
    entry = writer.create_record(OUTBOX, {
        "mailFrom": mail_from, "mailParameters": mail_parameters, "rcptTo": rcpts, "blobId": info["blobId"],
        "submissionId": submission_id, "due": int(due if due is not None else now), "attempts": 0,
        "created": now, "status": {r["email"]: {"smtpReply": "250 2.0.0 queued", "delivered": QUEUED}
                                   for r in rcpts}})
    writer.hold_blob(info["blobId"], "outbox:" + entry["id"])
    return entry["id"]


def remove(writer, entry: dict) -> None:
    """Removes a finished or canceled entry and lets go of its message blob."""
    writer.destroy_record(OUTBOX, entry["id"])
    writer.release_blob(entry["blobId"], "outbox:" + entry["id"])


def pending(entry: dict) -> list[dict]:
    """The recipients still to be tried."""
    return [r for r in entry["rcptTo"] if entry["status"].get(r["email"], {}).get("delivered") not in DONE]
