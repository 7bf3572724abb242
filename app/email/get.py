"""What Email/get does that is Email's own, and Email/parse (RFC 8621 §4.2, §4.9).

The list properties come from the stored record; the message itself is read and parsed only when a
property needs it (headers, header:* forms, body structure and values)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from app.blob import read_blob
from app.mail import mime
from app.protocol.errors import MethodError, invalid_arguments
from app.protocol.registry import MAIL, method
from app.protocol.standard import bool_arg, check_known_args, uint_arg
from store import ids

from .model import (
    BODY_ARGS,
    BODY_PART_PROPERTIES,
    DEFAULT_BODY_PROPERTIES,
    DEFAULT_PROPERTIES,
    FROM_RECORD,
    PROPERTIES,
    parse_header_property,
    utc_date,
)


@dataclass
class Render:
    """What to show of each email: the checked properties and body arguments."""

    props: list[str]
    body_props: list[str]
    fetch_text: bool
    fetch_html: bool
    fetch_all: bool
    max_bytes: int

    @cached_property  # asked once per email of a /get: worked out once
    def needs_message(self) -> bool:
        return any(p not in FROM_RECORD for p in self.props)

    @cached_property
    def needs_body(self) -> bool:
        """Whether a body property (not only header fields) is asked for."""
        return any(p not in FROM_RECORD and p != "headers" and not p.startswith("header:")
                   for p in self.props)


def _check_property(prop: str, known: tuple[str, ...], what: str) -> str | None:
    if prop in known:
        return None
    if prop.startswith("header:"):
        parsed = parse_header_property(prop)
        if parsed is None:
            return f"malformed header property {prop!r}"
        name, form, _ = parsed
        if not mime.is_valid_header_form(name, form):
            return f"header {name} cannot be parsed as {form} (RFC 8621 §4.1.2)"
        return None
    return f"unknown {what} {prop!r}"


def parse_render_args(args: dict, with_id: bool = True) -> Render:
    props = args.get("properties")
    if props is None:
        props = list(DEFAULT_PROPERTIES)
    elif not isinstance(props, list) or not all(isinstance(p, str) for p in props):
        raise invalid_arguments("properties must be an array of strings or null")
    body_props = args.get("bodyProperties")
    if body_props is None:
        body_props = list(DEFAULT_BODY_PROPERTIES)
    elif not isinstance(body_props, list) or not all(isinstance(p, str) for p in body_props):
        raise invalid_arguments("bodyProperties must be an array of strings or null")
    problems = [p for p in (_check_property(x, PROPERTIES, "property") for x in props) if p]
    problems += [p for p in (_check_property(x, BODY_PART_PROPERTIES, "body property")
                             for x in body_props) if p]
    if problems:
        raise invalid_arguments("; ".join(problems))
    props = list(dict.fromkeys(props))
    if with_id and "id" not in props:  # RFC 8620 §5.1: /get always returns the id
        props.insert(0, "id")
    return Render(props, body_props, bool_arg(args, "fetchTextBodyValues"),
                  bool_arg(args, "fetchHTMLBodyValues"), bool_arg(args, "fetchAllBodyValues"),
                  uint_arg(args, "maxBodyValueBytes", 0) or 0)


def render(record: dict, raw: bytes | None, how: Render, outline: list | None = None) -> dict:
    """The Email object with the requested properties. record holds the stored metadata (for
    Email/parse, what parse_summary gives); raw is the message, needed only if how.needs_message;
    outline its stored MIME outline, if any (saves splitting it again)."""
    out: dict = {}
    headers = None
    body = None
    for prop in how.props:
        if prop in FROM_RECORD:
            value = record.get(prop)
            if prop == "receivedAt" and isinstance(value, int):
                value = utc_date(value)
            out[prop] = value
        elif prop == "headers":
            headers = headers if headers is not None else mime.parse_headers(raw or b"")
            out[prop] = headers
        elif prop.startswith("header:"):
            headers = headers if headers is not None else mime.parse_headers(raw or b"")
            name, form, all_ = parse_header_property(prop)
            out[prop] = mime.header_value(headers, name, form, all_)
        else:
            if body is None:
                want = set(how.props)
                body = mime.body_properties(
                    raw or b"", want_structure="bodyStructure" in want, want_text="textBody" in want,
                    want_html="htmlBody" in want, want_attachments="attachments" in want,
                    body_props=how.body_props, fetch_text=how.fetch_text, fetch_html=how.fetch_html,
                    fetch_all=how.fetch_all, max_bytes=how.max_bytes,
                    blob_prefix=ids.part_blob_prefix(record.get("blobId") or "G"), outline=outline)
            out[prop] = body.get(prop, {} if prop == "bodyValues" else None)
    return out


def parse_get_args(self, ctx, args: dict) -> tuple[list[str], Render]:
    """Email/get's properties (header:* forms included) and body arguments (§4.2)."""
    how = parse_render_args(args)
    return how.props, how


