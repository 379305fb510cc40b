//! The example plugins against their golden fixtures, through the real `abacsync`
//! binary: `plugin test <wasm> fixtures/entries.ldif --expect fixtures/expected.json`.

use abacsync_testkit::plugins;
use std::path::Path;
use std::process::{Command, Output};

fn abacsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_abacsync"))
        .args(args)
        .arg("--no-cache")
        .output()
        .expect("running abacsync")
}

fn golden(package: &str, dir: &str) {
    let wasm = plugins::component(package);
    let fixtures = plugins::fixtures_dir(dir);
    let entries = fixtures.join("entries.ldif");
    let expected = fixtures.join("expected.json");
    let settings = fixtures.join("settings");
    let mut args = vec![
        "plugin",
        "test",
        wasm.to_str().expect("utf-8 path"),
        entries.to_str().expect("utf-8 path"),
        "--expect",
        expected.to_str().expect("utf-8 path"),
    ];
    if Path::new(&settings).exists() {
        args.extend(["--settings-file", settings.to_str().expect("utf-8 path")]);
    }
    let output = abacsync(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{package} differs from its golden output:\n{stderr}"
    );
    assert!(stderr.contains("matches"), "{stderr}");
    // The printed decisions are the expected ones, byte for byte.
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&expected).expect("expected.json"))
            .expect("JSON");
    assert_eq!(printed, golden);
}

#[test]
fn openldap_example_matches_its_golden_output() {
    golden("openldap-mapping", "openldap");
}

#[test]
fn active_directory_example_matches_its_golden_output() {
    golden("active-directory-mapping", "active-directory");
}

#[test]
fn settings_example_matches_its_golden_output() {
    golden("settings-map-mapping", "settings-map");
}

#[test]
fn a_difference_exits_1_with_a_readable_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = plugins::fixtures_dir("openldap");
    let mut expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("expected.json")).expect("read"),
    )
    .expect("JSON");
    expected[0]["user"]["attributes"]["department"] = serde_json::json!(["9999"]);
    let changed = dir.path().join("expected.json");
    std::fs::write(&changed, expected.to_string()).expect("write");
    let wasm = plugins::component("openldap-mapping");
    let output = abacsync(&[
        "plugin",
        "test",
        wasm.to_str().expect("path"),
        fixtures.join("entries.ldif").to_str().expect("path"),
        "--expect",
        changed.to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "uid=alice,ou=Engineering,ou=people,dc=example,dc=org: user.attributes.department\n    expected: [\"9999\"]\n    actual:   [\"4711\",\"4712\"]"
        ),
        "{stderr}"
    );
}
