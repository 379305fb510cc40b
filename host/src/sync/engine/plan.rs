//! Planning: each mapped batch diffed against the store (the users to create,
//! update, deactivate, and why not), one result per entry.

use super::*;
use crate::sync::records::{RecordError, RecordLog};
use crate::sync::results::ResultLog;

/// What reading and diffing produced, before anything is written.
#[derive(Default)]
pub(super) struct Diff {
    pub(super) changes: RecordLog<Change>,
    /// For each change, the index of its result.
    pub(super) change_results: Vec<u32>,
    pub(super) results: ResultLog,
    pub(super) counts: Counts,
    /// Directory ids seen, with the index of the first entry's result.
    pub(super) seen_ids: SeenKeys,
    /// Usernames mapped, with the index of the first entry's result.
    pub(super) seen_usernames: SeenKeys,
    pub(super) failed_entries: u64,
    /// Continuation references the read got.
    pub(super) references: u64,
    /// How the read tracked changes (`syncrepl`, `timestamps`).
    pub(super) tracking: Option<&'static str>,
    pub(super) high_water_mark: Option<String>,
    pub(super) changed_keys: BTreeSet<String>,
    pub(super) plugin_ms: u64,
    /// Attribute bytes ([`Footprint`]) the planned creations and updates add, less
    /// what the updates remove (deletions are not counted: the quota check errs on
    /// the side of the quota).
    pub(super) attribute_growth: i64,
    /// Where the logs spill.
    pub(super) spill: Option<Arc<std::path::Path>>,
}

impl Diff {
    /// An empty diff whose logs spill into `folder` (`None`: the temporary folder).
    pub(super) fn spilling_to(folder: Option<Arc<std::path::Path>>) -> Diff {
        Diff {
            changes: RecordLog::default().in_folder(folder.clone()),
            results: ResultLog::in_folder(folder.clone()),
            spill: folder,
            ..Diff::default()
        }
    }

    pub(super) fn push(&mut self, planned: Planned) {
        self.counts.add(planned.result.action);
        self.changed_keys.extend(planned.changed_keys);
        let mut result = planned.result;
        if let Some(change) = planned.change {
            self.attribute_growth += attribute_growth(&change);
            match self.changes.push(&change) {
                Ok(()) => self.change_results.push(index(self.results.len())),
                // Kept by the log, which the sync checks before it writes.
                Err(RecordError::Spill { .. }) => {}
                Err(err) => {
                    // Not expected (every field encodes); the user fails alone if it does.
                    self.counts.failed += 1;
                    result.action = Action::Failed;
                    result.code = code::FAILED;
                    result.message = format!("cannot hold the change: {err}");
                }
            }
        }
        self.results.push(result);
    }

    /// Whether every planned change and result was kept (the temporary folder took
    /// them).
    pub(super) fn check(&self) -> Result<(), RecordError> {
        self.changes.check()?;
        self.results.check()
    }

    /// What is left of this diff when only removals are planned: which directory ids
    /// were seen, and whether the read was whole.
    pub(super) fn removals_base(self) -> Diff {
        Diff {
            seen_ids: self.seen_ids,
            failed_entries: self.failed_entries,
            references: self.references,
            counts: Counts {
                read: self.counts.read,
                ..Counts::default()
            },
            plugin_ms: self.plugin_ms,
            ..Diff::spilling_to(self.spill)
        }
    }

    /// The DN of result `index`, for messages.
    pub(super) fn result_dn(&self, index: usize) -> String {
        self.results
            .get(index)
            .ok()
            .and_then(|result| result.dn)
            .unwrap_or_default()
    }

    /// Records directory id `ldap_id` as read at `dn`; when an earlier entry had it,
    /// fails this one (reported with `username`) and returns `false`.
    pub(super) fn claim_id(&mut self, dn: &str, ldap_id: &str, username: &str) -> bool {
        self.claim(Claim::Id, ldap_id, dn, username)
    }

    /// Records `username` as mapped from `dn`; when an earlier entry mapped to it,
    /// fails this one and returns `false`.
    pub(super) fn claim_username(&mut self, dn: &str, username: &str) -> bool {
        self.claim(Claim::Username, username, dn, username)
    }

    pub(super) fn claim(&mut self, claim: Claim, key: &str, dn: &str, username: &str) -> bool {
        let next = self.results.len();
        let seen = match claim {
            Claim::Id => &mut self.seen_ids,
            Claim::Username => &mut self.seen_usernames,
        };
        let Some(first) = seen.first_seen(key, next) else {
            return true;
        };
        let first = self.result_dn(first);
        let message = match claim {
            Claim::Id => format!("directory id {key} also belongs to {first}"),
            Claim::Username => format!("username {key} also mapped from {first}"),
        };
        self.fail(dn, username.to_owned(), code::CONFLICT, message);
        false
    }

