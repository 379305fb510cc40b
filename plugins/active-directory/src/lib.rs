//! Active Directory users to abacsync users.
//!
//! - `sAMAccountName` is the username (`userPrincipalName`'s local part when absent),
//!   `mail` (or the UPN) the email, `displayName` the display name.
//! - `objectGUID`, formatted as AD tools show it, is the stable id: it survives
//!   renames and moves between OUs.
//! - Computer and trust accounts are skipped; a disabled account (bit `0x2` of
//!   `userAccountControl`) is deactivated.
//! - ABAC attributes: `groups` from the CNs of the user's groups (nested groups when
//!   the host resolved them, `memberOf` otherwise), `department`, `company`, `title`.
//! - Not read: `accountExpires` and `lockoutTime`. Whether an account has expired or
//!   is locked out depends on the time of the sync, and the contract gives a mapping no
//!   clock (the same entry always maps the same way), so an expired or locked-out
//!   account stays active here; AD refuses its logins all the same. To deactivate
//!   expired accounts, disable them in AD (bit `0x2` of `userAccountControl`), which this
//!   mapping follows.

use abacsync_guest::guid::format_guid;
use abacsync_guest::prelude::*;

/// `userAccountControl` bits this mapping reads.
const ACCOUNTDISABLE: u32 = 0x2;
const WORKSTATION_TRUST_ACCOUNT: u32 = 0x1000;
const SERVER_TRUST_ACCOUNT: u32 = 0x2000;
const INTERDOMAIN_TRUST_ACCOUNT: u32 = 0x800;

/// The mapping; it has no settings.
pub struct ActiveDirectory;

impl Mapping for ActiveDirectory {
    fn info() -> PluginInfo {
        PluginInfo::new("active-directory", env!("CARGO_PKG_VERSION"))
    }

    fn new(_context: &MappingContext) -> Result<Self, MappingError> {
        Ok(ActiveDirectory)
    }

    fn required_attributes(&self) -> Vec<String> {
        attributes(&[
            "sAMAccountName",
            "userPrincipalName",
            "mail",
            "displayName",
            "objectGUID",
            "userAccountControl",
            "memberOf",
            "department",
            "company",
            "title",
            "preferredLanguage",
        ])
    }

    fn map(&self, entry: &Entry) -> Result<Decision, MappingError> {
        let control = match entry.first("userAccountControl") {
            Some(text) => text.trim().parse::<u32>().map_err(|_| {
                MappingError::invalid("userAccountControl", format!("`{text}` is not a number"))
            })?,
            None => 0,
        };
        if control & (WORKSTATION_TRUST_ACCOUNT | SERVER_TRUST_ACCOUNT | INTERDOMAIN_TRUST_ACCOUNT)
            != 0
        {
            return Ok(Decision::skip("computer or trust account"));
        }
        let guid = entry
            .binary("objectGUID")
            .ok_or_else(|| MappingError::missing("objectGUID"))?;
        let ldap_id = format_guid(guid).ok_or_else(|| {
            MappingError::invalid("objectGUID", format!("{} bytes long, not 16", guid.len()))
        })?;
        if control & ACCOUNTDISABLE != 0 {
            return Ok(Decision::deactivate(
                ldap_id,
                format!("account disabled in Active Directory (userAccountControl {control})"),
            ));
        }
        let upn = entry.first("userPrincipalName");
        let username = entry
            .first("sAMAccountName")
            .or_else(|| upn.and_then(|upn| upn.split('@').next()))
            .filter(|name| !name.is_empty())
            .ok_or_else(|| MappingError::missing("sAMAccountName"))?;
        let groups: Vec<String> = entry
            .group_dns()
            .iter()
            .filter_map(|dn| Dn::parse(dn).ok()?.first_value("cn").map(str::to_owned))
            .collect();
        let mut user = User::new(username, ldap_id)
            .attribute("groups", groups)
            .attribute("department", entry.values("department"))
            .attribute("company", entry.values("company"))
            .attribute("title", entry.values("title"));
        if let Some(email) = entry.first("mail").or(upn) {
            user = user.email(email);
        }
        if let Some(name) = entry.first("displayName") {
            user = user.display_name(name);
        }
        if let Some(language) = entry.first("preferredLanguage") {
            user = user.language(language);
        }
        Ok(Decision::Upsert(user))
    }
}

abacsync_guest::export_mapping!(ActiveDirectory);

#[cfg(test)]
mod tests {
    use super::*;
    use abacsync_guest::testing::{context, map_one};

    const GUID: [u8; 16] = [
        0xe0, 0x04, 0x25, 0x3f, 0x89, 0x4f, 0xd3, 0x11, 0x9a, 0x0c, 0x03, 0x05, 0xe8, 0x2c, 0x33,
        0x01,
    ];

    fn jdoe(control: &str) -> Entry {
        Entry::new("CN=John Doe,OU=Staff,DC=corp,DC=example")
            .with("sAMAccountName", ["jdoe"])
            .with("userPrincipalName", ["jdoe@corp.example"])
            .with("userAccountControl", [control])
            .with(
                "memberOf",
                [
                    "CN=VPN Users,OU=Groups,DC=corp,DC=example",
                    "CN=Sales\\, EMEA,OU=Groups,DC=corp,DC=example",
                ],
            )
            .with_binary("objectGUID", [GUID.to_vec()])
    }

    #[test]
    fn maps_guid_groups_and_upn_email() {
        let Decision::Upsert(user) = map_one::<ActiveDirectory>(&context(), jdoe("512")).unwrap()
        else {
            panic!("expected an upsert");
        };
        assert_eq!(user.ldap_id, "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        assert_eq!(user.email.as_deref(), Some("jdoe@corp.example"));
        assert_eq!(
            user.attribute_values("groups"),
            ["VPN Users", "Sales, EMEA"]
        );
    }

    #[test]
    fn disabled_accounts_are_deactivated_and_computers_skipped() {
        assert!(matches!(
            map_one::<ActiveDirectory>(&context(), jdoe("514")).unwrap(),
            Decision::Deactivate(d) if d.ldap_id == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        ));
        assert_eq!(
            map_one::<ActiveDirectory>(&context(), jdoe("4096")).unwrap(),
            Decision::skip("computer or trust account")
        );
        assert_eq!(
            map_one::<ActiveDirectory>(&context(), jdoe("many")),
            Err(MappingError::invalid(
                "userAccountControl",
                "`many` is not a number"
            ))
        );
    }
}
