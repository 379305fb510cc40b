// A mapping configured entirely by tenant settings, so an administrator gets a mapping
// without writing code: the settings-map Rust example (plugins/settings-map), written in
// JavaScript. Both pass the same golden fixtures (plugins/settings-map/fixtures).
//
// | setting | meaning | default |
// |---|---|---|
// | `username` | attribute holding the username | `uid` |
// | `ldap-id` | attribute holding the stable id (a binary 16-byte value is formatted as a GUID) | `entryUUID` |
// | `email` | attribute holding the email | `mail` |
// | `display-name` | attribute holding the display name | `displayName` |
// | `language` | attribute holding the language tag | none |
// | `abac.KEY` | source of ABAC attribute `KEY`: an attribute name, `dn:TYPE` (values of the DN's `TYPE=` parts) or `groups:cn` (CNs of the groups) | none |
// | `filter.ATTR` | only entries whose `ATTR` has this value (case-insensitive; `*` = present) | none |
// | `deactivate.ATTR` | entries whose `ATTR` has this value are deactivated | none |
// | `require-email` | skip entries without an email | `false` |
// | `lowercase` | lower-case ABAC values | `false` |
// | `lowercase-username` | lower-case the username | `false` |
//
// Unknown settings are refused, so a typo is caught when the plugin is assigned.
//
// `setup` reads the settings from the context's list rather than from the settings
// object, as the Rust plugin does: in order, a key given twice seen twice (the last
// value wins where one value is read). The helpers below the mapping reproduce the Rust
// SDK's (abacsync_guest) behaviour where the JavaScript SDK's differs or is missing:
// `Entry::first` ignores an empty first value, `User::add_attribute` drops empty
// values, `MappingContext::bool_setting`, `guid::format_guid`, and `dn::Dn::parse` with
// its error positions (`parseDn` reads neither `#hex` nor quoted values).

import {
  deactivate,
  defineMapping,
  InvalidAttribute,
  InvalidSettings,
  MissingAttribute,
  skip,
  user,
} from "./abacsync-mapping.js";

/** @typedef {import("./abacsync-mapping.js").Entry} Entry */
/** @typedef {import("./abacsync-mapping.js").MappingContext} MappingContext */

/**
 * Where an ABAC attribute's values come from: an attribute, the values of the DN's
 * `TYPE=` parts, or the CNs of the groups.
 * @typedef {{ kind: "attribute", name: string } | { kind: "dn", type: string } | { kind: "groups" }} Source
 */

/**
 * `attribute` has `value` (or, for `*`, is present).
 * @typedef {{ attribute: string, value: string }} Condition
 */

/**
 * The mapping, as configured by one tenant's settings.
 * @typedef {object} State
 * @property {string} username
 * @property {string} ldapId
 * @property {string} email
 * @property {string} displayName
 * @property {string | undefined} language
 * @property {[string, Source][]} abac
 * @property {Condition[]} filters
 * @property {Condition[]} deactivate
 * @property {boolean} requireEmail
 * @property {boolean} lowercase
 * @property {boolean} lowercaseUsername
 */

const KNOWN = new Set([
  "username",
  "ldap-id",
  "email",
  "display-name",
  "language",
  "require-email",
  "lowercase",
  "lowercase-username",
]);

