"""The pre-RFC calls: a request that is a bare JSON array of ``[name, arguments, callId]`` (the
draft JMAP of 2014-2016 that early servers, Cyrus among them, documented) is answered in the same
bare-array form, each old method mapped onto its RFC 8620/8621 method.

    [["getCalendars", {}, "#1"]]  ->  [["calendars", {"accountId", "list", "notFound", "state"}, "#1"]]

What is mapped (see also the README's "Legacy calls"):

* Mail, with the draft's object shapes: getMailboxes / setMailboxes (``mailboxes``,
  ``mailboxesSet``: totalMessages, unreadMessages, the rights as flat booleans), getMessageList
  (``messageList``: the draft's ``inMailboxes``, ``isUnread`` ... filters and ``"date desc"``
  sorts), getMessages (``messages``: isUnread, isFlagged, isAnswered, isDraft, ``from`` as one
  Emailer, textBody and htmlBody as strings, ``date``), getMessageUpdates (``messageUpdates``:
  changed, removed) and setMessages (``messagesSet``: the flags and a mailboxIds list become
  keywords and a mailboxIds map).
* Calendars and contacts, whose objects are the RFC ones (JSCalendar, JSContact) under the old
  names: getCalendars, getCalendarEvents, setCalendarEvents, getContacts, getContactGroups (cards
  of kind ``group``), setContacts.
* Any other old name answers ``["error", {"type": "unknownMethod"}, callId]``.

An omitted accountId means the user's primary account, as in the draft.  Each old call runs as a
request of its own (the draft had no result references); a call whose RFC method the server
lacks answers unknownMethod.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Run = Callable[[list], list]  # runs RFC method calls (name, args, id), returns the responses

__all__ = ["LEGACY", "is_legacy", "run_legacy"]


@dataclass(frozen=True)
class Legacy:
    method: str  # the RFC method
    response: str  # the old response name
    to_args: Callable[[dict], dict] = lambda args: dict(args)
    from_result: Callable[[dict, dict, Run], dict] = lambda result, args, run: result


def is_legacy(request: object) -> bool:
    """A bare array of calls, as the pre-RFC drafts sent (an RFC request is an object); an empty
    array or one of other things is no request of either kind (notRequest)."""
    return isinstance(request, list) and bool(request) and all(isinstance(call, list) for call in request)


# ------------------------------------------------------------------------------------- mailboxes
_RIGHTS = ("mayReadItems", "mayAddItems", "mayRemoveItems", "mayCreateChild", "mayRename", "mayDelete")


def _old_mailbox(mb: dict) -> dict:
    out = {k: mb.get(k) for k in ("id", "name", "parentId", "role", "sortOrder", "totalThreads", "unreadThreads")
           if k in mb}
    if "totalEmails" in mb:
        out["totalMessages"] = mb["totalEmails"]
    if "unreadEmails" in mb:
        out["unreadMessages"] = mb["unreadEmails"]
    rights = mb.get("myRights") or {}
    out.update({r: rights.get(r, False) for r in _RIGHTS if rights})
    out["mustBeOnlyMailbox"] = False
    return out


def _mailboxes_result(result: dict, args: dict, run: Run) -> dict:
    return {**result, "list": [_old_mailbox(mb) for mb in result.get("list", [])]}


def _set_result(result: dict, args: dict, run: Run) -> dict:
    """The draft's XSet: updated and destroyed as lists of ids."""
    return {**result, "updated": list(result.get("updated") or {}), "destroyed": result.get("destroyed") or [],
            "created": result.get("created") or {}}


# -------------------------------------------------------------------------------------- messages
_FLAGS = {"isUnread": ("$seen", False), "isFlagged": ("$flagged", True), "isAnswered": ("$answered", True),
          "isDraft": ("$draft", True)}
_SORTS = {"date": "receivedAt", "arrival": "receivedAt", "sent": "sentAt", "size": "size", "from": "from",
          "to": "to", "subject": "subject"}


def _condition(old: dict) -> dict:
    """One draft FilterCondition as an RFC filter."""
    parts: list[dict] = []
    plain: dict = {}
    for key, value in old.items():
        if key == "inMailboxes" and isinstance(value, list):
            parts.append({"operator": "OR", "conditions": [{"inMailbox": m} for m in value]})
        elif key == "notInMailboxes" and isinstance(value, list):
            plain["inMailboxOtherThan"] = value
        elif key in _FLAGS and isinstance(value, bool):
            keyword, positive = _FLAGS[key]
            plain["hasKeyword" if value == positive else "notKeyword"] = keyword
        else:  # before, after, minSize, maxSize, hasAttachment, text, from ... are the same
            plain[key] = value
    if plain:
        parts.append(plain)
    return parts[0] if len(parts) == 1 else {"operator": "AND", "conditions": parts}


def _filter(old: object) -> object:
    if isinstance(old, dict) and "operator" in old:
        return {"operator": old["operator"], "conditions": [_filter(c) for c in old.get("conditions") or []]}
    return _condition(old) if isinstance(old, dict) else old


