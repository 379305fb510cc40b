// A JavaScript plugin that misbehaves on purpose. The setting `behaviour` chooses how
// (in `map-batch`; `info` and `required-attributes` behave):
//
// - `raise`: throws a TypeError for the entry `uid=u1,...` and maps the others.
// - `raise-batch`: throws outside the SDK's per-entry guard, so the whole call fails.
// - `wrong-shape`: returns an array where the JSON text of the decisions belongs.
// - `wrong-json`: returns text that is not JSON.
// - `loop`: spins forever.
// - `memory`: grows an array until it is stopped.
// - `recursion`: recurses without end.
// - `network`: calls fetch(), which the sandbox's build leaves out.
// - `echo`: skips each entry with a reason that shows what the SDK read from it.
// - `print`: logs a line to the console, then skips every entry.
// - anything else: skips every entry with reason `ok`.

import { defineMapping, skip } from "./abacsync-mapping.js";

function recurse(depth) {
  return recurse(depth + 1) + 1;
}

const mapping = defineMapping({
  name: "hostile-js",
  version: "0.2.0",
  attributes: ["uid"],
  setup(settings) {
    return settings;
  },
  map(entry, settings) {
    switch (settings.behaviour) {
      case "raise":
        if (entry.dn.startsWith("uid=u1,")) throw new TypeError(`cannot map ${entry.dn}`);
        break;
      case "loop":
        for (;;) {}
      case "memory": {
        const hoard = [];
        for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
      }
      case "recursion":
        recurse(0);
        break;
      case "network":
        fetch(`http://${settings.address}/`);
        return skip("fetched");
      case "echo": {
        const hex = (value) => Array.from(value, (b) => b.toString(16).padStart(2, "0")).join("");
        const parts = [
          entry.dn,
          entry.values("UID").join(","),
          entry.values("ou").join(","),
          entry.first("ou") ?? "-",
          entry.binary("objectGUID").map(hex).join(""),
          String(entry.has("objectguid")),
          entry.groups === undefined ? "unknown" : entry.groups.join(","),
          entry.first("mail") ?? "-",
          String(entry.has("mail")),
        ];
        return skip(parts.join("|"));
      }
      case "print":
        console.log(`mapping ${entry.dn}`);
        break;
    }
    return skip("ok");
  },
});

export const mapper = {
  info: mapping.info,
  requiredAttributes: mapping.requiredAttributes,
  mapBatch(context, entries) {
    const behaviour = context.settings.find((s) => s.key === "behaviour")?.value;
    const rows = () => JSON.parse(entries).entries;
    if (behaviour === "raise-batch") throw new Error(`gave up on a batch of ${rows().length} entries`);
    if (behaviour === "wrong-shape") return rows().map((row) => ({ username: row[0] }));
    if (behaviour === "wrong-json") return "[{'skip': 'single quotes'}]";
    return mapping.mapBatch(context, entries);
  },
};
