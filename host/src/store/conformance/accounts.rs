//! Checks of the accounts' store: secrets shared by replicas, and rate-limited attempts.

use super::Backend;

pub(crate) fn the_first_shared_secret_stored_is_everyones(store: &dyn Backend) {
    assert_eq!(store.shared_secret("jwt", b"first", 1).unwrap(), b"first");
    assert_eq!(store.shared_secret("jwt", b"second", 2).unwrap(), b"first");
    assert_eq!(
        store.shared_secret("other", b"second", 2).unwrap(),
        b"second"
    );
}

pub(crate) fn attempts_are_counted_per_scope_and_key_until_they_expire(store: &dyn Backend) {
    let count = |scope: &str, key: &str, now: i64| {
        store
            .count_attempt(scope, key, 2, now + 1_000, now)
            .unwrap()
    };
    let first = count("login", "alice", 0).unwrap();
    count("login", "alice", 10).unwrap();
    // The third within the window is refused, with the wait until the oldest expires.
    assert_eq!(count("login", "alice", 400), Err(600));
    assert!(count("two-factor", "alice", 400).is_ok());
    assert!(count("login", "bob", 400).is_ok());
    // A forgiven attempt frees its place; a cleared key all of them.
    store.forgive_attempt(first).unwrap();
    assert!(count("login", "alice", 500).is_ok());
    assert!(count("login", "alice", 500).is_err());
    store.clear_attempts("login", "alice").unwrap();
    assert!(count("login", "alice", 500).is_ok());
    // Once expired, they count no more.
    assert!(count("login", "alice", 1_500).is_ok());
    assert!(count("login", "alice", 1_500).is_ok());
}

pub(crate) fn attempt_keys_may_hold_any_character(store: &dyn Backend) {
    // The API joins a key's parts with NUL (name, then address).
    let key = "alice\u{0}192.0.2.1";
    assert!(
        store
            .count_attempt("login", key, 1, 1_000, 0)
            .unwrap()
            .is_ok()
    );
    assert!(
        store
            .count_attempt("login", key, 1, 1_000, 0)
            .unwrap()
            .is_err()
    );
    assert!(
        store
            .count_attempt("login", "alice\u{0}192.0.2.2", 1, 1_000, 0)
            .unwrap()
            .is_ok()
    );
    store.clear_attempts("login", key).unwrap();
    assert!(
        store
            .count_attempt("login", key, 1, 1_000, 0)
            .unwrap()
            .is_ok()
    );
}
