"""Write an abacsync mapping plugin in Python.

A plugin is a module (``app.py``) with a class named ``Mapper`` that derives from
:class:`Mapping` and implements :meth:`Mapping.map`::

    import abacsync_mapping as abacsync

    class Mapper(abacsync.Mapping):
        name = "example"
        version = "1.0.0"
        attributes = ["uid", "mail", "entryUUID", "departmentNumber"]

        def map(self, entry):
            mail = entry.first("mail")
            if mail is None:
                return abacsync.skip("no mail")
            return abacsync.user(
                entry.require("uid"),
                entry.require("entryUUID"),
                email=mail,
                attributes={"department": entry.values("departmentNumber")},
            )

``componentize-py`` compiles it, with this module and the bindings it generates from
``wit/v0.2.0``, into a WebAssembly component (``scripts/build-python-plugin.sh``).

Contract 0.2.0 hands a batch of entries over as one JSON document and takes the
decisions back as one: this module parses and writes them with CPython's own ``json``
module, and wraps them so that a mapping reads like the Rust SDK's. The typed values
(the call's context, errors of a whole call, the plugin's info) are generated from the
WIT package into ``wit_world.imports.types``. An exception raised while mapping one
entry becomes that entry's error, with its traceback, and the host reports it with the
entry's DN; the other entries of the batch are unaffected.
"""

from __future__ import annotations

import binascii
import gc
import json
import traceback
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as _Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    # componentize-py generates these modules from the WIT when it builds the component;
    # they do not exist outside that build, so type checkers see their values as ``Any``.
    Err: Any
    exports: Any
    host: Any
    types: Any
    _MapperBase = object
else:
    from componentize_py_types import Err
    from wit_world import exports
    from wit_world.imports import host, types

    _MapperBase = exports.Mapper

__all__ = [
    "Decision",
    "Entry",
    "InvalidAttribute",
    "InvalidSettings",
    "Mapping",
    "MappingFailure",
    "MissingAttribute",
    "deactivate",
    "dn_values",
    "log",
    "parse_dn",
    "skip",
    "user",
]

#: A decision on one entry, as :func:`user`, :func:`skip` and :func:`deactivate` return
#: it: the JSON object of ``mapper.map-batch``, a ``dict`` with exactly one key.
Decision: TypeAlias = dict[str, Any]


class MappingFailure(Exception):
    """Raise a subclass to fail one entry (or, from ``__init__``, the whole batch)."""

    def to_wit(self) -> Any:
        return types.MappingError_Other(str(self))

    def to_json(self) -> dict[str, Any]:
        return {"other": str(self)}


class MissingAttribute(MappingFailure):
    """The entry lacks an attribute the mapping needs."""

    name: str

    def __init__(self, name: str) -> None:
        super().__init__(f"missing attribute `{name}`")
        self.name = name

    def to_wit(self) -> Any:
        return types.MappingError_MissingAttribute(self.name)

    def to_json(self) -> dict[str, Any]:
        return {"missing_attribute": self.name}


class InvalidAttribute(MappingFailure):
    """An attribute is present but its value cannot be used."""

    name: str
    reason: str

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid attribute `{name}`: {reason}")
        self.name = name
        self.reason = reason

    def to_wit(self) -> Any:
        return types.MappingError_InvalidAttribute(types.InvalidAttribute(self.name, self.reason))

    def to_json(self) -> dict[str, Any]:
        return {"invalid_attribute": {"name": self.name, "reason": self.reason}}


class InvalidSettings(MappingFailure):
    """The tenant's settings are wrong for this plugin."""

    def to_wit(self) -> Any:
        return types.MappingError_InvalidSettings(str(self))

    def to_json(self) -> dict[str, Any]:
        return {"invalid_settings": str(self)}


_EMPTY: tuple[str, ...] = ()


