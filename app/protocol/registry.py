"""The method table: `@method("Mailbox/get", MAIL)` registers a handler.

A handler takes (ctx, args) and returns the response arguments, or a list of (name, args) pairs when
one call answers with several responses (RFC 8620 §3.4, e.g. an implicit Email/set after
Email/copy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
PRINCIPALS = "urn:ietf:params:jmap:principals"  # RFC 9670
VACATION = "urn:ietf:params:jmap:vacationresponse"
BLOB = "urn:ietf:params:jmap:blob"  # RFC 9404
QUOTA = "urn:ietf:params:jmap:quota"  # RFC 9425
CONTACTS = "urn:ietf:params:jmap:contacts"  # RFC 9610
CALENDARS = "urn:ietf:params:jmap:calendars"  # the JMAP Calendars draft

Handler = Callable[..., object]


@dataclass(frozen=True)
class Method:
    name: str
    capability: str
    handler: Handler


METHODS: dict[str, Method] = {}


def register(name: str, capability: str, handler: Handler) -> None:
    if name in METHODS:
        raise RuntimeError(f"method {name} registered twice")
    METHODS[name] = Method(name, capability, handler)


def method(name: str, capability: str) -> Callable[[Handler], Handler]:
    """Registers a method that is not a standard one of a data type (Email/import, Core/echo ...);
    the standard ones come from the type registry (app/protocol/types.py)."""
    def decorate(handler: Handler) -> Handler:
        register(name, capability, handler)
        return handler

    return decorate


# the modules that declare tidings' data types and methods
BUILT_IN = ("app.capabilities", "app.core", "app.email", "app.identity", "app.mailbox", "app.pushsubscription",
            "app.quota", "app.searchsnippet", "app.submission", "app.thread", "app.vacation", "app.blob.methods",
            "app.principal", "app.contacts", "app.calendar")


def load_methods() -> dict[str, Method]:
    """Imports every data-type module so that their types and methods register themselves, then
    the modules named in TIDINGS_EXTRA_TYPES (comma-separated module paths: data types added
    without changing tidings, e.g. by a test)."""
    import importlib
    import os

    for module in BUILT_IN:
        importlib.import_module(module)

    for module in filter(None, (m.strip() for m in os.environ.get("TIDINGS_EXTRA_TYPES", "").split(","))):
        importlib.import_module(module)
    return METHODS
