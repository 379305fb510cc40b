//! Removals: the users gone from the directory (not read by a full read, or reported
//! deleted by content synchronization), under the tenant's policy and thresholds.

use super::*;

/// Which users a sync finds gone from the directory.
pub(super) enum Gone {
    /// Every directory user not read, nor listed here (by directory id) as present: a
    /// full read, or a content synchronization's present phase.
    NotSeen(HashSet<String>),
    /// These directory ids: a content synchronization's delete phase.
    Listed(HashSet<String>),
}

/// What an operator should be told of a removal phase that did not remove.
pub(super) fn removal_note(removal: &RemovalOutcome) -> Option<String> {
    match removal {
        RemovalOutcome::SkippedAfterErrors { failed_entries } => Some(format!(
            "removals skipped: {failed_entries} entries failed, and a user whose entry failed must not look removed; users removed from the directory stay until a sync without failures"
        )),
        RemovalOutcome::SkippedAfterReferrals { references } => Some(format!(
            "removals skipped: the directory referred {references} parts of the base to other servers, whose users would look removed; users removed from the directory stay active (set ldap.ignore_referrals when the referred parts hold no users)"
        )),
        RemovalOutcome::Refused {
            missing,
            total,
            limit,
        } => Some(format!(
            "removals refused: {missing} of {total} directory users are gone, {limit}"
        )),
        RemovalOutcome::NotApplicable | RemovalOutcome::Done { .. } => None,
    }
}

impl SyncEngine {
    /// Plans the removal of the users no longer in the directory, under the tenant's
    /// policy and thresholds. With `report_kept`, the missing users the policy keeps
    /// (or that are inactive already) are reported too, as not found.
    pub(super) async fn plan_removals(
        &self,
        context: &Context<'_>,
        gone: &Gone,
        force: bool,
        report_kept: bool,
        diff: &mut Diff,
    ) -> Result<RemovalOutcome, SyncError> {
        // A user whose entry failed, or is held by a server the read was referred to,
        // must not look removed; a deletion the directory reports is one whatever else
        // the read met.
        if let Gone::NotSeen(_) = gone {
            if diff.failed_entries > 0 {
                return Ok(RemovalOutcome::SkippedAfterErrors {
                    failed_entries: diff.failed_entries,
                });
            }
            if diff.references > 0 && !context.tenant.ldap.ignore_referrals {
                return Ok(RemovalOutcome::SkippedAfterReferrals {
                    references: diff.references,
                });
            }
        }
        let tenant_id = context.tenant.id;
        let missed = |user: &crate::store::LdapUserRef| {
            !diff.seen_ids.contains(&user.ldap_id)
                && match gone {
                    Gone::NotSeen(present) => !present.contains(&user.ldap_id),
                    Gone::Listed(deleted) => deleted.contains(&user.ldap_id),
                }
        };
        // Deletions told by the directory: only those users are read (and counted, for
        // the threshold); otherwise every directory user, a page at a time, keeping
        // those missing.
        let (missing, total) = match gone {
            Gone::Listed(deleted) if deleted.is_empty() => {
                return Ok(RemovalOutcome::Done {
                    missing: 0,
                    removed: 0,
                });
            }
            Gone::Listed(deleted) => {
                let ids: Vec<String> = deleted.iter().cloned().collect();
                let (index, total) = self
                    .blocking(tenant_id, move |store| {
                        Ok((
                            store.known_by_ldap_ids(tenant_id, &ids)?,
                            store.count_ldap_users(tenant_id)?,
                        ))
                    })
                    .await?;
                let missing: Vec<_> = index.into_iter().filter(|user| missed(user)).collect();
                (missing, total)
            }
            Gone::NotSeen(_) => {
                const PAGE: u32 = 10_000;
                let (mut missing, mut total) = (Vec::new(), 0u64);
                let mut after = UserId(i64::MIN);
                loop {
                    let page = self
                        .blocking(tenant_id, move |store| {
                            store.ldap_user_page(tenant_id, after, PAGE)
                        })
                        .await?;
                    let Some(last) = page.last() else { break };
                    after = last.id;
                    total += page.len() as u64;
                    missing.extend(page.into_iter().filter(|user| missed(user)));
                }
                (missing, total)
            }
        };
        let policy = context.tenant.removal.policy;
        let removed = |user: &&crate::store::LdapUserRef| match policy {
            RemovalPolicy::Deactivate => user.active,
            RemovalPolicy::Delete => true,
            RemovalPolicy::Keep => false,
        };
        let to_remove: Vec<_> = missing.iter().filter(removed).collect();
        if report_kept {
            for user in missing.iter().filter(|user| !removed(user)) {
                diff.push(Planned {
                    change: None,
                    result: UserResult {
                        id: Some(user.id.0),
                        username: user.username.clone(),
                        dn: None,
                        code: code::NOT_FOUND,
                        action: Action::NotFound,
                        message: "not found in the directory; kept by the removal policy".into(),
                    },
                    changed_keys: Vec::new(),
                });
            }
        }
        let count = to_remove.len() as u64;
        let removal = &context.tenant.removal;
        let over_count = removal
            .max_count
            .filter(|max| count > *max)
            .map(|max| format!("more than {max} users"));
        let over_percent = removal
            .max_percent
            .filter(|max| total > 0 && count as f64 * 100.0 / total as f64 > *max)
            .map(|max| format!("more than {max}% of them"));
        if let Some(limit) = over_count.or(over_percent)
            && !force
        {
            return Ok(RemovalOutcome::Refused {
                missing: count,
                total,
                limit,
            });
        }
        let why = match gone {
            Gone::NotSeen(_) => "no longer in the directory",
            Gone::Listed(_) if diff.tracking == Some("tombstones") => {
                "deleted from the directory (its tombstone)"
            }
            Gone::Listed(_) => "deleted from the directory (content synchronization)",
        };
        for user in to_remove {
            let (change, action, message) = match policy {
                RemovalPolicy::Delete => (
                    Change::Delete { id: user.id },
                    Action::Deleted,
                    format!("deleted: {why}"),
                ),
                _ => (
                    Change::Deactivate { id: user.id },
                    Action::Deactivated,
                    format!("deactivated: {why}"),
                ),
            };
            diff.push(Planned {
                change: Some(change),
                result: UserResult {
                    id: Some(user.id.0),
                    username: user.username.clone(),
                    dn: None,
                    code: code::REMOVED,
                    action,
                    message,
                },
                changed_keys: Vec::new(),
            });
        }
        Ok(RemovalOutcome::Done {
            missing: missing.len() as u64,
            removed: count,
        })
    }
}
