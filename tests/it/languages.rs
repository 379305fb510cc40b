//! Plugins written in Python (componentize-py) and JavaScript (componentize-js): the
//! OpenLDAP example in both languages against the Rust example's golden fixtures, a
//! failing script's own message and traceback reaching the error with the entry's DN,
//! misbehaving scripts stopped by the sandbox, and the compiled-code cache.

use abacsync::plugin::model::{Decision, Entry, MappingContext, MappingErrorKind, SyncMode};
use abacsync::plugin::{CallErrorKind, Plugin, PluginEngine, SandboxConfig};
use abacsync_testkit::plugins::{self, Language};
use abacsync_testkit::workspace_root;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(2);
const MEMORY: usize = 96 << 20;

/// Compiled components shared by the tests of this file (compiling a language runtime
/// takes seconds); `compiled_code_is_reused_from_the_disk_cache` uses its own folder.
fn cache_dir() -> PathBuf {
    workspace_root().join("target").join("test-plugin-cache")
}

fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let config = SandboxConfig {
            deadline: DEADLINE,
            memory_limit: MEMORY,
            ..SandboxConfig::default()
        };
        PluginEngine::new(config, Some(cache_dir())).expect("engine")
    })
}

fn hostile(language: Language) -> &'static Plugin {
    static PYTHON: OnceLock<Plugin> = OnceLock::new();
    static JAVASCRIPT: OnceLock<Plugin> = OnceLock::new();
    let (cell, dir) = match language {
        Language::Python => (&PYTHON, "tests/plugins/hostile-py"),
        Language::JavaScript => (&JAVASCRIPT, "tests/plugins/hostile-js"),
    };
    cell.get_or_init(|| {
        let path = plugins::script_component(language, dir);
        let bytes = std::fs::read(&path).expect("component");
        engine().load(dir, &bytes).expect("load")
    })
}

fn context(behaviour: &str) -> MappingContext {
    MappingContext {
        tenant_id: 3,
        mode: SyncMode::Full,
        settings: vec![("behaviour".into(), behaviour.into())],
    }
}

fn entry(dn: &str, attributes: &[(&str, &str)]) -> Entry {
    Entry {
        attributes: attributes
            .iter()
            .map(|(name, value)| ((*name).to_owned(), vec![(*value).to_owned()]))
            .collect(),
        ..Entry::new(dn)
    }
}

fn entries(count: usize) -> Vec<Entry> {
    (0..count)
        .map(|i| {
            entry(
                &format!("uid=u{i},ou=people,dc=example,dc=org"),
                &[("uid", &format!("u{i}"))],
            )
        })
        .collect()
}

fn abacsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_abacsync"))
        .args(args)
        .output()
        .expect("running abacsync")
}

/// `abacsync plugin test` of `component` over the fixtures of the Rust example
/// `example` (with its `settings` file when it has one).
fn golden(component: &std::path::Path, example: &str, cache: &std::path::Path) -> String {
    let fixtures = plugins::fixtures_dir(example);
    let mut args = vec![
        "plugin".to_owned(),
        "test".to_owned(),
        component.to_str().expect("utf-8").to_owned(),
        fixtures
            .join("entries.ldif")
            .to_str()
            .expect("utf-8")
            .to_owned(),
        "--expect".to_owned(),
        fixtures
            .join("expected.json")
            .to_str()
            .expect("utf-8")
            .to_owned(),
        "--cache-dir".to_owned(),
        cache.to_str().expect("utf-8").to_owned(),
    ];
    if fixtures.join("settings").is_file() {
        args.push("--settings-file".to_owned());
        args.push(
            fixtures
                .join("settings")
                .to_str()
                .expect("utf-8")
                .to_owned(),
        );
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = abacsync(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{} differs from the Rust example's golden output:\n{stderr}",
        component.display()
    );
    assert!(stderr.contains("matches"), "{stderr}");
    // Byte for byte what the Rust plugin prints.
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("expected.json")).expect("expected"),
    )
    .expect("expected json");
    assert_eq!(printed, expected);
    stderr
}

/// The Python examples are the Rust examples: each passes its golden fixtures (the
/// templates of `abacsync plugin new --lang python`).
#[test]
fn python_plugins_match_the_rust_examples_golden_output() {
    for (dir, example, name) in [
        (
            "plugins/openldap-py",
            "openldap",
            "openldap-inetorgperson-python",
        ),
        (
            "plugins/active-directory-py",
            "active-directory",
            "active-directory-python",
        ),
        (
            "plugins/settings-map-py",
            "settings-map",
            "settings-map-python",
        ),
    ] {
        let component = plugins::script_component(Language::Python, dir);
        let stderr = golden(&component, example, &cache_dir());
        assert!(stderr.starts_with(&format!("{name} 1.0.0")), "{stderr}");
    }
}

