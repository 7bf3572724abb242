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

Handler = Callable[..., object]


@dataclass(frozen=True)
class Method:
    name: str
    capability: str
    handler: Handler


METHODS: dict[str, Method] = {}


def method(name: str, capability: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if name in METHODS:
            raise RuntimeError(f"method {name} registered twice")
        METHODS[name] = Method(name, capability, handler)
        return handler

    return register


def load_methods() -> dict[str, Method]:
    """Imports every data-type module so that their methods register themselves."""
    from app import core, email, identity, mailbox, searchsnippet, thread  # noqa: F401

    return METHODS
