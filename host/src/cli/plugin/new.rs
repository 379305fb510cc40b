//! `abacsync plugin new`: a ready project from templates embedded in the binary: the
//! example plugins' sources and golden fixtures, the SDK and the contract this binary
//! speaks, so that the project builds with nothing outside its own folder (and the
//! toolchains).

use super::project::{self, Language, MANIFEST};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What a new project starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Template {
    /// OpenLDAP `inetOrgPerson`: department, employee type, location and unit.
    Openldap,
    /// Active Directory: objectGUID as id, disabled accounts, groups.
    ActiveDirectory,
    /// The whole mapping from tenant settings, without code.
    SettingsMap,
}

impl Template {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Template::Openldap => "openldap",
            Template::ActiveDirectory => "active-directory",
            Template::SettingsMap => "settings-map",
        }
    }
}

/// The WIT package of the contract the Rust SDK speaks, as `(file name, text)`.
pub(crate) const WIT: [(&str, &str); 4] = [
    ("host.wit", include_str!("../../../../wit/v0.3.0/host.wit")),
    (
        "mapper.wit",
        include_str!("../../../../wit/v0.3.0/mapper.wit"),
    ),
    (
        "types.wit",
        include_str!("../../../../wit/v0.3.0/types.wit"),
    ),
    (
        "world.wit",
        include_str!("../../../../wit/v0.3.0/world.wit"),
    ),
];

/// The WIT package of the contract the Python and JavaScript SDKs speak (0.2.0: their
/// move to 0.3.0 is to come).
pub(crate) const SCRIPT_WIT: [(&str, &str); 4] = [
    ("host.wit", include_str!("../../../../wit/v0.2.0/host.wit")),
    (
        "mapper.wit",
        include_str!("../../../../wit/v0.2.0/mapper.wit"),
    ),
    (
        "types.wit",
        include_str!("../../../../wit/v0.2.0/types.wit"),
    ),
    (
        "world.wit",
        include_str!("../../../../wit/v0.2.0/world.wit"),
    ),
];

/// The Rust SDK's sources.
const RUST_SDK: [(&str, &str); 10] = [
    (
        "alloc.rs",
        include_str!("../../../../guest-sdk/src/alloc.rs"),
    ),
    (
        "columns.rs",
        include_str!("../../../../guest-sdk/src/columns.rs"),
    ),
    ("dn.rs", include_str!("../../../../guest-sdk/src/dn.rs")),
    (
        "entry.rs",
        include_str!("../../../../guest-sdk/src/entry.rs"),
    ),
    (
        "export.rs",
        include_str!("../../../../guest-sdk/src/export.rs"),
    ),
    ("guid.rs", include_str!("../../../../guest-sdk/src/guid.rs")),
    ("lib.rs", include_str!("../../../../guest-sdk/src/lib.rs")),
    ("log.rs", include_str!("../../../../guest-sdk/src/log.rs")),
    (
        "model.rs",
        include_str!("../../../../guest-sdk/src/model.rs"),
    ),
    (
        "testing.rs",
        include_str!("../../../../guest-sdk/src/testing.rs"),
    ),
];

/// The Rust SDK's manifest outside the workspace: the workspace's versions of its
/// dependencies, written out (a test compares them with the workspace's).
pub(crate) const RUST_SDK_MANIFEST: &str = r#"[package]
name = "abacsync-guest"
description = "Write abacsync mapping plugins in Rust: a trait, an export macro, and helpers for LDAP entries."
version = "0.3.0"
edition = "2024"
rust-version = "1.95"
license = "Apache-2.0"

[features]
default = ["call-allocator"]
# The instance's allocator (src/alloc.rs): off for a plugin that brings its own.
call-allocator = []

[dependencies]
wit-bindgen = { version = "0.60", default-features = false, features = ["macros", "realloc", "std"] }
"#;

/// The Python SDK module.
pub(crate) const PYTHON_SDK: &str =
    include_str!("../../../../guest-sdk/python/abacsync_mapping/__init__.py");
/// The JavaScript SDK module.
pub(crate) const JS_SDK: &str = include_str!("../../../../guest-sdk/js/abacsync-mapping.js");
/// Its TypeScript declarations.
const JS_DECLARATIONS: &str = include_str!("../../../../guest-sdk/js/abacsync-mapping.d.ts");

