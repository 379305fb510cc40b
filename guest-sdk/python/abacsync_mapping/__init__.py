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
import re
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
    "DnError",
    "Entry",
    "InvalidAttribute",
    "InvalidSettings",
    "Mapping",
    "MappingFailure",
    "MissingAttribute",
    "Rdn",
    "deactivate",
    "dn_first_value",
    "dn_values",
    "format_guid",
    "format_sid",
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
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    """``text`` with only ASCII letters lower-cased, as LDAP names compare (and Rust's
    ``to_ascii_lowercase``)."""
    return text.translate(_ASCII_LOWER)


class _Columns(dict[str, int | None]):
    """A batch's attribute name → position in a row. The exact spelling is found
    directly (the host spells the names the plugin declared as declared); any other
    spelling is matched ASCII-case-insensitively, as LDAP does, once per batch. An
    attribute absent from the whole batch maps to ``None``."""

    __slots__ = ("_lower",)

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__((name, 3 + position) for position, name in enumerate(names))
        self._lower: dict[str, int] | None = None

    def __missing__(self, name: str) -> int | None:
        if self._lower is None:
            self._lower = {}
            for known, position in self.items():
                if position is not None:
                    self._lower.setdefault(_ascii_lower(known), position)
        position = self[name] = self._lower.get(_ascii_lower(name))
        return position


class Entry:
    """A directory entry, with attribute names matched case-insensitively as LDAP does.

    It reads as the Rust SDK's ``Entry``: an attribute with no values is absent, and an
    empty first value is no value (:meth:`first`, :meth:`require`)."""

    __slots__ = ("dn", "groups", "_row", "_columns")

    def __init__(self, row: list[Any], columns: _Columns) -> None:
        #: The entry's DN.
        self.dn: str = row[0]
        #: The DNs of the entry's groups (nested ones resolved), or ``None`` when the
        #: host does not know them; see :meth:`group_dns`.
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
        """The first value of text attribute ``name``, or ``None`` when it is absent or
        empty (an empty value is no value)."""
        position = self._columns[name]
        if position is None:
            return None
        cell: str | list[str] | None = self._row[position]
        if not cell:
            return None
        return (cell if type(cell) is str else cell[0]) or None

    def require(self, name: str) -> str:
        """The first value of ``name``, as :meth:`first`; raises :class:`MissingAttribute`
        when there is none."""
        value = self.first(name)
        if value is None:
            raise MissingAttribute(name)
        return value

    def has(self, name: str) -> bool:
        """Whether the entry has text or binary attribute ``name`` (even with an empty
        value, or a binary one with no values)."""
        position = self._columns[name]
        if position is not None:
            cell: str | list[str] | None = self._row[position]
            if cell is not None and cell != []:
                return True
        return self._binary(name) is not None

    def binary(self, name: str) -> list[bytes]:
        """Every value of binary attribute ``name``, as ``bytes`` (empty if absent)."""
        return [binascii.a2b_base64(value) for value in self._binary(name) or _EMPTY]

    def group_dns(self) -> Sequence[str]:
        """The DNs of the entry's groups: :attr:`groups` when the host resolved them,
        otherwise the entry's own ``memberOf`` values."""
        return self.values("memberOf") if self.groups is None else self.groups

    def _binary(self, name: str) -> list[str] | None:
        """The base64 values of the first binary attribute called ``name`` (ASCII case
        ignored), ``None`` when there is none."""
        binary: dict[str, list[str]] | None = self._row[2]
        if binary:
            lower = _ascii_lower(name)
            for key, values in binary.items():
                if key == name or _ascii_lower(key) == lower:
                    return values
        return None


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

    ``attributes`` maps each ABAC key to its values (any iterable of strings). Empty
    values are dropped, and a key left with no values is left out, so an absent LDAP
    attribute simply yields no ABAC attribute. A field of the wrong type raises
    ``TypeError`` here, naming the field. An ABAC value that is not a string fails the
    entry when the host reads the decision, with the path of the value
    (``upsert.attributes.unit[0]``).
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
            if "" in values:
                values = [value for value in values if value != ""]
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


class DnError(ValueError):
    """Why a string is not a distinguished name: ``invalid DN at byte N: reason``."""

    #: The byte offset (in the DN's UTF-8) where parsing failed.
    position: int
    #: What was wrong there.
    reason: str

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"invalid DN at byte {position}: {reason}")
        self.position = position
        self.reason = reason


#: A relative DN: its ``(type, value)`` pairs, joined by ``+`` in the DN's text.
Rdn: TypeAlias = list[tuple[str, str]]


