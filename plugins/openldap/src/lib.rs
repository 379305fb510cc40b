//! OpenLDAP `inetOrgPerson` entries to abacsync users.
//!
//! - Entries without `mail` are skipped.
//! - `uid` is the username and `entryUUID` the stable id; both are required.
//! - `displayName` (or `cn`) and `preferredLanguage` fill the profile.
//! - ABAC attributes: `department` from `departmentNumber`, `employeeType` from
//!   `employeeType`, `location` from `l`, `unit` from `ou` (or, when the entry has no
//!   `ou`, from the `ou=` parts of its DN).
//! - An account locked by the password policy overlay (`pwdAccountLockedTime`)
//!   stays a user but is inactive.

use abacsync_guest::prelude::*;

/// The mapping; it has no settings.
pub struct OpenLdap;

impl Mapping for OpenLdap {
    fn info() -> PluginInfo {
        PluginInfo::new("openldap-inetorgperson", env!("CARGO_PKG_VERSION"))
    }

    fn new(_context: &MappingContext) -> Result<Self, MappingError> {
        Ok(OpenLdap)
    }

    fn required_attributes(&self) -> Vec<String> {
        attributes(&[
            "uid",
            "mail",
            "cn",
            "displayName",
            "preferredLanguage",
            "entryUUID",
            "departmentNumber",
            "employeeType",
            "l",
            "ou",
            "pwdAccountLockedTime",
        ])
    }

    fn map(&self, entry: &Entry) -> Result<Decision, MappingError> {
        let Some(mail) = entry.first("mail") else {
            return Ok(Decision::skip("no mail attribute"));
        };
        let mut user = User::new(entry.require("uid")?, entry.require("entryUUID")?)
            .email(mail)
            .active(!entry.has("pwdAccountLockedTime"))
            .attribute("department", entry.values("departmentNumber"))
            .attribute("employeeType", entry.values("employeeType"))
            .attribute("location", entry.values("l"));
        if let Some(name) = entry.first("displayName").or_else(|| entry.first("cn")) {
            user = user.display_name(name);
        }
        if let Some(language) = entry.first("preferredLanguage") {
            user = user.language(language);
        }
        if entry.has("ou") {
            user.add_attribute("unit", entry.values("ou"));
        } else {
            let dn =
                Dn::parse(&entry.dn).map_err(|err| MappingError::invalid("dn", err.to_string()))?;
            user.add_attribute("unit", dn.values("ou"));
        }
        Ok(Decision::Upsert(user))
    }
}

abacsync_guest::export_mapping!(OpenLdap);

#[cfg(test)]
mod tests {
    use super::*;
    use abacsync_guest::testing::{context, map_one};

    fn alice() -> Entry {
        Entry::new("uid=alice,ou=Engineering,ou=people,dc=example,dc=org")
            .with("uid", ["alice"])
            .with("mail", ["alice@example.org"])
            .with("cn", ["Alice Liddell"])
            .with("entryUUID", ["0b9a3c6e-6a55-4d7c-9d0e-1f1d5a1e9a01"])
            .with("departmentNumber", ["4711", "4712"])
            .with("l", ["Berlin"])
    }

    #[test]
    fn maps_profile_and_abac_attributes() {
        let Decision::Upsert(user) = map_one::<OpenLdap>(&context(), alice()).unwrap() else {
            panic!("expected an upsert");
        };
        assert_eq!(user.username, "alice");
        assert_eq!(user.display_name.as_deref(), Some("Alice Liddell"));
        assert!(user.active);
        assert_eq!(user.attribute_values("department"), ["4711", "4712"]);
        assert_eq!(user.attribute_values("location"), ["Berlin"]);
        assert_eq!(user.attribute_values("unit"), ["Engineering", "people"]);
        assert!(user.attribute_values("employeeType").is_empty());
    }

    #[test]
    fn skips_entries_without_mail() {
        let entry = Entry::new("uid=svc,dc=example,dc=org").with("uid", ["svc"]);
        assert_eq!(
            map_one::<OpenLdap>(&context(), entry).unwrap(),
            Decision::skip("no mail attribute")
        );
    }

    #[test]
    fn locked_accounts_are_inactive_and_missing_ids_are_errors() {
        let locked = alice().with("pwdAccountLockedTime", ["20260101000000Z"]);
        let Decision::Upsert(user) = map_one::<OpenLdap>(&context(), locked).unwrap() else {
            panic!("expected an upsert");
        };
        assert!(!user.active);
        let no_uid = Entry::new("cn=x").with("mail", ["x@example.org"]);
        assert_eq!(
            map_one::<OpenLdap>(&context(), no_uid),
            Err(MappingError::missing("uid"))
        );
    }
}
