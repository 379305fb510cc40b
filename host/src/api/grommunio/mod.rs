//! grommunio-admin-api's documented trigger:
//! `POST /api/v1/domains/{domainID}/ldap/downsync?import=&lang=&timeout=`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use super::session;
use crate::auth::Permission;
use crate::plugin::model::SyncMode;
use crate::store::TaskState;
use crate::sync::{SyncRequest, TaskOutcome, UserResult, UserResults};

/// Seconds waited when `timeout` is absent (grommunio's default).
const DEFAULT_TIMEOUT_SECS: f64 = 1.0;
/// The longest wait a request may ask for.
const MAX_TIMEOUT_SECS: f64 = 3600.0;

mod ldap;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(downsync))
        .routes(routes!(downsync_all))
        .routes(routes!(downsync_user))
        .routes(routes!(ldap::search))
        .routes(routes!(ldap::import_user))
        .routes(routes!(ldap::check, ldap::check_delete))
        .routes(routes!(ldap::dump))
}

/// The query's parameters, validated.
#[derive(Debug, PartialEq)]
pub struct DownsyncParams {
    /// Also create users not yet in the store.
    pub import: bool,
    /// Default language of new users.
    pub lang: Option<String>,
    /// Seconds to wait for the result.
    pub timeout: f64,
}

/// Parses `import`, `lang` and `timeout`, listing everything wrong.
///
/// # Errors
/// One message per invalid or unknown parameter.
pub fn parse_params(query: Option<&str>) -> Result<DownsyncParams, Vec<String>> {
    let mut params = DownsyncParams {
        import: false,
        lang: None,
        timeout: DEFAULT_TIMEOUT_SECS,
    };
    let mut errors = Vec::new();
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(query.unwrap_or("")) {
        Ok(pairs) => pairs,
        Err(err) => return Err(vec![format!("query: {err}")]),
    };
    for (key, value) in pairs {
        match key.as_str() {
            // grommunio imports on exactly `true` (`request.args.get("import") ==
            // "true"`); anything else is no import, never an error.
            "import" => params.import = value == "true",
            // Any text, as grommunio takes it, short of control characters.
            "lang" => {
                if value.is_empty() {
                    params.lang = None;
                } else if value.len() <= 255 && !value.chars().any(char::is_control) {
                    params.lang = Some(value);
                } else {
                    errors.push(format!(
                        "lang: '{}' has control characters or is over 255 bytes",
                        value.escape_debug()
                    ));
                }
            }
            // Zero or less: no wait, 202 at once (grommunio waits only `if timeout > 0`).
            "timeout" => match value.parse::<f64>() {
                Ok(seconds) if seconds.is_finite() => {
                    params.timeout = seconds.clamp(0.0, MAX_TIMEOUT_SECS);
                }
                _ => errors.push(format!("timeout: '{value}' is not a number")),
            },
            // grommunio ignores parameters it does not know.
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(errors)
    }
}

/// Checks that `principal` administers `domain`, that it exists and that it reads a
/// directory: 403, 404 or 503 otherwise.
fn ldap_domain(
    state: &AppState,
    principal: &crate::auth::Principal,
    domain: u64,
) -> Result<(), ApiError> {
    if !principal.has_for(Permission::DomainAdmin, domain) {
        return Err(ApiError::forbidden());
    }
    let Some(tenant) = state.service.tenant(domain) else {
        return Err(ApiError::not_found("Domain not found"));
    };
    if !tenant.ldap_enabled {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "LDAP is disabled for this domain",
        ));
    }
    Ok(())
}

