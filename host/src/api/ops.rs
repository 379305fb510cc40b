//! `GET /health`, `GET /ready` and Prometheus `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

/// Liveness: answers while the server runs.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Running", body = Value, example = json!({"status": "ok", "version": "0.1.0", "tenants": 2}))))]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "tenants": state.service.tenants().len(),
    }))
}

/// How long a readiness probe waits for the store before it answers 503.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: whether the server can serve sessions now. It looks an account up in
/// the store the way every login and session check does (through the same pool of
/// blocking threads), and answers 503 when that does not come back within 2 s: a
/// store that is down, or a pool that is full. Plugin calls run on threads of their
/// own and never fill it; their load is reported.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Value,
            example = json!({"status": "ready", "storeMs": 0.4, "pluginCalls": {"running": 2, "queued": 0, "threads": 4}})),
        (status = 503, description = "Cannot serve sessions now", body = Value,
            example = json!({"status": "unavailable", "reason": "the user store did not answer within 2 s"})),
    ))]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let started = std::time::Instant::now();
    let probe = state.accounts(|accounts| accounts.account(0).map(|_| ()));
    let load = state.service.registry().engine().load_now();
    let plugin_calls =
        json!({"running": load.running, "queued": load.queued, "threads": load.threads});
    match tokio::time::timeout(READY_WITHIN, probe).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "storeMs": started.elapsed().as_secs_f64() * 1000.0,
                "pluginCalls": plugin_calls,
            })),
        ),
        Ok(Err(err)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "unavailable", "reason": format!("the user store failed: {err}"), "pluginCalls": plugin_calls}),
            ),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "unavailable", "reason": format!("the user store did not answer within {} s", READY_WITHIN.as_secs()), "pluginCalls": plugin_calls}),
            ),
        ),
    }
}

/// The quotas counted in `abacsync_quota_refusals_total`, each shown from the start.
const QUOTAS: [&str; 6] = [
    "user_attributes",
    "tenant_attribute_bytes",
    "tenant_plugins",
    "tenant_plugin_bytes",
    "tenant_plugin_max_bytes",
    "page_bytes",
];

/// Prometheus metrics: syncs by outcome, durations, entries read, plugin errors, task queue.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let m = state.service.metrics();
    let plugin_load = state.service.registry().engine().load_now();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP abacsync_syncs_total Syncs that ended, by outcome."
    );
    let _ = writeln!(out, "# TYPE abacsync_syncs_total counter");
    let outcomes = m
        .outcomes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut outcomes: Vec<_> = outcomes.into_iter().collect();
    outcomes.sort();
    let mut total = 0;
    for (outcome, count) in outcomes {
        total += count;
        let _ = writeln!(out, "abacsync_syncs_total{{outcome=\"{outcome}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "# HELP abacsync_sync_duration_seconds Time syncs took."
    );
    let _ = writeln!(out, "# TYPE abacsync_sync_duration_seconds summary");
    let _ = writeln!(
        out,
        "abacsync_sync_duration_seconds_sum {}",
        m.duration_ms_sum.load(Relaxed) as f64 / 1000.0
    );
    let _ = writeln!(out, "abacsync_sync_duration_seconds_count {total}");
    for (name, help, kind, value) in [
        (
            "abacsync_entries_read_total",
            "Directory entries read.",
            "counter",
            m.entries_read.load(Relaxed) as i64,
        ),
        (
            "abacsync_plugin_errors_total",
            "Plugin calls that failed and entries the plugin reported errors for.",
            "counter",
            m.plugin_errors.load(Relaxed) as i64,
        ),
        (
            "abacsync_tasks_queued",
            "Tasks waiting for their tenant's running sync.",
            "gauge",
            m.queued.load(Relaxed),
        ),
        (
            "abacsync_tasks_running",
            "Tasks running.",
            "gauge",
            m.running.load(Relaxed),
        ),
        (
            "abacsync_plugin_calls_running",
            "Plugin calls running on the plugin threads.",
            "gauge",
            plugin_load.running as i64,
        ),
        (
            "abacsync_plugin_calls_queued",
            "Plugin calls waiting for a plugin thread (each tenant within its share).",
            "gauge",
            plugin_load.queued as i64,
        ),
        (
            "abacsync_audit_events_pruned_total",
            "Audit events removed past their retention (quotas.audit_retention_days, audit_max_events).",
            "counter",
            m.audit_pruned.load(Relaxed) as i64,
        ),
        (
            "abacsync_tasks_taken_over_total",
            "Tasks of replicas that died, taken over by this replica and run again.",
            "counter",
            m.taken_over.load(Relaxed) as i64,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP abacsync_quota_refusals_total Refusals by quota: users not written, syncs refused, uploads refused, pages cut short."
    );
    let _ = writeln!(out, "# TYPE abacsync_quota_refusals_total counter");
    let refusals = m
        .quota_refusals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for quota in QUOTAS {
        let count = refusals.get(quota).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "abacsync_quota_refusals_total{{quota=\"{quota}\"}} {count}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
