//! Tenants through the admin API: list and read (secrets never returned), create,
//! replace and delete tenants kept in the store (the configuration file's are
//! read-only here), test the directory connection, dry-run a sync, and set the
//! background-sync schedule.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::visible_tenant;
use super::error::ApiError;
use super::error::json_body;
use super::session::Caller;
use super::{AppState, blocking};
use crate::auth::Permission;
use crate::config::TenantConfig;
use crate::ldap::LdapDirectory;
use crate::plugin::model::SyncMode;
use crate::sync::{SyncRequest, TenantSource};

/// Password settings kept from the stored tenant when a replacement names none.
const SECRET_KEYS: [&str; 3] = ["bind_password", "bind_password_file", "bind_password_env"];
/// The `[tenant.ldap]` settings a stored password is bound to: a replacement that
/// changes any of them must give the password again.
const PASSWORD_BOUND_KEYS: [&str; 4] = ["servers", "bind_dn", "tls", "ca_file"];

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(tenants, create))
        .routes(routes!(tenant, replace, delete))
        .routes(routes!(connection_test))
        .routes(routes!(dry_run))
        .routes(routes!(schedule, set_schedule))
}

fn schedule_json(state: &AppState, id: u64) -> Value {
    let (interval, source) = state.service.interval(id);
    json!({"intervalSecs": interval, "source": source})
}

/// A tenant's settings as shown: everything but secrets (where the bind password
/// comes from is shown, never the password).
fn tenant_json(state: &AppState, tenant: &TenantConfig) -> Value {
    let ldap = &tenant.ldap;
    let password_source = if ldap.bind_password.is_some() {
        "inline"
    } else if ldap.bind_password_file.is_some() {
        "file"
    } else if ldap.bind_password_env.is_some() {
        "environment"
    } else {
        "none"
    };
    json!({
        "id": tenant.id,
        "name": tenant.name,
        "ldapEnabled": tenant.ldap_enabled,
        "abacEnabled": tenant.abac_enabled,
        "importNewUsers": tenant.import_new_users,
        "defaultLanguage": tenant.default_language,
        "syncAvatars": tenant.sync_avatars,
        "syncIntervalSecs": tenant.sync_interval_secs,
        "ldap": {
            "servers": ldap.servers,
            "tls": ldap.tls.as_str(),
            "caFile": ldap.ca_file,
            "bindDn": ldap.bind_dn,
            "bindPassword": password_source,
            "baseDn": ldap.base_dn,
            "userFilter": ldap.user_filter,
            "pageSize": ldap.page_size,
            "uniqueIdentifiers": ldap.unique_identifiers,
            "changeAttribute": ldap.change_attribute,
        },
        "plugin": {"path": tenant.plugin.path, "settings": tenant.plugin.settings},
        "source": state.service.tenant_entry(tenant.id).map(|entry| entry.source.as_str()),
        "schedule": schedule_json(state, tenant.id),
        "pluginHealth": state.service.plugin_status(tenant.id),
        "removal": {
            "policy": tenant.removal.policy.as_str(),
            "maxCount": tenant.removal.max_count,
            "maxPercent": tenant.removal.max_percent,
        },
    })
}

/// Tenants the caller may see, without secrets.
#[utoipa::path(get, path = "/api/v1/admin/tenants", tag = "tenants", security(("grommunio" = []), ("rocketchat" = [])),
    responses((status = 200, description = "Tenants", body = Value), (status = 403, description = "No view-admin", body = Value)))]
async fn tenants(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    let data: Vec<Value> = state
        .service
        .tenants()
        .iter()
        .filter(|tenant| session.principal.may_see(tenant.id))
        .map(|tenant| tenant_json(&state, tenant))
        .collect();
    Ok(Json(json!({ "data": data })))
}

/// One tenant's settings, without secrets (the bind password's source only).
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant}", tag = "tenants", security(("grommunio" = []), ("rocketchat" = [])), params(("tenant" = u64, Path, description = "Tenant (domain) ID")),
    responses((status = 200, description = "The tenant", body = Value), (status = 404, description = "Not found (or another tenant's)", body = Value)))]
async fn tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    let tenant = visible_tenant(&state, &session, id)?;
    Ok(Json(tenant_json(&state, &tenant)))
}