/// Updates all LDAP imported users of a domain (grommunio `ldap/downsync`).
///
/// With `import=true` also creates users not yet in the store. Runs a full sync as a
/// task; answers 200 with the per-user results when it ends within `timeout` seconds,
/// else 202 with the task's id while it goes on.
#[utoipa::path(
    post,
    path = "/api/v1/domains/{domainID}/ldap/downsync",
    tag = "grommunio",
    security(("grommunio" = [])),
    params(
        ("domainID" = u64, Path, description = "ID of the domain (tenant)"),
        ("import" = Option<bool>, Query, description = "Import new users from LDAP"),
        ("lang" = Option<String>, Query, description = "Default language for imported users"),
        ("timeout" = Option<f64>, Query, description = "Time in seconds to wait for completion (default 1)"),
        ("X-Csrf-Token" = Option<String>, Header, description = "CSRF token from the login; required from browsers"),
    ),
    responses(
        (status = 200, description = "Update process successful", body = Value,
            example = json!({"message": "6/6 synced, 6 created (0.1s)", "data": [{"ID": 1, "username": "alice", "code": 201, "message": "created"}]})),
        (status = 202, description = "Task took more than timeout seconds and is resumed in the background", body = Value,
            example = json!({"message": "Created background task #1", "taskID": 1})),
        (status = 400, description = "Validation of input parameters failed", body = Value,
            example = json!({"message": "Bad Request", "errors": ["timeout: 'x' is not a non-negative number"]})),
        (status = 401, description = "Not logged in", body = Value, example = json!({"message": "Access denied", "error": "No token provided"})),
        (status = 403, description = "Not an admin of the domain", body = Value,
            example = json!({"message": "Access denied: Insufficient permissions for this operation"})),
        (status = 404, description = "The requested resource could not be found", body = Value, example = json!({"message": "Domain not found"})),
        (status = 500, description = "An error occurred while processing the request", body = Value),
        (status = 503, description = "The directory is unreachable", body = Value),
        (status = 429, description = "Too many failed two-factor codes (a Rocket.Chat token)", body = Value),
    ),
)]
async fn downsync(
    State(state): State<AppState>,
    Path(domain): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session::any(&state, &method, &headers).await?;
    // The same rule as `ldap.syncNow` for the same action (session::authorize): a
    // Rocket.Chat token passes Rocket.Chat's two-factor check here too.
    if let Err(refusal) =
        session::authorize(&state, &session, &headers, session::Action::FullSync).await
    {
        return Ok(refusal.into_response());
    }
    let mut errors = Vec::new();
    let domain: Option<u64> = domain.parse().ok();
    if domain.is_none() {
        errors.push("domainID: not an integer".to_owned());
    }
    let params = match parse_params(query.as_deref()) {
        Ok(params) => Some(params),
        Err(more) => {
            errors.extend(more);
            None
        }
    };
    let (Some(domain), Some(params)) = (domain, params) else {
        return Err(ApiError::invalid(errors));
    };
    let principal = &session.principal;
    ldap_domain(&state, principal, domain)?;
    let mut request = SyncRequest::new(SyncMode::Full, "", "api:ldap/downsync");
    request.import_new_users = Some(params.import);
    request.default_language = params.lang.clone();
    let task_params = json!({
        "domainID": domain,
        "import": params.import,
        "lang": params.lang.clone().unwrap_or_default(),
    });
    let started = state
        .service
        .start(
            domain,
            "ldap.downsync",
            task_params,
            Some(principal.account),
            request,
        )
        .await
        .map_err(ApiError::from)?;
    let id = started.task.id;
    let joined = started.handle.is_none();
    let background = || {
        // An identical request already queued is joined, not doubled: it says so.
        let message = if joined {
            format!("Joined background task #{id}, queued by an identical request")
        } else {
            format!("Created background task #{id}")
        };
        (
            StatusCode::ACCEPTED,
            Json(json!({"message": message, "taskID": id})),
        )
            .into_response()
    };
    let Some(mut handle) = started.handle else {
        return Ok(background());
    };
    if params.timeout <= 0.0 {
        return Ok(background());
    }
    match tokio::time::timeout(Duration::from_secs_f64(params.timeout), &mut handle).await {
        Err(_elapsed) => Ok(background()),
        Ok(Err(join)) => Err(ApiError::internal(join)),
        Ok(Ok(outcome)) => Ok(finished(outcome)),
    }
}

