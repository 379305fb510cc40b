//! The admin API under `/api/v1/admin`: tenants (secrets never returned), connection
//! tests, users with their ABAC attributes and change history, audit events, sync
//! runs, dry runs against the live directory, and admin accounts.
//!
//! Either dialect's session works. A tenant-scoped account sees only its tenant:
//! another tenant's resources answer 404, as if they did not exist.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::error::json_body;
use super::iso8601;
use super::session::{Caller, Session};
use super::{AppState, blocking, page_of};
use crate::auth::{Permission, Role, password, token};
use crate::config::TenantConfig;
use crate::store::{AuditEvent, AuditQuery, NewAccount, StoredUser, UserId, UserQuery};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users))
        .routes(routes!(user))
        .routes(routes!(audit))
        .routes(routes!(runs))
        .routes(routes!(accounts, create_account))
        .routes(routes!(delete_account))
}

/// The tenant, when the caller may see it; 404 otherwise.
pub(super) fn visible_tenant(
    state: &AppState,
    session: &Session,
    id: u64,
) -> Result<Arc<TenantConfig>, ApiError> {
    state
        .service
        .tenant(id)
        .filter(|_| session.principal.may_see(id))
        .ok_or_else(|| ApiError::not_found(format!("Tenant {id} not found")))
}

pub(super) fn user_json(user: &StoredUser) -> Value {
    let f = &user.fields;
    json!({
        "id": user.id.0,
        "username": f.username,
        "email": f.email,
        "displayName": f.display_name,
        "language": f.language,
        "active": f.active,
        "source": user.source.as_str(),
        "ldapId": f.ldap_id,
        "ldapDn": f.ldap_dn,
        "attributes": f.attributes,
        "avatarSha256": user.avatar_sha256,
        "created": iso8601(user.created_at),
        "updated": iso8601(user.updated_at),
    })
}

fn event_json(event: &AuditEvent) -> Value {
    json!({
        "id": event.id,
        "userId": event.user_id.0,
        "username": event.username,
        "kind": event.kind.as_str(),
        "key": event.key,
        "added": event.added,
        "removed": event.removed,
        "attributes": event.attributes,
        "cause": event.cause.cause,
        "runId": event.cause.run_id,
        "at": iso8601(event.cause.at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersQuery {
    key: Option<String>,
    value: Option<String>,
    active: Option<bool>,
    search: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
}

/// Users, filtered by ABAC key (and value), activity, or a search text.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant}/users", tag = "admin", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant (domain) ID"), ("key" = Option<String>, Query, description = "Users with this ABAC key"),
        ("value" = Option<String>, Query, description = "…with this value (needs key)"),
        ("active" = Option<bool>, Query, description = "Active or inactive only"),
        ("search" = Option<String>, Query, description = "Username, email or display name contains"),
        ("after" = Option<i64>, Query, description = "Ids after this (pagination)"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 100, max 1000)")),
    responses((status = 200, description = "Users", body = Value), (status = 400, description = "Invalid query", body = Value),
        (status = 404, description = "Not found", body = Value)))]
async fn users(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    Query(query): Query<UsersQuery>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    let tenant = visible_tenant(&state, &session, id)?;
    if query.value.is_some() && query.key.is_none() {
        return Err(ApiError::invalid(vec!["value: needs key".into()]));
    }
    let store = state.service.store().clone();
    let filter = UserQuery {
        attribute_key: query.key,
        attribute_value: query.value,
        active: query.active,
        search: query.search,
        after: query.after.map(UserId),
        limit: query.limit,
    };
    let found = blocking(move || store.list_users(tenant.id, &filter)).await?;
    let (data, cut) = page_of(&found, state.service.quotas().page_bytes, user_json);
    let mut body = json!({ "data": data });
    if cut {
        state.service.metrics().quota_refused("page_bytes", 1);
        let last = &found[data.len() - 1];
        body["truncated"] = json!(true);
        body["next"] = json!({ "after": last.id.0 });
    }
    Ok(Json(body))
}

/// One user with attributes and change history.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant}/users/{user}", tag = "admin", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant (domain) ID"), ("user" = i64, Path, description = "User ID")),
    responses((status = 200, description = "The user with attributes and history", body = Value), (status = 404, description = "Not found", body = Value)))]
