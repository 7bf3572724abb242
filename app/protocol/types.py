"""The data-type registry: a JMAP data type is declared once, here, and everything else comes from it.

A `DataType` names its capability, its properties (JSON type, default, server-set, immutable,
nullable), the standard methods it offers and where it is stored.  From the registry come:

* the method table: ``Foo/get``, ``Foo/changes``, ``Foo/set``, ``Foo/query``, ``Foo/queryChanges``
  and ``Foo/copy`` are the machinery of `app.protocol.standard`, parametrised by the type;
* the session's capabilities and each account's capabilities (`Capability`), and the `using`
  check of the request pipeline;
* the types that have states and change logs (what push reports and EventSource's ``types=*``
  means).

A type module (``app/mailbox/``, ``app/email/``, ``app/push/subscription.py`` ...) declares its
type and overrides only the hooks that are its own: how an object is validated beyond its
property declarations, what the final state of a /set must satisfy, how it is stored when it is
not a generic `store.Collection`, which filter conditions and sorts /query knows.

Property types (RFC 8620 §1.1): ``"Id"``, ``"String"``, ``"Boolean"``, ``"Int"``,
``"UnsignedInt"``, ``"UTCDate"``, ``"Date"``, ``"Object"`` (any JSON object), ``"*"`` (any JSON
value), ``"EmailAddress"`` (RFC 8621 §4.1.2.3), a list ``"T[]"`` and a map ``"Id[T]"`` / ``"String[T]"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from store import Collection

__all__ = ["CAPABILITIES", "MAX_VALUE_DEPTH", "TYPES", "Capability", "DataType", "Property", "capability",
           "check_value", "data_type", "nests_deeper"]

# \Z, not $ (which also matches before a final "\n"), and ASCII digits only: "ab\n" is no Id
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}\Z")
_UTC_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z\Z")
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})\Z")


# How deeply a client's value may nest arrays and objects before any recursive code sees it (case
# o06): deeper than any JMAP value needs (a bodyStructure at the MIME parser's 40 multipart levels
# is ~82), far below Python's recursion limit.
MAX_VALUE_DEPTH = 100


def nests_deeper(value: object, limit: int = MAX_VALUE_DEPTH) -> bool:
    """Whether ``value`` nests more than ``limit`` arrays/objects.  Breadth-first, without
    recursion: it is the guard in front of recursive code."""
    level, depth = [value], 0
    while level:
        containers = [v for v in level if isinstance(v, (dict, list))]
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]
    return False


def _date_ok(value: str, pattern: re.Pattern) -> bool:
    if not pattern.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_value(json_type: str, value: object, depth: int = 0) -> str | None:
    """Why ``value`` is not of ``json_type`` (a description for invalidProperties), or None."""
    if depth > 8:
        return "nested too deeply"
    if json_type == "*":
        return None
    if json_type.endswith("[]"):
        if not isinstance(value, list):
            return f"must be a list of {json_type[:-2]}"
        for i, item in enumerate(value):
            why = check_value(json_type[:-2], item, depth + 1)
            if why:
                return f"element {i} {why}"
        return None
    m = re.fullmatch(r"(Id|String)\[(.+)\]", json_type)
    if m:
        if not isinstance(value, dict):
            return f"must be a map of {m.group(2)}"
        for key, item in value.items():
            if m.group(1) == "Id" and not _ID_RE.match(key):
                return f"key {key!r} is not an Id"
            why = check_value(m.group(2), item, depth + 1)
            if why:
                return f"value of {key!r} {why}"
        return None
    if json_type == "Id":
        return None if isinstance(value, str) and _ID_RE.match(value) else "must be an Id"
    if json_type == "String":
        return None if isinstance(value, str) else "must be a string"
    if json_type == "Boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if json_type in ("Int", "UnsignedInt"):
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
        if json_type == "UnsignedInt" and not 0 <= value <= 2**53 - 1:
            return "must be an integer from 0 to 2^53-1"
        if not -(2**53) + 1 <= value <= 2**53 - 1:
            return "must be an integer from -2^53+1 to 2^53-1"
        return None
    if json_type == "UTCDate":
        return None if isinstance(value, str) and _date_ok(value, _UTC_RE) else \
            'must be a UTCDate such as "2024-01-02T03:04:05Z"'
    if json_type == "Date":
        return None if isinstance(value, str) and _date_ok(value, _DATE_RE) else "must be a Date (RFC 3339)"
    if json_type == "Object":
        return None if isinstance(value, dict) else "must be an object"
    if json_type == "EmailAddress":  # RFC 8621 §4.1.2.3
        if not isinstance(value, dict) or set(value) - {"name", "email"}:
            return "must be an EmailAddress object (name, email)"
        if value.get("name") is not None and not isinstance(value["name"], str):
            return "name must be a string or null"
        return None if isinstance(value.get("email"), str) else "email must be a string"
    raise ValueError(f"unknown property type {json_type!r}")


_MISSING = object()


@dataclass(frozen=True)
class Property:
    """One property of a data type (RFC 8620 §1.1 notation): its JSON type, whether null is allowed,
    its default when a create leaves it out, and whether the server sets it (a client may only
    repeat its current value, §5.3) or it is immutable after creation."""

    type: str = "*"
    nullable: bool = False
    default: object = _MISSING
    server_set: bool = False
    immutable: bool = False
    hidden: bool = False  # never returned by /get (PushSubscription url and keys, RFC 8620 §7.2)

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING

    def check(self, value: object) -> str | None:
        if value is None:
            return None if self.nullable else "must not be null"
        return check_value(self.type, value)


@dataclass
class Capability:
    """A capability URN and what the session says about it (RFC 8620 §2): ``session(server)`` gives
    the object under ``capabilities``, ``account(server, account)`` the one under an account's
    ``accountCapabilities`` (None: the capability is not an account capability)."""

    urn: str
    session: Callable[[object], dict] | None = field(default=lambda server: {})  # None: not in the session
    account: Callable[[object, dict], dict] | None = field(default=lambda server, account: {})
    primary: bool = True  # the account is the user's primary account for it
    shared: bool = False  # also in the capabilities of accounts shared with the user (RFC 9670)


CAPABILITIES: dict[str, Capability] = {}
TYPES: dict[str, DataType] = {}


def capability(cap: Capability) -> Capability:
    if cap.urn in CAPABILITIES:
        raise RuntimeError(f"capability {cap.urn} declared twice")
    CAPABILITIES[cap.urn] = cap
    return cap


class DataType:
    """A JMAP data type.  Subclass it in the type's module, set the class attributes and override
    the hooks that differ from a generic record; then register the instance with `data_type`.

    Storage: a type with a `collection` is kept in generic storage (`store.Collection`) and needs no
    storage hooks; a type without one overrides `fetch`, `all_ids`, `create`, `update` and
    `destroy` with its own store operations.
    """

    name: str = ""
    capability: str = ""
    properties: dict[str, Property] = {}
    methods: tuple[str, ...] = ("get", "changes", "set")
    collection: Collection | None = None
    account_scoped: bool = True  # False: not tied to an account (PushSubscription, RFC 8620 §7.2)
    has_state: bool = True  # /get returns a state; /set takes ifInState; push reports it
    default_properties: tuple[str, ...] | None = None  # /get without properties (None: all shown)
    set_args: tuple[str, ...] = ()  # extra /set arguments (Mailbox: onDestroyRemoveEmails)
    get_args: tuple[str, ...] = ()  # extra /get arguments (Email: bodyProperties ...)
    query_args: tuple[str, ...] = ()  # extra /query and /queryChanges arguments
    conditions: dict[str, str] = {}  # /query FilterCondition property -> JSON type
    sorts: tuple[str, ...] = ()  # /query sortable properties
    max_query_results: int = 1000

    # -- reading
    def visible(self) -> list[str]:
        return [p for p, spec in self.properties.items() if not spec.hidden]

    def defaults_for_get(self) -> list[str]:
        return list(self.default_properties) if self.default_properties is not None else self.visible()

    def fetch(self, ctx, reader, obj_id: str) -> dict | None:
        """The object as JMAP shows it (all visible properties), or None."""
        record = reader.record(self.collection, obj_id)
        return self.to_jmap(ctx, record) if record is not None else None

    def current_state(self, ctx, reader) -> str:
        """The type's state in the reader's account (RFC 8620 §5.1)."""
        return reader.state(self.name)

    def to_jmap(self, ctx, record: dict) -> dict:
        return record

    def all_ids(self, ctx, reader) -> Iterable[str]:
        """Every id, for ``ids: null`` (bounded by maxObjectsInGet) and /query."""
        return reader.record_ids(self.collection)

    def render(self, ctx, reader, obj: dict, props: list[str], opts: object) -> dict:
        """The requested properties of one fetched object (Email renders MIME on demand)."""
        return {p: obj.get(p) for p in props}

    def parse_get_args(self, ctx, args: dict) -> tuple[list[str] | None, object]:
        """(the properties asked for, or None for the default; options for `render`): a type with
        get_args checks them here."""
        return None, None

    # -- writing (/set, RFC 8620 §5.3)
    def prepare_create(self, ctx, reader, obj: dict) -> tuple[dict, dict | None]:
        """(the values to store, None) or (_, the SetError refusing it) for one create.  The
        standard one checks the declarations and calls `validate`; Email builds a message here."""
        from .machinery import prepare_create

        return prepare_create(self, ctx, reader, obj)

    def prepare_update(self, ctx, reader, current: dict, patch: dict, resolve) -> tuple[dict, dict | None]:
        """(the changed properties, None) or (_, a SetError) for one update with a PatchObject;
        resolve(dict) replaces creation references in Id properties."""
        from .machinery import prepare_update

        return prepare_update(self, ctx, reader, current, patch, resolve)

    def validate(self, ctx, reader, obj: dict, current: dict | None, problems: dict[str, str]) -> dict:
        """Type-specific checks of a create (current None) or an update (current: the object as it
        is; obj: the changed properties, already of the declared types); adds to problems and
        returns the values to store (obj, possibly normalised)."""
        return obj

    def check_set_args(self, ctx, args: dict) -> None:
        """Raises MethodError for a bad value of one of the type's own /set arguments (set_args),
        even when no operation of the call would read it."""

    def judge(self, ctx, reader, plan) -> None:
        """Final-state rules across the objects of one /set (RFC 8620 §5.3: only the final state
        must be valid): refuse operations of the plan with `plan.refuse` until what is left is
        valid.  The machinery calls it again after each round that refused something."""

    def check_destroy(self, ctx, reader, obj: dict, args: dict) -> dict | None:
        """A SetError refusing this destroy on its own (before the final state is judged), or None."""
        return None

    def create(self, ctx, writer, fields: dict) -> dict:
        """Stores a new object; returns it as /get shows it (id and every server-set property)."""
        return self.to_jmap(ctx, writer.create_record(self.collection, fields))

    def update(self, ctx, writer, obj_id: str, current: dict, changes: dict) -> dict | None:
        """Stores the changed properties; returns server-set properties that changed as a result
        (for ``updated``), or None."""
        record = writer.record(self.collection, obj_id) or {}
        writer.update_record(self.collection, obj_id, {**record, **changes})
        return None

    def destroy(self, ctx, writer, obj_id: str, current: dict, args: dict) -> None:
        writer.destroy_record(self.collection, obj_id)

    def after_commit(self, ctx, created: dict[str, dict], updated: list[str], destroyed: list[str]) -> None:
        """Called once the /set is durable (PushSubscription sends its PushVerification here)."""

    def shared_changes(self, ctx, reader, changes):
        """A /changes result as a grantee of a shared account may see it (RFC 9670): objects they
        cannot see are left out, and those they no longer see are destroyed for them.  By default
        every id whose object `fetch` does not give this user."""
        hidden = {i for i in changes.created + changes.updated if self.fetch(ctx, reader, i) is None}
        changes.created = [i for i in changes.created if i not in hidden]
        changes.destroyed = changes.destroyed + [i for i in changes.updated if i in hidden]
        changes.updated = [i for i in changes.updated if i not in hidden]
        return changes

    def changes_extra(self, resp: dict, changes) -> None:
        """Adds type-specific arguments to a /changes response (Mailbox: updatedProperties)."""

    def copy_defaults(self, ctx, writer, obj: dict) -> dict:
        """A /copy create (the source's copy_fields and the client's overrides) completed with what
        the target account supplies (ContactCard: its default address book)."""
        return obj

    def copy_fields(self, ctx, from_reader, source: dict) -> dict:
        """The properties of a /copy create taken from the source object (RFC 8620 §5.4): by default
        every property that is neither server-set nor hidden."""
        return {k: v for k, v in source.items()
                if k in self.properties and not self.properties[k].server_set}

    # -- /query (RFC 8620 §5.5)
    def check_condition(self, ctx, cond: dict) -> None:
        """Raises MethodError for a FilterCondition this type cannot answer."""
        from .errors import MethodError, invalid_arguments

        unknown = set(cond) - set(self.conditions)
        if unknown:
            raise MethodError("unsupportedFilter",
                              f"unknown {self.name} filter condition(s): {', '.join(sorted(unknown))}")
        for key, value in cond.items():
            why = check_value(self.conditions[key], value) if value is not None else None
            if why:
                raise invalid_arguments(f"filter {key} {why}")

    def match(self, ctx, cond: dict, obj: dict) -> bool:
        """Whether an object meets one FilterCondition (default: every property equal)."""
        return all(obj.get(k) == v for k, v in cond.items())

    def index_for(self, cond: dict) -> tuple[str, object] | None:
        """(indexed property, value) that narrows a condition's candidates by a declared index."""
        if self.collection is None:
            return None
        for key, value in cond.items():
            if key in self.collection.indexes and not isinstance(value, (list, dict)):
                return key, value
        return None

    def sort_value(self, ctx, obj: dict, prop: str, collation: str | None) -> object:
        value = obj.get(prop)
        if isinstance(value, str) and collation != "i;ascii-numeric":
            return value.casefold()
        return value

    def query_ids(self, ctx, reader, flt: dict | None, sort: list[dict], args: dict) -> list[str]:
        """Every id matching the filter, in the sort order (the standard /query slices it)."""
        from .machinery import generic_query_ids

        return generic_query_ids(self, ctx, reader, flt, sort)


def data_type(dt: DataType) -> DataType:
    """Registers a data type and its standard methods."""
    from .machinery import register_standard_methods

    if dt.name in TYPES:
        raise RuntimeError(f"data type {dt.name} declared twice")
    TYPES[dt.name] = dt
    register_standard_methods(dt)
    return dt
