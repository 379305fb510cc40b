//! Plugins through the admin API: upload a component (refused ones answer with the
//! validation error), try one over posted entries, assign one to a tenant with
//! settings, list a tenant's versions, roll back.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::visible_tenant;
use super::error::ApiError;
use super::error::json_body;
use super::iso8601;
use super::session::Caller;
use super::session::Session;
use super::{AppState, blocking};
use crate::auth::Permission;
use crate::mapping_test;
use crate::plugin::model::{MappingContext, SyncMode};
use crate::plugin::{CallError, CallErrorKind};
use crate::store::{
    Assignment, NewPlugin, PluginDeletion, PluginId, PluginQuota, StoreError, StoredPlugin,
};
use crate::sync::PluginLoadError;

/// Entries per call when trying a plugin over posted entries.
const TEST_BATCH: usize = 500;

pub(super) fn router() -> OpenApiRouter<AppState> {
    let max_component_bytes = crate::plugin::SandboxConfig::default().max_component_bytes;
    OpenApiRouter::new()
        .routes(routes!(upload, list))
        .layer(DefaultBodyLimit::max(max_component_bytes.saturating_add(1)))
        .routes(routes!(one, delete))
        .routes(routes!(test))
        .routes(routes!(assign, current))
        .routes(routes!(versions))
        .routes(routes!(rollback))
        .routes(routes!(resume))
}

fn plugin_json(plugin: &StoredPlugin) -> Value {
    json!({
        "id": plugin.id,
        "sha256": plugin.sha256,
        "label": plugin.label,
        "name": plugin.name,
        "version": plugin.version,
        "size": plugin.size,
        "tenant": plugin.tenant,
        "created": iso8601(plugin.created_at),
    })
}

fn assignment_json(assignment: &Assignment) -> Value {
    json!({
        "id": assignment.id,
        "tenant": assignment.tenant,
        "pluginId": assignment.plugin,
        "settings": assignment.settings,
        "assignedBy": assignment.assigned_by,
        "assigned": iso8601(assignment.assigned_at),
        "reason": assignment.reason,
    })
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

/// Uploads a plugin component (the request body, `application/wasm`).
///
/// The component is validated and compiled as a sync would; a refused one answers 422
/// with the reason. A tenant-scoped caller's upload is visible to its tenant only.
#[utoipa::path(post, path = "/api/v1/admin/plugins", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    params(("name" = Option<String>, Query, description = "A name for people (default: the plugin's own)")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    responses(
        (status = 201, description = "Stored (or already stored: the same id)", body = Value),
        (status = 413, description = "Larger than the sandbox's component limit", body = Value),
        (status = 422, description = "Not a valid plugin", body = Value,
            example = json!({"message": "Plugin refused", "errors": ["plugin `x.wasm` imports `wasi:http/outgoing-handler@0.2.0`, which the sandbox does not provide: plugins have no network access"]})),
    ))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    let quotas = *state.service.quotas();
    let owner = session.principal.tenant;
    if owner.is_some() && body.len() as u64 > quotas.tenant_plugin_max_bytes {
        state
            .service
            .metrics()
            .quota_refused("tenant_plugin_max_bytes", 1);
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "This plugin is {} bytes; a tenant's admins may upload at most {} (quotas.tenant_plugin_max_bytes)",
                body.len(),
                quotas.tenant_plugin_max_bytes
            ),
        ));
    }
    let label = query.name.unwrap_or_else(|| "upload.wasm".to_owned());
    let service = state.service.clone();
    let bytes = body.clone();
    let checked_label = label.clone();
    let loaded = blocking(move || {
        Ok(service
            .registry()
            .load_shared(&checked_label, &bytes)
            .map(|plugin| (plugin.info().clone(), plugin.report().sha256.clone())))
    })
    .await?;
    let (info, sha256) =
        loaded.map_err(|err| ApiError::unprocessable("Plugin refused", vec![err.to_string()]))?;
    let catalog = state.service.catalog().clone();
    let by = session.principal.account;
    let now = state.now_ms();
    let stored = blocking(move || {
        Ok(catalog.add_plugin(
            &NewPlugin {
                sha256,
                tenant: owner,
                label,
                name: info.name,
                version: info.version,
                component: &body,
                uploaded_by: Some(by),
                quota: Some(PluginQuota {
                    max_count: quotas.tenant_plugins,
                    max_bytes: quotas.tenant_plugin_bytes,
                }),
            },
            now,
        ))
    })
    .await?;
    let stored = match stored {
        Err(err @ StoreError::OverQuota { quota, .. }) => {
            state.service.metrics().quota_refused(quota, 1);
            return Err(ApiError::new(StatusCode::CONFLICT, err.to_string()));
        }
        other => other?,
    };
    Ok((StatusCode::CREATED, Json(plugin_json(&stored))))
}

