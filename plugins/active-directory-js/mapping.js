// Active Directory users to abacsync users: the Active Directory Rust example
// (plugins/active-directory), written in JavaScript. Both pass the same golden fixtures
// (plugins/active-directory/fixtures).
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
//
// The helpers below the mapping reproduce the Rust SDK's (abacsync_guest) behaviour
// where the JavaScript SDK's differs or is missing: `Entry::first` ignores an empty
// first value, `User::attribute` drops empty values, `guid::format_guid`, and
// `dn::Dn::parse` (with `#hex` and quoted values, which `parseDn` does not read).

import {
  deactivate,
  defineMapping,
  InvalidAttribute,
  MissingAttribute,
  skip,
  user,
} from "./abacsync-mapping.js";

/** @typedef {import("./abacsync-mapping.js").Entry} Entry */

// `userAccountControl` bits this mapping reads.
const ACCOUNTDISABLE = 0x2;
const WORKSTATION_TRUST_ACCOUNT = 0x1000;
const SERVER_TRUST_ACCOUNT = 0x2000;
const INTERDOMAIN_TRUST_ACCOUNT = 0x800;

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

  /** @param {Entry} entry */
  map(entry) {
    let control = 0;
    const controlText = first(entry, "userAccountControl");
    if (controlText !== undefined) {
      const parsed = parseU32(rustTrim(controlText));
      if (parsed === undefined) {
        throw new InvalidAttribute("userAccountControl", `\`${controlText}\` is not a number`);
      }
      control = parsed;
    }
    if ((control & (WORKSTATION_TRUST_ACCOUNT | SERVER_TRUST_ACCOUNT | INTERDOMAIN_TRUST_ACCOUNT)) !== 0) {
      return skip("computer or trust account");
    }
    const guid = entry.binary("objectGUID")[0];
    if (guid === undefined) throw new MissingAttribute("objectGUID");
    const ldapId = formatGuid(guid);
    if (ldapId === undefined) {
      throw new InvalidAttribute("objectGUID", `${guid.length} bytes long, not 16`);
    }
    if ((control & ACCOUNTDISABLE) !== 0) {
      return deactivate(ldapId, `account disabled in Active Directory (userAccountControl ${control})`);
    }
    const upn = first(entry, "userPrincipalName");
    const username = first(entry, "sAMAccountName") ?? upn?.split("@")[0];
    if (username === undefined || username === "") throw new MissingAttribute("sAMAccountName");
    return user(username, ldapId, {
      email: first(entry, "mail") ?? upn,
      displayName: first(entry, "displayName"),
      language: first(entry, "preferredLanguage"),
      attributes: {
        groups: nonEmpty(groupCns(entry)),
        department: nonEmpty(entry.values("department")),
        company: nonEmpty(entry.values("company")),
        title: nonEmpty(entry.values("title")),
      },
    });
  },
});

// ---------------------------------------------------------------------------------
// Entries and values, as the Rust SDK reads them.

/**
 * The first value of text attribute `name` if it is non-empty (Rust `Entry::first`).
 * @param {Entry} entry
 * @param {string} name
 * @returns {string | undefined}
 */
function first(entry, name) {
  const value = entry.values(name)[0];
  return value === "" ? undefined : value;
}

/**
 * The values without empty ones, as Rust `User::attribute` keeps them.
 * @param {readonly string[]} values
 * @returns {string[]}
 */
function nonEmpty(values) {
  return values.filter((value) => value !== "");
}

/**
 * The CNs of the entry's groups (resolved groups when the host knows them, `memberOf`
 * otherwise); a group DN that does not parse or has no `cn` is left out.
 * @param {Entry} entry
 * @returns {string[]}
 */
function groupCns(entry) {
  const dns = entry.groups ?? entry.values("memberOf");
  const cns = [];
  for (const dn of dns) {
    let rdns;
    try {
      rdns = parseDn(dn);
    } catch (err) {
      if (err instanceof DnError) continue;
      throw err;
    }
    const cn = firstValue(rdns, "cn");
    if (cn !== undefined) cns.push(cn);
  }
  return cns;
}

/**
 * Rust's `str::parse::<u32>`: ASCII digits with an optional `+`, at most 4294967295.
 * @param {string} text
 * @returns {number | undefined}
 */
function parseU32(text) {
  if (!/^\+?[0-9]+$/.test(text)) return undefined;
  const value = Number(text.startsWith("+") ? text.slice(1) : text);
  return value <= 0xffffffff ? value : undefined;
}

// Unicode White_Space, which Rust's `str::trim` removes (JavaScript's `trim` also removes
// U+FEFF and keeps U+0085).
const WHITE_SPACE = "\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const TRIM = new RegExp(`^[${WHITE_SPACE}]+|[${WHITE_SPACE}]+$`, "g");

/**
 * Rust's `str::trim`.
 * @param {string} text
 */
function rustTrim(text) {
  return text.replace(TRIM, "");
}

/**
 * A 16-byte `objectGUID` the way Active Directory tools show it
 * (`3f2504e0-4f89-11d3-9a0c-0305e82c3301`: the first three fields are little-endian);
 * undefined when `bytes` is not 16 bytes long.
 * @param {Uint8Array} bytes
 * @returns {string | undefined}
 */
function formatGuid(bytes) {
  if (bytes.length !== 16) return undefined;
  const hex = (...indexes) => indexes.map((i) => bytes[i].toString(16).padStart(2, "0")).join("");
  return [
    hex(3, 2, 1, 0),
    hex(5, 4),
    hex(7, 6),
    hex(8, 9),
    hex(10, 11, 12, 13, 14, 15),
  ].join("-");
}

/**
 * ASCII-only lower case, as Rust's `eq_ignore_ascii_case` compares.
 * @param {string} text
 */
