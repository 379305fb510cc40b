//! From a plugin's decision and the stored user to the change to write and the
//! per-user result. Pure: no I/O, so every rule is unit-tested here.

use std::collections::BTreeSet;

pub use super::digest::{DecisionText, mapped_digest};
use super::report::{Action, UserResult, code};
use crate::plugin::model::{AbacAttributes, MappedUser};
use crate::store::{
    AttributeChange, Avatar, AvatarChange, Change, Footprint, MappedDigest, StoredUser, UserFields,
};

/// What the tenant and the sync allow.
#[derive(Debug, Clone)]
pub struct PlanRules {
    /// New users may be created.
    pub import_new_users: bool,
    /// Language of new users without one.
    pub default_language: Option<String>,
    /// Only ABAC attributes are refreshed (targeted syncs); users are never created.
    pub attributes_only: bool,
    /// Avatars are synced.
    pub sync_avatars: bool,
    /// The most ABAC values a user may hold, all keys together.
    pub max_user_values: u64,
    /// The most attribute bytes ([`Footprint`]) a user may hold.
    pub max_user_bytes: u64,
}

/// A change to write (none for unchanged users) and the result to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The write, if any.
    pub change: Option<Change>,
    /// The result for the report.
    pub result: UserResult,
    /// ABAC keys whose values change.
    pub changed_keys: Vec<String>,
}

/// The ABAC difference between `old` and `new`, key by key.
pub fn attribute_changes(old: &AbacAttributes, new: &AbacAttributes) -> Vec<AttributeChange> {
    if old == new {
        // Most users of most syncs: no allocation at all.
        return Vec::new();
    }
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let empty = BTreeSet::new();
    keys.into_iter()
        .filter_map(|key| {
            let before = old.get(key).unwrap_or(&empty);
            let after = new.get(key).unwrap_or(&empty);
            let added: BTreeSet<String> = after.difference(before).cloned().collect();
            let removed: BTreeSet<String> = before.difference(after).cloned().collect();
            (!added.is_empty() || !removed.is_empty()).then(|| AttributeChange {
                key: key.clone(),
                added,
                removed,
            })
        })
        .collect()
}

fn result(
    user: &MappedUser,
    existing: Option<&StoredUser>,
    dn: &str,
    code: u16,
    action: Action,
    message: String,
) -> UserResult {
    let username = existing.map_or(&user.username, |u| &u.fields.username);
    result_for(existing, username.clone(), dn, code, action, message)
}

fn result_for(
    existing: Option<&StoredUser>,
    username: String,
    dn: &str,
    code: u16,
    action: Action,
    message: String,
) -> UserResult {
    UserResult {
        id: existing.map(|user| user.id.0),
        username,
        dn: Some(dn.to_owned()),
        code,
        action,
        message,
    }
}

