"""EmailSubmission (RFC 8621 §7): /get, /changes, /query, /queryChanges from the standard machinery,
/set with its implicit Email/set (onSuccessUpdateEmail, onSuccessDestroyEmail).

A create checks what is sent and by whom (identity, From, envelope, recipients, size), stores the
EmailSubmission and puts the message, without its Bcc field, in the outgoing queue
(`app.submission.outbox`) in the same transaction; the deliverer (`app.submission.deliverer`)
sends it and keeps ``undoStatus`` and ``deliveryStatus`` current.

Decisions (§7 leaves them to the server):
* Delayed send is FUTURERELEASE (RFC 4865): ``HOLDFOR``/``HOLDUNTIL`` on the envelope's mailFrom,
  up to ``maxDelayedSend``; the server holds the message itself and does not pass the parameter on.
* ``undoStatus`` is ``pending`` until a recipient has the message (delivered here or accepted by
  the relay), or every recipient has failed for good, then ``final``; a pending submission can be
  canceled unless an attempt is under way at that moment (``cannotUnsend``), also while it waits
  for a retry.
* Mail to this server's own domains is delivered locally; mail to other domains needs a relay
  (``tidings serve --smtp-relay``): without one, such recipients are ``invalidRecipients``.
* Envelope parameters must be writable on an SMTP command line (RFC 5321 §4.1.2 esmtp-keyword and
  esmtp-value, at most 16 per address; ``AUTH`` is the server's, RFC 4954 §5), and the envelope
  sender one address: else invalidProperties on ``envelope``.  Non-ASCII addresses are accepted and
  sent with SMTPUTF8 (RFC 6531) when the relay offers it; without it, they fail at delivery (553
  5.6.7 in deliveryStatus), as they would at a relay without it.
* The envelope sender and every From address must be the user's (`app.addresses.may_send_as`):
  else ``forbiddenMailFrom`` / ``forbiddenFrom``.  The null sender is not for users.
"""

from __future__ import annotations

import time
from datetime import datetime

from app.addresses import may_send_as
from app.identity import IDENTITY
from app.mail.headers import is_addr_spec
from app.protocol import machinery
from app.protocol.errors import MethodError, invalid_arguments, set_error
from app.protocol.registry import METHODS, SUBMISSION, method
from app.protocol.types import DataType, Property, check_value, data_type
from store import Collection

from . import envelope as env
from . import outbox

