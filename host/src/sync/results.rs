//! A sync's per-user results, one per entry and per removed user. A sync logs them
//! as it plans ([`ResultLog`], spilled to a temporary file past a few MiB), so that
//! a sync of a million users does not hold a million results in memory; the report
//! reads them back in order ([`UserResults`]). Results that come from elsewhere (a
//! task's stored report) are a plain list.

use std::num::NonZeroI64;
use std::sync::Arc;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::records::{RecordError, RecordLog};
use super::report::{Action, UserResult, code};
use crate::store::{ResultPage, StoreError, Task, TaskId, TaskStore};

/// Results read back from the log per read.
const READ_AHEAD: usize = 1024;

/// A result as logged: its id is kept beside it (set once the user is written).
/// Postcard needs every field present, so this has no skipped fields.
#[derive(Serialize, Deserialize)]
struct Logged {
    username: String,
    dn: Option<String>,
    code: u16,
    action: Action,
    message: String,
}

/// The results a sync plans, in order, as it plans them.
#[derive(Debug, Default)]
pub(crate) struct ResultLog {
    records: RecordLog<Logged>,
    /// Each result's user id.
    ids: Vec<Option<NonZeroI64>>,
    /// Results changed after they were logged (a change the store refused).
    replaced: HashMap<usize, UserResult>,
}

impl ResultLog {
    /// An empty log, spilling into `folder` (`None`: the temporary folder).
    pub(crate) fn in_folder(folder: Option<Arc<std::path::Path>>) -> Self {
        Self {
            records: RecordLog::default().in_folder(folder),
            ..Self::default()
        }
    }

    /// Appends `result`. A failure to spill breaks the log (see [`ResultLog::check`]).
    pub(crate) fn push(&mut self, result: UserResult) {
        let UserResult {
            id,
            username,
            dn,
            code,
            action,
            message,
        } = result;
        let logged = Logged {
            username,
            dn,
            code,
            action,
            message,
        };
        // A result that does not encode (not expected: every field does) breaks the
        // log like a failed spill, so that the sync fails instead of losing it.
        match self.records.push(&logged) {
            Ok(()) => self.ids.push(id.and_then(NonZeroI64::new)),
            Err(err) => self.records.break_with(err),
        }
    }

    /// Whether every result pushed was kept.
    pub(crate) fn check(&self) -> Result<(), RecordError> {
        self.records.check()
    }

    /// Number of results.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Result `index`.
    pub(crate) fn get(&self, index: usize) -> Result<UserResult, RecordError> {
        if let Some(result) = self.replaced.get(&index) {
            return Ok(result.clone());
        }
        Ok(self.result(index, self.records.get(index)?))
    }

    /// Sets result `index`'s user id.
    pub(crate) fn set_id(&mut self, index: usize, id: i64) {
        self.ids[index] = NonZeroI64::new(id);
        if let Some(result) = self.replaced.get_mut(&index) {
            result.id = Some(id);
        }
    }

    /// Replaces result `index`.
    pub(crate) fn replace(&mut self, index: usize, result: UserResult) {
        self.ids[index] = result.id.and_then(NonZeroI64::new);
        self.replaced.insert(index, result);
    }

    fn result(&self, index: usize, logged: Logged) -> UserResult {
        UserResult {
            id: self.ids[index].map(NonZeroI64::get),
            username: logged.username,
            dn: logged.dn,
            code: logged.code,
            action: logged.action,
            message: logged.message,
        }
    }

    /// The results from `start` on, read ahead in blocks.
    fn iter_from(&self, start: usize) -> impl Iterator<Item = Result<UserResult, RecordError>> {
        (start..self.len())
            .step_by(READ_AHEAD)
            .flat_map(move |first| {
                let last = (first + READ_AHEAD).min(self.len());
                let block: Vec<Result<UserResult, RecordError>> =
                    match self.records.read(first..last) {
                        Ok(logged) => logged
                            .into_iter()
                            .zip(first..)
                            .map(|(logged, index)| match self.replaced.get(&index) {
                                Some(result) => Ok(result.clone()),
                                None => Ok(self.result(index, logged)),
                            })
                            .collect(),
                        Err(err) => vec![Err(err)],
                    };
                block
            })
    }

