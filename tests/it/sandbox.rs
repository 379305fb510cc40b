//! Hostile plugins against the sandbox: each fails with a clear error within its
//! deadline, and a well-behaved plugin keeps working in the same process.

use abacsync::plugin::model::{Decision, Entry, MappingContext, SyncMode};
use abacsync::plugin::{CallErrorKind, Plugin, PluginEngine, SandboxConfig};
use abacsync_testkit::plugins;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_millis(500);
const MEMORY: usize = 32 << 20;

fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let config = SandboxConfig {
            deadline: DEADLINE,
            memory_limit: MEMORY,
            max_output_bytes: 4 << 20,
            log_budget: 16 * 1024,
            ..SandboxConfig::default()
        };
        PluginEngine::new(config, None).expect("engine")
    })
}

fn hostile() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        engine()
            .load("hostile", &plugins::bytes("hostile-mapping"))
            .expect("load hostile")
    })
}

fn context(behaviour: &str) -> MappingContext {
    MappingContext {
        tenant_id: 7,
        mode: SyncMode::Full,
        settings: vec![("behaviour".into(), behaviour.into())],
    }
}

fn entries(count: usize) -> Vec<Entry> {
    (0..count)
        .map(|i| Entry::new(format!("uid=u{i},dc=example,dc=org")))
        .collect()
}

/// Run `behaviour` and return the error kind, checking the call ended in time.
fn fails_with(behaviour: &str) -> (CallErrorKind, String) {
    // Loaded (compiled) before the clock starts: only the call is timed.
    let plugin = hostile();
    let started = Instant::now();
    let err = plugin
        .map_entries(&context(behaviour), entries(3))
        .expect_err("the hostile call must fail");
    let elapsed = started.elapsed();
    assert!(
        elapsed < DEADLINE + Duration::from_secs(2),
        "{behaviour}: took {elapsed:?}, past the deadline"
    );
    let message = err.to_string();
    assert!(
        message.contains("plugin `hostile` (map-batch)"),
        "{message}"
    );
    well_behaved_still_works();
    (err.kind, message)
}

fn well_behaved_still_works() {
    let output = hostile()
        .map_entries(&context("none"), entries(2))
        .expect("a good call after a bad one");
    assert_eq!(output.outcomes.len(), 2);
    assert!(
        output
            .outcomes
            .iter()
            .all(|o| matches!(o, Ok(Decision::Skip { reason }) if reason == "ok"))
    );
}

#[test]
fn endless_loop_hits_the_deadline() {
    let (kind, message) = fails_with("loop");
    assert!(
        matches!(kind, CallErrorKind::Deadline(d) if d == DEADLINE),
        "{message}"
    );
    assert!(message.contains("deadline"), "{message}");
}

#[test]
fn a_sleeping_plugin_is_stopped_at_its_deadline() {
    // A sleep waits in the host (WASI `subscribe-duration` and `poll`), where epoch
    // interruption never reaches: it used to last its full 20 s.
    for behaviour in ["sleep", "sleep-loop"] {
        let (kind, message) = fails_with(behaviour);
        assert!(
            matches!(kind, CallErrorKind::Deadline(d) if d == DEADLINE),
            "{behaviour}: {message}"
        );
    }
    // A short sleep within the deadline is left alone.
    let mut context = context("sleep");
    context.settings.push(("secs".into(), "0".into()));
    let output = hostile()
        .map_entries(&context, entries(1))
        .expect("a sleep of 0 s");
    assert_eq!(
        output.outcomes,
        vec![Ok(Decision::Skip {
            reason: "woke up".into()
        })]
    );
}

