"""Thread (RFC 8621 §3): /get and /changes. Threads are computed at ingest by the store."""

from __future__ import annotations

from app.protocol.registry import MAIL
from app.protocol.types import DataType, Property, data_type


class Thread(DataType):
    name = "Thread"
    capability = MAIL
    methods = ("get", "changes")
    properties = {"id": Property("Id", server_set=True), "emailIds": Property("Id[]", server_set=True)}

    def fetch(self, ctx, reader, thread_id: str) -> dict | None:
        email_ids = reader.thread(thread_id)  # sorted by receivedAt, as §3 asks
        return {"id": thread_id, "emailIds": email_ids} if email_ids else None

    def all_ids(self, ctx, reader):
        # ids: null lists every thread, up to maxObjectsInGet (beyond it /get refuses)
        return reader.thread_ids(ctx.limits.max_objects_in_get + 1)


THREAD = data_type(Thread())
