"""Mailbox (RFC 8621 §2): get, changes, query, queryChanges, set."""

from . import changes, get, query, set  # noqa: F401  (registers the methods)
