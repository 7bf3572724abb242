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
        access = ctx.access(reader.account_id)
        if email_ids and not access.owner:  # a grantee sees the emails they may read
            email_ids = [i for i in email_ids if access.may_read_email(reader.email(i) or {})]
        return {"id": thread_id, "emailIds": email_ids} if email_ids else None

    def all_ids(self, ctx, reader):
        # ids: null lists every thread, up to maxObjectsInGet (beyond it /get refuses)
        access = ctx.access(reader.account_id)
        if access.owner:
            return reader.thread_ids(ctx.limits.max_objects_in_get + 1)
        return self._readable_threads(reader, access)

    def _readable_threads(self, reader, access):
        """The threads of the emails a grantee may read, each once (lazily: /get stops at its limit)."""
        from app.email.get import readable_ids

        seen: set[str] = set()
        for email_id in readable_ids(reader, access):
            record = reader.email(email_id)
            if record is not None and record["threadId"] not in seen:
                seen.add(record["threadId"])
                yield record["threadId"]


THREAD = data_type(Thread())
