"""A mapping configured entirely by tenant settings, so an administrator gets a mapping
without writing code: the settings-map Rust example (``plugins/settings-map``), written
in Python. Both pass the same golden fixtures and refuse the same settings.

=====================  ==========================================================  ==============
setting                meaning                                                     default
=====================  ==========================================================  ==============
``username``           attribute holding the username                              ``uid``
``ldap-id``            attribute holding the stable id (a binary 16-byte value is  ``entryUUID``
                       formatted as a GUID, other binary values as hex)
``email``              attribute holding the email                                 ``mail``
``display-name``       attribute holding the display name                          ``displayName``
``language``           attribute holding the language tag                          none
``abac.KEY``           source of ABAC attribute ``KEY``: an attribute name,        none
                       ``dn:TYPE`` (values of the DN's ``TYPE=`` parts) or
                       ``groups:cn`` (CNs of the groups)
``filter.ATTR``        only entries whose ``ATTR`` has this value                  none
                       (case-insensitive; ``*`` = present)
``deactivate.ATTR``    entries whose ``ATTR`` has this value are deactivated       none
``require-email``      skip entries without an email                               ``false``
``lowercase``          lower-case ABAC values                                      ``false``
``lowercase-username`` lower-case the username                                     ``false``
=====================  ==========================================================  ==============

Unknown settings are refused (``InvalidSettings``), so a typo is caught when the plugin
is assigned; so are an ``abac.``, ``filter.`` or ``deactivate.`` setting without a key
or a value, an unknown ``abac.`` source and a boolean that is not one.

The Python SDK lacks two helpers of the Rust SDK that this mapping needs, so they are
here: ``format_guid`` (``abacsync_guest::guid``) and a DN parser that follows
``abacsync_guest::dn::Dn`` exactly (``#hex`` and quoted values, escapes, error
positions and messages). Entry values are read as the Rust SDK reads them: an empty
first value counts as no value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import abacsync_mapping as abacsync

# What Rust's `str::trim` removes: the characters with Unicode's White_Space property.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# The settings that take no prefix.
_PLAIN_SETTINGS = frozenset(
    {
        "username",
        "ldap-id",
        "email",
        "display-name",
        "language",
        "require-email",
        "lowercase",
        "lowercase-username",
    }
)


@dataclass(frozen=True)
class Source:
    """Where an ABAC attribute's values come from: an attribute's values
    (``attribute``), the values of the DN's ``name=`` parts (``dn``) or the CNs of the
    entry's groups (``groups``)."""

    kind: Literal["attribute", "dn", "groups"]
    name: str = ""


@dataclass(frozen=True)
class Condition:
    """``attribute`` has ``value`` (or, for ``*``, is present)."""

    attribute: str
    value: str

    def holds(self, entry: abacsync.Entry) -> bool:
        if self.value == "*":
            return entry.has(self.attribute)
        return any(ascii_eq(value, self.value) for value in entry.values(self.attribute))