/// Plugins the caller may use: its tenant's and system-wide ones.
#[utoipa::path(get, path = "/api/v1/admin/plugins", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    responses((status = 200, description = "Plugins", body = Value)))]
async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    let catalog = state.service.catalog().clone();
    let scope = session.principal.tenant;
    let plugins = blocking(move || catalog.list_plugins(scope)).await?;
    Ok(Json(
        json!({"data": plugins.iter().map(plugin_json).collect::<Vec<_>>()}),
    ))
}

async fn visible_plugin(
    state: &AppState,
    session: &Session,
    id: PluginId,
) -> Result<StoredPlugin, ApiError> {
    let catalog = state.service.catalog().clone();
    let plugin = blocking(move || catalog.plugin(id)).await?;
    plugin
        .filter(|plugin| {
            plugin.tenant.is_none()
                || session.principal.tenant.is_none()
                || plugin.tenant == session.principal.tenant
        })
        .ok_or_else(|| ApiError::not_found(format!("Plugin {id} not found")))
}

/// One plugin.
#[utoipa::path(get, path = "/api/v1/admin/plugins/{id}", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    params(("id" = i64, Path, description = "Plugin ID")),
    responses((status = 200, description = "The plugin", body = Value), (status = 404, description = "Not found", body = Value)))]
async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<PluginId>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    Ok(Json(plugin_json(
        &visible_plugin(&state, &session, id).await?,
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    /// Entries in the JSON fixture format.
    entries: Option<Value>,
    /// Entries as LDIF.
    ldif: Option<String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    mode: Option<String>,
    tenant: Option<u64>,
    /// Expected output: differences are listed.
    expected: Option<Value>,
}

/// Deletes a plugin that is no tenant's current one, to make room in the tenant's
/// plugin quota. Its versions go with it: they can no longer be rolled back to. A
/// tenant's admins delete their tenant's plugins only.
#[utoipa::path(delete, path = "/api/v1/admin/plugins/{id}", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    params(("id" = i64, Path, description = "Plugin ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "A system-wide plugin, and the caller is a tenant's admin", body = Value),
        (status = 404, description = "Not found", body = Value),
        (status = 409, description = "A tenant's current plugin", body = Value,
            example = json!({"message": "Plugin 3 is the current plugin of tenant 4; assign another first"})),
    ))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<PluginId>,
) -> Result<StatusCode, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    let plugin = visible_plugin(&state, &session, id).await?;
    if session.principal.tenant.is_some() && plugin.tenant.is_none() {
        return Err(ApiError::forbidden());
    }
    let catalog = state.service.catalog().clone();
    match blocking(move || catalog.delete_plugin(id)).await? {
        PluginDeletion::Deleted => Ok(StatusCode::NO_CONTENT),
        PluginDeletion::NotFound => Err(ApiError::not_found(format!("Plugin {id} not found"))),
        PluginDeletion::InUse(tenant) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Plugin {id} is the current plugin of tenant {tenant}; assign another first"),
        )),
    }
}

