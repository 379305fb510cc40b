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
"""

import re

import abacsync_mapping as abacsync

# `userAccountControl` bits this mapping reads.
ACCOUNTDISABLE = 0x2
WORKSTATION_TRUST_ACCOUNT = 0x1000
SERVER_TRUST_ACCOUNT = 0x2000
INTERDOMAIN_TRUST_ACCOUNT = 0x800

# A number as the Rust example reads it (`text.trim().parse::<u32>()`): ASCII digits,
# an optional `+`, white space around (Unicode's, which for Python's `\s` is without
# \x1c-\x1f). At most ten digits after leading zeros; the value is checked below.
NUMBER = re.compile(r"[^\S\x1c-\x1f]*\+?0*([0-9]{1,10})[^\S\x1c-\x1f]*")


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
        control = 0
        text = entry.first("userAccountControl")
        if text is not None:
            number = NUMBER.fullmatch(text)
            if number is None or int(number[1]) > 0xFFFF_FFFF:
                raise abacsync.InvalidAttribute("userAccountControl", f"`{text}` is not a number")
            control = int(number[1])
        if control & (WORKSTATION_TRUST_ACCOUNT | SERVER_TRUST_ACCOUNT | INTERDOMAIN_TRUST_ACCOUNT):
            return abacsync.skip("computer or trust account")
        guids = entry.binary("objectGUID")
        if not guids:
            raise abacsync.MissingAttribute("objectGUID")
        ldap_id = abacsync.format_guid(guids[0])
        if ldap_id is None:
            raise abacsync.InvalidAttribute("objectGUID", f"{len(guids[0])} bytes long, not 16")
        if control & ACCOUNTDISABLE:
            return abacsync.deactivate(
                ldap_id, f"account disabled in Active Directory (userAccountControl {control})"
            )
        upn = entry.first("userPrincipalName")
        username = entry.first("sAMAccountName") or (upn or "").split("@")[0]
        if not username:
            raise abacsync.MissingAttribute("sAMAccountName")
        return abacsync.user(
            username,
            ldap_id,
            email=entry.first("mail") or upn,
            display_name=entry.first("displayName"),
            language=entry.first("preferredLanguage"),
            attributes={
                "groups": group_cns(entry),
                "department": entry.values("department"),
                "company": entry.values("company"),
                "title": entry.values("title"),
            },
        )


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