class Mapper(abacsync.Mapping):
    name = "settings-map-python"
    version = "1.0.0"
    # With no settings; required_attributes_for() gives the list for this call's settings.
    attributes = ["uid", "entryUUID", "mail", "displayName"]

    def __init__(
        self,
        settings: dict[str, str] | None = None,
        mode: Any = None,
        tenant_id: int | None = None,
    ) -> None:
        super().__init__(settings, mode, tenant_id)
        settings = self.settings
        self.username_attribute = settings.get("username", "uid")
        self.ldap_id_attribute = settings.get("ldap-id", "entryUUID")
        self.email_attribute = settings.get("email", "mail")
        self.display_name_attribute = settings.get("display-name", "displayName")
        self.language_attribute = settings.get("language")
        self.abac: list[tuple[str, Source]] = []
        self.filters: list[Condition] = []
        self.deactivate_rules: list[Condition] = []
        self.require_email = bool_setting(settings, "require-email", False)
        self.lowercase = bool_setting(settings, "lowercase", False)
        self.lowercase_username = bool_setting(settings, "lowercase-username", False)
        for key, raw in settings.items():
            value = raw.strip(_WHITESPACE)
            if key.startswith("abac."):
                abac_key = key.removeprefix("abac.")
                if not abac_key or not value:
                    raise abacsync.InvalidSettings(f"`{key}` needs an ABAC key and a source")
                if value.startswith("dn:"):
                    source = Source("dn", value.removeprefix("dn:"))
                elif ascii_eq(value, "groups:cn"):
                    source = Source("groups")
                elif ":" in value:
                    raise abacsync.InvalidSettings(
                        f"`{key}`: unknown source `{value}` "
                        "(an attribute, `dn:TYPE` or `groups:cn`)"
                    )
                else:
                    source = Source("attribute", value)
                self.abac.append((abac_key, source))
            elif key.startswith("filter."):
                self.filters.append(condition(key, key.removeprefix("filter."), value))
            elif key.startswith("deactivate."):
                rule = condition(key, key.removeprefix("deactivate."), value)
                self.deactivate_rules.append(rule)
            elif key not in _PLAIN_SETTINGS:
                raise abacsync.InvalidSettings(f"unknown setting `{key}`")

    def required_attributes_for(self) -> list[str]:
        names = [
            self.username_attribute,
            self.ldap_id_attribute,
            self.email_attribute,
            self.display_name_attribute,
        ]
        if self.language_attribute is not None:
            names.append(self.language_attribute)
        for _, source in self.abac:
            if source.kind == "attribute":
                names.append(source.name)
            elif source.kind == "groups":
                names.append("memberOf")
        names.extend(rule.attribute for rule in [*self.filters, *self.deactivate_rules])
        seen: set[str] = set()
        unique: list[str] = []
        for name in names:
            folded = ascii_lower(name)
            if folded not in seen:
                seen.add(folded)
                unique.append(name)
        return unique

    def map(self, entry: abacsync.Entry) -> abacsync.Decision:
        for rule in self.filters:
            if not rule.holds(entry):
                return abacsync.skip(f"filtered out: `{rule.attribute}` is not `{rule.value}`")
        ldap_id = first(entry, self.ldap_id_attribute)
        if ldap_id is None:
            binary = entry.binary(self.ldap_id_attribute)
            if not binary:
                raise abacsync.MissingAttribute(self.ldap_id_attribute)
            ldap_id = format_guid(binary[0]) or binary[0].hex()
        for rule in self.deactivate_rules:
            if rule.holds(entry):
                return abacsync.deactivate(ldap_id, f"`{rule.attribute}` is `{rule.value}`")
        email = first(entry, self.email_attribute)
        if self.require_email and email is None:
            return abacsync.skip(f"no `{self.email_attribute}` attribute")
        username = first(entry, self.username_attribute)
        if username is None:
            raise abacsync.MissingAttribute(self.username_attribute)
        if self.lowercase_username:
            username = username.lower()
        attributes: dict[str, list[str]] = {}
        for key, source in self.abac:
            values: Iterable[str]
            if source.kind == "attribute":
                values = entry.values(source.name)
            elif source.kind == "dn":
                try:
                    values = dn_values(parse_dn(entry.dn), source.name)
                except DnError as err:
                    raise abacsync.InvalidAttribute("dn", str(err)) from None
            else:
                values = group_cns(entry)
            kept = [value.lower() if self.lowercase else value for value in values if value]
            if kept:
                attributes.setdefault(key, []).extend(kept)
        return abacsync.user(
            username,
            ldap_id,
            email=email,
            display_name=first(entry, self.display_name_attribute),
            language=(
                None
                if self.language_attribute is None
                else first(entry, self.language_attribute)
            ),
            attributes=attributes,
        )


def condition(key: str, attribute: str, value: str) -> Condition:
    if not attribute or not value:
        raise abacsync.InvalidSettings(f"`{key}` needs an attribute and a value")
    return Condition(attribute, value)


def bool_setting(settings: dict[str, str], key: str, default: bool) -> bool:
    """Setting ``key`` as a boolean (``true``/``false``, ``yes``/``no``, ``on``/``off``,
    ``1``/``0``, ASCII case-insensitive), ``default`` when absent."""
    value = settings.get(key)
    if value is None:
        return default
    value = ascii_lower(value)
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise abacsync.InvalidSettings(f"`{key}` must be true or false, not `{value}`")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """``text`` with only ASCII letters lower-cased (Rust's ``to_ascii_lowercase``)."""
    return text.translate(_ASCII_LOWER)


def ascii_eq(a: str, b: str) -> bool:
    """Rust's ``eq_ignore_ascii_case``."""
    return ascii_lower(a) == ascii_lower(b)


def first(entry: abacsync.Entry, name: str) -> str | None:
    """The first value of text attribute ``name`` if it is not empty (Rust's
    ``Entry::first``: an empty value is no value)."""
    return entry.first(name) or None


def format_guid(data: bytes) -> str | None:
    """Format a 16-byte ``objectGUID`` the way Active Directory tools show it:
    ``3f2504e0-4f89-11d3-9a0c-0305e82c3301``. The first three fields are stored
    little-endian, so ``e0 04 25 3f 89 4f d3 11 …`` becomes ``3f2504e0-4f89-11d3-…``.
    ``None`` when ``data`` is not 16 bytes long."""
    if len(data) != 16:
        return None
    return "-".join(
        (
            data[3::-1].hex(),
            data[5:3:-1].hex(),
            data[7:5:-1].hex(),
            data[8:10].hex(),
            data[10:].hex(),
        )
    )