/// Runs a plugin over posted entries (JSON fixture format or LDIF), with no directory
/// and nothing written: what it would decide for each, and the differences from
/// `expected` when given.
#[utoipa::path(post, path = "/api/v1/admin/plugins/{id}/test", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    params(("id" = i64, Path, description = "Plugin ID")),
    request_body(content = Value, example = json!({
        "entries": [{"dn": "uid=alice,ou=people,dc=example,dc=org", "attributes": {"uid": ["alice"], "mail": ["alice@example.org"]}}],
        "settings": {"abac.department": "departmentNumber"},
        "expected": [{"dn": "uid=alice,ou=people,dc=example,dc=org", "decision": "upsert"}]})),
    responses(
        (status = 200, description = "Decisions, cost, logs, differences", body = Value),
        (status = 400, description = "Invalid entries or body", body = Value),
        (status = 404, description = "Not found", body = Value),
        (status = 422, description = "The plugin refused the settings or failed", body = Value),
        (status = 429, description = "The tenant already has as many plugin calls waiting as it may", body = Value),
    ))]
async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<PluginId>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    let stored = visible_plugin(&state, &session, id).await?;
    let body: TestBody = json_body(&body)?;
    let entries = match (&body.entries, &body.ldif) {
        (Some(entries), None) => crate::fixtures::json::parse(&entries.to_string())
            .map_err(|err| ApiError::invalid(vec![format!("entries: {err}")]))?,
        (None, Some(ldif)) => crate::fixtures::ldif::parse(ldif)
            .map_err(|err| ApiError::invalid(vec![format!("ldif: {err}")]))?,
        _ => {
            return Err(ApiError::invalid(vec![
                "give either entries or ldif".into(),
            ]));
        }
    };
    let mode = match body.mode.as_deref() {
        None => SyncMode::Full,
        Some(name) => name
            .parse()
            .map_err(|err| ApiError::invalid(vec![format!("mode: {err}")]))?,
    };
    // The calls run in the tenant's share of the plugin threads: a tenant's account
    // tests as its own tenant, never as another.
    let tenant_id = match (session.principal.tenant, body.tenant) {
        (Some(own), Some(asked)) if asked != own => {
            return Err(ApiError::invalid(vec![format!(
                "tenant: an account of tenant {own} tests as tenant {own}"
            )]));
        }
        (Some(own), _) => own,
        (None, asked) => asked.unwrap_or(0),
    };
    let context = MappingContext {
        tenant_id,
        mode,
        settings: body.settings.into_iter().collect(),
    };
    let catalog = state.service.catalog().clone();
    let service = state.service.clone();
    let plugin = blocking(move || {
        let bytes = catalog.plugin_component(id)?.unwrap_or_default();
        Ok(service.registry().load_shared(&stored.label, &bytes))
    })
    .await?
    .map_err(|err| ApiError::unprocessable("The plugin failed", vec![err.to_string()]))?;
    let failed = |err: CallError| match err.kind {
        CallErrorKind::Busy { .. } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, err.to_string()),
        _ => ApiError::unprocessable("The plugin failed", vec![err.to_string()]),
    };
    plugin
        .required_attributes_async(&context)
        .await
        .map_err(failed)?;
    let run = mapping_test::run_async(&plugin, &context, entries, TEST_BATCH)
        .await
        .map_err(failed)?;
    let actual = mapping_test::to_json(&run.results);
    let mut answer = json!({
        "results": actual,
        "stats": {
            "entries": run.stats.entries,
            "calls": run.stats.calls,
            "durationMs": run.stats.duration.as_secs_f64() * 1000.0,
            "peakMemory": run.stats.peak_memory,
        },
        "logs": run.logs.iter().map(|log| json!({"level": log.level.as_str(), "message": log.message})).collect::<Vec<_>>(),
    });
    if let Some(expected) = &body.expected {
        let differences = mapping_test::compare(expected, &answer["results"]);
        answer["matches"] = json!(differences.is_empty());
        answer["differences"] = json!(
            differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
    Ok(Json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AssignBody {
    plugin_id: PluginId,
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

fn load_error(err: PluginLoadError) -> ApiError {
    match err {
        PluginLoadError::Store(err) => err.into(),
        PluginLoadError::NotStored { plugin, .. } => {
            ApiError::not_found(format!("Plugin {plugin} not found"))
        }
        other => ApiError::unprocessable("Plugin refused", vec![other.to_string()]),
    }
}

async fn assign_to(
    state: &AppState,
    session: &Session,
    tenant: u64,
    plugin: PluginId,
    settings: BTreeMap<String, String>,
    reason: &'static str,
) -> Result<Assignment, ApiError> {
    visible_plugin(state, session, plugin).await?;
    let service = state.service.clone();
    let by = session.principal.account;
    let result =
        blocking(move || Ok(service.assign_plugin(tenant, plugin, &settings, Some(by), reason)))
            .await?;
    result.map_err(load_error)
}

/// Gives a tenant a plugin with settings; its syncs use it from now on. The plugin
/// must accept the settings.
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant}/plugin", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant ID")),
    request_body(content = Value, example = json!({"pluginId": 3, "settings": {"abac.department": "departmentNumber"}})),
    responses(
        (status = 200, description = "The new current assignment", body = Value),
        (status = 404, description = "No such tenant or plugin", body = Value),
        (status = 422, description = "The plugin refused the settings", body = Value),
    ))]