    /// The first result that is `action`.
    pub(crate) fn find(&self, action: Action) -> Result<Option<UserResult>, RecordError> {
        for result in self.iter_from(0) {
            let result = result?;
            if result.action == action {
                return Ok(Some(result));
            }
        }
        Ok(None)
    }

    /// The results, for the report.
    pub(crate) fn finish(self) -> UserResults {
        UserResults(Results::Logged(Arc::new(self)))
    }
}

/// One result per entry and per removed user, in order.
#[derive(Clone, Default)]
pub struct UserResults(Results);

#[derive(Clone)]
enum Results {
    Listed(Vec<UserResult>),
    Logged(Arc<ResultLog>),
}

impl Default for Results {
    fn default() -> Self {
        Results::Listed(Vec::new())
    }
}

impl UserResults {
    /// Number of results.
    pub fn len(&self) -> usize {
        match &self.0 {
            Results::Listed(results) => results.len(),
            Results::Logged(log) => log.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The results in order. One that cannot be read back (its temporary file failed)
    /// comes as a failed result saying why.
    pub fn iter(&self) -> impl Iterator<Item = UserResult> + '_ {
        let (listed, logged) = match &self.0 {
            Results::Listed(results) => (Some(results.iter().cloned()), None),
            Results::Logged(log) => (None, Some(log.iter_from(0).map(unreadable))),
        };
        listed
            .into_iter()
            .flatten()
            .chain(logged.into_iter().flatten())
    }

    /// The results in a list.
    pub fn to_vec(&self) -> Vec<UserResult> {
        self.iter().collect()
    }
}

fn unreadable(result: Result<UserResult, RecordError>) -> UserResult {
    result.unwrap_or_else(|err| {
        tracing::error!(error = %err, "a sync's result cannot be read back");
        UserResult {
            id: None,
            username: String::new(),
            dn: None,
            code: code::FAILED,
            action: Action::Failed,
            message: format!("this result cannot be read back: {err}"),
        }
    })
}

impl From<Vec<UserResult>> for UserResults {
    fn from(results: Vec<UserResult>) -> Self {
        UserResults(Results::Listed(results))
    }
}

impl std::fmt::Debug for UserResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for UserResults {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for UserResults {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<UserResult>::deserialize(deserializer).map(UserResults::from)
    }
}

/// Results per page of a task's stored results.
pub const RESULTS_PAGE: usize = 5_000;

/// The field of a task's stored report that says how many results are stored in pages
/// beside it (older reports hold theirs in `results`).
pub const RESULTS_STORED: &str = "results_stored";

/// Stores `results` as task `id`'s, in pages, while the task runs under `owner`: how
/// many, or `None` when the task is gone, has ended or is another replica's now.
pub fn store_task_results(
    tasks: &dyn TaskStore,
    id: TaskId,
    owner: &str,
    results: &UserResults,
) -> Result<Option<u64>, StoreError> {
    let mut page = Vec::with_capacity(RESULTS_PAGE.min(results.len()));
    let mut first = 0u64;
    // Whether the page was taken.
    let write = |page: &mut Vec<UserResult>, first: &mut u64| {
        let items = serde_json::to_string(&page).map_err(|err| corrupt(err.to_string()))?;
        let count = page.len() as u32;
        let taken = tasks.add_task_results(id, owner, *first, count, &items)?;
        *first += u64::from(count);
        page.clear();
        Ok::<_, StoreError>(taken)
    };
    for result in results.iter() {
        page.push(result);
        if page.len() == RESULTS_PAGE && !write(&mut page, &mut first)? {
            return Ok(None);
        }
    }
    if !page.is_empty() && !write(&mut page, &mut first)? {
        return Ok(None);
    }
    Ok(Some(first))
}

/// The per-user results of a finished task: from its pages, or from its report (one
/// stored before results had pages); `None` when it has no report.
pub fn task_results(tasks: &dyn TaskStore, task: &Task) -> Result<Option<UserResults>, StoreError> {
    let Some(report) = &task.result else {
        return Ok(None);
    };
    let Some(stored) = report.get(RESULTS_STORED).and_then(Value::as_u64) else {
        let inline = report.get("results").cloned().unwrap_or(Value::Null);
        return Ok(Vec::<UserResult>::deserialize(inline)
            .ok()
            .map(UserResults::from));
    };
    let mut results = Vec::with_capacity(usize::try_from(stored).unwrap_or(0).min(1 << 20));
    walk_pages(tasks, task.id, 0, stored, |result| {
        results.push(result);
        true
    })?;
    if results.len() as u64 != stored {
        return Err(corrupt(format!(
            "task {}: {} results stored of {stored}",
            task.id,
            results.len()
        )));
    }
    Ok(Some(results.into()))
}

/// One page of a finished task's results: from the `offset`-th of those with `code`
/// (all when `None`) on, at most `limit`, and whether more follow; `None` when it has
/// no report. Reads a few pages at a time, so any page of a sync of millions costs
/// the memory of a few thousand results (a filter reads the results before the page).
pub fn task_results_page(
    tasks: &dyn TaskStore,
    task: &Task,
    offset: u64,
    limit: usize,
    code: Option<u16>,
) -> Result<Option<(Vec<UserResult>, bool)>, StoreError> {
    let Some(report) = &task.result else {
        return Ok(None);
    };
    let wanted = |result: &UserResult| code.is_none_or(|code| result.code == code);
    let stored = report.get(RESULTS_STORED).and_then(Value::as_u64);
    // The number of the next result to look at. Without a filter, stored pages before
    // the offset are not read at all.
    let next = match (stored, code) {
        (Some(stored), None) => offset.min(stored),
        _ => 0,
    };
    let mut skip = offset - next;
    let mut page = Vec::with_capacity(limit.min(1000));
    // Takes `result` when wanted; false once the page is full and one more was seen.
    let mut take = |result: UserResult| {
        if !wanted(&result) {
            return true;
        }
        if skip > 0 {
            skip -= 1;
            return true;
        }
        if page.len() == limit {
            return false;
        }
        page.push(result);
        true
    };
    let Some(stored) = stored else {
        let Some(inline) = task_results(tasks, task)? else {
            return Ok(None);
        };
        let more = !inline.iter().all(&mut take);
        return Ok(Some((page, more)));
    };
    let stopped = !walk_pages(tasks, task.id, next, stored, &mut take)?;
    Ok(Some((page, stopped)))
}

/// Hands task `id`'s stored results from number `next` up to `stored` to `visit`, in
/// order and each once, reading a few pages at a time (their text held only until it
/// is decoded), until `visit` returns false: false then, true at the end. A page that
/// reaches before `next` is read whole, its earlier results passed over; a missing
/// page ends the walk early (the caller's count tells).
fn walk_pages(
    tasks: &dyn TaskStore,
    id: TaskId,
    mut next: u64,
    stored: u64,
    mut visit: impl FnMut(UserResult) -> bool,
) -> Result<bool, StoreError> {
    let window = (RESULTS_PAGE * 4) as u64;
    while next < stored {
        let before = next;
        for page in tasks.task_results(id, next, (next + window).min(stored))? {
            for (number, result) in (page.first..).zip(parse_page(id, &page)?) {
                if number < next {
                    continue;
                }
                next = number + 1;
                if !visit(result) {
                    return Ok(false);
                }
            }
        }
        if next == before {
            break;
        }
    }
    Ok(true)
}

/// The results `page` of task `id` holds: as many as it says.
fn parse_page(id: TaskId, page: &ResultPage) -> Result<Vec<UserResult>, StoreError> {
    let items: Vec<UserResult> =
        serde_json::from_str(&page.items).map_err(|err| corrupt(err.to_string()))?;
    if items.len() != page.count as usize {
        return Err(corrupt(format!(
            "task {id}: the page of results from {} holds {} of its {}",
            page.first,
            items.len(),
            page.count
        )));
    }
    Ok(items)
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt {
        table: "task_results",
        column: "items",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(i: usize) -> UserResult {
        UserResult {
            id: (!i.is_multiple_of(3)).then_some(i as i64 + 1),
            username: format!("user{i}"),
            dn: (i.is_multiple_of(2)).then(|| format!("uid=user{i},dc=x")),
            code: code::CREATED,
            action: Action::Created,
            message: "created".into(),
        }
    }

    #[test]
    fn logged_results_read_back_in_order_with_ids_and_replacements() {
        let mut log = ResultLog {
            records: RecordLog::with_memory(16 << 10),
            ..ResultLog::default()
        };
        let mut all: Vec<UserResult> = (0..5_000).map(result).collect();
        for one in &all {
            log.push(one.clone());
        }
        log.check().unwrap();
        log.set_id(3, 77);
        all[3].id = Some(77);
        let failed = UserResult {
            code: code::CONFLICT,
            action: Action::Failed,
            message: "taken".into(),
            ..all[4_321].clone()
        };
        log.replace(4_321, failed.clone());
        all[4_321] = failed.clone();
        assert_eq!(log.get(3).unwrap(), all[3]);
        assert_eq!(log.get(4_321).unwrap(), failed);
        assert_eq!(log.find(Action::Failed).unwrap(), Some(failed));
        let results = log.finish();
        assert_eq!(results.len(), all.len());
        assert_eq!(results.to_vec(), all);
        // As JSON, like a list, and back.
        let json = serde_json::to_string(&results).unwrap();
        assert_eq!(json, serde_json::to_string(&all).unwrap());
        let back: UserResults = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_vec(), all);
    }

    #[test]
    fn a_tasks_stored_results_read_back_whole_and_a_page_at_a_time() {
        use crate::store::{Lease, SqliteStore, TaskState};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("abacsync.db")).unwrap();
        let lease = Lease {
            owner: "r".into(),
            until: i64::MAX,
        };
        let task = store
            .create_task(
                1,
                "sync",
                &serde_json::json!({}),
                None,
                None,
                Some(&lease),
                0,
            )
            .unwrap();
        assert!(
            store
                .update_task(task.id, TaskState::Running, "", None, 1)
                .unwrap()
        );
        // Three pages (5,000, 5,000 and 2,345); every seventh a conflict.
        let all: Vec<UserResult> = (0..12_345)
            .map(|i| UserResult {
                code: if i % 7 == 0 {
                    code::CONFLICT
                } else {
                    code::CREATED
                },
                ..result(i)
            })
            .collect();
        let stored = store_task_results(&store, task.id, "r", &all.clone().into()).unwrap();
        assert_eq!(stored, Some(12_345));
        assert_eq!(store.task_results(task.id, 0, u64::MAX).unwrap().len(), 3);
        let report = serde_json::json!({ RESULTS_STORED: 12_345 });
        assert!(
            store
                .update_task(task.id, TaskState::Completed, "", Some(&report), 2)
                .unwrap()
        );
        // Not the replica's any more: nothing is written.
        assert_eq!(
            store_task_results(&store, task.id, "r", &all.clone().into()).unwrap(),
            None
        );
        let task = store.task(task.id).unwrap().unwrap();

        assert_eq!(task_results(&store, &task).unwrap().unwrap().to_vec(), all);
        let page = |offset, limit, code| {
            task_results_page(&store, &task, offset, limit, code)
                .unwrap()
                .unwrap()
        };
        assert_eq!(page(4_990, 20, None), (all[4_990..5_010].to_vec(), true));
        assert_eq!(page(12_340, 100, None), (all[12_340..].to_vec(), false));
        assert_eq!(page(20_000, 100, None), (Vec::new(), false));
        // Followed from an offset that is no page's start, every result once, in order.
        let (mut read, mut offset) = (all[..2_500].to_vec(), 2_500);
        loop {
            let (data, more) = page(offset, 1_000, None);
            offset += data.len() as u64;
            read.extend(data);
            if !more {
                break;
            }
        }
        assert_eq!(read, all);
        // By code: the conflicts from the fourth on.
        let conflicts: Vec<UserResult> = all
            .iter()
            .filter(|r| r.code == code::CONFLICT)
            .cloned()
            .collect();
        assert_eq!(
            page(3, 5, Some(code::CONFLICT)),
            (conflicts[3..8].to_vec(), true)
        );
        let (tail, more) = page(1_700, 1_000, Some(code::CONFLICT));
        assert_eq!((tail, more), (conflicts[1_700..].to_vec(), false));
    }
}
