//! Sync benchmark: a 100,000-user OpenLDAP directory (generated, loaded with slapadd),
//! synced through the OpenLDAP example plugin into a store, each figure beside
//! `ldapsearch` paging through the same entries with the same attributes in the same
//! run (the baseline):
//!
//! - first full sync into an empty store (target ≤ 3× ldapsearch);
//! - a second full sync with nothing changed (target ≤ 1.5×);
//! - an incremental sync after 1% of the entries changed and 0.1% were deleted: RFC
//!   4533 content synchronization (refreshOnly from the last sync's cookie; the
//!   directory has the `syncprov` overlay with a session log), so the deletions are
//!   seen and applied (target ≤ 0.3× on SQLite, ≤ 0.1× on PostgreSQL);
//! - peak resident memory of this process during each sync (target ≤ 300 MB), and with
//!   `--verbose` its resident memory at each tenth of the run, so that growth shows.
//!
//! The store is an SQLite file, or with `--store postgres` a database on a PostgreSQL
//! server the benchmark starts on a free loopback port (a fresh database for each
//! first sync); its server's CPU time is shown with `--verbose`.
//!
//! With `--tenants N`, N tenants of the same directory instead: their first full
//! syncs one after another, then at once (on a new store each time), the time of both
//! and the peak memory at once (targets: at once ≤ 1.3× one after another, ≤ 600 MB).
//!
//! Run: `cargo bench -p abacsync --bench sync` (optionally `-- --users N --runs R
//! --store sqlite|postgres --tenants N`). Medians of R runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abacsync::config::Config;
use abacsync::ldap::{LdapDirectory, Selection};
use abacsync::plugin::model::SyncMode;
use abacsync::plugin::{PluginEngine, PluginRegistry, SandboxConfig};
use abacsync::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use abacsync::sync::{Progress, SyncEngine, SyncReport, SyncRequest, system_clock};
use abacsync_testkit::directory::{PeopleOptions, user_dn, write_people_ldif};
use abacsync_testkit::postgres::Postgres;
use abacsync_testkit::slapd::Slapd;
use abacsync_testkit::{bench_arg, plugins};

const BASE: &str = "dc=example,dc=org";

