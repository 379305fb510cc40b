//! Builds the repository's plugins for `wasm32-wasip2` (once per process) and hands
//! out their components.

use crate::workspace_root;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Every plugin crate the tests use: example plugins and hostile test plugins.
pub const PACKAGES: &[&str] = &[
    "openldap-mapping",
    "active-directory-mapping",
    "settings-map-mapping",
    "hostile-mapping",
    "forbidden-import-mapping",
    "wrong-version-mapping",
    "contract-v0-1-mapping",
    "contract-v0-2-mapping",
];

/// Where plugin builds go: apart from the test build's own target folder, so the
/// nested cargo never waits for the outer one's lock.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target").join("wasm-plugins")
}

/// Build all plugins (a no-op when they are fresh) and return the folder with the
/// `.wasm` files. Panics with cargo's output when the build fails: a missing
/// `wasm32-wasip2` target is a failure, never a skip.
pub fn build_all() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        command
            .current_dir(workspace_root())
            .args(["build", "--quiet", "--target", "wasm32-wasip2", "--profile", "plugin"])
            .env("CARGO_TARGET_DIR", target_dir());
        for package in PACKAGES {
            command.args(["-p", package]);
        }
        let output = command.output().unwrap_or_else(|err| panic!("running cargo to build the plugins: {err}"));
        assert!(
            output.status.success(),
            "building the plugins for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target_dir().join("wasm32-wasip2").join("plugin")
    })
}

/// The component built from `package`'s library (`openldap-mapping` →
/// `openldap_mapping.wasm`).
pub fn component(package: &str) -> PathBuf {
    build_all().join(format!("{}.wasm", package.replace('-', "_")))
}

/// The bytes of `package`'s component.
pub fn bytes(package: &str) -> Vec<u8> {
    let path = component(package);
    std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// A plain WASI command component (not a plugin), for wrong-world tests.
pub fn command_component() -> PathBuf {
    build_all().join("command-component.wasm")
}

/// The folder of an example plugin's golden fixtures (`plugins/openldap/fixtures`).
pub fn fixtures_dir(plugin_dir: &str) -> PathBuf {
    workspace_root()
        .join("plugins")
        .join(plugin_dir)
        .join("fixtures")
}

/// The languages besides Rust that plugins are written in, each with its build script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// componentize-py: `scripts/build-python-plugin.sh`, output in
    /// `target/wasm-plugins/python`.
    Python,
    /// componentize-js: `scripts/build-js-plugin.sh`, output in `target/wasm-plugins/js`.
    JavaScript,
}

impl Language {
    fn script_and_folder(self) -> (&'static str, &'static str) {
        match self {
            Language::Python => ("scripts/build-python-plugin.sh", "python"),
            Language::JavaScript => ("scripts/build-js-plugin.sh", "js"),
        }
    }
}

/// The component built from the script plugin in `dir` (relative to the workspace:
/// `plugins/openldap-py`), built once per process by its language's build script,
/// which installs the pinned toolchain on first use. Panics with the script's output
/// when the build fails: a missing toolchain is a failure, never a skip.
pub fn script_component(language: Language, dir: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(Language, String, PathBuf)>> = Mutex::new(Vec::new());
    // Held while building: the scripts share one toolchain folder per language.
    let mut built = BUILT.lock().unwrap_or_else(|poison| poison.into_inner());
    if let Some((_, _, path)) = built.iter().find(|(l, d, _)| *l == language && d == dir) {
        return path.clone();
    }
    let (script, folder) = language.script_and_folder();
    let root = workspace_root();
    let name = Path::new(dir)
        .file_name()
        .unwrap_or_else(|| panic!("{dir} has no folder name"))
        .to_string_lossy()
        .replace('-', "_");
    let out = target_dir().join(folder).join(format!("{name}.wasm"));
    let output = Command::new("bash")
        .current_dir(&root)
        .arg(script)
        .arg(dir)
        .arg(&out)
        .output()
        .unwrap_or_else(|err| panic!("running {script}: {err}"));
    assert!(
        output.status.success(),
        "{script} {dir} failed (python3 with venv, node and npm are needed; the toolchain comes from PyPI or npm):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    built.push((language, dir.to_owned(), out.clone()));
    out
}
