//! Applying: the planned changes written in chunks, each a transaction, side by side
//! where the store allows; then the history pruned.

use super::*;

impl SyncEngine {
    /// Removes the tenant's audit events and run records past the quotas' retention;
    /// how many events went. A failure is logged, never the sync's.
    pub(super) async fn prune_history(&self, tenant_id: u64, now: Timestamp) -> u64 {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let quotas = self.quotas;
        let limits = HistoryLimits {
            events_before: (quotas.audit_retention_days > 0).then(|| {
                now.saturating_sub(
                    i64::try_from(quotas.audit_retention_days)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(DAY_MS),
                )
            }),
            max_events: quotas.audit_max_events,
            max_runs: quotas.sync_runs_kept,
        };
        match self
            .blocking(tenant_id, move |store| {
                store.prune_history(tenant_id, &limits)
            })
            .await
        {
            Ok(pruned) => {
                if pruned > 0 {
                    tracing::info!(
                        tenant = tenant_id,
                        pruned,
                        "audit events past their retention removed"
                    );
                }
                pruned
            }
            Err(err) => {
                tracing::warn!(tenant = tenant_id, error = %err, "cannot remove old audit events");
                0
            }
        }
    }

    /// Writes the diff in chunks of one transaction each. A chunk refused for a
    /// conflict is retried change by change, so one bad user fails alone.
    ///
    /// Where the store writes with several server processes
    /// ([`UserStore::concurrent_applies`]), that many chunks are written at once. A
    /// chunk that fails beside others (two transactions waiting on each other's new
    /// names, a deadlock the database breaks) is written again alone before its
    /// failure counts.
    pub(super) async fn apply(
        &self,
        tenant_id: u64,
        request: &SyncRequest,
        diff: &mut Diff,
        progress: &Progress,
    ) -> Result<(), SyncError> {
        // A change stream is named in the cause (`sync:incremental/syncrepl:…`, `…/tombstones:…`).
        let stream = match diff.tracking {
            Some(tracking @ ("syncrepl" | "tombstones")) => format!("/{tracking}"),
            _ => String::new(),
        };
        let cause = ChangeCause {
            cause: format!("sync:{}{stream}:{}", request.mode.as_str(), request.cause),
            run_id: Some(request.run_id.clone()),
            at: (self.clock)(),
        };
        let changes = std::mem::take(&mut diff.changes);
        let change_results = std::mem::take(&mut diff.change_results);
        progress.set_to_write(changes.len() as u64);
        let at_once = self.store.concurrent_applies().max(1);
        let mut offset = 0;
        while offset < changes.len() {
            // The next `at_once` chunks, written side by side.
            let mut group = Vec::with_capacity(at_once);
            let mut next = offset;
            while group.len() < at_once && next < changes.len() {
                let (start, end) = (next, (next + APPLY_CHUNK).min(changes.len()));
                let chunk = changes
                    .read(start..end)
                    .map_err(|cause| unreadable(tenant_id, cause, progress))?;
                let chunk_cause = cause.clone();
                let store = self.store.clone();
                // Started now, so that the group's chunks are written side by side.
                let write = tokio::task::spawn_blocking(move || {
                    let applied = store.apply(tenant_id, &chunk, &chunk_cause);
                    (chunk, applied)
                });
                group.push((start, write));
                next = end;
            }
            let alone = group.len() == 1;
            // Every chunk of the group is awaited before any failure is returned, so
            // that the report counts what the others committed.
            let mut written = Vec::with_capacity(group.len());
            for (start, write) in group {
                written.push((start, write.await));
            }
            let mut failure = None;
            for (start, write) in written {
                let (chunk, mut applied) = write.map_err(|err| SyncError::Internal {
                    tenant: tenant_id,
                    reason: err.to_string(),
                })?;
                // Past a failure, only what committed is still counted.
                let past_failure = failure.is_some();
                if past_failure && applied.is_err() {
                    continue;
                }
                if !past_failure && !alone && matches!(applied, Err(StoreError::Database(_))) {
                    let again = chunk.clone();
                    let again_cause = cause.clone();
                    applied = self
                        .blocking(tenant_id, move |store| {
                            Ok(store.apply(tenant_id, &again, &again_cause))
                        })
                        .await?;
                }
                if let Err(err) = self
                    .record_chunk(
                        tenant_id,
                        &cause,
                        diff,
                        &change_results,
                        start,
                        chunk,
                        applied,
                        progress,
                    )
                    .await
                {
                    failure.get_or_insert(err);
                }
            }
            if let Some(err) = failure {
                return Err(err);
            }
            offset = next;
        }
        Ok(())
    }

