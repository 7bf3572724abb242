"""Core/echo (RFC 8620 §4)."""

import orjson

from app.protocol.errors import invalid_arguments
from app.protocol.registry import CORE, method


@method("Core/echo", CORE)
def echo(ctx, args: dict) -> dict:
    try:
        orjson.dumps(args)  # what we echo must be serialisable: orjson stops at 254 levels
    except orjson.JSONEncodeError:
        raise invalid_arguments("arguments are nested too deeply to echo") from None
    return args
