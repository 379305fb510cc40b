//! The `abacsync plugin` commands' errors and reports, through the real binary.

use abacsync_testkit::plugins;
use std::process::{Command, Output};

fn abacsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_abacsync"))
        .args(args)
        .arg("--no-cache")
        .output()
        .expect("running abacsync")
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write fixture");
    path.to_string_lossy().into_owned()
}

fn openldap() -> String {
    plugins::component("openldap-mapping")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn malformed_ldif_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = write(&dir, "bad.ldif", "dn: uid=a,dc=x\nuid: a\nmail a@x\n");
    let output = abacsync(&["plugin", "test", &openldap(), &fixture]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.ldif:3: expected `name: value`, found `mail a@x`"),
        "{stderr}"
    );
}

#[test]
fn json_fixtures_and_settings_work_like_ldif() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = write(
        &dir,
        "entries.json",
        r#"[{"dn": "uid=z,ou=Ops,dc=x", "attributes": {"uid": "z", "mail": "z@x", "entryUUID": "id-z"}}]"#,
    );
    let output = abacsync(&[
        "plugin",
        "test",
        &openldap(),
        &fixture,
        "--mode",
        "targeted",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decisions: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        decisions[0]["user"]["attributes"]["unit"],
        serde_json::json!(["Ops"])
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 entries in 1 call(s): 1 upsert"),
        "{stderr}"
    );
    assert!(
        stderr.contains("per entry") && stderr.contains("peak memory"),
        "{stderr}"
    );
}

#[test]
fn bad_modes_settings_and_plugins_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = write(&dir, "e.ldif", "dn: uid=a\n");
    let output = abacsync(&[
        "plugin",
        "test",
        &openldap(),
        &fixture,
        "--mode",
        "sometimes",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown sync mode `sometimes`"));

    let settings_map = plugins::component("settings-map-mapping");
    let output = abacsync(&[
        "plugin",
        "test",
        settings_map.to_str().expect("path"),
        &fixture,
        "--setting",
        "abac.x=dn:ou",
        "--setting",
        "lowercse=true",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refused the batch: invalid-settings: unknown setting `lowercse`"),
        "{stderr}"
    );

    let core = write(&dir, "core.wasm", "\0asm\u{1}\0\0\0");
    let output = abacsync(&["plugin", "test", &core, &fixture]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("is a core WebAssembly module, not a component")
    );

    let output = abacsync(&["plugin", "test", &openldap(), &write(&dir, "e.csv", "x")]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown fixture format"));
}

#[test]
fn check_reports_contract_imports_and_toolchain() {
    let output = abacsync(&["plugin", "check", &openldap(), "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["contractVersion"], "0.3.0");
    assert_eq!(report["language"], "Rust");
    let imports: Vec<&str> = report["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        imports.contains(&"abacsync:mapping/types@0.3.0"),
        "{imports:?}"
    );
    assert!(
        imports.iter().all(|name| !name.starts_with("wasi:sockets")),
        "{imports:?}"
    );

    let forbidden = plugins::component("forbidden-import-mapping");
    let output = abacsync(&["plugin", "check", forbidden.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("imports `evil:backdoor/shell"), "{stderr}");
}
