"""The Response object as bytes (RFC 8620 §3.4), one method response at a time.

Each method response is encoded on its own and the Response is joined from the pieces, so a
response that cannot be encoded fails only its own call and costs no second pass over the
others.  Two things can stop an encoder:

* a lone surrogate in a string (RFC 8620 §1.5: I-JSON has none).  Text the server makes is
  valid where it is made (``app.mail.charsets.valid_text``); if one still gets here it is a bug,
  logged with the call it came from, and the string is repaired with U+FFFD so that no object of
  the call is lost;
* nesting deeper than the encoder's limit (a Core/echo of a deep argument): that call becomes an
  ``invalidArguments`` error saying so.
"""

from __future__ import annotations

import logging

import orjson

from app.mail.charsets import valid_json

log = logging.getLogger("tidings.api")

__all__ = ["encode_calls", "encode_response"]


def _encode_call(call: list) -> bytes:
    try:
        return orjson.dumps(call)
    except orjson.JSONEncodeError as exc:
        cause = str(exc)
    name, _, call_id = call
    if "surrogate" in cause:
        log.error("method %s (call %s) made a string that is not valid Unicode (%s); repaired with U+FFFD",
                  name, call_id, cause)
        try:
            return orjson.dumps(valid_json(call))
        except orjson.JSONEncodeError as exc:
            cause = str(exc)
    if "recursion" in cause.lower():
        description = "the response would be nested deeper than JSON allows here (255 levels)"
        error = {"type": "invalidArguments", "description": description}
    else:
        log.error("method %s (call %s): response cannot be encoded as JSON: %s", name, call_id, cause)
        error = {"type": "serverFail", "description": f"the response cannot be encoded as JSON: {cause}"}
    return orjson.dumps(["error", error, call_id])


def encode_calls(calls: list) -> bytes:
    """A bare array of method responses (the pre-RFC form, `app.protocol.legacy`) as JSON."""
    return b"[" + b",".join(_encode_call(call) for call in calls) + b"]"


def encode_response(response: dict) -> bytes:
    """The Response object ``{"methodResponses": [...], "createdIds"?, "sessionState"}`` as JSON."""
    calls = b",".join(_encode_call(call) for call in response["methodResponses"])
    rest = {k: v for k, v in response.items() if k != "methodResponses"}
    tail = orjson.dumps(rest)[1:]  # createdIds and sessionState: ids the JSON parser accepted
    return b'{"methodResponses":[' + calls + b"]" + (b"," + tail if tail != b"}" else b"}")
