// The cost of the JavaScript bindings alone, for the plugin_runtime benchmark: every
// entry becomes the same prebuilt user, of the shape the OpenLDAP example produces,
// without the module reading the entry. What remains is the batch crossing the boundary
// (contract 0.2.0: one JSON document each way) and the engine's JSON parsing the entries
// and writing the users: no mapping can be faster than this.

const USER = {
  upsert: {
    username: "user000001",
    ldap_id: "00000001-6a55-4d7c-9d0e-1f1d5a1e9a01",
    email: "user000001@example.org",
    display_name: "User Number 1",
    attributes: {
      department: ["4701", "101"],
      employeeType: ["staff"],
      location: ["Oslo"],
      unit: ["Sales"],
    },
  },
};

export const mapper = {
  info() {
    return { name: "constant-js", version: "0.2.0" };
  },
  requiredAttributes() {
    return ["uid"];
  },
  mapBatch(context, entries) {
    const count = JSON.parse(entries).entries.length;
    return JSON.stringify(new Array(count).fill(USER));
  },
};
