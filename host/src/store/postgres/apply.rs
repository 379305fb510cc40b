//! [`UserStore::apply`](crate::store::UserStore::apply) on PostgreSQL: a batch of
//! changes in the caller's transaction, each with its audit events, with the events
//! and rules of the SQLite store (see its `apply` module). Any error rolls the whole
//! batch back.
//!
//! A run of creations is written in bulk: one `INSERT … SELECT FROM unnest(…)` for
//! the users, one for their attribute rows and one for their `created` events, instead
//! of a statement per row. A username or directory id taken (by another user, or by an
//! earlier creation of the same run) skips the row (`ON CONFLICT DO NOTHING`), so that
//! the transaction can still name the user holding it.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;

use super::{Statements, Tx, is_unique_violation};
use crate::plugin::model::TenantId;
use crate::store::rows::{Current, NewEvent, UpdatePlan};
use crate::store::{
    AttributeChange, AuditKind, Avatar, AvatarChange, Change, ChangeCause, Footprint, MappedDigest,
    StoreError, UserFields, UserId, json_attributes, parse_attributes, tenant_key,
};

/// Applies `changes` in `tx`; returns the users' ids in change order.
pub(super) async fn apply(
    tx: &mut Tx<'_>,
    tenant: TenantId,
    changes: &[Change],
    cause: &ChangeCause,
) -> Result<Vec<UserId>, StoreError> {
    let mut batch = Batch {
        tx,
        tenant,
        key: tenant_key(tenant),
        cause,
        growth: 0,
    };
    let mut ids = Vec::with_capacity(changes.len());
    let mut rest = changes;
    while let Some(first) = rest.first() {
        if matches!(first, Change::Create { .. }) {
            let run = rest
                .iter()
                .take_while(|change| matches!(change, Change::Create { .. }))
                .count();
            ids.extend(batch.create_all(&rest[..run]).await?);
            rest = &rest[run..];
            continue;
        }
        let run = update_run(rest);
        if run > 1 && batch.update_all(&rest[..run]).await? {
            ids.extend(rest[..run].iter().filter_map(|change| match change {
                Change::Update { id, .. } => Some(*id),
                _ => None,
            }));
            rest = &rest[run..];
            continue;
        }
        let id = match first {
            Change::Update {
                id,
                fields,
                attribute_changes,
                avatar,
                mapped,
            } => {
                batch
                    .update(*id, fields, attribute_changes, avatar, *mapped)
                    .await?
            }
            Change::Deactivate { id } => batch.deactivate(*id).await?,
            Change::Delete { id } => batch.delete(*id).await?,
            Change::Create { .. } => unreachable!("runs of creations are written above"),
        };
        ids.push(id);
        rest = &rest[1..];
    }
    if batch.growth != 0 {
        // The tenant's footprint, kept here so that the quota check reads one row.
        batch
            .tx
            .execute(
                "INSERT INTO tenant_usage (tenant_id, attribute_bytes) VALUES ($1, greatest($2::bigint, 0)) \
                 ON CONFLICT (tenant_id) DO UPDATE SET \
                 attribute_bytes = greatest(tenant_usage.attribute_bytes + $2::bigint, 0)",
                &[&batch.key, &batch.growth],
            )
            .await?;
    }
    Ok(ids)
}

/// How many changes from the start of `changes` are updates of distinct users: a run
/// that [`Batch::update_all`] may write in bulk.
fn update_run(changes: &[Change]) -> usize {
    let mut seen = std::collections::HashSet::new();
    changes
        .iter()
        .take_while(|change| matches!(change, Change::Update { id, .. } if seen.insert(*id)))
        .count()
}

/// A digest as stored.
fn digest_bytes(digest: Option<&MappedDigest>) -> Option<&[u8]> {
    digest.map(|digest| digest.0.as_slice())
}

/// One apply call's transaction.
struct Batch<'t, 'c> {
    tx: &'t mut Tx<'c>,
    tenant: TenantId,
    /// `tenant` as stored.
    key: i64,
    cause: &'t ChangeCause,
    /// Attribute bytes the batch adds to the tenant (negative: frees).
    growth: i64,
}