    /// Takes in how one chunk of the diff (from `offset` on) was written: the users'
    /// ids, or on a conflict the chunk again change by change, each committed on its
    /// own.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_chunk(
        &self,
        tenant_id: u64,
        cause: &ChangeCause,
        diff: &mut Diff,
        change_results: &[u32],
        offset: usize,
        chunk: Vec<Change>,
        applied: Result<Vec<UserId>, StoreError>,
        progress: &Progress,
    ) -> Result<(), SyncError> {
        match applied {
            Ok(ids) => {
                for (index, id) in ids.into_iter().enumerate() {
                    diff.results
                        .set_id(change_results[offset + index] as usize, id.0);
                }
                progress.add_written(chunk.len() as u64);
                Ok(())
            }
            Err(StoreError::Conflict { .. } | StoreError::NoSuchUser { .. }) => {
                // One change at a time, each committed on its own: counted as it is
                // written, so that a later failure says how far it got.
                for (index, change) in chunk.into_iter().enumerate() {
                    let single = vec![change];
                    let single_cause = cause.clone();
                    let result = self
                        .blocking(tenant_id, move |store| {
                            Ok(store.apply(tenant_id, &single, &single_cause))
                        })
                        .await?;
                    let slot = change_results[offset + index] as usize;
                    match result {
                        Ok(ids) => {
                            if let Some(id) = ids.first() {
                                diff.results.set_id(slot, id.0);
                            }
                            progress.add_written(1);
                        }
                        Err(
                            err @ (StoreError::Conflict { .. } | StoreError::NoSuchUser { .. }),
                        ) => {
                            let mut failed = diff
                                .results
                                .get(slot)
                                .map_err(|cause| unreadable(tenant_id, cause, progress))?;
                            fail_applied(
                                &mut diff.counts,
                                &mut failed,
                                code::CONFLICT,
                                err.to_string(),
                            );
                            diff.results.replace(slot, failed);
                        }
                        Err(err) => {
                            return Err(SyncError::Store {
                                tenant: tenant_id,
                                cause: err,
                            });
                        }
                    }
                }
                Ok(())
            }
            Err(err) => Err(SyncError::Store {
                tenant: tenant_id,
                cause: err,
            }),
        }
    }
}

pub(super) fn fail_applied(counts: &mut Counts, slot: &mut UserResult, code: u16, message: String) {
    let counter = match slot.action {
        Action::Created => &mut counts.created,
        Action::Updated => &mut counts.updated,
        Action::Deactivated => &mut counts.deactivated,
        Action::Reactivated => &mut counts.reactivated,
        Action::Deleted => &mut counts.deleted,
        _ => &mut counts.failed,
    };
    *counter = counter.saturating_sub(1);
    counts.failed += 1;
    slot.action = Action::Failed;
    slot.code = code;
    slot.message = message;
}

/// The plan could not be read back while it was written: says how far the writing got.
fn unreadable(
    tenant: u64,
    cause: crate::sync::records::RecordError,
    progress: &Progress,
) -> SyncError {
    let now = progress.snapshot();
    SyncError::Records {
        tenant,
        cause,
        written: Some((now.written, now.to_write)),
    }
}
