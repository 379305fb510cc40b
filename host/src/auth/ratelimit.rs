//! Rate limits of login and two-factor attempts: a fixed number of attempts per key
//! (account name, client address) within a sliding window, in memory. An attempt is
//! counted when it begins ([`RateLimiter::attempt`], one lock for the check and the
//! count, so parallel guesses cannot all slip through) and forgiven when it succeeds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failed attempts per key and refuses more than `max` within `window`.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

/// Keys kept before old ones are swept.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    /// At most `max` failures per key within `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Begins an attempt of `key`: counts it and returns `Ok`, or refuses with the
    /// time to wait when `max` attempts are already counted within the window.
    ///
    /// # Errors
    /// The time `key` must wait.
    pub fn attempt(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut failures = self.lock();
        if let Some(recent) = failures.get_mut(key) {
            recent.retain(|&at| now.duration_since(at) < self.window);
            if recent.len() >= self.max {
                let oldest = recent.first().copied().unwrap_or(now);
                return Err(self.window.saturating_sub(now.duration_since(oldest)));
            }
        }
        if failures.len() >= SWEEP_AT {
            let window = self.window;
            failures.retain(|_, times| {
                times.retain(|&at| now.duration_since(at) < window);
                !times.is_empty()
            });
        }
        failures.entry(key.to_owned()).or_default().push(now);
        Ok(())
    }

    /// Forgets `key`'s failures (after a success).
    pub fn succeeded(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Instant>>> {
        // Plain maps of timestamps: a panic cannot leave one torn.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_max_attempts_until_the_window_passes() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.attempt("alice", start), Ok(()));
        }
        let wait = limiter.attempt("alice", start + Duration::from_secs(10));
        assert_eq!(wait, Err(Duration::from_secs(50)));
        assert_eq!(limiter.attempt("bob", start), Ok(()));
        assert_eq!(
            limiter.attempt("alice", start + Duration::from_secs(61)),
            Ok(())
        );
    }

    #[test]
    fn attempts_count_when_they_begin() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let start = Instant::now();
        assert!(limiter.attempt("bob", start).is_ok());
        assert!(limiter.attempt("bob", start).is_ok());
        assert_eq!(limiter.attempt("bob", start), Err(Duration::from_secs(60)));
        limiter.succeeded("bob");
        assert!(limiter.attempt("bob", start).is_ok());
    }
}
