//! `abacsync serve`: the HTTP API, background tasks and scheduled syncs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use abacsync::api::{self, AppState};
use abacsync::auth::{Role, password, token};
use abacsync::config::{Config, TenantConfig};
use abacsync::plugin::{PluginEngine, PluginRegistry, SandboxConfig};
use abacsync::store::{AccountStore, CatalogStore, NewAccount};
use abacsync::sync::{SyncEngine, SyncService, Tenants, run_scheduler, run_watchers, system_clock};
use anyhow::Context;
use clap::Args;

use super::Outcome;

/// Arguments of `abacsync serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The configuration file with the tenants and `[server]` settings.
    #[arg(long, short, env = "ABACSYNC_CONFIG", default_value = "abacsync.toml")]
    config: PathBuf,
    /// Address to listen on (overrides `server.listen`; port 0 picks a free port).
    #[arg(long, env = "ABACSYNC_LISTEN")]
    listen: Option<String>,
    /// The store: an SQLite file or a postgres:// URL (overrides `[store] url`;
    /// default: abacsync.db in the configuration's data_dir). Replicas share one.
    #[arg(long, env = "ABACSYNC_STORE_URL")]
    store: Option<String>,
    /// Name of the first admin account, created when the store has none.
    #[arg(long, env = "ABACSYNC_ADMIN_USER")]
    admin_user: Option<String>,
    /// Password of the first admin account.
    #[arg(long, env = "ABACSYNC_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    // The first admin's password has been read; it must not stay where a tenant's
    // settings (`bind_password_env`) or a child process could reach it.
    // SAFETY: no other thread exists yet (the runtime starts below), so nothing reads
    // the environment concurrently.
    unsafe { std::env::remove_var("ABACSYNC_ADMIN_PASSWORD") };
    let config = Config::load(&args.config)?;
    super::create_data_dir(&config.data_dir)?;
    let store = super::open_store(&config, args.store.as_deref())?;
    let clock = system_clock();
    let replica = replica_id(&config.data_dir)?;
    // This replica's tasks from its last life did not finish (it crashed): those that
    // can run again are handed back, to be taken over by `keep_leases` (here, or on
    // another replica), the rest are marked interrupted. Other replicas' expired tasks
    // are taken over, or marked, by `keep_leases` too.
    let handed_back = store.hand_back_owned(&replica, clock())?;
    if handed_back > 0 {
        tracing::warn!(
            handed_back,
            "tasks cut short by a crash are queued again, to run from the directory"
        );
    }
    let interrupted = store.interrupt_owned(&replica, clock())?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "tasks cut short by a stop are marked interrupted"
        );
    }
    create_first_admin(store.as_ref(), &args, clock())?;
    let jwt_secret = jwt_secret(store.as_ref(), &config.data_dir, clock())?;
    let engine = PluginEngine::new(
        SandboxConfig::default(),
        Some(config.data_dir.join("plugin-cache")),
    )
    .context("starting the plugin engine")?;
    let tenants = load_tenants(&config, store.as_ref())?;
    let service = Arc::new(
        SyncService::new(
            SyncEngine::new(store.clone(), clock.clone())
                .with_quotas(config.quotas)
                .with_spill_folder(config.spill_folder()),
            store.clone(),
            store.clone(),
            PluginRegistry::new(engine),
            tenants,
            clock,
            replica.clone(),
        )
        .with_task_lease(Duration::from_secs(config.server.task_lease_secs))
        .with_max_concurrent_syncs(config.server.max_concurrent_syncs),
    );
    let mut settings = config.server.clone();
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let listen = settings.listen.clone();
    let mailer = settings
        .smtp
        .as_ref()
        .map(abacsync::auth::mail::Mailer::new)
        .transpose()?;
    let state = AppState::new(service.clone(), store.clone(), settings, jwt_secret, mailer);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (catalog_config, catalog_store) = (config.clone(), store.clone());
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let address = listener.local_addr()?;
        // The first line on stdout: scripts and tests read the address from it.
        println!("abacsync listening on http://{address}");
        tokio::spawn(run_scheduler(service.clone()));
        let watchers = tokio::spawn(run_watchers(service.clone()));
        tokio::spawn(service.clone().keep_leases());
        tokio::spawn(service.clone().serve_queue());
        tokio::spawn(service.clone().follow_catalog(move || {
            load_tenants(&catalog_config, catalog_store.as_ref()).map_err(|err| format!("{err:#}"))
        }));
        let app = api::router(state).into_make_service_with_connect_info::<SocketAddr>();
        // At the signal: no new tasks, no new connections; requests under way and the
        // running sync share one grace period, then whatever runs is cancelled.
        let stopping = Arc::new(tokio::sync::Notify::new());
        let on_signal = {
            let (service, stopping) = (service.clone(), stopping.clone());
            async move {
                shutdown_signal().await;
                service.begin_shutdown();
                tracing::info!("shutting down: finishing requests and the running syncs");
                stopping.notify_one();
            }
        };
        let serving = axum::serve(listener, app).with_graceful_shutdown(on_signal);
        let deadline = tokio::select! {
            served = serving => {
                served.context("serving the API")?;
                // Stopped by the signal: the grace period began there.
                tokio::time::Instant::now() + grace
            }
            deadline = async {
                stopping.notified().await;
                let deadline = tokio::time::Instant::now() + grace;
                tokio::time::sleep_until(deadline).await;
                deadline
            } => {
                tracing::warn!("requests still under way after the grace period are dropped");
                deadline
            }
        };
        // The watchers see the stop within a look and give their leases back.
        let _ = tokio::time::timeout(Duration::from_secs(5), watchers).await;
        while service.running_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if service.running_count() > 0 {
            service.cancel_all();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while service.running_count() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        anyhow::Ok(())
    })?;
    // Whatever of this replica's is still queued or running did not finish: handed
    // back now for another replica (or this one, restarted) to run, rather than when
    // its lease runs out; what cannot be run again is marked interrupted.
    store.hand_back_owned(&replica, system_clock()())?;
    store.interrupt_owned(&replica, system_clock()())?;
    Ok(Outcome::Success)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::error!(%err, "cannot watch SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// The configuration file's tenants and the API's; an API tenant whose id the file
/// now uses is left out, with a warning.
fn load_tenants(config: &Config, store: &dyn CatalogStore) -> anyhow::Result<Tenants> {
    let mut api = Vec::new();
    for stored in store.api_tenants()? {
        match serde_json::from_str::<TenantConfig>(&stored.config)
            .map_err(|err| err.to_string())
            .and_then(|tenant| tenant.validate().map(|()| tenant))
        {
            Ok(tenant) => api.push(tenant),
            Err(err) => {
                tracing::error!(tenant = stored.id, %err, "a stored tenant is invalid; left out")
            }
        }
    }
    let (tenants, conflicts) = Tenants::new(config.tenants.clone(), api, store.schedules()?);
    for id in conflicts {
        tracing::warn!(
            tenant = id,
            "the configuration file defines this tenant too; the file's settings win"
        );
    }
    Ok(tenants)
}

fn create_first_admin(store: &dyn AccountStore, args: &ServeArgs, now: i64) -> anyhow::Result<()> {
    if store.count_accounts()? > 0 {
        return Ok(());
    }
    let (Some(user), Some(pass)) = (&args.admin_user, &args.admin_password) else {
        tracing::warn!(
            "the store has no admin account: pass --admin-user and --admin-password (or ABACSYNC_ADMIN_USER / ABACSYNC_ADMIN_PASSWORD) to create one"
        );
        return Ok(());
    };
    if pass.chars().count() < 12 {
        anyhow::bail!("the first admin's password must have at least 12 characters");
    }
    let account = NewAccount {
        public_id: token::new_public_id().context("drawing an account id")?,
        username: user.clone(),
        password_hash: password::hash(pass)?,
        tenant: None,
        permissions: Role::Admin.permissions(),
        email: None,
    };
    store.create_account(&account, now)?;
    tracing::info!(user, "created the first admin account");
    Ok(())
}

/// The JWT signing secret, shared by every replica through the store (so that a
/// grommunio cookie from one is good on all) and kept across restarts; drawn by the
/// first replica that starts. An older data directory's `jwt.secret` becomes the
/// shared one, so that its sessions stay valid.
fn jwt_secret(
    store: &dyn abacsync::store::AccountStore,
    data_dir: &Path,
    now: i64,
) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("jwt.secret");
    let candidate = match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 32 => secret,
        Ok(_) => anyhow::bail!(
            "{} is shorter than 32 bytes; delete it to make a new one",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; 32];
            getrandom::fill(&mut secret).context("drawing the JWT secret")?;
            secret
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let secret = store
        .shared_secret("grommunio-jwt", &candidate, now)
        .context("reading the shared JWT secret")?;
    anyhow::ensure!(
        secret.len() >= 32,
        "the stored JWT secret is shorter than 32 bytes"
    );
    Ok(secret)
}

/// This replica's name, kept in its data folder: a replica is its data folder (one
/// per pod), so a restarted replica knows its tasks from before. Made on first start.
fn replica_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("replica.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).context("drawing the replica id")?;
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "abacsync".into());
    let id = format!(
        "{host}-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}
