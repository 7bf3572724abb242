"""Email (RFC 8621 §4): /get, /changes and /set from the standard machinery, with what is Email's
own in `get` (MIME rendering) and `set` (drafts built from JSON); Email/query and
Email/copy (`copy`: the same message in another account),
Email/queryChanges (`query`: a planner over the store's indexes and the full-text index, which
streams rather than listing every match), Email/import and Email/parse are Email's own methods."""

from app.protocol.registry import MAIL
from app.protocol.types import DataType, Property, data_type
from app.quota import over_quota
from store import OverQuota

from . import copy as email_copy
from . import get, imports, query  # noqa: F401  (query and imports register their methods)
from . import set as email_set
from .model import BODY_ARGS, DEFAULT_PROPERTIES, PROPERTIES

_SERVER_SET = {"id", "blobId", "threadId", "size", "hasAttachment", "preview"}


class Email(DataType):
    name = "Email"
    capability = MAIL
    methods = ("get", "changes", "set", "copy")
    properties = {p: Property("*", nullable=True, server_set=p in _SERVER_SET) for p in PROPERTIES}
    default_properties = tuple(DEFAULT_PROPERTIES)
    get_args = BODY_ARGS
    parse_get_args = get.parse_get_args
    fetch = get.fetch
    all_ids = get.all_ids
    render = get.render_email
    copy_fields = email_copy.copy_fields

    def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
        if email_copy.is_copy(obj):  # Email/copy (§4.7): the source message, not a draft
            return email_copy.prepare_copy(ctx, reader, obj)
        return email_set.prepare_create(self, ctx, reader, obj)

    def judge(self, ctx, reader, plan) -> None:
        """RFC 9425 / RFC 8620 §5.3: the creates of one /set or /copy (in order) that would take the
        account over a quota are refused with overQuota; destroys of the same call are not counted
        as room (the rule is the store's `check_room`)."""
        messages = octets = 0
        for op in plan.accepted("create"):
            size = len(op.fields["raw"])
            try:
                reader.check_room(messages=messages + 1, octets=octets + size)
            except OverQuota as exc:
                plan.refuse(op, over_quota(exc))
                continue
            messages, octets = messages + 1, octets + size

    prepare_update = email_set.prepare_update
    create = email_set.create
    update = email_set.update
    check_destroy = email_set.check_destroy
    destroy = email_set.destroy


EMAIL = data_type(Email())
