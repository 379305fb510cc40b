//! Background syncs: each tenant with an interval gets a full sync every interval
//! (joining one already queued), measured from the scheduler's start or the last
//! start. Intervals can change while the server runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::engine::SyncRequest;
use super::service::SyncService;
use crate::plugin::model::{SyncMode, TenantId};

/// How often due syncs are looked for.
const TICK: Duration = Duration::from_secs(1);

/// Runs forever (until the runtime stops), starting due syncs.
pub async fn run_scheduler(service: Arc<SyncService>) {
    let mut next: HashMap<TenantId, (u64, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut seen = Vec::new();
        for entry in service.tenants() {
            let id = entry.id;
            let (Some(secs), _) = service.interval(id) else {
                continue;
            };
            if secs == 0 || !entry.ldap_enabled {
                continue;
            }
            let Some(then) = now.checked_add(Duration::from_secs(secs)) else {
                tracing::warn!(
                    tenant = id,
                    secs,
                    "the sync interval is too long; no background syncs"
                );
                continue;
            };
            seen.push(id);
            let due = match next.get(&id) {
                // A changed interval restarts the countdown.
                Some(&(interval, due)) if interval == secs => due,
                _ => {
                    next.insert(id, (secs, then));
                    continue;
                }
            };
            if now < due {
                continue;
            }
            next.insert(id, (secs, then));
            let request = SyncRequest::new(SyncMode::Full, "", "schedule");
            if let Err(err) = service
                .start(
                    id,
                    "schedule",
                    serde_json::json!({"mode": "full"}),
                    None,
                    request,
                )
                .await
            {
                tracing::error!(tenant = id, %err, "cannot start the scheduled sync");
            }
        }
        next.retain(|id, _| seen.contains(id));
    }
}