export const mapper = defineMapping({
  name: "settings-map-js",
  version: "1.0.0",

  /**
   * @param {Record<string, string>} _settings
   * @param {MappingContext} context
   * @returns {State}
   */
  setup(_settings, context) {
    const settings = context.settings;
    /** The value of setting `key` (the last one, if it was given twice). */
    const setting = (/** @type {string} */ key) => {
      for (let i = settings.length - 1; i >= 0; i--) {
        if (settings[i].key === key) return settings[i].value;
      }
      return undefined;
    };
    const text = (/** @type {string} */ key, /** @type {string} */ fallback) => setting(key) ?? fallback;
    // `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, `fallback` when absent.
    const boolSetting = (/** @type {string} */ key, /** @type {boolean} */ fallback) => {
      const value = setting(key);
      if (value === undefined) return fallback;
      const lower = asciiLower(value);
      if (lower === "true" || lower === "yes" || lower === "on" || lower === "1") return true;
      if (lower === "false" || lower === "no" || lower === "off" || lower === "0") return false;
      throw new InvalidSettings(`\`${key}\` must be true or false, not \`${lower}\``);
    };
    /** @type {State} */
    const state = {
      username: text("username", "uid"),
      ldapId: text("ldap-id", "entryUUID"),
      email: text("email", "mail"),
      displayName: text("display-name", "displayName"),
      language: setting("language"),
      abac: [],
      filters: [],
      deactivate: [],
      requireEmail: boolSetting("require-email", false),
      lowercase: boolSetting("lowercase", false),
      lowercaseUsername: boolSetting("lowercase-username", false),
    };
    for (const { key, value: given } of settings) {
      const value = rustTrim(given);
      if (key.startsWith("abac.")) {
        const abacKey = key.slice("abac.".length);
        if (abacKey === "" || value === "") {
          throw new InvalidSettings(`\`${key}\` needs an ABAC key and a source`);
        }
        /** @type {Source} */
        let source;
        if (value.startsWith("dn:")) {
          source = { kind: "dn", type: value.slice("dn:".length) };
        } else if (asciiLower(value) === "groups:cn") {
          source = { kind: "groups" };
        } else if (value.includes(":")) {
          throw new InvalidSettings(
            `\`${key}\`: unknown source \`${value}\` (an attribute, \`dn:TYPE\` or \`groups:cn\`)`,
          );
        } else {
          source = { kind: "attribute", name: value };
        }
        state.abac.push([abacKey, source]);
      } else if (key.startsWith("filter.")) {
        state.filters.push(condition(key, key.slice("filter.".length), value));
      } else if (key.startsWith("deactivate.")) {
        state.deactivate.push(condition(key, key.slice("deactivate.".length), value));
      } else if (!KNOWN.has(key)) {
        throw new InvalidSettings(`unknown setting \`${key}\``);
      }
    }
    return state;
  },

  /** @param {State} state */
  attributes(state) {
    const names = [state.username, state.ldapId, state.email, state.displayName];
    if (state.language !== undefined) names.push(state.language);
    for (const [, source] of state.abac) {
      if (source.kind === "attribute") names.push(source.name);
      else if (source.kind === "groups") names.push("memberOf");
    }
    for (const c of [...state.filters, ...state.deactivate]) names.push(c.attribute);
    const seen = new Set();
    return names.filter((name) => {
      const key = asciiLower(name);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  },

  /**
   * @param {Entry} entry
   * @param {State} state
   */
  map(entry, state) {
    const failed = state.filters.find((filter) => !holds(filter, entry));
    if (failed !== undefined) {
      return skip(`filtered out: \`${failed.attribute}\` is not \`${failed.value}\``);
    }
    let ldapId = first(entry, state.ldapId);
    if (ldapId === undefined) {
      const bytes = entry.binary(state.ldapId)[0];
      if (bytes === undefined) throw new MissingAttribute(state.ldapId);
      ldapId = formatGuid(bytes) ?? Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }
    const rule = state.deactivate.find((r) => holds(r, entry));
    if (rule !== undefined) {
      return deactivate(ldapId, `\`${rule.attribute}\` is \`${rule.value}\``);
    }
    const email = first(entry, state.email);
    if (state.requireEmail && email === undefined) return skip(`no \`${state.email}\` attribute`);
    let username = first(entry, state.username);
    if (username === undefined) throw new MissingAttribute(state.username);
    if (state.lowercaseUsername) username = username.toLowerCase();
    /** ABAC key → values, in the order the keys were first given. */
    const attributes = new Map();
    for (const [key, source] of state.abac) {
      /** @type {string[]} */
      let values;
      if (source.kind === "attribute") {
        values = [...entry.values(source.name)];
      } else if (source.kind === "dn") {
        let rdns;
        try {
          rdns = parseDn(entry.dn);
        } catch (err) {
          if (err instanceof DnError) throw new InvalidAttribute("dn", err.message);
          throw err;
        }
        values = dnValues(rdns, source.type);
      } else {
        values = groupCns(entry);
      }
      if (state.lowercase) values = values.map((v) => v.toLowerCase());
      values = values.filter((v) => v !== "");
      if (values.length === 0) continue;
      const existing = attributes.get(key);
      if (existing === undefined) attributes.set(key, values);
      else existing.push(...values);
    }
    const decision = user(username, ldapId, {
      email,
      displayName: first(entry, state.displayName),
      language: state.language === undefined ? undefined : first(entry, state.language),
      attributes: Object.fromEntries(attributes),
    });
    // user() copies the attributes by assignment, which would turn an ABAC key named
    // `__proto__` into the object's prototype; put it back as the key it is (the
    // decision is the contract's JSON object, `{ upsert: { ..., attributes } }`).
    const proto = attributes.get("__proto__");
    if (proto !== undefined) {
      Object.defineProperty(/** @type {any} */ (decision).upsert.attributes, "__proto__", {
        value: proto,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return decision;
  },
});

/**
 * A `filter.ATTR` or `deactivate.ATTR` setting's condition.
 * @param {string} key
 * @param {string} attribute
 * @param {string} value
 * @returns {Condition}
 */
function condition(key, attribute, value) {
  if (attribute === "" || value === "") {
    throw new InvalidSettings(`\`${key}\` needs an attribute and a value`);
  }
  return { attribute, value };
}

/**
 * Whether `condition` holds for `entry`: `*` = the attribute is present; otherwise one
 * of its values equals the condition's (ASCII case-insensitively).
 * @param {Condition} condition
 * @param {Entry} entry
 */
function holds(condition, entry) {
  if (condition.value === "*") return entry.has(condition.attribute);
  const wanted = asciiLower(condition.value);
  return entry.values(condition.attribute).some((value) => asciiLower(value) === wanted);
}

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

/**
 * Every value of type `attr` across the RDNs, leftmost first: each RDN's first pair of
 * that type (all the `ou`s of a DN).
 * @param {Rdn[]} rdns
 * @param {string} attr
 * @returns {string[]}
 */
function dnValues(rdns, attr) {
  const wanted = asciiLower(attr);
  const values = [];
  for (const rdn of rdns) {
    const found = rdn.find(([type]) => asciiLower(type) === wanted);
    if (found !== undefined) values.push(found[1]);
  }
  return values;
}
