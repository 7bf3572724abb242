"""Whose addresses are whose: a user's own address and aliases (`tidings user alias`).

Used to decide what a user may send as (Identity/set ``forbiddenFrom``, EmailSubmission
``forbiddenFrom``/``forbiddenMailFrom``, RFC 8621 §6.3, §7.5) and where mail for an address goes
(LMTP RCPT TO, local delivery of submissions). Comparison is case-insensitive: domains are, and
no deployment of tidings needs case-distinct local parts."""

from __future__ import annotations


def addresses_of(user: dict) -> list[str]:
    """The user's own address, then the aliases (``local@domain`` or ``@domain``), as configured."""
    own = user.get("email") or f"{user['name']}@localhost"
    return [own, *user.get("aliases", ())]


def may_send_as(user: dict, address: str) -> bool:
    """Whether `address` is the user's: their own, an alias, or in a domain aliased whole."""
    address = address.strip().lower()
    if "@" not in address:
        return False
    domain = "@" + address.rpartition("@")[2]
    return any(a.lower() in (address, domain) for a in addresses_of(user))


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()