    /// A user the mapping stage found unchanged (stored with this decision's digest).
    pub(super) fn unchanged(
        &mut self,
        dn: &str,
        id: UserId,
        ldap_id: String,
        username: String,
        check_names: bool,
    ) {
        if !self.claim_id(dn, &ldap_id, &username)
            || (check_names && !self.claim_username(dn, &username))
        {
            return;
        }
        self.push(Planned {
            change: None,
            result: UserResult {
                id: Some(id.0),
                username,
                dn: Some(dn.to_owned()),
                code: code::UNCHANGED,
                action: Action::Unchanged,
                message: "unchanged".into(),
            },
            changed_keys: Vec::new(),
        });
    }

    pub(super) fn fail(&mut self, dn: &str, username: String, code: u16, message: String) {
        self.failed_entries += 1;
        self.counts.add(Action::Failed);
        self.results.push(UserResult {
            id: None,
            username: if username.is_empty() {
                entry_name(dn)
            } else {
                username
            },
            dn: Some(dn.to_owned()),
            code,
            action: Action::Failed,
            message,
        });
    }
}

/// What an entry claims for itself within one sync.
#[derive(Clone, Copy)]
pub(super) enum Claim {
    Id,
    Username,
}

/// Later of two change marks: numerically when both are numbers (USNs), else as text
/// (generalized times of one server share a format).
pub(super) fn later_mark(current: Option<String>, candidate: &str) -> Option<String> {
    match current {
        None => Some(candidate.to_owned()),
        Some(current) => {
            let later = match (current.parse::<u64>(), candidate.parse::<u64>()) {
                (Ok(a), Ok(b)) => b > a,
                _ => candidate > current.as_str(),
            };
            Some(if later { candidate.to_owned() } else { current })
        }
    }
}

impl SyncEngine {
    /// Receives mapped batches and plans the changes.
    pub(super) async fn process(
        &self,
        context: &Context<'_>,
        mut receiver: mpsc::Receiver<MappedBatch>,
        mut diff: Diff,
    ) -> Result<Diff, SyncError> {
        let tenant_id = context.tenant.id;
        while let Some(batch) = receiver.recv().await {
            if context.progress.is_cancelled() {
                return Ok(diff);
            }
            let MappedBatch {
                dns,
                avatars,
                outcomes,
                known,
                plugin_ms,
                mark,
            } = batch;
            diff.plugin_ms += plugin_ms;
            if let Some(mark) = mark {
                diff.high_water_mark = later_mark(diff.high_water_mark.take(), &mark);
            }

            // Unchanged users were recognised by the mapping stage. In one query each:
            // the other known users, to compare, and the holders of usernames that are
            // new or renamed.
            let check_names = !context.rules.attributes_only;
            let mut compare = Vec::new();
            let mut usernames = Vec::new();
            for outcome in &outcomes {
                match outcome {
                    Outcome::Mapped(Ok(Decision::Upsert(user)), _) => {
                        let found = known.get(&user.ldap_id);
                        if found.is_some() {
                            compare.push(user.ldap_id.clone());
                        }
                        if check_names && found.map(|user| &user.username) != Some(&user.username) {
                            usernames.push(user.username.clone());
                        }
                    }
                    Outcome::Mapped(Ok(Decision::Deactivate { ldap_id, .. }), _)
                        if known.contains_key(ldap_id) =>
                    {
                        compare.push(ldap_id.clone());
                    }
                    _ => {}
                }
            }
            let (by_id, by_name) = if compare.is_empty() && usernames.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                self.blocking(tenant_id, move |store| {
                    let by_id = store.users_by_ldap_ids(tenant_id, &compare)?;
                    let by_name = store.users_by_usernames(tenant_id, &usernames)?;
                    Ok((by_id, by_name))
                })
                .await?
            };
            let by_id: HashMap<String, StoredUser> = by_id
                .into_iter()
                .filter_map(|user| user.fields.ldap_id.clone().map(|id| (id, user)))
                .collect();
            let by_name: HashMap<String, StoredUser> = by_name
                .into_iter()
                .map(|user| (user.fields.username.clone(), user))
                .collect();

            for ((outcome, dn), avatar) in outcomes.into_iter().zip(dns).zip(avatars) {
                let (outcome, digest) = match outcome {
                    Outcome::Unchanged {
                        id,
                        ldap_id,
                        username,
                    } => {
                        diff.unchanged(&dn, id, ldap_id, username, check_names);
                        continue;
                    }
                    Outcome::Mapped(outcome, digest) => (outcome, digest),
                };
                match outcome {
                    Err(error) => diff.fail(
                        &dn,
                        String::new(),
                        code::MAPPING_ERROR,
                        format!("plugin error: {error}"),
                    ),
                    Ok(Decision::Skip { reason }) => diff.push(Planned {
                        change: None,
                        result: UserResult {
                            id: None,
                            username: entry_name(&dn),
                            dn: Some(dn),
                            code: code::SKIPPED,
                            action: Action::Skipped,
                            message: reason,
                        },
                        changed_keys: Vec::new(),
                    }),
                    Ok(Decision::Deactivate { ldap_id, reason }) => {
                        if diff.claim_id(&dn, &ldap_id, "") {
                            diff.push(plan_deactivate(&dn, by_id.get(&ldap_id), &reason));
                        }
                    }
                    Ok(Decision::Upsert(user)) => {
                        if !diff.claim_id(&dn, &user.ldap_id, &user.username) {
                            continue;
                        }
                        let mut existing = by_id.get(&user.ldap_id);
                        if context.adopt && existing.is_none() {
                            existing = by_name.get(&user.username);
                        }
                        if check_names {
                            if !diff.claim_username(&dn, &user.username) {
                                continue;
                            }
                            if let Some(holder) = by_name.get(&user.username)
                                && existing.is_none_or(|mine| mine.id != holder.id)
                            {
                                diff.fail(
                                    &dn,
                                    user.username.clone(),
                                    code::CONFLICT,
                                    format!(
                                        "username {} belongs to user {} ({})",
                                        user.username,
                                        holder.id,
                                        holder.fields.ldap_dn.as_deref().unwrap_or("a local user")
                                    ),
                                );
                                continue;
                            }
                        }
                        diff.push(plan_upsert(
                            user,
                            &dn,
                            existing,
                            avatar,
                            &context.rules,
                            digest,
                        ));
                    }
                }
            }
        }
        Ok(diff)
    }
}