struct Source {
    /// The template's file, with `name` as the plugin's name.
    text: &'static str,
    name: &'static str,
}

fn source(language: Language, template: Template) -> Source {
    match (language, template) {
        (Language::Rust, Template::Openldap) => Source {
            text: include_str!("../../../../plugins/openldap/src/lib.rs"),
            name: "openldap-inetorgperson",
        },
        (Language::Rust, Template::ActiveDirectory) => Source {
            text: include_str!("../../../../plugins/active-directory/src/lib.rs"),
            name: "active-directory",
        },
        (Language::Rust, Template::SettingsMap) => Source {
            text: include_str!("../../../../plugins/settings-map/src/lib.rs"),
            name: "settings-map",
        },
        (Language::Python, Template::Openldap) => Source {
            text: include_str!("../../../../plugins/openldap-py/app.py"),
            name: "openldap-inetorgperson-python",
        },
        (Language::Python, Template::ActiveDirectory) => Source {
            text: include_str!("../../../../plugins/active-directory-py/app.py"),
            name: "active-directory-python",
        },
        (Language::Python, Template::SettingsMap) => Source {
            text: include_str!("../../../../plugins/settings-map-py/app.py"),
            name: "settings-map-python",
        },
        (Language::Js, Template::Openldap) => Source {
            text: include_str!("../../../../plugins/openldap-js/mapping.js"),
            name: "openldap-inetorgperson-js",
        },
        (Language::Js, Template::ActiveDirectory) => Source {
            text: include_str!("../../../../plugins/active-directory-js/mapping.js"),
            name: "active-directory-js",
        },
        (Language::Js, Template::SettingsMap) => Source {
            text: include_str!("../../../../plugins/settings-map-js/mapping.js"),
            name: "settings-map-js",
        },
    }
}

/// The template's fixtures: entries, expected decisions, and the settings they need.
fn fixtures(template: Template) -> (&'static str, &'static str, &'static str) {
    match template {
        Template::Openldap => (
            include_str!("../../../../plugins/openldap/fixtures/entries.ldif"),
            include_str!("../../../../plugins/openldap/fixtures/expected.json"),
            "",
        ),
        Template::ActiveDirectory => (
            include_str!("../../../../plugins/active-directory/fixtures/entries.ldif"),
            include_str!("../../../../plugins/active-directory/fixtures/expected.json"),
            "",
        ),
        Template::SettingsMap => (
            include_str!("../../../../plugins/settings-map/fixtures/entries.ldif"),
            include_str!("../../../../plugins/settings-map/fixtures/expected.json"),
            include_str!("../../../../plugins/settings-map/fixtures/settings"),
        ),
    }
}

/// Every file of a new project, as `(path relative to it, contents)`.
pub(crate) fn files(
    name: &str,
    language: Language,
    template: Template,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    project::check_name(name)?;
    let source = source(language, template);
    let mapping = source
        .text
        .replace(&format!("\"{}\"", source.name), &format!("\"{name}\""));
    let (entries, expected, settings) = fixtures(template);
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut add = |path: &str, text: String| files.push((PathBuf::from(path), text));
    add(MANIFEST, manifest(name, language, settings)?);
    add("README.md", readme(name, language, template));
    add("fixtures/entries.ldif", fixture_ldif(entries));
    add("fixtures/expected.json", expected.to_owned());
    match language {
        Language::Rust => {
            add("Cargo.toml", cargo_manifest(name));
            add("src/lib.rs", mapping);
            add(".gitignore", "/target\n".to_owned());
            add(
                ".abacsync/guest-sdk/Cargo.toml",
                RUST_SDK_MANIFEST.to_owned(),
            );
            for (file, text) in RUST_SDK {
                add(&format!(".abacsync/guest-sdk/src/{file}"), text.to_owned());
            }
            for (file, text) in WIT {
                add(&format!(".abacsync/guest-sdk/wit/{file}"), text.to_owned());
            }
        }
        Language::Python => {
            add("app.py", mapping);
            add(".gitignore", "/target\n__pycache__/\n".to_owned());
            add(
                ".abacsync/python/abacsync_mapping/__init__.py",
                PYTHON_SDK.to_owned(),
            );
            // PEP 561: type checkers read the SDK's hints (MYPYPATH=.abacsync/python).
            add(".abacsync/python/abacsync_mapping/py.typed", String::new());
            for (file, text) in SCRIPT_WIT {
                add(&format!(".abacsync/wit/{file}"), text.to_owned());
            }
        }
        Language::Js => {
            add("mapping.js", mapping);
            add(".gitignore", "/target\n".to_owned());
            // Beside the module, where its import points: editors, `node --check` and
            // `tsc --checkJs` resolve it, and the build takes it as it is.
            add("abacsync-mapping.js", JS_SDK.to_owned());
            add("abacsync-mapping.d.ts", JS_DECLARATIONS.to_owned());
            for (file, text) in SCRIPT_WIT {
                add(&format!(".abacsync/wit/{file}"), text.to_owned());
            }
        }
    }
    Ok(files)
}

