"""A data type that exists only for the tests: declared here and nowhere else, it gets /get, /set,
/changes, /query, /queryChanges and /copy from the machinery, storage from a generic collection and
push from the change log. A server loads it with TIDINGS_EXTRA_TYPES=tests.tiny_type."""

from __future__ import annotations

from app.protocol.errors import invalid_properties
from app.protocol.types import Capability, DataType, Property, capability, data_type
from store import Collection

NOTES = "urn:tidings:test:notes"

capability(Capability(NOTES))


class Note(DataType):
    name = "Note"
    capability = NOTES
    methods = ("get", "changes", "set", "query", "queryChanges", "copy")
    collection = Collection("Note", "N", log="Note", indexes=("folder", "priority"))
    properties = {
        "id": Property("Id", server_set=True),
        "title": Property("String"),
        "folder": Property("String", default="inbox"),
        "priority": Property("UnsignedInt", default=0),
        "tags": Property("String[]", default=[]),
        "done": Property("Boolean", default=False),
        "created": Property("UTCDate", server_set=True),
    }
    conditions = {"folder": "String", "priority": "UnsignedInt", "done": "Boolean", "title": "String"}
    sorts = ("title", "priority")

    def validate(self, ctx, reader, fields, current, problems):
        if "title" in fields and not fields["title"].strip():
            problems["title"] = "must not be empty"
        return fields

    def create(self, ctx, writer, fields):
        return writer.create_record(self.collection, {**fields, "created": "2024-01-01T00:00:00Z"})

    def judge(self, ctx, reader, plan):
        # a rule across objects: titles are unique within a folder, judged on the final state
        current = {i: reader.record(self.collection, i) for i in reader.record_ids(self.collection)}
        seen: dict[tuple, str] = {}
        for obj_id, note in sorted(plan.final_state(current).items()):
            key = (note.get("folder"), note.get("title"))
            if key in seen:
                for op in plan.accepted():
                    if op.obj_id in (obj_id, seen[key]) and op.kind != "destroy":
                        plan.refuse(op, invalid_properties({"title": "another note in the folder has it"}))
            seen[key] = obj_id

    def match(self, ctx, cond, obj):
        return all((v.casefold() in obj["title"].casefold()) if k == "title" else obj.get(k) == v
                   for k, v in cond.items())


NOTE = data_type(Note())