// The allocator of the `abacsync` binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let users = bench_arg(&args, "--users", 100_000);
    let runs = bench_arg(&args, "--runs", 3);
    let tenants = bench_arg(&args, "--tenants", 1);
    let verbose = args.iter().any(|arg| arg == "--verbose");
    let backend = args
        .iter()
        .position(|arg| arg == "--store")
        .and_then(|at| args.get(at + 1))
        .map_or("sqlite", String::as_str)
        .to_owned();
    let postgres = match backend.as_str() {
        "sqlite" => None,
        "postgres" => Some(Postgres::start().expect("postgres")),
        other => panic!("--store takes sqlite or postgres, not {other}"),
    };
    let postgres_pid = postgres.as_ref().and_then(Postgres::pid);
    let changed = (users / 100).max(1);

    let started = Instant::now();
    let slapd = Slapd::builder()
        .syncprov(Some(users))
        .ldif_writer(move |out| write_people_ldif(out, BASE, users, &PeopleOptions::default()))
        .start()
        .expect("slapd");
    println!(
        "directory: {users} users loaded with slapadd in {:.1?}",
        started.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    let plugin_path = plugins::component("openldap-mapping");
    let block = |id: usize| {
        format!(
            r#"
        [[tenant]]
        id = {id}
        plugin = {{ path = "{plugin}" }}
        [tenant.ldap]
        servers = ["{url}"]
        tls = "plain"
        bind_dn = "{admin}"
        bind_password = "{password}"
        base_dn = "ou=people,{BASE}"
        user_filter = "(objectClass=inetOrgPerson)"
        page_size = 1000
        change_attribute = "entryCSN"
        [tenant.removal]
        max_percent = 100.0
        "#,
            plugin = plugin_path.display(),
            url = slapd.url(),
            admin = slapd.admin_dn(),
            password = slapd.admin_password(),
        )
    };
    let text: String = (1..=tenants.max(1)).map(block).collect();
    let all_tenants = Config::parse(&text, Path::new("bench.toml"))
        .unwrap()
        .tenants;
    let tenant = all_tenants[0].clone();
    let registry = PluginRegistry::new(PluginEngine::new(SandboxConfig::default(), None).unwrap());
    let plugin = registry
        .assign(
            1,
            "openldap",
            &std::fs::read(&plugin_path).unwrap(),
            Vec::new(),
        )
        .unwrap();
    let directory =
        LdapDirectory::new(&tenant.ldap, tenant.ldap.bind_password(1).unwrap()).unwrap();
    let slapd_pid = slapd.pid().map(|pid| pid.to_string());
    let slapd_pid = slapd_pid.as_deref();
    // A new store (an SQLite file, or a database on the PostgreSQL server) named
    // `name`.
    let fresh_store = |name: &str| -> Arc<dyn Store> {
        match &postgres {
            Some(server) => {
                server.create_database(name).unwrap();
                Arc::new(
                    PostgresStore::open(&PostgresOptions {
                        url: server.url(name),
                        password: None,
                        max_connections: 16,
                        ca_file: None,
                    })
                    .unwrap(),
                )
            }
            None => Arc::new(SqliteStore::open(&dir.path().join(format!("{name}.db"))).unwrap()),
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let sync = |store: &Arc<dyn Store>, mode: SyncMode| -> (Duration, SyncReport, u64) {
        reset_peak_memory();
        let before = peak_memory_kib();
        let cpu_before = (cpu_ms("self"), slapd_pid.map(cpu_ms));
        let database_before = postgres_pid.map(tree_cpu_ms);
        let checkpoint_before = threads_cpu_ms("abacsync-checkp");
        let engine = SyncEngine::new(store.clone(), system_clock());
        let sampler = RssSampler::start();
        let started = Instant::now();
        let (report, error) = runtime.block_on(engine.run(
            &tenant,
            plugin.clone(),
            &directory,
            SyncRequest::new(mode, "bench", "bench"),
            Progress::new(),
        ));
        let elapsed = started.elapsed();
        let rss = sampler.line();
        assert!(error.is_none(), "sync failed: {error:?}");
        if verbose {
            println!("  {mode:?}: {rss}");
            println!(
                "  {mode:?}: {elapsed:.1?}; read+map {} ms, plugin {} ms, apply {} ms; CPU {} ms (checkpoints {} ms, slapd {} ms, postgres {} ms); RSS before {} MiB",
                report.timings.read_map_ms,
                report.timings.plugin_ms,
                report.timings.apply_ms,
                cpu_ms("self") - cpu_before.0,
                threads_cpu_ms("abacsync-checkp").saturating_sub(checkpoint_before),
                slapd_pid.map(cpu_ms).unwrap_or(0) - cpu_before.1.unwrap_or(0),
                postgres_pid
                    .map(tree_cpu_ms)
                    .unwrap_or(0)
                    .saturating_sub(database_before.unwrap_or(0)),
                before / 1024
            );
        }
        (elapsed, report, peak_memory_kib())
    };

    if tenants > 1 {
        let plugins: Vec<_> = all_tenants
            .iter()
            .map(|tenant| {
                registry
                    .assign(
                        tenant.id,
                        "openldap",
                        &std::fs::read(&plugin_path).unwrap(),
                        Vec::new(),
                    )
                    .unwrap()
            })
            .collect();
        let run_all = |store: &Arc<dyn Store>, at_once: bool| {
            let engine = SyncEngine::new(store.clone(), system_clock());
            let runs = all_tenants.iter().zip(&plugins).map(|(tenant, plugin)| {
                let (engine, tenant, plugin) = (engine.clone(), tenant.clone(), plugin.clone());
                let directory =
                    LdapDirectory::new(&tenant.ldap, tenant.ldap.bind_password(tenant.id).unwrap())
                        .unwrap();
                async move {
                    let request = SyncRequest::new(SyncMode::Full, "bench", "bench");
                    let (report, error) = engine
                        .run(&tenant, plugin, &directory, request, Progress::new())
                        .await;
                    assert!(error.is_none(), "tenant {}: {error:?}", tenant.id);
                    assert_eq!(report.counts.created, users as u64);
                }
            });
            runtime.block_on(async {
                if at_once {
                    let mut set = tokio::task::JoinSet::new();
                    runs.for_each(|run| {
                        set.spawn(run);
                    });
                    while let Some(done) = set.join_next().await {
                        done.unwrap();
                    }
                } else {
                    for run in runs {
                        run.await;
                    }
                }
            });
        };
        let measure = |name: &str, at_once: bool| {
            let store = fresh_store(name);
            reset_peak_memory();
            let cpu_before = (cpu_ms("self"), slapd_pid.map(cpu_ms));
            let sampler = RssSampler::start();
            let started = Instant::now();
            run_all(&store, at_once);
            let elapsed = started.elapsed();
            let rss = sampler.line();
            let peak = peak_memory_kib();
            if verbose {
                println!(
                    "  {name}: {elapsed:.1?}; CPU {} ms (slapd {} ms); {rss}",
                    cpu_ms("self") - cpu_before.0,
                    slapd_pid.map(cpu_ms).unwrap_or(0) - cpu_before.1.unwrap_or(0),
                );
            }
            (elapsed, peak)
        };
        let (one_by_one, _) = measure("one_after_another", false);
        let (at_once, peak) = measure("at_once", true);
        let ratio = at_once.as_secs_f64() / one_by_one.as_secs_f64();
        println!("store: {backend}");
        println!(
            "{tenants} tenants of {users} users, first full syncs: one after another {:.0} ms, at once {:.0} ms: {ratio:.2}x (target ≤ 1.3x: {})",
            one_by_one.as_secs_f64() * 1000.0,
            at_once.as_secs_f64() * 1000.0,
            if ratio <= 1.3 { "met" } else { "MISSED" },
        );
        let peak_bytes = peak * 1024;
        println!(
            "peak memory at once, target ≤ 600 MB: {} ({:.0} MB)",
            if peak_bytes <= 600_000_000 {
                "met"
            } else {
                "MISSED"
            },
            peak_bytes as f64 / 1e6
        );
        return;
    }

    // The same filter and attributes the sync asks for.
    let filter = directory.filter(&Selection::All).unwrap();
    let mut attributes = plugin
        .plugin
        .required_attributes(&plugin.context(SyncMode::Full))
        .unwrap();
    attributes.extend(tenant.ldap.unique_identifiers.iter().cloned());
    attributes.push(tenant.ldap.change_attribute.clone());
    attributes.push("memberOf".into());
    let ldapsearch = median(runs, || {
        let started = Instant::now();
        let cpu_before = (cpu_ms("self-children"), slapd_pid.map(cpu_ms));
        let status = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &slapd.url(),
                "-D",
                slapd.admin_dn(),
                "-w",
                slapd.admin_password(),
            ])
            .args([
                "-b",
                &format!("ou=people,{BASE}"),
                "-E",
                "pr=1000/noprompt",
                &filter,
            ])
            .args(&attributes)
            .stdout(Stdio::null())
            .status()
            .expect("ldapsearch");
        assert!(status.success());
        if verbose {
            println!(
                "  ldapsearch: {:.1?}; CPU {} ms (slapd {} ms)",
                started.elapsed(),
                cpu_ms("self-children") - cpu_before.0,
                slapd_pid.map(cpu_ms).unwrap_or(0) - cpu_before.1.unwrap_or(0),
            );
        }
        started.elapsed()
    });

    let mut first = Vec::new();
    let mut first_peak = 0;
    let mut store: Option<Arc<dyn Store>> = None;
    for run in 0..runs {
        // The previous run's store is closed first: a process has one store, and its
        // page cache is not this run's memory.
        drop(store.take());
        let fresh = fresh_store(&format!("first_{run}"));
        let (elapsed, report, peak) = sync(&fresh, SyncMode::Full);
        assert_eq!(report.counts.created, users as u64);
        first.push(elapsed);
        first_peak = first_peak.max(peak);
        store = Some(fresh);
    }
    let store = store.unwrap();
    let mut unchanged_peak = 0;
    let unchanged = median(runs, || {
        let (elapsed, report, peak) = sync(&store, SyncMode::Full);
        assert_eq!(report.counts.unchanged, users as u64);
        unchanged_peak = unchanged_peak.max(peak);
        elapsed
    });
    let mut incremental_peak = 0;
    let mut round = 0;
    let deleted = (users / 1000).max(1);
    let incremental = median(runs, || {
        round += 1;
        // Sync first so the cookie is fresh, then change 1% of the entries and delete
        // 0.1% (others each round: never a changed one).
        sync(&store, SyncMode::Incremental);
        let mut ldif = String::new();
        for i in (0..users).step_by(users / changed).take(changed) {
            ldif.push_str(&format!(
                "dn: {}\nchangetype: modify\nreplace: departmentNumber\ndepartmentNumber: bench-{round}\n\n",
                user_dn(BASE, i)
            ));
        }
        for k in 0..deleted {
            let i = (k * 1000 + 50 + round) % users;
            ldif.push_str(&format!("dn: {}\nchangetype: delete\n\n", user_dn(BASE, i)));
        }
        slapd.modify(&ldif).unwrap();
        let (elapsed, report, peak) = sync(&store, SyncMode::Incremental);
        assert_eq!(report.tracking.as_deref(), Some("syncrepl"));
        assert_eq!(
            (report.counts.updated, report.counts.deactivated),
            (changed as u64, deleted as u64),
            "{:?}",
            report.counts
        );
        incremental_peak = incremental_peak.max(peak);
        elapsed
    });
    let first = median_of(first);

    let base = ldapsearch.as_secs_f64();
    println!("store: {backend}");
    println!(
        "baseline: ldapsearch paging through {users} entries: {:.0} ms (median of {runs})",
        base * 1000.0
    );
    let line = |name: &str, time: Duration, target: f64, peak: u64| {
        let ratio = time.as_secs_f64() / base;
        println!(
            "{name:<34} {:>7.0} ms  {ratio:>5.2}x ldapsearch (target ≤ {target}x: {})  peak RSS {} MiB",
            time.as_secs_f64() * 1000.0,
            if ratio <= target { "met" } else { "MISSED" },
            peak / 1024
        );
    };
    line("first full sync (empty store)", first, 3.0, first_peak);
    line("full sync, nothing changed", unchanged, 1.5, unchanged_peak);
    line(
        &format!("incremental, {changed} changed, {deleted} deleted"),
        incremental,
        if postgres.is_some() { 0.1 } else { 0.3 },
        incremental_peak,
    );
    // 300 MB (10^6 bytes), not MiB: the peaks are in KiB.
    let peak_bytes = first_peak.max(unchanged_peak).max(incremental_peak) * 1024;
    println!(
        "peak memory target ≤ 300 MB: {} ({:.0} MB)",
        if peak_bytes <= 300_000_000 {
            "met"
        } else {
            "MISSED"
        },
        peak_bytes as f64 / 1e6
    );
}

