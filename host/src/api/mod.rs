//! The HTTP API (axum): Rocket.Chat's and grommunio's documented sync triggers, logins
//! in both dialects, grommunio-style tasks, the admin API, health and metrics.
//!
//! Each resource module exposes `router()`; [`router`] merges them. Authentication
//! lives in [`session`]; error bodies in [`error`].

mod admin;
pub mod error;
mod grommunio;
mod login;
mod ops;
mod rocketchat;
pub mod session;
mod tasks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;

use crate::auth::ratelimit::RateLimiter;
use crate::config::ServerConfig;
use crate::store::{AccountStore, StoreError};
use crate::sync::SyncService;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The state's parts.
pub struct Inner {
    /// Syncs, tasks, tenants, the user store.
    pub service: Arc<SyncService>,
    /// Accounts and sessions.
    pub accounts: Arc<dyn AccountStore>,
    /// Server settings.
    pub settings: ServerConfig,
    /// Signs the grommunio dialect's JWT cookies.
    pub jwt_secret: Vec<u8>,
    /// Failed logins per account name and per client address.
    pub login_limiter: RateLimiter,
    /// Failed two-factor codes per account.
    pub two_factor_limiter: RateLimiter,
    /// Sessions that passed a two-factor check, and when (Rocket.Chat's "remember").
    remembered: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The state of a server with these parts.
    pub fn new(
        service: Arc<SyncService>,
        accounts: Arc<dyn AccountStore>,
        settings: ServerConfig,
        jwt_secret: Vec<u8>,
    ) -> Self {
        let window = Duration::from_secs(settings.rate_limit_window_secs);
        let attempts = settings.rate_limit_attempts;
        Self(Arc::new(Inner {
            service,
            accounts,
            login_limiter: RateLimiter::new(attempts, window),
            two_factor_limiter: RateLimiter::new(attempts, window),
            settings,
            jwt_secret,
            remembered: Mutex::new(HashMap::new()),
        }))
    }

    /// The current time in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.service.now()
    }

    /// Runs a blocking store call off the async workers.
    pub async fn accounts<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn AccountStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let accounts = self.accounts.clone();
        blocking(move || call(accounts.as_ref())).await
    }

    /// Whether the session passed a two-factor check within the remember window.
    pub(crate) fn two_factor_remembered(&self, token_hash: &[u8]) -> bool {
        let window = Duration::from_secs(self.settings.two_factor_remember_secs);
        if window.is_zero() {
            return false;
        }
        self.remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token_hash)
            .is_some_and(|at| at.elapsed() < window)
    }

    /// Remembers that the session passed a two-factor check now.
    pub(crate) fn remember_two_factor(&self, token_hash: &[u8]) {
        if self.settings.two_factor_remember_secs == 0 {
            return;
        }
        let window = Duration::from_secs(self.settings.two_factor_remember_secs);
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        remembered.retain(|_, at| at.elapsed() < window);
        remembered.insert(token_hash.to_vec(), Instant::now());
    }
}

/// Runs `call` on the blocking pool; a panic in it becomes a [`StoreError`].
pub async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|err| StoreError::Panicked(err.to_string()))?
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(ops::router())
        .merge(login::router())
        .merge(rocketchat::router())
        .merge(grommunio::router())
        .merge(tasks::router())
        .merge(admin::router())
        .with_state(state)
}
