//! Plugin runtime benchmark: 100,000 synthetic inetOrgPerson entries through the
//! OpenLDAP example plugin, as batch calls and as one call per entry, the cost of
//! instantiating a fresh instance, and, as the baseline taken in the same run, the
//! same mapping compiled natively.
//!
//! Run: `cargo bench -p abacsync --bench plugin_runtime` (optionally `-- --entries N
//! --runs R`). Medians of R runs are printed with the ratio to the native baseline.

// Test support: a panic is how a test or benchmark fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use abacsync::plugin::model::{Entry, MappingContext, SyncMode};
use abacsync::plugin::{PluginEngine, SandboxConfig};
use abacsync_guest::testing;
use openldap_mapping::OpenLdap;
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = abacsync_testkit::bench_arg(&args, "--entries", 100_000);
    let runs = abacsync_testkit::bench_arg(&args, "--runs", 5);
    let entries = synthetic_entries(count);
    let context = MappingContext {
        tenant_id: 1,
        mode: SyncMode::Full,
        settings: Vec::new(),
    };

    let engine = PluginEngine::new(SandboxConfig::default(), None).expect("engine");
    let wasm =
        std::fs::read(abacsync_testkit::plugins::component("openldap-mapping")).expect("plugin");
    let started = Instant::now();
    let plugin = engine.load("openldap", &wasm).expect("load");
    let load = started.elapsed();

    // Native baseline: the same mapping code, called as the export glue calls it.
    let guest_entries: Vec<abacsync_guest::Entry> = entries.iter().map(to_guest).collect();
    let guest_context = testing::context();
    let native = median(runs, || {
        let batches: Vec<Vec<abacsync_guest::Entry>> =
            guest_entries.chunks(BATCH).map(<[_]>::to_vec).collect();
        let started = Instant::now();
        for batch in batches {
            black_box(testing::map::<OpenLdap>(&guest_context, batch).expect("native map"));
        }
        started.elapsed()
    });

    let batched = median(runs, || {
        let batches: Vec<Vec<Entry>> = entries.chunks(BATCH).map(<[_]>::to_vec).collect();
        let started = Instant::now();
        for batch in batches {
            black_box(plugin.map_entries(&context, batch).expect("batch call"));
        }
        started.elapsed()
    });

    let single_count = (count / 10).max(1);
    let single = median(runs, || {
        let singles: Vec<Vec<Entry>> = entries[..single_count]
            .iter()
            .map(|e| vec![e.clone()])
            .collect();
        let started = Instant::now();
        for one in singles {
            black_box(plugin.map_entries(&context, one).expect("single call"));
        }
        started.elapsed()
    });

    let mut instantiations: Vec<Duration> = (0..5_000)
        .map(|_| {
            plugin
                .map_entries(&context, Vec::new())
                .expect("empty call")
                .stats
                .instantiate
        })
        .collect();
    instantiations.sort();
    let instantiate = instantiations[instantiations.len() / 2];

    let rate = |entries: usize, time: Duration| entries as f64 / time.as_secs_f64();
    let native_rate = rate(count, native);
    let batch_rate = rate(count, batched);
    let single_rate = rate(single_count, single);
    println!(
        "plugin runtime benchmark: {count} entries, batches of {BATCH}, median of {runs} runs, one thread"
    );
    println!("  component load (compile):   {load:?}");
    println!(
        "  native mapping (baseline):  {:>12.0} entries/s  ({native:?})",
        native_rate
    );
    println!(
        "  wasm, batch calls:          {:>12.0} entries/s  ({batched:?})  {:.2}x native time",
        batch_rate,
        native_rate / batch_rate
    );
    println!(
        "  wasm, one call per entry:   {:>12.0} entries/s  ({single:?} for {single_count})  {:.2}x native time",
        single_rate,
        native_rate / single_rate
    );
    println!(
        "  instantiation (median of {}): {instantiate:?}",
        instantiations.len()
    );
    println!(
        "  targets: batch >= 500000 entries/s: {}; instantiation <= 50us: {}",
        if batch_rate >= 500_000.0 {
            "met"
        } else {
            "MISSED"
        },
        if instantiate <= Duration::from_micros(50) {
            "met"
        } else {
            "MISSED"
        }
    );
}

fn median(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs.max(1)).map(|_| f()).collect();
    times.sort();
    times[times.len() / 2]
}

/// Entries shaped like a real inetOrgPerson directory; one in twenty has no mail.
fn synthetic_entries(count: usize) -> Vec<Entry> {
    let departments = ["Engineering", "Sales", "Support", "Finance", "Legal"];
    (0..count)
        .map(|i| {
            let uid = format!("user{i:06}");
            let ou = departments[i % departments.len()];
            let mut attributes = vec![
                ("uid".to_owned(), vec![uid.clone()]),
                ("cn".to_owned(), vec![format!("User Number {i}")]),
                (
                    "entryUUID".to_owned(),
                    vec![format!("{i:08x}-6a55-4d7c-9d0e-1f1d5a1e9a01")],
                ),
                (
                    "departmentNumber".to_owned(),
                    vec![format!("{}", 4700 + i % 50), format!("{}", 100 + i % 7)],
                ),
                (
                    "employeeType".to_owned(),
                    vec![if i % 3 == 0 { "contractor" } else { "staff" }.to_owned()],
                ),
                (
                    "l".to_owned(),
                    vec![["Berlin", "Oslo", "Paris"][i % 3].to_owned()],
                ),
                ("ou".to_owned(), vec![ou.to_owned()]),
            ];
            if i % 20 != 0 {
                attributes.push(("mail".to_owned(), vec![format!("{uid}@example.org")]));
            }
            Entry {
                dn: format!("uid={uid},ou={ou},ou=people,dc=example,dc=org"),
                attributes,
                binary_attributes: Vec::new(),
                groups: None,
            }
        })
        .collect()
}

fn to_guest(entry: &Entry) -> abacsync_guest::Entry {
    abacsync_guest::Entry {
        dn: entry.dn.clone(),
        attributes: entry
            .attributes
            .iter()
            .map(|(name, values)| abacsync_guest::TextAttribute {
                name: name.clone(),
                values: values.clone(),
            })
            .collect(),
        binary_attributes: Vec::new(),
        groups: entry.groups.clone(),
    }
}
