"""Core/echo (RFC 8620 §4)."""

from app.protocol.registry import CORE, method


@method("Core/echo", CORE)
def echo(ctx, args: dict) -> dict:
    return args