/// The JavaScript examples are the Rust examples, likewise (`--lang js`).
#[test]
fn javascript_plugins_match_the_rust_examples_golden_output() {
    for (dir, example, name) in [
        (
            "plugins/openldap-js",
            "openldap",
            "openldap-inetorgperson-js",
        ),
        (
            "plugins/active-directory-js",
            "active-directory",
            "active-directory-js",
        ),
        ("plugins/settings-map-js", "settings-map", "settings-map-js"),
    ] {
        let component = plugins::script_component(Language::JavaScript, dir);
        let stderr = golden(&component, example, &cache_dir());
        assert!(stderr.starts_with(&format!("{name} 1.0.0")), "{stderr}");
    }
}

#[test]
fn plugin_check_names_the_language_and_its_memory() {
    for (language, dir, name) in [
        (Language::Python, "plugins/openldap-py", "Python"),
        (Language::JavaScript, "plugins/openldap-js", "JavaScript"),
    ] {
        let component = plugins::script_component(language, dir);
        let output = abacsync(&[
            "plugin",
            "check",
            component.to_str().expect("utf-8"),
            "--json",
            "--cache-dir",
            cache_dir().to_str().expect("utf-8"),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        assert_eq!(report["language"], name, "{report}");
        let size = report["size"].as_u64().expect("size");
        assert!(size > 5 << 20, "a language runtime is megabytes: {size}");
        let at_start = report["memoryAtStartBytes"].as_u64().expect("memory");
        assert!(
            at_start > 1 << 20 && at_start < MEMORY as u64 * 2,
            "{report}"
        );
        assert_eq!(report["memoryLimitBytes"], 128 << 20, "{report}");
        if language == Language::Python {
            let toolchain = report["toolchain"].to_string();
            assert!(toolchain.contains("CPython 3."), "{toolchain}");
        }
    }
}

/// An exception while mapping one entry fails that entry only, with the script's own
/// message and traceback; the sync reports it under the entry's DN.
#[test]
fn a_script_exception_fails_its_entry_with_the_scripts_message() {
    for (language, message, trace) in [
        (Language::Python, "ValueError: cannot map uid=u1,", "line "),
        (
            Language::JavaScript,
            "TypeError: cannot map uid=u1,",
            "mapping.js:",
        ),
    ] {
        let output = hostile(language)
            .map_entries(&context("raise"), entries(3))
            .unwrap_or_else(|err| panic!("{language:?}: {err}"));
        assert_eq!(
            output.outcomes[0],
            Ok(Decision::Skip {
                reason: "ok".into()
            }),
            "{language:?}"
        );
        assert_eq!(output.outcomes[2], output.outcomes[0], "{language:?}");
        let Err(err) = &output.outcomes[1] else {
            panic!(
                "{language:?}: expected an error, got {:?}",
                output.outcomes[1]
            );
        };
        assert_eq!(err.kind, MappingErrorKind::Other, "{language:?}");
        assert!(
            err.message.starts_with(message),
            "{language:?}: {}",
            err.message
        );
        assert!(err.message.contains(trace), "{language:?}: {}", err.message);
    }
}

/// An exception that escapes the SDK fails the whole call: the error names the plugin
/// and carries what the script printed (Python's traceback).
#[test]
fn an_exception_outside_the_sdk_fails_the_call_with_its_traceback() {
    let err = hostile(Language::Python)
        .map_entries(&context("raise-batch"), entries(3))
        .expect_err("the call fails");
    let message = err.to_string();
    assert!(matches!(err.kind, CallErrorKind::Panic { .. }), "{message}");
    assert!(
        message.starts_with("plugin `tests/plugins/hostile-py` (map-batch)"),
        "{message}"
    );
    assert!(
        message.contains("Traceback (most recent call last)"),
        "{message}"
    );
    assert!(
        message.contains("RuntimeError: gave up on a batch of 3 entries"),
        "{message}"
    );

    let err = hostile(Language::JavaScript)
        .map_entries(&context("raise-batch"), entries(3))
        .expect_err("the call fails");
    let message = err.to_string();
    assert!(
        message.contains("Error: gave up on a batch of 3 entries"),
        "{message}"
    );
}

/// Both SDKs read the batch document the same way: names case-insensitively,
/// several values, binary values as bytes, groups known or not, absent attributes.
#[test]
fn scripts_read_every_part_of_an_entry() {
    let mut full = entry(
        "uid=ü,ou=people,dc=example,dc=org",
        &[("uid", "ü"), ("ou", "Sales")],
    );
    full.attributes[1].1.push("Støtte".into());
    full.binary_attributes = vec![("objectGUID".into(), vec![vec![0x00, 0xff, 0x10, 0x7f]])];
    full.groups = Some(vec!["cn=a,dc=x".into(), "cn=b,dc=x".into()]);
    let bare = Entry::new("cn=bare,dc=x");
    for language in [Language::Python, Language::JavaScript] {
        let output = hostile(language)
            .map_entries(&context("echo"), vec![full.clone(), bare.clone()])
            .unwrap_or_else(|err| panic!("{language:?}: {err}"));
        let reasons: Vec<String> = output
            .outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(Decision::Skip { reason }) => reason.clone(),
                other => panic!("{language:?}: {other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "uid=ü,ou=people,dc=example,dc=org|ü|Sales,Støtte|Sales|00ff107f|true|cn=a,dc=x,cn=b,dc=x|-|false",
                "cn=bare,dc=x|||-||false|unknown|-|false",
            ],
            "{language:?}"
        );
    }
}

/// A decision the SDK lets through but the contract refuses fails its entry, and the
/// error says where in the decision the wrong value is.
#[test]
fn a_wrong_value_in_a_decision_fails_its_entry_with_its_path() {
    let output = hostile(Language::Python)
        .map_entries(&context("bad-value"), entries(2))
        .expect("the call works");
    for outcome in &output.outcomes {
        let Err(err) = outcome else {
            panic!("expected an error, got {outcome:?}");
        };
        assert_eq!(err.kind, MappingErrorKind::InvalidOutput);
        assert!(
            err.message.contains(
                "upsert.attributes.unit[1]: invalid type: integer `7`, expected a string"
            ),
            "{}",
            err.message
        );
    }
}

#[test]
fn a_wrong_shape_is_an_error_never_a_crash() {
    for language in [Language::Python, Language::JavaScript] {
        let err = hostile(language)
            .map_entries(&context("wrong-shape"), entries(2))
            .expect_err("the call fails");
        assert!(
            matches!(
                err.kind,
                CallErrorKind::Panic { .. } | CallErrorKind::Trap(_)
            ),
            "{language:?}: {err}"
        );
        let err = hostile(language)
            .map_entries(&context("wrong-json"), entries(2))
            .expect_err("the call fails");
        assert!(
            matches!(&err.kind, CallErrorKind::MalformedOutput(reason) if reason.contains("line 1 column")),
            "{language:?}: {err}"
        );
        // The plugin keeps working afterwards.
        let output = hostile(language)
            .map_entries(&context("none"), entries(2))
            .expect("a good call after a bad one");
        assert_eq!(output.outcomes.len(), 2);
    }
}

#[test]
fn endless_loops_and_memory_growth_are_stopped() {
    for language in [Language::Python, Language::JavaScript] {
        let started = Instant::now();
        let err = hostile(language)
            .map_entries(&context("loop"), entries(1))
            .expect_err("stopped");
        assert!(
            matches!(err.kind, CallErrorKind::Deadline(d) if d == DEADLINE),
            "{language:?}: {err}"
        );
        assert!(
            started.elapsed() < DEADLINE * 3,
            "{language:?}: {:?}",
            started.elapsed()
        );

        let err = hostile(language)
            .map_entries(&context("memory"), entries(1))
            .expect_err("stopped");
        assert!(
            matches!(err.kind, CallErrorKind::MemoryLimit { limit: MEMORY }),
            "{language:?}: {err}"
        );
    }
}

/// Unbounded recursion is the language's own error (RecursionError, InternalError),
/// caught per entry.
#[test]
fn deep_recursion_is_the_languages_own_error() {
    for (language, message) in [
        (Language::Python, "RecursionError"),
        (Language::JavaScript, "InternalError: too much recursion"),
    ] {
        let output = hostile(language)
            .map_entries(&context("recursion"), entries(1))
            .unwrap_or_else(|err| panic!("{language:?}: {err}"));
        let Err(err) = &output.outcomes[0] else {
            panic!("{language:?}: {:?}", output.outcomes[0]);
        };
        assert!(
            err.message.starts_with(message),
            "{language:?}: {}",
            err.message
        );
        assert!(
            err.message.len() < 4096,
            "{language:?}: stack not folded: {}",
            err.message.len()
        );
    }
}

#[test]
fn scripts_get_no_network_and_no_files() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let address = listener.local_addr().expect("address").to_string();
    for (language, behaviour, message) in [
        (
            Language::Python,
            "network",
            "ModuleNotFoundError: No module named 'socket'",
        ),
        (Language::Python, "files", "FileNotFoundError"),
        (
            Language::JavaScript,
            "network",
            "Error: fetch() is not available",
        ),
    ] {
        let mut context = context(behaviour);
        context.settings.push(("address".into(), address.clone()));
        let output = hostile(language)
            .map_entries(&context, entries(1))
            .unwrap_or_else(|err| panic!("{language:?} {behaviour}: {err}"));
        let Err(err) = &output.outcomes[0] else {
            panic!("{language:?} {behaviour}: {:?}", output.outcomes[0]);
        };
        assert!(
            err.message.starts_with(message),
            "{language:?} {behaviour}: {}",
            err.message
        );
    }
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "a script reached the host's network"
    );
}

