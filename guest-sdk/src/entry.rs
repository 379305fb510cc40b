//! Reading attributes from an [`Entry`], case-insensitively as LDAP names are.

use crate::{BinaryAttribute, Entry, MappingError, TextAttribute};

impl Entry {
    /// An entry with this DN and no attributes.
    pub fn new(dn: impl Into<String>) -> Self {
        Self {
            dn: dn.into(),
            attributes: Vec::new(),
            binary_attributes: Vec::new(),
            groups: None,
        }
    }

    /// The text attribute `name`, matched case-insensitively.
    pub fn text_attribute(&self, name: &str) -> Option<&TextAttribute> {
        self.attributes
            .iter()
            .find(|attr| attr.name.eq_ignore_ascii_case(name))
    }

    /// The binary attribute `name`, matched case-insensitively.
    pub fn binary_attribute(&self, name: &str) -> Option<&BinaryAttribute> {
        self.binary_attributes
            .iter()
            .find(|attr| attr.name.eq_ignore_ascii_case(name))
    }

    /// The first value of text attribute `name`, if it has a non-empty one.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.values(name)
            .first()
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// All values of text attribute `name`; empty when absent.
    pub fn values(&self, name: &str) -> &[String] {
        self.text_attribute(name)
            .map_or(&[], |attr| attr.values.as_slice())
    }

    /// Whether the entry has text or binary attribute `name`.
    pub fn has(&self, name: &str) -> bool {
        self.text_attribute(name).is_some() || self.binary_attribute(name).is_some()
    }

    /// The first value of `name`, or a [`MappingError::MissingAttribute`] naming it.
    pub fn require(&self, name: &str) -> Result<&str, MappingError> {
        self.first(name).ok_or_else(|| MappingError::missing(name))
    }

    /// The first value of binary attribute `name`.
    pub fn binary(&self, name: &str) -> Option<&[u8]> {
        self.binary_values(name).first().map(Vec::as_slice)
    }

    /// All values of binary attribute `name`; empty when absent.
    pub fn binary_values(&self, name: &str) -> &[Vec<u8>] {
        self.binary_attribute(name)
            .map_or(&[], |attr| attr.values.as_slice())
    }

    /// The DNs of the entry's groups: [`Entry::groups`] when the host resolved them,
    /// otherwise the entry's own `memberOf` values.
    pub fn group_dns(&self) -> &[String] {
        match &self.groups {
            Some(groups) => groups,
            None => self.values("memberOf"),
        }
    }

    /// Add text values (builder style, for tests and fixtures).
    pub fn with<I, S>(mut self, name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.attributes.push(TextAttribute {
            name: name.into(),
            values: values.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Add binary values (builder style, for tests and fixtures).
    pub fn with_binary<I>(mut self, name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        self.binary_attributes.push(BinaryAttribute {
            name: name.into(),
            values: values.into_iter().collect(),
        });
        self
    }

    /// Set the resolved group DNs (builder style, for tests and fixtures).
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = Some(groups.into_iter().map(Into::into).collect());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_case_insensitively() {
        let entry = Entry::new("uid=a,dc=x")
            .with("Mail", ["a@x"])
            .with("cn", [""]);
        assert_eq!(entry.first("mail"), Some("a@x"));
        assert_eq!(entry.first("MAIL"), Some("a@x"));
        assert_eq!(entry.first("cn"), None, "empty values are not values");
        assert_eq!(entry.require("sn"), Err(MappingError::missing("sn")));
    }

    #[test]
    fn group_dns_fall_back_to_member_of() {
        let entry = Entry::new("uid=a").with("memberOf", ["cn=g,dc=x"]);
        assert_eq!(entry.group_dns(), ["cn=g,dc=x"]);
        let resolved = entry.with_groups(["cn=h,dc=x"]);
        assert_eq!(resolved.group_dns(), ["cn=h,dc=x"]);
    }
}
