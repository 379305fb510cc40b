//! Contract `abacsync:mapping@0.1.0`: bindings generated from `wit/v0.1.0` and the
//! conversions between them and the host's model. A later contract version gets a
//! module of its own beside this one, and this one stays.

use super::model::{
    self, AbacAttributes, Decision, Entry, GuestLog, LogLevel, MappedUser, MappingContext,
    MappingError, MappingErrorKind,
};
use super::state::{LogBudgetExceeded, StoreState};

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "mapping-plugin",
    imports: { "abacsync:mapping/host.log": trappable },
});

use self::abacsync::mapping::{host, types};

impl types::Host for StoreState {}

impl host::Host for StoreState {
    fn log(&mut self, level: host::LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            host::LogLevel::Trace => LogLevel::Trace,
            host::LogLevel::Debug => LogLevel::Debug,
            host::LogLevel::Info => LogLevel::Info,
            host::LogLevel::Warn => LogLevel::Warn,
            host::LogLevel::Error => LogLevel::Error,
        };
        self.log_bytes += message.len();
        if self.log_bytes > self.log_budget {
            return Err(wasmtime::Error::new(LogBudgetExceeded {
                limit: self.log_budget,
            }));
        }
        self.logs.push(GuestLog { level, message });
        Ok(())
    }
}

/// Adds the contract's imports to `linker`.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<StoreState>,
) -> wasmtime::Result<()> {
    MappingPlugin::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(
        linker,
        |state| state,
    )
}