/// Plans an upsert of `user` (read at `dn`) against `existing`. `mapped` is the
/// decision's [`mapped_digest`], stored with the user by the change; `None` (targeted
/// syncs, which write attributes only) makes a change forget the stored one.
pub fn plan_upsert(
    user: MappedUser,
    dn: &str,
    existing: Option<&StoredUser>,
    avatar: Option<Avatar>,
    rules: &PlanRules,
    mapped: Option<MappedDigest>,
) -> Planned {
    let footprint = Footprint::of(&user.attributes);
    if footprint.values > rules.max_user_values || footprint.bytes > rules.max_user_bytes {
        // Not written: the user keeps what it had, and the next sync tries again.
        let message = format!(
            "not written: {} ABAC values of {} bytes, over the tenant's quota of {} values and {} bytes per user",
            footprint.values, footprint.bytes, rules.max_user_values, rules.max_user_bytes
        );
        return Planned {
            change: None,
            result: result(
                &user,
                existing,
                dn,
                code::OVER_QUOTA,
                Action::Failed,
                message,
            ),
            changed_keys: Vec::new(),
        };
    }
    let Some(existing) = existing else {
        if rules.attributes_only || !rules.import_new_users {
            let message = if rules.attributes_only {
                "not a user yet: a targeted sync refreshes existing users only"
            } else {
                "not imported: importing new users is off"
            };
            return Planned {
                change: None,
                result: result(
                    &user,
                    None,
                    dn,
                    code::NOT_IMPORTED,
                    Action::NotImported,
                    message.into(),
                ),
                changed_keys: Vec::new(),
            };
        }
        let changed_keys = user.attributes.keys().cloned().collect();
        let fields = UserFields {
            language: user
                .language
                .clone()
                .or_else(|| rules.default_language.clone()),
            username: user.username.clone(),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            active: user.active,
            ldap_id: Some(user.ldap_id.clone()),
            ldap_dn: Some(dn.to_owned()),
            attributes: user.attributes.clone(),
        };
        let message = if user.active {
            "created"
        } else {
            "created inactive"
        };
        return Planned {
            result: result(
                &user,
                None,
                dn,
                code::CREATED,
                Action::Created,
                message.into(),
            ),
            change: Some(Change::Create {
                fields,
                avatar: if rules.sync_avatars { avatar } else { None },
                mapped,
            }),
            changed_keys,
        };
    };
    let old = &existing.fields;
    let attribute_changes = attribute_changes(&old.attributes, &user.attributes);
    // The user is moved, not copied, into its new state: most users of a sync are
    // unchanged, and copying each one's attributes only to compare them costs.
    let MappedUser {
        username,
        email,
        display_name,
        language,
        active,
        ldap_id,
        attributes,
    } = user;
    let new = if rules.attributes_only {
        UserFields {
            username: old.username.clone(),
            email: old.email.clone(),
            display_name: old.display_name.clone(),
            language: old.language.clone(),
            active: old.active,
            ldap_id: old.ldap_id.clone(),
            ldap_dn: old.ldap_dn.clone(),
            attributes,
        }
    } else {
        UserFields {
            username,
            email,
            display_name,
            language: language.or_else(|| old.language.clone()),
            active,
            ldap_id: Some(ldap_id),
            ldap_dn: Some(dn.to_owned()),
            attributes,
        }
    };
    let avatar_change = match (
        rules.sync_avatars && !rules.attributes_only,
        avatar,
        &existing.avatar_sha256,
    ) {
        (false, _, _) => AvatarChange::Keep,
        (true, Some(avatar), Some(hash)) if &avatar.sha256 == hash => AvatarChange::Keep,
        (true, Some(avatar), _) => AvatarChange::Set(avatar),
        (true, None, Some(_)) => AvatarChange::Clear,
        (true, None, None) => AvatarChange::Keep,
    };
    let mut changed_fields = Vec::new();
    for (name, changed) in [
        ("username", old.username != new.username),
        ("email", old.email != new.email),
        ("display name", old.display_name != new.display_name),
        ("language", old.language != new.language),
        ("DN", old.ldap_dn != new.ldap_dn),
        ("avatar", avatar_change != AvatarChange::Keep),
    ] {
        if changed {
            changed_fields.push(name.to_owned());
        }
    }
    let changed_keys: Vec<String> = attribute_changes.iter().map(|c| c.key.clone()).collect();
    if !changed_keys.is_empty() {
        changed_fields.push(format!("attributes {}", changed_keys.join(", ")));
    }
    let (action, code, mut message) = match (old.active, new.active) {
        (false, true) => (Action::Reactivated, code::UPDATED, "reactivated".to_owned()),
        (true, false) => (
            Action::Deactivated,
            code::UPDATED,
            "deactivated by the plugin".to_owned(),
        ),
        _ if changed_fields.is_empty() => {
            // Unchanged; when the stored digest is missing (users written before
            // digests, or deactivated since) or stale, the change records the new one
            // and nothing else, so that the next sync needs no comparison.
            let remember = mapped.is_some() && existing.mapped != mapped;
            return Planned {
                change: remember.then(|| Change::Update {
                    id: existing.id,
                    fields: new,
                    attribute_changes: Vec::new(),
                    avatar: AvatarChange::Keep,
                    mapped,
                }),
                result: result_for(
                    Some(existing),
                    old.username.clone(),
                    dn,
                    code::UNCHANGED,
                    Action::Unchanged,
                    "unchanged".into(),
                ),
                changed_keys,
            };
        }
        _ => (Action::Updated, code::UPDATED, "updated".to_owned()),
    };
    if !changed_fields.is_empty() {
        message.push_str(&format!(": {}", changed_fields.join("; ")));
    }
    let planned_result = result_for(
        Some(existing),
        new.username.clone(),
        dn,
        code,
        action,
        message,
    );
    Planned {
        change: Some(Change::Update {
            id: existing.id,
            fields: new,
            attribute_changes,
            avatar: avatar_change,
            mapped,
        }),
        result: planned_result,
        changed_keys,
    }
}

