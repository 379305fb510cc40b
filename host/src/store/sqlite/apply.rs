//! [`UserStore::apply`](crate::store::UserStore::apply): a batch of changes in one
//! `IMMEDIATE` transaction, each with its audit events. Any error (unknown user, taken
//! username or LDAP id, database failure) rolls the whole batch back.
//!
//! Events per change:
//! - create: `created`, with the user's ABAC values (key → values) in `attributes`;
//! - update: `updated` when profile fields changed (the event's key lists them, e.g.
//!   `email,display_name`; `avatar` when the picture changed), `deactivated` or
//!   `reactivated` when the active flag flipped, one `attribute` event per changed
//!   key; nothing at all, not even a new `updated_at`, when nothing changed;
//! - deactivate: `deactivated`, unless the user was inactive already;
//! - delete: `deleted` (the attribute rows go with the user).
//!
//! Creates and updates store the change's mapped digest (what the sync wrote the user
//! from), even an update that changes nothing else; a deactivation forgets it, so the
//! next sync compares that user field by field.

use std::cell::Cell;
use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, ffi};

use super::audit::{self, NewEvent};
use super::{json_attributes, parse_attributes, tenant_key};
use crate::plugin::model::TenantId;
use crate::store::rows::{Current, UpdatePlan};
use crate::store::{
    AttributeChange, AuditKind, Avatar, AvatarChange, Change, ChangeCause, Footprint, MappedDigest,
    StoreError, UserFields, UserId,
};

/// Applies `changes` in one transaction; returns the users' ids in change order.
pub(super) fn apply(
    conn: &mut Connection,
    tenant: TenantId,
    changes: &[Change],
    cause: &ChangeCause,
) -> Result<Vec<UserId>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let batch = Batch {
        conn: &tx,
        tenant,
        tenant_key: tenant_key(tenant),
        cause,
        growth: Cell::new(0),
    };
    let mut ids = Vec::with_capacity(changes.len());
    for change in changes {
        let id = match change {
            Change::Create {
                fields,
                avatar,
                mapped,
            } => batch.create(fields, avatar.as_ref(), *mapped)?,
            Change::Update {
                id,
                fields,
                attribute_changes,
                avatar,
                mapped,
            } => batch.update(*id, fields, attribute_changes, avatar, *mapped)?,
            Change::Deactivate { id } => batch.deactivate(*id)?,
            Change::Delete { id } => batch.delete(*id)?,
        };
        ids.push(id);
    }
    let growth = batch.growth.get();
    if growth != 0 {
        // The tenant's footprint, kept here so that the quota check reads one row.
        tx.prepare_cached(
            "INSERT INTO tenant_usage (tenant_id, attribute_bytes) VALUES (?1, max(?2, 0)) \
             ON CONFLICT (tenant_id) DO UPDATE SET attribute_bytes = max(attribute_bytes + ?2, 0)",
        )?
        .execute((batch.tenant_key, growth))?;
    }
    tx.commit()?;
    Ok(ids)
}

/// A digest as stored.
fn digest_bytes(digest: Option<&MappedDigest>) -> Option<&[u8]> {
    digest.map(|digest| digest.0.as_slice())
}

/// One apply call's transaction.
struct Batch<'a> {
    conn: &'a Connection,
    tenant: TenantId,
    /// `tenant` as stored.
    tenant_key: i64,
    cause: &'a ChangeCause,
    /// Attribute bytes the batch adds to the tenant (negative: frees).
    growth: Cell<i64>,
}

