"""The request pipeline (RFC 8620 §3): parse -> check `using` -> for each call in order: resolve
result references -> dispatch -> turn errors into responses. Authentication happens before, in the
HTTP layer."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import orjson

from store import storage_error

from .errors import MethodError, ProblemError
from .registry import CORE, METHODS
from .resultref import resolve_references

log = logging.getLogger("tidings.api")


@dataclass
class Limits:
    max_size_upload: int = 50_000_000
    max_concurrent_upload: int = 4
    max_size_request: int = 10_000_000
    max_concurrent_requests: int = 8
    max_calls_in_request: int = 64
    max_objects_in_get: int = 1000
    max_objects_in_set: int = 1000

    def capability(self) -> dict:
        return {"maxSizeUpload": self.max_size_upload,
                "maxConcurrentUpload": self.max_concurrent_upload,
                "maxSizeRequest": self.max_size_request,
                "maxConcurrentRequests": self.max_concurrent_requests,
                "maxCallsInRequest": self.max_calls_in_request,
                "maxObjectsInGet": self.max_objects_in_get,
                "maxObjectsInSet": self.max_objects_in_set,
                "collationAlgorithms": ["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"]}


@dataclass
class CallContext:
    """What a method handler may use: the store, the caller, and this request's shared state."""

    store: object
    user: dict
    limits: Limits
    using: set[str]
    created_ids: dict[str, str] = field(default_factory=dict)
    search: object = None
    call_id: str = ""
    push: object = None  # the PushSubscription delivery service (app.push.webpush.PushService)
    push_allow_http: bool = False  # `tidings serve --push-allow-http`: http:// push URLs accepted
    credential: str | None = None  # what a PushSubscription is tied to (the user's name for Basic)
    relay: object = None  # `tidings serve --smtp-relay` (app.submission.relay.RelayConfig), or None
    method_capability: str = ""  # the capability of the method being called
    _accounts: dict | None = None  # account id -> app.access.Access, read once per request

    def accounts(self) -> dict:
        """The accounts this user may use (app.access), read from the store once per request."""
        if self._accounts is None:
            from app.access import accounts_for

            self._accounts = accounts_for(self.store, self.user)
        return self._accounts

    def forget_accounts(self) -> None:
        """Grants changed in this request: the next call reads them again."""
        self._accounts = None

    def account_id(self, args: dict) -> str:
        """The accountId argument, checked against the accounts this user may access and what the
        method may do in a shared one."""
        account_id = args.get("accountId")
        if not isinstance(account_id, str):
            raise MethodError("invalidArguments", "accountId must be a string")
        if not self.may_read_account(account_id):
            # RFC 8620 §3.6.2: an account the user cannot access is indistinguishable from none
            raise MethodError("accountNotFound", f"no account {account_id!r} for this user")
        if account_id != self.user["accountId"] and not (access := self.access(account_id)).owner \
                and self.method_capability not in access.capabilities:
            # what is shared there says which capabilities a grantee may use (app.access)
            raise MethodError("accountNotSupportedByMethod",
                              f"nothing of {self.method_capability} is shared with this user in {account_id!r}")
        return account_id

    def may_read_account(self, account_id: str) -> bool:
        """Whether the user may use the account at all: their own, or one sharing with them."""
        return account_id == self.user["accountId"] or account_id in self.accounts()

    def access(self, account_id: str):
        """The user's rights in an account they may use (app.access.Access)."""
        return self.accounts()[account_id]

    def resolve_id(self, value: str) -> str | None:
        """An id or a "#creationId" reference to an object created earlier in this request."""
        if isinstance(value, str) and value.startswith("#"):
            return self.created_ids.get(value[1:])
        return value


def parse_request(body: bytes, limits: Limits) -> dict:
    """A request body as a checked Request object (RFC 8620 §3.3); ProblemError otherwise."""
    return check_request(decode_request(body, limits), limits)


def decode_request(body: bytes, limits: Limits) -> object:
    """The JSON of a request body or WebSocket message, after the maxSizeRequest check."""
    if len(body) > limits.max_size_request:
        raise ProblemError("limit", 400, f"request exceeds maxSizeRequest ({limits.max_size_request} bytes)",
                           limit="maxSizeRequest")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProblemError("notJSON", 400, f"request body is not valid JSON: {exc}") from None