def _sort(old: object) -> object:
    """["date desc", "subject"] -> RFC comparators (a value of another shape goes on as it is)."""
    if not isinstance(old, list) or not all(isinstance(s, str) for s in old):
        return old
    out = []
    for item in old:
        name, _, direction = item.partition(" ")
        out.append({"property": _SORTS.get(name, name), "isAscending": direction.strip().lower() != "desc"})
    return out


def _message_list_args(args: dict) -> dict:
    out = {k: v for k, v in args.items() if k in ("accountId", "position", "anchor", "anchorOffset", "limit")}
    if args.get("filter") is not None:
        out["filter"] = _filter(args["filter"])
    if args.get("sort") is not None:
        out["sort"] = _sort(args["sort"])
    out["collapseThreads"] = bool(args.get("collapseThreads", False))
    out["calculateTotal"] = True
    return out


def _message_list_result(result: dict, args: dict, run: Run) -> dict:
    ids = result.get("ids", [])
    threads = []
    if ids:
        got = run([["Email/get", {"accountId": result["accountId"], "ids": ids, "properties": ["threadId"]}, "t"]])
        by_id = {e["id"]: e["threadId"] for e in got[0][1].get("list", [])} if got[0][0] == "Email/get" else {}
        threads = [by_id.get(i) for i in ids]
    return {"accountId": result["accountId"], "filter": args.get("filter"), "sort": args.get("sort"),
            "collapseThreads": bool(args.get("collapseThreads", False)), "state": result.get("queryState"),
            "canCalculateUpdates": result.get("canCalculateChanges", False), "position": result.get("position"),
            "total": result.get("total"), "messageIds": ids, "threadIds": threads}


_MESSAGE_PROPERTIES = ["id", "blobId", "threadId", "mailboxIds", "keywords", "hasAttachment", "from", "to", "cc",
                       "bcc", "replyTo", "subject", "sentAt", "receivedAt", "size", "preview", "textBody",
                       "htmlBody", "bodyValues", "attachments", "inReplyTo", "headers"]


def _messages_args(args: dict) -> dict:
    return {"accountId": args.get("accountId"), "ids": args.get("ids"), "properties": _MESSAGE_PROPERTIES,
            "fetchTextBodyValues": True, "fetchHTMLBodyValues": True}


def _body(email: dict, which: str) -> str | None:
    values = email.get("bodyValues") or {}
    text = [values[p["partId"]]["value"] for p in email.get(which) or [] if p.get("partId") in values]
    return "".join(text) if text else None


def _old_message(email: dict) -> dict:
    keywords = email.get("keywords") or {}
    sender = email.get("from") or []
    return {
        "id": email["id"], "blobId": email.get("blobId"), "threadId": email.get("threadId"),
        "mailboxIds": sorted(email.get("mailboxIds") or {}),
        "inReplyToMessageId": (email.get("inReplyTo") or [None])[0],
        "isUnread": "$seen" not in keywords, "isFlagged": "$flagged" in keywords,
        "isAnswered": "$answered" in keywords, "isDraft": "$draft" in keywords,
        "hasAttachment": email.get("hasAttachment"),
        "headers": {h["name"]: h["value"].strip() for h in email.get("headers") or []},
        "from": sender[0] if sender else None, "to": email.get("to"), "cc": email.get("cc"),
        "bcc": email.get("bcc"), "replyTo": (email.get("replyTo") or [None])[0],
        "subject": email.get("subject"), "date": email.get("sentAt") or email.get("receivedAt"),
        "size": email.get("size"), "preview": email.get("preview"),
        "textBody": _body(email, "textBody"), "htmlBody": _body(email, "htmlBody"),
        "attachments": [{"blobId": a.get("blobId"), "type": a.get("type"), "name": a.get("name"),
                         "size": a.get("size"), "cid": a.get("cid"), "isInline": a.get("disposition") == "inline"}
                        for a in email.get("attachments") or []],
    }


def _messages_result(result: dict, args: dict, run: Run) -> dict:
    wanted = args.get("properties")
    messages = [_old_message(e) for e in result.get("list", [])]
    if isinstance(wanted, list):
        messages = [{k: m.get(k) for k in ["id", *wanted] if k in m or k in wanted} for m in messages]
    return {**result, "list": messages}


def _updates_result(result: dict, args: dict, run: Run) -> dict:
    return {"accountId": result["accountId"], "oldState": result["oldState"], "newState": result["newState"],
            "hasMoreUpdates": result.get("hasMoreChanges", False),
            "changed": list(result.get("created", [])) + list(result.get("updated", [])),
            "removed": list(result.get("destroyed", []))}


def _message_patch(old: dict) -> dict:
    """A draft message update (flags, a mailboxIds list) as an RFC PatchObject."""
    patch: dict = {}
    for key, value in old.items():
        if key in _FLAGS and isinstance(value, bool):
            keyword, positive = _FLAGS[key]
            patch[f"keywords/{keyword}"] = True if value == positive else None
        elif key == "mailboxIds" and isinstance(value, list):
            patch["mailboxIds"] = dict.fromkeys(value, True)
        else:
            patch[key] = value  # an unknown property: the RFC method says what is wrong with it
    return patch


