// Compiles (tsc --strict, scripts/check-sdk-packages.sh) only if the declarations in
// abacsync-mapping.d.ts describe a real mapping: settings checked in setup, typed state,
// attributes as a function of it, every decision helper, DN and GUID/SID helpers, logging.
import {
  boolSetting,
  defineMapping,
  deactivate,
  DnError,
  dnFirstValue,
  dnValues,
  Entry,
  formatGuid,
  formatSid,
  InvalidAttribute,
  InvalidSettings,
  log,
  MissingAttribute,
  parseDn,
  skip,
  user,
  type Decision,
  type Mapper,
  type Rdn,
} from "../abacsync-mapping.js";

interface State {
  unitType: string;
  lowercase: boolean;
}

/** The CN of each group whose DN parses and has one. */
function groupCns(entry: Entry): string[] {
  return entry.groupDns().flatMap((dn) => {
    try {
      return dnFirstValue(dn, "cn") ?? [];
    } catch (err) {
      if (err instanceof DnError) return [];
      throw err;
    }
  });
}

export const mapper: Mapper = defineMapping<State>({
  name: "typed-example",
  version: "1.0.0",
  setup(settings, context): State {
    if (context.mode === "targeted") log.info(`tenant ${context.tenantId}: targeted`);
    const unitType = settings["unit-type"] ?? "ou";
    if (unitType === "") throw new InvalidSettings("`unit-type` is empty");
    return { unitType, lowercase: boolSetting(settings, "lowercase", false) };
  },
  attributes: (state) => ["uid", "mail", "entryUUID", state.unitType, "objectGUID", "objectSid", "memberOf"],
  map(entry: Entry, state: State): Decision {
    const mail = entry.first("mail");
    if (mail === undefined) return skip("no mail");
    if (entry.values("uid").length > 1) throw new InvalidAttribute("uid", "more than one value");
    if (entry.has("objectGUID") && entry.binary("objectGUID")[0]?.length !== 16) {
      return deactivate(entry.require("entryUUID"), "a broken objectGUID");
    }
    const username = entry.require("uid");
    let rdns: Rdn[];
    try {
      rdns = parseDn(entry.dn);
    } catch (err) {
      if (!(err instanceof DnError)) throw err;
      const at: number = err.position;
      throw new InvalidAttribute("dn", `${err.reason} at byte ${at}`);
    }
    const first: string | undefined = rdns[0]?.[0]?.[1];
    const [guid] = entry.binary("objectGUID");
    if (guid === undefined) throw new MissingAttribute("objectGUID");
    const ldapId: string = formatGuid(guid) ?? entry.require("entryUUID");
    const sids: string[] = entry.binary("objectSid").flatMap((sid) => formatSid(sid) ?? []);
    const attributes = new Map<string, string[]>([["unit", dnValues(entry.dn, state.unitType)]]);
    attributes.set("groups", groupCns(entry));
    attributes.set("sid", sids);
    return user(state.lowercase ? username.toLowerCase() : username, ldapId, {
      email: mail,
      displayName: first ?? null,
      active: true,
      attributes,
    });
  },
});

// @ts-expect-error: a decision comes from user(), skip() or deactivate(), not a literal
export const forged: Decision = { upsert: { username: "x" } };

// @ts-expect-error: map must return a decision
defineMapping({ name: "x", version: "1", map: () => "a user" });

// Plain objects still work for attributes, with a string or any iterable of strings.
export const plain: Decision = user("u", "id", { attributes: { a: "x", b: new Set(["y"]), c: [] } });
export const guid: string | undefined = formatGuid([0, 1, 2]);

// @ts-expect-error: formatGuid takes bytes, not text
formatGuid("3f2504e0-4f89-11d3-9a0c-0305e82c3301");

// @ts-expect-error: boolSetting needs a fallback
boolSetting({}, "lowercase");
