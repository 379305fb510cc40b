//! The PostgreSQL store against a real server: one per test binary, a fresh database
//! per test.

use super::{DEFAULT_MAX_CONNECTIONS, PostgresOptions, PostgresStore};
use abacsync_testkit::postgres::Postgres;

/// A store on a new, empty database of the binary's server.
fn fresh() -> PostgresStore {
    let server = Postgres::shared().unwrap_or_else(|err| panic!("PostgreSQL: {err}"));
    let url = server.fresh_database().expect("a fresh database");
    PostgresStore::open(&PostgresOptions {
        url,
        password: None,
        max_connections: DEFAULT_MAX_CONNECTIONS,
        ca_file: None,
    })
    .expect("the store opens")
}

crate::store::conformance::suite!(fresh());

/// Two stores on one database, as two replicas have.
fn two_replicas() -> (PostgresStore, PostgresStore) {
    let server = Postgres::shared().unwrap_or_else(|err| panic!("PostgreSQL: {err}"));
    let url = server.fresh_database().expect("a fresh database");
    let open = || {
        PostgresStore::open(&PostgresOptions {
            url: url.clone(),
            password: None,
            max_connections: 2,
            ca_file: None,
        })
        .expect("the store opens")
    };
    // The second finds the schema the first migrated.
    (open(), open())
}

fn account(store: &PostgresStore) -> crate::store::Account {
    use crate::store::{AccountStore, NewAccount};
    store
        .create_account(
            &NewAccount {
                public_id: "pub-1".into(),
                username: "admin".into(),
                password_hash: "$argon2id$…".into(),
                tenant: None,
                permissions: Default::default(),
                email: None,
            },
            1,
        )
        .unwrap()
}

#[test]
fn a_totp_step_used_on_one_replica_is_refused_on_another() {
    use crate::store::AccountStore;
    let (a, b) = two_replicas();
    let admin = account(&a);
    a.set_totp(admin.id, Some(b"secret"), true).unwrap();
    assert!(a.use_totp_step(admin.id, 1000).unwrap());
    assert!(!b.use_totp_step(admin.id, 1000).unwrap(), "replayed on B");
    assert!(
        !b.use_totp_step(admin.id, 999).unwrap(),
        "an older step on B"
    );
    assert!(b.use_totp_step(admin.id, 1001).unwrap());
}

#[test]
fn a_session_made_on_one_replica_is_seen_and_ended_on_another() {
    use crate::store::{AccountStore, Dialect};
    let (a, b) = two_replicas();
    let admin = account(&a);
    a.create_session(b"token-hash", admin.id, Dialect::RocketChat, 10, 1_000)
        .unwrap();
    let (found, _) = b
        .session_account(b"token-hash", Dialect::RocketChat, 20)
        .unwrap()
        .expect("the session on B");
    assert_eq!(found.id, admin.id);
    // Not in the other dialect, not once expired.
    assert!(
        b.session_account(b"token-hash", Dialect::Grommunio, 20)
            .unwrap()
            .is_none()
    );
    assert!(
        b.session_account(b"token-hash", Dialect::RocketChat, 1_000)
            .unwrap()
            .is_none()
    );
    assert!(b.delete_session(b"token-hash").unwrap());
    assert!(
        a.session_account(b"token-hash", Dialect::RocketChat, 20)
            .unwrap()
            .is_none()
    );
}

#[test]
fn concurrent_rate_limit_checks_never_pass_more_than_the_allowance() {
    use crate::store::AccountStore;
    let (a, b) = two_replicas();
    let passed: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = [&a, &b, &a, &b]
            .into_iter()
            .map(|store| {
                scope.spawn(move || {
                    (0..10)
                        .filter(|_| {
                            store
                                .count_attempt("login", "guess", 7, 10_000, 1)
                                .unwrap()
                                .is_ok()
                        })
                        .count()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .sum()
    });
    assert_eq!(passed, 7);
}

#[test]
fn a_migrated_database_opens_again_and_a_newer_one_is_refused() {
    use crate::store::StoreError;
    let server = Postgres::shared().unwrap_or_else(|err| panic!("PostgreSQL: {err}"));
    let url = server.fresh_database().unwrap();
    let options = PostgresOptions {
        url: url.clone(),
        password: None,
        max_connections: 1,
        ca_file: None,
    };
    drop(PostgresStore::open(&options).unwrap());
    drop(PostgresStore::open(&options).unwrap());
    let database = url.rsplit('/').next().unwrap();
    server
        .psql(database, "INSERT INTO abacsync_schema VALUES (999, 0)")
        .unwrap();
    let err = PostgresStore::open(&options).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found: 999, .. }),
        "{err}"
    );
}

