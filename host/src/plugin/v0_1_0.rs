//! Contract `abacsync:mapping@0.1.0`: bindings generated from `wit/v0.1.0` and the
//! conversions between them and the host's model. A later contract version gets a
//! module of its own beside this one, and this one stays.

use super::model::{
    self, Decision, Entry, LogLevel, MappingContext, MappingError, MappingErrorKind,
};
use super::output;
use super::state::StoreState;

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
        self.guest_log(level, message)
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
        match error {
            types::MappingError::MissingAttribute(name) => Self::missing_attribute(name),
            types::MappingError::InvalidAttribute(attr) => {
                Self::invalid_attribute(attr.name, &attr.reason)
            }
            types::MappingError::InvalidSettings(reason) => {
                Self::reported(MappingErrorKind::InvalidSettings, reason)
            }
            types::MappingError::Other(reason) => Self::reported(MappingErrorKind::Other, reason),
        }
    }
}

/// Validate and normalise a decision.
pub(crate) fn decision_from_guest(
    result: Result<types::Decision, types::MappingError>,
) -> Result<Decision, MappingError> {
    match result.map_err(MappingError::from)? {
        types::Decision::Skip(reason) => Ok(Decision::Skip { reason }),
        types::Decision::Deactivate(deactivation) => {
            output::deactivation(deactivation.ldap_id, deactivation.reason)
        }
        types::Decision::Upsert(user) => output::user(output::GuestUser {
            username: user.username,
            email: user.email,
            display_name: user.display_name,
            language: user.language,
            active: user.active,
            ldap_id: user.ldap_id,
            attributes: user
                .attributes
                .into_iter()
                .map(|attr| (attr.key, attr.values))
                .collect(),
        })
        .map(Decision::Upsert),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_each_decision() {
        let user = types::User {
            username: "alice".into(),
            email: None,
            display_name: Some("Alice".into()),
            language: None,
            active: false,
            ldap_id: "id-1".into(),
            attributes: vec![types::AbacAttribute {
                key: "dept".into(),
                values: vec!["b".into(), "a".into()],
            }],
        };
        let Ok(Decision::Upsert(user)) = decision_from_guest(Ok(types::Decision::Upsert(user)))
        else {
            panic!("expected an upsert");
        };
        assert!(!user.active);
        assert_eq!(user.display_name.as_deref(), Some("Alice"));
        assert_eq!(user.attributes["dept"].len(), 2);
        let missing = decision_from_guest(Err(types::MappingError::MissingAttribute("uid".into())));
        assert_eq!(missing.unwrap_err().attribute.as_deref(), Some("uid"));
    }
}
