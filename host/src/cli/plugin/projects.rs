//! The commands on a plugin project: `new`, `build`, `test DIR` (with `--update` and
//! `--watch`) and `push`.

use super::project::{Project, TestCase};
use super::{
    BuildArgs, EngineArgs, NewArgs, PushArgs, TestArgs, engine, read_settings_file, summary,
};
use super::{new, push, toolchain};
use crate::cli::Outcome;
use abacsync::mapping_test::{self, Difference};
use abacsync::plugin::model::{MappingContext, SyncMode};
use abacsync::plugin::{Plugin, PluginEngine};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub(super) fn new_project(args: NewArgs) -> anyhow::Result<Outcome> {
    let dir = args.dir.unwrap_or_else(|| args.name.clone().into());
    let count = new::write(&dir, &args.name, args.lang, args.template)?;
    println!(
        "made {} ({} files): a {} mapping from the `{}` template",
        dir.display(),
        count,
        args.lang.as_str(),
        args.template.as_str()
    );
    println!("next: cd {} && abacsync plugin test", dir.display());
    Ok(Outcome::Success)
}

/// Builds the project, saying what it built, and loads (checks) the component.
fn build_and_load(
    project: &Project,
    engine_args: &EngineArgs,
    engine: &PluginEngine,
    verbose: bool,
) -> anyhow::Result<(Plugin, Vec<u8>)> {
    let started = Instant::now();
    let built = toolchain::build(project, &engine_args.cache_root()?)?;
    let bytes = std::fs::read(&built.wasm)
        .with_context(|| format!("reading the component `{}`", built.wasm.display()))?;
    let label = format!("{}.wasm", project.name);
    let plugin = engine.load(&label, &bytes)?;
    if built.rebuilt || verbose {
        eprintln!(
            "built {} ({}, {:.1?}){}",
            built.wasm.display(),
            super::human_bytes(bytes.len() as u64),
            started.elapsed(),
            if built.rebuilt { "" } else { ": up to date" }
        );
    }
    Ok((plugin, bytes))
}

pub(super) fn build(args: BuildArgs) -> anyhow::Result<Outcome> {
    let project = Project::open(&args.dir)?;
    let engine = engine(&args.engine)?;
    let (plugin, _) = build_and_load(&project, &args.engine, &engine, true)?;
    let report = plugin.report();
    println!(
        "{}.wasm: a valid abacsync mapping plugin, {} {}: contract abacsync:mapping@{}, {}, {}, sha256 {} (details: `abacsync plugin check`)",
        project.name,
        plugin.info().name,
        plugin.info().version,
        report.contract_version,
        report.language.as_deref().unwrap_or("unknown language"),
        super::human_bytes(report.size as u64),
        report.sha256,
    );
    Ok(Outcome::Success)
}

pub(super) fn test_project(args: TestArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        args.fixtures.is_none() && args.expect.is_none(),
        "`{}` is a project: its fixtures and expected output are its abacsync-plugin.toml's [[test]]s",
        args.plugin.display()
    );
    // Each update would be a change to watch: it would never settle.
    anyhow::ensure!(
        !(args.watch && args.update),
        "--update and --watch do not go together: review with --watch, then run --update once"
    );
    let engine = engine(&args.engine)?;
    if !args.watch {
        return test_once(&args, &engine);
    }
    let mut seen = toolchain::fingerprint(&args.plugin);
    loop {
        match test_once(&args, &engine) {
            Ok(_) => {}
            Err(err) => eprintln!("error: {err:#}"),
        }
        eprintln!(
            "watching {} for changes (Ctrl-C stops)",
            args.plugin.display()
        );
        loop {
            std::thread::sleep(Duration::from_millis(400));
            if toolchain::fingerprint(&args.plugin) != seen {
                // Let an editor finish writing.
                std::thread::sleep(Duration::from_millis(150));
                seen = toolchain::fingerprint(&args.plugin);
                break;
            }
        }
        eprintln!();
    }
}

