//! The neighbours of `downsync` that grommunio-admin-web's LDAP pages call
//! (grommunio-admin-api `endpoints/domain/ldap.py`): a directory search, the import of
//! one directory object, the orphan check and its cleanup, and a dump of one entry.
//!
//! grommunio has one directory; abacsync has one per domain (tenant). These routes
//! work across the LDAP-enabled domains the caller may act on, as grommunio's work
//! across its domains, and each answer names the domain (`domainID`) beside
//! grommunio's fields; `domain=1,2` narrows them. grommunio's permissions map onto
//! abacsync's: *SystemAdmin* is a system-wide `domain-admin`, *DomainAdmin(d)* is
//! `domain-admin` for d, *DomainAdminRO(d)* is `view-admin` (or `domain-admin`) for d.
//!
//! Everything runs on the sync engine: searches and dumps read and map entries as a
//! sync would ([`crate::sync::lookup`]); an import is a targeted sync of one directory
//! object; the check is a full read planning removals only, under the tenant's
//! removal policy and thresholds, and never after an incomplete read.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::AppState;
use super::super::error::ApiError;
use super::super::session;
use crate::auth::{Permission, Principal};
use crate::config::TenantConfig;
use crate::ldap::Selection;
use crate::plugin::model::{Decision, SyncMode};
use crate::store::{Task, TaskState};
use crate::sync::lookup::{Attributes, Found};
use crate::sync::{Action, SyncRequest, TaskError};

/// Matches a search returns per domain (grommunio's default limit).
const SEARCH_LIMIT: usize = 25;
/// The shortest query a search takes.
const MIN_QUERY_CHARS: usize = 3;

/// What the caller must hold for a domain.
#[derive(Clone, Copy)]
enum Right {
    /// grommunio's DomainAdminRO: read.
    Read,
    /// grommunio's DomainAdmin: change.
    Admin,
}

impl Right {
    fn held(self, principal: &Principal, domain: u64) -> bool {
        match self {
            Right::Read => {
                principal.has_for(Permission::ViewAdmin, domain)
                    || principal.has_for(Permission::DomainAdmin, domain)
            }
            Right::Admin => principal.has_for(Permission::DomainAdmin, domain),
        }
    }

    fn anywhere(self, principal: &Principal) -> bool {
        match self {
            Right::Read => {
                principal.has(Permission::ViewAdmin) || principal.has(Permission::DomainAdmin)
            }
            Right::Admin => principal.has(Permission::DomainAdmin),
        }
    }
}

/// The query's parameters as grommunio reads them (`request.args`): the last value of
/// each, unknown ones ignored.
struct Args(Vec<(String, String)>);

impl Args {
    fn parse(query: Option<&str>) -> Result<Args, ApiError> {
        serde_urlencoded::from_str(query.unwrap_or(""))
            .map(Args)
            .map_err(|err| ApiError::invalid(vec![format!("query: {err}")]))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// grommunio's flags are on for exactly `true`.
    fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }
}

/// The LDAP-enabled domains `principal` holds `right` for, narrowed to the ones in
/// `domain=` when given. 403 when it holds the right for no domain at all.
fn domains(
    state: &AppState,
    principal: &Principal,
    right: Right,
    args: &Args,
) -> Result<Vec<Arc<TenantConfig>>, ApiError> {
    if !right.anywhere(principal) {
        return Err(ApiError::forbidden());
    }
    let wanted: Option<Vec<u64>> = match args.get("domain") {
        None => None,
        Some(list) => Some(
            list.split(',')
                .filter(|id| !id.trim().is_empty())
                .map(|id| id.trim().parse::<u64>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    ApiError::invalid(vec![format!(
                        "domain: '{list}' is not a list of domain IDs"
                    )])
                })?,
        ),
    };
    Ok(state
        .service
        .tenants()
        .into_iter()
        .filter(|tenant| tenant.ldap_enabled && right.held(principal, tenant.id))
        .filter(|tenant| wanted.as_ref().is_none_or(|ids| ids.contains(&tenant.id)))
        .collect())
}