/// Inserts a run of creations given column by column (`$3`…`$13`, as [`Columns`]
/// holds them) for the tenant `$1` at `$2`, in their order.
macro_rules! insert_users {
    () => {
        "INSERT INTO users (tenant_id, username, email, display_name, language, active, \
         source, ldap_id, ldap_dn, avatar, avatar_sha256, created_at, updated_at, \
         mapped_digest, attributes) \
         SELECT $1::bigint, t.username, t.email, t.display_name, t.language, t.active, 'ldap', \
         t.ldap_id, t.ldap_dn, t.avatar, t.avatar_sha256, $2::bigint, $2::bigint, t.digest, \
         t.attributes::jsonb \
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], \
         $8::text[], $9::text[], $10::bytea[], $11::text[], $12::bytea[], $13::text[]) \
         WITH ORDINALITY AS t(username, email, display_name, language, active, ldap_id, \
         ldap_dn, avatar, avatar_sha256, digest, attributes, n) ORDER BY t.n"
    };
}

/// A run of creations, column by column, as `unnest` takes them.
#[derive(Default)]
struct Columns<'a> {
    username: Vec<&'a str>,
    email: Vec<Option<&'a str>>,
    display_name: Vec<Option<&'a str>>,
    language: Vec<Option<&'a str>>,
    active: Vec<bool>,
    ldap_id: Vec<Option<&'a str>>,
    ldap_dn: Vec<Option<&'a str>>,
    avatar: Vec<Option<&'a [u8]>>,
    avatar_sha256: Vec<Option<&'a str>>,
    digest: Vec<Option<&'a [u8]>>,
    attributes: Vec<String>,
}

impl Batch<'_, '_> {
    fn grow(&mut self, before: Footprint, after: Footprint) {
        let signed = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
        self.growth += signed(after.bytes) - signed(before.bytes);
    }

