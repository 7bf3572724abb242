"""The capabilities tidings offers (RFC 8620 §2), declared in the type registry.

Each says what the session shows under ``capabilities`` and under each account's
``accountCapabilities``; the data types name the capability they belong to, and the `using`
check of the request pipeline accepts exactly these URNs."""

from __future__ import annotations

from app.protocol.registry import BLOB, CONTACTS, CORE, MAIL, QUOTA, SUBMISSION, VACATION
from app.protocol.types import Capability, capability
from app.submission import MAX_SIZE
from app.submission.envelope import MAX_DELAYED_SEND

MAX_MAILBOX_DEPTH = 10
MAX_MAILBOXES_PER_EMAIL = 100  # enforced by app/email/validate.py; advertised, not null (§1.3.1)
EMAIL_SORTS = ("receivedAt", "sentAt", "size", "from", "to", "subject", "hasKeyword", "allInThreadHaveKeyword",
               "someInThreadHaveKeyword")

# core is listed in every account's capabilities, but is no account's "primary" one (§2)
capability(Capability(CORE, session=lambda server: server.config.limits.capability(), primary=False))

capability(Capability(MAIL, account=lambda server, account: {
    "maxMailboxesPerEmail": MAX_MAILBOXES_PER_EMAIL,
    "maxMailboxDepth": MAX_MAILBOX_DEPTH,
    "maxSizeMailboxName": 255,
    "maxSizeAttachmentsPerEmail": server.config.limits.max_size_upload,
    "emailQuerySortOptions": list(EMAIL_SORTS),
    "mayCreateTopLevelMailbox": account.get("owner", True),  # a grantee creates only under a shared one
}))

# RFC 8621 §1.3.2: delayed send is FUTURERELEASE (RFC 4865), held by tidings itself
capability(Capability(SUBMISSION, account=lambda server, account: {
    "maxDelayedSend": MAX_DELAYED_SEND,
    "submissionExtensions": {"FUTURERELEASE": [str(MAX_DELAYED_SEND)], "SIZE": [str(MAX_SIZE)]},
}))

# RFC 8621 §1.3.3: no properties; the account has a VacationResponse (app/vacation.py)
capability(Capability(VACATION))

# RFC 9425 §2.1: {} in the session and in each account (app/quota.py)
capability(Capability(QUOTA))

# RFC 9610 §1.3.1: {} in the session; per account, no limit on the books of a card (null) and only
# the owner creates address books (a grantee uses those shared with them, app/sharing.py)
capability(Capability(CONTACTS, account=lambda server, account: {
    "maxAddressBooksPerCard": None,
    "mayCreateAddressBook": account.get("owner", True),
}))

# RFC 9749: pushes are signed with VAPID (RFC 8292); a client hands this key to its push service
WEBPUSH_VAPID = "urn:ietf:params:jmap:webpush-vapid"
capability(Capability(WEBPUSH_VAPID, account=None, primary=False, session=lambda server: (
    {"applicationServerKey": server.push.application_server_key} if getattr(server, "push", None) else {})))

# RFC 9404 §3.1: the session's value is {}; the account's says what Blob/upload (§4.1), Blob/get
# (§4.2) and Blob/lookup (§4.3) accept.  maxSizeBlobSet counts the concatenated result.
MAX_DATA_SOURCES = 64  # servers MUST allow at least 64
BLOB_LOOKUP_TYPES = ("Email", "Mailbox", "Thread")
capability(Capability(BLOB, account=lambda server, account: {
    "maxSizeBlobSet": server.config.limits.max_size_upload,
    "maxDataSources": MAX_DATA_SOURCES,
    "supportedTypeNames": list(BLOB_LOOKUP_TYPES),
    "supportedDigestAlgorithms": ["sha", "sha-256"],
}))

# JMAP Calendars draft §Capabilities: {} in the session; each (own) account says what it accepts.
# In an account shared with a user when a calendar is shared with them (app/sharing.py).
from app.calendar.calendar import CALENDARS, CALENDARS_PARSE  # noqa: E402
from app.calendar.event import MAX_DATE, MAX_EXPANDED_QUERY_DAYS, MIN_DATE  # noqa: E402

capability(Capability(CALENDARS, account=lambda server, account: {
    "maxCalendarsPerEvent": None,
    "minDateTime": MIN_DATE,
    "maxDateTime": MAX_DATE,
    "maxExpandedQueryDuration": f"P{MAX_EXPANDED_QUERY_DAYS}D",
    "maxParticipantsPerEvent": None,
    "mayCreateCalendar": account.get("owner", True),
}))
capability(Capability(CALENDARS_PARSE))