#[test]
fn one_tenant_never_takes_every_instance() {
    // Tenant 7 fills its share with sleepers and the queue behind them; tenant 8's
    // call runs at once beside them, and tenant 7's calls beyond its queue are
    // refused at once instead of waiting.
    let config = SandboxConfig {
        // Long enough that all six sleepers are in before the first two reach it, even
        // on a busy two-core machine.
        deadline: Duration::from_secs(8),
        max_instances: 8,
        tenant_instances: 2,
        tenant_queue: 4,
        ..SandboxConfig::default()
    };
    let engine = PluginEngine::new(config, None).expect("engine");
    let plugin = engine
        .load("hostile", &plugins::bytes("hostile-mapping"))
        .expect("load");
    let plugin = &plugin;
    // The attribute names are asked once per context, before its first batch.
    plugin.required_attributes(&context("sleep")).unwrap();
    std::thread::scope(|scope| {
        // One after the other, each in before the next is sent: six submitted at once
        // have been seen to refuse the sixth with two running and three waiting (a
        // race in the executor's admission, on the safe side, still to be found), which
        // this test is not about.
        let mut sleepers = Vec::new();
        for sent in 1..=6 {
            sleepers.push(scope.spawn(move || plugin.map_entries(&context("sleep"), entries(1))));
            let waiting = Instant::now();
            while {
                let load = engine.load_now();
                load.running + load.queued < sent
            } && waiting.elapsed() < Duration::from_secs(2)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Until all six are in (on a busy machine their threads take a while to
        // submit), well before the first two reach their deadline.
        let waiting = Instant::now();
        let mut load = engine.load_now();
        while (load.running, load.queued) != (2, 4) && waiting.elapsed() < Duration::from_secs(6) {
            std::thread::sleep(Duration::from_millis(20));
            load = engine.load_now();
        }
        if (load.running, load.queued) != (2, 4) {
            // Say what the sleepers that are no longer waiting got.
            let ended: Vec<String> = sleepers
                .into_iter()
                .filter(|sleeper| sleeper.is_finished())
                .map(|sleeper| match sleeper.join().unwrap() {
                    Ok(output) => format!("mapped {} entries", output.outcomes.len()),
                    Err(err) => err.to_string(),
                })
                .collect();
            panic!("{load:?}; sleepers that ended: {ended:?}");
        }
        assert!(
            load.threads <= 3,
            "threads start for work that can run: {load:?}"
        );
        let refused = plugin
            .map_entries(&context("sleep"), entries(1))
            .expect_err("no room left in tenant 7's queue");
        assert!(
            matches!(refused.kind, CallErrorKind::Busy { .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("tenant 7"), "{refused}");
        let started = Instant::now();
        let mut other = context("none");
        other.tenant_id = 8;
        let output = plugin.map_entries(&other, entries(2)).expect("tenant 8");
        assert_eq!(output.outcomes.len(), 2);
        // It never waits for a sleeper's slot (the first frees after 8 s).
        assert!(
            started.elapsed() < Duration::from_millis(2000),
            "tenant 8 waited {:?}",
            started.elapsed()
        );
        for sleeper in sleepers {
            let err = sleeper
                .join()
                .unwrap()
                .expect_err("stopped at the deadline");
            assert!(matches!(err.kind, CallErrorKind::Deadline(_)), "{err}");
        }
    });
}

#[test]
fn memory_growth_hits_the_limit() {
    let (kind, message) = fails_with("memory");
    assert!(
        matches!(kind, CallErrorKind::MemoryLimit { limit: MEMORY }),
        "{message}"
    );
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let (kind, message) = fails_with("recursion");
    assert!(matches!(kind, CallErrorKind::StackOverflow), "{message}");
}

#[test]
fn overflowing_the_guest_stack_in_linear_memory_is_explained() {
    let (kind, message) = fails_with("shadow-stack");
    assert!(matches!(kind, CallErrorKind::Trap(_)), "{message}");
    assert!(message.contains("out of bounds memory access"), "{message}");
    assert!(message.contains("unbounded recursion?"), "{message}");
}

#[test]
fn panic_message_reaches_the_error() {
    let (kind, message) = fails_with("panic");
    match kind {
        CallErrorKind::Panic { message: panic } => {
            assert!(
                panic.starts_with("hostile plugin gave up on uid=u0,dc=example,dc=org"),
                "{panic}"
            );
            assert!(panic.contains("src/lib.rs"), "{panic}");
        }
        other => panic!("expected a panic, got {other:?}: {message}"),
    }
}

#[test]
fn oversized_output_is_refused() {
    let (kind, message) = fails_with("oversized");
    assert!(
        matches!(kind, CallErrorKind::OversizedOutput { limit, .. } if limit == 4 << 20),
        "{message}"
    );
}

#[test]
fn a_four_gib_allocation_is_refused_cleanly() {
    // All of 32-bit memory in one `memory.grow`, and the largest single allocation a
    // wasm32 program can ask for: each stops at the memory limit, in time.
    for behaviour in ["huge-grow", "huge-alloc"] {
        let (kind, message) = fails_with(behaviour);
        assert!(
            matches!(kind, CallErrorKind::MemoryLimit { .. }),
            "{behaviour}: {message}"
        );
    }
    // The instance pool is not harmed: the next call works.
    let output = hostile()
        .map_entries(&context("none"), entries(2))
        .expect("a healthy call after the huge ones");
    assert_eq!(output.outcomes.len(), 2);
}

#[test]
fn output_just_over_the_default_limit_is_refused_and_just_under_passes() {
    // The default 64 MiB output limit, with room in memory for the values and their
    // encoding, so that the output limit is the one reached.
    let config = SandboxConfig {
        memory_limit: 512 << 20,
        ..SandboxConfig::default()
    };
    let limit = config.max_output_bytes;
    let engine = PluginEngine::new(config, None).expect("engine");
    let plugin = engine
        .load("hostile", &plugins::bytes("hostile-mapping"))
        .expect("load");
    let run = |bytes: usize| {
        let mut context = context("output-bytes");
        context.settings.push(("bytes".into(), bytes.to_string()));
        plugin.map_entries(&context, entries(1))
    };
    let err = run(limit + (64 << 10)).expect_err("64 KiB over the limit");
    assert!(
        matches!(err.kind, CallErrorKind::OversizedOutput { limit: l, .. } if l == limit),
        "{err}"
    );
    let output = run(limit - (1 << 20)).expect("1 MiB under the limit");
    match &output.outcomes[..] {
        [Ok(Decision::Upsert(user))] => {
            let total: usize = user.attributes["bulk"].iter().map(String::len).sum();
            assert_eq!(total, limit - (1 << 20));
        }
        other => panic!("{:?}", other.iter().map(|o| o.is_ok()).collect::<Vec<_>>()),
    }
}

#[test]
fn log_flood_exhausts_the_budget() {
    let (kind, message) = fails_with("log-flood");
    assert!(
        matches!(kind, CallErrorKind::LogBudget { limit: 16384 }),
        "{message}"
    );
}

#[test]
fn console_flood_is_bounded_not_fatal() {
    let output = hostile()
        .map_entries(&context("print-flood"), entries(1))
        .expect("printing is allowed");
    assert_eq!(output.stats.console_bytes, 2 * 1024 * 1024);
}

#[test]
fn network_and_files_are_denied_at_run_time() {
    // A real listener the plugin is told to reach: it must never see a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let mut network = context("network");
    network.settings.push((
        "address".into(),
        listener.local_addr().expect("address").to_string(),
    ));
    let output = hostile()
        .map_entries(&network, entries(2))
        .expect("the call itself succeeds");
    for outcome in &output.outcomes {
        let Err(err) = outcome else {
            panic!("expected the connection to fail, got {outcome:?}");
        };
        assert!(err.message.starts_with("connect:"), "{err}");
    }
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "a plugin reached the host's network"
    );

    let output = hostile()
        .map_entries(&context("files"), entries(1))
        .expect("the call itself succeeds");
    let Err(err) = &output.outcomes[0] else {
        panic!(
            "expected reading a host file to fail, got {:?}",
            output.outcomes[0]
        );
    };
    assert!(err.message.starts_with("read:"), "{err}");
}

#[test]
fn every_call_gets_a_fresh_instance() {
    for _ in 0..3 {
        let output = hostile()
            .map_entries(&context("count-calls"), entries(1))
            .expect("call");
        assert_eq!(
            output.outcomes[0],
            Ok(Decision::Skip {
                reason: "calls=1".into()
            })
        );
    }
}

#[test]
fn fuel_limits_instructions() {
    let config = SandboxConfig {
        fuel: Some(5_000_000),
        deadline: Duration::from_secs(30),
        ..SandboxConfig::default()
    };
    let engine = PluginEngine::new(config, None).expect("engine");
    let plugin = engine
        .load("hostile", &plugins::bytes("hostile-mapping"))
        .expect("load");
    let err = plugin
        .map_entries(&context("loop"), entries(1))
        .expect_err("runs out of fuel");
    assert!(
        matches!(err.kind, CallErrorKind::OutOfFuel(5_000_000)),
        "{err}"
    );
    let output = plugin
        .map_entries(&context("none"), entries(10))
        .expect("a cheap call fits");
    assert!(
        output
            .stats
            .fuel_used
            .is_some_and(|used| used > 0 && used < 5_000_000)
    );
}

#[test]
fn hostile_calls_in_parallel_do_not_disturb_a_good_one() {
    std::thread::scope(|scope| {
        let bad: Vec<_> = ["loop", "memory", "panic", "recursion"]
            .into_iter()
            .map(|behaviour| {
                scope.spawn(move || {
                    hostile()
                        .map_entries(&context(behaviour), entries(1))
                        .is_err()
                })
            })
            .collect();
        for _ in 0..20 {
            well_behaved_still_works();
        }
        for handle in bad {
            assert!(handle.join().expect("thread"));
        }
    });
}
