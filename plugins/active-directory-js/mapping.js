// Active Directory users to abacsync users: the Active Directory Rust example
// (plugins/active-directory), written in JavaScript. Both pass the same golden fixtures.
//
// - `sAMAccountName` is the username (`userPrincipalName`'s local part when absent),
//   `mail` (or the UPN) the email, `displayName` the display name.
// - `objectGUID`, formatted as AD tools show it, is the stable id: it survives
//   renames and moves between OUs.
// - Computer and trust accounts are skipped; a disabled account (bit `0x2` of
//   `userAccountControl`) is deactivated.
// - ABAC attributes: `groups` from the CNs of the user's groups (nested groups when
//   the host resolved them, `memberOf` otherwise), `department`, `company`, `title`.
// - Not read: `accountExpires` and `lockoutTime`. Whether an account has expired or
//   is locked out depends on the time of the sync, and the contract gives a mapping no
//   clock (the same entry always maps the same way), so an expired or locked-out
//   account stays active here; AD refuses its logins all the same. To deactivate
//   expired accounts, disable them in AD (bit `0x2` of `userAccountControl`), which this
//   mapping follows.

import {
  deactivate,
  defineMapping,
  dnFirstValue,
  formatGuid,
  InvalidAttribute,
  MissingAttribute,
  skip,
  user,
} from "./abacsync-mapping.js";

// `userAccountControl` bits this mapping reads.
const ACCOUNTDISABLE = 0x2;
const WORKSTATION_TRUST_ACCOUNT = 0x1000;
const SERVER_TRUST_ACCOUNT = 0x2000;
const INTERDOMAIN_TRUST_ACCOUNT = 0x800;

// A number as the Rust example reads it (`text.trim().parse::<u32>()`): ASCII digits
// after an optional `+`, Unicode white space around (JavaScript's `\s` without U+FEFF,
// with U+0085); the value is checked against 2^32 - 1 below.
const NUMBER = /^(?:[^\S\ufeff]|\u0085)*\+?([0-9]+)(?:[^\S\ufeff]|\u0085)*$/;

export const mapper = defineMapping({
  name: "active-directory-js",
  version: "1.0.0",
  attributes: [
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
  ],

  map(entry) {
    let control = 0;
    const text = entry.first("userAccountControl");
    if (text !== undefined) {
      const digits = NUMBER.exec(text)?.[1];
      if (digits === undefined || Number(digits) > 0xffffffff) {
        throw new InvalidAttribute("userAccountControl", `\`${text}\` is not a number`);
      }
      control = Number(digits);
    }
    if (control & (WORKSTATION_TRUST_ACCOUNT | SERVER_TRUST_ACCOUNT | INTERDOMAIN_TRUST_ACCOUNT)) {
      return skip("computer or trust account");
    }
    const [guid] = entry.binary("objectGUID");
    if (guid === undefined) throw new MissingAttribute("objectGUID");
    const ldapId = formatGuid(guid);
    if (ldapId === undefined) throw new InvalidAttribute("objectGUID", `${guid.length} bytes long, not 16`);
    if (control & ACCOUNTDISABLE) {
      return deactivate(ldapId, `account disabled in Active Directory (userAccountControl ${control})`);
    }
    const upn = entry.first("userPrincipalName");
    const username = entry.first("sAMAccountName") ?? upn?.split("@")[0];
    if (!username) throw new MissingAttribute("sAMAccountName");
    return user(username, ldapId, {
      email: entry.first("mail") ?? upn,
      displayName: entry.first("displayName"),
      language: entry.first("preferredLanguage"),
      attributes: {
        groups: groupCns(entry),
        department: entry.values("department"),
        company: entry.values("company"),
        title: entry.values("title"),
      },
    });
  },
});

// The CN of each of the entry's groups; a group DN that does not parse, or has no CN,
// is left out.
function groupCns(entry) {
  return entry.groupDns().flatMap((dn) => {
    try {
      return dnFirstValue(dn, "cn") ?? [];
    } catch {
      return [];
    }
  });
}