/// A lookup's failure in grommunio's words: 503 when the domain cannot be read (its
/// directory unreachable, no plugin, unusable settings), 500 when the read or the
/// plugin failed.
fn lookup_failed(domain: u64, err: &TaskError) -> ApiError {
    if err.is_directory_unreachable()
        || matches!(err, TaskError::Plugin(_) | TaskError::Settings { .. })
    {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("LDAP unavailable (domain {domain}): {err}"),
        )
    } else {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("LDAP error (domain {domain}): {err}"),
        )
    }
}

/// Searches the directories for users (grommunio `GET /domains/ldap/search`).
///
/// Matches `query` (at least 3 characters) as a substring of each entry's search
/// attributes (`ldap.search_attributes`: uid, cn, displayName, mail, sAMAccountName,
/// userPrincipalName by default), at most 25 per domain, and shows each match as the
/// domain's plugin maps it: `ID` is its directory id (what `importUser` and `dump`
/// take), `name` and `email` the plugin's. Entries the plugin does not map to a user
/// are left out. A domain whose directory fails is named in `failed`; 503 when every
/// one failed.
#[utoipa::path(
    get,
    path = "/api/v1/domains/ldap/search",
    tag = "grommunio",
    security(("grommunio" = [])),
    params(
        ("query" = String, Query, min_length = 3, description = "Text to look for (at least 3 characters)"),
        ("domain" = Option<String>, Query, description = "Comma-separated domain IDs to search (default: every domain the caller may read)"),
    ),
    responses(
        (status = 200, description = "The matches", body = Value,
            example = json!({"data": [{"ID": "8c6a7f52-1f1a-4e0e-9f60-3c2a4a6b9d10", "name": "Ann Lee", "email": "ann@example.org", "username": "ann", "domainID": 1}]})),
        (status = 400, description = "Missing or too short query", body = Value, example = json!({"message": "Missing or too short query"})),
        (status = 401, description = "Not logged in", body = Value),
        (status = 403, description = "No read right on any domain", body = Value),
        (status = 500, description = "Every directory's search failed, one of them with an error", body = Value),
        (status = 503, description = "No domain could be searched (directory unreachable, no plugin)", body = Value),
    ),
)]
pub(super) async fn search(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session::any(&state, &method, &headers).await?;
    let args = Args::parse(query.as_deref())?;
    let domains = domains(&state, &session.principal, Right::Read, &args)?;
    let Some(text) = args
        .get("query")
        .filter(|text| text.chars().count() >= MIN_QUERY_CHARS)
    else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Missing or too short query",
        ));
    };
    let mut data = Vec::new();
    let mut failed = Vec::new();
    let mut last_error = None;
    for tenant in &domains {
        let found = state
            .service
            .lookup(
                tenant.id,
                Selection::Matching(text.to_owned()),
                SEARCH_LIMIT,
                Attributes::Mapped,
            )
            .await;
        match found {
            Ok(found) => data.extend(found.iter().filter_map(|entry| {
                let user = entry.user()?;
                Some(json!({
                    "ID": user.ldap_id,
                    "name": user.display_name.clone().unwrap_or_else(|| user.username.clone()),
                    "email": user.email.clone().unwrap_or_default(),
                    "username": user.username,
                    "domainID": tenant.id,
                }))
            })),
            Err(err) => {
                failed.push(json!({"domainID": tenant.id, "message": err.to_string()}));
                last_error = Some(lookup_failed(tenant.id, &err));
            }
        }
    }
    if let Some(err) = last_error
        && failed.len() == domains.len()
    {
        return Err(err);
    }
    let mut body = json!({ "data": data });
    if !failed.is_empty() {
        body["failed"] = Value::Array(failed);
    }
    Ok(Json(body).into_response())
}