fn median(runs: usize, mut measure: impl FnMut() -> Duration) -> Duration {
    median_of((0..runs.max(1)).map(|_| measure()).collect())
}

fn median_of(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Resets the kernel's peak-RSS counter of this process (Linux ≥ 4.0).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time (user and system) of process `pid` (`self`), or of the waited-for
/// children of this one (`self-children`), in milliseconds: /proc's clock ticks are
/// 1/100 s on Linux.
fn cpu_ms(pid: &str) -> u64 {
    // Positions after the command name: utime and stime are the 14th and 15th fields,
    // cutime and cstime the 16th and 17th; the 3rd is the first after the name.
    let (pid, fields) = match pid {
        "self-children" => ("self", 13..15),
        pid => (pid, 11..13),
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest
        .split_whitespace()
        .enumerate()
        .filter(|(index, _)| fields.contains(index))
        .filter_map(|(_, value)| value.parse::<u64>().ok())
        .sum();
    ticks * 10
}

/// CPU time of process `pid` and its children (a PostgreSQL server and its backends),
/// in milliseconds.
fn tree_cpu_ms(pid: u32) -> u64 {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let parent = pid.to_string();
    processes
        .filter_map(Result::ok)
        .filter_map(|process| {
            let name = process.file_name().into_string().ok()?;
            let stat = std::fs::read_to_string(process.path().join("stat")).ok()?;
            let rest = stat.rsplit_once(')')?.1;
            // The 2nd field after the name is the parent's pid.
            let ppid = rest.split_whitespace().nth(1)?;
            (name == parent || ppid == parent).then(|| cpu_ms(&name))
        })
        .sum()
}

/// CPU time of this process's threads whose name starts with `prefix`, in ms (only
/// threads alive now).
fn threads_cpu_ms(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1;
            name.starts_with(prefix).then(|| {
                let ticks: u64 = rest
                    .split_whitespace()
                    .enumerate()
                    .filter(|(index, _)| (11..13).contains(index))
                    .filter_map(|(_, value)| value.parse::<u64>().ok())
                    .sum();
                ticks * 10
            })
        })
        .sum()
}

/// Peak resident memory since the last reset, in KiB.
fn peak_memory_kib() -> u64 {
    status_kib("VmHWM:")
}

/// A size field of /proc/self/status (`VmRSS:`, `VmHWM:`), in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Samples this process's resident memory every 50 ms until dropped, so that growth
/// during a sync is visible: [`RssSampler::line`] gives it at each tenth of the run.
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    samples: Option<std::thread::JoinHandle<Vec<u64>>>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let samples = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                samples.push(status_kib("VmRSS:"));
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        });
        RssSampler {
            stop,
            samples: Some(samples),
        }
    }

    /// `RSS over time (MiB, each tenth of the run): 40 52 … 180`.
    fn line(mut self) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = self
            .samples
            .take()
            .map(|thread| thread.join().unwrap_or_default())
            .unwrap_or_default();
        if samples.is_empty() {
            return "RSS over time: no sample".into();
        }
        let points: Vec<String> = (0..=10)
            .map(|tenth| samples[(samples.len() - 1) * tenth / 10] / 1024)
            .map(|mib| mib.to_string())
            .collect();
        format!(
            "RSS over time (MiB, at each tenth of the run): {}",
            points.join(" ")
        )
    }
}
