"""JMAP errors: request-level problem details (RFC 8620 §3.6.1), method-level errors (§3.6.2) and
SetErrors (§5.3)."""

from __future__ import annotations

URN = "urn:ietf:params:jmap:error:"


class ProblemError(Exception):
    """A request-level error, answered as RFC 7807 problem JSON instead of a JMAP response."""

    def __init__(self, type_: str, status: int, detail: str, **extra: object):
        super().__init__(detail)
        self.type = type_
        self.status = status
        self.detail = detail
        self.extra = extra

    def body(self) -> dict:
        kind = self.type if self.type.startswith("about:") else URN + self.type
        return {"type": kind, "status": self.status, "detail": self.detail, **self.extra}


class MethodError(Exception):
    """Answered as ["error", {"type": ..., "description": ...}, callId] for one method call."""

    def __init__(self, type_: str, description: str | None = None, **extra: object):
        super().__init__(description or type_)
        self.type = type_
        self.description = description
        self.extra = extra

    def body(self) -> dict:
        out: dict = {"type": self.type}
        if self.description:
            out["description"] = self.description
        out.update(self.extra)
        return out


def invalid_arguments(description: str) -> MethodError:
    return MethodError("invalidArguments", description)


def set_error(type_: str, description: str, **extra: object) -> dict:
    """A SetError object (RFC 8620 §5.3); always carries a description."""
    return {"type": type_, "description": description, **extra}


def invalid_properties(problems: dict[str, str]) -> dict:
    """One SetError listing every bad property, each explained in the description."""
    return set_error("invalidProperties", "; ".join(f"{p}: {why}" for p, why in problems.items()),
                     properties=list(problems))