#[test]
fn printing_is_captured_not_fatal() {
    for language in [Language::Python, Language::JavaScript] {
        let output = hostile(language)
            .map_entries(&context("print"), entries(2))
            .unwrap_or_else(|err| panic!("{language:?}: {err}"));
        assert!(output.stats.console_bytes > 0, "{language:?}");
        assert_eq!(output.outcomes.len(), 2);
    }
}

/// A Python component compiled once is taken from the disk cache by a new engine (as
/// after a restart) and by another tenant's load, without compiling again.
#[test]
fn compiled_code_is_reused_from_the_disk_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = plugins::script_component(Language::Python, "plugins/openldap-py");
    let bytes = std::fs::read(path).expect("component");
    let load = || {
        PluginEngine::new(SandboxConfig::default(), Some(dir.path().to_owned()))
            .expect("engine")
            .load("openldap-py", &bytes)
            .expect("load")
    };
    let cold = load();
    assert!(!cold.load_stats().from_cache);
    let warm = load();
    assert!(warm.load_stats().from_cache);
    assert_eq!(warm.info().name, "openldap-inetorgperson-python");
    let artifacts = std::fs::read_dir(dir.path()).expect("cache").count();
    assert_eq!(artifacts, 1, "one artifact per component and engine");
    eprintln!(
        "openldap-py: compiled in {:?}, from the cache in {:?}",
        cold.load_stats().duration,
        warm.load_stats().duration
    );
    // The cached plugin maps like the compiled one.
    let context = MappingContext {
        tenant_id: 1,
        mode: SyncMode::Full,
        settings: Vec::new(),
    };
    let entry = entry(
        "uid=a,ou=people,dc=example,dc=org",
        &[("uid", "a"), ("mail", "a@example.org"), ("entryUUID", "1")],
    );
    let cold_out = cold
        .map_entries(&context, vec![entry.clone()])
        .expect("map");
    let warm_out = warm.map_entries(&context, vec![entry]).expect("map");
    assert_eq!(cold_out.outcomes, warm_out.outcomes);
}

