"""CalendarEvent/parse (JMAP Calendars draft §CalendarEvent/parse): iCalendar blobs (an upload, or
an .ics attachment of an email by its part blob id) read as JSCalendar Events without storing
anything.  The metadata properties (id, baseEventId, calendarIds, isDraft, isOrigin) are null."""

from __future__ import annotations

from app.blob import blob_in
from app.protocol.errors import invalid_arguments
from app.protocol.registry import method
from app.protocol.standard import check_known_args, id_list_arg, properties_arg

from .calendar import CALENDARS_PARSE
from .event import EVENT
from .ical import parse_ics
from .jscal import EVENT_DEFAULTS

_METADATA = ("id", "baseEventId", "calendarIds", "isDraft", "isOrigin")


@method("CalendarEvent/parse", CALENDARS_PARSE)
def parse(ctx, args: dict) -> dict:
    """{accountId, blobIds, properties} -> {accountId, parsed: {blobId: [CalendarEvent]} | null,
    notFound: [blobId] | null, notParsable: [blobId] | null}."""
    check_known_args(args, {"accountId", "blobIds", "properties"})
    account_id = ctx.account_id(args)
    blob_ids = id_list_arg(ctx, args, "blobIds", ctx.limits.max_objects_in_get)
    if blob_ids is None:
        raise invalid_arguments("blobIds must be a list of blob ids")
    props = properties_arg(args, "properties", list(EVENT.properties), list(EVENT.default_properties))
    parsed, not_found, not_parsable = {}, [], []
    with ctx.store.read(account_id) as reader:
        for blob_id in dict.fromkeys(blob_ids):
            found = blob_in(reader, blob_id, access=ctx.access(account_id))
            if found is None:
                not_found.append(blob_id)
                continue
            result = parse_ics(found[0])
            if not result.events:
                not_parsable.append(blob_id)
                continue
            parsed[blob_id] = [{p: (None if p in _METADATA else ev.get(p, EVENT_DEFAULTS.get(p))) for p in props}
                               for ev in result.events]
    return {"accountId": account_id, "parsed": parsed or None, "notFound": not_found or None,
            "notParsable": not_parsable or None}