/// Updates the LDAP users of every domain (grommunio `POST /domains/ldap/downsync`);
/// system-wide admins only.
///
/// The same parameters and answers as one domain's downsync: one task per domain with
/// LDAP enabled; when all end within `timeout`, 200 with every domain's results and
/// the domains that failed in `failed` (500 only when every one failed); else 202 with
/// the tasks while they go on.
#[utoipa::path(
    post,
    path = "/api/v1/domains/ldap/downsync",
    tag = "grommunio",
    security(("grommunio" = [])),
    params(
        ("import" = Option<bool>, Query, description = "Import new users from LDAP"),
        ("lang" = Option<String>, Query, description = "Default language for imported users"),
        ("timeout" = Option<f64>, Query, description = "Time in seconds to wait for completion (default 1)"),
        ("X-Csrf-Token" = Option<String>, Header, description = "CSRF token from the login; required from browsers"),
    ),
    responses(
        (status = 200, description = "Every domain synced", body = Value,
            example = json!({"message": "domain 1: 6/6 synced (0.1s)", "data": [{"ID": 1, "username": "alice", "code": 200, "message": "Synchronization successful"}]})),
        (status = 202, description = "Still running in the background", body = Value,
            example = json!({"message": "Created background tasks #1, #2", "taskID": 1, "taskIDs": [1, 2]})),
        (status = 400, description = "Validation of input parameters failed", body = Value),
        (status = 401, description = "Not logged in", body = Value),
        (status = 403, description = "Not a system-wide admin", body = Value),
        (status = 500, description = "Every domain's sync failed", body = Value),
        (status = 503, description = "No domain has LDAP enabled", body = Value),
        (status = 429, description = "Too many failed two-factor codes (a Rocket.Chat token)", body = Value),
    ),
)]
async fn downsync_all(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session::any(&state, &method, &headers).await?;
    if let Err(refusal) =
        session::authorize(&state, &session, &headers, session::Action::FullSync).await
    {
        return Ok(refusal.into_response());
    }
    let params = parse_params(query.as_deref()).map_err(ApiError::invalid)?;
    let principal = &session.principal;
    if !principal.is_system_wide() || !principal.has(Permission::DomainAdmin) {
        return Err(ApiError::forbidden());
    }
    let tenants: Vec<_> = state
        .service
        .tenants()
        .into_iter()
        .filter(|tenant| tenant.ldap_enabled)
        .collect();
    if tenants.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "LDAP is disabled for every domain",
        ));
    }
    let mut ids = Vec::new();
    for tenant in tenants {
        let mut request = SyncRequest::new(SyncMode::Full, "", "api:ldap/downsync");
        request.import_new_users = Some(params.import);
        request.default_language = params.lang.clone();
        let task_params = json!({
            "domainID": tenant.id,
            "import": params.import,
            "lang": params.lang.clone().unwrap_or_default(),
        });
        let started = state
            .service
            .start(
                tenant.id,
                "ldap.downsync",
                task_params,
                Some(principal.account),
                request,
            )
            .await
            .map_err(ApiError::from)?;
        ids.push(started.task.id);
    }
    let background = || {
        let list: Vec<String> = ids.iter().map(|id| format!("#{id}")).collect();
        (
            StatusCode::ACCEPTED,
            Json(json!({
                "message": format!("Created background tasks {}", list.join(", ")),
                "taskID": ids[0],
                "taskIDs": ids,
            })),
        )
            .into_response()
    };
    if params.timeout <= 0.0 {
        return Ok(background());
    }
    let service = state.service.clone();
    let waited = tokio::time::timeout(Duration::from_secs_f64(params.timeout), async {
        for id in &ids {
            service.wait(*id).await?;
        }
        Ok::<(), crate::store::StoreError>(())
    })
    .await;
    match waited {
        Err(_elapsed) => return Ok(background()),
        Ok(result) => result?,
    }
    // Every task has ended: their stored reports, in grommunio's shape.
    let tasks = state.service.task_store().clone();
    let wanted = ids.clone();
    let ended = super::blocking(move || {
        wanted
            .iter()
            .map(|id| tasks.task(*id))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    // One domain's failure is that domain's: the others' results stand, and the
    // failure is named beside them. Only when every domain failed is the whole 500.
    let mut data = Vec::new();
    let mut messages = Vec::new();
    let mut failed = Vec::new();
    for task in ended.into_iter().flatten() {
        let line = format!("domain {}: {}", task.tenant, task.message);
        if task.state == TaskState::Completed {
            if let Some(stored) = super::tasks::stored_results(&state, &task).await {
                data.extend(results(stored.iter()));
            }
            messages.push(line);
        } else {
            failed
                .push(json!({"domainID": task.tenant, "taskID": task.id, "message": task.message}));
            messages.push(format!("domain {}: failed: {}", task.tenant, task.message));
        }
    }
    if !failed.is_empty() && failed.len() == ids.len() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Synchronization failed: {}", messages.join("; ")),
        ));
    }
    Ok(
        Json(json!({"message": messages.join("; "), "data": data, "failed": failed}))
            .into_response(),
    )
}

