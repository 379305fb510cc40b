//! `abacsync plugin`: make a project (`new`), build it (`build`), check a component
//! (`check`), run fixtures through it (`test`), and upload it to a tenant (`push`).

mod new;
mod project;
mod projects;
mod push;
mod toolchain;

use super::Outcome;
use abacsync::mapping_test::{self, MappingRun};
use abacsync::plugin::model::{Decision, MappingContext, SyncMode};
use abacsync::plugin::{ComponentReport, PluginEngine, SandboxConfig};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub(crate) enum PluginCommand {
    /// Make a new plugin project: the mapping's sources, the SDK, fixtures and their expected output.
    New(NewArgs),
    /// Build a project's component (installing its language's toolchain on first use) and check it.
    Build(BuildArgs),
    /// Validate a component (world, contract version, imports, exports, size) without running it.
    Check(CheckArgs),
    /// Run a project's fixtures and compare with their expected output; or run a component
    /// over LDIF or JSON fixtures and print its decisions as JSON.
    Test(TestArgs),
    /// Build a project, upload its component to a server and assign it to a tenant.
    Push(PushArgs),
}

#[derive(Args)]
pub(crate) struct NewArgs {
    /// The plugin's name, and the folder made for it (lowercase letters, digits, `-`, `_`).
    name: String,
    /// The language it is written in.
    #[arg(long, value_enum)]
    lang: project::Language,
    /// The example it starts from.
    #[arg(long = "from", value_enum, default_value = "openldap")]
    template: new::Template,
    /// The folder to make [default: ./NAME].
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct BuildArgs {
    /// The project's folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args)]
pub(crate) struct PushArgs {
    /// The project's folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The abacsync server's URL (e.g. `https://abacsync.example.org`).
    #[arg(long)]
    server: String,
    /// The tenant to assign the plugin to.
    #[arg(long)]
    tenant: u64,
    /// A tenant setting the plugin is assigned with, `key=value`; repeat for more.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Read settings from a file, one KEY=VALUE per line; `--setting`s come after them.
    #[arg(long, value_name = "FILE")]
    settings_file: Option<PathBuf>,
    /// Trust the CAs of this PEM file for an https:// server (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Allow http:// to a server other than this machine: the token crosses the network in clear.
    #[arg(long)]
    insecure_http: bool,
    /// Push without running the project's tests first.
    #[arg(long)]
    no_test: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args)]
pub(crate) struct EngineArgs {
    /// Folder for compiled plugins [default: $XDG_CACHE_HOME/abacsync or ~/.cache/abacsync].
    #[arg(long, env = "ABACSYNC_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write compiled plugins on disk.
    #[arg(long)]
    no_cache: bool,
    /// Wall-clock deadline per call, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    deadline_ms: u64,
    /// Linear memory per call, in MiB.
    #[arg(long, default_value_t = 128)]
    memory_mib: usize,
    /// Fuel per call (instruction budget); off when not given.
    #[arg(long)]
    fuel: Option<u64>,
}

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The component (.wasm).
    plugin: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args)]
pub(crate) struct TestArgs {
    /// A project's folder (built when stale; its `[[test]]`s run), or a component (.wasm).
    #[arg(default_value = ".")]
    plugin: PathBuf,
    /// For a component: the entries, an LDIF file (.ldif) or a JSON array (.json).
    fixtures: Option<PathBuf>,
    /// For a project: write the actual output as the expected one (after reviewing it).
    #[arg(long)]
    update: bool,
    /// For a project: build and test again whenever one of its files changes.
    #[arg(long)]
    watch: bool,
    /// A plugin setting, `key=value`; repeat for more.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Read settings from a file, one KEY=VALUE per line (`#` starts a comment line);
    /// `--setting`s come after them.
    #[arg(long, value_name = "FILE")]
    settings_file: Option<PathBuf>,
    /// The sync mode the plugin is told about: full, incremental or targeted.
    #[arg(long, default_value = "full", value_parser = parse_mode)]
    mode: SyncMode,
    /// The tenant id the plugin is told about.
    #[arg(long, default_value_t = 1)]
    tenant: u64,
    /// Compare with this JSON file; exit 1 and show the differences when they differ.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// Entries per call.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    #[command(flatten)]
    engine: EngineArgs,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

fn read_settings_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading settings `{}`", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(index, line)| {
            parse_setting(line)
                .map_err(|reason| anyhow::anyhow!("{}:{}: {reason}", path.display(), index + 1))
        })
        .collect()
}