def parse_dn(dn: str) -> list[Rdn]:
    r"""Parse an RFC 4514 DN, such as ``cn=Smith\, John+uid=js,ou=people,dc=example``,
    into its RDNs, leftmost (most specific) first; each RDN is a list of
    ``(type, value)`` pairs with escapes decoded. The empty string is the root DN, with
    no RDNs.

    As the Rust SDK's ``Dn::parse``: a ``#hex`` value is its bytes, shown as text when
    they are UTF-8 (``#`` and lower-case hex otherwise); a quoted value may hold ``,``,
    ``+`` and ``;``; unescaped spaces around a value are dropped. Raises
    :class:`DnError` (a ``ValueError``) with the byte offset where it failed.
    """
    if _PLAIN_DN.fullmatch(dn):
        return [[_plain_ava(ava) for ava in rdn.split("+")] for rdn in _RDN_SEPARATOR.split(dn)]
    return _DnParser(dn).dn()


def _plain_ava(text: str) -> tuple[str, str]:
    attr, _, value = text.partition("=")
    return attr.strip(" "), value.strip(" ")


def dn_values(dn: str, attr: str) -> list[str]:
    """Every value of attribute type ``attr`` across the DN's RDNs, leftmost first (all
    the ``ou``s of a DN): the value of ``attr`` in each RDN that has it, types compared
    case-insensitively. Raises :class:`DnError` when ``dn`` is not a DN."""
    wanted = _ascii_lower(attr)
    return [value for rdn in parse_dn(dn) if (value := _rdn_value(rdn, wanted)) is not None]


def dn_first_value(dn: str, attr: str) -> str | None:
    """The value of attribute type ``attr`` in the leftmost RDN that has it (the ``cn`` of
    a group's DN), or ``None``. Raises :class:`DnError` when ``dn`` is not a DN."""
    wanted = _ascii_lower(attr)
    for rdn in parse_dn(dn):
        value = _rdn_value(rdn, wanted)
        if value is not None:
            return value
    return None


def _rdn_value(rdn: Rdn, wanted: str) -> str | None:
    for name, value in rdn:
        if _ascii_lower(name) == wanted:
            return value
    return None


# Most DNs have no escapes, quotes, `#` values or characters that must be escaped:
# `parse_dn` splits those at `,`, `;`, `+` and `=` and strips the spaces, which gives what
# the parser below does, faster. A value starts after the spaces, not with `#`.
_VALUE_CHAR = r'[^,;+\\"<>\x00\ud800-\udfff]'
_PLAIN_AVA = rf" *[A-Za-z0-9.-]+ *= *(?:(?![ #]){_VALUE_CHAR}+)?"
_PLAIN_DN = re.compile(rf"{_PLAIN_AVA}(?:[,;+]{_PLAIN_AVA})*")
_RDN_SEPARATOR = re.compile("[,;]")

# Runs of bytes that the parser takes as they are, matched at the cursor.
_DN_SPACES = re.compile(rb" *")
_DN_TYPE = re.compile(rb"[A-Za-z0-9.-]*")
_DN_HEX = re.compile(rb"[0-9A-Fa-f]*")
_DN_PLAIN = re.compile(rb'[^,;+\\"<>\x00]*')
_DN_QUOTED = re.compile(rb'[^"\\]*')
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_ESCAPABLE = frozenset(b' "#+,;<=>\\')


