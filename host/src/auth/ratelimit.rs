//! Rate limits of login and two-factor attempts: a fixed number of attempts per key
//! (account name and client address, a client address, an account) within a window,
//! counted in the store, so that every replica counts the same attempts: N replicas
//! allow what one allows.
//!
//! An attempt is counted when it begins ([`RateLimiter::attempt`], the check and the
//! count one step in the store, so parallel guesses cannot all slip through). A
//! success gives its own count back ([`RateLimiter::forgive`]) or clears the key
//! ([`RateLimiter::succeeded`]); only failures remain. The store drops expired
//! attempts and keeps at most [`crate::store::MAX_ATTEMPTS`].

use std::sync::Arc;
use std::time::Duration;

use crate::store::{AccountStore, AttemptId, StoreError, Timestamp};

/// Counts attempts per key of one scope and refuses more than `max` within `window`.
#[derive(Clone)]
pub struct RateLimiter {
    scope: &'static str,
    max: u32,
    window: Duration,
    store: Arc<dyn AccountStore>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("scope", &self.scope)
            .field("max", &self.max)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// One counted attempt, to give back when it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt(AttemptId);

impl RateLimiter {
    /// At most `max` attempts per key of `scope` within `window`, counted in `store`.
    pub fn new(
        scope: &'static str,
        max: usize,
        window: Duration,
        store: Arc<dyn AccountStore>,
    ) -> Self {
        Self {
            scope,
            max: u32::try_from(max).unwrap_or(u32::MAX),
            window,
            store,
        }
    }

    /// Begins an attempt of `key` at `now` (ms): counts it, or refuses with the time
    /// to wait when `max` attempts are counted within the window already.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot count (the caller refuses the attempt:
    /// an uncounted guess is never let through).
    pub async fn attempt(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Result<Result<Attempt, Duration>, StoreError> {
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        let (store, scope, key, max) = (self.store.clone(), self.scope, key.to_owned(), self.max);
        let counted = blocking(move || {
            store.count_attempt(scope, &key, max, now.saturating_add(window_ms), now)
        })
        .await?;
        Ok(counted
            .map(Attempt)
            .map_err(|wait_ms| Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))))
    }

    /// Gives back `attempt`: it succeeded. A store that fails leaves it counted (on
    /// the safe side), and says so in the log.
    pub async fn forgive(&self, attempt: Attempt) {
        let store = self.store.clone();
        if let Err(err) = blocking(move || store.forgive_attempt(attempt.0)).await {
            tracing::warn!(error = %err, scope = self.scope, "cannot give a successful attempt back");
        }
    }

    /// Forgets `key`'s attempts (after a success).
    pub async fn succeeded(&self, key: &str) {
        let (store, scope, key) = (self.store.clone(), self.scope, key.to_owned());
        if let Err(err) = blocking(move || store.clear_attempts(scope, &key)).await {
            tracing::warn!(error = %err, scope = self.scope, "cannot clear the attempts of a success");
        }
    }
}

/// Runs a store call off the async workers.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|err| StoreError::Panicked(err.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn limiter(store: &Arc<SqliteStore>, scope: &'static str, max: usize) -> RateLimiter {
        RateLimiter::new(scope, max, Duration::from_secs(60), store.clone())
    }

    #[tokio::test]
    async fn refuses_after_max_attempts_until_the_window_passes() {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let limiter = limiter(&store, "login", 3);
        let start = 1_000_000;
        for _ in 0..3 {
            assert!(limiter.attempt("alice", start).await.unwrap().is_ok());
        }
        let wait = limiter.attempt("alice", start + 10_000).await.unwrap();
        assert_eq!(wait, Err(Duration::from_secs(50)));
        assert!(limiter.attempt("bob", start).await.unwrap().is_ok());
        assert!(
            limiter
                .attempt("alice", start + 61_000)
                .await
                .unwrap()
                .is_ok()
        );
    }

    #[tokio::test]
    async fn successes_give_their_count_back_and_scopes_are_apart() {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let limiter = limiter(&store, "address", 2);
        let other = self::limiter(&store, "account", 2);
        let now = 5_000;
        for _ in 0..50 {
            let ok = limiter.attempt("10.0.0.1", now).await.unwrap().unwrap();
            limiter.forgive(ok).await;
        }
        // Failures still count, and a forgiven attempt leaves the others counted.
        limiter.attempt("10.0.0.1", now).await.unwrap().unwrap();
        let ok = limiter.attempt("10.0.0.1", now).await.unwrap().unwrap();
        limiter.forgive(ok).await;
        limiter.attempt("10.0.0.1", now).await.unwrap().unwrap();
        assert!(limiter.attempt("10.0.0.1", now).await.unwrap().is_err());
        // The same key in another scope is another count.
        assert!(other.attempt("10.0.0.1", now).await.unwrap().is_ok());
        limiter.succeeded("10.0.0.1").await;
        assert!(limiter.attempt("10.0.0.1", now).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn two_limiters_on_one_store_share_their_counts() {
        // Two replicas' limiters over one store: together they allow what one allows.
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let (one, two) = (limiter(&store, "login", 4), limiter(&store, "login", 4));
        let now = 7_000;
        for limiter in [&one, &two, &one, &two] {
            assert!(limiter.attempt("alice", now).await.unwrap().is_ok());
        }
        assert!(one.attempt("alice", now).await.unwrap().is_err());
        assert!(two.attempt("alice", now).await.unwrap().is_err());
    }
}