class _Columns(dict[str, int | None]):
    """A batch's attribute name → position in a row. The exact spelling is found
    directly (the host spells the names the plugin declared as declared); any other
    spelling is matched case-insensitively, as LDAP does, once per batch. An attribute
    absent from the whole batch maps to ``None``."""

    __slots__ = ("_lower",)

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__((name, 3 + position) for position, name in enumerate(names))
        self._lower: dict[str, int] | None = None

    def __missing__(self, name: str) -> int | None:
        if self._lower is None:
            self._lower = {}
            for known, position in self.items():
                if position is not None:
                    self._lower.setdefault(known.lower(), position)
        position = self[name] = self._lower.get(name.lower())
        return position


class Entry:
    """A directory entry, with attribute names matched case-insensitively as LDAP does."""

    __slots__ = ("dn", "groups", "_row", "_columns")

    def __init__(self, row: list[Any], columns: _Columns) -> None:
        #: The entry's DN.
        self.dn: str = row[0]
        #: The DNs of the entry's groups (nested ones resolved), or ``None`` when the
        #: host does not know them.
        self.groups: list[str] | None = row[1]
        self._row = row
        self._columns = columns

    def values(self, name: str) -> Sequence[str]:
        """Every value of text attribute ``name``, in the directory's order (empty if absent)."""
        position = self._columns[name]
        if position is None:
            return _EMPTY
        cell: str | list[str] | None = self._row[position]
        if cell is None:
            return _EMPTY
        return (cell,) if type(cell) is str else cell

    def first(self, name: str) -> str | None:
        """The first value of ``name``, or ``None``."""
        position = self._columns[name]
        if position is None:
            return None
        cell: str | list[str] | None = self._row[position]
        return cell if cell is None or type(cell) is str else cell[0]

    def require(self, name: str) -> str:
        """The first value of ``name``; raises :class:`MissingAttribute` when absent."""
        position = self._columns[name]
        cell: str | list[str] | None = None if position is None else self._row[position]
        if cell is None:
            raise MissingAttribute(name)
        return cell if type(cell) is str else cell[0]

    def has(self, name: str) -> bool:
        """Whether the entry has ``name``, as text or binary."""
        position = self._columns[name]
        return (position is not None and self._row[position] is not None) or bool(
            self._binary(name)
        )

    def binary(self, name: str) -> list[bytes]:
        """Every value of binary attribute ``name``, as ``bytes`` (empty if absent)."""
        return [binascii.a2b_base64(value) for value in self._binary(name)]

    def _binary(self, name: str) -> Sequence[str]:
        binary: dict[str, list[str]] | None = self._row[2]
        if not binary:
            return _EMPTY
        values = binary.get(name)
        if values is not None:
            return values
        lower = name.lower()
        found: list[str] = []
        for key, values in binary.items():
            if key.lower() == lower:
                found.extend(values)
        return found


def user(
    username: str,
    ldap_id: str,
    *,
    email: str | None = None,
    display_name: str | None = None,
    language: str | None = None,
    active: bool = True,
    attributes: _Mapping[str, Iterable[str]] | None = None,
) -> Decision:
    """An upsert decision: create the user, or update it to exactly this state.

    ``attributes`` maps each ABAC key to its values (any iterable of strings); keys with
    no values are left out. A field of the wrong type raises ``TypeError`` here, naming
    the field. An ABAC value that is not a string fails the entry when the host reads
    the decision, with the path of the value (``upsert.attributes.unit[0]``).
    """
    if type(username) is not str:
        _text("username", username)
    if type(ldap_id) is not str:
        _text("ldap_id", ldap_id)
    decision: dict[str, Any] = {"username": username, "ldap_id": ldap_id}
    if email is not None:
        decision["email"] = email if type(email) is str else _text("email", email)
    if display_name is not None:
        decision["display_name"] = (
            display_name if type(display_name) is str else _text("display_name", display_name)
        )
    if language is not None:
        decision["language"] = language if type(language) is str else _text("language", language)
    if not active:
        decision["active"] = False
    if attributes:
        abac: dict[str, Iterable[str]] = {}
        for key, values in attributes.items():
            if type(values) is not list and type(values) is not tuple:
                values = [values] if isinstance(values, str) else list(values)
            if values:
                abac[key if type(key) is str else _text("attribute key", key)] = values
        decision["attributes"] = abac
    return {"upsert": decision}