class _DnParser:
    """The Rust SDK's DN parser (``guest-sdk/src/dn.rs``), step for step, so that both
    give the same values and the same errors at the same byte offsets. Runs of plain
    bytes are taken with one regular-expression match each."""

    __slots__ = ("data", "pos")

    def __init__(self, text: str) -> None:
        # A str from the host is valid Unicode; "surrogatepass" keeps a lone surrogate
        # made in Python from raising here (it is "not UTF-8" in a value instead).
        self.data = text.encode("utf-8", "surrogatepass")
        self.pos = 0

    def error(self, reason: str) -> DnError:
        return DnError(self.pos, reason)

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def skip_spaces(self) -> None:
        self.run(_DN_SPACES)

    def run(self, pattern: re.Pattern[bytes]) -> bytes:
        """The bytes at the cursor that ``pattern`` matches (maybe none); moves past them."""
        found = pattern.match(self.data, self.pos)
        assert found is not None  # the patterns match the empty string
        self.pos = found.end()
        return found.group()

    def dn(self) -> list[Rdn]:
        rdns: list[Rdn] = []
        self.skip_spaces()
        if self.peek() is None:
            return rdns
        while True:
            avas = [self.ava()]
            while True:
                c = self.peek()
                if c == 0x2B:  # +
                    self.pos += 1
                    avas.append(self.ava())
                elif c == 0x2C or c == 0x3B:  # , ;
                    self.pos += 1
                    break
                elif c is None:
                    rdns.append(avas)
                    return rdns
                else:
                    raise self.error("expected `,` or `+`")
            rdns.append(avas)

    def ava(self) -> tuple[str, str]:
        self.skip_spaces()
        attr = self.run(_DN_TYPE)
        if not attr:
            raise self.error("expected an attribute type")
        self.skip_spaces()
        if self.peek() != 0x3D:  # =
            raise self.error("expected `=` after the attribute type")
        self.pos += 1
        self.skip_spaces()
        c = self.peek()
        if c == 0x23:  # #
            value = self.hex_value()
        elif c == 0x22:  # "
            value = self.quoted_value()
        else:
            value = self.string_value()
        return attr.decode("ascii"), value

    def hex_value(self) -> str:
        self.pos += 1
        digits = self.run(_DN_HEX)
        if not digits or len(digits) % 2:
            raise self.error("a `#` value needs an even number of hex digits")
        raw = bytes.fromhex(digits.decode("ascii"))
        self.skip_spaces()
        # A BER-encoded value; its content is shown as text when it is text.
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "#" + raw.hex()

    def quoted_value(self) -> str:
        self.pos += 1
        out = bytearray()
        while True:
            out += self.run(_DN_QUOTED)
            c = self.peek()
            if c is None:
                raise self.error("unterminated quoted value")
            if c == 0x22:  # "
                self.pos += 1
                break
            out.append(self.escape())  # at a backslash
        self.skip_spaces()
        return self.utf8(out)

    def string_value(self) -> str:
        out = bytearray()
        # Length of `out` up to the last byte that was escaped or not a space, so that
        # unescaped trailing spaces are dropped and escaped ones kept.
        keep = 0
        while True:
            plain = self.run(_DN_PLAIN)
            out += plain
            if plain.strip(b" "):
                keep = len(out) - (len(plain) - len(plain.rstrip(b" ")))
            c = self.peek()
            if c is None or c == 0x2C or c == 0x3B or c == 0x2B:  # , ; +
                break
            if c != 0x5C:  # " < > NUL
                raise self.error("character must be escaped")
            out.append(self.escape())
            keep = len(out)
        del out[keep:]
        return self.utf8(out)

    def utf8(self, out: bytearray) -> str:
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("value is not UTF-8") from None

    def escape(self) -> int:
        """Decode ``\\c`` or ``\\hh`` at the cursor."""
        self.pos += 1
        data, pos = self.data, self.pos
        a = data[pos] if pos < len(data) else None
        b = data[pos + 1] if pos + 1 < len(data) else None
        if a in _HEX_DIGITS and b in _HEX_DIGITS:
            self.pos += 2
            return int(data[pos : pos + 2], 16)
        if a in _ESCAPABLE:
            self.pos += 1
            return a
        raise self.error("invalid escape")


def format_guid(data: bytes) -> str | None:
    """Format a 16-byte ``objectGUID`` the way Active Directory tools show it:
    ``3f2504e0-4f89-11d3-9a0c-0305e82c3301``. The first three fields are stored
    little-endian, so ``e0 04 25 3f 89 4f d3 11 …`` becomes ``3f2504e0-4f89-11d3-…``.
    ``None`` when ``data`` is not 16 bytes long."""
    if len(data) != 16:
        return None
    return (
        f"{data[3::-1].hex()}-{data[5:3:-1].hex()}-{data[7:5:-1].hex()}"
        f"-{data[8:10].hex()}-{data[10:].hex()}"
    )


def format_sid(data: bytes) -> str | None:
    """Format a binary ``objectSid`` as ``S-1-5-21-…``; ``None`` when it is malformed
    (shorter than 8 bytes, or not as many 4-byte sub-authorities as its second byte says)."""
    if len(data) < 8 or len(data) != 8 + 4 * data[1]:
        return None
    authority = int.from_bytes(data[2:8], "big")
    subs = "".join(f"-{int.from_bytes(data[i : i + 4], 'little')}" for i in range(8, len(data), 4))
    return f"S-{data[0]}-{authority}{subs}"


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
    :meth:`required_attributes_for` when the list depends on them.
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

    def bool_setting(self, key: str, default: bool) -> bool:
        """Setting ``key`` as a boolean (``true``/``false``, ``yes``/``no``, ``on``/``off``,
        ``1``/``0``, in any case), ``default`` when absent; raises
        :class:`InvalidSettings` for anything else."""
        value = self.settings.get(key)
        if value is None:
            return default
        value = _ascii_lower(value)
        if value in ("true", "yes", "on", "1"):
            return True
        if value in ("false", "no", "off", "0"):
            return False
        raise InvalidSettings(f"`{key}` must be true or false, not `{value}`")

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
