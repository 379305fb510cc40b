//! Builds the repository's plugins for `wasm32-wasip2` (once per process) and hands
//! out their components.

use crate::workspace_root;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Every plugin crate the tests use: example plugins and hostile test plugins.
pub const PACKAGES: &[&str] = &[
    "openldap-mapping",
    "active-directory-mapping",
    "settings-map-mapping",
    "hostile-mapping",
    "forbidden-import-mapping",
    "wrong-version-mapping",
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