/// Plans the plugin's decision to deactivate the user with `existing` (if any).
pub fn plan_deactivate(dn: &str, existing: Option<&StoredUser>, reason: &str) -> Planned {
    let (change, code, action, message) = match existing {
        None => (
            None,
            code::SKIPPED,
            Action::Skipped,
            format!("no such user to deactivate: {reason}"),
        ),
        Some(user) if !user.fields.active => (
            None,
            code::UNCHANGED,
            Action::Unchanged,
            format!("already inactive: {reason}"),
        ),
        Some(user) => (
            Some(Change::Deactivate { id: user.id }),
            code::UPDATED,
            Action::Deactivated,
            format!("deactivated: {reason}"),
        ),
    };
    Planned {
        change,
        result: UserResult {
            id: existing.map(|user| user.id.0),
            username: existing
                .map(|user| user.fields.username.clone())
                .unwrap_or_default(),
            dn: Some(dn.to_owned()),
            code,
            action,
            message,
        },
        changed_keys: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{UserId, UserSource};

    fn attrs(pairs: &[(&str, &[&str])]) -> AbacAttributes {
        pairs
            .iter()
            .map(|(k, vs)| {
                (
                    (*k).to_owned(),
                    vs.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect()
    }

    fn mapped(attributes: AbacAttributes) -> MappedUser {
        MappedUser {
            username: "ann".into(),
            email: Some("ann@example.org".into()),
            display_name: Some("Ann".into()),
            language: None,
            active: true,
            ldap_id: "id-1".into(),
            attributes,
        }
    }

    fn stored(user: &MappedUser, dn: &str, active: bool) -> StoredUser {
        StoredUser {
            id: UserId(5),
            fields: UserFields {
                username: user.username.clone(),
                email: user.email.clone(),
                display_name: user.display_name.clone(),
                language: Some("de".into()),
                active,
                ldap_id: Some(user.ldap_id.clone()),
                ldap_dn: Some(dn.into()),
                attributes: user.attributes.clone(),
            },
            source: UserSource::Ldap,
            avatar_sha256: None,
            created_at: 0,
            updated_at: 0,
            mapped: None,
        }
    }

    fn rules() -> PlanRules {
        PlanRules {
            max_user_values: 1_000,
            max_user_bytes: 64 * 1024,
            import_new_users: true,
            default_language: Some("en".into()),
            attributes_only: false,
            sync_avatars: false,
        }
    }

    #[test]
    fn attribute_changes_are_per_key_sets() {
        let old = attrs(&[("dept", &["a", "b"]), ("gone", &["x"])]);
        let new = attrs(&[("dept", &["b", "c"]), ("new", &["y"])]);
        let changes = attribute_changes(&old, &new);
        let keys: Vec<_> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["dept", "gone", "new"]);
        assert_eq!(changes[0].added, BTreeSet::from(["c".to_owned()]));
        assert_eq!(changes[0].removed, BTreeSet::from(["a".to_owned()]));
        assert!(attribute_changes(&old, &old).is_empty());
    }

    #[test]
    fn new_user_is_created_with_the_default_language() {
        let planned = plan_upsert(
            mapped(attrs(&[("dept", &["a"])])),
            "uid=ann",
            None,
            None,
            &rules(),
            None,
        );
        assert_eq!(planned.result.code, code::CREATED);
        let Some(Change::Create { fields, .. }) = planned.change else {
            panic!()
        };
        assert_eq!(fields.language.as_deref(), Some("en"));
        assert_eq!(fields.ldap_dn.as_deref(), Some("uid=ann"));
    }

    #[test]
    fn a_user_over_its_quota_is_not_written_and_keeps_what_it_had() {
        let mut tight = rules();
        tight.max_user_values = 2;
        tight.max_user_bytes = 12;
        // "dept"+"a" and "dept"+"b": 2 values of 10 bytes, within both.
        let within = mapped(attrs(&[("dept", &["a", "b"])]));
        let existing = stored(&within, "uid=ann", true);
        let planned = plan_upsert(within, "uid=ann", None, None, &tight, None);
        assert_eq!(planned.result.code, code::CREATED);
        // Three values: over the count, whether new or existing.
        let more = mapped(attrs(&[("dept", &["a", "b", "c"])]));
        for existing in [None, Some(&existing)] {
            let planned = plan_upsert(more.clone(), "uid=ann", existing, None, &tight, None);
            assert_eq!(planned.result.code, code::OVER_QUOTA);
            assert_eq!(planned.result.action, Action::Failed);
            assert!(planned.change.is_none());
            assert!(
                planned.result.message.contains("3 ABAC values of 15 bytes"),
                "{}",
                planned.result.message
            );
        }
        // Two values, but 13 bytes: over the bytes.
        let longer = mapped(attrs(&[("dept", &["a", "bcde"])]));
        let planned = plan_upsert(longer, "uid=ann", Some(&existing), None, &tight, None);
        assert_eq!(planned.result.code, code::OVER_QUOTA);
        assert_eq!(planned.result.id, Some(5));
    }

    #[test]
    fn import_off_and_targeted_never_create() {
        let mut no_import = rules();
        no_import.import_new_users = false;
        let planned = plan_upsert(
            mapped(AbacAttributes::new()),
            "uid=ann",
            None,
            None,
            &no_import,
            None,
        );
        assert_eq!(
            (planned.change, planned.result.code),
            (None, code::NOT_IMPORTED)
        );
        let mut targeted = rules();
        targeted.attributes_only = true;
        let planned = plan_upsert(
            mapped(AbacAttributes::new()),
            "uid=ann",
            None,
            None,
            &targeted,
            None,
        );
        assert_eq!(planned.change, None);
    }

    #[test]
    fn same_values_cost_no_write() {
        let user = mapped(attrs(&[("dept", &["a"])]));
        let existing = stored(&user, "uid=ann", true);
        let planned = plan_upsert(user, "uid=ann", Some(&existing), None, &rules(), None);
        assert_eq!(planned.change, None);
        assert_eq!(planned.result.code, code::UNCHANGED);
        assert_eq!(planned.result.id, Some(5));
    }

    #[test]
    fn renamed_dn_updates_the_same_user() {
        let user = mapped(AbacAttributes::new());
        let existing = stored(&user, "uid=ann,ou=old", true);
        let planned = plan_upsert(
            user,
            "uid=ann,ou=new",
            Some(&existing),
            None,
            &rules(),
            None,
        );
        let Some(Change::Update { id, fields, .. }) = planned.change else {
            panic!()
        };
        assert_eq!(id, UserId(5));
        assert_eq!(fields.ldap_dn.as_deref(), Some("uid=ann,ou=new"));
        assert!(
            planned.result.message.contains("DN"),
            "{}",
            planned.result.message
        );
        // The stored language is kept when the plugin sets none.
        assert_eq!(fields.language.as_deref(), Some("de"));
    }

    #[test]
    fn inactive_user_seen_active_is_reactivated() {
        let user = mapped(AbacAttributes::new());
        let existing = stored(&user, "uid=ann", false);
        let planned = plan_upsert(user, "uid=ann", Some(&existing), None, &rules(), None);
        assert_eq!(planned.result.action, Action::Reactivated);
        assert!(planned.change.is_some());
    }

    #[test]
    fn targeted_sync_touches_attributes_only() {
        let mut user = mapped(attrs(&[("dept", &["new"])]));
        let existing = stored(&mapped(attrs(&[("dept", &["old"])])), "uid=ann", true);
        user.email = Some("changed@example.org".into());
        let mut targeted = rules();
        targeted.attributes_only = true;
        let planned = plan_upsert(user, "uid=moved", Some(&existing), None, &targeted, None);
        let Some(Change::Update {
            fields,
            attribute_changes,
            ..
        }) = planned.change
        else {
            panic!()
        };
        assert_eq!(fields.email.as_deref(), Some("ann@example.org"));
        assert_eq!(fields.ldap_dn.as_deref(), Some("uid=ann"));
        assert_eq!(attribute_changes.len(), 1);
        assert_eq!(planned.changed_keys, ["dept"]);
    }

    #[test]
    fn avatar_changes_by_hash() {
        let mut with_avatars = rules();
        with_avatars.sync_avatars = true;
        let user = mapped(AbacAttributes::new());
        let mut existing = stored(&user, "uid=ann", true);
        existing.avatar_sha256 = Some("aa".into());
        let same = Avatar {
            bytes: vec![1],
            sha256: "aa".into(),
        };
        let planned = plan_upsert(
            user.clone(),
            "uid=ann",
            Some(&existing),
            Some(same),
            &with_avatars,
            None,
        );
        assert_eq!(planned.change, None);
        let planned = plan_upsert(user, "uid=ann", Some(&existing), None, &with_avatars, None);
        let Some(Change::Update { avatar, .. }) = planned.change else {
            panic!()
        };
        assert_eq!(avatar, AvatarChange::Clear);
    }

    #[test]
    fn deactivation_of_unknown_or_inactive_users_writes_nothing() {
        assert_eq!(plan_deactivate("uid=x", None, "gone").change, None);
        let user = mapped(AbacAttributes::new());
        let inactive = stored(&user, "uid=ann", false);
        assert_eq!(
            plan_deactivate("uid=ann", Some(&inactive), "gone").change,
            None
        );
        let active = stored(&user, "uid=ann", true);
        assert_eq!(
            plan_deactivate("uid=ann", Some(&active), "disabled").change,
            Some(Change::Deactivate { id: UserId(5) })
        );
    }

    /// The stored user that creating `user` at `dn` produces.
    fn created(user: &MappedUser, dn: &str, rules: &PlanRules) -> StoredUser {
        let digest = mapped_digest(DecisionText::User(user), dn, None, rules);
        let planned = plan_upsert(user.clone(), dn, None, None, rules, Some(digest));
        let Some(Change::Create { fields, mapped, .. }) = planned.change else {
            panic!("not a creation: {planned:?}")
        };
        assert_eq!(mapped, Some(digest), "the creation stores its digest");
        StoredUser {
            id: UserId(5),
            fields,
            source: UserSource::Ldap,
            avatar_sha256: None,
            created_at: 0,
            updated_at: 0,
            mapped,
        }
    }

    #[test]
    fn the_digest_covers_every_field_the_sync_writes() {
        let base = mapped(attrs(&[("dept", &["a", "b"])]));
        let digest = |user: &MappedUser, dn: &str, avatar: Option<&Avatar>, rules: &PlanRules| {
            mapped_digest(DecisionText::User(user), dn, avatar, rules)
        };
        let first = digest(&base, "uid=ann", None, &rules());
        assert_eq!(first, digest(&base.clone(), "uid=ann", None, &rules()));

        let mut variants = Vec::new();
        let mut user = base.clone();
        user.username = "anne".into();
        variants.push(user);
        let mut user = base.clone();
        user.email = None;
        variants.push(user);
        let mut user = base.clone();
        user.display_name = Some("Ann B".into());
        variants.push(user);
        let mut user = base.clone();
        user.language = Some("de".into());
        variants.push(user);
        let mut user = base.clone();
        user.active = false;
        variants.push(user);
        let mut user = base.clone();
        user.ldap_id = "id-2".into();
        variants.push(user);
        // A value moved to another key, a value split in two, an empty key added.
        variants.push(mapped(attrs(&[("dept", &["a"]), ("dept2", &["b"])])));
        variants.push(mapped(attrs(&[("dept", &["ab"])])));
        variants.push(mapped(attrs(&[("dept", &["a", "b"]), ("unit", &[])])));
        for variant in &variants {
            assert_ne!(
                first,
                digest(variant, "uid=ann", None, &rules()),
                "{variant:?}"
            );
        }
        assert_ne!(first, digest(&base, "uid=ann,ou=x", None, &rules()));

        // The avatar counts only when avatars are synced.
        let avatar = Avatar {
            bytes: vec![1],
            sha256: "aa".into(),
        };
        assert_eq!(first, digest(&base, "uid=ann", Some(&avatar), &rules()));
        let with_avatars = PlanRules {
            sync_avatars: true,
            ..rules()
        };
        let synced = digest(&base, "uid=ann", None, &with_avatars);
        assert_ne!(first, synced);
        assert_ne!(
            synced,
            digest(&base, "uid=ann", Some(&avatar), &with_avatars)
        );
    }

    #[test]
    fn planning_a_decision_against_the_user_it_made_changes_nothing() {
        // What makes a stored digest mean "unchanged": a user written from a decision
        // (here with no language, so the default applies) plans to no change.
        let mut user = mapped(attrs(&[("dept", &["a", "b"]), ("unit", &[])]));
        user.language = None;
        let stored = created(&user, "uid=ann", &rules());
        let digest = mapped_digest(DecisionText::User(&user), "uid=ann", None, &rules());
        let again = plan_upsert(user, "uid=ann", Some(&stored), None, &rules(), Some(digest));
        assert_eq!(again.result.action, Action::Unchanged);
        assert_eq!(again.change, None);
    }

    #[test]
    fn an_unchanged_user_without_the_digest_gets_it_recorded_and_nothing_else() {
        let user = mapped(attrs(&[("dept", &["a"])]));
        let mut stored = created(&user, "uid=ann", &rules());
        stored.mapped = None;
        let digest = mapped_digest(DecisionText::User(&user), "uid=ann", None, &rules());
        let planned = plan_upsert(user, "uid=ann", Some(&stored), None, &rules(), Some(digest));
        assert_eq!(planned.result.action, Action::Unchanged);
        assert_eq!(planned.result.code, code::UNCHANGED);
        let Some(Change::Update {
            fields,
            attribute_changes,
            avatar,
            mapped,
            ..
        }) = planned.change
        else {
            panic!("expected the digest to be recorded: {planned:?}")
        };
        assert_eq!(fields, stored.fields);
        assert!(attribute_changes.is_empty());
        assert_eq!(avatar, AvatarChange::Keep);
        assert_eq!(mapped, Some(digest));
    }

    #[test]
    fn a_change_stores_the_new_digest_and_a_targeted_one_forgets_it() {
        let user = mapped(attrs(&[("dept", &["a"])]));
        let stored = created(&user, "uid=ann", &rules());
        let changed = mapped(attrs(&[("dept", &["b"])]));
        let digest = mapped_digest(DecisionText::User(&changed), "uid=ann", None, &rules());
        let planned = plan_upsert(
            changed.clone(),
            "uid=ann",
            Some(&stored),
            None,
            &rules(),
            Some(digest),
        );
        let Some(Change::Update { mapped, .. }) = planned.change else {
            panic!()
        };
        assert_eq!(mapped, Some(digest));

        let targeted = PlanRules {
            attributes_only: true,
            ..rules()
        };
        let planned = plan_upsert(changed, "uid=ann", Some(&stored), None, &targeted, None);
        let Some(Change::Update { mapped, .. }) = planned.change else {
            panic!()
        };
        assert_eq!(
            mapped, None,
            "attributes alone are not the decision's state"
        );
    }

    #[test]
    fn a_json_decision_is_digested_as_written() {
        let json = r#"{"upsert":{"username":"ann","ldap_id":"id-1"}}"#;
        let digest =
            |text: &str, dn: &str| mapped_digest(DecisionText::Json(text), dn, None, &rules());
        assert_eq!(digest(json, "uid=ann"), digest(json, "uid=ann"));
        assert_ne!(digest(json, "uid=ann"), digest(json, "uid=ann,ou=x"));
        let other = r#"{"upsert":{"username":"anne","ldap_id":"id-1"}}"#;
        assert_ne!(digest(json, "uid=ann"), digest(other, "uid=ann"));
        // The same text cut elsewhere between decision and DN is another input.
        assert_ne!(digest("ab", "c"), digest("a", "bc"));
        let user = MappedUser {
            username: "ann".into(),
            email: None,
            display_name: None,
            language: None,
            active: true,
            ldap_id: "id-1".into(),
            attributes: AbacAttributes::new(),
        };
        assert_ne!(
            digest(json, "uid=ann"),
            mapped_digest(DecisionText::User(&user), "uid=ann", None, &rules())
        );
    }
}
