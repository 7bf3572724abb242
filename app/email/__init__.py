"""Email (RFC 8621 §4): get, changes, query, queryChanges, set, import, parse, copy."""

from . import changes, get, imports, query, set  # noqa: F401  (registers the methods)
