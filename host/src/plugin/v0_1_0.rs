//! Contract `abacsync:mapping@0.1.0`: bindings generated from `wit/v0.1.0` and the
//! conversions between them and the host's model. A later contract version gets a
//! module of its own beside this one, and this one stays.

use super::model::{Decision, Entry, MappingError};
use super::output;

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "mapping-plugin",
    imports: { "abacsync:mapping/host.log": trappable },
});

use self::abacsync::mapping::{host, types};

super::contract_glue!();

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