fn parse_mode(text: &str) -> Result<SyncMode, String> {
    text.parse()
        .map_err(|err: abacsync::plugin::model::UnknownSyncMode| err.to_string())
}

pub(crate) fn run(command: PluginCommand) -> anyhow::Result<Outcome> {
    match command {
        PluginCommand::New(args) => projects::new_project(args),
        PluginCommand::Build(args) => projects::build(args),
        PluginCommand::Check(args) => check(args),
        PluginCommand::Test(args) if args.plugin.is_dir() => projects::test_project(args),
        PluginCommand::Test(args) => test(args),
        PluginCommand::Push(args) => projects::push_project(args),
    }
}

impl EngineArgs {
    /// The per-user cache: compiled plugins, and the toolchains `plugin build` installs.
    fn cache_root(&self) -> anyhow::Result<PathBuf> {
        self.cache_dir
            .clone()
            .or_else(default_cache_dir)
            .context("no cache folder: set ABACSYNC_CACHE_DIR (or HOME, or XDG_CACHE_HOME)")
    }
}

fn engine(args: &EngineArgs) -> anyhow::Result<PluginEngine> {
    let config = SandboxConfig {
        deadline: Duration::from_millis(args.deadline_ms),
        memory_limit: args.memory_mib << 20,
        fuel: args.fuel,
        ..SandboxConfig::default()
    };
    // Without a cache folder, compiled plugins are simply not kept.
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_root().ok()
    };
    PluginEngine::new(config, cache_dir).context("starting the plugin engine")
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("abacsync"))
}

fn read_plugin(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading plugin `{}`", path.display()))?;
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    Ok((label, bytes))
}

fn check(args: CheckArgs) -> anyhow::Result<Outcome> {
    let engine = engine(&args.engine)?;
    let (label, bytes) = read_plugin(&args.plugin)?;
    let plugin = engine.load(&label, &bytes)?;
    let memory_limit = plugin.limits().memory_limit;
    if args.json {
        let mut json = report_json(&label, plugin.report());
        let load = plugin.load_stats();
        json["name"] = plugin.info().name.clone().into();
        json["version"] = plugin.info().version.clone().into();
        json["memoryAtStartBytes"] = load.probe.peak_memory.into();
        json["memoryLimitBytes"] = memory_limit.into();
        json["instantiateMicros"] = u64::try_from(load.probe.instantiate.as_micros())
            .unwrap_or(u64::MAX)
            .into();
        json["loadMillis"] = u64::try_from(load.duration.as_millis())
            .unwrap_or(u64::MAX)
            .into();
        json["compiledFromCache"] = load.from_cache.into();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_report(&label, plugin.report());
        let load = plugin.load_stats();
        println!(
            "  plugin:         {} {}",
            plugin.info().name,
            plugin.info().version
        );
        println!(
            "  memory:         {} at start, of {} per call",
            human_bytes(load.probe.peak_memory as u64),
            human_bytes(memory_limit as u64)
        );
        println!(
            "  loading:        {:.1?}{}; instantiation {:.1?}",
            load.duration,
            if load.from_cache {
                " (compiled code from cache)"
            } else {
                " (compiled)"
            },
            load.probe.instantiate
        );
    }
    Ok(Outcome::Success)
}

fn report_json(label: &str, report: &ComponentReport) -> serde_json::Value {
    serde_json::json!({
        "plugin": label,
        "valid": true,
        "world": "abacsync:mapping/mapping-plugin",
        "contractVersion": report.contract_version,
        "size": report.size,
        "sha256": report.sha256,
        "language": report.language,
        "toolchain": report.toolchain,
        "coreModules": report.core_modules,
        "initialMemoryBytes": report.initial_memory_bytes,
        "imports": report.imports,
        "exports": report.exports,
    })
}

