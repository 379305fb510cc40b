// Write an abacsync mapping plugin in JavaScript.
//
// A plugin is an ES module that exports `mapper`, made with `defineMapping`:
//
//     import { defineMapping, user, skip } from "./abacsync-mapping.js";
//
//     export const mapper = defineMapping({
//       name: "example",
//       version: "1.0.0",
//       attributes: ["uid", "mail", "entryUUID", "departmentNumber"],
//       map(entry) {
//         const mail = entry.first("mail");
//         if (mail === undefined) return skip("no mail");
//         return user(entry.require("uid"), entry.require("entryUUID"), {
//           email: mail,
//           attributes: { department: entry.values("departmentNumber") },
//         });
//       },
//     });
//
// componentize-js compiles it, with this module, into a WebAssembly component for the
// `mapping-plugin` world of `wit/` (scripts/build-js-plugin.sh).
//
// Contract 0.2.0 (wit/v0.2.0) hands a batch of entries over as one JSON document and
// takes the decisions back as one: this module parses and writes them with the
// engine's own JSON code, and wraps them so that a mapping reads like the Rust SDK's.
// The typed values (the call's context, errors of a whole call) follow the WIT types
// as componentize-js maps them: records are objects with camelCase fields, variants
// are `{ tag, val }`, u64 is a BigInt. An exception thrown while mapping one entry
// becomes that entry's error, with its stack, and the host reports it with the
// entry's DN; the other entries are unaffected.

import { log as hostLog } from "abacsync:mapping/host@0.2.0";

// The component is built without the engine's HTTP support (the sandbox has no network),
// where fetch() would stop the whole call with a bare trap; this says why instead.
globalThis.fetch = () => {
  throw new Error("fetch() is not available: abacsync plugins have no network access");
};

/** Throw (a subclass) to fail one entry, or, from `setup`, the whole batch. */
export class MappingFailure extends Error {
  toWit() {
    return { tag: "other", val: this.message };
  }
  toJson() {
    return { other: this.message };
  }
}

/** The entry lacks an attribute the mapping needs. */
export class MissingAttribute extends MappingFailure {
  constructor(name) {
    super(`missing attribute \`${name}\``);
    this.attribute = name;
  }
  toWit() {
    return { tag: "missing-attribute", val: this.attribute };
  }
  toJson() {
    return { missing_attribute: this.attribute };
  }
}

/** An attribute is present but its value cannot be used. */
export class InvalidAttribute extends MappingFailure {
  constructor(name, reason) {
    super(`invalid attribute \`${name}\`: ${reason}`);
    this.attribute = name;
    this.reason = reason;
  }
  toWit() {
    return { tag: "invalid-attribute", val: { name: this.attribute, reason: this.reason } };
  }
  toJson() {
    return { invalid_attribute: { name: this.attribute, reason: this.reason } };
  }
}

/** The tenant's settings are wrong for this plugin. */
export class InvalidSettings extends MappingFailure {
  toWit() {
    return { tag: "invalid-settings", val: this.message };
  }
  toJson() {
    return { invalid_settings: this.message };
  }
}

const EMPTY = Object.freeze([]);

// ASCII letters lower-cased, the others kept: LDAP names (and the Rust SDK,
// `eq_ignore_ascii_case`) compare that way.
function asciiLower(text) {
  return text.replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
}

// A batch's attribute name → position in a row. The host spells the names the plugin
// declared as declared, so the exact spelling is found directly; any other spelling is
// matched ASCII-case-insensitively, as LDAP does, once per batch. An attribute absent
// from the whole batch has position -1.
class Columns {
  constructor(names) {
    this.positions = new Map();
    for (let i = 0; i < names.length; i++) this.positions.set(names[i], 3 + i);
    this.lower = undefined;
  }

  of(name) {
    const position = this.positions.get(name);
    return position === undefined ? this.insensitive(name) : position;
  }

  insensitive(name) {
    if (this.lower === undefined) {
      this.lower = new Map();
      for (const [known, position] of this.positions) {
        const key = asciiLower(known);
        if (position >= 0 && !this.lower.has(key)) this.lower.set(key, position);
      }
    }
    const position = this.lower.get(asciiLower(String(name))) ?? -1;
    this.positions.set(name, position);
    return position;
  }
}

