//! The values a mapping reads and returns, and constructors so that a mapping reads
//! as what it does.
//!
//! Entries and decisions are the SDK's own types: contract 0.3.0 carries them as
//! columns (see [`crate::columns`]). The context, errors and plugin info are the WIT types.

use crate::{InvalidAttribute, MappingContext, MappingError, PluginInfo, Setting, SyncMode};

/// A text attribute of an LDAP entry: its name and values, in the directory's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextAttribute {
    /// The name, spelled as the plugin declared it in
    /// [`Mapping::required_attributes`](crate::Mapping::required_attributes) (match
    /// names case-insensitively anyway, as [`Entry`]'s methods do).
    pub name: String,
    /// The values.
    pub values: Vec<String>,
}

/// A binary attribute (`objectGUID`, `jpegPhoto`, any value that is not UTF-8): the raw
/// bytes of each value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryAttribute {
    /// The name.
    pub name: String,
    /// The values.
    pub values: Vec<Vec<u8>>,
}

/// One directory object, as the host read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The distinguished name, e.g. `uid=alice,ou=people,dc=example,dc=org`.
    pub dn: String,
    /// Text attributes: only those the plugin asked for (plus the tenant's
    /// unique-identifier attributes); an attribute the entry lacks is absent.
    pub attributes: Vec<TextAttribute>,
    /// Binary attributes.
    pub binary_attributes: Vec<BinaryAttribute>,
    /// The DNs of the entry's groups, nested groups resolved, when the host knows them;
    /// `None` when it does not, which differs from `Some(vec![])` (no group).
    pub groups: Option<Vec<String>>,
}

/// One ABAC attribute of a user: a key and its values (a set: order and duplicates do
/// not matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbacAttribute {
    /// The key. Non-empty.
    pub key: String,
    /// The values. Non-empty strings.
    pub values: Vec<String>,
}

/// The user an entry becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name, unique within the tenant. Non-empty.
    pub username: String,
    /// The email address.
    pub email: Option<String>,
    /// The display name.
    pub display_name: Option<String>,
    /// A language tag (`en`, `de-AT`); `None` leaves the tenant's default.
    pub language: Option<String>,
    /// `false` keeps the user and its attributes but disables it.
    pub active: bool,
    /// The entry's stable identifier (`entryUUID`, or `objectGUID` as text), which
    /// survives renames and moves. Non-empty.
    pub ldap_id: String,
    /// The user's ABAC attributes: after the sync the user has exactly these.
    pub attributes: Vec<AbacAttribute>,
}

/// Deactivate the user with this identifier, if the host knows one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deactivation {
    /// The same identifier [`User::ldap_id`] would carry for this entry.
    pub ldap_id: String,
    /// Why, for the audit trail (`account disabled in Active Directory`).
    pub reason: String,
}

/// What the host should do with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The entry does not become a user; the string says why.
    Skip(String),
    /// Create the user, or update it to exactly this state.
    Upsert(User),
    /// The entry is a user who must not be able to log in any more.
    Deactivate(Deactivation),
}

/// Turn a list of attribute names into the `Vec<String>` that
/// [`Mapping::required_attributes`](crate::Mapping::required_attributes) returns.
pub fn attributes(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

impl PluginInfo {
    /// A plugin called `name` at `version`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
        }
    }
}

impl User {
    /// An active user with no email, display name, language or attributes yet.
    pub fn new(username: impl Into<String>, ldap_id: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            email: None,
            display_name: None,
            language: None,
            active: true,
            ldap_id: ldap_id.into(),
            attributes: Vec::new(),
        }
    }

    /// Set the email address.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Set the display name.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Set the language tag (`en`, `de-AT`).
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Set whether the user may log in.
    pub fn active(mut self, active: bool) -> Self {
        self.active = active;
        self
    }

    /// Add values to the ABAC attribute `key`. Empty values are dropped, and an
    /// attribute left with no values is not added at all, so an absent LDAP attribute
    /// simply yields no ABAC attribute.
    pub fn attribute<I, S>(mut self, key: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.add_attribute(key, values);
        self
    }

    /// Like [`User::attribute`], through a mutable reference.
    pub fn add_attribute<I, S>(&mut self, key: impl Into<String>, values: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let key = key.into();
        let values: Vec<String> = values
            .into_iter()
            .map(|value| value.as_ref().to_owned())
            .filter(|value| !value.is_empty())
            .collect();
        if values.is_empty() {
            return;
        }
        match self.attributes.iter_mut().find(|attr| attr.key == key) {
            Some(existing) => existing.values.extend(values),
            None => self.attributes.push(AbacAttribute { key, values }),
        }
    }

    /// The values of ABAC attribute `key`, empty when absent.
    pub fn attribute_values(&self, key: &str) -> &[String] {
        self.attributes
            .iter()
            .find(|attr| attr.key == key)
            .map_or(&[], |attr| attr.values.as_slice())
    }
}

impl Decision {
    /// Skip the entry, saying why.
    pub fn skip(reason: impl Into<String>) -> Self {
        Decision::Skip(reason.into())
    }

    /// Deactivate the user with `ldap_id`, saying why.
    pub fn deactivate(ldap_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Decision::Deactivate(Deactivation {
            ldap_id: ldap_id.into(),
            reason: reason.into(),
        })
    }
}

impl MappingError {
    /// The entry lacks attribute `name`.
    pub fn missing(name: impl Into<String>) -> Self {
        MappingError::MissingAttribute(name.into())
    }

    /// Attribute `name` has a value the mapping cannot use.
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        MappingError::InvalidAttribute(InvalidAttribute {
            name: name.into(),
            reason: reason.into(),
        })
    }

    /// The tenant's settings are wrong for this plugin.
    pub fn settings(reason: impl Into<String>) -> Self {
        MappingError::InvalidSettings(reason.into())
    }

    /// A sentence for an administrator (`Display` shows the debug form).
    pub fn describe(&self) -> String {
        match self {
            MappingError::MissingAttribute(name) => format!("missing attribute `{name}`"),
            MappingError::InvalidAttribute(attr) => {
                format!("invalid attribute `{}`: {}", attr.name, attr.reason)
            }
            MappingError::InvalidSettings(reason) => format!("invalid settings: {reason}"),
            MappingError::Other(reason) => reason.clone(),
        }
    }
}

impl MappingContext {
    /// A context for `tenant_id` and `mode` with no settings.
    pub fn new(tenant_id: u64, mode: SyncMode) -> Self {
        Self {
            tenant_id,
            mode,
            settings: Vec::new(),
        }
    }

    /// Add a setting.
    pub fn with_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push(Setting {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// The value of setting `key` (the last one, if it was given twice).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|setting| setting.key == key)
            .map(|setting| setting.value.as_str())
    }

    /// Setting `key` as a boolean (`true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`),
    /// `default` when absent, an [`MappingError::InvalidSettings`] otherwise.
    pub fn bool_setting(&self, key: &str, default: bool) -> Result<bool, MappingError> {
        match self.setting(key).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "yes" | "on" | "1") => Ok(true),
            Some("false" | "no" | "off" | "0") => Ok(false),
            Some(other) => Err(MappingError::settings(format!(
                "`{key}` must be true or false, not `{other}`"
            ))),
        }
    }

    /// Every setting whose key starts with `prefix`, with the prefix removed, in order.
    pub fn settings_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.settings.iter().filter_map(move |setting| {
            setting
                .key
                .strip_prefix(prefix)
                .map(|rest| (rest, setting.value.as_str()))
        })
    }
}
