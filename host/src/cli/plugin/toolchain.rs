//! `abacsync plugin build`: a project's component, built by its language's toolchain.
//!
//! - Rust: cargo, for `wasm32-wasip2`, in release; cargo decides what is stale.
//! - Python: componentize-py, at the version the repository's scripts pin, installed from
//!   PyPI into a venv in the per-user cache on first use.
//! - JavaScript: componentize-js, from npm at the versions and hashes of the pinned lock
//!   file, installed into the per-user cache on first use.
//!
//! Python and JavaScript components are rebuilt only when the project's files or the
//! toolchain changed (a digest of them is kept beside the component).

use super::project::{Language, Project};
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// componentize-py's pin (a pip requirements file).
const PYTHON_REQUIREMENTS: &str =
    include_str!("../../../../guest-sdk/python/toolchain/requirements.txt");
/// componentize-js's pins: the toolchain's npm manifest, its lock file, and the script
/// that calls componentize-js's API.
const JS_PACKAGE: &str = include_str!("../../../../guest-sdk/js/toolchain/package.json");
const JS_LOCK: &str = include_str!("../../../../guest-sdk/js/toolchain/package-lock.json");
const JS_BUILD: &str = include_str!("../../../../guest-sdk/js/toolchain/build.mjs");

/// A built component.
pub(crate) struct Built {
    pub(crate) wasm: PathBuf,
    /// False when it was up to date.
    pub(crate) rebuilt: bool,
}

/// Builds `project`, installing its toolchain into `cache` when missing.
pub(crate) fn build(project: &Project, cache: &Path) -> anyhow::Result<Built> {
    match project.language {
        Language::Rust => build_rust(project),
        Language::Python => build_python(project, cache),
        Language::Js => build_js(project, cache),
    }
}

/// Runs `command`, turning "not installed" into `missing` and a failure into an error
/// with the tool's own output (already shown on the terminal when inherited).
fn run(command: &mut Command, what: &str, missing: &str) -> anyhow::Result<()> {
    let status = match command.status() {
        Ok(status) => status,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => anyhow::bail!("{missing}"),
        Err(err) => return Err(err).with_context(|| format!("running {what}")),
    };
    anyhow::ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

fn build_rust(project: &Project) -> anyhow::Result<Built> {
    const NO_CARGO: &str = "cargo is not installed: install Rust (https://rustup.rs), then `rustup target add wasm32-wasip2`";
    let libdir = match Command::new("rustc")
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .current_dir(&project.dir)
        .stderr(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
        Ok(_) => anyhow::bail!(
            "this Rust cannot build for wasm32-wasip2 (the SDK needs Rust 1.95 or later): `rustup update`, then `rustup target add wasm32-wasip2`"
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(NO_CARGO),
        Err(err) => return Err(err).context("running rustc"),
    };
    anyhow::ensure!(
        libdir.is_dir(),
        "the Rust target wasm32-wasip2 is not installed: `rustup target add wasm32-wasip2`"
    );
    let mut child = match Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&project.dir)
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(NO_CARGO),
        Err(err) => return Err(err).context("running cargo"),
    };
    let stdout = child.stdout.take().context("cargo's output")?;
    let mut component = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "cdylib"));
        let wasm = message["filenames"].as_array().and_then(|files| {
            files
                .iter()
                .filter_map(serde_json::Value::as_str)
                .find(|file| file.ends_with(".wasm"))
        });
        if let (true, Some(wasm)) = (is_cdylib, wasm) {
            component = Some(Built {
                wasm: PathBuf::from(wasm),
                rebuilt: message["fresh"] != true,
            });
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    anyhow::ensure!(status.success(), "cargo build failed ({status})");
    component.context(
        "cargo built no component: Cargo.toml needs `[lib] crate-type = [\"cdylib\", \"rlib\"]`",
    )
}

/// The project's files: everything but what builds and tools write (`target/`,
/// `node_modules/`, `__pycache__/`, hidden files other than `.abacsync/`).
fn sources(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading `{}`", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let at_root = dir == root;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                let skipped = match name.as_ref() {
                    "target" => at_root,
                    "node_modules" | "__pycache__" => true,
                    ".abacsync" => !at_root,
                    other => other.starts_with('.'),
                };
                if !skipped {
                    walk(root, &entry.path(), out)?;
                }
            } else if kind.is_file() && !name.starts_with('.') {
                out.push(entry.path());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    Ok(files)
}