/// Compiling a big component (seconds) holds up neither another plugin's calls nor
/// the tenants waiting for the same component: they share one compilation.
#[test]
fn compiling_a_big_component_holds_up_no_one_and_happens_once() {
    use abacsync::plugin::PluginRegistry;
    use std::sync::Arc;
    let registry =
        PluginRegistry::new(PluginEngine::new(SandboxConfig::default(), None).expect("engine"));
    let rust = registry
        .load_shared("openldap", &plugins::bytes("openldap-mapping"))
        .expect("rust plugin");
    let python = std::fs::read(plugins::script_component(
        Language::Python,
        "plugins/openldap-py",
    ))
    .expect("component");
    let context = MappingContext {
        tenant_id: 2,
        mode: SyncMode::Full,
        settings: Vec::new(),
    };
    std::thread::scope(|scope| {
        let first = scope.spawn(|| registry.load_shared("tenant-a", &python));
        let second = scope.spawn(|| registry.load_shared("tenant-b", &python));
        for _ in 0..20 {
            let output = rust.map_entries(&context, entries(10)).expect("rust call");
            assert_eq!(output.outcomes.len(), 10);
        }
        assert!(
            !first.is_finished() || !second.is_finished(),
            "the other plugin's calls should have finished while the component compiled"
        );
        let first = first.join().expect("thread").expect("load");
        let second = second.join().expect("thread").expect("load");
        assert!(Arc::ptr_eq(&first, &second), "compiled twice");
    });
}