fn test_once(args: &TestArgs, engine: &PluginEngine) -> anyhow::Result<Outcome> {
    let project = Project::open(&args.plugin)?;
    anyhow::ensure!(
        !project.tests.is_empty(),
        "the project has no [[test]] in its abacsync-plugin.toml"
    );
    let (plugin, _) = build_and_load(&project, &args.engine, engine, false)?;
    let mut outcome = Outcome::Success;
    let options = CaseOptions::from(args);
    for case in &project.tests {
        if !run_case(&project, &plugin, case, &options)? {
            outcome = Outcome::Differences;
        }
    }
    Ok(outcome)
}

/// Runs one `[[test]]`; false when its output differs from the expected.
/// What `plugin test` adds to a project's `[[test]]`s.
struct CaseOptions {
    update: bool,
    settings_file: Option<PathBuf>,
    settings: Vec<(String, String)>,
    tenant: u64,
    batch_size: usize,
}

impl Default for CaseOptions {
    fn default() -> Self {
        CaseOptions {
            update: false,
            settings_file: None,
            settings: Vec::new(),
            tenant: 1,
            batch_size: 500,
        }
    }
}

impl From<&TestArgs> for CaseOptions {
    fn from(args: &TestArgs) -> Self {
        CaseOptions {
            update: args.update,
            settings_file: args.settings_file.clone(),
            settings: args.settings.clone(),
            tenant: args.tenant,
            batch_size: args.batch_size,
        }
    }
}

fn run_case(
    project: &Project,
    plugin: &Plugin,
    case: &TestCase,
    args: &CaseOptions,
) -> anyhow::Result<bool> {
    let entries_path = project.dir.join(&case.entries);
    let expected_path = project.dir.join(&case.expected);
    let entries = abacsync::fixtures::read_file(&entries_path)?;
    let mut settings: Vec<(String, String)> = case
        .settings
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if let Some(file) = &args.settings_file {
        settings.extend(read_settings_file(file)?);
    }
    settings.extend(args.settings.iter().cloned());
    let mode = match &case.mode {
        Some(mode) => mode.parse().map_err(|err| anyhow::anyhow!("{err}"))?,
        None => SyncMode::Full,
    };
    let context = MappingContext {
        tenant_id: args.tenant,
        mode,
        settings,
    };
    plugin.required_attributes(&context)?;
    let run = mapping_test::run(plugin, &context, entries, args.batch_size)?;
    let actual = mapping_test::to_json(&run.results);
    let label = case.entries.display();
    eprintln!("{label}: {}", summary(plugin, &run).replace('\n', "\n  "));
    for log in &run.logs {
        eprintln!("  [{}] {}", log.level.as_str(), log.message);
    }
    if args.update {
        let mut text = serde_json::to_string_pretty(&actual)?;
        text.push('\n');
        if let Some(parent) = expected_path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating `{}`", parent.display()))?;
        }
        std::fs::write(&expected_path, text)
            .with_context(|| format!("writing `{}`", expected_path.display()))?;
        println!(
            "{label}: wrote {} ({} entries)",
            case.expected.display(),
            run.results.len()
        );
        return Ok(true);
    }
    let expected = match std::fs::read_to_string(&expected_path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not JSON", expected_path.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!("{}", serde_json::to_string_pretty(&actual)?);
            println!(
                "{label}: no {} yet: review the output above, then `abacsync plugin test --update` writes it",
                case.expected.display()
            );
            return Ok(false);
        }
        Err(err) => {
            return Err(err).with_context(|| format!("reading `{}`", expected_path.display()));
        }
    };
    let differences = mapping_test::compare(&expected, &actual);
    if differences.is_empty() {
        println!(
            "{label}: ok, {} entries as in {}",
            run.results.len(),
            case.expected.display()
        );
        return Ok(true);
    }
    print!("{}", render_differences(&differences));
    if let [Difference::BadExpectation(_)] = differences.as_slice() {
        println!(
            "{label}: {} must be a JSON array of decisions, each with its \"dn\" (`abacsync plugin test --update` writes one)",
            case.expected.display()
        );
        return Ok(false);
    }
    println!(
        "{label}: {} of {} entries differ from {} (if the new output is right: `abacsync plugin test --update`)",
        differing_entries(&differences),
        run.results.len(),
        case.expected.display()
    );
    Ok(false)
}