/// A digest of what makes the component (the language's modules, and the SDK and WIT
/// under `.abacsync/`; not the fixtures, the project file or the README) and of the
/// toolchain.
fn inputs_digest(project: &Project, toolchain: &str) -> anyhow::Result<String> {
    let modules: &[&str] = match project.language {
        Language::Python => &["py"],
        _ => &["js", "mjs", "cjs", "json"],
    };
    let fixtures: Vec<PathBuf> = project
        .tests
        .iter()
        .flat_map(|case| [case.entries.clone(), case.expected.clone()])
        .collect();
    let mut hash = Sha256::new();
    hash.update(toolchain.as_bytes());
    for path in sources(&project.dir)? {
        let relative = path.strip_prefix(&project.dir).unwrap_or(&path);
        let module = relative
            .extension()
            .is_some_and(|extension| modules.iter().any(|m| extension == *m));
        let read = relative.starts_with(".abacsync")
            || (module
                && !relative.starts_with("fixtures")
                && !fixtures.iter().any(|fixture| fixture == relative));
        if !read {
            continue;
        }
        hash.update(relative.to_string_lossy().as_bytes());
        hash.update([0]);
        let bytes =
            std::fs::read(&path).with_context(|| format!("reading `{}`", path.display()))?;
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The project's component and its record of inputs; `None` when it is up to date.
fn stale_output(project: &Project, digest: &str) -> anyhow::Result<(PathBuf, Option<PathBuf>)> {
    let dir = project.output_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let wasm = dir.join(format!("{}.wasm", project.name));
    let stamp = dir.join(format!("{}.wasm.inputs", project.name));
    let fresh = wasm.is_file()
        && std::fs::read_to_string(&stamp).is_ok_and(|recorded| recorded.trim() == digest);
    Ok((wasm, (!fresh).then_some(stamp)))
}

/// A toolchain folder in the cache, named by what it is and a digest of its pins. It is
/// installed in place (a venv cannot move) and counts as installed once `install` has
/// finished and the marker file is written: a half-made one is made again.
fn toolchain_dir(
    cache: &Path,
    name: &str,
    pins: &[&str],
    install: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    const MARKER: &str = ".abacsync-installed";
    let mut hash = Sha256::new();
    for pin in pins {
        hash.update(pin.as_bytes());
    }
    let digest = hex(&hash.finalize());
    let toolchains = cache.join("toolchains");
    let dir = toolchains.join(format!("{name}-{}", &digest[..12]));
    if dir.join(MARKER).is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&toolchains)
        .with_context(|| format!("creating `{}`", toolchains.display()))?;
    // One install at a time: a second build waits for the first, then uses its install.
    let lock_path = toolchains.join(format!("{name}.lock"));
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating `{}`", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!("waiting for another build that installs {name} into the same cache");
        lock.lock()
            .with_context(|| format!("locking `{}`", lock_path.display()))?;
    }
    if dir.join(MARKER).is_file() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
    if let Err(err) = install(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(err);
    }
    let marker = dir.join(MARKER);
    std::fs::write(&marker, pins.concat())
        .with_context(|| format!("writing `{}`", marker.display()))?;
    Ok(dir)
}