MAX_SIZE = 50_000_000  # octets of a message this server sends (tooLarge maxSize)


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class EmailSubmission(DataType):
    name = "EmailSubmission"
    capability = SUBMISSION
    methods = ("get", "changes", "query", "queryChanges")  # /set below: it has an implicit Email/set
    collection = Collection("EmailSubmission", "U", log="EmailSubmission",
                            indexes=("emailId", "threadId", "identityId", "undoStatus"))
    properties = {
        "id": Property("Id", server_set=True),
        "identityId": Property("Id", immutable=True),
        "emailId": Property("Id", immutable=True),
        "threadId": Property("Id", server_set=True),
        "envelope": Property("Object", nullable=True, default=None, immutable=True),
        "sendAt": Property("UTCDate", server_set=True),
        "undoStatus": Property("String", default="pending"),
        "deliveryStatus": Property("Object", nullable=True, server_set=True),
        "dsnBlobIds": Property("Id[]", server_set=True),
        "mdnBlobIds": Property("Id[]", server_set=True),
    }
    set_args = ("onSuccessUpdateEmail", "onSuccessDestroyEmail")
    conditions = {"identityIds": "Id[]", "emailIds": "Id[]", "threadIds": "Id[]", "undoStatus": "String",
                  "before": "UTCDate", "after": "UTCDate"}
    sorts = ("emailId", "threadId", "sentAt", "sendAt")  # §7.3 names "sentAt": the sendAt property

    # -- create (§7.5)
    def validate(self, ctx, reader, obj: dict, current: dict | None, problems: dict[str, str]) -> dict:
        if current is None:
            if obj.get("undoStatus") != "pending":
                problems["undoStatus"] = "a submission is created pending"
            if "identityId" in obj and IDENTITY.fetch(ctx, reader, obj["identityId"]) is None:
                problems["identityId"] = f"no identity {obj['identityId']!r}"
            if "emailId" in obj and reader.email(obj["emailId"]) is None:
                problems["emailId"] = f"no email {obj['emailId']!r}"
            if obj.get("envelope") is not None:
                why = env.check_envelope(obj["envelope"])
                if why:
                    problems["envelope"] = why
        elif "undoStatus" in obj and obj["undoStatus"] != "canceled":
            problems["undoStatus"] = "may only be changed to canceled"
        return obj

    def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
        fields, error = super().prepare_create(ctx, reader, obj)
        if error is not None:
            return fields, error
        identity = IDENTITY.fetch(ctx, reader, fields["identityId"])
        email = reader.email(fields["emailId"])
        raw = reader.blob(email["blobId"])
        if raw is None:
            return fields, set_error("invalidEmail", "the message of the email cannot be read", properties=["blobId"])
        if len(raw) > MAX_SIZE:
            return fields, set_error("tooLarge", f"the message is larger than {MAX_SIZE} octets", maxSize=MAX_SIZE)
        headers = env.headers_of(raw)
        senders = [a for group in env.addresses_in(headers, "from") for a in group]
        if not senders:
            return fields, set_error("invalidEmail", "the message has no From address", properties=["from"])
        # RFC 5322 §3.6.2: Sender names who submitted the message, so it is checked like From
        senders += [a for group in env.addresses_in(headers, "sender") for a in group]
        foreign = [a for a in senders if not may_send_as(ctx.user, a)]
        if foreign:
            return fields, set_error("forbiddenFrom", f"{ctx.user['name']} may not send as {', '.join(foreign)}")
        envelope = fields.get("envelope")
        if envelope is None:
            envelope, why = env.derive(raw, identity)
            if envelope is None:
                return fields, set_error("invalidEmail", why, properties=["sender", "from"])
        mail_from = envelope["mailFrom"]["email"]
        if not mail_from or not may_send_as(ctx.user, mail_from):
            return fields, set_error("forbiddenMailFrom", f"{ctx.user['name']} may not use {mail_from!r} "
                                     "as the envelope sender")
        # one RCPT per address (compared case-insensitively, as deliveryStatus keys them), the first spelling
        seen: set[str] = set()
        rcpts = [r for r in envelope["rcptTo"] if not (r["email"].lower() in seen or seen.add(r["email"].lower()))]
        envelope = {**envelope, "rcptTo": rcpts}
        if not rcpts:
            return fields, set_error("noRecipients", "the envelope has no recipients")
        if len(rcpts) > env.MAX_RECIPIENTS:
            return fields, set_error("tooManyRecipients", f"more than {env.MAX_RECIPIENTS} recipients",
                                     maxRecipients=env.MAX_RECIPIENTS)
        # an SMTP path (RFC 5321 §4.1.2 Mailbox) is one addr-spec, as in a header
        bad = [r["email"] for r in rcpts if not is_addr_spec(r["email"])]
        if not bad and ctx.relay is None:
            bad = [r["email"] for r in rcpts if not ctx.store.is_local_domain(r["email"].rpartition("@")[2])]
            why = "this server has no SMTP relay (tidings serve --smtp-relay) and delivers only to its own domains"
        else:
            why = "not valid addresses to send to"
        if bad:
            return fields, set_error("invalidRecipients", f"{why}: {', '.join(bad)}", invalidRecipients=bad)
        now = time.time()
        release, why = env.release_time(envelope["mailFrom"], now)
        if why:
            return fields, set_error("invalidProperties", f"envelope: {why}", properties=["envelope"])
        return {**fields, "envelope": envelope, "threadId": email["threadId"], "sendAt": env.utc_date(release),
                "deliveryStatus": {r["email"]: {"smtpReply": "250 2.0.0 queued", "delivered": outbox.QUEUED,
                                                "displayed": "unknown"} for r in rcpts},
                "dsnBlobIds": [], "mdnBlobIds": [], "_send": (env.without_bcc(raw), release)}, None

    def create(self, ctx, writer, fields: dict) -> dict:
        raw, release = fields.pop("_send")
        record = writer.create_record(self.collection, fields)
        envelope = fields["envelope"]
        outbox.enqueue(writer, mail_from=envelope["mailFrom"]["email"],
                       mail_parameters=env.relay_parameters(envelope["mailFrom"].get("parameters")) or None,
                       rcpt_to=envelope["rcptTo"], raw=raw, submission_id=record["id"], due=release)
        return record

    # -- update: only canceling (§7.5 cannotUnsend)
    def prepare_update(self, ctx, reader, current: dict, patch: dict, resolve) -> tuple[dict, dict | None]:
        fields, error = super().prepare_update(ctx, reader, current, patch, resolve)
        if error is None and fields.get("undoStatus") == "canceled":
            if current["undoStatus"] != "pending":
                return fields, set_error("cannotUnsend", f"the submission is {current['undoStatus']}: a "
                                         "recipient has the message")
            if any((reader.record(outbox.OUTBOX, q) or {}).get("leased")
                   for q in reader.record_ids(outbox.OUTBOX, "submissionId", equals=current["id"])):
                return fields, set_error("cannotUnsend", "a delivery attempt is under way; try again when "
                                         "it has ended")
        return fields, error

    def update(self, ctx, writer, obj_id: str, current: dict, changes: dict) -> dict | None:
        if changes.get("undoStatus") != "canceled" or current["undoStatus"] == "canceled":
            return super().update(ctx, writer, obj_id, current, changes)
        for entry_id in list(writer.record_ids(outbox.OUTBOX, "submissionId", equals=obj_id)):
            entry = writer.record(outbox.OUTBOX, entry_id)
            if entry is not None:
                outbox.remove(writer, entry)
        status = {rcpt: {**s, "smtpReply": "554 5.0.0 canceled by the sender before delivery", "delivered": "no"}
                  for rcpt, s in (current.get("deliveryStatus") or {}).items()}
        writer.update_record(self.collection, obj_id, {**current, "undoStatus": "canceled", "deliveryStatus": status})
        return {"deliveryStatus": status}

    # -- what the deliverer reports (inside its transactions on the account)
    def on_status(self, writer, submission_id: str, status: dict) -> None:
        record = writer.record(self.collection, submission_id)
        if record is None:  # destroyed: §7 "MUST NOT affect the deliveries it represents"
            return
        shown = {rcpt: {"smtpReply": s["smtpReply"], "delivered": s["delivered"],
                        "displayed": (record.get("deliveryStatus") or {}).get(rcpt, {}).get("displayed", "unknown")}
                 for rcpt, s in status.items()}
        # §7 final: "relayed to at least one recipient in a manner that cannot be recalled" - or
        # every recipient has its outcome (all failed for good): then too "it is no longer possible
        # to cancel this submission", and it must not stay pending for ever
        settled = all(s["delivered"] != outbox.QUEUED for s in shown.values())
        final = record["undoStatus"] == "pending" and (
            settled or any(s["delivered"] in ("yes", "unknown") for s in shown.values()))
        writer.update_record(self.collection, submission_id, {
            **record, "deliveryStatus": shown, "undoStatus": "final" if final else record["undoStatus"]})

    # -- query (§7.3)
    def check_condition(self, ctx, cond: dict) -> None:
        super().check_condition(ctx, cond)
        if "undoStatus" in cond and cond["undoStatus"] not in ("pending", "final", "canceled"):
            raise invalid_arguments("filter undoStatus must be pending, final or canceled")

    def match(self, ctx, cond: dict, obj: dict) -> bool:
        for key, value in cond.items():
            if key in ("identityIds", "emailIds", "threadIds") and obj.get(key[:-1]) not in value:
                return False
            if key == "undoStatus" and obj.get("undoStatus") != value:
                return False
            if key == "before" and not _timestamp(obj["sendAt"]) < _timestamp(value):
                return False
            if key == "after" and not _timestamp(obj["sendAt"]) >= _timestamp(value):
                return False
        return True

    def index_for(self, cond: dict) -> tuple[str, object] | None:
        for key in ("emailIds", "threadIds", "identityIds"):
            if isinstance(cond.get(key), list) and len(cond[key]) == 1:
                return key[:-1], cond[key][0]
        return ("undoStatus", cond["undoStatus"]) if isinstance(cond.get("undoStatus"), str) else None

    def sort_value(self, ctx, obj: dict, prop: str, collation: str | None) -> object:
        return obj.get("sendAt" if prop == "sentAt" else prop)