    /// Creates the users of a run of [`Change::Create`]s, in bulk.
    async fn create_all(&mut self, creates: &[Change]) -> Result<Vec<UserId>, StoreError> {
        let mut columns = Columns::default();
        let mut users: Vec<&UserFields> = Vec::with_capacity(creates.len());
        for change in creates {
            let Change::Create {
                fields,
                avatar,
                mapped,
            } = change
            else {
                continue;
            };
            users.push(fields);
            columns.username.push(&fields.username);
            columns.email.push(fields.email.as_deref());
            columns.display_name.push(fields.display_name.as_deref());
            columns.language.push(fields.language.as_deref());
            columns.active.push(fields.active);
            columns.ldap_id.push(fields.ldap_id.as_deref());
            columns.ldap_dn.push(fields.ldap_dn.as_deref());
            columns.avatar.push(
                avatar
                    .as_ref()
                    .map(|avatar: &Avatar| avatar.bytes.as_slice()),
            );
            columns
                .avatar_sha256
                .push(avatar.as_ref().map(|avatar| avatar.sha256.as_str()));
            columns.digest.push(digest_bytes(mapped.as_ref()));
            columns
                .attributes
                .push(json_attributes(&fields.attributes)?);
            let footprint = Footprint::of(&fields.attributes);
            self.grow(Footprint::default(), footprint);
        }
        let at = self.cause.at;
        let params: [&(dyn ToSql + Sync); 13] = [
            &self.key,
            &at,
            &columns.username,
            &columns.email,
            &columns.display_name,
            &columns.language,
            &columns.active,
            &columns.ldap_id,
            &columns.ldap_dn,
            &columns.avatar,
            &columns.avatar_sha256,
            &columns.digest,
            &columns.attributes,
        ];
        // A plain insert first, as a taken name is rare and PostgreSQL checks a row
        // it may skip (ON CONFLICT) at nearly twice the cost; when one was taken, the
        // insert is undone to the savepoint and made again skipping the taken rows.
        self.tx.run("SAVEPOINT creations").await?;
        let rows = match self
            .tx
            .query_or(concat!(insert_users!(), " RETURNING id, username"), &params)
            .await?
        {
            Ok(rows) => {
                self.tx.run("RELEASE SAVEPOINT creations").await?;
                rows
            }
            Err(err) if is_unique_violation(&err) => {
                self.tx.run("ROLLBACK TO SAVEPOINT creations").await?;
                self.tx
                    .query(
                        concat!(
                            insert_users!(),
                            " ON CONFLICT DO NOTHING RETURNING id, username"
                        ),
                        &params,
                    )
                    .await?
            }
            Err(err) => return Err(err.into()),
        };
        let mut created: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        for row in &rows {
            created.insert(row.try_get(1)?, row.try_get(0)?);
        }
        // A username names one row of the tenant: the first creation of the run with
        // it, if that was written.
        let mut ids = Vec::with_capacity(users.len());
        let mut claimed = std::collections::HashSet::with_capacity(users.len());
        for fields in &users {
            match created.get(&fields.username) {
                Some(id) if claimed.insert(fields.username.as_str()) => ids.push(*id),
                // Skipped: a taken username or directory id.
                _ => return Err(self.conflict(fields, None).await),
            }
        }

        // The `created` events of the whole run.
        let events: Vec<NewEvent<'_>> = users
            .iter()
            .zip(&ids)
            .zip(&columns.attributes)
            .map(|((fields, id), attributes)| NewEvent {
                attributes: Some(attributes),
                ..NewEvent::lifecycle(*id, &fields.username, AuditKind::Created)
            })
            .collect();
        super::history::insert_events(self.tx, self.key, self.cause, &events).await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    /// Writes a run of updates of distinct users in bulk: their rows read (and locked)
    /// in one query, each one's changes planned as [`Self::update`] plans them, then
    /// one statement per kind of write for the whole run. False, with nothing written,
    /// when an update renames a user or changes its directory id, or changes its
    /// avatar: such runs are written one update at a time, which names the user
    /// holding a taken name.
    async fn update_all(&mut self, updates: &[Change]) -> Result<bool, StoreError> {
        let ids: Vec<i64> = updates
            .iter()
            .filter_map(|change| match change {
                Change::Update { id, .. } => Some(id.0),
                _ => None,
            })
            .collect();
        let rows = self
            .tx
            .query(
                "SELECT id, username, email, display_name, language, active, ldap_id, ldap_dn, \
                 avatar_sha256, attributes::text FROM users WHERE tenant_id = $1 AND id = ANY($2) \
                 ORDER BY id FOR UPDATE",
                &[&self.key, &ids],
            )
            .await?;
        let mut current: HashMap<i64, Current> = HashMap::with_capacity(rows.len());
        for row in &rows {
            current.insert(
                row.try_get(0)?,
                Current {
                    username: row.try_get(1)?,
                    email: row.try_get(2)?,
                    display_name: row.try_get(3)?,
                    language: row.try_get(4)?,
                    active: row.try_get(5)?,
                    ldap_id: row.try_get(6)?,
                    ldap_dn: row.try_get(7)?,
                    avatar_sha256: row.try_get(8)?,
                    attributes: row.try_get(9)?,
                },
            );
        }
        let mut plans = Vec::with_capacity(updates.len());
        for change in updates {
            let Change::Update {
                id,
                fields,
                attribute_changes,
                avatar,
                mapped,
            } = change
            else {
                return Ok(false);
            };
            let Some(stored) = current.get(&id.0) else {
                return Err(StoreError::NoSuchUser {
                    tenant: self.tenant,
                    id: *id,
                });
            };
            if stored.username != fields.username || stored.ldap_id != fields.ldap_id {
                return Ok(false);
            }
            let plan = UpdatePlan::new(stored, fields, attribute_changes, avatar)?;
            if plan.new_avatar.is_some() {
                return Ok(false);
            }
            plans.push((*id, fields, digest_bytes(mapped.as_ref()), plan));
        }

        let at = self.cause.at;
        // Profile fields (and the active flag) where they changed; else the digest,
        // and updated_at where only values changed.
        // New attributes (a JSON object) go with either, so that a user is updated
        // once: a row written once can stay on its page (HOT) and its indexes.
        let mut profile = Columns::default();
        let (mut profile_ids, mut profile_attributes) = (Vec::new(), Vec::new());
        let (mut touch_ids, mut touch_moved, mut touch_digest, mut touch_attributes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, fields, digest, plan) in &plans {
            if plan.touches_profile() {
                profile_ids.push(id.0);
                profile.email.push(fields.email.as_deref());
                profile.display_name.push(fields.display_name.as_deref());
                profile.language.push(fields.language.as_deref());
                profile.active.push(fields.active);
                profile.ldap_dn.push(fields.ldap_dn.as_deref());
                profile.digest.push(*digest);
                profile_attributes.push(plan.new_attributes.as_deref());
            } else {
                touch_ids.push(id.0);
                touch_moved.push(!plan.attribute_changes.is_empty());
                touch_digest.push(*digest);
                touch_attributes.push(plan.new_attributes.as_deref());
            }
            if plan.new_attributes.is_some() {
                let (before, after) = plan.footprint;
                self.grow(before, after);
            }
        }
        if !profile_ids.is_empty() {
            self.tx
                .execute(
                    "UPDATE users AS u SET email = t.email, display_name = t.display_name, \
                     language = t.language, active = t.active, ldap_dn = t.ldap_dn, \
                     updated_at = $2::bigint, mapped_digest = t.digest, \
                     attributes = coalesce(t.attributes::jsonb, u.attributes) \
                     FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::bool[], \
                     $8::text[], $9::bytea[], $10::text[]) AS t(id, email, display_name, language, \
                     active, ldap_dn, digest, attributes) WHERE u.tenant_id = $1 AND u.id = t.id",
                    &[
                        &self.key,
                        &at,
                        &profile_ids,
                        &profile.email,
                        &profile.display_name,
                        &profile.language,
                        &profile.active,
                        &profile.ldap_dn,
                        &profile.digest,
                        &profile_attributes,
                    ],
                )
                .await?;
        }
        if !touch_ids.is_empty() {
            self.tx
                .execute(
                    "UPDATE users AS u SET \
                     updated_at = CASE WHEN t.moved THEN $2::bigint ELSE u.updated_at END, \
                     mapped_digest = t.digest, attributes = coalesce(t.attributes::jsonb, u.attributes) \
                     FROM unnest($3::bigint[], $4::bool[], $5::bytea[], $6::text[]) \
                     AS t(id, moved, digest, attributes) WHERE u.tenant_id = $1 AND u.id = t.id",
                    &[
                        &self.key,
                        &at,
                        &touch_ids,
                        &touch_moved,
                        &touch_digest,
                        &touch_attributes,
                    ],
                )
                .await?;
        }
        let changed: Vec<String> = plans
            .iter()
            .map(|(_, _, _, plan)| plan.changed.join(","))
            .collect();
        let events: Vec<NewEvent<'_>> = plans
            .iter()
            .zip(&changed)
            .flat_map(|((id, fields, _, plan), changed)| {
                plan.events(id.0, &fields.username, fields.active, changed)
            })
            .collect();
        super::history::insert_events(self.tx, self.key, self.cause, &events).await?;
        Ok(true)
    }

    async fn update(
        &mut self,
        id: UserId,
        fields: &UserFields,
        attribute_changes: &[AttributeChange],
        avatar: &AvatarChange,
        mapped: Option<MappedDigest>,
    ) -> Result<UserId, StoreError> {
        let current = self.current(id).await?;
        let plan = UpdatePlan::new(&current, fields, attribute_changes, avatar)?;
        let at = self.cause.at;
        let mapped = digest_bytes(mapped.as_ref());
        if plan.touches_profile() {
            if (current.username != fields.username || current.ldap_id != fields.ldap_id)
                && let Some(conflict) = self.holder(fields, Some(id)).await?
            {
                return Err(conflict);
            }
            self.tx
                .execute(
                    "UPDATE users SET username = $3, email = $4, display_name = $5, language = $6, \
                     active = $7, ldap_id = $8, ldap_dn = $9, updated_at = $10, mapped_digest = $11 \
                     WHERE tenant_id = $1 AND id = $2",
                    &[
                        &self.key,
                        &id.0,
                        &fields.username,
                        &fields.email,
                        &fields.display_name,
                        &fields.language,
                        &fields.active,
                        &fields.ldap_id,
                        &fields.ldap_dn,
                        &at,
                        &mapped,
                    ],
                )
                .await?;
        }
        if let Some(new_avatar) = plan.new_avatar {
            self.tx
                .execute(
                    "UPDATE users SET avatar = $3, avatar_sha256 = $4, updated_at = $5, \
                     mapped_digest = $6 WHERE tenant_id = $1 AND id = $2",
                    &[
                        &self.key,
                        &id.0,
                        &new_avatar.map(|avatar| avatar.bytes.as_slice()),
                        &new_avatar.map(|avatar| avatar.sha256.as_str()),
                        &at,
                        &mapped,
                    ],
                )
                .await?;
        } else if !plan.touches_profile() {
            // Only the attribute rows change (updated_at moves), or nothing does: the
            // digest is all there is to record, and updated_at stays.
            let moved = !plan.attribute_changes.is_empty();
            self.tx
                .execute(
                    "UPDATE users SET updated_at = CASE WHEN $4 THEN $3 ELSE updated_at END, \
                     mapped_digest = $5 WHERE tenant_id = $1 AND id = $2",
                    &[&self.key, &id.0, &at, &moved, &mapped],
                )
                .await?;
        }
        if let Some(set) = &plan.new_attributes {
            let (before, after) = plan.footprint;
            self.grow(before, after);
            self.tx
                .execute(
                    "UPDATE users SET attributes = $3::text::jsonb WHERE tenant_id = $1 AND id = $2",
                    &[&self.key, &id.0, set],
                )
                .await?;
        }
        let changed = plan.changed.join(",");
        let events = plan.events(id.0, &fields.username, fields.active, &changed);
        super::history::insert_events(self.tx, self.key, self.cause, &events).await?;
        Ok(id)
    }

    async fn deactivate(&mut self, id: UserId) -> Result<UserId, StoreError> {
        let row = self
            .tx
            .query_opt(
                "UPDATE users SET active = FALSE, updated_at = $3, mapped_digest = NULL \
                 WHERE tenant_id = $1 AND id = $2 AND active RETURNING username",
                &[&self.key, &id.0, &self.cause.at],
            )
            .await?;
        match row {
            Some(row) => {
                let username: String = row.try_get(0)?;
                let event = NewEvent::lifecycle(id.0, &username, AuditKind::Deactivated);
                super::history::insert_events(self.tx, self.key, self.cause, &[event]).await?;
            }
            // Inactive already (a no-op), or not a user of this tenant.
            None => {
                self.current(id).await?;
            }
        }
        Ok(id)
    }

    async fn delete(&mut self, id: UserId) -> Result<UserId, StoreError> {
        let row = self
            .tx
            .query_opt(
                "DELETE FROM users WHERE tenant_id = $1 AND id = $2 RETURNING username, attributes::text",
                &[&self.key, &id.0],
            )
            .await?
            .ok_or(StoreError::NoSuchUser {
                tenant: self.tenant,
                id,
            })?;
        let username: String = row.try_get(0)?;
        let attributes = parse_attributes(row.try_get(1)?, "users")?;
        self.grow(Footprint::of(&attributes), Footprint::default());
        let event = NewEvent::lifecycle(id.0, &username, AuditKind::Deleted);
        super::history::insert_events(self.tx, self.key, self.cause, &[event]).await?;
        Ok(id)
    }

    /// The stored values of user `id`, locked until the transaction ends;
    /// [`StoreError::NoSuchUser`] when the tenant has no such user.
    async fn current(&mut self, id: UserId) -> Result<Current, StoreError> {
        let row = self
            .tx
            .query_opt(
                "SELECT username, email, display_name, language, active, ldap_id, ldap_dn, \
                 avatar_sha256, attributes::text FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
                &[&self.key, &id.0],
            )
            .await?
            .ok_or(StoreError::NoSuchUser {
                tenant: self.tenant,
                id,
            })?;
        Ok(Current {
            username: row.try_get(0)?,
            email: row.try_get(1)?,
            display_name: row.try_get(2)?,
            language: row.try_get(3)?,
            active: row.try_get(4)?,
            ldap_id: row.try_get(5)?,
            ldap_dn: row.try_get(6)?,
            avatar_sha256: row.try_get(7)?,
            attributes: row.try_get(8)?,
        })
    }

    /// The conflict of `fields` with the user holding its username or directory id, or
    /// a database error when none can be named.
    async fn conflict(&mut self, fields: &UserFields, own: Option<UserId>) -> StoreError {
        match self.holder(fields, own).await {
            Ok(Some(conflict)) => conflict,
            Ok(None) => StoreError::Database(crate::store::DatabaseError::new(
                crate::store::DatabaseErrorKind::Other,
                format!(
                    "tenant {}: user `{}` could not be created, and no user holds its username or directory id",
                    self.tenant, fields.username
                ),
            )),
            Err(err) => err,
        }
    }

    /// The conflict with another user of the tenant holding the username or directory
    /// id of `fields`. That user may have been created earlier in this batch.
    async fn holder(
        &mut self,
        fields: &UserFields,
        own: Option<UserId>,
    ) -> Result<Option<StoreError>, StoreError> {
        let candidates = [
            (
                "username",
                "SELECT id FROM users WHERE tenant_id = $1 AND username = $2",
                Some(&fields.username),
            ),
            (
                "ldap_id",
                "SELECT id FROM users WHERE tenant_id = $1 AND ldap_id = $2",
                fields.ldap_id.as_ref(),
            ),
        ];
        for (field, sql, value) in candidates {
            let Some(value) = value else { continue };
            let row = self.tx.query_opt(sql, &[&self.key, value]).await?;
            let existing = row.map(|row| row.try_get(0)).transpose()?.map(UserId);
            if let Some(existing) = existing
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