fn manifest(name: &str, language: Language, settings: &str) -> anyhow::Result<String> {
    let mut text = format!(
        "# An abacsync mapping plugin: `abacsync plugin build` and `abacsync plugin test` read this.\n\
         [plugin]\n\
         name = \"{name}\"\n\
         language = \"{}\"            # rust, python or js\n\
         \n\
         # Each [[test]] maps `entries` (LDIF or a JSON array) and compares the decisions with\n\
         # `expected`; `plugin test --update` rewrites `expected` once you have reviewed the output.\n\
         [[test]]\n\
         entries = \"fixtures/entries.ldif\"\n\
         expected = \"fixtures/expected.json\"\n\
         mode = \"full\"                # full, incremental or targeted\n",
        language.as_str()
    );
    let settings: Vec<(&str, &str)> = settings
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| {
            line.split_once('=')
                .context("a template setting is not KEY=VALUE")
        })
        .collect::<anyhow::Result<_>>()?;
    text.push_str("# The tenant settings the mapping is given.\n[test.settings]\n");
    for (key, value) in settings {
        writeln!(text, "{} = {}", toml_string(key), toml_string(value))?;
    }
    Ok(text)
}

fn toml_string(text: &str) -> String {
    // A TOML basic string is a JSON string for every character the templates use.
    serde_json::Value::from(text).to_string()
}

fn cargo_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the component (`abacsync plugin build`); rlib: native unit tests (`cargo test`).
crate-type = ["cdylib", "rlib"]

[dependencies]
abacsync-guest = "0.3"

# The SDK is not on crates.io yet: this project carries the one of the abacsync that made
# it. Remove this section (and .abacsync/guest-sdk) once `abacsync-guest` is published.
[patch.crates-io]
abacsync-guest = {{ path = ".abacsync/guest-sdk" }}

# Small, fast components.
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = "debuginfo"

# A project of its own, even inside another Cargo workspace.
[workspace]
"#
    )
}

fn readme(name: &str, language: Language, template: Template) -> String {
    let (language, source) = match language {
        Language::Rust => ("Rust", "src/lib.rs"),
        Language::Python => ("Python", "app.py"),
        Language::Js => ("JavaScript", "mapping.js"),
    };
    format!(
        "# {name}\n\n\
         An abacsync mapping plugin in {language}, from the `{}` template: edit `{source}` and `fixtures/`.\n\n\
         - `abacsync plugin build` builds the component and checks it.\n\
         - `abacsync plugin test` maps `fixtures/entries.ldif` and compares with `fixtures/expected.json` (`--update` accepts the new output, `--watch` re-runs on save).\n\
         - `abacsync plugin push --server URL --tenant ID` uploads it and assigns it to a tenant (`ABACSYNC_USER_ID`, `ABACSYNC_TOKEN`).\n",
        template.as_str()
    )
}

