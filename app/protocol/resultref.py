"""Result references (RFC 8620 §3.7): an argument "#name" holding {resultOf, name, path} takes its
value from an earlier response of the same request, with a JSON Pointer that may use "*"."""

from __future__ import annotations

import re

from .errors import MethodError

# RFC 6901 §4: array-index = %x30 / ( %x31-39 *%x30-39 ), ASCII digits, no leading zero ("01" and
# Unicode digits such as "٠" or "²" name no element)
_INDEX = re.compile(r"0|[1-9][0-9]*")


def _bad(description: str) -> MethodError:
    return MethodError("invalidResultReference", description)


def _shown(text: str) -> str:
    """A client's string as an error quotes it: cut short, never the megabytes sent."""
    return repr(text) if len(text) <= 80 else f"{text[:80]!r}... ({len(text)} characters)"


def evaluate_pointer(value: object, path: str) -> object:
    """RFC 6901 pointer, extended by RFC 8620 §3.7: "*" maps over an array and flattens arrays."""
    if path == "":
        return value
    if not path.startswith("/"):
        raise _bad(f"path {_shown(path)} must start with '/'")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]
    return _walk(value, tokens, path)


def _walk(value: object, tokens: list[str], path: str) -> object:
    for i, token in enumerate(tokens):
        if token == "*" and (isinstance(value, list) or (isinstance(value, dict) and "*" not in value)):
            # RFC 8620 §3.7 defines "*" on arrays; on a map (e.g. "/created/*/id") we take its
            # values in order, a harmless extension clients rely on
            out = []
            for item in (value if isinstance(value, list) else value.values()):
                got = _walk(item, tokens[i + 1:], path)
                if isinstance(got, list):
                    out.extend(got)
                else:
                    out.append(got)
            return out
        if isinstance(value, list):
            # a huge index is longer than any list's length has digits: no int() of it
            if not _INDEX.fullmatch(token) or len(token) > len(str(len(value))) or int(token) >= len(value):
                raise _bad(f"path {_shown(path)}: no index {_shown(token)}")
            value = value[int(token)]
        elif isinstance(value, dict):
            if token not in value:
                raise _bad(f"path {_shown(path)}: no member {_shown(token)}")
            value = value[token]
        else:
            raise _bad(f"path {_shown(path)}: cannot descend into a {type(value).__name__}")
    return value


def resolve_references(args: dict, responses: list) -> dict:
    if not any(k.startswith("#") for k in args):
        return args
    out = dict(args)
    for key, ref in args.items():
        if not key.startswith("#"):
            continue
        plain = key[1:]
        if plain in args:
            raise MethodError("invalidArguments", f"both {plain!r} and {key!r} given")
        if not (isinstance(ref, dict) and isinstance(ref.get("resultOf"), str)
                and isinstance(ref.get("name"), str) and isinstance(ref.get("path"), str)):
            raise _bad(f"{key!r} must be a ResultReference object (resultOf, name, path)")
        source = next((r for r in responses if r[2] == ref["resultOf"]), None)
        if source is None or source[0] != ref["name"]:
            raise _bad(f"no {ref['name']} response for call {ref['resultOf']!r}")
        del out[key]
        out[plain] = evaluate_pointer(source[1], ref["path"])
    return out