/// Connects and binds to the tenant's directory, then closes.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant}/connection-test", tag = "tenants", security(("grommunio" = []), ("rocketchat" = [])), params(("tenant" = u64, Path, description = "Tenant (domain) ID")),
    responses((status = 200, description = "Whether connecting and binding worked", body = Value,
        example = json!({"ok": false, "error": "cannot connect to the directory: ldap://127.0.0.1:389: connection refused"})),
        (status = 404, description = "Not found", body = Value)))]
async fn connection_test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    let tenant = visible_tenant(&state, &session, id)?;
    let password = tenant
        .ldap
        .bind_password(tenant.id)
        .map_err(|err| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()))?;
    let directory = LdapDirectory::new(&tenant.ldap, password)
        .map_err(|err| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()))?;
    match directory.test_connection().await {
        Ok(server) => Ok(Json(json!({"ok": true, "server": server}))),
        Err(err) => Ok(Json(json!({"ok": false, "error": err.to_string()}))),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DryRunBody {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    import: Option<bool>,
}

/// A sync of the live directory with nothing written: the full diff against the store.
#[utoipa::path(post, path = "/api/v1/admin/tenants/{tenant}/dry-run", tag = "tenants", security(("grommunio" = []), ("rocketchat" = [])), params(("tenant" = u64, Path, description = "Tenant (domain) ID")),
    request_body(content = Value, description = "Optional: mode (full or incremental), import", example = json!({"mode": "full", "import": true})),
    responses((status = 200, description = "The sync report: every user's diff, nothing written", body = Value),
        (status = 400, description = "Invalid body", body = Value), (status = 404, description = "Not found", body = Value),
        (status = 422, description = "The sync could not run (plugin or settings)", body = Value)))]
async fn dry_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    body: Bytes,
) -> Result<Json<crate::sync::SyncReport>, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    let tenant = visible_tenant(&state, &session, id)?;
    let body: DryRunBody = if body.is_empty() {
        DryRunBody::default()
    } else {
        json_body(&body)?
    };
    let mode = match body.mode.as_deref().unwrap_or("full") {
        "full" => SyncMode::Full,
        "incremental" => SyncMode::Incremental,
        other => {
            return Err(ApiError::invalid(vec![format!(
                "mode: '{other}' is not full or incremental"
            )]));
        }
    };
    let mut request = SyncRequest::new(mode, "", "api:dry-run");
    request.dry_run = true;
    request.import_new_users = body.import;
    let started = state
        .service
        .start(
            tenant.id,
            "dry-run",
            json!({"mode": body.mode.unwrap_or_else(|| "full".into()), "import": body.import}),
            Some(session.principal.account),
            request,
        )
        .await
        .map_err(ApiError::from)?;
    let Some(handle) = started.handle else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "An identical dry run is queued",
        ));
    };
    let outcome = handle.await.map_err(ApiError::internal)?;
    // The report is written as it is serialised (its results read back one at a
    // time), not made a tree of JSON values first.
    match outcome.report {
        Some(report) => Ok(Json(report)),
        None => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            outcome.message,
        )),
    }
}

/// 409 for a tenant of the configuration file: it is changed by editing the file.
fn ensure_api_tenant(state: &AppState, id: u64) -> Result<(), ApiError> {
    if state
        .service
        .tenant_entry(id)
        .is_some_and(|entry| entry.source == TenantSource::File)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Tenant {id} is defined in the configuration file; edit the file"),
        ));
    }
    Ok(())
}

/// Settings that name files or environment variables of the server: only system-wide
/// accounts may set them, or a tenant's admin could have the server read its secrets
/// (say `bind_password_env = "ABACSYNC_ADMIN_PASSWORD"`) and bind with them to a
/// directory of the admin's choosing.
const SERVER_PATHS: [(&str, &str); 4] = [
    ("ldap", "bind_password_file"),
    ("ldap", "bind_password_env"),
    ("ldap", "ca_file"),
    ("plugin", "path"),
];

