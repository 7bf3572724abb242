"""The capabilities tidings offers (RFC 8620 §2), declared in the type registry.

Each says what the session shows under ``capabilities`` and under each account's
``accountCapabilities``; the data types name the capability they belong to, and the `using`
check of the request pipeline accepts exactly these URNs."""

from __future__ import annotations

from app.protocol.registry import BLOB, CORE, MAIL, SUBMISSION
from app.protocol.types import Capability, capability

MAX_MAILBOX_DEPTH = 10
EMAIL_SORTS = ("receivedAt", "sentAt", "size", "from", "to", "subject", "hasKeyword", "allInThreadHaveKeyword",
               "someInThreadHaveKeyword")

# core is listed in every account's capabilities, but is no account's "primary" one (§2)
capability(Capability(CORE, session=lambda server: server.config.limits.capability(), primary=False))

capability(Capability(MAIL, account=lambda server, account: {
    "maxMailboxesPerEmail": None,
    "maxMailboxDepth": MAX_MAILBOX_DEPTH,
    "maxSizeMailboxName": 255,
    "maxSizeAttachmentsPerEmail": server.config.limits.max_size_upload,
    "emailQuerySortOptions": list(EMAIL_SORTS),
    "mayCreateTopLevelMailbox": True,
}))

capability(Capability(SUBMISSION, account=lambda server, account: {
    "maxDelayedSend": 0,
    "submissionExtensions": {},
}))

# RFC 9749: pushes are signed with VAPID (RFC 8292); a client hands this key to its push service
WEBPUSH_VAPID = "urn:ietf:params:jmap:webpush-vapid"
capability(Capability(WEBPUSH_VAPID, account=None, primary=False, session=lambda server: (
    {"applicationServerKey": server.push.application_server_key} if getattr(server, "push", None) else {})))

# RFC 9404 §4.1: Blob/upload, Blob/get, Blob/lookup
MAX_DATA_SOURCES = 64  # the RFC's minimum
BLOB_LOOKUP_TYPES = ("Email", "Mailbox", "Thread")
capability(Capability(BLOB, account=lambda server, account: {
    "maxSizeBlobSet": server.config.limits.max_size_upload,
    "maxDataSources": MAX_DATA_SOURCES,
    "supportedTypeNames": list(BLOB_LOOKUP_TYPES),
    "supportedDigestAlgorithms": ["sha", "sha-256"],
}))