def _message_create(old: dict) -> dict:
    """A draft message create (Emailers, string bodies, flags) as an RFC Email create."""
    new: dict = {}
    keywords = {}
    for key, value in old.items():
        if key in _FLAGS and isinstance(value, bool):
            keyword, positive = _FLAGS[key]
            if value == positive:
                keywords[keyword] = True
        elif key == "mailboxIds" and isinstance(value, list):
            new["mailboxIds"] = dict.fromkeys(value, True)
        elif key in ("from", "replyTo") and isinstance(value, dict):
            new[key] = [value]
        elif key == "textBody" and isinstance(value, str):
            new.setdefault("bodyValues", {})["text"] = {"value": value}
            new["textBody"] = [{"partId": "text", "type": "text/plain"}]
        elif key == "htmlBody" and isinstance(value, str):
            new.setdefault("bodyValues", {})["html"] = {"value": value}
            new["htmlBody"] = [{"partId": "html", "type": "text/html"}]
        elif key == "date":
            new["sentAt"] = value
        else:
            new[key] = value
    if "$seen" not in keywords and old.get("isUnread") is not True:
        keywords["$seen"] = True
    new["keywords"] = keywords
    return new


def _set_messages_args(args: dict) -> dict:
    out = {k: v for k, v in args.items() if k in ("accountId", "ifInState", "destroy")}
    if isinstance(args.get("create"), dict):
        out["create"] = {cid: _message_create(obj) if isinstance(obj, dict) else obj
                         for cid, obj in args["create"].items()}
    if isinstance(args.get("update"), dict):
        out["update"] = {i: _message_patch(p) if isinstance(p, dict) else p for i, p in args["update"].items()}
    return out


def _contact_groups_args(args: dict) -> dict:
    return {k: v for k, v in args.items() if k in ("accountId", "ids", "properties")}


LEGACY: dict[str, Legacy] = {
    "getMailboxes": Legacy("Mailbox/get", "mailboxes", from_result=_mailboxes_result),
    "setMailboxes": Legacy("Mailbox/set", "mailboxesSet", from_result=_set_result),
    "getMessageList": Legacy("Email/query", "messageList", _message_list_args, _message_list_result),
    "getMessages": Legacy("Email/get", "messages", _messages_args, _messages_result),
    "getMessageUpdates": Legacy("Email/changes", "messageUpdates",
                                lambda a: {k: v for k, v in a.items() if k in ("accountId", "sinceState", "maxChanges")},
                                _updates_result),
    "setMessages": Legacy("Email/set", "messagesSet", _set_messages_args, _set_result),
    "getCalendars": Legacy("Calendar/get", "calendars"),
    "getCalendarEvents": Legacy("CalendarEvent/get", "calendarEvents"),
    "setCalendarEvents": Legacy("CalendarEvent/set", "calendarEventsSet", from_result=_set_result),
    "getContacts": Legacy("ContactCard/get", "contacts"),
    "getContactGroups": Legacy("ContactCard/get", "contactGroups", _contact_groups_args),
    "setContacts": Legacy("ContactCard/set", "contactsSet", from_result=_set_result),
}


def run_legacy(calls: list, primary_account: str, run: Run) -> list:
    """The answer to a bare-array request: one old-style response (or an error) per call, in
    order.  run(calls) executes RFC calls for the user and returns their responses."""
    out: list = []
    for call in calls:
        if not (isinstance(call, list) and len(call) == 3 and isinstance(call[0], str) and isinstance(call[1], dict)
                and isinstance(call[2], str)):
            out.append(["error", {"type": "invalidArguments",
                                  "description": "a call is [name, arguments object, callId string]"},
                        call[2] if isinstance(call, list) and len(call) == 3 and isinstance(call[2], str) else None])
            continue
        name, args, call_id = call
        legacy = LEGACY.get(name)
        if legacy is None:
            out.append(["error", {"type": "unknownMethod", "description": f"unknown method {name!r}"}, call_id])
            continue
        args = {"accountId": primary_account, **args}
        new_args = legacy.to_args(args)
        new_args.setdefault("accountId", args["accountId"])
        if name == "getContactGroups":  # the draft's groups are JSContact cards of kind group
            found = run([["ContactCard/query", {"accountId": args["accountId"], "filter": {"kind": "group"}}, "q"]])
            if found[0][0] != "ContactCard/query":
                out.append([found[0][0], found[0][1], call_id])
                continue
            if new_args.get("ids") is None:
                new_args["ids"] = found[0][1]["ids"]
        for response, result, _ in run([[legacy.method, new_args, call_id]]):
            if response == legacy.method:
                out.append([legacy.response, legacy.from_result(result, args, run), call_id])
            elif response == "error":
                out.append(["error", result, call_id])
            else:  # an implicit call (an Email/set after an Email/copy ...): answered as the RFC does
                out.append([response, result, call_id])
    return out
