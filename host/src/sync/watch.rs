//! Watch mode: for each tenant with `[tenant.ldap] watch = true`, one replica keeps a
//! persistent search (RFC 4533 refreshAndPersist) open on the directory and, as changes
//! arrive, runs an incremental sync, which reads them by the tenant's cookie (deletions
//! included) and applies them through the plugin like any sync: the same removal
//! threshold, audit and per-user results, one sync of a tenant at a time. Changes that
//! arrive while a sync runs are gathered into the next one.
//!
//! The watch is leased in the store: one replica watches a tenant at a time, renews its
//! lease every few seconds, and gives it back when it stops; a replica that dies loses
//! it when the lease runs out, and another takes the watch over. A broken connection is
//! reopened with a growing pause (1 s to 1 min), and the first sync after reopening
//! reads whatever changed while nobody watched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::engine::SyncRequest;
use super::service::SyncService;
use crate::config::TenantConfig;
use crate::ldap::{DirectoryError, LdapDirectory};
use crate::plugin::model::{SyncMode, TenantId};

/// How long a watch lease lasts unless renewed.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often the lease is renewed, and a replica without it looks again.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often the watchers are matched to the tenants' settings.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// How often a quiet connection is checked with a read of its own.
const CHECK_EVERY: Duration = Duration::from_secs(30);
/// Changes arriving this close together go into one sync.
const GATHER: Duration = Duration::from_millis(20);
/// Syncs of one burst while they find nothing of it.
const CATCH_UP_TRIES: usize = 5;
/// The first pause between them (doubling: 25 ms to 200 ms, 375 ms in all).
const CATCH_UP_PAUSE: Duration = Duration::from_millis(25);
/// Pauses before reopening a broken watch.
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause before reopening.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// Runs until the service stops: starts a watcher for each tenant that asks for one,
/// replaces it when the tenant's settings change, and stops those no longer wanted.
pub async fn run_watchers(service: Arc<SyncService>) {
    let mut watchers: HashMap<TenantId, (Arc<TenantConfig>, JoinHandle<()>)> = HashMap::new();
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if service.is_stopping() {
            break;
        }
        let wanted: HashMap<TenantId, Arc<TenantConfig>> = service
            .tenants()
            .into_iter()
            .filter(|tenant| tenant.ldap_enabled && tenant.ldap.watch)
            .map(|tenant| (tenant.id, tenant))
            .collect();
        let stale: Vec<TenantId> = watchers
            .iter()
            .filter(|(id, (config, _))| wanted.get(id).is_none_or(|now| now.ldap != config.ldap))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some((_, handle)) = watchers.remove(&id) {
                handle.abort();
                release(&service, id).await;
            }
        }
        for (id, config) in wanted {
            watchers.entry(id).or_insert_with(|| {
                let handle = tokio::spawn(watch_tenant(service.clone(), config.clone()));
                (config, handle)
            });
        }
    }
    for (id, (_, handle)) in watchers {
        handle.abort();
        release(&service, id).await;
    }
}

/// Gives the watch of `tenant` back, so that another replica takes it at once.
async fn release(service: &Arc<SyncService>, tenant: TenantId) {
    let (tasks, owner) = (service.task_store().clone(), service.replica().to_owned());
    match tokio::task::spawn_blocking(move || tasks.release_watch(tenant, &owner)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(tenant, %err, "cannot give the watch back"),
        Err(err) => tracing::warn!(tenant, %err, "giving the watch back panicked"),
    }
}

/// Takes or renews the watch of `tenant` for this replica: whether it holds it.
async fn claim(service: &Arc<SyncService>, tenant: TenantId) -> bool {
    let (tasks, owner) = (service.task_store().clone(), service.replica().to_owned());
    let now = service.now();
    let until = now.saturating_add(i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX));
    match tokio::task::spawn_blocking(move || tasks.claim_watch(tenant, &owner, until, now)).await {
        Ok(Ok(held)) => held,
        Ok(Err(err)) => {
            tracing::warn!(tenant, %err, "cannot claim the watch");
            false
        }
        Err(err) => {
            tracing::warn!(tenant, %err, "claiming the watch panicked");
            false
        }
    }
}