/**
 * A directory entry, with attribute names matched case-insensitively as LDAP does. It
 * reads as the Rust SDK's `Entry`: an attribute with no values is absent, and an empty
 * first value is no value (`first`, `require`).
 */
export class Entry {
  constructor(row, columns) {
    this.dn = row[0];
    /** The DNs of the entry's groups (nested ones resolved), or undefined when unknown. */
    this.groups = row[1] ?? undefined;
    this._row = row;
    this._columns = columns;
  }

  // The row's cell for text attribute `name`: a string, an array, or undefined.
  _cell(name) {
    const position = this._columns.of(name);
    return position < 0 ? undefined : (this._row[position] ?? undefined);
  }

  /** Every value of text attribute `name`, in the directory's order ([] if absent). */
  values(name) {
    const cell = this._cell(name);
    if (cell === undefined) return EMPTY;
    return typeof cell === "string" ? [cell] : cell;
  }

  /** The first value of text attribute `name`; undefined when it is absent or empty. */
  first(name) {
    const cell = this._cell(name);
    const value = typeof cell === "string" ? cell : cell?.[0];
    return value === "" ? undefined : value;
  }

  /** The first value of `name`, as `first`; throws MissingAttribute when there is none. */
  require(name) {
    const value = this.first(name);
    if (value === undefined) throw new MissingAttribute(name);
    return value;
  }

  /** Whether the entry has text or binary attribute `name` (even with an empty value). */
  has(name) {
    const cell = this._cell(name);
    return typeof cell === "string" || cell?.length > 0 || this._binary(name) !== undefined;
  }

  /** Every value of binary attribute `name`, as Uint8Arrays ([] if absent). */
  binary(name) {
    const values = this._binary(name) ?? EMPTY;
    return values.map((value) => Uint8Array.from(atob(value), (c) => c.charCodeAt(0)));
  }

  /** The DNs of the entry's groups: `groups` when the host resolved them, else `memberOf`. */
  groupDns() {
    return this.groups ?? this.values("memberOf");
  }

  // The base64 values of the binary attribute `name` (ASCII case ignored), or undefined.
  _binary(name) {
    const binary = this._row[2];
    if (!binary) return undefined;
    if (Object.hasOwn(binary, name)) return binary[name];
    const lower = asciiLower(String(name));
    for (const key in binary) {
      if (asciiLower(key) === lower) return binary[key];
    }
    return undefined;
  }
}

/** A decision, in the contract's JSON shape: made by `user`, `skip` and `deactivate`. */
class Decision {
  constructor(kind, value) {
    this[kind] = value;
  }
}

/**
 * An upsert decision: create the user, or update it to exactly this state.
 * `attributes` maps each ABAC key to its values (an object or a Map; the values a string
 * or any iterable of strings). Empty values are dropped, and a key left with no values
 * is left out, so an absent LDAP attribute simply yields no ABAC attribute.
 */
export function user(username, ldapId, options = {}) {
  const decision = { username: text("username", username), ldap_id: text("ldapId", ldapId) };
  if (options.email !== undefined && options.email !== null) decision.email = text("email", options.email);
  if (options.displayName !== undefined && options.displayName !== null) {
    decision.display_name = text("displayName", options.displayName);
  }
  if (options.language !== undefined && options.language !== null) decision.language = text("language", options.language);
  if (options.active !== undefined && !options.active) decision.active = false;
  const given = options.attributes;
  if (given) {
    // No prototype, so that an ABAC key may be any string, `__proto__` too.
    const attributes = Object.create(null);
    let keys = 0;
    for (const [key, values] of given instanceof Map ? given : Object.entries(given)) {
      let list = values;
      if (typeof list === "string") list = [list];
      else if (!Array.isArray(list)) list = Array.from(list ?? EMPTY);
      for (let i = 0; i < list.length; i++) {
        if (typeof list[i] !== "string") {
          throw new TypeError(`attribute ${JSON.stringify(key)}: values must be strings, got ${typeof list[i]} ${String(list[i])}`);
        }
      }
      if (list.includes("")) list = list.filter((value) => value !== "");
      if (list.length === 0) continue;
      attributes[text("attribute key", key)] = list;
      keys++;
    }
    if (keys > 0) decision.attributes = attributes;
  }
  return new Decision("upsert", decision);
}

