// OpenLDAP `inetOrgPerson` entries to abacsync users: the OpenLDAP Rust example
// (plugins/openldap), written in JavaScript. Both pass the same golden fixtures.
//
// - Entries without `mail` are skipped.
// - `uid` is the username and `entryUUID` the stable id; both are required.
// - `displayName` (or `cn`) and `preferredLanguage` fill the profile.
// - ABAC attributes: `department` from `departmentNumber`, `employeeType` from
//   `employeeType`, `location` from `l`, `unit` from `ou` (or, when the entry has no
//   `ou`, from the `ou=` parts of its DN).
// - An account locked by the password policy overlay (`pwdAccountLockedTime`) stays a
//   user but is inactive.

import { defineMapping, dnValues, InvalidAttribute, skip, user } from "./abacsync-mapping.js";

export const mapper = defineMapping({
  name: "openldap-inetorgperson-js",
  version: "1.0.0",
  attributes: [
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
  ],

  map(entry) {
    const mail = entry.first("mail");
    if (mail === undefined) return skip("no mail attribute");
    let units = entry.values("ou");
    if (units.length === 0) {
      try {
        units = dnValues(entry.dn, "ou");
      } catch (err) {
        throw new InvalidAttribute("dn", err.message);
      }
    }
    return user(entry.require("uid"), entry.require("entryUUID"), {
      email: mail,
      displayName: entry.first("displayName") ?? entry.first("cn"),
      language: entry.first("preferredLanguage"),
      active: !entry.has("pwdAccountLockedTime"),
      attributes: {
        department: entry.values("departmentNumber"),
        employeeType: entry.values("employeeType"),
        location: entry.values("l"),
        unit: units,
      },
    });
  },
});