/// The requirements of a pip requirements file (`name==version`), without its
/// options, hashes and comments: what an install message names.
fn pinned(requirements: &str) -> String {
    requirements
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with(['#', '-', ' ', '\t']))
        .map(|line| line.trim_end_matches('\\').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

fn build_python(project: &Project, cache: &Path) -> anyhow::Result<Built> {
    let toolchain = toolchain_dir(cache, "componentize-py", &[PYTHON_REQUIREMENTS], |dir| {
        eprintln!(
            "installing {} (PyPI) into {} (once)",
            pinned(PYTHON_REQUIREMENTS),
            dir.display()
        );
        run(
                Command::new("python3").args(["-m", "venv"]).arg(dir),
                "python3 -m venv",
                "python3 is not installed: install Python 3.10 or later with its venv module (Debian: `apt install python3-venv`)",
            )
            .context("making a Python venv for componentize-py (Debian: `apt install python3-venv`)")?;
        let requirements = dir.join("requirements.txt");
        std::fs::write(&requirements, PYTHON_REQUIREMENTS)?;
        run(
            Command::new(dir.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
            "pip install componentize-py",
            "the venv has no pip (Debian: `apt install python3-venv`)",
        )
    })?;
    script_component(
        project,
        &toolchain,
        (
            "app.py",
            "a Python plugin's module is app.py, with a class `Mapper`",
        ),
        |partial| {
            run(
                Command::new(toolchain.join("bin/componentize-py"))
                    .arg("--quiet")
                    .arg("-d")
                    .arg(project.wit_dir())
                    .args(["-w", "mapping-plugin", "componentize", "-p"])
                    .arg(&project.dir)
                    .arg("-p")
                    .arg(project.dir.join(".abacsync").join("python"))
                    .arg("app")
                    .arg("-o")
                    .arg(partial),
                "componentize-py",
                "componentize-py is missing from its toolchain folder",
            )
        },
    )
}

/// The component of a script project: up to date when its inputs' digest is the one
/// recorded beside it; else `module` must exist, `compile` writes the component to a
/// partial file, which then takes the component's place, and the digest is recorded.
fn script_component(
    project: &Project,
    toolchain: &Path,
    (module, what): (&str, &str),
    compile: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<Built> {
    let digest = inputs_digest(project, &toolchain.to_string_lossy())?;
    let (wasm, stale) = stale_output(project, &digest)?;
    let Some(stamp) = stale else {
        return Ok(Built {
            wasm,
            rebuilt: false,
        });
    };
    anyhow::ensure!(
        project.dir.join(module).is_file(),
        "`{}` has no {module}: {what}",
        project.dir.display()
    );
    // Two builds of one project at once each write a file of their own.
    let partial = wasm.with_extension(format!("wasm.partial-{}", std::process::id()));
    if let Err(err) = compile(&partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
    std::fs::rename(&partial, &wasm).with_context(|| format!("writing `{}`", wasm.display()))?;
    std::fs::write(&stamp, &digest).with_context(|| format!("writing `{}`", stamp.display()))?;
    Ok(Built {
        wasm,
        rebuilt: true,
    })
}

fn build_js(project: &Project, cache: &Path) -> anyhow::Result<Built> {
    const NO_NODE: &str = "Node.js and npm are needed to build JavaScript plugins: install Node.js 18 or later (Debian: `apt install nodejs npm`)";
    let toolchain = toolchain_dir(
        cache,
        "componentize-js",
        &[JS_PACKAGE, JS_LOCK, JS_BUILD],
        |dir| {
            eprintln!(
                "installing componentize-js (npm, from the pinned lock file) into {} (once)",
                dir.display()
            );
            std::fs::write(dir.join("package.json"), JS_PACKAGE)?;
            std::fs::write(dir.join("package-lock.json"), JS_LOCK)?;
            // `npm install`, not `npm ci`: npm 11 refuses lock files that list only one
            // platform's optional binaries. Versions and integrity hashes are the lock's;
            // no package's install script runs (componentize-js needs none).
            run(
                Command::new("npm")
                    .args([
                        "install",
                        "--silent",
                        "--no-audit",
                        "--no-fund",
                        "--ignore-scripts",
                    ])
                    .current_dir(dir),
                "npm install componentize-js",
                NO_NODE,
            )
        },
    )?;
    let script = toolchain.join("build.mjs");
    if std::fs::read_to_string(&script).ok().as_deref() != Some(JS_BUILD) {
        std::fs::write(&script, JS_BUILD)?;
    }
    script_component(
        project,
        &toolchain,
        (
            "mapping.js",
            "a JavaScript plugin's module is mapping.js, exporting `mapper`",
        ),
        |partial| {
            // A syntax error with its line (componentize-js names neither). Read as a
            // module from stdin: `node --check FILE.js` passes some ES modules unparsed.
            for module in ["mapping.js", "abacsync-mapping.js"] {
                let path = project.dir.join(module);
                let source = std::fs::File::open(&path)
                    .with_context(|| format!("reading `{}`", path.display()))?;
                run(
                    Command::new("node")
                        .args(["--input-type=module", "--check"])
                        .stdin(source),
                    &format!(
                        "{module}: the syntax check (node's report above; [stdin] is {module})"
                    ),
                    NO_NODE,
                )?;
            }
            // The project's modules (with the SDK beside mapping.js, as `plugin new` puts
            // it) in a folder of their own: componentize-js reads everything in it.
            let staging = project
                .output_dir()
                .join(format!("js-staging-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            for path in sources(&project.dir)? {
                let relative = path.strip_prefix(&project.dir).unwrap_or(&path);
                if relative.starts_with(".abacsync") || relative.starts_with("fixtures") {
                    continue;
                }
                let to = staging.join(relative);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating `{}`", parent.display()))?;
                }
                std::fs::copy(&path, &to)
                    .with_context(|| format!("copying `{}`", path.display()))?;
            }
            anyhow::ensure!(
                staging.join("abacsync-mapping.js").is_file(),
                "the project has no abacsync-mapping.js beside mapping.js (the SDK `plugin new` writes)"
            );
            let built = run(
                Command::new("node")
                    .arg(&script)
                    .arg(staging.join("mapping.js"))
                    .arg(project.wit_dir())
                    .arg(partial),
                "componentize-js",
                NO_NODE,
            );
            let _ = std::fs::remove_dir_all(&staging);
            built
        },
    )
}

/// A fingerprint of the project's sources (names, sizes, modification times), for
/// `--watch`: cheap enough to take twice a second.
pub(crate) fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    sources(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|path| {
            let metadata = std::fs::metadata(&path).ok();
            let size = metadata.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = metadata.and_then(|metadata| metadata.modified().ok());
            (path, size, modified)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_message_names_the_pins_only() {
        assert_eq!(pinned(PYTHON_REQUIREMENTS), "componentize-py==0.25.1");
    }

    #[test]
    fn sources_leave_out_what_builds_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in [
            "app.py",
            "fixtures/entries.ldif",
            ".abacsync/python/abacsync_mapping/__init__.py",
            "target/abacsync/x.wasm",
            "__pycache__/app.pyc",
            ".abacsync/python/abacsync_mapping/__pycache__/x.pyc",
            ".git/HEAD",
            "node_modules/x/index.js",
        ] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(path, file).expect("write");
        }
        let found: Vec<String> = sources(dir.path())
            .expect("sources")
            .iter()
            .map(|path| {
                path.strip_prefix(dir.path())
                    .expect("inside")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            found,
            [
                ".abacsync/python/abacsync_mapping/__init__.py",
                "app.py",
                "fixtures/entries.ldif"
            ]
        );
    }
}
