//! Schema migrations: the SQL files of `host/migrations/`, embedded in the binary and
//! applied in order, each in its own transaction. The schema version is the
//! database's `PRAGMA user_version` (0 for a new file), which SQLite writes within the
//! transaction: a failed migration leaves the previous version and schema.

use rusqlite::{Connection, TransactionBehavior};

use crate::store::StoreError;

/// One schema migration.
#[derive(Clone, Copy)]
pub(super) struct Migration {
    /// The schema version after it; versions count up from 1 without gaps.
    pub(super) version: u32,
    /// The statements.
    pub(super) sql: &'static str,
}

/// Every migration, in order. Append only: a released migration never changes.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../../../migrations/0001_users.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../../../migrations/0002_audit.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../../../migrations/0003_sync.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../../../migrations/0004_accounts_tasks.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../../../migrations/0005_catalog.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../../../migrations/0006_email_codes.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../../../migrations/0007_mapped_digest.sql"),
    },
    Migration {
        version: 8,
        sql: include_str!("../../../migrations/0008_audit_created_attributes.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("../../../migrations/0009_user_attribute_sets.sql"),
    },
    Migration {
        version: 10,
        sql: include_str!("../../../migrations/0010_email_verifications.sql"),
    },
    Migration {
        version: 11,
        sql: include_str!("../../../migrations/0011_tenant_usage.sql"),
    },
    Migration {
        version: 12,
        sql: include_str!("../../../migrations/0012_personal_access_tokens.sql"),
    },
    Migration {
        version: 13,
        sql: include_str!("../../../migrations/0013_task_leases.sql"),
    },
    Migration {
        version: 14,
        sql: include_str!("../../../migrations/0014_rate_limits.sql"),
    },
    Migration {
        version: 15,
        sql: include_str!("../../../migrations/0015_tenant_runs.sql"),
    },
    Migration {
        version: 16,
        sql: include_str!("../../../migrations/0016_catalog_generation.sql"),
    },
    Migration {
        version: 17,
        sql: include_str!("../../../migrations/0017_task_requests.sql"),
    },
    Migration {
        version: 18,
        sql: include_str!("../../../migrations/0018_plugin_health.sql"),
    },
    Migration {
        version: 19,
        sql: include_str!("../../../migrations/0019_change_tracking.sql"),
    },
    Migration {
        version: 20,
        sql: include_str!("../../../migrations/0020_task_results.sql"),
    },
];

/// Brings the database up to the newest of `migrations`; returns how many ran.
///
/// Each migration re-reads the version inside its `IMMEDIATE` transaction, so two
/// processes opening a new file at once do not both run it.
pub(super) fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<u32, StoreError> {
    let known = migrations.last().map_or(0, |m| m.version);
    let mut ran = 0;
    for migration in migrations {
        let failed = |cause: rusqlite::Error| StoreError::Migration {
            version: migration.version,
            cause: cause.into(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let found = user_version(&tx).map_err(failed)?;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        if found >= migration.version {
            continue;
        }
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", migration.version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        ran += 1;
    }
    Ok(ran)
}

/// The schema version of the database.
pub(super) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTING: &[Migration] = &[
        Migration {
            version: 1,
            sql: "CREATE TABLE runs (n INTEGER); INSERT INTO runs VALUES (1);",
        },
        Migration {
            version: 2,
            sql: "INSERT INTO runs VALUES (2);",
        },
    ];

    fn runs(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT n FROM runs ORDER BY n").unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn versions_count_up_from_one() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1);
        }
    }

    #[test]
    fn each_migration_runs_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, &COUNTING[..1]).unwrap(), 1);
        assert_eq!(migrate(&mut conn, COUNTING).unwrap(), 1);
        assert_eq!(migrate(&mut conn, COUNTING).unwrap(), 0);
        assert_eq!(runs(&conn), [1, 2]);
        assert_eq!(user_version(&conn).unwrap(), 2);
    }

    #[test]
    fn the_real_migrations_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        let newest = MIGRATIONS.last().unwrap().version;
        assert_eq!(migrate(&mut conn, MIGRATIONS).unwrap(), newest);
        assert_eq!(migrate(&mut conn, MIGRATIONS).unwrap(), 0);
        assert_eq!(user_version(&conn).unwrap(), newest);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let err = migrate(&mut conn, MIGRATIONS).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooNew { found: 99, known } if known == MIGRATIONS.last().unwrap().version
            ),
            "{err}"
        );
    }

    #[test]
    fn a_failed_migration_keeps_the_previous_version() {
        const BROKEN: &[Migration] = &[
            COUNTING[0],
            Migration {
                version: 2,
                sql: "INSERT INTO runs VALUES (2); INSERT INTO nowhere VALUES (1);",
            },
        ];
        let mut conn = Connection::open_in_memory().unwrap();
        let err = migrate(&mut conn, BROKEN).unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version: 2, .. }),
            "{err}"
        );
        assert_eq!(user_version(&conn).unwrap(), 1);
        assert_eq!(runs(&conn), [1]);
    }

    /// Migration 9 moves each user's values into its row and keeps the same pairs in
    /// the lookup table: two users with values, one without, two tenants.
    #[test]
    fn user_values_move_into_the_row() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &MIGRATIONS[..8]).unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, tenant_id, username, source, created_at, updated_at) VALUES \
                 (1, 1, 'ann', 'ldap', 0, 0), (2, 1, 'bob', 'ldap', 0, 0), \
                 (3, 2, 'cy', 'local', 0, 0); \
             INSERT INTO user_attributes (user_id, tenant_id, key, value) VALUES \
                 (1, 1, 'roles', 'writer'), (1, 1, 'roles', 'reader'), \
                 (1, 1, 'dept', 'sales'), (3, 2, 'dept', 'ops \"x\"');",
        )
        .unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();

        let set = |id: i64| -> crate::plugin::model::AbacAttributes {
            let json: String = conn
                .query_row("SELECT attributes FROM users WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .unwrap();
            serde_json::from_str(&json).unwrap()
        };
        let pairs = |pairs: &[(&str, &str)]| -> crate::plugin::model::AbacAttributes {
            let mut set = crate::plugin::model::AbacAttributes::new();
            for (key, value) in pairs {
                set.entry((*key).to_owned())
                    .or_default()
                    .insert((*value).to_owned());
            }
            set
        };
        assert_eq!(
            set(1),
            pairs(&[("dept", "sales"), ("roles", "reader"), ("roles", "writer")])
        );
        assert_eq!(set(2), pairs(&[]));
        assert_eq!(set(3), pairs(&[("dept", "ops \"x\"")]));

        let mut stmt = conn
            .prepare(
                "SELECT tenant_id, key, value, user_id FROM user_attributes \
                 ORDER BY tenant_id, key, value, user_id",
            )
            .unwrap();
        let rows: Vec<(i64, String, String, i64)> = stmt
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [
            (1, "dept", "sales", 1),
            (1, "roles", "reader", 1),
            (1, "roles", "writer", 1),
            (2, "dept", "ops \"x\"", 3),
        ]
        .map(|(t, k, v, u)| (t, k.to_owned(), v.to_owned(), u));
        assert_eq!(rows, expected);
    }
}