/// Parses and checks a tenant's settings (the configuration file's schema as JSON).
/// `system_wide` callers may name server files and environment variables.
fn parse_tenant(
    id: u64,
    mut body: Value,
    previous: Option<&Value>,
    system_wide: bool,
) -> Result<(TenantConfig, Value), ApiError> {
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::invalid(vec!["body: expected an object".into()]));
    };
    if !system_wide {
        let named: Vec<String> = SERVER_PATHS
            .iter()
            .filter(|(table, key)| object.get(*table).and_then(|t| t.get(*key)).is_some())
            .map(|(table, key)| {
                format!(
                    "{table}.{key}: only system-wide accounts may name server files or variables"
                )
            })
            .collect();
        if !named.is_empty() {
            return Err(ApiError::invalid(named));
        }
    }
    match object.get("id") {
        None => {
            object.insert("id".into(), json!(id));
        }
        Some(given) if given == &json!(id) => {}
        Some(given) => {
            return Err(ApiError::invalid(vec![format!(
                "id: {given} differs from the path's {id}"
            )]));
        }
    }
    // A replacement that names no password keeps the stored one (secrets are never
    // returned, so clients cannot send them back), unless it would send the password
    // somewhere else or less protected: other servers, another bind DN, another
    // transport (`tls`) or other trusted CAs (`ca_file`). Then it must be given again.
    if let (Some(previous), Some(ldap)) = (
        previous,
        object.get_mut("ldap").and_then(Value::as_object_mut),
    ) && !SECRET_KEYS.iter().any(|key| ldap.contains_key(*key))
        && SECRET_KEYS
            .iter()
            .any(|key| previous["ldap"].get(*key).is_some())
    {
        let changed: Vec<&str> = PASSWORD_BOUND_KEYS
            .iter()
            .copied()
            .filter(|key| ldap.get(*key) != previous["ldap"].get(*key))
            .collect();
        if !changed.is_empty() && ldap.get("bind_dn").is_some_and(|dn| !dn.is_null()) {
            return Err(ApiError::invalid(vec![format!(
                "ldap.bind_password: {} changed, so the stored password is not sent there; give the password again",
                changed.join(", ")
            )]));
        }
        if changed.is_empty() {
            for key in SECRET_KEYS {
                if let Some(value) = previous["ldap"].get(key) {
                    ldap.insert(key.into(), value.clone());
                }
            }
        }
    }
    let tenant: TenantConfig = serde_json::from_value(body.clone())
        .map_err(|err| ApiError::invalid(vec![err.to_string()]))?;
    tenant
        .validate()
        .map_err(|reason| ApiError::invalid(vec![reason]))?;
    Ok((tenant, body))
}

async fn stored_config(state: &AppState, id: u64) -> Result<Option<Value>, ApiError> {
    let catalog = state.service.catalog().clone();
    let stored = blocking(move || catalog.api_tenants()).await?;
    Ok(stored
        .into_iter()
        .find(|tenant| tenant.id == id)
        .and_then(|tenant| serde_json::from_str(&tenant.config).ok()))
}

async fn save(state: &AppState, tenant: TenantConfig, raw: Value) -> Result<(), ApiError> {
    let catalog = state.service.catalog().clone();
    let id = tenant.id;
    let text = raw.to_string();
    let now = state.now_ms();
    blocking(move || catalog.put_tenant(id, &text, now)).await?;
    state.service.put_tenant(tenant);
    Ok(())
}

/// Creates a tenant (system-wide accounts only).
#[utoipa::path(post, path = "/api/v1/admin/tenants", tag = "tenants", security(("grommunio" = []), ("rocketchat" = [])),
    request_body(content = Value, description = "The configuration file's tenant schema, as JSON", example = json!({
        "id": 7, "name": "acme", "ldap": {"servers": ["ldaps://ldap.acme.example"], "tls": "ldaps", "bind_dn": "cn=sync,dc=acme",
        "bind_password": "…", "base_dn": "ou=people,dc=acme", "user_filter": "(objectClass=inetOrgPerson)"}})),
    responses(
        (status = 201, description = "Created", body = Value),
        (status = 400, description = "Invalid settings", body = Value),
        (status = 403, description = "Not a system-wide manage-tenants account", body = Value),
        (status = 409, description = "The id is taken", body = Value),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    if !session.principal.is_system_wide() {
        return Err(ApiError::forbidden());
    }
    let body: Value = json_body(&body)?;
    let Some(id) = body.get("id").and_then(Value::as_u64) else {
        return Err(ApiError::invalid(vec![
            "id: a non-negative integer is required".into(),
        ]));
    };
    if state.service.tenant(id).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Tenant {id} already exists"),
        ));
    }
    let (tenant, raw) = parse_tenant(id, body, None, session.principal.is_system_wide())?;
    save(&state, tenant.clone(), raw).await?;
    Ok((StatusCode::CREATED, Json(tenant_json(&state, &tenant))))
}

