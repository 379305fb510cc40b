//! A mapping configured entirely by tenant settings, so an administrator gets a
//! mapping without writing code.
//!
//! | setting | meaning | default |
//! |---|---|---|
//! | `username` | attribute holding the username | `uid` |
//! | `ldap-id` | attribute holding the stable id (a binary 16-byte value is formatted as a GUID) | `entryUUID` |
//! | `email` | attribute holding the email | `mail` |
//! | `display-name` | attribute holding the display name | `displayName` |
//! | `language` | attribute holding the language tag | none |
//! | `abac.KEY` | source of ABAC attribute `KEY`: an attribute name, `dn:TYPE` (values of the DN's `TYPE=` parts) or `groups:cn` (CNs of the groups) | none |
//! | `filter.ATTR` | only entries whose `ATTR` has this value (case-insensitive; `*` = present) | none |
//! | `deactivate.ATTR` | entries whose `ATTR` has this value are deactivated | none |
//! | `require-email` | skip entries without an email | `false` |
//! | `lowercase` | lower-case ABAC values | `false` |
//! | `lowercase-username` | lower-case the username | `false` |
//!
//! Unknown settings are refused, so a typo is caught when the plugin is assigned.

use abacsync_guest::guid::format_guid;
use abacsync_guest::prelude::*;

/// Where an ABAC attribute's values come from.
enum Source {
    Attribute(String),
    DnPart(String),
    GroupCn,
}

/// `ATTR` has `VALUE` (or, for `*`, is present).
struct Condition {
    attribute: String,
    value: String,
}

impl Condition {
    fn holds(&self, entry: &Entry) -> bool {
        if self.value == "*" {
            return entry.has(&self.attribute);
        }
        entry
            .values(&self.attribute)
            .iter()
            .any(|value| value.eq_ignore_ascii_case(&self.value))
    }
}

/// The mapping, as configured by one tenant's settings.
pub struct SettingsMap {
    username: String,
    ldap_id: String,
    email: String,
    display_name: String,
    language: Option<String>,
    abac: Vec<(String, Source)>,
    filters: Vec<Condition>,
    deactivate: Vec<Condition>,
    require_email: bool,
    lowercase: bool,
    lowercase_username: bool,
}

impl Mapping for SettingsMap {
    fn info() -> PluginInfo {
        PluginInfo::new("settings-map", env!("CARGO_PKG_VERSION"))
    }

    fn new(context: &MappingContext) -> Result<Self, MappingError> {
        let text = |key: &str, default: &str| context.setting(key).unwrap_or(default).to_owned();
        let mut map = SettingsMap {
            username: text("username", "uid"),
            ldap_id: text("ldap-id", "entryUUID"),
            email: text("email", "mail"),
            display_name: text("display-name", "displayName"),
            language: context.setting("language").map(str::to_owned),
            abac: Vec::new(),
            filters: Vec::new(),
            deactivate: Vec::new(),
            require_email: context.bool_setting("require-email", false)?,
            lowercase: context.bool_setting("lowercase", false)?,
            lowercase_username: context.bool_setting("lowercase-username", false)?,
        };
        for setting in &context.settings {
            let (key, value) = (setting.key.as_str(), setting.value.trim());
            if let Some(abac_key) = key.strip_prefix("abac.") {
                if abac_key.is_empty() || value.is_empty() {
                    return Err(MappingError::settings(format!(
                        "`{key}` needs an ABAC key and a source"
                    )));
                }
                let source = if let Some(rdn_type) = value.strip_prefix("dn:") {
                    Source::DnPart(rdn_type.to_owned())
                } else if value.eq_ignore_ascii_case("groups:cn") {
                    Source::GroupCn
                } else if value.contains(':') {
                    return Err(MappingError::settings(format!(
                        "`{key}`: unknown source `{value}` (an attribute, `dn:TYPE` or `groups:cn`)"
                    )));
                } else {
                    Source::Attribute(value.to_owned())
                };
                map.abac.push((abac_key.to_owned(), source));
            } else if let Some(attribute) = key.strip_prefix("filter.") {
                map.filters.push(condition(key, attribute, value)?);
            } else if let Some(attribute) = key.strip_prefix("deactivate.") {
                map.deactivate.push(condition(key, attribute, value)?);
            } else if !matches!(
                key,
                "username"
                    | "ldap-id"
                    | "email"
                    | "display-name"
                    | "language"
                    | "require-email"
                    | "lowercase"
                    | "lowercase-username"
            ) {
                return Err(MappingError::settings(format!("unknown setting `{key}`")));
            }
        }
        Ok(map)
    }

    fn required_attributes(&self) -> Vec<String> {
        let mut names = vec![
            self.username.clone(),
            self.ldap_id.clone(),
            self.email.clone(),
            self.display_name.clone(),
        ];
        names.extend(self.language.clone());
        for (_, source) in &self.abac {
            match source {
                Source::Attribute(name) => names.push(name.clone()),
                Source::GroupCn => names.push("memberOf".to_owned()),
                Source::DnPart(_) => {}
            }
        }
        names.extend(
            self.filters
                .iter()
                .chain(&self.deactivate)
                .map(|c| c.attribute.clone()),
        );
        let mut seen = std::collections::HashSet::new();
        names.retain(|name| seen.insert(name.to_ascii_lowercase()));
        names
    }