def _text(field: str, value: object) -> str:
    if type(value) is not str:
        raise TypeError(f"{field} must be a string, got {type(value).__name__} {value!r}")
    return value


def skip(reason: str) -> Decision:
    """The entry does not become a user; ``reason`` says why."""
    return {"skip": reason if type(reason) is str else _text("reason", reason)}


def deactivate(ldap_id: str, reason: str) -> Decision:
    """Deactivate the user with ``ldap_id``, for ``reason``."""
    return {"deactivate": {"ldap_id": _text("ldap_id", ldap_id), "reason": _text("reason", reason)}}


class log:
    """Write to the host's log, tagged with the tenant and the plugin (bounded per call)."""

    @staticmethod
    def debug(message: str) -> None:
        host.log(host.LogLevel.DEBUG, message)

    @staticmethod
    def info(message: str) -> None:
        host.log(host.LogLevel.INFO, message)

    @staticmethod
    def warn(message: str) -> None:
        host.log(host.LogLevel.WARN, message)

    @staticmethod
    def error(message: str) -> None:
        host.log(host.LogLevel.ERROR, message)


_HEX = "0123456789abcdefABCDEF"
_SPECIAL = ' "#+,;<=>\\'


def parse_dn(dn: str) -> list[list[tuple[str, str]]]:
    """Parse an RFC 4514 DN into its RDNs, leftmost first; each RDN is a list of
    ``(type, value)`` pairs with escapes decoded. Raises ``ValueError`` when ``dn`` is
    not a DN."""
    data = dn.encode("utf-8")
    pos = 0
    rdns: list[list[tuple[str, str]]] = []
    if not data.strip():
        return rdns
    rdn: list[tuple[str, str]] = []
    while True:
        while pos < len(data) and data[pos] == 0x20:
            pos += 1
        start = pos
        while pos < len(data) and (chr(data[pos]).isalnum() or data[pos] in b"-."):
            pos += 1
        if pos == start:
            raise ValueError(f"invalid DN at byte {pos}: expected an attribute type")
        attr = data[start:pos].decode()
        while pos < len(data) and data[pos] == 0x20:
            pos += 1
        if pos >= len(data) or data[pos] != ord("="):
            raise ValueError(f"invalid DN at byte {pos}: expected `=` after the attribute type")
        pos += 1
        while pos < len(data) and data[pos] == 0x20:
            pos += 1
        out = bytearray()
        keep = 0
        while pos < len(data):
            c = data[pos]
            if c in b",;+":
                break
            if c == 0x5C:  # backslash
                nxt = data[pos + 1 : pos + 3]
                if len(nxt) == 2 and chr(nxt[0]) in _HEX and chr(nxt[1]) in _HEX:
                    out.append(int(nxt.decode(), 16))
                    pos += 3
                elif nxt and chr(nxt[0]) in _SPECIAL:
                    out.append(nxt[0])
                    pos += 2
                else:
                    raise ValueError(f"invalid DN at byte {pos}: invalid escape")
                keep = len(out)
            elif c in b'"<>\x00':
                raise ValueError(f"invalid DN at byte {pos}: character must be escaped")
            else:
                out.append(c)
                pos += 1
                if c != 0x20:
                    keep = len(out)
        try:
            value = bytes(out[:keep]).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"invalid DN at byte {pos}: value is not UTF-8") from None
        rdn.append((attr, value))
        if pos >= len(data):
            rdns.append(rdn)
            return rdns
        if data[pos] != ord("+"):
            rdns.append(rdn)
            rdn = []
        pos += 1


def dn_values(dn: str, attr: str) -> list[str]:
    """Every value of attribute type ``attr`` across the DN's RDNs, leftmost first."""
    wanted = attr.lower()
    return [value for rdn in parse_dn(dn) for (name, value) in rdn if name.lower() == wanted]


def _entry_error(err: BaseException) -> Decision:
    if isinstance(err, MappingFailure):
        return {"error": err.to_json()}
    trace = "".join(traceback.format_exception(err)).rstrip()
    return {"error": {"other": f"{type(err).__name__}: {err}\n{trace}"}}


