// The cost of the JavaScript bindings alone, for the plugin_runtime benchmark: every
// entry becomes the same prebuilt user, of the shape the OpenLDAP example produces,
// without the module reading the entry. What remains is componentize-js converting each
// entry into JavaScript values and the user back: no mapping can be faster than this.

const USER = {
  tag: "ok",
  val: {
    tag: "upsert",
    val: {
      username: "user000001",
      email: "user000001@example.org",
      displayName: "User Number 1",
      language: undefined,
      active: true,
      ldapId: "00000001-6a55-4d7c-9d0e-1f1d5a1e9a01",
      attributes: [
        { key: "department", values: ["4701", "101"] },
        { key: "employeeType", values: ["staff"] },
        { key: "location", values: ["Oslo"] },
        { key: "unit", values: ["Sales"] },
      ],
    },
  },
};

export const mapper = {
  info() {
    return { name: "constant-js", version: "0.1.0" };
  },
  requiredAttributes() {
    return ["uid"];
  },
  mapEntries(context, entries) {
    return entries.map(() => USER);
  },
};