/// The first domain of `domains` whose directory has the object `id`, with the entry
/// found there. A domain that cannot be read does not hide the object in another;
/// when no domain has it, 404 "User not found" naming the domains that could not be
/// read in `failed`, and their failure when none could be read.
async fn find_object(
    state: &AppState,
    domains: &[Arc<TenantConfig>],
    id: &str,
    extra: Attributes,
) -> Result<(Arc<TenantConfig>, Found), Response> {
    let mut failed = Vec::new();
    let mut last_error = None;
    for tenant in domains {
        let found = state
            .service
            .lookup(
                tenant.id,
                Selection::Identifiers(vec![id.to_owned()]),
                2,
                extra,
            )
            .await;
        match found {
            Ok(found) => {
                if let Some(entry) = found.into_iter().next() {
                    return Ok((tenant.clone(), entry));
                }
            }
            Err(err) => {
                failed.push(json!({"domainID": tenant.id, "message": err.to_string()}));
                last_error = Some(lookup_failed(tenant.id, &err));
            }
        }
    }
    if let Some(err) = last_error
        && failed.len() == domains.len()
    {
        return Err(err.into_response());
    }
    let mut body = json!({"message": "User not found"});
    if !failed.is_empty() {
        body["failed"] = Value::Array(failed);
    }
    Err((StatusCode::NOT_FOUND, Json(body)).into_response())
}

/// One directory entry, every attribute, as LDIF (grommunio `GET /domains/ldap/dump`:
/// its `data` is the entry as text).
#[utoipa::path(
    get,
    path = "/api/v1/domains/ldap/dump",
    tag = "grommunio",
    security(("grommunio" = [])),
    params(
        ("ID" = String, Query, min_length = 1, description = "The entry's directory id"),
        ("domain" = Option<String>, Query, description = "Comma-separated domain IDs to look in"),
    ),
    responses(
        (status = 200, description = "The entry", body = Value,
            example = json!({"data": "dn: uid=ann,ou=people,dc=example,dc=org\ncn: Ann Lee\n", "domainID": 1})),
        (status = 400, description = "No ID", body = Value, example = json!({"message": "Invalid ID"})),
        (status = 401, description = "Not logged in", body = Value),
        (status = 403, description = "No read right on any domain", body = Value),
        (status = 404, description = "No such entry", body = Value, example = json!({"message": "User not found"})),
        (status = 500, description = "The read failed", body = Value),
        (status = 503, description = "A domain could not be read (directory unreachable, no plugin)", body = Value),
    ),
)]
pub(super) async fn dump(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session::any(&state, &method, &headers).await?;
    let args = Args::parse(query.as_deref())?;
    let domains = domains(&state, &session.principal, Right::Read, &args)?;
    let Some(id) = args.get("ID").filter(|id| !id.is_empty()) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "Invalid ID"));
    };
    match find_object(&state, &domains, id, Attributes::All).await {
        Ok((tenant, found)) => Ok(Json(json!({
            "data": crate::sync::lookup::ldif(&found.entry),
            "domainID": tenant.id,
        }))
        .into_response()),
        Err(answer) => Ok(answer),
    }
}

