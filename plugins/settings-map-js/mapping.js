// A mapping configured entirely by tenant settings, so an administrator gets a mapping
// without writing code: the settings-map Rust example (plugins/settings-map), written in
// JavaScript. Both pass the same golden fixtures and refuse the same settings.
//
// | setting | meaning | default |
// |---|---|---|
// | `username` | attribute holding the username | `uid` |
// | `ldap-id` | attribute holding the stable id (a binary 16-byte value is formatted as a GUID, other binary values as hex) | `entryUUID` |
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
// Unknown settings are refused, so a typo is caught when the plugin is assigned; so are
// an `abac.`, `filter.` or `deactivate.` setting without a key or a value, an unknown
// `abac.` source and a boolean that is not one. A setting given twice counts twice
// where settings add up (`abac.`, `filter.`, `deactivate.`), its last value elsewhere.
//
// JavaScript's `toLowerCase()` lower-cases a Greek capital sigma at the end of a word
// differently from Rust's `to_lowercase()` (`ΟΔΟΣ` becomes `οδοσ`, not `οδος`): a
// difference of the two languages, not of the mapping.

import {
  boolSetting,
  deactivate,
  defineMapping,
  dnFirstValue,
  dnValues,
  formatGuid,
  InvalidAttribute,
  InvalidSettings,
  MissingAttribute,
  skip,
  user,
} from "./abacsync-mapping.js";

// The settings that take no prefix.
const PLAIN_SETTINGS = new Set([
  "username",
  "ldap-id",
  "email",
  "display-name",
  "language",
  "require-email",
  "lowercase",
  "lowercase-username",
]);

// White space around a setting's value, as the Rust example's `str::trim` strips it
// (Unicode's: JavaScript's `\s` without U+FEFF, with U+0085).
const AROUND = /^(?:[^\S\ufeff]|\u0085)+|(?:[^\S\ufeff]|\u0085)+$/g;

export const mapper = defineMapping({
  name: "settings-map-js",
  version: "1.0.0",

  setup(settings, context) {
    const state = {
      username: settings["username"] ?? "uid",
      ldapId: settings["ldap-id"] ?? "entryUUID",
      email: settings["email"] ?? "mail",
      displayName: settings["display-name"] ?? "displayName",
      language: settings["language"],
      requireEmail: boolSetting(settings, "require-email", false),
      lowercase: boolSetting(settings, "lowercase", false),
      lowercaseUsername: boolSetting(settings, "lowercase-username", false),
      abac: [], // [ABAC key, source]: an attribute name, `dn:TYPE` or `groups:cn`
      filters: [], // [attribute, value]
      deactivations: [], // [attribute, value]
    };
    // In the order given, each time given (`settings` holds each key's last value).
    for (const { key, value: given } of context.settings) {
      const value = given.replace(AROUND, "");
      if (key.startsWith("abac.")) {
        if (key === "abac." || value === "") {
          throw new InvalidSettings(`\`${key}\` needs an ABAC key and a source`);
        }
        let source = value;
        if (same(value, "groups:cn")) source = "groups:cn";
        else if (value.includes(":") && !value.startsWith("dn:")) {
          throw new InvalidSettings(`\`${key}\`: unknown source \`${value}\` (an attribute, \`dn:TYPE\` or \`groups:cn\`)`);
        }
        state.abac.push([key.slice("abac.".length), source]);
      } else if (key.startsWith("filter.") || key.startsWith("deactivate.")) {
        const attribute = key.slice(key.indexOf(".") + 1);
        if (attribute === "" || value === "") {
          throw new InvalidSettings(`\`${key}\` needs an attribute and a value`);
        }
        (key.startsWith("filter.") ? state.filters : state.deactivations).push([attribute, value]);
      } else if (!PLAIN_SETTINGS.has(key)) {
        throw new InvalidSettings(`unknown setting \`${key}\``);
      }
    }
    return state;
  },

  attributes(state) {
    const names = [state.username, state.ldapId, state.email, state.displayName];
    if (state.language !== undefined) names.push(state.language);
    for (const [, source] of state.abac) {
      if (source === "groups:cn") names.push("memberOf");
      else if (!source.startsWith("dn:")) names.push(source);
    }
    for (const [attribute] of [...state.filters, ...state.deactivations]) names.push(attribute);
    // Each name once, spelled as first given.
    const seen = new Set();
    return names.filter((name) => !seen.has(folded(name)) && seen.add(folded(name)));
  },

  map(entry, state) {
    for (const [attribute, value] of state.filters) {
      if (!holds(entry, attribute, value)) return skip(`filtered out: \`${attribute}\` is not \`${value}\``);
    }
    let ldapId = entry.first(state.ldapId);
    if (ldapId === undefined) {
      const [bytes] = entry.binary(state.ldapId);
      if (bytes === undefined) throw new MissingAttribute(state.ldapId);
      ldapId = formatGuid(bytes) ?? Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }
    for (const [attribute, value] of state.deactivations) {
      if (holds(entry, attribute, value)) return deactivate(ldapId, `\`${attribute}\` is \`${value}\``);
    }
    const email = entry.first(state.email);
    if (state.requireEmail && email === undefined) return skip(`no \`${state.email}\` attribute`);
    let username = entry.require(state.username);
    if (state.lowercaseUsername) username = username.toLowerCase();
    const attributes = new Map();
    for (const [key, source] of state.abac) {
      let values;
      if (source.startsWith("dn:")) {
        try {
          values = dnValues(entry.dn, source.slice("dn:".length));
        } catch (err) {
          throw new InvalidAttribute("dn", err.message);
        }
      } else if (source === "groups:cn") {
        values = groupCns(entry);
      } else {
        values = entry.values(source);
      }
      if (state.lowercase) values = values.map((value) => value.toLowerCase());
      attributes.set(key, [...(attributes.get(key) ?? []), ...values]);
    }
    return user(username, ldapId, {
      email,
      displayName: entry.first(state.displayName),
      language: state.language === undefined ? undefined : entry.first(state.language),
      attributes,
    });
  },
});

// Whether `attribute` has `value` (or, for `*`, is present).
function holds(entry, attribute, value) {
  if (value === "*") return entry.has(attribute);
  return entry.values(attribute).some((found) => same(found, value));
}

// Equal but for the case of ASCII letters (`É` and `é` differ), as the Rust example
// compares.
function same(a, b) {
  return folded(a) === folded(b);
}

// `text` with only its ASCII letters lower-cased.
function folded(text) {
  return text.replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
}

// The CN of each of the entry's groups; a group DN that does not parse, or has no CN,
// is left out.
function groupCns(entry) {
  return entry.groupDns().flatMap((dn) => {
    try {
      return dnFirstValue(dn, "cn") ?? [];
    } catch {
      return [];
    }
  });
}
