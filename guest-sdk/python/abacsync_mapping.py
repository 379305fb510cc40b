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
``wit/``, into a WebAssembly component (``scripts/build-python-plugin.sh``).

The types that cross the boundary (``Entry``, ``User``, ``MappingError``...) are
generated from the WIT package into ``wit_world.imports.types``; this module wraps them
so that a mapping reads like the Rust SDK's. An exception raised while mapping one
entry becomes that entry's error, with its traceback, and the host reports it with
the entry's DN; the other entries of the batch are unaffected.
"""

import traceback

from componentize_py_types import Err, Ok
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


class MissingAttribute(MappingFailure):
    """The entry lacks an attribute the mapping needs."""

    def __init__(self, name):
        super().__init__(f"missing attribute `{name}`")
        self.name = name

    def to_wit(self):
        return types.MappingError_MissingAttribute(self.name)


class InvalidAttribute(MappingFailure):
    """An attribute is present but its value cannot be used."""

    def __init__(self, name, reason):
        super().__init__(f"invalid attribute `{name}`: {reason}")
        self.name = name
        self.reason = reason

    def to_wit(self):
        return types.MappingError_InvalidAttribute(types.InvalidAttribute(self.name, self.reason))


class InvalidSettings(MappingFailure):
    """The tenant's settings are wrong for this plugin."""

    def to_wit(self):
        return types.MappingError_InvalidSettings(str(self))


_EMPTY = ()


def _lookup(attributes, name):
    # The spelling the directory used first (the common case), then case-insensitively.
    for attr in attributes:
        if attr.name == name:
            return attr.values
    lower = name.lower()
    found = None
    for attr in attributes:
        if attr.name.lower() == lower:
            found = attr.values if found is None else found + attr.values
    return _EMPTY if found is None else found


class Entry:
    """A directory entry, with attribute names matched case-insensitively as LDAP does."""

    __slots__ = ("dn", "groups", "_text", "_binary")

    def __init__(self, raw):
        self.dn = raw.dn
        #: The DNs of the entry's groups (nested ones resolved), or ``None`` when the
        #: host does not know them.
        self.groups = raw.groups
        self._text = raw.attributes
        self._binary = raw.binary_attributes

    def values(self, name):
        """Every value of text attribute ``name``, in the directory's order (empty if absent)."""
        return _lookup(self._text, name)

    def first(self, name):
        """The first value of ``name``, or ``None``."""
        values = _lookup(self._text, name)
        return values[0] if values else None

    def require(self, name):
        """The first value of ``name``; raises :class:`MissingAttribute` when absent."""
        values = _lookup(self._text, name)
        if not values:
            raise MissingAttribute(name)
        return values[0]

    def has(self, name):
        """Whether the entry has ``name``, as text or binary."""
        return bool(_lookup(self._text, name) or _lookup(self._binary, name))

    def binary(self, name):
        """Every value of binary attribute ``name``, as ``bytes`` (empty if absent)."""
        return _lookup(self._binary, name)


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
    no values are left out. A value of the wrong type raises ``TypeError`` here, naming
    the field, rather than failing the whole call when the result is converted.
    """
    _text("username", username)
    _text("ldap_id", ldap_id)
    for field, value in (("email", email), ("display_name", display_name), ("language", language)):
        if value is not None:
            _text(field, value)
    abac = []
    for key, values in (attributes or {}).items():
        values = list(values) if not isinstance(values, str) else [values]
        if not values:
            continue
        for value in values:
            if type(value) is not str:
                raise TypeError(
                    f"attribute {key!r}: values must be strings, got {type(value).__name__} {value!r}"
                )
        abac.append(types.AbacAttribute(_text("attribute key", key), values))
    return types.Decision_Upsert(
        types.User(username, email, display_name, language, bool(active), ldap_id, abac)
    )


def _text(field, value):
    if type(value) is not str:
        raise TypeError(f"{field} must be a string, got {type(value).__name__} {value!r}")
    return value


def skip(reason):
    """The entry does not become a user; ``reason`` says why."""
    return types.Decision_Skip(_text("reason", reason))


def deactivate(ldap_id, reason):
    """Deactivate the user with ``ldap_id``, for ``reason``."""
    return types.Decision_Deactivate(
        types.Deactivation(_text("ldap_id", ldap_id), _text("reason", reason))
    )


_DECISIONS = (types.Decision_Skip, types.Decision_Upsert, types.Decision_Deactivate)


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
        return err.to_wit()
    trace = "".join(traceback.format_exception(err)).rstrip()
    return types.MappingError_Other(f"{type(err).__name__}: {err}\n{trace}")


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

    def map_entries(self, context, entries):
        mapping = self._for(context)
        results = []
        append = results.append
        for raw in entries:
            try:
                decision = mapping.map(Entry(raw))
                if not isinstance(decision, _DECISIONS):
                    raise TypeError(
                        f"map() returned {type(decision).__name__}, not a decision: "
                        "return user(...), skip(...) or deactivate(...)"
                    )
                append(Ok(decision))
            except Exception as err:  # noqa: BLE001 - every failure becomes the entry's error
                append(Err(_entry_error(err)))
        return results

    def _for(self, context):
        settings = {setting.key: setting.value for setting in context.settings}
        try:
            return type(self)(settings, context.mode, context.tenant_id)
        except MappingFailure as err:
            raise Err(err.to_wit()) from None
        except Exception as err:
            raise Err(types.MappingError_InvalidSettings(str(err) or type(err).__name__)) from None
