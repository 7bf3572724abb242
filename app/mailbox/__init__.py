"""Mailbox (RFC 8621 §2): /get, /changes, /set, /query and /queryChanges from the standard machinery;
what is Mailbox's own lives in `model` (properties, storage), `set` (the tree rules) and `query`."""

from app.protocol.types import data_type

from . import query
from . import set as rules
from .model import MailboxBase


class Mailbox(MailboxBase):
    validate = rules.validate
    prepare_create = rules.prepare_create
    prepare_update = rules.prepare_update
    judge = rules.judge
    check_destroy = rules.check_destroy
    check_set_args = rules.check_set_args
    destroy = rules.destroy
    conditions = query.CONDITIONS
    sorts = query.SORTS
    query_args = query.QUERY_ARGS
    query_ids = query.query_ids
    match = query.match


MAILBOX = data_type(Mailbox())