impl From<&MappingContext> for types::MappingContext {
    fn from(context: &MappingContext) -> Self {
        Self {
            tenant_id: context.tenant_id,
            mode: match context.mode {
                model::SyncMode::Full => types::SyncMode::Full,
                model::SyncMode::Incremental => types::SyncMode::Incremental,
                model::SyncMode::Targeted => types::SyncMode::Targeted,
            },
            settings: context
                .settings
                .iter()
                .map(|(key, value)| types::Setting {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        }
    }
}

impl From<Entry> for types::Entry {
    fn from(entry: Entry) -> Self {
        Self {
            dn: entry.dn,
            attributes: entry
                .attributes
                .into_iter()
                .map(|(name, values)| types::TextAttribute { name, values })
                .collect(),
            binary_attributes: entry
                .binary_attributes
                .into_iter()
                .map(|(name, values)| types::BinaryAttribute { name, values })
                .collect(),
            groups: entry.groups,
        }
    }
}

impl From<types::PluginInfo> for model::PluginInfo {
    fn from(info: types::PluginInfo) -> Self {
        Self {
            name: info.name,
            version: info.version,
        }
    }
}

impl From<types::MappingError> for MappingError {
    fn from(error: types::MappingError) -> Self {
        let (kind, attribute, message) = match error {
            types::MappingError::MissingAttribute(name) => (
                MappingErrorKind::MissingAttribute,
                Some(name.clone()),
                format!("missing attribute `{name}`"),
            ),
            types::MappingError::InvalidAttribute(attr) => (
                MappingErrorKind::InvalidAttribute,
                Some(attr.name.clone()),
                format!("invalid attribute `{}`: {}", attr.name, attr.reason),
            ),
            types::MappingError::InvalidSettings(reason) => {
                (MappingErrorKind::InvalidSettings, None, reason)
            }
            types::MappingError::Other(reason) => (MappingErrorKind::Other, None, reason),
        };
        Self {
            kind,
            attribute,
            message,
        }
    }
}

/// Limits on one decision, so that one entry cannot carry a whole directory.
const MAX_NAME_BYTES: usize = 1024;
const MAX_VALUE_BYTES: usize = 64 * 1024;
const MAX_ATTRIBUTE_KEYS: usize = 1000;
const MAX_VALUES_PER_KEY: usize = 10_000;

/// Validate and normalise a decision. (The bytes lifted from the guest are bounded
/// by the store's hostcall fuel, see `Plugin::call`.)
pub(crate) fn decision_from_guest(
    result: Result<types::Decision, types::MappingError>,
) -> Result<Decision, MappingError> {
    match result.map_err(MappingError::from)? {
        types::Decision::Skip(reason) => Ok(Decision::Skip { reason }),
        types::Decision::Deactivate(deactivation) => {
            check_text("ldap-id", &deactivation.ldap_id, MAX_NAME_BYTES)?;
            Ok(Decision::Deactivate {
                ldap_id: deactivation.ldap_id,
                reason: deactivation.reason,
            })
        }
        types::Decision::Upsert(user) => user_from_guest(user).map(Decision::Upsert),
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), MappingError> {
    if value.trim().is_empty() {
        return Err(MappingError::invalid_output(format!("`{field}` is empty")));
    }
    if value.len() > max {
        return Err(MappingError::invalid_output(format!(
            "`{field}` is {} bytes long, more than {max}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(MappingError::invalid_output(format!(
            "`{field}` contains control characters"
        )));
    }
    Ok(())
}

fn optional_text(field: &str, value: Option<String>) -> Result<Option<String>, MappingError> {
    match value {
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => check_text(field, &text, MAX_VALUE_BYTES).map(|()| Some(text)),
        None => Ok(None),
    }
}

fn user_from_guest(user: types::User) -> Result<MappedUser, MappingError> {
    check_text("username", &user.username, MAX_NAME_BYTES)?;
    check_text("ldap-id", &user.ldap_id, MAX_NAME_BYTES)?;
    if user.attributes.len() > MAX_ATTRIBUTE_KEYS {
        return Err(MappingError::invalid_output(format!(
            "{} ABAC attributes, more than {MAX_ATTRIBUTE_KEYS}",
            user.attributes.len()
        )));
    }
    let mut attributes = AbacAttributes::new();
    for attr in user.attributes {
        check_text("ABAC attribute key", &attr.key, MAX_NAME_BYTES)?;
        let values = attributes.entry(attr.key.clone()).or_default();
        for value in attr.values {
            if value.is_empty() {
                return Err(MappingError::invalid_output(format!(
                    "ABAC attribute `{}` has an empty value",
                    attr.key
                )));
            }
            if value.len() > MAX_VALUE_BYTES {
                return Err(MappingError::invalid_output(format!(
                    "a value of ABAC attribute `{}` is {} bytes long, more than {MAX_VALUE_BYTES}",
                    attr.key,
                    value.len()
                )));
            }
            values.insert(value);
        }
        if values.len() > MAX_VALUES_PER_KEY {
            return Err(MappingError::invalid_output(format!(
                "ABAC attribute `{}` has more than {MAX_VALUES_PER_KEY} values",
                attr.key
            )));
        }
    }
    // A key whose values all turned out empty is not an attribute.
    attributes.retain(|_, values| !values.is_empty());
    Ok(MappedUser {
        email: optional_text("email", user.email)?,
        display_name: optional_text("display-name", user.display_name)?,
        language: optional_text("language", user.language)?,
        username: user.username,
        active: user.active,
        ldap_id: user.ldap_id,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> types::User {
        types::User {
            username: "alice".into(),
            email: Some(String::new()),
            display_name: None,
            language: None,
            active: true,
            ldap_id: "id-1".into(),
            attributes: vec![
                types::AbacAttribute {
                    key: "dept".into(),
                    values: vec!["b".into(), "a".into(), "b".into()],
                },
                types::AbacAttribute {
                    key: "dept".into(),
                    values: vec!["c".into()],
                },
            ],
        }
    }

    #[test]
    fn merges_keys_into_sets_and_drops_empty_optionals() {
        let decision = decision_from_guest(Ok(types::Decision::Upsert(user())));
        let Ok(Decision::Upsert(user)) = decision else {
            panic!("expected an upsert, got {decision:?}");
        };
        assert_eq!(user.email, None);
        let values: Vec<_> = user.attributes["dept"].iter().cloned().collect();
        assert_eq!(values, ["a", "b", "c"]);
    }

    #[test]
    fn refuses_empty_usernames_and_values() {
        let mut bad = user();
        bad.username = " ".into();
        let decision = decision_from_guest(Ok(types::Decision::Upsert(bad)));
        assert_eq!(decision.unwrap_err().message, "`username` is empty");
        let mut bad = user();
        bad.attributes[0].values.push(String::new());
        let decision = decision_from_guest(Ok(types::Decision::Upsert(bad)));
        assert_eq!(decision.unwrap_err().kind, MappingErrorKind::InvalidOutput);
    }
}
