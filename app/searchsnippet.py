"""SearchSnippet/get (RFC 8621 §5): the filter's matched words marked in the subject and in a short
piece of the body."""

from __future__ import annotations

from app.mail import mime
from app.protocol.errors import MethodError, invalid_arguments
from app.protocol.query import check_filter
from app.protocol.registry import MAIL, method
from app.protocol.standard import check_known_args

from .email.query import _check_condition, _compile
from .search import UnsupportedQuery, filter_text_query


@method("SearchSnippet/get", MAIL)
def search_snippet_get(ctx, args: dict) -> dict:
    check_known_args(args, {"accountId", "filter", "emailIds"})
    account_id = ctx.account_id(args)
    email_ids = args.get("emailIds")
    if not isinstance(email_ids, list) or not all(isinstance(e, str) for e in email_ids):
        raise invalid_arguments("emailIds must be an array of ids")
    if len(email_ids) > ctx.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", f"more than {ctx.limits.max_objects_in_get} emailIds")
    flt = args.get("filter")
    check_filter(flt, _check_condition)
    query = filter_text_query(_compile(ctx, flt))
    if query is not None and ctx.search is None:
        raise MethodError("unsupportedFilter", "full-text search is not enabled on this server")
    previews: dict[str, tuple[str | None, str | None]] = {}
    not_found = []
    with ctx.store.read(account_id) as reader:
        for email_id in dict.fromkeys(email_ids):
            record = reader.email(email_id)
            if record is None or not ctx.access(account_id).may_read_email(record):
                not_found.append(email_id)
            elif query is not None:
                raw = reader.blob(record["blobId"]) or b""
                previews[email_id] = (record.get("subject"),
                                      mime.body_text(raw, reader.email_outline(email_id)))
    found = [e for e in dict.fromkeys(email_ids) if e not in not_found]
    if query is None:  # no text in the filter: nothing can match (§5: null subject and preview)
        snippets = {}
    else:
        try:
            snippets = ctx.search.snippets(account_id, query, found, previews)
        except UnsupportedQuery as exc:
            raise MethodError("unsupportedFilter", f"cannot make snippets for this filter: {exc}") from None
    listed = [{"emailId": e, "subject": snippets.get(e, {}).get("subject"),
               "preview": snippets.get(e, {}).get("preview")} for e in found]
    return {"accountId": account_id, "list": listed, "notFound": not_found or None}
