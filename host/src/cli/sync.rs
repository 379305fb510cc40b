//! `abacsync sync`: one sync of one tenant (or all) from the configuration file, with
//! a summary (or the full report as JSON) and a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use abacsync::config::{Config, TenantConfig};
use abacsync::ldap::LdapDirectory;
use abacsync::plugin::model::SyncMode;
use abacsync::plugin::{PluginEngine, PluginRegistry, SandboxConfig};
use abacsync::store::Store;
use abacsync::sync::{
    Phase, Progress, RemovalOutcome, SyncEngine, SyncReport, SyncRequest, found_changes,
    load_tenant_plugin, system_clock, watch_session, watching,
};
use anyhow::Context;
use clap::Args;

use super::Outcome;

/// Arguments of `abacsync sync`.
#[derive(Args)]
pub(crate) struct SyncArgs {
    /// The configuration file with the tenants.
    #[arg(long, short, env = "ABACSYNC_CONFIG", default_value = "abacsync.toml")]
    config: PathBuf,
    /// The tenant to sync (every LDAP-enabled tenant when absent).
    #[arg(long)]
    tenant: Option<u64>,
    /// full: every entry, removals per policy; incremental: entries changed since the
    /// last sync (the first one runs full).
    #[arg(long, default_value = "full", value_parser = ["full", "incremental"])]
    mode: String,
    /// Compute and show the diff; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove users beyond the tenant's removal threshold.
    #[arg(long)]
    force: bool,
    /// Print the full report as JSON on stdout (with --watch: one line per sync).
    #[arg(long)]
    json: bool,
    /// After the sync, keep watching the directory (RFC 4533 refreshAndPersist) and
    /// sync each change as it arrives, until interrupted. Needs --tenant, a server with
    /// content synchronization, and the tenant's watch free in the store (a server's
    /// replica may hold it).
    #[arg(long, conflicts_with = "dry_run", requires = "tenant")]
    watch: bool,
    /// The store: an SQLite file or a postgres:// URL (overrides `[store] url`;
    /// default: abacsync.db in the configuration's data_dir).
    #[arg(long, env = "ABACSYNC_STORE_URL")]
    store: Option<String>,
}