/// The template's LDIF, its "Run:" line told how to run it here.
fn fixture_ldif(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = if line.starts_with("# Run:") {
            "# Run: abacsync plugin test"
        } else {
            line
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes a new project into `dir`, which must not exist or be empty.
pub(crate) fn write(
    dir: &Path,
    name: &str,
    language: Language,
    template: Template,
) -> anyhow::Result<usize> {
    let files = files(name, language, template)?;
    if let Ok(mut found) = std::fs::read_dir(dir) {
        anyhow::ensure!(
            found.next().is_none(),
            "`{}` exists and is not empty: choose another name or folder",
            dir.display()
        );
    }
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating `{}`", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing `{}`", path.display()))?;
    }
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_dependency(name: &str) -> toml::Value {
        let root: toml::Table =
            toml::from_str(include_str!("../../../../Cargo.toml")).expect("toml");
        root["workspace"]["dependencies"][name].clone()
    }

    #[test]
    fn the_carried_sdk_is_the_workspaces() {
        let sdk: toml::Table = toml::from_str(RUST_SDK_MANIFEST).expect("toml");
        let member: toml::Table =
            toml::from_str(include_str!("../../../../guest-sdk/Cargo.toml")).expect("toml");
        assert_eq!(sdk["package"]["version"], member["package"]["version"]);
        assert_eq!(
            sdk["package"]["description"],
            member["package"]["description"]
        );
        let root: toml::Table =
            toml::from_str(include_str!("../../../../Cargo.toml")).expect("toml");
        assert_eq!(
            sdk["package"]["rust-version"],
            root["workspace"]["package"]["rust-version"]
        );
        let ours = sdk["dependencies"].as_table().expect("dependencies");
        let theirs = member["dependencies"].as_table().expect("dependencies");
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>()
        );
        for (name, spec) in ours {
            let workspace = workspace_dependency(name);
            let normalize = |value: &toml::Value| match value {
                toml::Value::String(version) => {
                    let mut table = toml::Table::new();
                    table.insert("version".into(), version.clone().into());
                    toml::Value::Table(table)
                }
                other => other.clone(),
            };
            assert_eq!(normalize(spec), normalize(&workspace), "{name}");
        }
        // The carried contract is the SDK's version, and a new project asks for it.
        let version = sdk["package"]["version"].as_str().expect("version");
        let major_minor: Vec<&str> = version.split('.').take(2).collect();
        assert!(
            cargo_manifest("x")
                .contains(&format!("abacsync-guest = \"{}\"", major_minor.join("."))),
            "a new project depends on abacsync-guest {version}"
        );
        assert!(
            WIT.iter()
                .any(|(_, text)| text.contains(&format!("package abacsync:mapping@{version};"))),
            "the WIT's package is not version {version}"
        );
    }

    #[test]
    fn a_new_project_is_named_and_complete() {
        let every = [
            Template::Openldap,
            Template::ActiveDirectory,
            Template::SettingsMap,
        ];
        let all = every
            .iter()
            .map(|template| (Language::Rust, *template, "src/lib.rs"))
            .chain(
                every
                    .iter()
                    .map(|template| (Language::Python, *template, "app.py")),
            )
            .chain(
                every
                    .iter()
                    .map(|template| (Language::Js, *template, "mapping.js")),
            );
        for (language, template, source) in all {
            let files = files("acme-staff", language, template).expect("files");
            let text = |path: &str| {
                files
                    .iter()
                    .find(|(file, _)| file == Path::new(path))
                    .map(|(_, text)| text.as_str())
                    .unwrap_or_else(|| panic!("{path} in {language:?}/{template:?}"))
            };
            assert!(text(source).contains("\"acme-staff\""), "{source}");
            let manifest: toml::Table = toml::from_str(text(MANIFEST)).expect("manifest");
            assert_eq!(
                manifest["plugin"]["language"].as_str(),
                Some(language.as_str())
            );
            serde_json::from_str::<serde_json::Value>(text("fixtures/expected.json"))
                .expect("expected.json");
            assert!(text("fixtures/entries.ldif").contains("dn: "));
            assert!(text("README.md").lines().count() <= 8);
        }
        let settings_map = files("acme", Language::Rust, Template::SettingsMap).expect("files");
        let manifest = &settings_map
            .iter()
            .find(|(file, _)| file == Path::new(MANIFEST))
            .expect("manifest")
            .1;
        let manifest: toml::Table = toml::from_str(manifest).expect("manifest");
        assert_eq!(
            manifest["test"][0]["settings"]["abac.department"].as_str(),
            Some("departmentNumber")
        );
        assert!(files("Bad Name", Language::Rust, Template::Openldap).is_err());
    }

    #[test]
    fn a_project_is_written_only_into_an_empty_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("acme");
        let count = write(&target, "acme", Language::Js, Template::Openldap).expect("write");
        assert!(count > 5);
        assert!(target.join(".abacsync/wit/world.wit").is_file());
        assert!(target.join("abacsync-mapping.d.ts").is_file());
        let error = write(&target, "acme", Language::Js, Template::Openldap).expect_err("again");
        assert!(error.to_string().contains("not empty"), "{error}");
    }
}