    fn map(&self, entry: &Entry) -> Result<Decision, MappingError> {
        if let Some(failed) = self.filters.iter().find(|filter| !filter.holds(entry)) {
            return Ok(Decision::skip(format!(
                "filtered out: `{}` is not `{}`",
                failed.attribute, failed.value
            )));
        }
        let ldap_id = match entry.first(&self.ldap_id) {
            Some(text) => text.to_owned(),
            None => {
                let bytes = entry
                    .binary(&self.ldap_id)
                    .ok_or_else(|| MappingError::missing(&self.ldap_id))?;
                format_guid(bytes)
                    .unwrap_or_else(|| bytes.iter().map(|b| format!("{b:02x}")).collect())
            }
        };
        if let Some(rule) = self.deactivate.iter().find(|rule| rule.holds(entry)) {
            return Ok(Decision::deactivate(
                ldap_id,
                format!("`{}` is `{}`", rule.attribute, rule.value),
            ));
        }
        let email = entry.first(&self.email);
        if self.require_email && email.is_none() {
            return Ok(Decision::skip(format!("no `{}` attribute", self.email)));
        }
        let mut username = entry.require(&self.username)?.to_owned();
        if self.lowercase_username {
            username = username.to_lowercase();
        }
        let mut user = User::new(username, ldap_id);
        if let Some(email) = email {
            user = user.email(email);
        }
        if let Some(name) = entry.first(&self.display_name) {
            user = user.display_name(name);
        }
        if let Some(language) = self.language.as_deref().and_then(|attr| entry.first(attr)) {
            user = user.language(language);
        }
        for (key, source) in &self.abac {
            let values: Vec<String> = match source {
                Source::Attribute(name) => entry.values(name).to_vec(),
                Source::DnPart(rdn_type) => Dn::parse(&entry.dn)
                    .map_err(|err| MappingError::invalid("dn", err.to_string()))?
                    .values(rdn_type)
                    .map(str::to_owned)
                    .collect(),
                Source::GroupCn => entry
                    .group_dns()
                    .iter()
                    .filter_map(|dn| Dn::parse(dn).ok()?.first_value("cn").map(str::to_owned))
                    .collect(),
            };
            let values = values
                .into_iter()
                .map(|v| if self.lowercase { v.to_lowercase() } else { v });
            user.add_attribute(key.clone(), values);
        }
        Ok(Decision::Upsert(user))
    }
}

fn condition(key: &str, attribute: &str, value: &str) -> Result<Condition, MappingError> {
    if attribute.is_empty() || value.is_empty() {
        return Err(MappingError::settings(format!(
            "`{key}` needs an attribute and a value"
        )));
    }
    Ok(Condition {
        attribute: attribute.to_owned(),
        value: value.to_owned(),
    })
}

abacsync_guest::export_mapping!(SettingsMap);

#[cfg(test)]
mod tests {
    use super::*;
    use abacsync_guest::testing::{context, map_one, required_attributes};

    fn carol() -> Entry {
        Entry::new("uid=carol,ou=Sales,ou=people,dc=example,dc=org")
            .with("uid", ["Carol"])
            .with("entryUUID", ["id-carol"])
            .with("departmentNumber", ["EMEA-Sales"])
            .with("employeeType", ["staff"])
    }

    #[test]
    fn attribute_map_filters_and_lowercasing() {
        let ctx = context()
            .with_setting("abac.department", "departmentNumber")
            .with_setting("abac.unit", "dn:ou")
            .with_setting("filter.employeeType", "staff")
            .with_setting("lowercase", "true")
            .with_setting("lowercase-username", "yes");
        let Decision::Upsert(user) = map_one::<SettingsMap>(&ctx, carol()).unwrap() else {
            panic!("expected an upsert");
        };
        assert_eq!(user.username, "carol");
        assert_eq!(user.attribute_values("department"), ["emea-sales"]);
        assert_eq!(user.attribute_values("unit"), ["sales", "people"]);
        let ctx = context().with_setting("filter.employeeType", "contractor");
        assert_eq!(
            map_one::<SettingsMap>(&ctx, carol()).unwrap(),
            Decision::skip("filtered out: `employeeType` is not `contractor`")
        );
    }

    #[test]
    fn unknown_settings_are_refused_and_attributes_declared() {
        let typo = context()
            .with_setting("abac.dept", "departmentNumber")
            .with_setting("lowercse", "true");
        assert_eq!(
            required_attributes::<SettingsMap>(&typo),
            Err(MappingError::settings("unknown setting `lowercse`"))
        );
        let ctx = context()
            .with_setting("abac.dept", "departmentNumber")
            .with_setting("abac.g", "groups:cn");
        assert_eq!(
            required_attributes::<SettingsMap>(&ctx).unwrap(),
            [
                "uid",
                "entryUUID",
                "mail",
                "displayName",
                "departmentNumber",
                "memberOf"
            ]
        );
    }

    #[test]
    fn deactivation_rule() {
        let ctx = context().with_setting("deactivate.employeeType", "former");
        let former = Entry::new("uid=f,dc=x")
            .with("uid", ["f"])
            .with("entryUUID", ["id-f"])
            .with("employeeType", ["Former"]);
        assert!(matches!(
            map_one::<SettingsMap>(&ctx, former).unwrap(),
            Decision::Deactivate(_)
        ));
    }
}
