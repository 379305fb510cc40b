"""OpenLDAP ``inetOrgPerson`` entries to abacsync users: the OpenLDAP Rust example
(``plugins/openldap``), written in Python. Both pass the same golden fixtures.

- Entries without ``mail`` are skipped.
- ``uid`` is the username and ``entryUUID`` the stable id; both are required.
- ``displayName`` (or ``cn``) and ``preferredLanguage`` fill the profile.
- ABAC attributes: ``department`` from ``departmentNumber``, ``employeeType`` from
  ``employeeType``, ``location`` from ``l``, ``unit`` from ``ou`` (or, when the entry
  has no ``ou``, from the ``ou=`` parts of its DN).
- An account locked by the password policy overlay (``pwdAccountLockedTime``) stays a
  user but is inactive.
"""

import abacsync_mapping as abacsync


class Mapper(abacsync.Mapping):
    name = "openldap-inetorgperson-python"
    version = "1.0.0"
    attributes = [
        "uid",
        "mail",
        "cn",
        "displayName",
        "preferredLanguage",
        "entryUUID",
        "departmentNumber",
        "employeeType",
        "l",
        "ou",
        "pwdAccountLockedTime",
    ]

    def map(self, entry: abacsync.Entry) -> abacsync.Decision:
        mail = entry.first("mail")
        if mail is None:
            return abacsync.skip("no mail attribute")
        units = entry.values("ou")
        if not units:
            try:
                units = abacsync.dn_values(entry.dn, "ou")
            except ValueError as err:
                raise abacsync.InvalidAttribute("dn", str(err)) from None
        return abacsync.user(
            entry.require("uid"),
            entry.require("entryUUID"),
            email=mail,
            display_name=entry.first("displayName") or entry.first("cn"),
            language=entry.first("preferredLanguage"),
            active=not entry.has("pwdAccountLockedTime"),
            attributes={
                "department": entry.values("departmentNumber"),
                "employeeType": entry.values("employeeType"),
                "location": entry.values("l"),
                "unit": units,
            },
        )
