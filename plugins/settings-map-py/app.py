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
"""

import re
from typing import Any

import abacsync_mapping as abacsync

# The settings that take no prefix.
PLAIN_SETTINGS = {
    "username",
    "ldap-id",
    "email",
    "display-name",
    "language",
    "require-email",
    "lowercase",
    "lowercase-username",
}
# White space around a setting's value, as the Rust example's `str::trim` strips it
# (Unicode's; Python's `str.strip()` would also strip \x1c-\x1f).
AROUND = re.compile(r"^[^\S\x1c-\x1f]+|[^\S\x1c-\x1f]+\Z")
GROUP_CNS = "groups:cn"


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
        get = self.settings.get
        self.username = get("username", "uid")
        self.ldap_id = get("ldap-id", "entryUUID")
        self.email = get("email", "mail")
        self.display_name = get("display-name", "displayName")
        self.language = get("language")
        self.require_email = self.bool_setting("require-email", False)
        self.lowercase = self.bool_setting("lowercase", False)
        self.lowercase_username = self.bool_setting("lowercase-username", False)
        # (ABAC key, source): an attribute name, `dn:TYPE` or GROUP_CNS.
        self.abac: list[tuple[str, str]] = []
        # (attribute, value) conditions.
        self.filters: list[tuple[str, str]] = []
        self.deactivations: list[tuple[str, str]] = []
        for key, value in self.settings.items():
            value = AROUND.sub("", value)
            if key.startswith("abac."):
                if key == "abac." or not value:
                    raise abacsync.InvalidSettings(f"`{key}` needs an ABAC key and a source")
                if same(value, GROUP_CNS):
                    value = GROUP_CNS
                elif ":" in value and not value.startswith("dn:"):
                    raise abacsync.InvalidSettings(
                        f"`{key}`: unknown source `{value}` "
                        "(an attribute, `dn:TYPE` or `groups:cn`)"
                    )
                self.abac.append((key.removeprefix("abac."), value))
            elif key.startswith(("filter.", "deactivate.")):
                kind, _, attribute = key.partition(".")
                if not attribute or not value:
                    raise abacsync.InvalidSettings(f"`{key}` needs an attribute and a value")
                rules = self.filters if kind == "filter" else self.deactivations
                rules.append((attribute, value))
            elif key not in PLAIN_SETTINGS:
                raise abacsync.InvalidSettings(f"unknown setting `{key}`")

    def required_attributes_for(self) -> list[str]:
        names = [self.username, self.ldap_id, self.email, self.display_name]
        if self.language is not None:
            names.append(self.language)
        for _, source in self.abac:
            if source == GROUP_CNS:
                names.append("memberOf")
            elif not source.startswith("dn:"):
                names.append(source)
        names += [attribute for attribute, _ in self.filters + self.deactivations]
        unique: dict[bytes, str] = {}  # each name once, spelled as first given
        for name in names:
            unique.setdefault(folded(name), name)
        return list(unique.values())

    def map(self, entry: abacsync.Entry) -> abacsync.Decision:
        for attribute, value in self.filters:
            if not holds(entry, attribute, value):
                return abacsync.skip(f"filtered out: `{attribute}` is not `{value}`")
        ldap_id = entry.first(self.ldap_id)
        if ldap_id is None:
            binary = entry.binary(self.ldap_id)
            if not binary:
                raise abacsync.MissingAttribute(self.ldap_id)
            ldap_id = abacsync.format_guid(binary[0]) or binary[0].hex()
        for attribute, value in self.deactivations:
            if holds(entry, attribute, value):
                return abacsync.deactivate(ldap_id, f"`{attribute}` is `{value}`")
        email = entry.first(self.email)
        if self.require_email and email is None:
            return abacsync.skip(f"no `{self.email}` attribute")
        username = entry.require(self.username)
        if self.lowercase_username:
            username = username.lower()
        attributes: dict[str, list[str]] = {}
        for key, source in self.abac:
            if source.startswith("dn:"):
                try:
                    values = abacsync.dn_values(entry.dn, source.removeprefix("dn:"))
                except abacsync.DnError as err:
                    raise abacsync.InvalidAttribute("dn", str(err)) from None
            elif source == GROUP_CNS:
                values = group_cns(entry)
            else:
                values = list(entry.values(source))
            attributes[key] = [value.lower() for value in values] if self.lowercase else values
        return abacsync.user(
            username,
            ldap_id,
            email=email,
            display_name=entry.first(self.display_name),
            language=None if self.language is None else entry.first(self.language),
            attributes=attributes,
        )


def holds(entry: abacsync.Entry, attribute: str, value: str) -> bool:
    """Whether ``attribute`` has ``value`` (or, for ``*``, is present)."""
    if value == "*":
        return entry.has(attribute)
    return any(same(found, value) for found in entry.values(attribute))


def same(a: str, b: str) -> bool:
    """Equal but for the case of ASCII letters (``É`` and ``é`` differ), as the Rust
    example compares."""
    return folded(a) == folded(b)


def folded(text: str) -> bytes:
    """``text`` with ASCII letters lower-cased (``bytes.lower()`` folds only those)."""
    return text.encode().lower()


def group_cns(entry: abacsync.Entry) -> list[str]:
    """The CN of each of the entry's groups; a group DN that does not parse, or has no
    CN, is left out."""
    cns = []
    for dn in entry.group_dns():
        try:
            cn = abacsync.dn_first_value(dn, "cn")
        except abacsync.DnError:
            continue
        if cn is not None:
            cns.append(cn)
    return cns