pub(crate) fn run(args: SyncArgs) -> anyhow::Result<Outcome> {
    let config = Config::load(&args.config)?;
    let tenants: Vec<&TenantConfig> = match args.tenant {
        Some(id) => vec![
            config
                .tenant(id)
                .with_context(|| format!("no tenant {id} in {}", args.config.display()))?,
        ],
        None => config.tenants.iter().filter(|t| t.ldap_enabled).collect(),
    };
    if tenants.is_empty() {
        anyhow::bail!("no LDAP-enabled tenant in {}", args.config.display());
    }
    super::create_data_dir(&config.data_dir)?;
    let store = super::open_store(&config, args.store.as_deref())?;
    let engine = PluginEngine::new(
        SandboxConfig::default(),
        Some(config.data_dir.join("plugin-cache")),
    )
    .context("starting the plugin engine")?;
    let registry = PluginRegistry::new(engine);
    let sync = SyncEngine::new(store.clone(), system_clock())
        .with_quotas(config.quotas)
        .with_spill_folder(config.spill_folder());
    // Beside running servers: the tenant's run is taken in the store as theirs are,
    // so that a command-line sync never runs beside one of theirs.
    let holder = format!("cli-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mode: SyncMode = args.mode.parse()?;
    if args.watch {
        // The watch first: a second watcher stops before syncing anything.
        let tenant = tenants.first().map_or(0, |tenant| tenant.id);
        let lease = i64::try_from(watching::LEASE.as_millis()).unwrap_or(i64::MAX);
        let now = system_clock()();
        if !store.claim_watch(tenant, &holder, now.saturating_add(lease), now)? {
            anyhow::bail!(
                "tenant {tenant} is watched by another process (a replica of abacsync serve with watch = true, or another abacsync sync --watch)"
            );
        }
    }
    let mut reports = Vec::new();
    let mut all_ok = true;
    for tenant in tenants {
        if !tenant.ldap_enabled {
            anyhow::bail!("tenant {}: LDAP is disabled", tenant.id);
        }
        let plugin = load_tenant_plugin(&registry, tenant)?;
        let password = tenant.ldap.bind_password(tenant.id)?;
        let directory = LdapDirectory::new(&tenant.ldap, password)?;
        let mut request = SyncRequest::new(mode, run_id(), "cli");
        request.dry_run = args.dry_run;
        request.force = args.force;
        // A dry run writes nothing: it may run beside a sync.
        let claim = if args.dry_run {
            None
        } else {
            Some(TenantClaim::take(
                store.clone(),
                tenant.id,
                &holder,
                runtime.handle(),
            )?)
        };
        let progress = Progress::new();
        let bar = (!args.json && std::io::stderr().is_terminal())
            .then(|| progress_bar(progress.clone(), runtime.handle()));
        let (report, error) =
            runtime.block_on(sync.run(tenant, plugin, &directory, request, progress));
        if let Some((bar, watcher)) = bar {
            watcher.abort();
            bar.finish_and_clear();
        }
        if let Some(claim) = claim {
            claim.release();
        }
        if let Some(error) = &error {
            tracing::debug!(%error, "sync failed");
        }
        all_ok &= report.succeeded();
        if !args.json {
            print_summary(tenant, &report);
        } else if args.watch {
            println!("{}", serde_json::to_string(&report)?);
        }
        reports.push(report);
        if args.watch {
            let watch = Watch {
                store: store.clone(),
                sync: &sync,
                plugin: load_tenant_plugin(&registry, tenant)?,
                directory: &directory,
                tenant,
                holder: &holder,
                json: args.json,
            };
            runtime.block_on(watch.run())?;
            return Ok(Outcome::Success);
        }
    }
    if args.json {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])?
        } else {
            serde_json::to_string_pretty(&reports)?
        };
        println!("{json}");
    }
    if all_ok {
        Ok(Outcome::Success)
    } else {
        Ok(Outcome::Failed)
    }
}

/// `abacsync sync --watch`: syncs each change of one tenant's directory as it arrives,
/// holding the tenant's watch in the store as a server's replica would.
struct Watch<'a> {
    store: Arc<dyn Store>,
    sync: &'a SyncEngine,
    plugin: Arc<abacsync::plugin::TenantPlugin>,
    directory: &'a LdapDirectory,
    tenant: &'a TenantConfig,
    holder: &'a str,
    json: bool,
}