impl Batch<'_> {
    fn grow(&self, before: Footprint, after: Footprint) {
        let signed = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
        self.growth
            .set(self.growth.get() + signed(after.bytes) - signed(before.bytes));
    }

    fn create(
        &self,
        fields: &UserFields,
        avatar: Option<&Avatar>,
        mapped: Option<MappedDigest>,
    ) -> Result<UserId, StoreError> {
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO users (tenant_id, username, email, display_name, language, active, \
             source, ldap_id, ldap_dn, avatar, avatar_sha256, created_at, updated_at, \
             mapped_digest, attributes) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'ldap', ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13)",
        )?;
        // The user's values, as its row and its `created` event keep them.
        let attributes = json_attributes(&fields.attributes)?;
        self.grow(Footprint::default(), Footprint::of(&fields.attributes));
        let inserted = insert.execute((
            self.tenant_key,
            &fields.username,
            &fields.email,
            &fields.display_name,
            &fields.language,
            fields.active,
            &fields.ldap_id,
            &fields.ldap_dn,
            avatar.map(|avatar| avatar.bytes.as_slice()),
            avatar.map(|avatar| avatar.sha256.as_str()),
            self.cause.at,
            digest_bytes(mapped.as_ref()),
            &attributes,
        ));
        if let Err(err) = inserted {
            return Err(self.unique_violation(err, fields, None));
        }
        let id = self.conn.last_insert_rowid();

        // OR FAIL, like the audit events: no statement journal (see `audit`).
        let mut insert_value = self.conn.prepare_cached(
            "INSERT OR FAIL INTO user_attributes (tenant_id, key, value, user_id) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (key, values) in &fields.attributes {
            for value in values {
                insert_value.execute((self.tenant_key, key, value, id))?;
            }
        }
        // One event, with the values the user starts with.
        audit::insert(
            self.conn,
            self.tenant,
            self.cause,
            &NewEvent {
                attributes: Some(&attributes),
                ..NewEvent::lifecycle(id, &fields.username, AuditKind::Created)
            },
        )?;
        Ok(UserId(id))
    }

    fn update(
        &self,
        id: UserId,
        fields: &UserFields,
        attribute_changes: &[AttributeChange],
        avatar: &AvatarChange,
        mapped: Option<MappedDigest>,
    ) -> Result<UserId, StoreError> {
        let current = self.current(id)?;
        let plan = UpdatePlan::new(&current, fields, attribute_changes, avatar)?;
        let at = self.cause.at;
        let mapped = digest_bytes(mapped.as_ref());
        if plan.touches_profile() {
            let mut update = self.conn.prepare_cached(
                "UPDATE users SET username = ?3, email = ?4, display_name = ?5, language = ?6, \
                 active = ?7, ldap_id = ?8, ldap_dn = ?9, updated_at = ?10, mapped_digest = ?11 \
                 WHERE tenant_id = ?1 AND id = ?2",
            )?;
            let updated = update.execute((
                self.tenant_key,
                id.0,
                &fields.username,
                &fields.email,
                &fields.display_name,
                &fields.language,
                fields.active,
                &fields.ldap_id,
                &fields.ldap_dn,
                at,
                mapped,
            ));
            if let Err(err) = updated {
                return Err(self.unique_violation(err, fields, Some(id)));
            }
        }
        if let Some(new_avatar) = plan.new_avatar {
            let mut update = self.conn.prepare_cached(
                "UPDATE users SET avatar = ?3, avatar_sha256 = ?4, updated_at = ?5, \
                 mapped_digest = ?6 WHERE tenant_id = ?1 AND id = ?2",
            )?;
            update.execute((
                self.tenant_key,
                id.0,
                new_avatar.map(|avatar| avatar.bytes.as_slice()),
                new_avatar.map(|avatar| avatar.sha256.as_str()),
                at,
                mapped,
            ))?;
        } else if !plan.touches_profile() {
            // Only the attribute rows change (updated_at moves), or nothing does: the
            // digest is all there is to record, and updated_at stays.
            let mut touch = self.conn.prepare_cached(
                "UPDATE users SET updated_at = CASE WHEN ?4 THEN ?3 ELSE updated_at END, \
                 mapped_digest = ?5 WHERE tenant_id = ?1 AND id = ?2",
            )?;
            touch.execute((
                self.tenant_key,
                id.0,
                at,
                !plan.attribute_changes.is_empty(),
                mapped,
            ))?;
        }

        // The rows of each changed key and the user's set, then the events.
        if let Some(set) = &plan.new_attributes {
            for change in &plan.attribute_changes {
                self.change_attribute(id, change)?;
            }
            let (before, after) = plan.footprint;
            self.grow(before, after);
            let mut store_set = self.conn.prepare_cached(
                "UPDATE users SET attributes = ?3 WHERE tenant_id = ?1 AND id = ?2",
            )?;
            store_set.execute((self.tenant_key, id.0, set))?;
        }
        let changed = plan.changed.join(",");
        let events = plan.events(id.0, &fields.username, fields.active, &changed);
        audit::insert_all(self.conn, self.tenant, self.cause, &events)?;
        Ok(id)
    }

    /// Removes and adds the lookup rows of one key's values.
    fn change_attribute(&self, id: UserId, change: &AttributeChange) -> Result<(), StoreError> {
        let mut remove = self.conn.prepare_cached(
            "DELETE FROM user_attributes \
             WHERE tenant_id = ?1 AND key = ?2 AND value = ?3 AND user_id = ?4",
        )?;
        for value in &change.removed {
            remove.execute((self.tenant_key, &change.key, value, id.0))?;
        }
        // OR IGNORE: a value already there stays once (the rows are a set).
        let mut add = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO user_attributes (tenant_id, key, value, user_id) \
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for value in &change.added {
            add.execute((self.tenant_key, &change.key, value, id.0))?;
        }
        Ok(())
    }

    fn deactivate(&self, id: UserId) -> Result<UserId, StoreError> {
        let mut deactivate = self.conn.prepare_cached(
            "UPDATE users SET active = 0, updated_at = ?3, mapped_digest = NULL \
             WHERE tenant_id = ?1 AND id = ?2 AND active = 1 RETURNING username",
        )?;
        let username: Option<String> = deactivate
            .query_row((self.tenant_key, id.0, self.cause.at), |row| row.get(0))
            .optional()?;
        match username {
            Some(username) => {
                self.lifecycle(id.0, &username, AuditKind::Deactivated)?;
            }
            // Inactive already (a no-op), or not a user of this tenant.
            None => {
                self.current(id)?;
            }
        }
        Ok(id)
    }

    fn delete(&self, id: UserId) -> Result<UserId, StoreError> {
        let mut delete = self.conn.prepare_cached(
            "DELETE FROM users WHERE tenant_id = ?1 AND id = ?2 RETURNING username, attributes",
        )?;
        let (username, attributes): (String, String) = delete
            .query_row((self.tenant_key, id.0), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?
            .ok_or(StoreError::NoSuchUser {
                tenant: self.tenant,
                id,
            })?;
        // The lookup rows go with the user, each by its full key.
        let attributes = parse_attributes(&attributes, "users")?;
        self.grow(Footprint::of(&attributes), Footprint::default());
        for (key, values) in attributes {
            self.change_attribute(
                id,
                &AttributeChange {
                    key,
                    added: BTreeSet::new(),
                    removed: values,
                },
            )?;
        }
        self.lifecycle(id.0, &username, AuditKind::Deleted)?;
        Ok(id)
    }

    /// The stored values of user `id`; [`StoreError::NoSuchUser`] when the tenant has
    /// no such user.
    fn current(&self, id: UserId) -> Result<Current, StoreError> {
        let mut select = self.conn.prepare_cached(
            "SELECT username, email, display_name, language, active, ldap_id, ldap_dn, \
             avatar_sha256, attributes FROM users WHERE tenant_id = ?1 AND id = ?2",
        )?;
        select
            .query_row((self.tenant_key, id.0), |row| {
                Ok(Current {
                    username: row.get(0)?,
                    email: row.get(1)?,
                    display_name: row.get(2)?,
                    language: row.get(3)?,
                    active: row.get(4)?,
                    ldap_id: row.get(5)?,
                    ldap_dn: row.get(6)?,
                    avatar_sha256: row.get(7)?,
                    attributes: row.get(8)?,
                })
            })
            .optional()?
            .ok_or(StoreError::NoSuchUser {
                tenant: self.tenant,
                id,
            })
    }

    /// A lifecycle event: no key, no values.
    fn lifecycle(&self, user_id: i64, username: &str, kind: AuditKind) -> Result<(), StoreError> {
        audit::insert(
            self.conn,
            self.tenant,
            self.cause,
            &NewEvent::lifecycle(user_id, username, kind),
        )
    }

    /// `err` from writing `fields` (for user `own`, when updating) as a
    /// [`StoreError::Conflict`] naming the user that holds the username or LDAP id,
    /// when it is a UNIQUE violation; as itself otherwise.
    fn unique_violation(
        &self,
        err: rusqlite::Error,
        fields: &UserFields,
        own: Option<UserId>,
    ) -> StoreError {
        let unique = matches!(
            &err,
            rusqlite::Error::SqliteFailure(failure, _)
                if failure.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
        );
        if !unique {
            return err.into();
        }
        match self.holder(fields, own) {
            Ok(Some(conflict)) => conflict,
            Ok(None) => err.into(),
            Err(lookup) => lookup,
        }
    }

    /// The conflict with another user of the tenant holding the username or LDAP id of
    /// `fields`. That user may have been created earlier in this batch.
    fn holder(
        &self,
        fields: &UserFields,
        own: Option<UserId>,
    ) -> Result<Option<StoreError>, StoreError> {
        let candidates = [
            (
                "username",
                "SELECT id FROM users WHERE tenant_id = ?1 AND username = ?2",
                Some(&fields.username),
            ),
            (
                "ldap_id",
                "SELECT id FROM users WHERE tenant_id = ?1 AND ldap_id = ?2",
                fields.ldap_id.as_ref(),
            ),
        ];
        for (field, sql, value) in candidates {
            let Some(value) = value else { continue };
            let existing: Option<i64> = self
                .conn
                .prepare_cached(sql)?
                .query_row((self.tenant_key, value), |row| row.get(0))
                .optional()?;
            if let Some(existing) = existing.map(UserId)
                && Some(existing) != own
            {
                return Ok(Some(StoreError::Conflict {
                    tenant: self.tenant,
                    field,
                    value: value.clone(),
                    existing,
                }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