fn differing_entries(differences: &[Difference]) -> usize {
    let mut dns: Vec<&str> = differences.iter().filter_map(Difference::dn).collect();
    dns.dedup();
    dns.len()
}

/// The differences grouped by entry: its DN once, then each field as expected and actual.
fn render_differences(differences: &[Difference]) -> String {
    let mut by_entry: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut out = String::new();
    for difference in differences {
        let line = match difference {
            Difference::BadExpectation(reason) => {
                out.push_str(&format!("the expected output is unusable: {reason}\n"));
                continue;
            }
            Difference::Missing { .. } => "expected, but the fixtures have no such entry".into(),
            Difference::Unexpected { .. } => "not in the expected output".into(),
            Difference::Changed {
                path,
                expected,
                actual,
                ..
            } => format!(
                "{path}\n      - expected: {}\n      + actual:   {}",
                expected.as_deref().unwrap_or("(absent)"),
                actual.as_deref().unwrap_or("(absent)")
            ),
        };
        if let Some(dn) = difference.dn() {
            by_entry.entry(dn).or_default().push(line);
        }
    }
    for (dn, lines) in by_entry {
        out.push_str(&format!("  {dn}\n"));
        for line in lines {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

pub(super) fn push_project(args: PushArgs) -> anyhow::Result<Outcome> {
    let credentials = push::Credentials::from_env()?;
    let server = push::Server::parse(&args.server, args.insecure_http, args.ca_file.clone())?;
    let project = Project::open(&args.dir)?;
    let engine = engine(&args.engine)?;
    // Refuse here what the server would refuse: a component the sandbox does not load.
    let (plugin, bytes) = build_and_load(&project, &args.engine, &engine, false)?;
    // A mapping that fails its own fixtures does not go live.
    if !args.no_test {
        for case in &project.tests {
            if !run_case(&project, &plugin, case, &CaseOptions::default())? {
                anyhow::bail!(
                    "the project's tests fail: nothing was pushed (fix them, or `--update` after review; `--no-test` pushes anyway)"
                );
            }
        }
    }
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    if let Some(file) = &args.settings_file {
        settings.extend(read_settings_file(file)?);
    }
    settings.extend(args.settings);
    let context = MappingContext {
        tenant_id: args.tenant,
        mode: SyncMode::Full,
        settings: settings
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    };
    plugin
        .required_attributes(&context)
        .context("the plugin refuses these settings")?;
    let pushed = push::push(
        &server,
        &credentials,
        &project.name,
        bytes,
        args.tenant,
        &settings,
    )?;
    println!(
        "pushed {} {} as plugin {} and assigned it to tenant {}",
        plugin.info().name,
        plugin.info().version,
        pushed.plugin_id,
        args.tenant
    );
    println!("{}", serde_json::to_string_pretty(&pushed.assignment)?);
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_shown_per_entry() {
        let differences = [
            Difference::Changed {
                dn: "uid=a".into(),
                path: "user.email".into(),
                expected: Some("\"a@x\"".into()),
                actual: None,
            },
            Difference::Changed {
                dn: "uid=a".into(),
                path: "user.active".into(),
                expected: Some("true".into()),
                actual: Some("false".into()),
            },
            Difference::Unexpected { dn: "uid=b".into() },
        ];
        assert_eq!(
            render_differences(&differences),
            "  uid=a\n    user.email\n      - expected: \"a@x\"\n      + actual:   (absent)\n    user.active\n      - expected: true\n      + actual:   false\n  uid=b\n    not in the expected output\n"
        );
        assert_eq!(differing_entries(&differences), 2);
    }
}
