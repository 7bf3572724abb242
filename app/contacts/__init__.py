"""Contacts (RFC 9610): the AddressBook and ContactCard data types, JSContact validation
(RFC 9553) and the vCard conversion (RFC 9555) for import and download."""

from __future__ import annotations

from . import addressbook, card  # noqa: F401  (each registers its type)