/// Imports one directory object as a user, or updates the user it is already
/// (grommunio `POST /domains/ldap/importUser`).
///
/// The object is looked for in the domains the caller administers; the domain's
/// plugin maps it. When its username belongs to a user not linked to this object,
/// 409 ("User exists locally" or "…and is associated with another LDAP object")
/// unless `force=true`, which links that user to the object. 201 with a new user,
/// 200 with an existing one.
#[utoipa::path(
    post,
    path = "/api/v1/domains/ldap/importUser",
    tag = "grommunio",
    security(("grommunio" = [])),
    params(
        ("ID" = String, Query, min_length = 1, description = "The object's directory id (from `ldap/search`)"),
        ("force" = Option<String>, Query, description = "`true`: take over a user that holds the username"),
        ("domain" = Option<String>, Query, description = "Comma-separated domain IDs to look in"),
        ("X-Csrf-Token" = Option<String>, Header, description = "CSRF token from the login; required from browsers"),
    ),
    responses(
        (status = 200, description = "The existing user, updated", body = Value),
        (status = 201, description = "The user, created", body = Value),
        (status = 400, description = "No ID, or the plugin does not map the object to a user", body = Value,
            example = json!({"message": "Missing ID"})),
        (status = 401, description = "Not logged in", body = Value),
        (status = 403, description = "Not an admin of any domain", body = Value),
        (status = 404, description = "No such object", body = Value, example = json!({"message": "User not found"})),
        (status = 409, description = "The username is another user's", body = Value,
            example = json!({"message": "Cannot import user: User exists locally"})),
        (status = 500, description = "The import failed", body = Value),
        (status = 503, description = "The directory failed", body = Value),
    ),
)]
pub(super) async fn import_user(
    State(state): State<AppState>,
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
    let args = Args::parse(query.as_deref())?;
    let domains = domains(&state, &session.principal, Right::Admin, &args)?;
    let Some(id) = args.get("ID").filter(|id| !id.is_empty()) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "Missing ID"));
    };
    let force = args.flag("force");
    let (tenant, found) = match find_object(&state, &domains, id, Attributes::Mapped).await {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    let user = match &found.decision {
        Ok(Decision::Upsert(user)) => user.clone(),
        Ok(Decision::Skip { reason }) | Ok(Decision::Deactivate { reason, .. }) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Cannot import user: the domain's plugin does not import it ({reason})"),
            ));
        }
        Err(err) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Cannot import user: the domain's plugin failed on it ({err})"),
            ));
        }
    };
    let domain = tenant.id;
    let store = state.service.store().clone();
    let (ldap_id, username) = (user.ldap_id.clone(), user.username.clone());
    let (linked, holder) = super::super::blocking(move || {
        let linked = store.users_by_ldap_ids(domain, std::slice::from_ref(&ldap_id))?;
        let holder = store.users_by_usernames(domain, std::slice::from_ref(&username))?;
        Ok((linked.into_iter().next(), holder.into_iter().next()))
    })
    .await?;
    if linked.is_none()
        && let Some(holder) = &holder
        && !force
    {
        let whose = if holder.fields.ldap_id.is_none() {
            "locally"
        } else {
            "and is associated with another LDAP object"
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Cannot import user: User exists {whose}"),
        ));
    }
    let mut request = SyncRequest::new(SyncMode::Targeted, "", "api:ldap/importUser");
    request.directory_ids = vec![user.ldap_id.clone()];
    request.all_fields = true;
    request.import_new_users = Some(true);
    request.adopt_by_username = force;
    let ended = super::run_to_end(
        &state,
        domain,
        "ldap.importUser",
        json!({"domainID": domain, "ID": user.ldap_id, "force": force}),
        session.principal.account,
        request,
    )
    .await?;
    let task = ended.task;
    if task.state != TaskState::Completed {
        let status = if ended.unreachable {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return Err(ApiError::new(
            status,
            format!("Cannot import user: {}", task.message),
        ));
    }
    let results = super::super::tasks::stored_results(&state, &task)
        .await
        .unwrap_or_default()
        .to_vec();
    let Some(result) = results
        .iter()
        .find(|result| result.username == user.username || result.action == Action::Failed)
    else {
        return Err(ApiError::not_found("User not found"));
    };
    let status = match result.action {
        Action::Created => StatusCode::CREATED,
        Action::Updated | Action::Unchanged | Action::Reactivated | Action::Deactivated => {
            StatusCode::OK
        }
        Action::Failed if result.code == crate::sync::code::CONFLICT => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Cannot import user: {}", result.message),
            ));
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Cannot import user: {}", result.message),
            ));
        }
    };
    let store = state.service.store().clone();
    let ldap_id = user.ldap_id.clone();
    let stored = super::super::blocking(move || store.users_by_ldap_ids(domain, &[ldap_id]))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    let mut body = super::super::admin::user_json(&stored);
    body["domainID"] = json!(domain);
    Ok((status, Json(body)).into_response())
}