async fn user(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, user)): Path<(u64, i64)>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    let tenant = visible_tenant(&state, &session, id)?;
    let store = state.service.store().clone();
    let (found, history) = blocking(move || {
        let found = store.user(tenant.id, UserId(user))?;
        let history = store.audit_events(
            tenant.id,
            &AuditQuery {
                user_id: Some(UserId(user)),
                ..AuditQuery::default()
            },
        )?;
        Ok((found, history))
    })
    .await?;
    let found = found.ok_or_else(|| ApiError::not_found(format!("User {user} not found")))?;
    let mut body = user_json(&found);
    let (history, cut) = page_of(&history, state.service.quotas().page_bytes, event_json);
    body["history"] = json!(history);
    if cut {
        // The rest through the audit route, by `before`.
        state.service.metrics().quota_refused("page_bytes", 1);
        body["historyTruncated"] = json!(true);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    user: Option<i64>,
    key: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// Audit events of a tenant, newest first.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant}/audit", tag = "admin", security(("grommunio" = []), ("rocketchat" = [])),
    params(("tenant" = u64, Path, description = "Tenant (domain) ID"), ("user" = Option<i64>, Query, description = "One user's events"), ("key" = Option<String>, Query, description = "One ABAC key's events: its attribute events and the creations that set it"),
        ("before" = Option<i64>, Query, description = "Event ids before this (pagination)"), ("limit" = Option<u32>, Query, description = "At most this many")),
    responses((status = 200, description = "Events", body = Value), (status = 404, description = "Not found", body = Value)))]
async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    Query(params): Query<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    let tenant = visible_tenant(&state, &session, id)?;
    let store = state.service.store().clone();
    let query = AuditQuery {
        user_id: params.user.map(UserId),
        key: params.key,
        before: params.before,
        limit: params.limit,
    };
    let events = blocking(move || store.audit_events(tenant.id, &query)).await?;
    let (data, cut) = page_of(&events, state.service.quotas().page_bytes, event_json);
    let mut body = json!({ "data": data });
    if cut {
        state.service.metrics().quota_refused("page_bytes", 1);
        let last = &events[data.len() - 1];
        body["truncated"] = json!(true);
        body["next"] = json!({ "before": last.id });
    }
    Ok(Json(body))
}

/// A tenant's recent sync runs.
#[utoipa::path(get, path = "/api/v1/admin/tenants/{tenant}/runs", tag = "admin", security(("grommunio" = []), ("rocketchat" = [])), params(("tenant" = u64, Path, description = "Tenant (domain) ID")),
    responses((status = 200, description = "Runs, newest first", body = Value), (status = 404, description = "Not found", body = Value)))]
async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ViewAdmin)?;
    let tenant = visible_tenant(&state, &session, id)?;
    let store = state.service.store().clone();
    let runs = blocking(move || store.sync_runs(tenant.id, 100)).await?;
    let data: Vec<Value> = runs
        .iter()
        .map(|run| {
            json!({
                "runId": run.run_id,
                "mode": run.mode,
                "dryRun": run.dry_run,
                "started": iso8601(run.started_at),
                "finished": iso8601(run.finished_at),
                "outcome": run.outcome,
                "summary": serde_json::from_str::<Value>(&run.summary).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({ "data": data })))
}

fn account_json(account: &crate::store::Account) -> Value {
    json!({
        "id": account.id,
        "userId": account.public_id,
        "username": account.username,
        "tenant": account.tenant,
        "permissions": account.permissions,
        "totpEnabled": account.totp_enabled,
        "email": account.email,
        "email2fa": account.email_2fa,
        "created": iso8601(account.created_at),
    })
}

/// Admin accounts (a tenant-scoped caller: its tenant's).
#[utoipa::path(get, path = "/api/v1/admin/accounts", tag = "admin", security(("grommunio" = []), ("rocketchat" = [])),
    responses((status = 200, description = "Accounts", body = Value), (status = 403, description = "No manage-accounts", body = Value)))]
