//! Tasks in grommunio's TasQ style: `GET /api/v1/tasq/tasks`, `GET|DELETE
//! /api/v1/tasq/tasks/{ID}`, `POST /api/v1/tasq/tasks/{ID}/cancel`, `GET
//! /api/v1/tasq/status`. A caller sees only its tenants' tasks.
//!
//! As grommunio shows them (`orm/misc.py`, `endpoints/tasq.py`): dates as `%Y-%m-%d
//! %H:%M:%S`, a downsync's command `ldapSync`, its per-user results in
//! `params.result` (admin-web's task view reads them there); abacsync's own report
//! beside in `result`.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use crate::sync::UserResults;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::session::{Caller, Session};
use super::{AppState, grommunio_time};
use crate::auth::Permission;
use crate::store::{Task, TaskId};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(list))
        .routes(routes!(one, delete))
        .routes(routes!(cancel))
        .routes(routes!(results))
}

#[derive(Deserialize)]
struct ListQuery {
    level: Option<u8>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// The command as grommunio names it: its downsync is `ldapSync`.
fn tasq_command(command: &str) -> &str {
    match command {
        "ldap.downsync" => "ldapSync",
        other => other,
    }
}

/// A task as TasQ shows it at `level` (0: id and command; 1: with state, message and
/// times; 2: with parameters and result, and `results`, the per-user results of its
/// report).
pub fn task_json(task: &Task, level: u8, results: Option<&UserResults>) -> Value {
    let mut body = json!({"ID": task.id, "command": tasq_command(&task.command)});
    if level >= 1 {
        body["state"] = json!(task.state.tasq_code());
        body["stateName"] = json!(task.state.as_str());
        body["message"] = json!(task.message);
        body["created"] = json!(grommunio_time(task.created_at));
        body["updated"] = json!(grommunio_time(task.updated_at));
        body["domainID"] = json!(task.tenant);
        body["trigger"] = json!(task.command);
    }
    if level >= 2 {
        body["params"] = task.params.clone();
        if let Some(result) = &task.result {
            // The stored report's results, in grommunio's shape as downsync answers.
            let data = results.map(|stored| super::grommunio::results(stored.iter()));
            if let (Some(params), Some(data)) = (body["params"].as_object_mut(), &data) {
                params.insert("result".into(), json!(data));
            }
            body["result"] = json!({
                "counts": result.get("counts"),
                "outcome": result.get("outcome"),
                "removal": result.get("removal"),
                "references": result.get("references"),
                "error": result.get("error"),
                "data": data,
            });
        }
    }
    body
}

/// The per-user results of a finished task's stored report. A task whose results
/// cannot be read (deleted meanwhile, a damaged page) shows none, so that one task
/// does not fail a list; the cause is logged.
pub(super) async fn stored_results(state: &AppState, task: &Task) -> Option<UserResults> {
    task.result.as_ref()?;
    let (tasks, read) = (state.service.task_store().clone(), task.clone());
    super::blocking(move || crate::sync::task_results(tasks.as_ref(), &read))
        .await
        .unwrap_or_else(|err| {
            tracing::error!(task = task.id, %err, "cannot read the task's results");
            None
        })
}

fn authorised(caller: Caller) -> Result<Session, ApiError> {
    let session = caller.0;
    let principal = &session.principal;
    if principal.has(Permission::DomainAdmin) || principal.has(Permission::ViewAdmin) {
        Ok(session)
    } else {
        Err(ApiError::forbidden())
    }
}

/// Task queue status, without a login as in grommunio: whether a task runs, how many
/// wait, and the workers (tenants that can sync at once).
#[utoipa::path(get, path = "/api/v1/tasq/status", tag = "tasks",
    responses((status = 200, description = "The queue", body = Value, example = json!({"running": false, "queued": 0, "workers": 2}))))]