/// The users linked to a directory object that is gone (grommunio `GET|DELETE
/// /domains/ldap/check`).
///
/// GET lists them, per domain the caller may read: `{"orphaned": [{"ID", "username",
/// "domainID"}]}`. DELETE removes them, per domain the caller administers, under the
/// domain's removal policy (deactivate, delete, or keep) and threshold (`force=true`
/// passes it), and lists those removed in `deleted` (those the policy keeps in
/// `kept`). Both read each directory whole first; a read that was not whole
/// (entries failed, referrals) removes nobody and names the domain in `failed`.
#[utoipa::path(
    get,
    path = "/api/v1/domains/ldap/check",
    tag = "grommunio",
    security(("grommunio" = [])),
    params(
        ("domain" = Option<String>, Query, description = "Comma-separated domain IDs to check"),
    ),
    responses(
        (status = 200, description = "The orphaned users", body = Value,
            example = json!({"orphaned": [{"ID": 7, "username": "bob", "domainID": 1}]})),
        (status = 401, description = "Not logged in", body = Value),
        (status = 403, description = "No read right on any domain", body = Value),
        (status = 500, description = "Every domain's check failed", body = Value),
        (status = 503, description = "Every directory was unreachable", body = Value),
    ),
)]
pub(super) async fn check(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session::any(&state, &method, &headers).await?;
    let args = Args::parse(query.as_deref())?;
    let domains = domains(&state, &session.principal, Right::Read, &args)?;
    orphans(&state, &session.principal, &domains, false, true).await
}

/// Removes the orphaned users; see [`check`].
#[utoipa::path(
    delete,
    path = "/api/v1/domains/ldap/check",
    tag = "grommunio",
    security(("grommunio" = [])),
    params(
        ("domain" = Option<String>, Query, description = "Comma-separated domain IDs to clean"),
        ("force" = Option<String>, Query, description = "`true`: remove beyond the domain's removal threshold"),
        ("X-Csrf-Token" = Option<String>, Header, description = "CSRF token from the login; required from browsers"),
    ),
    responses(
        (status = 200, description = "The users removed", body = Value,
            example = json!({"deleted": [{"ID": 7, "username": "bob", "domainID": 1}], "kept": []})),
        (status = 401, description = "Not logged in", body = Value),
        (status = 403, description = "Not an admin of any domain", body = Value),
        (status = 409, description = "Every domain refused: more removals than its threshold allows", body = Value),
        (status = 429, description = "Too many failed two-factor codes (a Rocket.Chat token)", body = Value),
        (status = 500, description = "Every domain's check failed", body = Value),
        (status = 503, description = "Every directory was unreachable", body = Value),
    ),
)]
pub(super) async fn check_delete(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = session::any(&state, &method, &headers).await?;
    // Removing users is a full sync's business: the same two-factor rule.
    if let Err(refusal) =
        session::authorize(&state, &session, &headers, session::Action::FullSync).await
    {
        return Ok(refusal.into_response());
    }
    let args = Args::parse(query.as_deref())?;
    let domains = domains(&state, &session.principal, Right::Admin, &args)?;
    orphans(
        &state,
        &session.principal,
        &domains,
        true,
        args.flag("force"),
    )
    .await
}

