//! Rocket.Chat's documented triggers: `POST /api/v1/ldap.syncNow` and
//! `POST /api/v1/abac/users/sync`, with Rocket.Chat's order of checks and bodies.

use std::collections::HashSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::RcError;
use super::session;
use crate::auth::{Permission, Principal};
use crate::config::TenantConfig;
use crate::plugin::model::SyncMode;
use crate::store::{TaskState, UserIdentifiers};
use crate::sync::{StartError, SyncRequest};

/// The Rocket.Chat version whose REST API the triggers follow (`abac/users/sync` with
/// its granular permission is 8.5.0's), as `GET /api/info` tells clients.
pub const ROCKETCHAT_API_VERSION: &str = "8.5.0";

/// Most identifiers per list (Rocket.Chat's `MAX_USERS_SYNC_ITEMS`).
pub const MAX_SYNC_ITEMS: usize = 100;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sync_now))
        .routes(routes!(abac_users_sync))
        .routes(routes!(info))
}

/// The version probe Rocket.Chat clients send before anything else, without a login:
/// the Rocket.Chat API version the triggers follow, and abacsync's own.
#[utoipa::path(get, path = "/api/info", tag = "rocket.chat",
    responses((status = 200, description = "Versions", body = Value,
        example = json!({"version": "8.5.0", "success": true, "abacsync": {"version": "0.1.0"}}))))]
async fn info() -> Json<Value> {
    Json(json!({
        "version": ROCKETCHAT_API_VERSION,
        "success": true,
        "abacsync": {"version": env!("CARGO_PKG_VERSION")},
    }))
}

/// The tenants `principal` acts on: its own, or every tenant for a system-wide one.
fn tenants_of(state: &AppState, principal: &Principal) -> Vec<std::sync::Arc<TenantConfig>> {
    state
        .service
        .tenants()
        .into_iter()
        .filter(|tenant| principal.may_see(tenant.id))
        .collect()
}

/// Syncs LDAP data now (Rocket.Chat `ldap.syncNow`).
///
/// Checks, in Rocket.Chat's order: logged in (401), two-factor (400 `totp-required`
/// / `totp-invalid`), the permission (400 `error-not-authorized`), LDAP enabled
/// (400 `LDAP_disabled`). Then starts a full sync of each of the caller's tenants
/// with LDAP enabled, avatars included where the tenant syncs them, and answers at
/// once; a tenant's sync already queued is joined, never doubled.
#[utoipa::path(
    post,
    path = "/api/v1/ldap.syncNow",
    tag = "rocket.chat",
    security(("rocketchat" = [])),
    params(
        ("X-Auth-Token" = String, Header, description = "The authenticated user's token."),
        ("X-User-Id" = String, Header, description = "The authenticated user's id."),
        ("x-2fa-code" = Option<String>, Header, description = "A TOTP code, or the SHA-256 hex digest of the password when the account has no TOTP."),
        ("x-2fa-method" = Option<String>, Header, description = "totp or password."),
    ),
    responses(
        (status = 200, description = "Sync started", body = Value,
            example = json!({"message": "Sync_in_progress", "success": true})),
        (status = 400, description = "totp-required, totp-invalid, error-not-authorized or LDAP_disabled", body = Value,
            example = json!({"success": false, "error": "TOTP Required [totp-required]", "errorType": "totp-required",
                "details": {"method": "totp", "codeGenerated": false, "availableMethods": ["totp"]}})),
        (status = 401, description = "Not logged in", body = Value,
            example = json!({"status": "error", "message": "You must be logged in to do this."})),
        (status = 429, description = "Too many failed two-factor codes", body = Value),
    ),
)]
async fn sync_now(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, RcError> {
    let session = session::rocketchat(&state, &headers)
        .await?
        .ok_or(RcError::NotLoggedIn)?;
    session::authorize(&state, &session, &headers, session::Action::FullSync).await?;
    let principal = &session.principal;
    if !principal.has(Permission::SyncAuthServicesUsers) {
        return Err(RcError::NotAuthorized);
    }
    let tenants: Vec<_> = tenants_of(&state, principal)
        .into_iter()
        .filter(|tenant| tenant.ldap_enabled)
        .collect();
    if tenants.is_empty() {
        return Err(RcError::Plain("LDAP_disabled"));
    }
    for tenant in tenants {
        let request = SyncRequest::new(SyncMode::Full, "", "api:ldap.syncNow");
        state
            .service
            .start(
                tenant.id,
                "ldap.syncNow",
                json!({"mode": "full"}),
                Some(principal.account),
                request,
            )
            .await
            .map_err(start_error)?;
    }
    Ok(Json(
        json!({"message": "Sync_in_progress", "success": true}),
    ))
}

fn start_error(err: StartError) -> RcError {
    match err {
        StartError::Store(err) => err.into(),
        StartError::ShuttingDown => RcError::Unavailable(err.to_string()),
        StartError::UnknownTenant(_) => RcError::Internal(err.to_string()),
    }
}

/// Validates the body as Rocket.Chat's schema does: an object with at least one of
/// `usernames`, `ids`, `emails`, `ldapIds`, each 1–100 unique non-empty strings, and
/// nothing else.
pub fn parse_abac_body(body: &[u8]) -> Option<UserIdentifiers> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let mut identifiers = UserIdentifiers::default();
    for (key, value) in map {
        let list = match key.as_str() {
            "usernames" => &mut identifiers.usernames,
            "ids" => &mut identifiers.ids,
            "emails" => &mut identifiers.emails,
            "ldapIds" => &mut identifiers.ldap_ids,
            _ => return None,
        };
        let Value::Array(items) = value else {
            return None;
        };
        if items.is_empty() || items.len() > MAX_SYNC_ITEMS {
            return None;
        }
        let mut seen = HashSet::new();
        for item in items {
            let Value::String(text) = item else {
                return None;
            };
            if text.is_empty() || !seen.insert(text.clone()) {
                return None;
            }
            list.push(text);
        }
    }
    let any = !(identifiers.usernames.is_empty()
        && identifiers.ids.is_empty()
        && identifiers.emails.is_empty()
        && identifiers.ldap_ids.is_empty());
    any.then_some(identifiers)
}