impl Watch<'_> {
    async fn hold(&self) -> bool {
        let (store, tenant, holder) = (self.store.clone(), self.tenant.id, self.holder.to_owned());
        let lease = i64::try_from(watching::LEASE.as_millis()).unwrap_or(i64::MAX);
        tokio::task::spawn_blocking(move || {
            let now = system_clock()();
            store.claim_watch(tenant, &holder, now.saturating_add(lease), now)
        })
        .await
        .is_ok_and(|held| held.is_ok_and(|held| held))
    }

    /// Syncs the changes: whether it found any (not when another process held the
    /// tenant: the watch tries again a moment later).
    async fn sync_changes(&self) -> bool {
        self.sync_changes_once()
            .await
            .is_some_and(|report| found_changes(&report))
    }

    async fn sync_changes_once(&self) -> Option<SyncReport> {
        let claim = {
            let (store, tenant, holder) =
                (self.store.clone(), self.tenant.id, self.holder.to_owned());
            tokio::task::spawn_blocking(move || {
                let now = system_clock()();
                store.claim_tenant(tenant, &holder, None, now + CLAIM_MS, now)
            })
            .await
        };
        match claim {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(other))) => {
                eprintln!(
                    "tenant {}: changes seen while {other} syncs it; trying again",
                    self.tenant.id
                );
                return None;
            }
            Ok(Err(err)) => {
                eprintln!(
                    "tenant {}: cannot take the tenant's run: {err}",
                    self.tenant.id
                );
                return None;
            }
            Err(err) => {
                eprintln!(
                    "tenant {}: taking the tenant's run panicked: {err}",
                    self.tenant.id
                );
                return None;
            }
        }
        let request = SyncRequest::new(SyncMode::Incremental, run_id(), "cli:watch");
        let (report, _) = self
            .sync
            .run(
                self.tenant,
                self.plugin.clone(),
                self.directory,
                request,
                Progress::new(),
            )
            .await;
        if let Err(err) = self.store.release_tenant(self.tenant.id, self.holder) {
            tracing::warn!(%err, tenant = self.tenant.id, "cannot give the tenant's run back");
        }
        if self.json {
            match serde_json::to_string(&report) {
                Ok(line) => println!("{line}"),
                Err(err) => eprintln!("cannot write the report: {err}"),
            }
        } else {
            print_summary(self.tenant, &report);
        }
        Some(report)
    }

    /// Watches until interrupted (Ctrl-C, SIGTERM), then gives the watch back.
    async fn run(&self) -> anyhow::Result<()> {
        if !self.hold().await {
            anyhow::bail!(
                "tenant {}: the watch went to another process during the first sync",
                self.tenant.id
            );
        }
        eprintln!(
            "tenant {}: watching the directory (Ctrl-C ends)",
            self.tenant.id
        );
        let mut pause = watching::FIRST_PAUSE;
        let watch = async {
            loop {
                let started = tokio::time::Instant::now();
                match watch_session(self.directory, || self.hold(), || self.sync_changes()).await {
                    None => {
                        return Err(anyhow::anyhow!(
                            "tenant {}: the watch went to another process",
                            self.tenant.id
                        ));
                    }
                    Some(Err(err @ abacsync::ldap::DirectoryError::Unsupported { .. })) => {
                        return Err(anyhow::anyhow!("tenant {}: {err}", self.tenant.id));
                    }
                    Some(ended) => {
                        if started.elapsed() > watching::LONGEST_PAUSE {
                            pause = watching::FIRST_PAUSE;
                        }
                        let why = ended.err().map(|err| err.to_string()).unwrap_or_default();
                        eprintln!(
                            "tenant {}: the watch broke ({why}); reopening it in {} s",
                            self.tenant.id,
                            pause.as_secs()
                        );
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(watching::LONGEST_PAUSE);
                    }
                }
            }
        };
        let result = tokio::select! {
            result = watch => result,
            () = interrupted() => Ok(()),
        };
        // A sync cut short by the interrupt gives the tenant's run back too (it wrote
        // nothing more: each chunk is a transaction, finished or never started).
        if let Err(err) = self.store.release_tenant(self.tenant.id, self.holder) {
            tracing::warn!(%err, tenant = self.tenant.id, "cannot give the tenant's run back");
        }
        if let Err(err) = self.store.release_watch(self.tenant.id, self.holder) {
            tracing::warn!(%err, tenant = self.tenant.id, "cannot give the watch back");
        }
        result
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// A tenant's run taken in the store by the command line, renewed while the sync goes
/// on, given back at the end.
struct TenantClaim {
    store: Arc<dyn Store>,
    tenant: u64,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

/// How long the command line's claim of a tenant lasts unless renewed.
const CLAIM_MS: i64 = 60_000;

impl TenantClaim {
    fn take(
        store: Arc<dyn Store>,
        tenant: u64,
        holder: &str,
        runtime: &tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let now = system_clock()();
        if let Some(other) = store.claim_tenant(tenant, holder, None, now + CLAIM_MS, now)? {
            anyhow::bail!(
                "tenant {tenant} is being synced by {other} (a running abacsync serve or another abacsync sync); try again once it has finished"
            );
        }
        let (renewing, owner) = (store.clone(), holder.to_owned());
        let renewer = runtime.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(
                u64::try_from(CLAIM_MS / 4).unwrap_or(15_000),
            ));
            loop {
                tick.tick().await;
                let (store, owner) = (renewing.clone(), owner.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    let now = system_clock()();
                    store.claim_tenant(tenant, &owner, None, now + CLAIM_MS, now)
                })
                .await;
            }
        });
        Ok(Self {
            store,
            tenant,
            holder: holder.to_owned(),
            renewer,
        })
    }

    fn release(self) {
        self.renewer.abort();
        if let Err(err) = self.store.release_tenant(self.tenant, &self.holder) {
            tracing::warn!(%err, tenant = self.tenant, "cannot give the tenant's run back");
        }
    }
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("cli-{nanos:x}")
}

