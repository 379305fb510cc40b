//! A plugin project: a folder with `abacsync-plugin.toml` (written by `plugin new`), the
//! mapping's sources, its fixtures and, under `.abacsync/`, the SDK and contract of the
//! abacsync that wrote it.

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The project file's name.
pub(crate) const MANIFEST: &str = "abacsync-plugin.toml";

/// The language a project is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Language {
    /// Rust, with the `abacsync-guest` crate, built by cargo for `wasm32-wasip2`.
    Rust,
    /// Python, with `abacsync_mapping`, built by componentize-py.
    Python,
    /// JavaScript, with `abacsync-mapping.js`, built by componentize-js.
    Js,
}

impl Language {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    plugin: PluginSection,
    #[serde(default, rename = "test")]
    tests: Vec<TestCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSection {
    name: String,
    language: Language,
}

/// One fixture run of `plugin test`: entries in, decisions compared with the expected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestCase {
    /// The entries: an LDIF file or a JSON array, relative to the project.
    pub(crate) entries: PathBuf,
    /// The expected decisions (JSON), relative to the project.
    pub(crate) expected: PathBuf,
    /// The tenant settings the mapping is given.
    #[serde(default)]
    pub(crate) settings: BTreeMap<String, String>,
    /// The sync mode the mapping is told about (`full` unless given).
    #[serde(default)]
    pub(crate) mode: Option<String>,
}

/// An opened project.
#[derive(Debug)]
pub(crate) struct Project {
    /// Its folder.
    pub(crate) dir: PathBuf,
    /// The plugin's name (the component's file name).
    pub(crate) name: String,
    pub(crate) language: Language,
    pub(crate) tests: Vec<TestCase>,
}

impl Project {
    /// Reads the project in `dir`.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Project> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "`{}` is not a plugin project: it has no {MANIFEST} (`abacsync plugin new NAME` makes one)",
                dir.display()
            ),
            Err(err) => {
                return Err(err).with_context(|| format!("reading `{}`", path.display()));
            }
        };
        let file: ManifestFile =
            toml::from_str(&text).with_context(|| format!("`{}` is not valid", path.display()))?;
        check_name(&file.plugin.name).with_context(|| format!("in `{}`", path.display()))?;
        for case in &file.tests {
            for file in [&case.entries, &case.expected] {
                // A cloned project must not make `--update` write outside it.
                let inside = file.components().all(|part| {
                    matches!(
                        part,
                        std::path::Component::Normal(_) | std::path::Component::CurDir
                    )
                });
                anyhow::ensure!(
                    inside,
                    "in `{}`: `{}` is not inside the project: [[test]] paths are relative to it, without `..`",
                    path.display(),
                    file.display()
                );
            }
            if let Some(mode) = &case.mode {
                mode.parse::<abacsync::plugin::model::SyncMode>()
                    .map_err(|err| anyhow::anyhow!("in `{}`: {err}", path.display()))?;
            }
        }
        Ok(Project {
            dir: dir.to_path_buf(),
            name: file.plugin.name,
            language: file.plugin.language,
            tests: file.tests,
        })
    }

    /// Where `plugin build` writes the component of a Python or JavaScript project, and
    /// its record of what it was built from.
    pub(crate) fn output_dir(&self) -> PathBuf {
        self.dir.join("target").join("abacsync")
    }

    /// The contract's WIT files the project carries.
    pub(crate) fn wit_dir(&self) -> PathBuf {
        self.dir.join(".abacsync").join("wit")
    }
}

/// A plugin name: what `plugin new` makes a folder, a crate and a component of.
pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.ends_with(['-', '_']);
    anyhow::ensure!(
        valid,
        "`{name}` is not a plugin name: use 1 to 64 lowercase letters, digits, `-` and `_`, starting with a letter (e.g. `acme-staff`)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_and_file_names() {
        for good in ["acme", "acme-staff", "a1_b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "1acme",
            "acme-",
            "ac me",
            "acme/x",
            "../x",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_project_file_is_read_strictly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = Project::open(dir.path()).expect_err("no manifest");
        assert!(error.to_string().contains("plugin new"), "{error}");
        std::fs::write(
            dir.path().join(MANIFEST),
            "[plugin]\nname = \"acme\"\nlanguage = \"python\"\n\n[[test]]\nentries = \"e.ldif\"\nexpected = \"e.json\"\nsettings = { lowercase = \"true\" }\n",
        )
        .expect("write");
        let project = Project::open(dir.path()).expect("project");
        assert_eq!(project.language, Language::Python);
        assert_eq!(project.tests[0].settings["lowercase"], "true");
        std::fs::write(
            dir.path().join(MANIFEST),
            "[plugin]\nname = \"acme\"\nlanguage = \"cobol\"\n",
        )
        .expect("write");
        let error = format!("{:#}", Project::open(dir.path()).expect_err("language"));
        assert!(error.contains("cobol"), "{error}");
        std::fs::write(
            dir.path().join(MANIFEST),
            "[plugin]\nname = \"acme\"\nlanguage = \"js\"\n[[test]]\nentries = \"e\"\nexpected = \"f\"\nmode = \"sometimes\"\n",
        )
        .expect("write");
        let error = format!("{:#}", Project::open(dir.path()).expect_err("mode"));
        assert!(error.contains("sometimes"), "{error}");
        for outside in ["/etc/passwd", "../x.json", "fixtures/../../x.json"] {
            std::fs::write(
                dir.path().join(MANIFEST),
                format!("[plugin]\nname = \"acme\"\nlanguage = \"js\"\n[[test]]\nentries = \"e\"\nexpected = \"{outside}\"\n"),
            )
            .expect("write");
            let error = format!("{:#}", Project::open(dir.path()).expect_err(outside));
            assert!(error.contains("is not inside the project"), "{error}");
        }
    }
}
