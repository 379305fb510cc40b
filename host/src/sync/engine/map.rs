//! Mapping: the plugin called for each batch of entries while the next is read and
//! the previous one planned; unchanged users recognised by their digest.

use super::*;

/// An entry's outcome as the mapping stage passes it on.
pub(super) enum Outcome {
    /// The plugin's decision, with its mapped digest when it is an upsert the sync may
    /// recognise as unchanged.
    Mapped(crate::plugin::model::EntryOutcome, Option<MappedDigest>),
    /// An upsert of a user stored with the same digest: nothing to compare or write.
    Unchanged {
        id: UserId,
        ldap_id: String,
        username: String,
    },
}

/// Whether the last sync wrote `user` from an upsert of `username` with `digest`:
/// then that upsert changes nothing.
pub(super) fn written_from(
    user: &LdapUserRef,
    username: &str,
    digest: Option<MappedDigest>,
) -> bool {
    digest.is_some() && user.mapped == digest && user.username == username
}

/// A batch after the plugin: one outcome per entry, with what the diff needs.
pub(super) struct MappedBatch {
    pub(super) dns: Vec<String>,
    pub(super) avatars: Vec<Option<Avatar>>,
    pub(super) outcomes: Vec<Outcome>,
    /// The stored users of the batch's directory ids that are not unchanged.
    pub(super) known: HashMap<String, LdapUserRef>,
    pub(super) plugin_ms: u64,
    /// The latest change mark among the batch's entries.
    pub(super) mark: Option<String>,
}

/// What the mapping stage needs, owned (it runs on its own task).
pub(super) struct MapStage {
    pub(super) tenant: u64,
    pub(super) plugin: Arc<TenantPlugin>,
    pub(super) store: Arc<dyn UserStore>,
    pub(super) rules: PlanRules,
    pub(super) mode: SyncMode,
    pub(super) change_attribute: String,
    /// Whether the plugin asked for `change_attribute` (otherwise it is withheld).
    pub(super) plugin_reads_change_attribute: bool,
    pub(super) plugin_attributes: HashSet<String>,
    pub(super) progress: Progress,
}

/// Calls the plugin for each batch of entries, while the next batch is being read and
/// the previous one diffed.
pub(super) async fn map_stage(
    stage: MapStage,
    mut receiver: mpsc::Receiver<Vec<Entry>>,
    sender: mpsc::Sender<MappedBatch>,
) -> Result<(), SyncError> {
    // Up to this many plugin calls run at once (each in its own fresh instance);
    // results are passed on in the directory's order.
    const IN_FLIGHT: usize = 2;
    let mut pending = std::collections::VecDeque::new();
    loop {
        let next = if pending.len() < IN_FLIGHT {
            receiver.recv().await
        } else {
            None
        };
        let Some(mut batch) = next else {
            let Some(call) = pending.pop_front() else {
                return Ok(());
            };
            if !forward(&stage, call, &sender).await? {
                return Ok(());
            }
            continue;
        };
        if stage.progress.is_cancelled() {
            return Ok(());
        }
        stage.progress.add_read(batch.len() as u64);
        let mut dns = Vec::with_capacity(batch.len());
        let mut avatars = Vec::with_capacity(batch.len());
        let mut mark: Option<String> = None;
        for entry in &mut batch {
            dns.push(entry.dn.clone());
            if let Some(value) = entry.values(&stage.change_attribute).first() {
                mark = later_mark(mark.take(), value);
            }
            avatars.push(if stage.rules.sync_avatars {
                avatar_of(entry)
            } else {
                None
            });
            // The plugin sees what it asked for (and the identifiers), not avatars nor
            // the change attribute: each value it does not need costs a copy into its
            // memory.
            if !stage.plugin_reads_change_attribute {
                entry
                    .attributes
                    .retain(|(name, _)| !name.eq_ignore_ascii_case(&stage.change_attribute));
            }
            entry.binary_attributes.retain(|(name, _)| {
                !AVATAR_ATTRIBUTES
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(name))
                    || stage.plugin_attributes.contains(&name.to_ascii_lowercase())
            });
        }
        let first_dn = dns.first().cloned().unwrap_or_default();
        let last_dn = dns.last().cloned().unwrap_or_default();
        let len = dns.len();
        let plugin = stage.plugin.clone();
        let mapping_context = plugin.context(stage.mode);
        let store = stage.store.clone();
        let rules = stage.rules.clone();
        let tenant = stage.tenant;
        // The call runs on the plugin threads, then the lookup of its users on a
        // blocking thread: the decisions of unchanged users are recognised as the
        // plugin wrote them, and never decoded.
        let call = tokio::spawn(async move {
            let output = plugin
                .plugin
                .map_entries_raw_async(&mapping_context, batch)
                .await
                .map_err(CallFailure::Plugin)?;
            tokio::task::spawn_blocking(move || {
                let duration = output.stats.duration;
                let (outcomes, known) =
                    screen(store.as_ref(), tenant, &rules, &output, &dns, &avatars)
                        .map_err(CallFailure::Store)?;
                Ok(Screened {
                    dns,
                    avatars,
                    outcomes,
                    known,
                    duration,
                })
            })
            .await
            .unwrap_or_else(|err| {
                Err(CallFailure::Store(StoreError::Panicked(format!(
                    "screening the batch: {err}"
                ))))
            })
        });
        pending.push_back(PendingCall {
            call,
            first_dn,
            last_dn,
            len,
            mark,
        });
    }
}