fn progress_bar(
    progress: Progress,
    runtime: &tokio::runtime::Handle,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let shown = bar.clone();
    // A plain thread: the bar must move even while the runtime's workers are busy.
    let watcher = runtime.spawn_blocking(move || {
        loop {
            let now = progress.snapshot();
            shown.set_message(format!(
                "{}: {} read, {} mapped, {}/{} written",
                now.phase.as_str(),
                now.read,
                now.mapped,
                now.written,
                now.to_write
            ));
            if now.phase == Phase::Done || shown.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (bar, watcher)
}

/// The removal phase in a few words.
fn removal_line(removal: &RemovalOutcome) -> String {
    match removal {
        RemovalOutcome::NotApplicable => {
            "not checked (only a full sync or a content synchronization sees them)".into()
        }
        RemovalOutcome::Done { missing, removed } => {
            format!("{missing} gone from the directory, {removed} removed")
        }
        RemovalOutcome::SkippedAfterErrors { failed_entries } => {
            format!("SKIPPED: {failed_entries} entries failed")
        }
        RemovalOutcome::SkippedAfterReferrals { references } => {
            format!("SKIPPED: {references} continuation references (see ldap.ignore_referrals)")
        }
        RemovalOutcome::Refused { missing, total, .. } => {
            format!("REFUSED: {missing} of {total} users gone, over the threshold")
        }
    }
}

fn print_summary(tenant: &TenantConfig, report: &SyncReport) {
    let c = &report.counts;
    let name = if tenant.name.is_empty() {
        format!("tenant {}", tenant.id)
    } else {
        format!("tenant {} ({})", tenant.id, tenant.name)
    };
    let dry = if report.dry_run {
        " (dry run: nothing written)"
    } else {
        ""
    };
    let tracking = report
        .tracking
        .as_deref()
        .map(|tracking| format!(" ({tracking})"))
        .unwrap_or_default();
    println!(
        "{name}: {} sync{tracking} {}{dry}",
        report.mode, report.outcome
    );
    if !report.server.is_empty() {
        println!(
            "  directory  {} ({} searches), plugin {}",
            report.server, report.searches, report.plugin
        );
    }
    println!(
        "  read {}  created {}  updated {}  unchanged {}  reactivated {}  deactivated {}  deleted {}",
        c.read, c.created, c.updated, c.unchanged, c.reactivated, c.deactivated, c.deleted
    );
    println!(
        "  skipped {}  not imported {}  not found {}  failed {}",
        c.skipped, c.not_imported, c.not_found, c.failed
    );
    println!("  removals   {}", removal_line(&report.removal));
    for note in &report.notes {
        println!("  note: {note}");
    }
    if matches!(report.outcome.as_str(), "failed" | "cancelled") {
        println!("  (what the sync planned: its error says what, if anything, was written)");
    }
    if report.invalid_utf8_values > 0 {
        println!(
            "  {} text attribute(s) held values that are not UTF-8; the plugin got them as bytes (the log names them)",
            report.invalid_utf8_values
        );
    }
    if !report.changed_keys.is_empty() {
        let keys: Vec<_> = report.changed_keys.iter().map(String::as_str).collect();
        println!("  ABAC keys changed: {}", keys.join(", "));
    }
    println!(
        "  time {} ms (read+map {} ms, plugin {} ms, apply {} ms)",
        report.timings.total_ms,
        report.timings.read_map_ms,
        report.timings.plugin_ms,
        report.timings.apply_ms
    );
    for result in report
        .results
        .iter()
        .filter(|r| r.code >= 400 && r.code != 404 && r.code != 403 && r.code != 410)
        .take(20)
    {
        println!(
            "  {} {}: {}",
            result.code,
            result.dn.as_deref().unwrap_or(&result.username),
            result.message
        );
    }
    if let Some(error) = &report.error {
        println!("  error: {error}");
    }
}