def _encode(results: list[Any]) -> str:
    try:
        return json.dumps(results, separators=(",", ":"))
    except (TypeError, ValueError):
        # Something in a decision is not JSON: fail that entry, not the batch.
        parts = []
        for result in results:
            try:
                parts.append(json.dumps(result, separators=(",", ":")))
            except (TypeError, ValueError) as err:
                parts.append(json.dumps(_entry_error(err), separators=(",", ":")))
        return "[" + ",".join(parts) + "]"


class Mapping(_MapperBase):
    """Base class of a plugin's ``Mapper``. Set ``name``, ``version`` and
    ``attributes`` (the LDAP attributes :meth:`map` reads) and implement :meth:`map`.

    The host creates the mapping afresh for every call, with that call's ``settings``
    (a ``dict`` of the tenant's plugin settings, in the order given). Check them in
    ``__init__``, raising :class:`InvalidSettings`; override
    :meth:`required_attributes` when the list depends on them.
    """

    #: The plugin's name, for logs, audit events and ``abacsync plugin check``.
    name: str = "python-mapping"
    #: The plugin's version.
    version: str = "0.0.0"
    #: The LDAP attributes :meth:`map` reads; the host fetches only these.
    attributes: Sequence[str] = []

    #: This call's plugin settings (key → value).
    settings: dict[str, str]
    #: This call's sync mode, a ``wit_world.imports.types.SyncMode`` (``None`` outside a call).
    mode: Any
    #: The tenant this call maps for (``None`` outside a call).
    tenant_id: int | None

    def __init__(
        self,
        settings: dict[str, str] | None = None,
        mode: Any = None,
        tenant_id: int | None = None,
    ) -> None:
        self.settings = settings or {}
        self.mode = mode
        self.tenant_id = tenant_id

    def required_attributes_for(self) -> list[str]:
        """The LDAP attributes this call's :meth:`map` reads (default: ``attributes``)."""
        return list(self.attributes)

    def map(self, entry: Entry) -> Decision:
        """Decide what one :class:`Entry` becomes: :func:`user`, :func:`skip` or
        :func:`deactivate`. Raise :class:`MappingFailure` (or anything else) to fail the entry."""
        raise NotImplementedError("a mapping must implement map(entry)")

    # The WIT exports. componentize-py calls these on an instance of the plugin's
    # ``Mapper`` class, created with no arguments.

    def info(self) -> Any:
        return types.PluginInfo(self.name, self.version)

    def required_attributes(self, context: Any) -> list[str]:
        return self._for(context).required_attributes_for()

    def map_batch(self, context: Any, entries: str) -> str:
        # Every call runs in a fresh instance that is thrown away afterwards, and the
        # batch's thousands of lists and dicts are freed by reference counting: the
        # cycle collector's frequent passes over them only cost time (a fifth of a
        # batch's). It still runs, rarely, so a mapping that makes cycles stays bounded.
        gc.set_threshold(100_000)
        mapping = self._for(context)
        batch = json.loads(entries)
        columns = _Columns(batch["attributes"])
        results: list[Any] = []
        append = results.append
        map_one = mapping.map
        for row in batch["entries"]:
            try:
                decision = map_one(Entry(row, columns))
                if type(decision) is not dict:
                    raise TypeError(
                        f"map() returned {type(decision).__name__}, not a decision: "
                        "return user(...), skip(...) or deactivate(...)"
                    )
                append(decision)
            except Exception as err:  # noqa: BLE001 - every failure becomes the entry's error
                append(_entry_error(err))
        return _encode(results)

    def _for(self, context: Any) -> Mapping:
        settings = {setting.key: setting.value for setting in context.settings}
        try:
            return type(self)(settings, context.mode, context.tenant_id)
        except MappingFailure as err:
            raise Err(err.to_wit()) from None
        except Exception as err:
            raise Err(types.MappingError_InvalidSettings(str(err) or type(err).__name__)) from None