/// Updates one LDAP user of a domain from its directory entry (grommunio `PUT
/// /domains/{domainID}/users/{userID}/downsync`): every field and its ABAC attributes,
/// as a full sync would, for this user only. Answers the user.
///
/// grommunio's `ID` parameter links the user to another directory object; abacsync
/// matches users by their stable directory id and does not re-link one (400).
#[utoipa::path(
    put,
    path = "/api/v1/domains/{domainID}/users/{userID}/downsync",
    tag = "grommunio",
    security(("grommunio" = [])),
    params(
        ("domainID" = u64, Path, description = "ID of the domain (tenant)"),
        ("userID" = i64, Path, description = "ID of the user"),
        ("ID" = Option<String>, Query, description = "The user's directory id (another one is refused)"),
        ("X-Csrf-Token" = Option<String>, Header, description = "CSRF token from the login; required from browsers"),
    ),
    responses(
        (status = 200, description = "The user, updated", body = Value),
        (status = 400, description = "Not a directory user, or another directory object named", body = Value,
            example = json!({"message": "Cannot synchronize user: Could not determine LDAP object"})),
        (status = 401, description = "Not logged in", body = Value),
        (status = 403, description = "Not an admin of the domain", body = Value),
        (status = 404, description = "No such user, or its entry is gone from the directory", body = Value,
            example = json!({"message": "Cannot synchronize user: LDAP object not found"})),
        (status = 500, description = "The sync failed", body = Value),
        (status = 503, description = "LDAP disabled or unreachable", body = Value),
        (status = 429, description = "Too many failed two-factor codes (a Rocket.Chat token)", body = Value),
    ),
)]
async fn downsync_user(
    State(state): State<AppState>,
    Path((domain, user)): Path<(u64, i64)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session::any(&state, &method, &headers).await?;
    if let Err(refusal) =
        session::authorize(&state, &session, &headers, session::Action::TargetedSync).await
    {
        return Ok(refusal.into_response());
    }
    let principal = &session.principal;
    ldap_domain(&state, principal, domain)?;
    let store = state.service.store().clone();
    let lookup = store.clone();
    let stored = super::blocking(move || lookup.user(domain, crate::store::UserId(user)))
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    let Some(ldap_id) = stored.fields.ldap_id.clone() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Cannot synchronize user: Could not determine LDAP object",
        ));
    };
    let asked: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    if asked
        .iter()
        .any(|(key, value)| key == "ID" && value != &ldap_id)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Cannot synchronize user: abacsync does not link a user to another LDAP object",
        ));
    }
    let mut request = SyncRequest::new(SyncMode::Targeted, "", "api:ldap/downsyncUser");
    request.targets.ldap_ids = vec![ldap_id];
    request.all_fields = true;
    let ended = run_to_end(
        &state,
        domain,
        "ldap.downsyncUser",
        json!({"domainID": domain, "userID": user}),
        principal.account,
        request,
    )
    .await?;
    let task = ended.task;
    if task.state != TaskState::Completed {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Synchronization failed: {}", task.message),
        ));
    }
    let outcome = super::tasks::stored_results(&state, &task)
        .await
        .unwrap_or_default();
    if outcome
        .iter()
        .any(|result| result.action == crate::sync::Action::NotFound)
    {
        return Err(ApiError::not_found(
            "Cannot synchronize user: LDAP object not found",
        ));
    }
    if let Some(failed) = outcome
        .iter()
        .find(|result| result.action == crate::sync::Action::Failed)
    {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Synchronization error: {}", failed.message),
        ));
    }
    let updated = super::blocking(move || store.user(domain, crate::store::UserId(user)))
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    Ok(Json(super::admin::user_json(&updated)).into_response())
}

/// A task run to its end.
struct Ended {
    /// Its final record.
    task: crate::store::Task,
    /// Whether it failed because the directory could not be reached.
    unreachable: bool,
}

/// Starts a sync of `domain` as a task (joining an identical queued one) and waits for
/// its end.
async fn run_to_end(
    state: &AppState,
    domain: u64,
    command: &str,
    params: Value,
    account: crate::store::AccountId,
    request: SyncRequest,
) -> Result<Ended, ApiError> {
    let started = state
        .service
        .start(domain, command, params, Some(account), request)
        .await
        .map_err(ApiError::from)?;
    let id = started.task.id;
    let unreachable = match started.handle {
        Some(handle) => handle
            .await
            .map_err(ApiError::internal)?
            .error
            .is_some_and(|err| err.is_directory_unreachable()),
        None => {
            state.service.wait(id).await?;
            false
        }
    };
    let tasks = state.service.task_store().clone();
    let task = super::blocking(move || tasks.task(id))
        .await?
        .ok_or_else(|| ApiError::internal(format!("task {id} vanished")))?;
    Ok(Ended { task, unreachable })
}

