//! Store benchmark: the write half of a first import, without a directory or a plugin.
//! 100,000 new users shaped like the OpenLDAP example plugin's output (profile, DN,
//! a random-looking `entryUUID`, four ABAC keys, a mapped digest) are applied to an
//! empty SQLite store in transactions of 10,000, as the sync engine applies them.
//!
//! Baseline, in the same run: the same users as plain rows (the user's fields and its
//! attributes as one JSON text) inserted into a table without indexes, one prepared
//! `INSERT` per user, in the same transactions — the floor of writing 100,000 rows.
//!
//! Run: `cargo bench -p abacsync --bench store_apply` (optionally
//! `-- --users N --runs R`). Medians of R runs, each into a fresh database file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use abacsync::store::{Change, ChangeCause, MappedDigest, SqliteStore, UserFields, UserStore};
use abacsync_testkit::bench_arg;

// The allocator of the `abacsync` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Changes per transaction, as the sync engine writes them.
const CHUNK: usize = 10_000;

const DEPARTMENTS: &[&str] = &["100", "200", "300", "400", "500", "600", "700"];
const UNITS: &[&str] = &[
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "Human Resources",
    "Support",
    "Legal",
];
const CITIES: &[&str] = &["Amsterdam", "Berlin", "Lisbon", "Madrid", "Paris", "Vienna"];
const LANGUAGES: &[&str] = &["en", "de", "fr", "es", "nl"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let users = bench_arg(&args, "--users", 100_000);
    let runs = bench_arg(&args, "--runs", 5);
    let changes: Vec<Change> = (0..users).map(create).collect();
    let cause = ChangeCause {
        cause: "sync:full:bench".into(),
        run_id: Some("bench".into()),
        at: 1_700_000_000_000,
    };
    let dir = tempfile::tempdir().unwrap();

    let mut baseline = Vec::new();
    let mut store = Vec::new();
    for run in 0..runs {
        // Alternated, so that a slow moment of the machine hits both.
        baseline.push(plain_rows(
            &dir.path().join(format!("plain-{run}.db")),
            &changes,
        ));
        let path = dir.path().join(format!("store-{run}.db"));
        let opened = SqliteStore::open(&path).unwrap();
        let started = Instant::now();
        for chunk in changes.chunks(CHUNK) {
            let ids = opened.apply(1, chunk, &cause).unwrap();
            assert_eq!(ids.len(), chunk.len());
        }
        store.push(started.elapsed());
        assert_eq!(opened.count_users(1).unwrap(), users as u64);
    }
    let baseline = median(baseline);
    let store = median(store);
    println!(
        "baseline: {users} users as plain rows, no indexes: {:.0} ms (median of {runs})",
        baseline.as_secs_f64() * 1000.0
    );
    println!(
        "store apply, {users} creates in transactions of {CHUNK}: {:.0} ms, {:.2}x baseline, {:.0} users/s",
        store.as_secs_f64() * 1000.0,
        store.as_secs_f64() / baseline.as_secs_f64(),
        users as f64 / store.as_secs_f64()
    );
}

/// User `i`, as the OpenLDAP example plugin maps the testkit's directory.
fn create(i: usize) -> Change {
    let mut attributes = BTreeMap::new();
    let set = |value: &str| BTreeSet::from([value.to_owned()]);
    attributes.insert("department".into(), set(DEPARTMENTS[i % DEPARTMENTS.len()]));
    attributes.insert("employeeType".into(), set(["staff", "contractor"][i % 2]));
    attributes.insert("location".into(), set(CITIES[(i / 3) % CITIES.len()]));
    attributes.insert("unit".into(), set(UNITS[i % UNITS.len()]));
    // entryUUIDs arrive in no particular order.
    let mixed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut digest = [0; 16];
    digest[..8].copy_from_slice(&mixed.to_le_bytes());
    digest[8..].copy_from_slice(&(!mixed).to_le_bytes());
    Change::Create {
        fields: UserFields {
            username: format!("user{i:06}"),
            email: Some(format!("user{i:06}@example.org")),
            display_name: Some(format!("User {i}")),
            language: Some(LANGUAGES[i % LANGUAGES.len()].into()),
            active: true,
            ldap_id: Some(format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                mixed >> 32,
                (mixed >> 16) & 0xffff,
                mixed & 0xffff,
                i & 0xffff,
                i
            )),
            ldap_dn: Some(format!("uid=user{i:06},ou=people,dc=example,dc=org")),
            attributes,
        },
        avatar: None,
        mapped: Some(MappedDigest(digest)),
    }
}

/// The baseline: `changes` as plain rows in an index-free table, with the store's
/// journal settings.
fn plain_rows(path: &std::path::Path, changes: &[Change]) -> Duration {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE plain (id INTEGER PRIMARY KEY, username TEXT, email TEXT, \
         display_name TEXT, language TEXT, ldap_id TEXT, ldap_dn TEXT, attributes TEXT)",
    )
    .unwrap();
    let started = Instant::now();
    for chunk in changes.chunks(CHUNK) {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO plain (username, email, display_name, language, ldap_id, \
                     ldap_dn, attributes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .unwrap();
            for change in chunk {
                let Change::Create { fields, .. } = change else {
                    unreachable!()
                };
                insert
                    .execute((
                        &fields.username,
                        &fields.email,
                        &fields.display_name,
                        &fields.language,
                        &fields.ldap_id,
                        &fields.ldap_dn,
                        serde_json::to_string(&fields.attributes).unwrap(),
                    ))
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    started.elapsed()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