async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<u64>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    visible_tenant(&state, &session, tenant)?;
    let body: AssignBody = json_body(&body)?;
    let assignment = assign_to(
        &state,
        &session,
        tenant,
        body.plugin_id,
        body.settings,
        "assign",
    )
    .await?;
    Ok(Json(assignment_json(&assignment)))
}

async fn history(state: &AppState, tenant: u64) -> Result<Vec<Assignment>, StoreError> {
    let catalog = state.service.catalog().clone();
    blocking(move || catalog.assignments(tenant)).await
}

/// The tenant's current plugin: its newest assignment, or the configured file.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant}/plugin", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant ID")),
    responses((status = 200, description = "The current plugin", body = Value), (status = 404, description = "Not found", body = Value)))]
async fn current(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    let config = visible_tenant(&state, &session, tenant)?;
    let health = state.service.plugin_status(tenant);
    match history(&state, tenant).await?.first() {
        Some(assignment) => Ok(Json(
            json!({"source": "api", "assignment": assignment_json(assignment), "health": health}),
        )),
        None => Ok(Json(json!({
            "source": "file",
            "path": config.plugin.path,
            "settings": config.plugin.settings,
            "health": health,
        }))),
    }
}

/// The tenant's plugin versions: every assignment, newest (current) first.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant}/plugin/versions", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant ID")),
    responses((status = 200, description = "Assignments", body = Value), (status = 404, description = "Not found", body = Value)))]
async fn versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    visible_tenant(&state, &session, tenant)?;
    let all = history(&state, tenant).await?;
    Ok(Json(
        json!({"data": all.iter().map(assignment_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The assignment to go back to (default: the one before the current).
    to: Option<i64>,
}

/// Goes back to an earlier version (default: the previous one), as a new assignment.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant}/plugin/rollback", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant ID")),
    request_body(content = Value, description = "Optional: the assignment id to go back to", example = json!({"to": 1})),
    responses(
        (status = 200, description = "The new current assignment", body = Value),
        (status = 404, description = "No such tenant or version", body = Value),
        (status = 409, description = "No earlier version", body = Value),
    ))]
async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<u64>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    visible_tenant(&state, &session, tenant)?;
    let body: RollbackBody = if body.is_empty() {
        RollbackBody::default()
    } else {
        json_body(&body)?
    };
    let all = history(&state, tenant).await?;
    let target = match body.to {
        Some(id) => all
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| ApiError::not_found(format!("Version {id} not found")))?,
        None => all.get(1).ok_or_else(|| {
            ApiError::new(StatusCode::CONFLICT, "No earlier version to roll back to")
        })?,
    };
    let assignment = assign_to(
        &state,
        &session,
        tenant,
        target.plugin,
        target.settings.clone(),
        "rollback",
    )
    .await?;
    Ok(Json(assignment_json(&assignment)))
}

/// Lifts the suspension of a tenant's plugin (suspended after repeated failed syncs);
/// its next sync runs it again.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant}/plugin/resume", tag = "plugins", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant ID")),
    responses((status = 200, description = "The plugin's health", body = Value,
        example = json!({"status": "active", "consecutiveFailures": 0, "lastError": null})),
        (status = 404, description = "Not found", body = Value)))]
async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    visible_tenant(&state, &session, tenant)?;
    state.service.resume_plugin(tenant);
    Ok(Json(json!(state.service.plugin_status(tenant))))
}
