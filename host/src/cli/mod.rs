//! Command-line interface. Exit codes: 0 success, 1 a check found differences
//! (`plugin test --expect`) or a sync did not succeed (failed, refused removals),
//! 2 an error (bad input, refused plugin, failed call).

mod plugin;
mod serve;
mod sync;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "abacsync",
    version,
    about = "Keep users and their ABAC attributes in step with LDAP and Active Directory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check and test mapping plugins without a directory.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Sync tenants' directories into the user store.
    Sync(sync::SyncArgs),
    /// Serve the HTTP API, run background tasks and scheduled syncs.
    Serve(serve::ServeArgs),
}

/// Opens the store that `given` (`--store`), `[store]` or the default names.
pub(crate) fn open_store(
    config: &abacsync::config::Config,
    given: Option<&str>,
) -> anyhow::Result<std::sync::Arc<dyn abacsync::store::Store>> {
    let location = config
        .store
        .location(given, &config.data_dir)
        .map_err(anyhow::Error::msg)?;
    tracing::debug!(store = %location, "opening the store");
    Ok(abacsync::store::open(&location)?)
}

/// Creates the data directory (store, JWT key, plugin cache) with mode 0700, and
/// narrows an existing one that others may enter: what it holds is secret.
pub(crate) fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("reading the data directory {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "data directory narrowed to mode 0700")
                }
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), %err, "others can enter the data directory, and its mode cannot be narrowed to 0700")
                }
            }
        }
    }
    Ok(())
}

/// What a command found, beyond success.
pub(crate) enum Outcome {
    Success,
    Differences,
    Failed,
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ABACSYNC_LOG")
        .unwrap_or_else(|_| default_level.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // ABACSYNC_LOG_FORMAT=json: one JSON object per line, for log collectors.
    if std::env::var("ABACSYNC_LOG_FORMAT").is_ok_and(|format| format == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        Command::Plugin(command) => plugin::run(command),
        Command::Sync(args) => sync::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Differences | Outcome::Failed) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
