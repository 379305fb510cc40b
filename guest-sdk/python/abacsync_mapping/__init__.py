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

import binascii
import gc
import json
import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

__all__ = [
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


class MappingFailure(Exception):
    """Raise a subclass to fail one entry (or, from ``__init__``, the whole batch)."""

    def to_wit(self):
        return types.MappingError_Other(str(self))

    def to_json(self):
        return {"other": str(self)}


class MissingAttribute(MappingFailure):
    """The entry lacks an attribute the mapping needs."""

    def __init__(self, name):
        super().__init__(f"missing attribute `{name}`")
        self.name = name

    def to_wit(self):
        return types.MappingError_MissingAttribute(self.name)

    def to_json(self):
        return {"missing_attribute": self.name}


class InvalidAttribute(MappingFailure):
    """An attribute is present but its value cannot be used."""

    def __init__(self, name, reason):
        super().__init__(f"invalid attribute `{name}`: {reason}")
        self.name = name
        self.reason = reason

    def to_wit(self):
        return types.MappingError_InvalidAttribute(types.InvalidAttribute(self.name, self.reason))

    def to_json(self):
        return {"invalid_attribute": {"name": self.name, "reason": self.reason}}


class InvalidSettings(MappingFailure):
    """The tenant's settings are wrong for this plugin."""

    def to_wit(self):
        return types.MappingError_InvalidSettings(str(self))

    def to_json(self):
        return {"invalid_settings": str(self)}


_EMPTY = ()


class _Columns(dict):
    """A batch's attribute name → position in a row. The exact spelling is found
    directly (the host spells the names the plugin declared as declared); any other
    spelling is matched case-insensitively, as LDAP does, once per batch. An attribute
    absent from the whole batch maps to ``None``."""

    __slots__ = ("_lower",)

    def __init__(self, names):
        super().__init__((name, 3 + position) for position, name in enumerate(names))
        self._lower = None

    def __missing__(self, name):
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

    def __init__(self, row, columns):
        self.dn = row[0]
        #: The DNs of the entry's groups (nested ones resolved), or ``None`` when the
        #: host does not know them.
        self.groups = row[1]
        self._row = row
        self._columns = columns

    def values(self, name):
        """Every value of text attribute ``name``, in the directory's order (empty if absent)."""
        position = self._columns[name]
        if position is None:
            return _EMPTY
        cell = self._row[position]
        if cell is None:
            return _EMPTY
        return (cell,) if type(cell) is str else cell

    def first(self, name):
        """The first value of ``name``, or ``None``."""
        position = self._columns[name]
        if position is None:
            return None
        cell = self._row[position]
        return cell if cell is None or type(cell) is str else cell[0]

    def require(self, name):
        """The first value of ``name``; raises :class:`MissingAttribute` when absent."""
        position = self._columns[name]
        cell = None if position is None else self._row[position]
        if cell is None:
            raise MissingAttribute(name)
        return cell if type(cell) is str else cell[0]

    def has(self, name):
        """Whether the entry has ``name``, as text or binary."""
        position = self._columns[name]
        return (position is not None and self._row[position] is not None) or bool(
            self._binary(name)
        )

    def binary(self, name):
        """Every value of binary attribute ``name``, as ``bytes`` (empty if absent)."""
        return [binascii.a2b_base64(value) for value in self._binary(name)]

    def _binary(self, name):
        binary = self._row[2]
        if not binary:
            return _EMPTY
        values = binary.get(name)
        if values is not None:
            return values
        lower = name.lower()
        found = []
        for key, values in binary.items():
            if key.lower() == lower:
                found.extend(values)
        return found


def user(
    username,
    ldap_id,
    *,
    email=None,
    display_name=None,
    language=None,
    active=True,
    attributes=None,
):
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
    decision = {"username": username, "ldap_id": ldap_id}
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
        abac = {}
        for key, values in attributes.items():
            if type(values) is not list and type(values) is not tuple:
                values = [values] if isinstance(values, str) else list(values)
            if values:
                abac[key if type(key) is str else _text("attribute key", key)] = values
        decision["attributes"] = abac
    return {"upsert": decision}


def _text(field, value):
    if type(value) is not str:
        raise TypeError(f"{field} must be a string, got {type(value).__name__} {value!r}")
    return value


def skip(reason):
    """The entry does not become a user; ``reason`` says why."""
    return {"skip": reason if type(reason) is str else _text("reason", reason)}


def deactivate(ldap_id, reason):
    """Deactivate the user with ``ldap_id``, for ``reason``."""
    return {"deactivate": {"ldap_id": _text("ldap_id", ldap_id), "reason": _text("reason", reason)}}


class log:
    """Write to the host's log, tagged with the tenant and the plugin (bounded per call)."""

    @staticmethod
    def debug(message):
        host.log(host.LogLevel.DEBUG, message)

    @staticmethod
    def info(message):
        host.log(host.LogLevel.INFO, message)

    @staticmethod
    def warn(message):
        host.log(host.LogLevel.WARN, message)

    @staticmethod
    def error(message):
        host.log(host.LogLevel.ERROR, message)


_HEX = "0123456789abcdefABCDEF"
_SPECIAL = ' "#+,;<=>\\'


def parse_dn(dn):
    """Parse an RFC 4514 DN into its RDNs, leftmost first; each RDN is a list of
    ``(type, value)`` pairs with escapes decoded. Raises ``ValueError`` when ``dn`` is
    not a DN."""
    data = dn.encode("utf-8")
    pos = 0
    rdns = []
    if not data.strip():
        return rdns
    rdn = []
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


def dn_values(dn, attr):
    """Every value of attribute type ``attr`` across the DN's RDNs, leftmost first."""
    wanted = attr.lower()
    return [value for rdn in parse_dn(dn) for (name, value) in rdn if name.lower() == wanted]


def _entry_error(err):
    if isinstance(err, MappingFailure):
        return {"error": err.to_json()}
    trace = "".join(traceback.format_exception(err)).rstrip()
    return {"error": {"other": f"{type(err).__name__}: {err}\n{trace}"}}


def _encode(results):
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


class Mapping(exports.Mapper):
    """Base class of a plugin's ``Mapper``. Set ``name``, ``version`` and
    ``attributes`` (the LDAP attributes :meth:`map` reads) and implement :meth:`map`.

    The host creates the mapping afresh for every call, with that call's ``settings``
    (a ``dict`` of the tenant's plugin settings, in the order given). Check them in
    ``__init__``, raising :class:`InvalidSettings`; override
    :meth:`required_attributes` when the list depends on them.
    """

    name = "python-mapping"
    version = "0.0.0"
    attributes = []

    def __init__(self, settings=None, mode=None, tenant_id=None):
        self.settings = settings or {}
        self.mode = mode
        self.tenant_id = tenant_id

    def required_attributes_for(self):
        """The LDAP attributes this call's :meth:`map` reads (default: ``attributes``)."""
        return list(self.attributes)

    def map(self, entry):
        """Decide what one :class:`Entry` becomes: :func:`user`, :func:`skip` or
        :func:`deactivate`. Raise :class:`MappingFailure` (or anything else) to fail the entry."""
        raise NotImplementedError("a mapping must implement map(entry)")

    # The WIT exports. componentize-py calls these on an instance of the plugin's
    # ``Mapper`` class, created with no arguments.

    def info(self):
        return types.PluginInfo(self.name, self.version)

    def required_attributes(self, context):
        return self._for(context).required_attributes_for()

    def map_batch(self, context, entries):
        # Every call runs in a fresh instance that is thrown away afterwards, and the
        # batch's thousands of lists and dicts are freed by reference counting: the
        # cycle collector's frequent passes over them only cost time (a fifth of a
        # batch's). It still runs, rarely, so a mapping that makes cycles stays bounded.
        gc.set_threshold(100_000)
        mapping = self._for(context)
        batch = json.loads(entries)
        columns = _Columns(batch["attributes"])
        results = []
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

    def _for(self, context):
        settings = {setting.key: setting.value for setting in context.settings}
        try:
            return type(self)(settings, context.mode, context.tenant_id)
        except MappingFailure as err:
            raise Err(err.to_wit()) from None
        except Exception as err:
            raise Err(types.MappingError_InvalidSettings(str(err) or type(err).__name__)) from None