async fn status(State(state): State<AppState>) -> Json<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let metrics = state.service.metrics();
    Json(json!({
        "running": metrics.running.load(Relaxed) > 0,
        "queued": metrics.queued.load(Relaxed),
        "workers": state.service.tenants().len(),
    }))
}

/// The caller's tenants' newest tasks.
///
/// `level` 0: ID and command; 1 (default): with state, message, times; 2: with
/// parameters and result.
#[utoipa::path(get, path = "/api/v1/tasq/tasks", tag = "tasks", security(("grommunio" = []), ("rocketchat" = [])),
    params(("level" = Option<u8>, Query, description = "Detail level 0–2"), ("limit" = Option<u32>, Query, description = "At most this many (default 50, as grommunio)"),
        ("offset" = Option<u32>, Query, description = "Skip this many of the newest")),
    responses(
        (status = 200, description = "Tasks, newest first, and how many there are", body = Value,
            example = json!({"data": [{"ID": 1, "command": "ldapSync", "state": 3, "stateName": "completed", "message": "6/6 synced (0.1s)",
                "created": "2026-11-23 10:00:00", "updated": "2026-11-23 10:00:01", "domainID": 1, "trigger": "ldap.downsync"}], "count": 1})),
        (status = 401, description = "Not logged in", body = Value),
        (status = 403, description = "Neither domain-admin nor view-admin", body = Value),
    ))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let session = authorised(caller)?;
    let tenant = session.principal.tenant;
    let limit = query.limit.unwrap_or(50);
    let offset = query.offset.unwrap_or(0);
    let tasks = state.service.task_store().clone();
    let (tasks, count) = super::blocking(move || {
        Ok((
            tasks.list_tasks_from(tenant, offset, limit)?,
            tasks.count_tasks(tenant)?,
        ))
    })
    .await?;
    let level = query.level.unwrap_or(1);
    let mut data = Vec::with_capacity(tasks.len());
    for task in &tasks {
        let results = if level >= 2 {
            stored_results(&state, task).await
        } else {
            None
        };
        data.push(task_json(task, level, results.as_ref()));
    }
    Ok(Json(json!({"data": data, "count": count})))
}

async fn visible_task(state: &AppState, session: &Session, id: TaskId) -> Result<Task, ApiError> {
    let tasks = state.service.task_store().clone();
    let task = super::blocking(move || tasks.task(id)).await?;
    task.filter(|task| session.principal.may_see(task.tenant))
        .ok_or_else(|| ApiError::not_found("Task not found"))
}

/// One task (level 2 by default: with parameters and result).
#[utoipa::path(get, path = "/api/v1/tasq/tasks/{id}", tag = "tasks", security(("grommunio" = []), ("rocketchat" = [])),
    params(("id" = i64, Path, description = "Task ID"), ("level" = Option<u8>, Query, description = "Detail level 0–2")),
    responses(
        (status = 200, description = "The task", body = Value),
        (status = 404, description = "No such task among the caller's tenants", body = Value, example = json!({"message": "Task not found"})),
    ))]
async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<TaskId>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let session = authorised(caller)?;
    let task = visible_task(&state, &session, id).await?;
    let level = query.level.unwrap_or(2);
    let results = if level >= 2 {
        stored_results(&state, &task).await
    } else {
        None
    };
    Ok(Json(task_json(&task, level, results.as_ref())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultsQuery {
    offset: Option<u64>,
    limit: Option<usize>,
    code: Option<u16>,
}

/// Most results a page holds.
const MAX_RESULTS_PAGE: usize = 1000;

/// A finished task's per-user results a page at a time, abacsync's own form (`ID`,
/// `username`, `dn`, `code`, `action`, `message`), optionally only those with one
/// code (`409`: the conflicts): what a sync of many users is read by, rather than its
/// whole task.
#[utoipa::path(get, path = "/api/v1/tasq/tasks/{id}/results", tag = "tasks", security(("grommunio" = []), ("rocketchat" = [])),
    params(("id" = i64, Path, description = "Task ID"),
        ("offset" = Option<u64>, Query, description = "Skip this many (of those with `code`)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 100, at most 1000)"),
        ("code" = Option<u16>, Query, description = "Only results with this code (200, 201, 204, 304, 403, 404, 409, 410, 413, 422, 500)")),
    responses(
        (status = 200, description = "The page: `data`, and `next` (the offset of the next page, or null)", body = Value,
            example = json!({"data": [{"ID": 7, "username": "jdoe", "dn": "uid=jdoe,ou=people,dc=example,dc=org", "code": 201, "action": "created", "message": "created"}], "next": null})),
        (status = 400, description = "Invalid query", body = Value),
        (status = 404, description = "No such task among the caller's tenants, or it has no results yet", body = Value),
    ))]
