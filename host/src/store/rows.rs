//! What every backend writes alike: the events of an audit trail, and what an update
//! changes of a stored user (the plan a backend then writes in its own SQL).

use std::collections::BTreeSet;

use super::{
    AttributeChange, AuditKind, Avatar, AvatarChange, Footprint, StoreError, UserFields,
    json_attributes, parse_attributes,
};

/// The JSON of an empty value list.
pub(crate) const NO_VALUES: &str = "[]";

/// An event to record.
pub(crate) struct NewEvent<'a> {
    /// The user.
    pub(crate) user_id: i64,
    /// The username at the time.
    pub(crate) username: &'a str,
    /// What happened.
    pub(crate) kind: AuditKind,
    /// The ABAC key (attribute events) or the changed fields (updated events).
    pub(crate) key: Option<&'a str>,
    /// Values added, as a JSON array.
    pub(crate) added: &'a str,
    /// Values removed, as a JSON array.
    pub(crate) removed: &'a str,
    /// A created user's ABAC values, as a JSON object of key → array of values.
    pub(crate) attributes: Option<&'a str>,
}

impl<'a> NewEvent<'a> {
    /// An event of `kind` without key or values (the other fields are set with struct
    /// update syntax).
    pub(crate) fn lifecycle(user_id: i64, username: &'a str, kind: AuditKind) -> Self {
        NewEvent {
            user_id,
            username,
            kind,
            key: None,
            added: NO_VALUES,
            removed: NO_VALUES,
            attributes: None,
        }
    }
}

/// The kind stored as `kind`.
pub(crate) fn parse_kind(kind: &str) -> Option<AuditKind> {
    [
        AuditKind::Created,
        AuditKind::Updated,
        AuditKind::Attribute,
        AuditKind::Deactivated,
        AuditKind::Reactivated,
        AuditKind::Deleted,
    ]
    .into_iter()
    .find(|known| known.as_str() == kind)
}

/// A value list of an event, as stored in `column` of `audit_events`.
pub(crate) fn parse_values(json: &str, column: &'static str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|err| StoreError::Corrupt {
        table: "audit_events",
        column,
        reason: format!("not a JSON array of strings: {err}"),
    })
}

/// A value set as the JSON array an event stores.
pub(crate) fn values_json(values: &BTreeSet<String>) -> String {
    if values.is_empty() {
        NO_VALUES.to_owned()
    } else {
        serde_json::Value::Array(
            values
                .iter()
                .map(|value| serde_json::Value::from(value.as_str()))
                .collect(),
        )
        .to_string()
    }
}

/// A `LIKE … ESCAPE '\'` pattern for "contains `text`": `%`, `_` and `\` in the text
/// match themselves.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The stored values an update compares with.
pub(crate) struct Current {
    pub(crate) username: String,
    pub(crate) email: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) language: Option<String>,
    pub(crate) active: bool,
    pub(crate) ldap_id: Option<String>,
    pub(crate) ldap_dn: Option<String>,
    pub(crate) avatar_sha256: Option<String>,
    /// The ABAC values, as stored (JSON).
    pub(crate) attributes: String,
}

/// What an update changes of a stored user.
pub(crate) struct UpdatePlan<'a> {
    /// Profile fields that differ, by name (`avatar` last, when the picture changes).
    pub(crate) changed: Vec<&'static str>,
    /// Whether the active flag flips.
    pub(crate) flipped: bool,
    /// `Some(new)` when the avatar changes (`Some(None)`: removed).
    pub(crate) new_avatar: Option<Option<&'a Avatar>>,
    /// The ABAC keys whose values change.
    pub(crate) attribute_changes: Vec<&'a AttributeChange>,
    /// The user's whole set after the change (JSON), when any value changes.
    pub(crate) new_attributes: Option<String>,
    /// Attribute bytes before and after.
    pub(crate) footprint: (Footprint, Footprint),
    /// Each changed key with its added and removed values as JSON arrays.
    pub(crate) values: Vec<(&'a str, String, String)>,
}

impl<'a> UpdatePlan<'a> {
    /// The plan of writing `fields`, `attribute_changes` and `avatar` over `current`.
    pub(crate) fn new(
        current: &Current,
        fields: &UserFields,
        attribute_changes: &'a [AttributeChange],
        avatar: &'a AvatarChange,
    ) -> Result<Self, StoreError> {
        let mut changed = Vec::new();
        for (name, differs) in [
            ("username", current.username != fields.username),
            ("email", current.email != fields.email),
            ("display_name", current.display_name != fields.display_name),
            ("language", current.language != fields.language),
            ("ldap_id", current.ldap_id != fields.ldap_id),
            ("ldap_dn", current.ldap_dn != fields.ldap_dn),
        ] {
            if differs {
                changed.push(name);
            }
        }
        let new_avatar = match avatar {
            AvatarChange::Set(new) if current.avatar_sha256.as_ref() != Some(&new.sha256) => {
                Some(Some(new))
            }
            AvatarChange::Clear if current.avatar_sha256.is_some() => Some(None),
            AvatarChange::Keep | AvatarChange::Set(_) | AvatarChange::Clear => None,
        };
        let attribute_changes: Vec<&AttributeChange> = attribute_changes
            .iter()
            .filter(|change| !change.added.is_empty() || !change.removed.is_empty())
            .collect();
        let mut plan = UpdatePlan {
            changed,
            flipped: current.active != fields.active,
            new_avatar,
            new_attributes: None,
            footprint: (Footprint::default(), Footprint::default()),
            values: Vec::with_capacity(attribute_changes.len()),
            attribute_changes,
        };
        if !plan.attribute_changes.is_empty() {
            let mut set = parse_attributes(&current.attributes, "users")?;
            let before = Footprint::of(&set);
            for change in &plan.attribute_changes {
                let key_values = set.entry(change.key.clone()).or_default();
                for value in &change.removed {
                    key_values.remove(value);
                }
                key_values.extend(change.added.iter().cloned());
                plan.values.push((
                    change.key.as_str(),
                    values_json(&change.added),
                    values_json(&change.removed),
                ));
            }
            plan.footprint = (before, Footprint::of(&set));
            plan.new_attributes = Some(json_attributes(&set)?);
        }
        if plan.new_avatar.is_some() {
            plan.changed.push("avatar");
        }
        Ok(plan)
    }

    /// Whether a profile field, the avatar or the active flag changes (not only ABAC
    /// values, or nothing).
    pub(crate) fn touches_profile(&self) -> bool {
        !self.changed.is_empty() || self.flipped
    }

    /// The events of the update, in order: `updated` (naming the changed fields),
    /// `deactivated` or `reactivated`, one `attribute` event per changed key.
    pub(crate) fn events<'b>(
        &'b self,
        id: i64,
        username: &'b str,
        active: bool,
        changed: &'b str,
    ) -> Vec<NewEvent<'b>> {
        let mut events = Vec::with_capacity(2 + self.values.len());
        if !changed.is_empty() {
            events.push(NewEvent {
                key: Some(changed),
                ..NewEvent::lifecycle(id, username, AuditKind::Updated)
            });
        }
        if self.flipped {
            let kind = if active {
                AuditKind::Reactivated
            } else {
                AuditKind::Deactivated
            };
            events.push(NewEvent::lifecycle(id, username, kind));
        }
        events.extend(self.values.iter().map(|(key, added, removed)| NewEvent {
            key: Some(key),
            added,
            removed,
            ..NewEvent::lifecycle(id, username, AuditKind::Attribute)
        }));
        events
    }
}
