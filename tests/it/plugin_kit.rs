//! The plugin kit as a plugin author uses it: in an empty folder, with only the built
//! `abacsync` binary and the toolchains, `plugin new` + `plugin build` + `plugin test`
//! for each language; a changed mapping shown per entry, accepted with `--update`; and
//! `plugin push` to a running server with a personal access token.
//!
//! The toolchains (componentize-py, componentize-js) install on first use into a cache
//! shared by these tests (`target/plugin-kit-cache`), so a fresh clone measures the first
//! use. Each step's time is printed (`--nocapture`): the README quotes them.

use crate::api::{ADMIN, ADMIN_PASSWORD, Server, Setup};
use abacsync_testkit::workspace_root;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

fn abacsync(dir: &Path, args: &[&str]) -> Output {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_abacsync"))
        .args(args)
        .current_dir(dir)
        .env("ABACSYNC_CACHE_DIR", cache())
        .env_remove("ABACSYNC_USER_ID")
        .env_remove("ABACSYNC_TOKEN")
        .output()
        .expect("running abacsync");
    eprintln!(
        "abacsync {} ({}): {:.1?}",
        args.join(" "),
        dir.display(),
        started.elapsed()
    );
    output
}

fn cache() -> PathBuf {
    workspace_root().join("target").join("plugin-kit-cache")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `plugin new`, `build`, `test`; then a change to the mapping fails the test with the
/// entry's DN and the field, `--update` accepts it, and the test passes again.
fn from_nothing_to_a_tested_mapping(language: &str, source: &str, from: &str, to: &str) {
    let folder = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let name = format!("acme-{language}");
    let output = abacsync(folder.path(), &["plugin", "new", &name, "--lang", language]);
    assert!(output.status.success(), "{}", text(&output));
    let project = folder.path().join(&name);
    assert!(project.join("abacsync-plugin.toml").is_file());

    let output = abacsync(&project, &["plugin", "build"]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("a valid abacsync mapping plugin, {name} ")),
        "{}",
        text(&output)
    );

    let output = abacsync(&project, &["plugin", "test"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("ok, 6 entries as in fixtures/expected.json"),
        "{}",
        text(&output)
    );
    eprintln!(
        "{language}: new + build + test from nothing: {:.1?}",
        started.elapsed()
    );
    // Up to date: not built again, also when only a fixture or the README changed.
    std::fs::write(project.join("README.md"), "# notes\n").expect("edit README");
    let output = abacsync(&project, &["plugin", "build"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(": up to date"),
        "{}",
        text(&output)
    );

    // The author renames an ABAC attribute: the test shows each entry's change.
    let path = project.join(source);
    let code = std::fs::read_to_string(&path).expect("source");
    assert!(code.contains(from), "{source} has no `{from}`");
    std::fs::write(&path, code.replacen(from, to, 1)).expect("edit");
    let output = abacsync(&project, &["plugin", "test"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("  uid=alice,ou=Engineering,ou=people,dc=example,dc=org\n    user.attributes.department\n      - expected: [\"4711\",\"4712\"]\n      + actual:   (absent)"),
        "{}",
        text(&output)
    );
    assert!(
        stdout.contains("entries differ from fixtures/expected.json"),
        "{stdout}"
    );

    let output = abacsync(&project, &["plugin", "test", "--update"]);
    assert!(output.status.success(), "{}", text(&output));
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("fixtures/expected.json")).expect("expected"),
    )
    .expect("JSON");
    assert_eq!(
        expected[0]["user"]["attributes"]["division"],
        json!(["4711", "4712"]),
        "{expected}"
    );
    let output = abacsync(&project, &["plugin", "test"]);
    assert!(output.status.success(), "{}", text(&output));
    if language == "js" {
        watch_reruns_on_save(&project);
    }
}

/// `plugin test --watch` tests again when a file changes, and goes on after a failure.
fn watch_reruns_on_save(project: &Path) {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::Duration;
    let mut child = Command::new(env!("CARGO_BIN_EXE_abacsync"))
        .args(["plugin", "test", "--watch"])
        .current_dir(project)
        .env("ABACSYNC_CACHE_DIR", cache())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("abacsync plugin test --watch");
    let (lines, received) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let errors = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if errors.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |wanted: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match received.recv_timeout(left) {
                Ok(line) if line.contains(wanted) => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "no line with `{wanted}` from --watch; it printed:\n{}",
            seen.join("\n")
        );
    };
    wait_for("ok, 6 entries");
    let expected = project.join("fixtures/expected.json");
    let original = std::fs::read_to_string(&expected).expect("expected");
    std::fs::write(&expected, original.replacen("\"4711\"", "\"4700\"", 1)).expect("edit");
    wait_for("1 of 6 entries differ");
    std::fs::write(&expected, &original).expect("restore");
    wait_for("ok, 6 entries");
    // A syntax error is shown with its place, and the watch goes on.
    let module = project.join("mapping.js");
    let source = std::fs::read_to_string(&module).expect("mapping.js");
    std::fs::write(&module, format!("{source}\nexport const = ;\n")).expect("break");
    wait_for("mapping.js:");
    std::fs::write(&module, &source).expect("restore");
    wait_for("ok, 6 entries");
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn a_rust_plugin_from_nothing() {
    from_nothing_to_a_tested_mapping(
        "rust",
        "src/lib.rs",
        ".attribute(\"department\"",
        ".attribute(\"division\"",
    );
}

#[test]
fn a_python_plugin_from_nothing() {
    from_nothing_to_a_tested_mapping("python", "app.py", "\"department\":", "\"division\":");
}

#[test]
fn a_javascript_plugin_from_nothing() {
    from_nothing_to_a_tested_mapping("js", "mapping.js", "department:", "division:");
}

#[test]
fn the_commands_say_what_is_wrong() {
    let folder = tempfile::tempdir().expect("temp dir");
    let output = abacsync(folder.path(), &["plugin", "build"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("is not a plugin project: it has no abacsync-plugin.toml"),
        "{}",
        text(&output)
    );
    let output = abacsync(
        folder.path(),
        &[
            "plugin", "new", "acme", "--lang", "python", "--from", "freeipa",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("[possible values: openldap, active-directory, settings-map]"),
        "{}",
        text(&output)
    );
    let output = abacsync(
        folder.path(),
        &["plugin", "new", "Acme Staff", "--lang", "rust"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("is not a plugin name"),
        "{}",
        text(&output)
    );
    let output = abacsync(folder.path(), &["plugin", "new", "acme", "--lang", "js"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = abacsync(folder.path(), &["plugin", "new", "acme", "--lang", "js"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("not empty"), "{}", text(&output));
    // A missing toolchain is one line saying what to install.
    for (language, advice) in [
        ("rust", "install Rust (https://rustup.rs)"),
        (
            "python",
            "install Python 3.10 or later with its venv module",
        ),
        (
            "js",
            "install Node.js 18 or later (Debian: `apt install nodejs npm`)",
        ),
    ] {
        let name = format!("bare-{language}");
        let output = abacsync(folder.path(), &["plugin", "new", &name, "--lang", language]);
        assert!(output.status.success(), "{}", text(&output));
        let empty_cache = tempfile::tempdir().expect("temp dir");
        let output = Command::new(env!("CARGO_BIN_EXE_abacsync"))
            .args(["plugin", "build"])
            .current_dir(folder.path().join(&name))
            .env("PATH", "/nonexistent")
            .env("ABACSYNC_CACHE_DIR", empty_cache.path())
            .output()
            .expect("abacsync plugin build");
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(text(&output).contains(advice), "{}", text(&output));
    }
    // Pushing needs a token, and says which.
    let output = abacsync(
        &folder.path().join("acme"),
        &[
            "plugin",
            "push",
            "--server",
            "http://127.0.0.1:9",
            "--tenant",
            "1",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("set ABACSYNC_USER_ID and ABACSYNC_TOKEN"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_project_is_pushed_to_a_tenant() {
    let folder = tempfile::tempdir().expect("temp dir");
    let output = abacsync(
        folder.path(),
        &[
            "plugin",
            "new",
            "acme-map",
            "--lang",
            "rust",
            "--from",
            "settings-map",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let project = folder.path().join("acme-map");

    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.post(
        "/api/v1/users.generatePersonalAccessToken",
        &admin.step_up(),
        Some(json!({"tokenName": "plugin-push", "bypassTwoFactor": true})),
    );
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let base = server.url("");
    let push = |token: &str, settings: &[&str]| {
        let mut args = vec!["plugin", "push", "--server", &base, "--tenant", "1"];
        for setting in settings {
            args.extend(["--setting", setting]);
        }
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_abacsync"))
            .args(&args)
            .current_dir(&project)
            .env("ABACSYNC_CACHE_DIR", cache())
            .env("ABACSYNC_USER_ID", &admin.user_id)
            .env("ABACSYNC_TOKEN", token)
            .output()
            .expect("abacsync plugin push");
        eprintln!("abacsync plugin push: {:.1?}", started.elapsed());
        output
    };

    // A mapping that fails its own fixtures is not pushed.
    let expected = project.join("fixtures/expected.json");
    let original = std::fs::read_to_string(&expected).expect("expected");
    std::fs::write(
        &expected,
        original.replacen("\"decision\": \"upsert\"", "\"decision\": \"skip\"", 1),
    )
    .expect("edit");
    let output = push(&token, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("the project's tests fail: nothing was pushed"),
        "{}",
        text(&output)
    );
    std::fs::write(&expected, &original).expect("restore");
    // Settings the plugin refuses are refused before anything is uploaded.
    let output = push(&token, &["abac.department=nonsense:x"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("refuses these settings"),
        "{}",
        text(&output)
    );
    // A token the server does not know: its reason.
    let output = push("not-a-token", &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("the server refused the plugin: 401 Unauthorized"),
        "{}",
        text(&output)
    );

    let output = push(&token, &["abac.department=departmentNumber"]);
    assert!(output.status.success(), "{}", text(&output));
    let (status, current) = server.get("/api/v1/admin/tenants/1/plugin", &admin.headers());
    assert_eq!(status, 200, "{current}");
    assert_eq!(current["source"], "api", "{current}");
    let assignment = &current["assignment"];
    assert_eq!(
        assignment["settings"]["abac.department"], "departmentNumber",
        "{current}"
    );
    let id = assignment["pluginId"].as_i64().expect("plugin id");
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains(&format!("as plugin {id} and assigned it to tenant 1")),
        "{}",
        text(&output)
    );
    let (status, plugin) = server.get(&format!("/api/v1/admin/plugins/{id}"), &admin.headers());
    assert_eq!(status, 200, "{plugin}");
    assert_eq!(
        (&plugin["label"], &plugin["name"]),
        (&json!("acme-map"), &json!("acme-map")),
        "{plugin}"
    );
}