def group_cns(entry: abacsync.Entry) -> list[str]:
    """The CN of each of the entry's groups (the resolved groups when the host knows
    them, ``memberOf`` otherwise); a group DN that does not parse, or has no CN, is
    left out."""
    group_dns = entry.groups if entry.groups is not None else entry.values("memberOf")
    cns: list[str] = []
    for dn in group_dns:
        try:
            cn = dn_first_value(parse_dn(dn), "cn")
        except DnError:
            continue
        if cn is not None:
            cns.append(cn)
    return cns


# Distinguished names, exactly as the Rust SDK's `abacsync_guest::dn::Dn` parses them.

Rdn = list[tuple[str, str]]

_SPACE = 0x20
_TYPE_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_ESCAPABLE = frozenset(b' "#+,;<=>\\')
_MUST_ESCAPE = frozenset(b'"<>\x00')


class DnError(ValueError):
    """Why a string is not a DN: ``invalid DN at byte N: reason``."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"invalid DN at byte {position}: {reason}")
        self.position = position
        self.reason = reason


def parse_dn(dn: str) -> list[Rdn]:
    """Parse an RFC 4514 DN into its RDNs, leftmost first, each a list of
    ``(type, value)`` pairs with escapes decoded; the empty string is the root DN.
    Raises :class:`DnError`."""
    return _DnParser(dn).dn()


def dn_first_value(rdns: list[Rdn], attr: str) -> str | None:
    """The value of ``attr`` in the leftmost RDN that has it (type case-insensitive)."""
    for rdn in rdns:
        value = _rdn_value(rdn, attr)
        if value is not None:
            return value
    return None


def dn_values(rdns: list[Rdn], attr: str) -> list[str]:
    """The value of ``attr`` in each RDN that has it, leftmost first (all ``ou``s)."""
    return [value for rdn in rdns if (value := _rdn_value(rdn, attr)) is not None]


def _rdn_value(rdn: Rdn, attr: str) -> str | None:
    for name, value in rdn:
        if ascii_eq(name, attr):
            return value
    return None


class _DnParser:
    def __init__(self, text: str) -> None:
        self.data = text.encode("utf-8")
        self.pos = 0

    def error(self, reason: str) -> DnError:
        return DnError(self.pos, reason)

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def skip_spaces(self) -> None:
        while self.peek() == _SPACE:
            self.pos += 1

    def dn(self) -> list[Rdn]:
        rdns: list[Rdn] = []
        self.skip_spaces()
        if self.peek() is None:
            return rdns
        while True:
            avas = [self.ava()]
            while True:
                c = self.peek()
                if c == ord("+"):
                    self.pos += 1
                    avas.append(self.ava())
                elif c == ord(",") or c == ord(";"):
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
        start = self.pos
        while (c := self.peek()) is not None and c in _TYPE_CHARS:
            self.pos += 1
        if self.pos == start:
            raise self.error("expected an attribute type")
        attr = self.data[start : self.pos].decode("ascii")
        self.skip_spaces()
        if self.peek() != ord("="):
            raise self.error("expected `=` after the attribute type")
        self.pos += 1
        self.skip_spaces()
        c = self.peek()
        if c == ord("#"):
            value = self.hex_value()
        elif c == ord('"'):
            value = self.quoted_value()
        else:
            value = self.string_value()
        return attr, value

    def hex_value(self) -> str:
        self.pos += 1
        start = self.pos
        while (c := self.peek()) is not None and c in _HEX_DIGITS:
            self.pos += 1
        digits = self.data[start : self.pos]
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
            c = self.peek()
            if c is None:
                raise self.error("unterminated quoted value")
            if c == ord('"'):
                self.pos += 1
                break
            if c == ord("\\"):
                out.append(self.escape())
            else:
                out.append(c)
                self.pos += 1
        self.skip_spaces()
        return self.utf8(out)

    def string_value(self) -> str:
        out = bytearray()
        # Length of `out` up to the last byte that was escaped or not a space, so that
        # unescaped trailing spaces are dropped and escaped ones kept.
        keep = 0
        while (c := self.peek()) is not None:
            if c in b",;+":
                break
            if c == ord("\\"):
                out.append(self.escape())
                keep = len(out)
            elif c in _MUST_ESCAPE:
                raise self.error("character must be escaped")
            else:
                out.append(c)
                self.pos += 1
                if c != _SPACE:
                    keep = len(out)
        return self.utf8(out[:keep])

    def utf8(self, out: bytearray) -> str:
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("value is not UTF-8") from None

    def escape(self) -> int:
        """Decode ``\\c`` or ``\\hh`` at the cursor."""
        self.pos += 1
        a = self.peek()
        b = self.data[self.pos + 1] if self.pos + 1 < len(self.data) else None
        if a is not None and b is not None and a in _HEX_DIGITS and b in _HEX_DIGITS:
            self.pos += 2
            return int(chr(a) + chr(b), 16)
        if a is not None and a in _ESCAPABLE:
            self.pos += 1
            return a
        raise self.error("invalid escape")