/// Runs the orphan check of every domain in `domains` (removing them when `remove`)
/// and answers in grommunio's shape.
async fn orphans(
    state: &AppState,
    principal: &Principal,
    domains: &[Arc<TenantConfig>],
    remove: bool,
    force: bool,
) -> Result<Response, ApiError> {
    let key = if remove { "deleted" } else { "orphaned" };
    let mut listed = Vec::new();
    let mut kept = Vec::new();
    let mut failed = Vec::new();
    let mut unreachable = 0;
    let mut refused = 0;
    let mut linked = 0;
    for tenant in domains {
        let store = state.service.store().clone();
        let domain = tenant.id;
        let index = super::super::blocking(move || store.ldap_user_index(domain)).await?;
        if index.is_empty() {
            continue;
        }
        linked += index.len();
        drop(index);
        let mut request = SyncRequest::new(SyncMode::Full, "", "api:ldap/check");
        request.removals_only = true;
        request.dry_run = !remove;
        // A check lists every orphan; only a removal meets the threshold.
        request.force = force || !remove;
        let command = if remove {
            "ldap.checkDelete"
        } else {
            "ldap.check"
        };
        let ended = super::run_to_end(
            state,
            domain,
            command,
            json!({"domainID": domain, "force": force}),
            principal.account,
            request,
        )
        .await?;
        let task = ended.task;
        if let Some((why, was_refused)) = incomplete(&task) {
            refused += usize::from(was_refused);
            failed.push(json!({"domainID": domain, "taskID": task.id, "message": why}));
            continue;
        }
        if task.state != TaskState::Completed {
            unreachable += usize::from(ended.unreachable);
            failed.push(json!({"domainID": domain, "taskID": task.id, "message": task.message}));
            continue;
        }
        for result in super::super::tasks::stored_results(state, &task)
            .await
            .unwrap_or_default()
            .iter()
        {
            let entry = json!({
                "ID": result.id,
                "username": result.username,
                "domainID": domain,
                "abacsync": {"action": result.action, "message": result.message},
            });
            match result.action {
                Action::Deactivated | Action::Deleted => listed.push(entry),
                Action::NotFound if remove => kept.push(entry),
                Action::NotFound => listed.push(entry),
                _ => {}
            }
        }
    }
    if !failed.is_empty() && failed.len() == domains.len() {
        let status = if unreachable == failed.len() {
            StatusCode::SERVICE_UNAVAILABLE
        } else if refused == failed.len() {
            StatusCode::CONFLICT
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        let mut body = json!({"message": "LDAP check failed", "failed": failed});
        body[key] = json!([]);
        return Ok((status, Json(body)).into_response());
    }
    let mut body = json!({});
    if linked == 0 {
        body["message"] = json!("No LDAP users found");
    } else if listed.is_empty() && kept.is_empty() && failed.is_empty() {
        body["message"] = json!("All LDAP users are valid");
    }
    body[key] = Value::Array(listed);
    if remove {
        body["kept"] = Value::Array(kept);
    }
    if !failed.is_empty() {
        body["failed"] = Value::Array(failed);
    }
    Ok(Json(body).into_response())
}

/// Why a check could not tell who is gone (its read was not whole), or why its
/// removals were refused (the second value: `true`).
fn incomplete(task: &Task) -> Option<(String, bool)> {
    let removal = task.result.as_ref()?.get("removal")?;
    match removal.get("state")?.as_str()? {
        "skipped-after-errors" => Some((
            format!(
                "not checked: {} directory entries failed to map, so a user could look gone",
                removal.get("failed_entries").unwrap_or(&Value::Null)
            ),
            false,
        )),
        "skipped-after-referrals" => Some((
            format!(
                "not checked: the directory referred {} parts of the base to other servers (see ldap.ignore_referrals)",
                removal.get("references").unwrap_or(&Value::Null)
            ),
            false,
        )),
        "refused" => Some((
            format!(
                "refused to remove {} of {} directory users ({}); add force=true to remove them",
                removal.get("missing").unwrap_or(&Value::Null),
                removal.get("total").unwrap_or(&Value::Null),
                removal
                    .get("limit")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
            true,
        )),
        _ => None,
    }
}
