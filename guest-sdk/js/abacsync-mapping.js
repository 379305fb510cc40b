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

// A batch's attribute name → position in a row. The host spells the names the plugin
// declared as declared, so the exact spelling is found directly; any other spelling is
// matched case-insensitively, as LDAP does, once per batch. An attribute absent from the
// whole batch has position -1.
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
        const key = known.toLowerCase();
        if (position >= 0 && !this.lower.has(key)) this.lower.set(key, position);
      }
    }
    const position = this.lower.get(String(name).toLowerCase()) ?? -1;
    this.positions.set(name, position);
    return position;
  }
}

/** A directory entry, with attribute names matched case-insensitively as LDAP does. */
export class Entry {
  constructor(row, columns) {
    this.dn = row[0];
    /** The DNs of the entry's groups (nested ones resolved), or undefined when unknown. */
    this.groups = row[1] ?? undefined;
    this._row = row;
    this._columns = columns;
  }

  _cell(name) {
    const position = this._columns.of(name);
    return position < 0 ? null : this._row[position];
  }

  /** Every value of text attribute `name`, in the directory's order ([] if absent). */
  values(name) {
    const cell = this._cell(name);
    if (cell === null || cell === undefined) return EMPTY;
    return typeof cell === "string" ? [cell] : cell;
  }

  /** The first value of `name`, or undefined. */
  first(name) {
    const cell = this._cell(name);
    if (cell === null || cell === undefined) return undefined;
    return typeof cell === "string" ? cell : cell[0];
  }

  /** The first value of `name`; throws MissingAttribute when absent. */
  require(name) {
    const cell = this._cell(name);
    if (cell === null || cell === undefined) throw new MissingAttribute(name);
    return typeof cell === "string" ? cell : cell[0];
  }

  /** Whether the entry has `name`, as text or binary. */
  has(name) {
    const cell = this._cell(name);
    return (cell !== null && cell !== undefined) || this._binary(name).length > 0;
  }

  /** Every value of binary attribute `name`, as Uint8Arrays ([] if absent). */
  binary(name) {
    return this._binary(name).map((value) => Uint8Array.from(atob(value), (c) => c.charCodeAt(0)));
  }

  _binary(name) {
    const binary = this._row[2];
    if (!binary) return EMPTY;
    if (Object.hasOwn(binary, name)) return binary[name];
    const lower = String(name).toLowerCase();
    const found = [];
    for (const key in binary) {
      if (key.toLowerCase() === lower) found.push(...binary[key]);
    }
    return found;
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
 * `attributes` maps each ABAC key to its values; keys with no values are left out.
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
    const attributes = {};
    for (const key in given) {
      let list = given[key];
      if (typeof list === "string") list = [list];
      else if (!Array.isArray(list)) list = Array.from(list ?? EMPTY);
      if (list.length === 0) continue;
      for (let i = 0; i < list.length; i++) {
        if (typeof list[i] !== "string") {
          throw new TypeError(`attribute ${JSON.stringify(key)}: values must be strings, got ${typeof list[i]} ${String(list[i])}`);
        }
      }
      attributes[key] = list;
    }
    decision.attributes = attributes;
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

const SPECIAL = ' "#+,;<=>\\';
const HEX = /^[0-9a-fA-F]{2}$/;

/**
 * Parse an RFC 4514 DN into its RDNs, leftmost first; each RDN is an array of
 * `[type, value]` pairs with escapes decoded. Throws an Error when `dn` is not a DN.
 */
export function parseDn(dn) {
  const data = new TextEncoder().encode(dn);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const fail = (pos, reason) => {
    throw new Error(`invalid DN at byte ${pos}: ${reason}`);
  };
  const rdns = [];
  if (dn.trim() === "") return rdns;
  let pos = 0;
  let rdn = [];
  const skipSpaces = () => {
    while (pos < data.length && data[pos] === 0x20) pos++;
  };
  for (;;) {
    skipSpaces();
    const start = pos;
    while (pos < data.length) {
      const c = String.fromCharCode(data[pos]);
      if (/[A-Za-z0-9.-]/.test(c)) pos++;
      else break;
    }
    if (pos === start) fail(pos, "expected an attribute type");
    const attr = decoder.decode(data.subarray(start, pos));
    skipSpaces();
    if (data[pos] !== 0x3d) fail(pos, "expected `=` after the attribute type");
    pos++;
    skipSpaces();
    const out = [];
    let keep = 0;
    while (pos < data.length) {
      const c = data[pos];
      if (c === 0x2c || c === 0x3b || c === 0x2b) break;
      if (c === 0x5c) {
        const pair = String.fromCharCode(data[pos + 1] ?? 0, data[pos + 2] ?? 0);
        if (HEX.test(pair)) {
          out.push(parseInt(pair, 16));
          pos += 3;
        } else if (pos + 1 < data.length && SPECIAL.includes(String.fromCharCode(data[pos + 1]))) {
          out.push(data[pos + 1]);
          pos += 2;
        } else {
          fail(pos, "invalid escape");
        }
        keep = out.length;
      } else if (c === 0x22 || c === 0x3c || c === 0x3e || c === 0) {
        fail(pos, "character must be escaped");
      } else {
        out.push(c);
        pos++;
        if (c !== 0x20) keep = out.length;
      }
    }
    let value;
    try {
      value = decoder.decode(new Uint8Array(out.slice(0, keep)));
    } catch {
      fail(pos, "value is not UTF-8");
    }
    rdn.push([attr, value]);
    if (pos >= data.length) {
      rdns.push(rdn);
      return rdns;
    }
    if (data[pos] !== 0x2b) {
      rdns.push(rdn);
      rdn = [];
    }
    pos++;
  }
}

/** Every value of attribute type `attr` across the DN's RDNs, leftmost first. */
export function dnValues(dn, attr) {
  const wanted = attr.toLowerCase();
  return parseDn(dn).flatMap((rdn) => rdn.filter(([name]) => name.toLowerCase() === wanted).map(([, value]) => value));
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
