// TypeScript declarations for abacsync-mapping.js: write an abacsync mapping plugin in
// JavaScript (or TypeScript compiled to JavaScript), against contract
// abacsync:mapping@0.2.0 (wit/v0.2.0).

/** How the host syncs: a whole directory, the changes since the last sync, or chosen users. */
export type SyncMode = "full" | "incremental" | "targeted";

/** One tenant setting, as the WIT's `setting` record. */
export interface Setting {
  key: string;
  value: string;
}

/** The call's context, as componentize-js maps the WIT's `mapping-context` record. */
export interface MappingContext {
  /** The tenant's id (WIT `u64`: a BigInt). */
  tenantId: bigint;
  mode: SyncMode;
  settings: Setting[];
}

/** Throw (a subclass) to fail one entry, or, from `setup`, the whole batch. */
export class MappingFailure extends Error {
  constructor(message?: string);
}

/** The entry lacks an attribute the mapping needs. */
export class MissingAttribute extends MappingFailure {
  constructor(name: string);
  /** The missing attribute's name. */
  readonly attribute: string;
}

/** An attribute is present but its value cannot be used. */
export class InvalidAttribute extends MappingFailure {
  constructor(name: string, reason: string);
  /** The attribute's name. */
  readonly attribute: string;
  /** Why its value cannot be used. */
  readonly reason: string;
}

/** The tenant's settings are wrong for this plugin: the host refuses the assignment. */
export class InvalidSettings extends MappingFailure {}

/**
 * A directory entry, with attribute names matched case-insensitively as LDAP does. It
 * reads as the Rust SDK's `Entry`: an attribute with no values is absent, and an empty
 * first value is no value (`first`, `require`).
 */
export class Entry {
  private constructor();
  /** The entry's DN. */
  readonly dn: string;
  /** The DNs of the entry's groups (nested ones resolved), or undefined when unknown; see `groupDns`. */
  readonly groups: string[] | undefined;
  /** Every value of text attribute `name`, in the directory's order ([] if absent). */
  values(name: string): readonly string[];
  /** The first value of text attribute `name`; undefined when it is absent or empty. */
  first(name: string): string | undefined;
  /** The first value of `name`, as `first`; throws MissingAttribute when there is none. */
  require(name: string): string;
  /** Whether the entry has text or binary attribute `name` (even with an empty value). */
  has(name: string): boolean;
  /** Every value of binary attribute `name` (e.g. `objectGUID`), as bytes ([] if absent). */
  binary(name: string): Uint8Array[];
  /** The DNs of the entry's groups: `groups` when the host resolved them, otherwise the `memberOf` values. */
  groupDns(): readonly string[];
}

declare const decision: unique symbol;

/** A decision for one entry: made by `user`, `skip` and `deactivate` only. */
export interface Decision {
  readonly [decision]: true;
}

/** The profile and ABAC attributes of an upserted user. */
export interface UserOptions {
  email?: string | null;
  displayName?: string | null;
  language?: string | null;
  /** False: the user exists but may not log in. Default true. */
  active?: boolean;
  /**
   * Each ABAC key to its values (an object or a Map); a single string is one value.
   * Empty values are dropped, and keys left with no values are left out.
   */
  attributes?: Record<string, string | Iterable<string>> | ReadonlyMap<string, string | Iterable<string>>;
}

/** Create the user, or update it to exactly this state. `ldapId` is the stable id (entryUUID, objectGUID as text). */
export function user(username: string, ldapId: string, options?: UserOptions): Decision;

/** The entry does not become a user; `reason` says why. */
export function skip(reason: string): Decision;

/** Deactivate the user with `ldapId`, for `reason`. */
export function deactivate(ldapId: string, reason: string): Decision;

/** Write to the host's log, tagged with the tenant and the plugin (bounded per call). */
export const log: {
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
};

/** Why a string is not a DN: `invalid DN at byte N: reason`. */
export class DnError extends Error {
  constructor(position: number, reason: string);
  /** The byte offset (in the DN's UTF-8) where parsing failed. */
  readonly position: number;
  /** What was wrong there. */
  readonly reason: string;
}

/** One RDN: its `[type, value]` pairs, escapes decoded. */
export type Rdn = [type: string, value: string][];

/**
 * Parse an RFC 4514 DN into its RDNs, leftmost first, as the Rust SDK's `Dn::parse`
 * (`#hex` and quoted values too). The empty string is the root DN, with no RDNs.
 * Throws a DnError with the byte offset where it failed.
 */
export function parseDn(dn: string): Rdn[];

/**
 * Every value of attribute type `attr` across the DN's RDNs, leftmost first (all the
 * `ou`s of a DN): the value of `attr` in each RDN that has it. Throws a DnError.
 */
export function dnValues(dn: string, attr: string): string[];

/** The value of attribute type `attr` in the leftmost RDN that has it (the `cn` of a group's DN). Throws a DnError. */
export function dnFirstValue(dn: string, attr: string): string | undefined;

/**
 * A 16-byte `objectGUID` as Active Directory tools show it
 * (`3f2504e0-4f89-11d3-9a0c-0305e82c3301`); undefined when it is not 16 bytes long.
 */
export function formatGuid(bytes: Uint8Array | readonly number[]): string | undefined;

/** A binary `objectSid` as `S-1-5-21-…`; undefined when it is malformed. */
export function formatSid(bytes: Uint8Array | readonly number[]): string | undefined;

/**
 * Setting `key` as a boolean (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, in any
 * case), `fallback` when absent; throws InvalidSettings otherwise.
 */
export function boolSetting(settings: Record<string, string>, key: string, fallback: boolean): boolean;

/** The state `map` receives when there is no `setup`. */
export interface DefaultState {
  settings: Record<string, string>;
  context: MappingContext;
}

/** A mapping, given to `defineMapping`. `State` is what `setup` returns. */
export interface MappingDefinition<State = DefaultState> {
  /** The plugin's name. */
  name: string;
  /** The plugin's version. */
  version: string;
  /** The LDAP attributes `map` reads (the host fetches only these), or a function of the state. */
  attributes?: readonly string[] | ((state: State) => readonly string[]);
  /** Checks the tenant's settings once per call; its result is `map`'s state. Throw InvalidSettings to refuse them. */
  setup?(settings: Record<string, string>, context: MappingContext): State;
  /** What one entry becomes. Throw to fail the entry (the others are unaffected). */
  map(entry: Entry, state: State): Decision;
}

/** The component's `mapper` export, as componentize-js expects it. */
export interface Mapper {
  info(): { name: string; version: string };
  requiredAttributes(context: MappingContext): string[];
  mapBatch(context: MappingContext, entries: string): string;
}

/** Make the `mapper` export: `export const mapper = defineMapping({ ... })`. */
export function defineMapping<State = DefaultState>(definition: MappingDefinition<State>): Mapper;