function asciiLower(text) {
  return text.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

// ---------------------------------------------------------------------------------
// Distinguished names (RFC 4514), parsed exactly as the Rust SDK's `dn::Dn::parse`.

/** Why a string is not a DN: the byte offset where parsing failed, and why. */
class DnError extends Error {
  /**
   * @param {number} position
   * @param {string} reason
   */
  constructor(position, reason) {
    super(`invalid DN at byte ${position}: ${reason}`);
    this.position = position;
    this.reason = reason;
  }
}

/** @typedef {[type: string, value: string][]} Rdn */

const SPACE = 0x20;
const ESCAPABLE = new Set(Array.from(' "#+,;<=>\\', (c) => c.charCodeAt(0)));
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** @param {number | undefined} c */
const isHexDigit = (c) =>
  c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));

/** @param {number} c */
const nibble = (c) => (c <= 0x39 ? c - 0x30 : c >= 0x61 ? c - 0x61 + 10 : c - 0x41 + 10);

/**
 * Parse a DN into its RDNs, leftmost first, each a list of `[type, value]` pairs with
 * escapes decoded. The empty string is the root DN, with no RDNs. Throws a DnError.
 * @param {string} input
 * @returns {Rdn[]}
 */
function parseDn(input) {
  const bytes = new TextEncoder().encode(input);
  let pos = 0;
  const peek = () => (pos < bytes.length ? bytes[pos] : undefined);
  const error = (/** @type {string} */ reason) => new DnError(pos, reason);
  const skipSpaces = () => {
    while (peek() === SPACE) pos++;
  };
  const decode = (/** @type {number[]} */ out) => {
    try {
      return UTF8.decode(new Uint8Array(out));
    } catch {
      throw error("value is not UTF-8");
    }
  };
  // `\c` or `\hh` at the cursor.
  const escape = () => {
    pos++;
    const a = peek();
    const b = bytes[pos + 1];
    if (isHexDigit(a) && isHexDigit(b)) {
      pos += 2;
      return (nibble(a) << 4) | nibble(b);
    }
    if (a !== undefined && ESCAPABLE.has(a)) {
      pos++;
      return a;
    }
    throw error("invalid escape");
  };
  const hexValue = () => {
    pos++;
    const start = pos;
    while (isHexDigit(peek())) pos++;
    const digits = bytes.subarray(start, pos);
    if (digits.length === 0 || digits.length % 2 !== 0) {
      throw error("a `#` value needs an even number of hex digits");
    }
    const raw = [];
    for (let i = 0; i < digits.length; i += 2) raw.push((nibble(digits[i]) << 4) | nibble(digits[i + 1]));
    skipSpaces();
    // A BER-encoded value; its content is shown as text when it is text.
    try {
      return UTF8.decode(new Uint8Array(raw));
    } catch {
      return `#${raw.map((b) => b.toString(16).padStart(2, "0")).join("")}`;
    }
  };
  const quotedValue = () => {
    pos++;
    const out = [];
    for (;;) {
      const c = peek();
      if (c === undefined) throw error("unterminated quoted value");
      if (c === 0x22) {
        pos++;
        break;
      }
      if (c === 0x5c) {
        out.push(escape());
      } else {
        out.push(c);
        pos++;
      }
    }
    skipSpaces();
    return decode(out);
  };
  const stringValue = () => {
    const out = [];
    // Length of `out` up to the last byte that was escaped or not a space, so that
    // unescaped trailing spaces are dropped and escaped ones kept.
    let keep = 0;
    for (let c = peek(); c !== undefined; c = peek()) {
      if (c === 0x2c || c === 0x3b || c === 0x2b) break;
      if (c === 0x5c) {
        out.push(escape());
        keep = out.length;
      } else if (c === 0x22 || c === 0x3c || c === 0x3e || c === 0) {
        throw error("character must be escaped");
      } else {
        out.push(c);
        pos++;
        if (c !== SPACE) keep = out.length;
      }
    }
    out.length = keep;
    return decode(out);
  };
  /** @returns {[string, string]} */
  const ava = () => {
    skipSpaces();
    const start = pos;
    for (let c = peek(); c !== undefined; c = peek()) {
      const alphanumeric = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
      if (alphanumeric || c === 0x2d || c === 0x2e) pos++;
      else break;
    }
    if (pos === start) throw error("expected an attribute type");
    const attr = Array.from(bytes.subarray(start, pos), (c) => String.fromCharCode(c)).join("");
    skipSpaces();
    if (peek() !== 0x3d) throw error("expected `=` after the attribute type");
    pos++;
    skipSpaces();
    const c = peek();
    const value = c === 0x23 ? hexValue() : c === 0x22 ? quotedValue() : stringValue();
    return [attr, value];
  };

  /** @type {Rdn[]} */
  const rdns = [];
  skipSpaces();
  if (peek() === undefined) return rdns;
  for (;;) {
    const avas = [ava()];
    for (;;) {
      const c = peek();
      if (c === 0x2b) {
        pos++;
        avas.push(ava());
      } else if (c === 0x2c || c === 0x3b) {
        pos++;
        break;
      } else if (c === undefined) {
        rdns.push(avas);
        return rdns;
      } else {
        throw error("expected `,` or `+`");
      }
    }
    rdns.push(avas);
  }
}

/**
 * The value of type `attr` in the leftmost RDN that has it (the `cn` of a group DN).
 * @param {Rdn[]} rdns
 * @param {string} attr
 * @returns {string | undefined}
 */
function firstValue(rdns, attr) {
  const wanted = asciiLower(attr);
  for (const rdn of rdns) {
    const found = rdn.find(([type]) => asciiLower(type) === wanted);
    if (found !== undefined) return found[1];
  }
  return undefined;
}
