"""Thread (RFC 8621 §3): get and changes. Threads are computed at ingest by the store."""

from app.protocol.registry import MAIL, method
from app.protocol.standard import standard_changes, standard_get

PROPERTIES = ("id", "emailIds")


@method("Thread/get", MAIL)
def thread_get(ctx, args: dict) -> dict:
    def fetch(reader, thread_id):
        email_ids = reader.thread(thread_id)  # sorted by receivedAt, as §3 asks
        return {"id": thread_id, "emailIds": email_ids} if email_ids else None

    # ids: null lists every thread, up to maxObjectsInGet (beyond it standard_get refuses)
    limit = ctx.limits.max_objects_in_get + 1
    return standard_get(ctx, args, "Thread", PROPERTIES, list(PROPERTIES), fetch,
                        lambda reader: reader.thread_ids(limit))


@method("Thread/changes", MAIL)
def thread_changes(ctx, args: dict) -> dict:
    return standard_changes(ctx, args, "Thread")[0]