def check_request(request: object, limits: Limits) -> dict:
    """A decoded request checked as a Request object (properties other than the RFC's, such as a
    WebSocket Request's @type and id, are left alone)."""
    problems = []
    if not isinstance(request, dict):
        raise ProblemError("notRequest", 400, "request must be a JSON object")
    using = request.get("using")
    if not isinstance(using, list) or not all(isinstance(u, str) for u in using):
        problems.append("'using' must be an array of capability strings")
    calls = request.get("methodCalls")
    if not isinstance(calls, list):
        problems.append("'methodCalls' must be an array")
    else:
        for i, call in enumerate(calls):
            if not (isinstance(call, list) and len(call) == 3 and isinstance(call[0], str)
                    and isinstance(call[1], dict) and isinstance(call[2], str)):
                problems.append(f"methodCalls[{i}] must be [name, arguments object, callId]")
    created = request.get("createdIds")
    if created is not None and not (isinstance(created, dict)
                                    and all(isinstance(v, str) for v in created.values())):
        problems.append("'createdIds' must map creation ids to ids")
    if problems:
        raise ProblemError("notRequest", 400, "; ".join(problems))
    if len(calls) > limits.max_calls_in_request:
        raise ProblemError("limit", 400, f"more than maxCallsInRequest ({limits.max_calls_in_request}) calls",
                           limit="maxCallsInRequest")
    return request


def process(request: dict, ctx_factory, known_capabilities: set[str], observe=None) -> dict:
    """Runs the method calls of a parsed request in order and returns the Response object.
    observe: None, or called after each invocation as observe(method name, seconds, the error
    type or None, the response arguments or None) (metrics and the access log, app.metrics)."""
    using = set(request["using"])
    unknown = sorted(using - known_capabilities)
    if unknown:
        raise ProblemError("unknownCapability", 400,
                           f"the server does not support {', '.join(unknown)}")
    ctx = ctx_factory(using)
    if request.get("createdIds"):
        ctx.created_ids.update(request["createdIds"])
    responses: list = []
    for name, args, call_id in request["methodCalls"]:
        ctx.call_id = call_id
        ctx.method_capability = ""
        started = time.perf_counter()
        before = len(responses)
        try:
            args = resolve_references(args, responses)
            entry = METHODS.get(name)
            if entry is None or (entry.capability not in using and entry.capability != CORE):
                raise MethodError("unknownMethod", f"unknown method {name!r}"
                                  + ("" if entry is None else f" (add {entry.capability} to 'using')"))
            if CORE not in using:
                # RFC 8620 §3.3: core must be in `using`; answer per call rather than failing all
                raise MethodError("unknownMethod", f"{CORE} must be in 'using'")
            ctx.method_capability = entry.capability
            result = entry.handler(ctx, args)
            if isinstance(result, list):
                responses.extend([n, a, call_id] for n, a in result)
            else:
                responses.append([name, result, call_id])
        except MethodError as err:
            responses.append(["error", err.body(), call_id])
        except RecursionError:
            # a value nested deeper than some recursive code can walk: the client's input, not a
            # server fault, so a plain error and one log line (the guards of o06 should come first)
            log.warning("method %s (call %s): arguments nested too deeply", name, call_id)
            responses.append(["error", {"type": "invalidArguments",
                                        "description": "an argument is nested too deeply"}, call_id])
        except Exception as exc:
            failure = storage_error(exc)
            if failure is not None:
                # the disk refused the write (full, I/O error): the transaction was aborted, so
                # nothing of the call was stored and the client may try again once there is room
                # (RFC 8620 §3.6.2 serverUnavailable); one log line, no traceback
                log.warning("method %s (call %s): %s", name, call_id, failure.logged())
                responses.append(["error", {"type": "serverUnavailable", "description": str(failure)}, call_id])
                continue
            log.exception("method %s (call %s) failed", name, call_id)
            responses.append(["error", {"type": "serverFail",
                                        "description": "internal error; the server logged it"}, call_id])
        if observe is not None:
            first = responses[before] if len(responses) > before else None
            error = first[1].get("type") if first is not None and first[0] == "error" else None
            observe(name, time.perf_counter() - started, error, first[1] if first is not None else None)
    response = {"methodResponses": responses}
    if "createdIds" in request:
        response["createdIds"] = ctx.created_ids
    return response