def fetch(self, ctx, reader, email_id: str) -> dict | None:
    """The email as this user sees it: in a shared account only one in a mailbox they may read,
    with only the mailboxes they can see in mailboxIds (RFC 8621 §2 mayReadItems)."""
    record = reader.email(email_id)
    access = ctx.access(reader.account_id)
    if record is None or access.owner:
        return record
    if not access.may_read_email(record):
        return None
    return {**record, "mailboxIds": access.shown_mailbox_ids(record["mailboxIds"])}


def all_ids(self, ctx, reader):
    access = ctx.access(reader.account_id)
    return reader.email_ids_by_date(None) if access.owner else readable_ids(reader, access)


def readable_ids(reader, access) -> Iterator[str]:
    """The ids of the emails a grantee may read, each once, in no particular order: read from the
    readable mailboxes' own indexes, never from the whole account (most of it may be unshared)."""
    seen: set[str] = set()
    for mailbox_id in sorted(access.readable()):
        for email_id in reader.email_ids_by_date(mailbox_id):
            if email_id not in seen:
                seen.add(email_id)
                yield email_id


def render_email(self, ctx, reader, record: dict, props: list[str], how: Render) -> dict:
    if not how.needs_message:
        return render(record, None, how)
    outline = reader.email_outline(record["id"]) if how.needs_body else None
    return render(record, reader.blob(record["blobId"]), how, outline)


@method("Email/parse", MAIL)
def email_parse(ctx, args: dict) -> dict:
    """§4.9: Email objects from blobs that hold messages; metadata properties are null."""
    check_known_args(args, {"accountId", "blobIds", "properties", *BODY_ARGS})
    account_id = ctx.account_id(args)
    blob_ids = args.get("blobIds")
    if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
        raise invalid_arguments("blobIds must be an array of blob ids")
    if len(blob_ids) > ctx.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", f"more than {ctx.limits.max_objects_in_get} blobs")
    if args.get("properties") is None:
        args = {**args, "properties": ["messageId", "inReplyTo", "references", "sender", "from", "to",
                                       "cc", "bcc", "replyTo", "subject", "sentAt", "hasAttachment",
                                       "preview", "bodyValues", "textBody", "htmlBody", "attachments"]}
    how = parse_render_args(args, with_id=False)  # §4.9: parsed emails have no id
    parsed, not_parsable, not_found = {}, [], []
    for blob_id in dict.fromkeys(blob_ids):
        found = read_blob(ctx.store, account_id, blob_id, ctx.access(account_id))
        if found is None:
            not_found.append(blob_id)
            continue
        raw = found[0]
        if mime.message_problem(raw) is not None:  # §4.9 notParsable: not an email at all
            not_parsable.append(blob_id)
            continue
        summary = mime.parse_summary(raw)  # total: broken mail gives a best-effort summary
        record = {**summary, "id": None, "blobId": blob_id, "threadId": None, "mailboxIds": None,
                  "keywords": None, "receivedAt": None}
        parsed[blob_id] = render(record, raw, how, summary.get("outline"))
    return {"accountId": account_id, "parsed": parsed or None, "notParsable": not_parsable or None,
            "notFound": not_found or None}
