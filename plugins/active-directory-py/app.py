"""Active Directory users to abacsync users: the Active Directory Rust example
(``plugins/active-directory``), written in Python. Both pass the same golden fixtures.

- ``sAMAccountName`` is the username (``userPrincipalName``'s local part when absent),
  ``mail`` (or the UPN) the email, ``displayName`` the display name.
- ``objectGUID``, formatted as AD tools show it, is the stable id: it survives renames
  and moves between OUs.
- Computer and trust accounts are skipped; a disabled account (bit ``0x2`` of
  ``userAccountControl``) is deactivated.
- ABAC attributes: ``groups`` from the CNs of the user's groups (nested groups when the
  host resolved them, ``memberOf`` otherwise), ``department``, ``company``, ``title``.
- Not read: ``accountExpires`` and ``lockoutTime``. Whether an account has expired or is
  locked out depends on the time of the sync, and the contract gives a mapping no clock
  (the same entry always maps the same way), so an expired or locked-out account stays
  active here; AD refuses its logins all the same. To deactivate expired accounts,
  disable them in AD (bit ``0x2`` of ``userAccountControl``), which this mapping follows.

The Python SDK lacks two helpers of the Rust SDK that this mapping needs, so they are
here: ``format_guid`` (``abacsync_guest::guid``) and a DN parser that follows
``abacsync_guest::dn::Dn`` exactly (``#hex`` and quoted values, escapes, error
positions), so that group CNs come out as the Rust plugin's do. Entry values are read
as the Rust SDK reads them: an empty first value counts as no value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import abacsync_mapping as abacsync

# `userAccountControl` bits this mapping reads.
ACCOUNTDISABLE = 0x2
WORKSTATION_TRUST_ACCOUNT = 0x1000
SERVER_TRUST_ACCOUNT = 0x2000
INTERDOMAIN_TRUST_ACCOUNT = 0x800

# What Rust's `str::trim` removes: the characters with Unicode's White_Space property.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# What Rust's `str::parse::<u32>` accepts (then checked against u32::MAX).
_U32 = re.compile(r"\+?[0-9]+")


class Mapper(abacsync.Mapping):
    name = "active-directory-python"
    version = "1.0.0"
    attributes = [
        "sAMAccountName",
        "userPrincipalName",
        "mail",
        "displayName",
        "objectGUID",
        "userAccountControl",
        "memberOf",
        "department",
        "company",
        "title",
        "preferredLanguage",
    ]

    def map(self, entry: abacsync.Entry) -> abacsync.Decision:
        text = first(entry, "userAccountControl")
        control = 0
        if text is not None:
            parsed = parse_u32(text.strip(_WHITESPACE))
            if parsed is None:
                raise abacsync.InvalidAttribute("userAccountControl", f"`{text}` is not a number")
            control = parsed
        if control & (
            WORKSTATION_TRUST_ACCOUNT | SERVER_TRUST_ACCOUNT | INTERDOMAIN_TRUST_ACCOUNT
        ):
            return abacsync.skip("computer or trust account")
        guids = entry.binary("objectGUID")
        if not guids:
            raise abacsync.MissingAttribute("objectGUID")
        ldap_id = format_guid(guids[0])
        if ldap_id is None:
            raise abacsync.InvalidAttribute(
                "objectGUID", f"{len(guids[0])} bytes long, not 16"
            )
        if control & ACCOUNTDISABLE:
            return abacsync.deactivate(
                ldap_id,
                f"account disabled in Active Directory (userAccountControl {control})",
            )
        upn = first(entry, "userPrincipalName")
        username = first(entry, "sAMAccountName")
        if username is None and upn is not None:
            username = upn.split("@", 1)[0]
        if not username:
            raise abacsync.MissingAttribute("sAMAccountName")
        return abacsync.user(
            username,
            ldap_id,
            email=first(entry, "mail") or upn,
            display_name=first(entry, "displayName"),
            language=first(entry, "preferredLanguage"),
            attributes={
                "groups": non_empty(group_cns(entry)),
                "department": non_empty(entry.values("department")),
                "company": non_empty(entry.values("company")),
                "title": non_empty(entry.values("title")),
            },
        )


def first(entry: abacsync.Entry, name: str) -> str | None:
    """The first value of text attribute ``name`` if it is not empty (Rust's
    ``Entry::first``: an empty value is no value)."""
    return entry.first(name) or None


def non_empty(values: Iterable[str]) -> list[str]:
    """``values`` without empty strings, as the Rust SDK's ``User::attribute`` keeps them."""
    return [value for value in values if value]


def parse_u32(text: str) -> int | None:
    """``text`` as Rust's ``str::parse::<u32>`` reads it: ASCII digits with an optional
    ``+``, at most ``u32::MAX``; ``None`` otherwise."""
    if not _U32.fullmatch(text):
        return None
    value = int(text)
    return value if value <= 0xFFFF_FFFF else None


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


def _rdn_value(rdn: Rdn, attr: str) -> str | None:
    for name, value in rdn:
        if ascii_eq(name, attr):
            return value
    return None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_eq(a: str, b: str) -> bool:
    """Rust's ``eq_ignore_ascii_case``."""
    return a.translate(_ASCII_LOWER) == b.translate(_ASCII_LOWER)


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