fn print_report(label: &str, report: &ComponentReport) {
    println!("{label}: valid abacsync mapping plugin");
    println!(
        "  contract:       abacsync:mapping@{}",
        report.contract_version
    );
    println!(
        "  size:           {} ({} bytes)",
        human_bytes(report.size as u64),
        report.size
    );
    println!("  sha256:         {}", report.sha256);
    println!(
        "  language:       {}",
        report.language.as_deref().unwrap_or("unknown")
    );
    if !report.toolchain.is_empty() {
        println!("  toolchain:      {}", report.toolchain.join(", "));
    }
    println!("  core modules:   {}", report.core_modules);
    println!(
        "  initial memory: {}",
        human_bytes(report.initial_memory_bytes)
    );
    println!("  exports:        {}", report.exports.join(", "));
    println!("  imports:");
    for import in &report.imports {
        println!("    {import}");
    }
}

fn test(args: TestArgs) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        args.plugin.exists(),
        "`{}` does not exist: give a project's folder or a component (.wasm)",
        args.plugin.display()
    );
    let Some(fixtures) = &args.fixtures else {
        anyhow::bail!(
            "`{}` is a component: give the fixtures too (`plugin test PLUGIN.wasm ENTRIES.ldif`), or give a project's folder",
            args.plugin.display()
        );
    };
    anyhow::ensure!(
        !args.update && !args.watch,
        "--update and --watch work on a project's folder, not on a component"
    );
    let engine = engine(&args.engine)?;
    let (label, bytes) = read_plugin(&args.plugin)?;
    let entries = abacsync::fixtures::read_file(fixtures)?;
    let expected = args
        .expect
        .as_deref()
        .map(|path| -> anyhow::Result<serde_json::Value> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading `{}`", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))
        })
        .transpose()?;
    let mut settings = match &args.settings_file {
        Some(path) => read_settings_file(path)?,
        None => Vec::new(),
    };
    settings.extend(args.settings);
    let plugin = engine.load(&label, &bytes)?;
    let context = MappingContext {
        tenant_id: args.tenant,
        mode: args.mode,
        settings,
    };
    // Settings the plugin refuses are an error of the whole run, as in a sync.
    plugin.required_attributes(&context)?;
    let run = mapping_test::run(&plugin, &context, entries, args.batch_size)?;
    let actual = mapping_test::to_json(&run.results);
    println!("{}", serde_json::to_string_pretty(&actual)?);
    eprintln!("{}", summary(&plugin, &run));
    for log in &run.logs {
        eprintln!("  [{}] {}", log.level.as_str(), log.message);
    }
    let Some(expected) = expected else {
        return Ok(Outcome::Success);
    };
    let differences = mapping_test::compare(&expected, &actual);
    if differences.is_empty() {
        eprintln!(
            "matches {}",
            args.expect
                .as_deref()
                .map(Path::display)
                .map(|p| p.to_string())
                .unwrap_or_default()
        );
        return Ok(Outcome::Success);
    }
    eprintln!(
        "{} difference(s) from the expected output:",
        differences.len()
    );
    for difference in &differences {
        eprintln!("- {difference}");
    }
    Ok(Outcome::Differences)
}

fn summary(plugin: &abacsync::plugin::Plugin, run: &MappingRun) -> String {
    let (mut upserts, mut skips, mut deactivations, mut errors) = (0, 0, 0, 0);
    for result in &run.results {
        match &result.outcome {
            Ok(Decision::Upsert(_)) => upserts += 1,
            Ok(Decision::Skip { .. }) => skips += 1,
            Ok(Decision::Deactivate { .. }) => deactivations += 1,
            Err(_) => errors += 1,
        }
    }
    let info = plugin.info();
    let stats = &run.stats;
    let load = plugin.load_stats();
    format!(
        "{} {}: {} entries in {} call(s): {upserts} upsert, {skips} skip, {deactivations} deactivate, {errors} error\n\
         time: {:?} in calls, {:?} per entry, {:?} instantiating; loaded in {:?}{}\n\
         peak memory: {}; logged {}; console output {}",
        info.name,
        info.version,
        stats.entries,
        stats.calls,
        stats.duration,
        stats.per_entry(),
        stats.instantiate,
        load.duration,
        if load.from_cache {
            " (compiled code from cache)"
        } else {
            ""
        },
        human_bytes(stats.peak_memory as u64),
        human_bytes(stats.log_bytes as u64),
        human_bytes(stats.console_bytes as u64),
    )
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
