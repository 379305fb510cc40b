// Compiles (tsc --strict, scripts/check-sdk-packages.sh) only if the declarations in
// abacsync-mapping.d.ts describe a real mapping: settings checked in setup, typed state,
// attributes as a function of it, every decision helper, DN helpers, logging.
import {
  defineMapping,
  deactivate,
  dnValues,
  Entry,
  InvalidAttribute,
  InvalidSettings,
  log,
  parseDn,
  skip,
  user,
  type Decision,
  type Mapper,
} from "../abacsync-mapping.js";

interface State {
  unitType: string;
  lowercase: boolean;
}

export const mapper: Mapper = defineMapping<State>({
  name: "typed-example",
  version: "1.0.0",
  setup(settings, context): State {
    if (context.mode === "targeted") log.info(`tenant ${context.tenantId}: targeted`);
    const unitType = settings["unit-type"] ?? "ou";
    if (unitType === "") throw new InvalidSettings("`unit-type` is empty");
    return { unitType, lowercase: settings["lowercase"] === "true" };
  },
  attributes: (state) => ["uid", "mail", "entryUUID", state.unitType, "objectGUID"],
  map(entry: Entry, state: State): Decision {
    const mail = entry.first("mail");
    if (mail === undefined) return skip("no mail");
    if (entry.values("uid").length > 1) throw new InvalidAttribute("uid", "more than one value");
    if (entry.has("objectGUID") && entry.binary("objectGUID")[0]?.length !== 16) {
      return deactivate(entry.require("entryUUID"), "a broken objectGUID");
    }
    const username = entry.require("uid");
    const first: string | undefined = parseDn(entry.dn)[0]?.[0]?.[1];
    return user(state.lowercase ? username.toLowerCase() : username, entry.require("entryUUID"), {
      email: mail,
      displayName: first ?? null,
      active: true,
      attributes: { unit: dnValues(entry.dn, state.unitType), groups: entry.groups ?? [] },
    });
  },
});

// @ts-expect-error: a decision comes from user(), skip() or deactivate(), not a literal
export const forged: Decision = { upsert: { username: "x" } };

// @ts-expect-error: map must return a decision
defineMapping({ name: "x", version: "1", map: () => "a user" });