SUBMISSIONS = data_type(EmailSubmission())


def _ids_arg(args: dict) -> tuple[dict, list]:
    update = {} if args.get("onSuccessUpdateEmail") is None else args["onSuccessUpdateEmail"]
    destroy = [] if args.get("onSuccessDestroyEmail") is None else args["onSuccessDestroyEmail"]
    if not isinstance(update, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in update.items()):
        raise invalid_arguments("onSuccessUpdateEmail must map EmailSubmission ids to PatchObjects")
    if not isinstance(destroy, list) or any(check_value("String", i) for i in destroy):
        raise invalid_arguments("onSuccessDestroyEmail must be a list of EmailSubmission ids")
    return update, destroy


@method("EmailSubmission/set", SUBMISSION)
def submission_set(ctx, args: dict) -> list[tuple[str, dict]] | dict:
    """§7.5: the standard /set, then one implicit Email/set for the submissions that succeeded,
    answered right after it."""
    on_update, on_destroy = _ids_arg(args)
    account_id = ctx.account_id(args)
    known = [k for k in [*on_update, *on_destroy] if not k.startswith("#")]
    with ctx.store.read(account_id) as reader:  # destroyed submissions are gone after the /set
        email_of = {k: r["emailId"] for k in known if (r := reader.record(SUBMISSIONS.collection, k))}
    resp = machinery.set_(SUBMISSIONS, ctx, args)
    if not on_update and not on_destroy:
        return resp
    succeeded = set(resp.get("updated") or {}) | set(resp.get("destroyed") or [])
    with ctx.store.read(account_id) as reader:
        for cid, created in (resp.get("created") or {}).items():
            record = reader.record(SUBMISSIONS.collection, created["id"])
            if record is not None:
                email_of["#" + cid] = record["emailId"]
                succeeded.add("#" + cid)
    email_args: dict = {"accountId": account_id}
    updates = {email_of[k]: patch for k, patch in on_update.items() if k in succeeded and k in email_of}
    destroys = list(dict.fromkeys(email_of[k] for k in on_destroy if k in succeeded and k in email_of))
    if updates:
        email_args["update"] = updates
    if destroys:
        email_args["destroy"] = destroys
    try:
        email_resp = METHODS["Email/set"].handler(ctx, email_args)
    except MethodError as err:
        return [("EmailSubmission/set", resp), ("error", err.body())]
    return [("EmailSubmission/set", resp), ("Email/set", email_resp)]