async fn accounts(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageAccounts)?;
    let scope = session.principal.tenant;
    let list = state.accounts(move |a| a.list_accounts(scope)).await?;
    Ok(Json(
        json!({"data": list.iter().map(account_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccountBody {
    username: String,
    password: String,
    tenant: Option<u64>,
    role: Option<Role>,
    permissions: Option<Vec<String>>,
    email: Option<String>,
}

/// Creates an account. A tenant-scoped caller creates accounts of its own tenant
/// only, and never grants a permission it lacks.
#[utoipa::path(post, path = "/api/v1/admin/accounts", tag = "admin", security(("grommunio" = []), ("rocketchat" = [])),
    request_body(content = Value, example = json!({"username": "ops", "password": "at least 12 chars", "tenant": 1, "role": "sync-operator"})),
    responses((status = 201, description = "Created", body = Value), (status = 400, description = "Invalid", body = Value),
        (status = 409, description = "Name taken", body = Value)))]
async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let session = caller.require(Permission::ManageAccounts)?;
    let body: NewAccountBody = json_body(&body)?;
    let mut errors = Vec::new();
    if body.username.trim().is_empty() || body.username.len() > 128 {
        errors.push("username: 1 to 128 characters".to_owned());
    }
    if body
        .email
        .as_deref()
        .is_some_and(|email| email.parse::<lettre::Address>().is_err())
    {
        errors.push("email: not an email address".to_owned());
    }
    if body.password.chars().count() < 12 {
        errors.push("password: at least 12 characters".to_owned());
    }
    let mut permissions = body.role.map(Role::permissions).unwrap_or_default();
    for name in body.permissions.unwrap_or_default() {
        match name.parse::<Permission>() {
            Ok(permission) => {
                permissions.insert(permission);
            }
            Err(err) => errors.push(format!("permissions: {err}")),
        }
    }
    let tenant = match (session.principal.tenant, body.tenant) {
        (Some(own), Some(asked)) if own != asked => {
            errors.push(format!(
                "tenant: you may create accounts of tenant {own} only"
            ));
            None
        }
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    if let Some(id) = tenant
        && state.service.tenant(id).is_none()
    {
        errors.push(format!("tenant: no tenant {id}"));
    }
    if !permissions.is_subset(&session.principal.permissions) {
        errors.push("permissions: you cannot grant permissions you do not have".to_owned());
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let password = body.password;
    let hash = blocking(move || {
        password::hash(&password).map_err(|err| crate::store::StoreError::Panicked(err.to_string()))
    })
    .await?;
    let new = NewAccount {
        public_id: token::new_public_id().map_err(ApiError::internal)?,
        username: body.username,
        password_hash: hash,
        tenant,
        permissions,
        email: body.email,
    };
    let now = state.now_ms();
    // Names are one namespace, since a login names no tenant. A tenant's admin learns
    // only that a name cannot be had, never that an account of another tenant (or a
    // system account) has it: the same answer whoever holds the name.
    let scoped = session.principal.tenant.is_some();
    let created = state
        .accounts(move |a| a.create_account(&new, now))
        .await
        .map_err(|err| match err {
            crate::store::StoreError::AccountExists(_) if scoped => ApiError::new(
                StatusCode::CONFLICT,
                "This account name cannot be used; choose another",
            ),
            crate::store::StoreError::AccountExists(name) => ApiError::new(
                StatusCode::CONFLICT,
                format!("Account '{name}' already exists"),
            ),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(account_json(&created))))
}

/// Deletes an account and its sessions.
#[utoipa::path(delete, path = "/api/v1/admin/accounts/{account}", tag = "admin", security(("grommunio" = []), ("rocketchat" = [])),
    params(("account" = i64, Path, description = "Account ID")),
    responses((status = 200, description = "Deleted", body = Value), (status = 404, description = "Not found", body = Value),
        (status = 409, description = "Your own account", body = Value)))]
async fn delete_account(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let session = caller.require(Permission::ManageAccounts)?;
    if id == session.principal.account {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "You cannot delete your own account",
        ));
    }
    let found = state.accounts(move |a| a.account(id)).await?;
    let Some(found) = found.filter(|a| {
        session.principal.is_system_wide()
            || (a.tenant.is_some() && a.tenant == session.principal.tenant)
    }) else {
        return Err(ApiError::not_found(format!("Account {id} not found")));
    };
    state.accounts(move |a| a.delete_account(found.id)).await?;
    Ok(Json(json!({"message": format!("Deleted account #{id}")})))
}