/// The attribute bytes `change` adds (negative: frees).
pub(super) fn attribute_growth(change: &Change) -> i64 {
    let signed = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
    match change {
        Change::Create { fields, .. } => signed(Footprint::of(&fields.attributes).bytes),
        Change::Update {
            attribute_changes, ..
        } => attribute_changes
            .iter()
            .map(|change| {
                let mut added = Footprint::default();
                added.add(&change.key, &change.added);
                let mut removed = Footprint::default();
                removed.add(&change.key, &change.removed);
                signed(added.bytes) - signed(removed.bytes)
            })
            .sum(),
        Change::Deactivate { .. } | Change::Delete { .. } => 0,
    }
}

/// A name for an entry that never became a user (skipped, or failed before its
/// username was known): the value of its DN's first RDN (`uid=jdoe,ou=people,…` →
/// `jdoe`), the escapes of RFC 4514 removed.
pub(super) fn entry_name(dn: &str) -> String {
    let mut value = String::new();
    let mut started = false;
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '=' if !started => started = true,
            ',' | '+' if started => break,
            '\\' if started => {
                let rest = chars.as_str();
                match rest
                    .get(..2)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    // A hex pair: one byte of UTF-8 (multi-byte characters come as
                    // several pairs; kept as text when the whole run decodes).
                    Some(_) => {
                        let mut bytes = Vec::new();
                        let mut tail = rest;
                        while let Some(byte) = tail
                            .get(..2)
                            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                        {
                            bytes.push(byte);
                            tail = &tail[2..];
                            match tail.strip_prefix('\\') {
                                Some(next)
                                    if next
                                        .get(..2)
                                        .is_some_and(|hex| u8::from_str_radix(hex, 16).is_ok()) =>
                                {
                                    tail = next
                                }
                                _ => break,
                            }
                        }
                        value.push_str(&String::from_utf8_lossy(&bytes));
                        chars = tail.chars();
                    }
                    None => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                }
            }
            _ if started => value.push(c),
            _ => {}
        }
    }
    let value = value.trim().to_owned();
    if value.is_empty() {
        dn.to_owned()
    } else {
        value
    }
}

/// Targeted identifiers that match no stored user get a 404 result.
pub(super) fn record_unknown_targets(
    targets: &UserIdentifiers,
    users: &[StoredUser],
    diff: &mut Diff,
) {
    let mut unknown = Vec::new();
    for name in &targets.usernames {
        if !users.iter().any(|u| &u.fields.username == name) {
            unknown.push(("username", name));
        }
    }
    for id in &targets.ids {
        if !users.iter().any(|u| &u.id.0.to_string() == id) {
            unknown.push(("id", id));
        }
    }
    for email in &targets.emails {
        if !users.iter().any(|u| {
            u.fields
                .email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        }) {
            unknown.push(("email", email));
        }
    }
    for ldap_id in &targets.ldap_ids {
        if !users
            .iter()
            .any(|u| u.fields.ldap_id.as_deref() == Some(ldap_id.as_str()))
        {
            unknown.push(("ldapId", ldap_id));
        }
    }
    for (kind, value) in unknown {
        diff.push(Planned {
            change: None,
            result: UserResult {
                id: None,
                username: if kind == "username" {
                    value.clone()
                } else {
                    String::new()
                },
                dn: None,
                code: code::NOT_FOUND,
                action: Action::NotFound,
                message: if kind == "id" && value.parse::<i64>().is_err() {
                    // A Rocket.Chat client passes its own `_id`s, which name no user here.
                    format!(
                        "no user with id {value}: ids are abacsync's user ids (the admin API's \"id\"), not Rocket.Chat's _id; name the user by username, email or ldapId"
                    )
                } else {
                    format!("no user with {kind} {value}")
                },
            },
            changed_keys: Vec::new(),
        });
    }
}

/// A result's index as kept beside its change: a sync has far fewer than 4 billion.
pub(super) fn index(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