function text(field, value) {
  if (typeof value !== "string") throw new TypeError(`${field} must be a string, got ${typeof value} ${String(value)}`);
  return value;
}

function optionalText(field, value) {
  return value === undefined || value === null ? undefined : text(field, value);
}

/** The entry does not become a user; `reason` says why. */
export function skip(reason) {
  return new Decision("skip", text("reason", reason));
}

/** Deactivate the user with `ldapId`, for `reason`. */
export function deactivate(ldapId, reason) {
  return new Decision("deactivate", { ldap_id: text("ldapId", ldapId), reason: text("reason", reason) });
}

/** Write to the host's log, tagged with the tenant and the plugin (bounded per call). */
export const log = {
  debug: (message) => hostLog("debug", String(message)),
  info: (message) => hostLog("info", String(message)),
  warn: (message) => hostLog("warn", String(message)),
  error: (message) => hostLog("error", String(message)),
};

/** Why a string is not a DN: `invalid DN at byte N: reason`. */
export class DnError extends Error {
  constructor(position, reason) {
    super(`invalid DN at byte ${position}: ${reason}`);
    this.name = "DnError";
    /** The byte offset (in the DN's UTF-8) where parsing failed. */
    this.position = position;
    /** What was wrong there. */
    this.reason = reason;
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const ESCAPABLE = new Set(Array.from(' "#+,;<=>\\', (c) => c.charCodeAt(0)));
const isHexDigit = (c) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
const nibble = (c) => (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10);
const isTypeByte = (c) =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2e;

/**
 * Parse an RFC 4514 DN, such as `cn=Smith\, John+uid=js,ou=people,dc=example`, into its
 * RDNs, leftmost (most specific) first; each RDN is an array of `[type, value]` pairs
 * with escapes decoded. The empty string is the root DN, with no RDNs.
 *
 * As the Rust SDK's `Dn::parse`: a `#hex` value is its bytes, shown as text when they
 * are UTF-8 (`#` and lower-case hex otherwise); a quoted value may hold `,`, `+` and `;`;
 * unescaped spaces around a value are dropped. Throws a DnError with the byte offset
 * where it failed.
 */
export function parseDn(dn) {
  const bytes = new TextEncoder().encode(text("dn", dn));
  let pos = 0;
  const peek = () => bytes[pos]; // undefined at the end
  const fail = (reason) => {
    throw new DnError(pos, reason);
  };
  const skipSpaces = () => {
    while (bytes[pos] === 0x20) pos++;
  };
  const utf8 = (out) => {
    try {
      return UTF8.decode(new Uint8Array(out));
    } catch {
      return fail("value is not UTF-8");
    }
  };
  // `\c` or `\hh` at the cursor, which is at the backslash.
  const escape = () => {
    pos++;
    const a = bytes[pos];
    const b = bytes[pos + 1];
    if (isHexDigit(a) && isHexDigit(b)) {
      pos += 2;
      return (nibble(a) << 4) | nibble(b);
    }
    if (ESCAPABLE.has(a)) {
      pos++;
      return a;
    }
    return fail("invalid escape");
  };
  const hexValue = () => {
    pos++;
    const start = pos;
    while (isHexDigit(peek())) pos++;
    const digits = pos - start;
    if (digits === 0 || digits % 2 !== 0) fail("a `#` value needs an even number of hex digits");
    const raw = new Uint8Array(digits / 2);
    for (let i = 0; i < raw.length; i++) raw[i] = (nibble(bytes[start + 2 * i]) << 4) | nibble(bytes[start + 2 * i + 1]);
    skipSpaces();
    // A BER-encoded value; its content is shown as text when it is text.
    try {
      return UTF8.decode(raw);
    } catch {
      return `#${Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    }
  };
  const quotedValue = () => {
    pos++;
    const out = [];
    for (;;) {
      const c = peek();
      if (c === undefined) fail("unterminated quoted value");
      if (c === 0x22) break;
      if (c === 0x5c) {
        out.push(escape());
      } else {
        out.push(c);
        pos++;
      }
    }
    pos++;
    skipSpaces();
    return utf8(out);
  };
  const stringValue = () => {
    const out = [];
    // Length of `out` up to the last byte that was escaped or not a space, so that
    // unescaped trailing spaces are dropped and escaped ones kept.
    let keep = 0;
    for (let c = peek(); c !== undefined && c !== 0x2c && c !== 0x3b && c !== 0x2b; c = peek()) {
      if (c === 0x5c) {
        out.push(escape());
        keep = out.length;
      } else if (c === 0x22 || c === 0x3c || c === 0x3e || c === 0) {
        fail("character must be escaped");
      } else {
        out.push(c);
        pos++;
        if (c !== 0x20) keep = out.length;
      }
    }
    out.length = keep;
    return utf8(out);
  };
  const ava = () => {
    skipSpaces();
    const start = pos;
    while (isTypeByte(peek())) pos++;
    if (pos === start) fail("expected an attribute type");
    const type = UTF8.decode(bytes.subarray(start, pos));
    skipSpaces();
    if (peek() !== 0x3d) fail("expected `=` after the attribute type");
    pos++;
    skipSpaces();
    const c = peek();
    return [type, c === 0x23 ? hexValue() : c === 0x22 ? quotedValue() : stringValue()];
  };

  const rdns = [];
  skipSpaces();
  if (peek() === undefined) return rdns;
  for (;;) {
    const rdn = [ava()];
    rdns.push(rdn);
    while (peek() === 0x2b) {
      pos++;
      rdn.push(ava());
    }
    if (peek() === undefined) return rdns;
    if (peek() !== 0x2c && peek() !== 0x3b) fail("expected `,` or `+`");
    pos++;
  }
}

// The value of the first pair of `rdn` whose type is `wanted` (ASCII-lower-cased).
function rdnValue(rdn, wanted) {
  for (const [type, value] of rdn) {
    if (asciiLower(type) === wanted) return value;
  }
  return undefined;
}

/**
 * Every value of attribute type `attr` across the DN's RDNs, leftmost first (all the
 * `ou`s of a DN): the value of `attr` in each RDN that has it, types compared
 * case-insensitively. Throws a DnError when `dn` is not a DN.
 */
export function dnValues(dn, attr) {
  const wanted = asciiLower(attr);
  const values = [];
  for (const rdn of parseDn(dn)) {
    const value = rdnValue(rdn, wanted);
    if (value !== undefined) values.push(value);
  }
  return values;
}

/**
 * The value of attribute type `attr` in the leftmost RDN that has it (the `cn` of a
 * group's DN), or undefined. Throws a DnError when `dn` is not a DN.
 */
export function dnFirstValue(dn, attr) {
  const wanted = asciiLower(attr);
  for (const rdn of parseDn(dn)) {
    const value = rdnValue(rdn, wanted);
    if (value !== undefined) return value;
  }
  return undefined;
}

const hex2 = (byte) => byte.toString(16).padStart(2, "0");

/**
 * A 16-byte `objectGUID` the way Active Directory tools show it:
 * `3f2504e0-4f89-11d3-9a0c-0305e82c3301`. The first three fields are stored
 * little-endian, so `e0 04 25 3f 89 4f d3 11 …` becomes `3f2504e0-4f89-11d3-…`.
 * Undefined when `bytes` is not 16 bytes long.
 */
export function formatGuid(bytes) {
  if (bytes.length !== 16) return undefined;
  const b = Array.from(bytes, hex2);
  return `${b[3]}${b[2]}${b[1]}${b[0]}-${b[5]}${b[4]}-${b[7]}${b[6]}-${b[8]}${b[9]}-${b.slice(10).join("")}`;
}

/**
 * A binary `objectSid` as `S-1-5-21-…`; undefined when it is malformed (shorter than
 * 8 bytes, or not as many 4-byte sub-authorities as its second byte says).
 */
export function formatSid(bytes) {
  if (bytes.length < 8 || bytes.length !== 8 + 4 * bytes[1]) return undefined;
  let authority = 0;
  for (let i = 2; i < 8; i++) authority = authority * 256 + bytes[i];
  let out = `S-${bytes[0]}-${authority}`;
  for (let i = 8; i < bytes.length; i += 4) {
    out += `-${(bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24)) >>> 0}`;
  }
  return out;
}

/**
 * Setting `key` of `settings` as a boolean (`true`/`false`, `yes`/`no`, `on`/`off`,
 * `1`/`0`, in any case), `fallback` when absent; throws InvalidSettings otherwise.
 */
export function boolSetting(settings, key, fallback) {
  if (!Object.hasOwn(settings, key)) return fallback;
  const value = asciiLower(String(settings[key]));
  if (value === "true" || value === "yes" || value === "on" || value === "1") return true;
  if (value === "false" || value === "no" || value === "off" || value === "0") return false;
  throw new InvalidSettings(`\`${key}\` must be true or false, not \`${value}\``);
}

function describe(err) {
  if (err instanceof Error) {
    const stack = typeof err.stack === "string" && err.stack.trim() !== "" ? `\n${compactStack(err.stack)}` : "";
    return `${err.name}: ${err.message}${stack}`;
  }
  return `thrown: ${String(err)}`;
}

// At most 20 frames, with runs of one frame (deep recursion) folded into one line.
function compactStack(stack) {
  const lines = [];
  let previous;
  let repeats = 0;
  const flush = () => {
    if (repeats > 0) lines.push(`  [previous frame repeated ${repeats} more times]`);
    repeats = 0;
  };
  for (const line of stack.trimEnd().split("\n")) {
    if (line === previous) {
      repeats++;
      continue;
    }
    flush();
    lines.push(line);
    previous = line;
  }
  flush();
  return lines.length > 20 ? [...lines.slice(0, 20), `  [${lines.length - 20} more lines]`].join("\n") : lines.join("\n");
}

function entryError(err) {
  if (err instanceof MappingFailure) return { error: err.toJson() };
  return { error: { other: describe(err) } };
}

// A thrown value with a `payload` becomes the WIT function's `err(payload)`.
function refuse(err) {
  const payload = err instanceof MappingFailure ? err.toWit() : { tag: "invalid-settings", val: describe(err) };
  const error = new Error(err instanceof Error ? err.message : String(err));
  error.payload = payload;
  return error;
}

/**
 * Make the `mapper` export from a mapping definition:
 *
 * - `name`, `version`: who the plugin is;
 * - `attributes`: the LDAP attributes `map` reads, or a function of the call's state;
 * - `setup(settings, context)`: optional; checks the tenant's settings (an object of
 *   key → value) and returns the state passed to `map` (throw InvalidSettings to refuse);
 * - `map(entry, state)`: decides what one Entry becomes: `user(...)`, `skip(...)` or
 *   `deactivate(...)`. Throw to fail the entry.
 */
export function defineMapping(definition) {
  const prepare = (context) => {
    const settings = Object.fromEntries(context.settings.map((setting) => [setting.key, setting.value]));
    try {
      return definition.setup ? definition.setup(settings, context) : { settings, context };
    } catch (err) {
      throw refuse(err);
    }
  };
  return {
    info() {
      return { name: definition.name, version: definition.version };
    },
    requiredAttributes(context) {
      const state = prepare(context);
      const attributes = definition.attributes ?? [];
      return typeof attributes === "function" ? attributes(state) : Array.from(attributes);
    },
    mapBatch(context, entries) {
      const state = prepare(context);
      const batch = JSON.parse(entries);
      const columns = new Columns(batch.attributes);
      const rows = batch.entries;
      const results = new Array(rows.length);
      for (let i = 0; i < rows.length; i++) {
        try {
          const decision = definition.map(new Entry(rows[i], columns), state);
          if (!(decision instanceof Decision)) {
            throw new TypeError(
              `map() returned ${decision === null ? "null" : typeof decision}, not a decision: return user(...), skip(...) or deactivate(...)`,
            );
          }
          results[i] = decision;
        } catch (err) {
          results[i] = entryError(err);
        }
      }
      return JSON.stringify(results);
    },
  };
}
