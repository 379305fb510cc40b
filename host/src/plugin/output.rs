//! Validation of what a plugin returns, whatever the contract version: every
//! decision is checked and normalised here before the host uses it.

use super::model::{AbacAttributes, Decision, MappedUser, MappingError};

/// Limits on one decision, so that one entry cannot carry a whole directory. (The
/// bytes lifted from the guest per call are bounded by the store's hostcall fuel, see
/// `Plugin::call`.)
const MAX_NAME_BYTES: usize = 1024;
const MAX_VALUE_BYTES: usize = 64 * 1024;
const MAX_ATTRIBUTE_KEYS: usize = 1000;
const MAX_VALUES_PER_KEY: usize = 10_000;

/// A user as a plugin returned it, before validation.
pub(crate) struct GuestUser {
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub language: Option<String>,
    pub active: bool,
    pub ldap_id: String,
    /// ABAC key → values, as given: keys may repeat, values may repeat or be unordered.
    pub attributes: Vec<(String, Vec<String>)>,
}

/// A deactivation, checked.
pub(crate) fn deactivation(ldap_id: String, reason: String) -> Result<Decision, MappingError> {
    check_text("ldap-id", &ldap_id, MAX_NAME_BYTES)?;
    Ok(Decision::Deactivate { ldap_id, reason })
}

/// An upsert, checked and normalised: empty optional fields are `None`, ABAC values
/// are sets, keys given twice are merged, and keys left without values are dropped.
pub(crate) fn user(user: GuestUser) -> Result<MappedUser, MappingError> {
    check_text("username", &user.username, MAX_NAME_BYTES)?;
    check_text("ldap-id", &user.ldap_id, MAX_NAME_BYTES)?;
    if user.attributes.len() > MAX_ATTRIBUTE_KEYS {
        return Err(MappingError::invalid_output(format!(
            "{} ABAC attributes, more than {MAX_ATTRIBUTE_KEYS}",
            user.attributes.len()
        )));
    }
    let mut attributes = AbacAttributes::new();
    for (key, given) in user.attributes {
        check_text("ABAC attribute key", &key, MAX_NAME_BYTES)?;
        let values = attributes.entry(key.clone()).or_default();
        for value in given {
            if value.is_empty() {
                return Err(MappingError::invalid_output(format!(
                    "ABAC attribute `{key}` has an empty value"
                )));
            }
            if value.len() > MAX_VALUE_BYTES {
                return Err(MappingError::invalid_output(format!(
                    "a value of ABAC attribute `{key}` is {} bytes long, more than {MAX_VALUE_BYTES}",
                    value.len()
                )));
            }
            values.insert(value);
        }
        if values.len() > MAX_VALUES_PER_KEY {
            return Err(MappingError::invalid_output(format!(
                "ABAC attribute `{key}` has more than {MAX_VALUES_PER_KEY} values"
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
    // Most values are ASCII: their bytes are checked without decoding characters.
    let control = if value.is_ascii() {
        value.bytes().any(|byte| byte.is_ascii_control())
    } else {
        value.chars().any(char::is_control)
    };
    if control {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::model::MappingErrorKind;

    fn guest() -> GuestUser {
        GuestUser {
            username: "alice".into(),
            email: Some(String::new()),
            display_name: None,
            language: None,
            active: true,
            ldap_id: "id-1".into(),
            attributes: vec![
                ("dept".into(), vec!["b".into(), "a".into(), "b".into()]),
                ("dept".into(), vec!["c".into()]),
            ],
        }
    }

    #[test]
    fn merges_keys_into_sets_and_drops_empty_optionals() {
        let user = user(guest()).expect("valid");
        assert_eq!(user.email, None);
        let values: Vec<_> = user.attributes["dept"].iter().cloned().collect();
        assert_eq!(values, ["a", "b", "c"]);
    }

    #[test]
    fn refuses_empty_usernames_and_values() {
        let mut bad = guest();
        bad.username = " ".into();
        assert_eq!(user(bad).unwrap_err().message, "`username` is empty");
        let mut bad = guest();
        bad.attributes[0].1.push(String::new());
        assert_eq!(user(bad).unwrap_err().kind, MappingErrorKind::InvalidOutput);
        let err = deactivation("a\nb".into(), "gone".into()).unwrap_err();
        assert_eq!(err.message, "`ldap-id` contains control characters");
    }
}
