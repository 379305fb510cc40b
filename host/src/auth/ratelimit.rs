//! Rate limits of login and two-factor attempts: a fixed number of failures per key
//! (account name and client address, a client address, an account) within a sliding
//! window, in memory.
//!
//! An attempt is counted when it begins ([`RateLimiter::attempt`], one lock for the
//! check and the count, so parallel guesses cannot all slip through). A success gives
//! its own count back ([`RateLimiter::forgive`]) or clears the key
//! ([`RateLimiter::succeeded`]); only failures remain. The cost of an attempt does not
//! grow with the number of keys: expired failures are dropped oldest first, a few per
//! attempt, and at most [`MAX_FAILURES`] are kept at all (the oldest go first).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures kept over all keys; beyond, the oldest are forgotten first, so a flood
/// of distinct names costs memory and time bounded by this.
pub const MAX_FAILURES: usize = 100_000;

/// Expired attempts of other keys dropped by one attempt at most.
const SWEEP_PER_ATTEMPT: usize = 8;

/// Counts failed attempts per key and refuses more than `max` within `window`.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each key's counted attempts, oldest first (at most `max` plus those under way).
    keys: HashMap<String, VecDeque<Instant>>,
    /// Every counted attempt in the order counted: what expires next is in front.
    order: VecDeque<(Instant, String)>,
}

impl State {
    /// Drops the attempt `order` holds in front from its key.
    fn pop_oldest(&mut self) {
        let Some((at, key)) = self.order.pop_front() else {
            return;
        };
        if let Some(times) = self.keys.get_mut(&key) {
            // Forgiven attempts are gone from the key already.
            if let Some(i) = times.iter().position(|&t| t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                self.keys.remove(&key);
            }
        }
    }
}

impl RateLimiter {
    /// At most `max` failures per key within `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            state: Mutex::new(State::default()),
        }
    }

    /// Begins an attempt of `key`: counts it and returns the instant it was counted
    /// at (for [`RateLimiter::forgive`]), or refuses with the time to wait when `max`
    /// attempts are already counted within the window.
    ///
    /// # Errors
    /// The time `key` must wait.
    pub fn attempt(&self, key: &str, now: Instant) -> Result<Instant, Duration> {
        let mut state = self.lock();
        self.expire(&mut state, key, now);
        if let Some(recent) = state.keys.get(key)
            && recent.len() >= self.max
        {
            let oldest = recent.front().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        while state.order.len() >= MAX_FAILURES {
            state.pop_oldest();
        }
        state.keys.entry(key.to_owned()).or_default().push_back(now);
        state.order.push_back((now, key.to_owned()));
        Ok(now)
    }

    /// Whether `key` has `max` attempts counted within the window, without counting one.
    pub fn is_limited(&self, key: &str, now: Instant) -> bool {
        let mut state = self.lock();
        self.expire(&mut state, key, now);
        state
            .keys
            .get(key)
            .is_some_and(|recent| recent.len() >= self.max)
    }

    /// Gives back the attempt of `key` counted at `at`: it succeeded.
    pub fn forgive(&self, key: &str, at: Instant) {
        let mut state = self.lock();
        if let Some(times) = state.keys.get_mut(key) {
            if let Some(i) = times.iter().rposition(|&t| t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                state.keys.remove(key);
            }
        }
    }

    /// Forgets `key`'s failures (after a success).
    pub fn succeeded(&self, key: &str) {
        self.lock().keys.remove(key);
    }

    /// Attempts counted and still in the window, over all keys.
    pub fn len(&self) -> usize {
        self.lock().keys.values().map(VecDeque::len).sum()
    }

    /// Whether no attempt is counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops `key`'s expired attempts, and at most [`SWEEP_PER_ATTEMPT`] of the
    /// others, oldest first: the cost of one attempt is bounded, and since every
    /// attempt sweeps more than it counts, expired ones do not pile up.
    fn expire(&self, state: &mut State, key: &str, now: Instant) {
        let live = |at: &Instant| now.duration_since(*at) < self.window;
        if let Some(times) = state.keys.get_mut(key) {
            while times.front().is_some_and(|at| !live(at)) {
                times.pop_front();
            }
            if times.is_empty() {
                state.keys.remove(key);
            }
        }
        for _ in 0..SWEEP_PER_ATTEMPT {
            match state.order.front() {
                Some((at, _)) if !live(at) => state.pop_oldest(),
                _ => break,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain maps of timestamps: a panic cannot leave one torn.
        self.state
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
            assert!(limiter.attempt("alice", start).is_ok());
        }
        let wait = limiter.attempt("alice", start + Duration::from_secs(10));
        assert_eq!(wait, Err(Duration::from_secs(50)));
        assert!(limiter.attempt("bob", start).is_ok());
        assert!(
            limiter
                .attempt("alice", start + Duration::from_secs(61))
                .is_ok()
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

    #[test]
    fn successes_give_their_count_back() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..50 {
            let at = limiter
                .attempt("10.0.0.1", start + Duration::from_millis(i))
                .unwrap();
            limiter.forgive("10.0.0.1", at);
        }
        assert!(limiter.is_empty());
        // Failures still count, and a forgiven attempt leaves the others counted.
        let failed = limiter.attempt("10.0.0.1", start).unwrap();
        let ok = limiter.attempt("10.0.0.1", start).unwrap();
        limiter.forgive("10.0.0.1", ok);
        assert!(!limiter.is_limited("10.0.0.1", start));
        limiter.attempt("10.0.0.1", start).unwrap();
        assert!(limiter.is_limited("10.0.0.1", start));
        assert_eq!(failed, start);
    }

    #[test]
    fn a_flood_of_names_stays_bounded_and_expires() {
        let limiter = RateLimiter::new(10, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..MAX_FAILURES + 5_000 {
            limiter.attempt(&format!("user:{i}"), start).unwrap();
        }
        assert_eq!(limiter.len(), MAX_FAILURES);
        // A minute on, everything has expired: later attempts sweep it away a few at
        // a time, and none of them counts an expired failure.
        let later = start + Duration::from_secs(61);
        for i in 0..MAX_FAILURES / 4 {
            limiter.attempt(&format!("other:{i}"), later).unwrap();
            assert!(!limiter.is_limited(&format!("user:{i}"), later));
        }
        assert_eq!(limiter.len(), MAX_FAILURES / 4);
    }
}
