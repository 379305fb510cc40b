//! Background syncs: each tenant with an interval gets a full sync once per period,
//! the periods being the multiples of the interval since the Unix epoch (so every
//! replica agrees on them), over every replica: the replica that first claims a
//! period in the store fires it, the others skip it. A scheduled sync joins one
//! already queued. A new or changed interval waits for the next period's start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::engine::SyncRequest;
use super::service::SyncService;
use crate::plugin::model::{SyncMode, TenantId};

/// How often due syncs are looked for.
const TICK: Duration = Duration::from_secs(1);

/// The start (ms since the epoch) of the period of `interval_secs` that holds `now`.
fn period_start(now: i64, interval_secs: u64) -> Option<i64> {
    let length = i64::try_from(interval_secs).ok()?.checked_mul(1000)?;
    (length > 0).then(|| now.div_euclid(length) * length)
}

/// Runs forever (until the runtime stops), starting the syncs of periods this replica
/// claims first.
pub async fn run_scheduler(service: Arc<SyncService>) {
    // Each tenant's interval and the period this replica saw last.
    let mut seen: HashMap<TenantId, (u64, i64)> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = service.now();
        let mut scheduled = Vec::new();
        for entry in service.tenants() {
            let id = entry.id;
            let (Some(secs), _) = service.interval(id) else {
                continue;
            };
            if secs == 0 || !entry.ldap_enabled {
                continue;
            }
            let Some(period) = period_start(now, secs) else {
                tracing::warn!(
                    tenant = id,
                    secs,
                    "the sync interval is too long; no background syncs"
                );
                continue;
            };
            scheduled.push(id);
            match seen.insert(id, (secs, period)) {
                // A period this replica knows already, or an interval it sees for the
                // first time: nothing to fire yet.
                Some((interval, last)) if interval == secs && last == period => continue,
                Some((interval, _)) if interval == secs => {}
                _ => continue,
            }
            let tasks = service.task_store().clone();
            let claimed =
                tokio::task::spawn_blocking(move || tasks.claim_schedule(id, period)).await;
            match claimed {
                Ok(Ok(true)) => {}
                // Another replica fired this period.
                Ok(Ok(false)) => continue,
                Ok(Err(err)) => {
                    tracing::error!(tenant = id, %err, "cannot claim the scheduled sync");
                    continue;
                }
                Err(err) => {
                    tracing::error!(tenant = id, %err, "claiming the scheduled sync panicked");
                    continue;
                }
            }
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
        seen.retain(|id, _| scheduled.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_multiples_of_the_interval_since_the_epoch() {
        assert_eq!(period_start(0, 60), Some(0));
        assert_eq!(period_start(59_999, 60), Some(0));
        assert_eq!(period_start(60_000, 60), Some(60_000));
        assert_eq!(period_start(-1, 60), Some(-60_000));
        assert_eq!(period_start(1_000, 0), None);
        assert_eq!(period_start(1_000, u64::MAX), None);
    }
}