/// Replaces a tenant kept in the store; the password is kept when none is given.
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant}", tag = "tenants", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant (domain) ID")),
    request_body(content = Value, description = "The configuration file's tenant schema, as JSON"),
    responses(
        (status = 200, description = "Replaced", body = Value),
        (status = 400, description = "Invalid settings", body = Value),
        (status = 404, description = "Not found", body = Value),
        (status = 409, description = "Defined in the configuration file: edit the file", body = Value),
    ))]
async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    visible_tenant(&state, &session, id)?;
    ensure_api_tenant(&state, id)?;
    let body: Value = json_body(&body)?;
    let previous = stored_config(&state, id).await?;
    let (tenant, raw) = parse_tenant(
        id,
        body,
        previous.as_ref(),
        session.principal.is_system_wide(),
    )?;
    save(&state, tenant.clone(), raw).await?;
    Ok(Json(tenant_json(&state, &tenant)))
}

/// Deletes a tenant kept in the store (system-wide accounts only), with everything
/// that belonged to it: users, values, audit events, runs, tasks, plugins, and its
/// accounts, whose sessions end at once. A tenant created again with the same id
/// starts empty.
#[utoipa::path(delete, path = "/api/v1/admin/tenants/{tenant}", tag = "tenants", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant (domain) ID")),
    responses(
        (status = 200, description = "Deleted", body = Value),
        (status = 404, description = "Not found", body = Value),
        (status = 409, description = "Defined in the configuration file", body = Value),
    ))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    visible_tenant(&state, &session, id)?;
    if !session.principal.is_system_wide() {
        return Err(ApiError::forbidden());
    }
    ensure_api_tenant(&state, id)?;
    state.service.delete_tenant(id).await?;
    Ok(Json(json!({"message": format!("Deleted tenant #{id}")})))
}

/// The tenant's background-sync interval and what set it.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant}/schedule", tag = "tenants", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant (domain) ID")),
    responses((status = 200, description = "The schedule", body = Value, example = json!({"intervalSecs": 3600, "source": "api"})),
        (status = 404, description = "Not found", body = Value)))]
async fn schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    visible_tenant(&state, &session, id)?;
    Ok(Json(schedule_json(&state, id)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScheduleBody {
    interval_secs: Option<u64>,
}

/// Sets the background-sync interval (`null`: no background syncs); kept across
/// restarts, it overrides the tenant's `sync_interval_secs`.
#[utoipa::path(put, path = "/api/v1/admin/tenants/{tenant}/schedule", tag = "tenants", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant (domain) ID")),
    request_body(content = Value, example = json!({"intervalSecs": 3600})),
    responses((status = 200, description = "The schedule", body = Value), (status = 400, description = "Invalid", body = Value),
        (status = 404, description = "Not found", body = Value)))]
async fn set_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageTenants)?;
    visible_tenant(&state, &session, id)?;
    let body: ScheduleBody = json_body(&body)?;
    if body
        .interval_secs
        .is_some_and(|secs| !(60..=crate::config::MAX_SYNC_INTERVAL_SECS).contains(&secs))
    {
        return Err(ApiError::invalid(vec![format!(
            "intervalSecs: 60 to {} seconds, or null for none",
            crate::config::MAX_SYNC_INTERVAL_SECS
        )]));
    }
    let catalog = state.service.catalog().clone();
    let now = state.now_ms();
    let interval = body.interval_secs;
    blocking(move || catalog.set_schedule(id, interval, now)).await?;
    state.service.set_interval(id, interval);
    Ok(Json(schedule_json(&state, id)))
}
