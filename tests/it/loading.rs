//! Loading components: what is refused, and why; the compiled-code cache.

use abacsync::plugin::{LoadError, PluginEngine, SandboxConfig};
use abacsync_testkit::plugins;

fn engine() -> PluginEngine {
    PluginEngine::new(SandboxConfig::default(), None).expect("engine")
}

#[test]
fn forbidden_import_is_refused_naming_it() {
    let err = engine()
        .load("backdoor.wasm", &plugins::bytes("forbidden-import-mapping"))
        .expect_err("refused");
    let LoadError::ForbiddenImport { import, .. } = &err else {
        panic!("expected a forbidden import, got {err}");
    };
    assert!(import.starts_with("evil:backdoor/shell"), "{import}");
    assert!(
        err.to_string()
            .contains("which the sandbox does not provide: it is not part of the plugin sandbox"),
        "{err}"
    );
}

#[test]
fn future_contract_version_is_refused() {
    let err = engine()
        .load("future.wasm", &plugins::bytes("wrong-version-mapping"))
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "plugin `future.wasm` targets abacsync:mapping@0.9.0; this host supports 0.1.0, 0.2.0, 0.3.0"
    );
}

#[test]
fn component_of_another_world_is_refused() {
    let bytes = std::fs::read(plugins::command_component()).expect("command component");
    let err = engine().load("command.wasm", &bytes).expect_err("refused");
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");
    assert!(err.to_string().contains("wasi:cli/run@0.2"), "{err}");
}

#[test]
fn core_module_and_garbage_are_refused() {
    let err = engine()
        .load("core.wasm", b"\0asm\x01\0\0\0")
        .expect_err("refused");
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err}");
    let err = engine().load("text.wasm", b"hello").expect_err("refused");
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err}");
    let mut truncated = plugins::bytes("openldap-mapping");
    truncated.truncate(truncated.len() / 2);
    let err = engine()
        .load("truncated.wasm", &truncated)
        .expect_err("refused");
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
}

#[test]
fn compiled_code_is_reused_from_the_disk_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = plugins::bytes("openldap-mapping");
    let first = PluginEngine::new(SandboxConfig::default(), Some(dir.path().to_owned()))
        .expect("engine")
        .load("openldap", &bytes)
        .expect("load");
    assert!(!first.load_stats().from_cache);
    // A new engine, as after a restart.
    let second = PluginEngine::new(SandboxConfig::default(), Some(dir.path().to_owned()))
        .expect("engine")
        .load("openldap", &bytes)
        .expect("load");
    assert!(second.load_stats().from_cache);
    assert_eq!(second.info().name, "openldap-inetorgperson");
    // A corrupt artifact is dropped and compiled again.
    for file in std::fs::read_dir(dir.path()).expect("read cache") {
        std::fs::write(file.expect("entry").path(), b"garbage").expect("corrupt");
    }
    let third = PluginEngine::new(SandboxConfig::default(), Some(dir.path().to_owned()))
        .expect("engine")
        .load("openldap", &bytes)
        .expect("load despite a corrupt cache");
    assert!(!third.load_stats().from_cache);
}

#[test]
fn oversized_component_is_refused_before_compiling() {
    let config = SandboxConfig {
        max_component_bytes: 1000,
        ..SandboxConfig::default()
    };
    let engine = PluginEngine::new(config, None).expect("engine");
    let err = engine
        .load("big.wasm", &plugins::bytes("openldap-mapping"))
        .expect_err("refused");
    assert!(
        matches!(err, LoadError::TooLarge { limit: 1000, .. }),
        "{err}"
    );
}

/// Contracts 0.1.0 and 0.2.0 stay supported: a plugin built against each with
/// wit-bindgen alone (and serde_json for 0.2.0's JSON) loads, reports its version, and
/// decides as the 0.3.0 OpenLDAP example does on the fields they map, over the
/// example's fixtures.
#[test]
fn plugins_of_the_earlier_contracts_still_run() {
    let engine = engine();
    let current = engine
        .load("openldap", &plugins::bytes("openldap-mapping"))
        .expect("the example loads");
    assert_eq!(current.contract_version(), "0.3.0");
    for (package, version) in [
        ("contract-v0-1-mapping", "0.1.0"),
        ("contract-v0-2-mapping", "0.2.0"),
    ] {
        let earlier = engine
            .load(package, &plugins::bytes(package))
            .unwrap_or_else(|err| panic!("a {version} plugin loads: {err}"));
        assert_eq!(earlier.contract_version(), version);
        decides_as(&earlier, &current);
    }
}

/// `earlier` decides as `current` on the fields it maps, over the OpenLDAP fixtures.
fn decides_as(first: &abacsync::plugin::Plugin, current: &abacsync::plugin::Plugin) {
    use abacsync::plugin::model::{Decision, MappingContext, SyncMode};
    let entries =
        abacsync::fixtures::read_file(&plugins::fixtures_dir("openldap").join("entries.ldif"))
            .expect("fixtures");
    let context = MappingContext {
        tenant_id: 1,
        mode: SyncMode::Full,
        settings: Vec::new(),
    };
    let old = first
        .map_entries(&context, entries.clone())
        .expect("earlier contract's call");
    let new = current
        .map_entries(&context, entries.clone())
        .expect("current contract's call");
    let mut upserts = 0;
    for ((entry, old), new) in entries.iter().zip(&old.outcomes).zip(&new.outcomes) {
        match (old, new) {
            (Ok(Decision::Upsert(old)), Ok(Decision::Upsert(new))) => {
                upserts += 1;
                assert_eq!(
                    (
                        &old.username,
                        &old.ldap_id,
                        &old.email,
                        &old.display_name,
                        old.active
                    ),
                    (
                        &new.username,
                        &new.ldap_id,
                        &new.email,
                        &new.display_name,
                        new.active
                    ),
                    "{}",
                    entry.dn
                );
                assert_eq!(
                    old.attributes.get("department"),
                    new.attributes.get("department"),
                    "{}",
                    entry.dn
                );
            }
            (Ok(Decision::Skip { .. }), Ok(Decision::Skip { .. })) => {}
            (Err(old), Err(new)) => assert_eq!(old.kind, new.kind, "{}", entry.dn),
            (old, new) => panic!(
                "{}: {} gave {old:?}, {} gave {new:?}",
                entry.dn,
                first.contract_version(),
                current.contract_version()
            ),
        }
    }
    assert!(upserts >= 3, "the fixtures map to users: {upserts}");
}
