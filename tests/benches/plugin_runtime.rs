//! Plugin runtime benchmark: 100,000 synthetic inetOrgPerson entries through the
//! OpenLDAP example plugin, as batch calls and as one call per entry, the cost of
//! instantiating a fresh instance, and, as the baseline taken in the same run, the
//! same mapping compiled natively. Then the same mapping written in Python
//! (plugins/openldap-py) and JavaScript (plugins/openldap-js) over the same entries:
//! batch calls, instantiation, and the Python component's load time compiled and from
//! the disk cache.
//!
//! Run: `cargo bench -p abacsync --bench plugin_runtime` (optionally `-- --entries N
//! --runs R`). Medians of R runs are printed with the ratio to the native baseline.

// Test support: a panic is how a test or benchmark fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use abacsync::plugin::model::{Entry, MappingContext, SyncMode};
use abacsync::plugin::{Plugin, PluginEngine, SandboxConfig};
use abacsync_guest::testing;
use abacsync_testkit::plugins::{Language, script_component};
use openldap_mapping::OpenLdap;
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH: usize = 1000;

// The allocator of the `abacsync` binary, so the host's share of each call (encoding
// the batch, decoding the decisions, dropping the entries) costs what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

    let batched = batch_calls(&plugin, &context, &entries, runs);

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

    let instantiate = instantiation(&plugin, &context, 5_000);

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
    println!("  instantiation (median of 5000): {instantiate:?}");
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

    languages(&entries, &context, runs, native_rate);
}

/// The Python and JavaScript versions of the mapping over the same entries.
fn languages(entries: &[Entry], context: &MappingContext, runs: usize, native_rate: f64) {
    let cache = tempfile::tempdir().expect("cache dir");
    let load = |language: Language, dir: &str| -> (Plugin, Duration) {
        let bytes = std::fs::read(script_component(language, dir)).expect("component");
        let engine = PluginEngine::new(SandboxConfig::default(), Some(cache.path().to_owned()))
            .expect("engine");
        let started = Instant::now();
        let plugin = engine.load(dir, &bytes).expect("load");
        (plugin, started.elapsed())
    };
    let (python, python_cold) = load(Language::Python, "plugins/openldap-py");
    assert!(!python.load_stats().from_cache);
    // A new engine each time, as after a restart: the compiled code comes from disk.
    let python_cached = median(runs, || {
        let (plugin, took) = load(Language::Python, "plugins/openldap-py");
        assert!(plugin.load_stats().from_cache);
        took
    });
    let (javascript, javascript_cold) = load(Language::JavaScript, "plugins/openldap-js");
    // The bindings alone: a prebuilt user for every entry, the entry unread.
    let (python_floor, _) = load(Language::Python, "tests/plugins/constant-py");
    let (javascript_floor, _) = load(Language::JavaScript, "tests/plugins/constant-js");
    let python_size = python.report().size;

    let count = entries.len();
    let rate = |time: Duration| count as f64 / time.as_secs_f64();
    let python_batches = batch_calls(&python, context, entries, runs);
    let javascript_batches = batch_calls(&javascript, context, entries, runs);
    let python_instantiate = instantiation(&python, context, 1_000);
    let javascript_instantiate = instantiation(&javascript, context, 1_000);
    let (python_rate, javascript_rate) = (rate(python_batches), rate(javascript_batches));
    let python_floor_rate = rate(batch_calls(&python_floor, context, entries, runs));
    let javascript_floor_rate = rate(batch_calls(&javascript_floor, context, entries, runs));

    println!(
        "scripted plugins: the same mapping, the same {count} entries, batches of {BATCH}, median of {runs} runs"
    );
    println!(
        "  Python, batch calls:        {python_rate:>12.0} entries/s  ({python_batches:?})  {:.1}x native time",
        native_rate / python_rate
    );
    println!(
        "  JavaScript, batch calls:    {javascript_rate:>12.0} entries/s  ({javascript_batches:?})  {:.1}x native time",
        native_rate / javascript_rate
    );
    println!(
        "  the boundary alone (the batch parsed, a constant user per entry): Python {python_floor_rate:.0} entries/s, JavaScript {javascript_floor_rate:.0} entries/s"
    );
    println!(
        "  Python component ({:.1} MiB): compiled in {python_cold:?}; from the disk cache in {python_cached:?}",
        python_size as f64 / (1 << 20) as f64
    );
    println!("  JavaScript component: compiled in {javascript_cold:?}");
    println!(
        "  instantiation (median of 1000): Python {python_instantiate:?}, JavaScript {javascript_instantiate:?}"
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "  targets: Python >= 50000 entries/s: {}; JavaScript >= 10000 entries/s: {}; cached load < 100ms: {}; instantiation <= 1ms: {}",
        verdict(python_rate >= 50_000.0),
        verdict(javascript_rate >= 10_000.0),
        verdict(python_cached < Duration::from_millis(100)),
        verdict(
            python_instantiate <= Duration::from_millis(1)
                && javascript_instantiate <= Duration::from_millis(1)
        ),
    );
}

/// Median time to map every entry in batch calls.
fn batch_calls(
    plugin: &Plugin,
    context: &MappingContext,
    entries: &[Entry],
    runs: usize,
) -> Duration {
    median(runs, || {
        let batches: Vec<Vec<Entry>> = entries.chunks(BATCH).map(<[_]>::to_vec).collect();
        let started = Instant::now();
        for batch in batches {
            black_box(plugin.map_entries(context, batch).expect("batch call"));
        }
        started.elapsed()
    })
}

/// Median instantiation time of `calls` fresh instances.
fn instantiation(plugin: &Plugin, context: &MappingContext, calls: usize) -> Duration {
    let mut times: Vec<Duration> = (0..calls)
        .map(|_| {
            plugin
                .map_entries(context, Vec::new())
                .expect("empty call")
                .stats
                .instantiate
        })
        .collect();
    times.sort();
    times[times.len() / 2]
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