/// Runs an incremental sync of `tenant` (joining one already queued) and waits for it:
/// whether it found changes (or cannot tell: a joined task, a failure).
async fn sync_changes(service: &Arc<SyncService>, tenant: TenantId) -> bool {
    let request = SyncRequest::new(SyncMode::Incremental, "", "watch");
    match service
        .start(
            tenant,
            "watch",
            serde_json::json!({"mode": "incremental"}),
            None,
            request,
        )
        .await
    {
        Ok(started) => match started.handle {
            Some(handle) => match handle.await {
                Ok(outcome) => outcome.report.is_none_or(|report| found_changes(&report)),
                Err(_) => true,
            },
            None => {
                drop(service.wait(started.task.id).await);
                true
            }
        },
        Err(err) => {
            tracing::warn!(tenant, %err, "cannot start the sync of the changes watched");
            true
        }
    }
}

/// Whether a sync read or removed anything, or ran otherwise than asked (a full sync,
/// a failure): a sync of announced changes that did neither read them too early.
pub fn found_changes(report: &super::SyncReport) -> bool {
    report.counts.read > 0
        || report.counts.writes() > 0
        || report.mode != "incremental"
        || !report.succeeded()
}

/// One watch of `directory`: calls `on_changes` (a sync of the changes, which answers
/// whether it found any) once for each burst of changes, and once at the start for what
/// changed while nobody watched; and `hold` every few seconds to renew the lease.
/// Returns `None` when `hold` says the lease is lost, else how the watch ended (a
/// broken connection, an unsupported server).
///
/// A sync that finds nothing of an announced change (read before the change was
/// readable to another operation, or while another process held the tenant) runs
/// again, a few times, a growing moment apart.
pub async fn watch_session<H, C>(
    directory: &LdapDirectory,
    mut hold: impl FnMut() -> H,
    mut on_changes: impl FnMut() -> C,
) -> Option<Result<(), DirectoryError>>
where
    H: Future<Output = bool>,
    C: Future<Output = bool>,
{
    let (changed, mut changes) = tokio::sync::watch::channel::<u64>(0);
    let watching = directory.watch(changed, CHECK_EVERY);
    tokio::pin!(watching);
    let mut renew = tokio::time::interval(RENEW_EVERY);
    renew.tick().await;
    let mut first = true;
    loop {
        tokio::select! {
            ended = &mut watching => return Some(ended),
            Ok(()) = changes.changed() => {
                // A burst of changes: gather it, then sync it once.
                tokio::time::sleep(GATHER).await;
                changes.borrow_and_update();
                let mut pause = CATCH_UP_PAUSE;
                for _ in 0..CATCH_UP_TRIES {
                    if on_changes().await || first {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                first = false;
            }
            _ = renew.tick() => {
                if !hold().await {
                    return None;
                }
            }
        }
    }
}

/// Watches one tenant for as long as this replica holds its lease, reopening the
/// watch when it breaks.
async fn watch_tenant(service: Arc<SyncService>, tenant: Arc<TenantConfig>) {
    let id = tenant.id;
    let mut pause = FIRST_PAUSE;
    loop {
        if !claim(&service, id).await {
            tokio::time::sleep(RENEW_EVERY).await;
            continue;
        }
        let directory = tenant
            .ldap
            .bind_password(id)
            .map_err(|err| err.to_string())
            .and_then(|password| {
                LdapDirectory::new(&tenant.ldap, password).map_err(|err| err.to_string())
            });
        let directory = match directory {
            Ok(directory) => directory,
            Err(reason) => {
                tracing::warn!(tenant = id, %reason, "cannot watch the directory");
                release(&service, id).await;
                tokio::time::sleep(LONGEST_PAUSE).await;
                continue;
            }
        };
        tracing::info!(tenant = id, "watching the directory");
        let started = tokio::time::Instant::now();
        let ended = watch_session(
            &directory,
            || claim(&service, id),
            || sync_changes(&service, id),
        )
        .await;
        if ended.is_none() {
            tracing::warn!(tenant = id, "the watch lease went to another replica");
        }
        match ended {
            None => {}
            Some(Ok(())) => pause = FIRST_PAUSE,
            Some(Err(DirectoryError::Unsupported { what })) => {
                tracing::warn!(tenant = id, reason = %what, "cannot watch the directory");
                release(&service, id).await;
                tokio::time::sleep(LONGEST_PAUSE).await;
            }
            Some(Err(err)) => {
                if started.elapsed() > LONGEST_PAUSE {
                    pause = FIRST_PAUSE;
                }
                tracing::warn!(tenant = id, %err, pause_secs = pause.as_secs(), "the watch broke; reopening it");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
}