/// A plugin call under way, with what its batch carries past the plugin.
pub(super) struct PendingCall {
    pub(super) call: tokio::task::JoinHandle<Result<Screened, CallFailure>>,
    /// The batch's first and last DNs and size, to name it when the call fails.
    pub(super) first_dn: String,
    pub(super) last_dn: String,
    pub(super) len: usize,
    pub(super) mark: Option<String>,
}

/// A batch mapped and screened for unchanged users.
pub(super) struct Screened {
    pub(super) dns: Vec<String>,
    pub(super) avatars: Vec<Option<Avatar>>,
    pub(super) outcomes: Vec<Outcome>,
    pub(super) known: HashMap<String, LdapUserRef>,
    pub(super) duration: std::time::Duration,
}

/// Why a mapping call failed.
pub(super) enum CallFailure {
    Plugin(CallError),
    Store(StoreError),
}

/// Recognises the upserts of users stored with the same mapped digest (unchanged:
/// [`Outcome::Unchanged`], their decisions never decoded); returns the outcomes and
/// the batch's other known users. Targeted syncs write attributes only, so their users
/// are always compared.
pub(super) fn screen(
    store: &dyn UserStore,
    tenant: u64,
    rules: &PlanRules,
    raw: &RawBatch,
    dns: &[String],
    avatars: &[Option<Avatar>],
) -> Result<(Vec<Outcome>, HashMap<String, LdapUserRef>), StoreError> {
    let decisions = raw.decisions();
    let ids: Vec<Option<DecisionIds>> = decisions.iter().map(RawDecision::ids).collect();
    let lookup: Vec<String> = ids
        .iter()
        .flatten()
        .map(|ids| match ids {
            DecisionIds::Upsert { ldap_id, .. } | DecisionIds::Deactivate { ldap_id } => {
                ldap_id.clone()
            }
        })
        .collect();
    let mut known: HashMap<String, LdapUserRef> = store
        .known_by_ldap_ids(tenant, &lookup)?
        .into_iter()
        .map(|user| (user.ldap_id.clone(), user))
        .collect();
    let mut outcomes = Vec::with_capacity(decisions.len());
    for (((decision, ids), dn), avatar) in decisions.into_iter().zip(ids).zip(dns).zip(avatars) {
        let upsert = match (ids, decision_text(&decision)) {
            (Some(DecisionIds::Upsert { ldap_id, username }), Some(text))
                if !rules.attributes_only =>
            {
                Some((ldap_id, username, text))
            }
            _ => None,
        };
        let Some((ldap_id, username, text)) = upsert else {
            outcomes.push(Outcome::Mapped(decision.decode(), None));
            continue;
        };
        let digest = mapped_digest(text, dn, avatar.as_ref(), rules);
        match known.get(&ldap_id) {
            Some(stored) if written_from(stored, &username, Some(digest)) => {
                let id = stored.id;
                // Not needed further (a second entry with this id is a conflict).
                known.remove(&ldap_id);
                outcomes.push(Outcome::Unchanged {
                    id,
                    ldap_id,
                    username,
                });
            }
            _ => outcomes.push(Outcome::Mapped(decision.decode(), Some(digest))),
        }
    }
    Ok((outcomes, known))
}

/// An upsert as its digest reads it.
pub(super) fn decision_text<'a>(decision: &RawDecision<'a>) -> Option<DecisionText<'a>> {
    match *decision {
        RawDecision::Json(text) => Some(DecisionText::Json(text)),
        RawDecision::Columns { shapes, texts } => Some(DecisionText::Columns { shapes, texts }),
        RawDecision::Decoded(Ok(Decision::Upsert(user))) => Some(DecisionText::User(user)),
        RawDecision::Decoded(_) => None,
    }
}

/// Waits for `pending` and sends its batch on; `false` when the diff stage is gone.
pub(super) async fn forward(
    stage: &MapStage,
    pending: PendingCall,
    sender: &mpsc::Sender<MappedBatch>,
) -> Result<bool, SyncError> {
    let screened = pending
        .call
        .await
        .map_err(|err| SyncError::Internal {
            tenant: stage.tenant,
            reason: err.to_string(),
        })?
        .map_err(|failure| match failure {
            CallFailure::Plugin(cause) => SyncError::Plugin {
                tenant: stage.tenant,
                plugin: stage.plugin.plugin.label().to_owned(),
                batch: describe_batch(&pending.first_dn, &pending.last_dn, pending.len),
                cause: Box::new(cause),
            },
            CallFailure::Store(cause) => SyncError::Store {
                tenant: stage.tenant,
                cause,
            },
        })?;
    stage.progress.add_mapped(screened.dns.len() as u64);
    let batch = MappedBatch {
        dns: screened.dns,
        avatars: screened.avatars,
        outcomes: screened.outcomes,
        known: screened.known,
        plugin_ms: u64::try_from(screened.duration.as_millis()).unwrap_or(u64::MAX),
        mark: pending.mark,
    };
    // A closed channel means the diff stage stopped; its error is the one to report.
    Ok(sender.send(batch).await.is_ok())
}

/// Names the entries of a failed call for its error: a whole-call failure (a trap, an
/// exception outside a plugin SDK's per-entry guard) cannot say which entry caused it.
pub(super) fn describe_batch(first: &str, last: &str, len: usize) -> String {
    match len {
        0 => String::new(),
        1 => format!(" mapping entry `{first}`"),
        len => format!(" mapping {len} entries from `{first}` to `{last}`"),
    }
}

pub(super) fn avatar_of(entry: &Entry) -> Option<Avatar> {
    AVATAR_ATTRIBUTES.iter().find_map(|name| {
        entry.binary_values(name).first().map(|bytes| Avatar {
            sha256: crate::plugin::hex(&Sha256::digest(bytes)),
            bytes: bytes.clone(),
        })
    })
}
