//! Tenants' plugins: one compiled component shared by tenants, settings checked by the
//! plugin when assigned.

use abacsync::plugin::model::{Decision, Entry, SyncMode};
use abacsync::plugin::{PluginEngine, PluginRegistry, RegistryError, SandboxConfig};
use abacsync_testkit::plugins;
use std::sync::Arc;

fn registry() -> PluginRegistry {
    PluginRegistry::new(PluginEngine::new(SandboxConfig::default(), None).expect("engine"))
}

#[test]
fn tenants_share_one_plugin_with_their_own_settings() {
    let registry = registry();
    let bytes = plugins::bytes("settings-map-mapping");
    let one = registry
        .assign(
            1,
            "settings-map",
            &bytes,
            vec![("abac.team".into(), "ou".into())],
        )
        .expect("tenant 1");
    let two = registry
        .assign(
            2,
            "settings-map",
            &bytes,
            vec![("abac.team".into(), "departmentNumber".into())],
        )
        .expect("tenant 2");
    assert!(
        Arc::ptr_eq(&one.plugin, &two.plugin),
        "compiled once, shared"
    );

    let entry = Entry {
        attributes: vec![
            ("uid".into(), vec!["a".into()]),
            ("entryUUID".into(), vec!["id-a".into()]),
            ("ou".into(), vec!["Ops".into()]),
            ("departmentNumber".into(), vec!["42".into()]),
        ],
        ..Entry::new("uid=a,dc=x")
    };
    let team = |tenant: u64| {
        let assigned = registry.get(tenant).expect("assigned");
        let output = assigned
            .plugin
            .map_entries(&assigned.context(SyncMode::Full), vec![entry.clone()])
            .expect("map");
        match &output.outcomes[0] {
            Ok(Decision::Upsert(user)) => {
                user.attributes["team"].iter().cloned().collect::<Vec<_>>()
            }
            other => panic!("expected an upsert, got {other:?}"),
        }
    };
    assert_eq!(team(1), ["Ops"]);
    assert_eq!(team(2), ["42"]);
    assert!(registry.remove(1).is_some());
    assert!(registry.get(1).is_none());
}

#[test]
fn settings_the_plugin_refuses_are_not_assigned() {
    let registry = registry();
    let err = registry
        .assign(
            3,
            "settings-map",
            &plugins::bytes("settings-map-mapping"),
            vec![("abac.".into(), "ou".into())],
        )
        .expect_err("refused");
    assert!(
        matches!(err, RegistryError::Settings { tenant: 3, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("`abac.` needs an ABAC key and a source"),
        "{err:#}"
    );
    assert!(registry.get(3).is_none());
}