async fn results(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<TaskId>,
    Query(query): Query<ResultsQuery>,
) -> Result<Json<Value>, ApiError> {
    let session = authorised(caller)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_RESULTS_PAGE).contains(&limit) {
        return Err(ApiError::invalid(vec![format!(
            "limit: {limit} is not between 1 and {MAX_RESULTS_PAGE}"
        )]));
    }
    let task = visible_task(&state, &session, id).await?;
    let offset = query.offset.unwrap_or(0);
    let tasks = state.service.task_store().clone();
    let code = query.code;
    let page = super::blocking(move || {
        crate::sync::task_results_page(tasks.as_ref(), &task, offset, limit, code)
    })
    .await?;
    let Some((data, more)) = page else {
        return Err(ApiError::not_found("The task has no results (yet)"));
    };
    let next = more.then(|| offset + data.len() as u64);
    Ok(Json(json!({"data": data, "next": next})))
}

/// Deletes a task's record, in any state as grommunio does: a queued or running one
/// is cancelled first (it stops before writing more).
#[utoipa::path(delete, path = "/api/v1/tasq/tasks/{id}", tag = "tasks", security(("grommunio" = []), ("rocketchat" = [])),
    params(("id" = i64, Path, description = "Task ID")),
    responses(
        (status = 200, description = "Deleted", body = Value, example = json!({"message": "Deleted task #1"})),
        (status = 403, description = "No domain-admin", body = Value),
        (status = 404, description = "No such task among the caller's tenants", body = Value),
    ))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<TaskId>,
) -> Result<Json<Value>, ApiError> {
    let session = authorised(caller)?;
    if !session.principal.has(Permission::DomainAdmin) {
        return Err(ApiError::forbidden());
    }
    let task = visible_task(&state, &session, id).await?;
    let service = state.service.clone();
    super::blocking(move || {
        if !task.state.is_final() {
            service.cancel(id)?;
        }
        service.task_store().delete_task(id)
    })
    .await?;
    Ok(Json(json!({"message": format!("Deleted task #{id}")})))
}

/// Cancels a task: a queued one never runs; a running one stops before writing more.
#[utoipa::path(post, path = "/api/v1/tasq/tasks/{id}/cancel", tag = "tasks", security(("grommunio" = []), ("rocketchat" = [])),
    params(("id" = i64, Path, description = "Task ID")),
    responses(
        (status = 200, description = "Cancelled", body = Value, example = json!({"message": "Canceled task #1"})),
        (status = 404, description = "No such task among the caller's tenants", body = Value),
        (status = 409, description = "The task has already ended", body = Value),
    ))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<TaskId>,
) -> Result<Json<Value>, ApiError> {
    let session = authorised(caller)?;
    if !session.principal.has(Permission::DomainAdmin) {
        return Err(ApiError::forbidden());
    }
    let task = visible_task(&state, &session, id).await?;
    if task.state.is_final() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!("Task #{id} has already ended ({})", task.state.as_str()),
        ));
    }
    let service = state.service.clone();
    super::blocking(move || service.cancel(id)).await?;
    Ok(Json(json!({"message": format!("Canceled task #{id}")})))
}