#[test]
fn an_unreachable_server_is_named_without_its_password() {
    use crate::store::StoreError;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PostgresStore::open(&PostgresOptions {
        url: format!("postgres://abacsync:hunter2@127.0.0.1:{port}/abacsync"),
        password: None,
        max_connections: 1,
        ca_file: None,
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}/abacsync")),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_wrong_password_is_refused_as_such() {
    let server = Postgres::shared().unwrap_or_else(|err| panic!("PostgreSQL: {err}"));
    let url = server
        .fresh_database()
        .unwrap()
        .replace(abacsync_testkit::postgres::PASSWORD, "wrong");
    let err = PostgresStore::open(&PostgresOptions {
        url,
        password: None,
        max_connections: 1,
        ca_file: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("password"), "{err}");
}

#[test]
fn two_batches_written_at_once_with_one_name_in_both_commit_one_and_refuse_the_other_whole() {
    use crate::store::testing::{T1, cause, fields};
    use crate::store::{Change, StoreError, UserStore};
    // A sync writes two batches side by side (`concurrent_applies`); when both hold a
    // name (a user created behind the planner's back), the one that waits on the
    // other's name must end as a conflict with nothing of it written, not as a
    // deadlock or a half-written batch, so that the sync retries it user by user.
    let store = fresh();
    assert_eq!(store.concurrent_applies(), 2);
    let batch = |prefix: &str| -> Vec<Change> {
        let mut names: Vec<String> = (0..2_000).map(|n| format!("{prefix}{n}")).collect();
        names.insert(1_000, "shared".into());
        names
            .into_iter()
            .map(|name| {
                let mut fields = fields(&name);
                // Distinct directory ids: only the name is taken twice.
                fields.ldap_id = Some(format!("{prefix}-{name}"));
                Change::Create {
                    fields,
                    avatar: None,
                    mapped: None,
                }
            })
            .collect()
    };
    let (a, b) = (batch("a"), batch("b"));
    let results = std::thread::scope(|scope| {
        let first = scope.spawn(|| store.apply(T1, &a, &cause()));
        let second = scope.spawn(|| store.apply(T1, &b, &cause()));
        [first.join().unwrap(), second.join().unwrap()]
    });
    let written: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(
        written.iter().filter(|ok| **ok).count(),
        1,
        "exactly one batch commits: {results:?}"
    );
    let refused = results.iter().find_map(|result| result.as_ref().err());
    assert!(
        matches!(refused, Some(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(store.count_users(T1).unwrap(), 2_001);
}

#[test]
fn tls_is_spoken_when_the_url_asks_for_it_and_the_servers_certificate_is_checked() {
    use super::Statements;
    // Its own server: the shared one speaks plain TCP only.
    let server = abacsync_testkit::postgres::Postgres::start_tls()
        .unwrap_or_else(|err| panic!("PostgreSQL: {err}"));
    server.create_database("tls").unwrap();
    let url = server.url("tls");
    let ca = server.ca_file().expect("a CA").to_owned();
    let open = |url: String, ca_file: Option<std::path::PathBuf>| {
        PostgresStore::open(&PostgresOptions {
            url,
            password: None,
            max_connections: 2,
            ca_file,
        })
    };
    let speaks_tls = |store: &PostgresStore| -> bool {
        store
            .with(async |conn| {
                let row = conn
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .await?;
                Ok(row.try_get::<_, bool>(0)?)
            })
            .unwrap()
    };
    // The server's CA named in the URL, as libpq takes it, or in [store] ca_file.
    let in_url = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        ca.display().to_string().replace('/', "%2F")
    );
    assert!(speaks_tls(&open(in_url, None).unwrap()));
    let configured = open(format!("{url}?sslmode=require"), Some(ca.clone())).unwrap();
    assert!(speaks_tls(&configured));
    // Not asked for: plain, as before.
    assert!(!speaks_tls(&open(url.clone(), None).unwrap()));
    // A certificate from a CA not trusted here is refused, never used unverified.
    let err = open(format!("{url}?sslmode=verify-full"), None).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(
        !err.to_string()
            .contains(abacsync_testkit::postgres::PASSWORD)
    );
    let err = open(
        format!("{url}?sslmode=require"),
        Some(std::path::PathBuf::from("/nonexistent/ca.pem")),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