fn finished(outcome: TaskOutcome) -> Response {
    // A sync that ran to its end with every user failed is no success for the task,
    // but grommunio answers it as a synchronisation whose users each failed: 200 with
    // their results.
    let ran_to_the_end = outcome
        .report
        .as_ref()
        .is_some_and(|report| !report.results.is_empty() && report.outcome == "failed");
    match outcome.state {
        TaskState::Error | TaskState::Completed
            if ran_to_the_end || outcome.state == TaskState::Completed =>
        {
            // Each result is made grommunio's as the body is written: a sync of a
            // million users is not first held as a million JSON values.
            #[derive(serde::Serialize)]
            struct Answer<'a> {
                message: &'a str,
                data: Listed<'a>,
            }
            let none = UserResults::default();
            let listed = outcome
                .report
                .as_ref()
                .map_or(&none, |report| &report.results);
            Json(Answer {
                message: &outcome.message,
                data: Listed(listed),
            })
            .into_response()
        }
        _ if outcome
            .error
            .as_ref()
            .is_some_and(|err| err.is_directory_unreachable()) =>
        {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("LDAP unavailable: {}", outcome.message),
            )
            .into_response()
        }
        _ => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Synchronization failed: {}", outcome.message),
        )
        .into_response(),
    }
}

/// grommunio's per-user results: `{"ID", "username", "code", "message"}` with
/// grommunio's own codes and words, and abacsync's finer outcome beside in
/// `abacsync: {"code", "action", "message"}`. Entries grommunio would not list are
/// left out: those the plugin skipped (not users) and those not imported because
/// importing is off. abacsync's own codes stay in the CLI report and the admin API.
pub fn results(results: impl IntoIterator<Item = UserResult>) -> Vec<Value> {
    results.into_iter().filter_map(grommunio_result).collect()
}

/// One result as grommunio lists it (see [`results`]), `None` for one it does not.
fn grommunio_result(result: UserResult) -> Option<Value> {
    let (code, message) = grommunio_outcome(&result)?;
    let mut item = json!({
        "username": result.username,
        "code": code,
        "message": message,
        "abacsync": {
            "code": result.code,
            "action": result.action,
            "message": result.message,
        },
    });
    if let Some(id) = result.id {
        item["ID"] = json!(id);
    }
    Some(item)
}

/// [`results`] as a JSON array made as it is written.
struct Listed<'a>(&'a UserResults);

impl serde::Serialize for Listed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().filter_map(grommunio_result))
    }
}

/// grommunio's code and words for an abacsync result (`endpoints/domain/ldap.py`),
/// `None` for what grommunio does not list.
fn grommunio_outcome(result: &UserResult) -> Option<(u16, String)> {
    use crate::sync::code;
    Some(match result.code {
        code::CREATED => (201, "User created".to_owned()),
        code::UPDATED | code::UNCHANGED => (200, "Synchronization successful".to_owned()),
        code::SKIPPED | code::NOT_IMPORTED => return None,
        // A user the directory no longer has: grommunio cannot read its data.
        code::REMOVED => (500, "Failed to get user data".to_owned()),
        code::NOT_FOUND => (404, "User not found".to_owned()),
        // Taken names and ids, entries the plugin refused or over quota: grommunio's
        // 400 for data it cannot store, with abacsync's reason.
        code::CONFLICT | code::OVER_QUOTA | code::MAPPING_ERROR => (400, result.message.clone()),
        _ => (500, result.message.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_and_every_error_is_listed() {
        assert_eq!(
            parse_params(None),
            Ok(DownsyncParams {
                import: false,
                lang: None,
                timeout: 1.0
            })
        );
        assert_eq!(
            parse_params(Some("import=true&lang=de_DE&timeout=2.5")),
            Ok(DownsyncParams {
                import: true,
                lang: Some("de_DE".into()),
                timeout: 2.5
            })
        );
        assert_eq!(
            parse_params(Some("lang=&timeout=1")).map(|p| p.lang),
            Ok(None)
        );
        // As grommunio reads them: import only on `true`, a negative timeout is no
        // wait, any language, unknown parameters ignored.
        assert_eq!(
            parse_params(Some("import=maybe&timeout=-1&lang=a%20b&x=1")),
            Ok(DownsyncParams {
                import: false,
                lang: Some("a b".into()),
                timeout: 0.0
            })
        );
        for value in ["1", "True", "TRUE", "yes"] {
            assert_eq!(
                parse_params(Some(&format!("import={value}"))).map(|p| p.import),
                Ok(false),
                "{value}"
            );
        }
        let errors = parse_params(Some("timeout=soon&lang=%07")).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(parse_params(Some("timeout=NaN")).is_err());
    }
}