/// Syncs users' ABAC attributes from LDAP (Rocket.Chat `abac/users/sync`).
///
/// Checks, in Rocket.Chat's order: the body (400 `error-invalid-body-params`), logged
/// in (401 `error-unauthorized`), both ABAC permissions (403 `error-not-authorized`),
/// ABAC enabled (400 `error-abac-not-enabled`). Then refreshes the named users' ABAC
/// attributes from the directory (one search per tenant) and answers when done.
#[utoipa::path(
    post,
    path = "/api/v1/abac/users/sync",
    tag = "rocket.chat",
    security(("rocketchat" = [])),
    params(
        ("X-Auth-Token" = String, Header, description = "The authenticated user's token."),
        ("X-User-Id" = String, Header, description = "The authenticated user's id."),
    ),
    request_body(content = Value, description = "At least one of usernames, ids, emails, ldapIds: each 1–100 unique strings.",
        example = json!({"usernames": ["alice"], "ids": ["userId1"], "emails": ["bob@example.com"], "ldapIds": ["ldapId123"]})),
    responses(
        (status = 200, description = "Attributes refreshed", body = Value, example = json!({"success": true})),
        (status = 400, description = "error-invalid-body-params or error-abac-not-enabled", body = Value,
            example = json!({"success": false, "error": "error-abac-not-enabled"})),
        (status = 401, description = "Not logged in", body = Value, example = json!({"success": false, "error": "error-unauthorized"})),
        (status = 403, description = "Missing abac-management or manage-abac-admin-room-attributes", body = Value,
            example = json!({"success": false, "error": "error-not-authorized"})),
    ),
)]
async fn abac_users_sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, RcError> {
    let identifiers = parse_abac_body(&body).ok_or(RcError::Plain("error-invalid-body-params"))?;
    let session = session::rocketchat(&state, &headers)
        .await?
        .ok_or(RcError::Unauthorized)?;
    session::authorize(&state, &session, &headers, session::Action::TargetedSync).await?;
    let principal = &session.principal;
    if !(principal.has(Permission::AbacManagement)
        && principal.has(Permission::ManageAbacAdminRoomAttributes))
    {
        return Err(RcError::Forbidden);
    }
    let tenants: Vec<_> = tenants_of(&state, principal)
        .into_iter()
        .filter(|tenant| tenant.abac_enabled && tenant.ldap_enabled)
        .collect();
    if tenants.is_empty() {
        return Err(RcError::Plain("error-abac-not-enabled"));
    }
    let params = json!({
        "usernames": identifiers.usernames,
        "ids": identifiers.ids,
        "emails": identifiers.emails,
        "ldapIds": identifiers.ldap_ids,
    });
    let mut handles = Vec::new();
    for tenant in tenants {
        let mut request = SyncRequest::new(SyncMode::Targeted, "", "api:abac/users/sync");
        request.targets = identifiers.clone();
        let started = state
            .service
            .start(
                tenant.id,
                "abac.usersSync",
                params.clone(),
                Some(principal.account),
                request,
            )
            .await
            .map_err(start_error)?;
        handles.push(started);
    }
    for started in handles {
        // A joined task (an identical request was queued) is waited for too.
        let state = match started.handle {
            Some(handle) => {
                handle
                    .await
                    .map_err(|err| RcError::Internal(err.to_string()))?
                    .state
            }
            None => state
                .service
                .wait(started.task.id)
                .await?
                .unwrap_or(TaskState::Error),
        };
        if state != TaskState::Completed {
            tracing::warn!(
                task = started.task.id,
                state = state.as_str(),
                "ABAC sync failed"
            );
            return Err(RcError::Plain("error-abac-sync-failed"));
        }
    }
    Ok(Json(json!({"success": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_validation_follows_the_schema() {
        assert!(parse_abac_body(br#"{"usernames":["alice"]}"#).is_some());
        let all = parse_abac_body(
            br#"{"usernames":["alice"],"ids":["1"],"emails":["b@x"],"ldapIds":["l"]}"#,
        )
        .unwrap();
        assert_eq!(all.ldap_ids, ["l"]);
        for bad in [
            &b"{}"[..],
            b"[]",
            b"not json",
            br#"{"usernames":[]}"#,
            br#"{"usernames":["a","a"]}"#,
            br#"{"usernames":[""]}"#,
            br#"{"usernames":[1]}"#,
            br#"{"usernames":"alice"}"#,
            br#"{"usernames":["a"],"other":1}"#,
        ] {
            assert!(
                parse_abac_body(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: Vec<String> = (0..=MAX_SYNC_ITEMS).map(|i| format!("u{i}")).collect();
        let body = serde_json::to_vec(&json!({ "ids": many })).unwrap();
        assert!(parse_abac_body(&body).is_none());
        let body = serde_json::to_vec(&json!({ "ids": many[..MAX_SYNC_ITEMS] })).unwrap();
        assert!(parse_abac_body(&body).is_some());
    }
}
