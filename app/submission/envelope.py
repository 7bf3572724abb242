"""What is sent and to whom: the SMTP envelope of an EmailSubmission (RFC 8621 §7) and the message
as it leaves the server (the stored one, byte for byte, without its Bcc header field)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from app.mail.headers import convert_value, is_addr_spec, split_header_block

MAX_RECIPIENTS = 100  # tooManyRecipients beyond this (§7.5 maxRecipients)
MAX_DELAYED_SEND = 30 * 86400  # seconds a FUTURERELEASE (RFC 4865) may hold a message
MAX_PARAMETERS = 16  # per address: far more than any SMTP extension uses together
MAX_KEYWORD = 64
MAX_VALUE = 500  # the longest any common parameter needs (RFC 3461 ORCPT: 500 characters)

# RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
# esmtp-value = 1*(%d33-60 / %d62-126), printable ASCII without "=" (so no space, no CR/LF: a
# value can never add a parameter or a command to the line it is written on)
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ESMTP_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e]+")
# RFC 4954 §5: AUTH=<mailbox> asserts who submitted the message, which is the server's to say
_SERVER_ONLY = frozenset({"AUTH"})
# RFC 4865 §3: HOLDFOR = 1*9DIGIT; HOLDUNTIL = an RFC 3339 date-time (date, time and zone)
_HOLDFOR = re.compile(r"[0-9]{1,9}")
_HOLDUNTIL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
                        r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})")

def headers_of(raw: bytes) -> list[tuple[str, str]]:
    """The header fields of a message as (name, raw value)."""
    return split_header_block(raw)[0]


def addresses_in(fields: list[tuple[str, str]], name: str) -> list[list[str]]:
    """For each field called `name`, the addresses it lists."""
    return [[a["email"] for a in convert_value(value, "Addresses") if a.get("email")]
            for field, value in fields if field.lower() == name]


def without_bcc(raw: bytes) -> bytes:
    """The message with every Bcc field (and its folded continuation lines) removed from the header
    section, all other bytes as they are (§7.5: "The server MUST remove any Bcc header field")."""
    out, pos, skipping = [], 0, False
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        end = len(raw) if nl < 0 else nl + 1
        line = raw[pos:end]
        if line in (b"\r\n", b"\n"):  # the end of the header section: the rest as it is
            out.append(raw[pos:])
            break
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
        else:
            skipping = re.match(rb"bcc[ \t]*:", line, re.IGNORECASE) is not None
            if not skipping:
                out.append(line)
        pos = end
    return b"".join(out)


def identity_allows(identity: dict, address: str) -> bool:
    """Whether an Identity's email covers an address (its own, or ``*@domain`` for any in it)."""
    email = identity["email"].lower()
    address = address.lower()
    return address == email or (email.startswith("*@") and address.rpartition("@")[2] == email[2:])


def derive(raw: bytes, identity: dict) -> tuple[dict | None, str | None]:
    """The Envelope of §7 ("If the envelope property is null or omitted on creation"): mailFrom from
    the last Sender field, else the last From field, else the identity's address; rcptTo the
    deduplicated addresses of To, Cc and Bcc.  Returns (envelope, None) or (None, why the message
    cannot give one, for invalidEmail)."""
    fields = headers_of(raw)
    mail_from = None
    for name in ("sender", "from"):
        found = addresses_in(fields, name)
        if found:
            if len(found) > 1 or len(found[-1]) > 1:
                return None, f"more than one {name.title()} address: the envelope sender is ambiguous"
            mail_from = found[-1][0] if found[-1] else None
            break
    if mail_from is None or not identity_allows(identity, mail_from):
        mail_from = identity["email"]
    rcpts = dict.fromkeys(a for name in ("to", "cc", "bcc") for group in addresses_in(fields, name) for a in group)
    return {"mailFrom": {"email": mail_from, "parameters": None},
            "rcptTo": [{"email": a, "parameters": None} for a in rcpts]}, None


def parameters_problem(params: object, where: str) -> str | None:
    """Why the parameters of an envelope Address (RFC 8621 §7: Object|null, values String|null) cannot
    be sent on an SMTP command line, or None."""
    if params is None:
        return None
    if not isinstance(params, dict) or not all(isinstance(v, str) or v is None for v in params.values()):
        return f"{where} parameters must map names to strings or null"
    if len(params) > MAX_PARAMETERS:
        return f"{where} has more than {MAX_PARAMETERS} parameters"
    seen: set[str] = set()
    for keyword, value in params.items():
        shown = keyword if len(keyword) <= MAX_KEYWORD else keyword[:MAX_KEYWORD] + "..."
        if len(keyword) > MAX_KEYWORD or not _ESMTP_KEYWORD.fullmatch(keyword):
            return f"{where} parameter {shown!r} is not an SMTP esmtp-keyword (RFC 5321 §4.1.2)"
        if keyword.upper() in seen:
            return f"{where} parameter {keyword!r} is given twice"
        seen.add(keyword.upper())
        if keyword.upper() in _SERVER_ONLY:
            return f"{where} parameter {keyword!r} is set by the server, not by a client (RFC 4954 §5)"
        if value is not None and (len(value) > MAX_VALUE or not _ESMTP_VALUE.fullmatch(value)):
            return (f"{where} parameter {keyword!r}: the value must be 1 to {MAX_VALUE} printable ASCII "
                    "characters other than \"=\" (RFC 5321 §4.1.2 esmtp-value)")
    return None


def check_envelope(envelope: dict) -> str | None:
    """Why an Envelope object is malformed (for invalidProperties), or None.  The parameters are
    checked here, where the client can be told; a recipient's email is checked later, to answer
    invalidRecipients (§7.5)."""
    def address_problem(value: object, where: str) -> str | None:
        if not isinstance(value, dict) or not isinstance(value.get("email"), str):
            return f"{where} must be an Address object with an email string"
        if set(value) - {"email", "parameters"}:
            return f"{where} has unknown properties"
        return parameters_problem(value.get("parameters"), where)

    if not isinstance(envelope, dict) or set(envelope) - {"mailFrom", "rcptTo"}:
        return "must be an Envelope object (mailFrom, rcptTo)"
    why = address_problem(envelope.get("mailFrom"), "mailFrom")
    if why:
        return why
    # "" is the null reverse-path, refused later as forbiddenMailFrom; anything else is one SMTP
    # Mailbox (RFC 5321 §4.1.2), no spaces or line breaks around it
    mail_from = envelope["mailFrom"]["email"]
    if mail_from and not is_addr_spec(mail_from):
        return "mailFrom email must be one address (an RFC 5321 Mailbox)"
    if not isinstance(envelope.get("rcptTo"), list):
        return "rcptTo must be a list of Address objects"
    for i, rcpt in enumerate(envelope["rcptTo"]):
        why = address_problem(rcpt, f"rcptTo[{i}]")
        if why:
            return why
    return None


def release_time(mail_from: dict, now: float) -> tuple[float, str | None]:
    """When the message may leave (RFC 4865 FUTURERELEASE: HOLDFOR=seconds or HOLDUNTIL=date on
    MAIL FROM), or now; and why the parameters are unacceptable, or None."""
    params = {k.upper(): v for k, v in (mail_from.get("parameters") or {}).items()}
    if "HOLDFOR" in params and "HOLDUNTIL" in params:
        return now, "HOLDFOR and HOLDUNTIL exclude each other (RFC 4865)"
    if "HOLDFOR" in params:
        value = params["HOLDFOR"] or ""
        if not _HOLDFOR.fullmatch(value):  # ASCII digits only: "²" or "٣٠" are no number of seconds
            return now, "HOLDFOR must be 1 to 9 ASCII digits, a number of seconds (RFC 4865)"
        at = now + int(value)
    elif "HOLDUNTIL" in params:
        value = params["HOLDUNTIL"] or ""
        why = "HOLDUNTIL must be an RFC 3339 date-time with a time and a zone (RFC 4865)"
        if not _HOLDUNTIL.fullmatch(value):
            return now, why
        try:
            at = datetime.fromisoformat(value.upper().replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError):  # a 13th month, a 61st second
            return now, why
    else:
        return now, None
    if at - now > MAX_DELAYED_SEND:
        return now, f"the release is more than maxDelayedSend ({MAX_DELAYED_SEND} s) ahead"
    return max(at, now), None


def relay_parameters(params: dict | None) -> dict:
    """The MAIL FROM parameters passed on to the relay: FUTURERELEASE is done here, not there."""
    return {k: v for k, v in (params or {}).items() if k.upper() not in ("HOLDFOR", "HOLDUNTIL")}


def utc_date(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["MAX_DELAYED_SEND", "MAX_RECIPIENTS", "addresses_in", "check_envelope", "derive", "headers_of",
           "identity_allows", "parameters_problem", "relay_parameters", "release_time", "utc_date",
           "without_bcc"]
