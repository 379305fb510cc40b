-- Per-tenant sync state and the history of sync runs.

CREATE TABLE sync_state (
    tenant_id         INTEGER PRIMARY KEY,
    -- The directory's own mark (generalized time or USN), compared by the directory.
    high_water_mark   TEXT,
    last_full_sync_at INTEGER,
    last_success_at   INTEGER
);

CREATE TABLE sync_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL,
    run_id      TEXT    NOT NULL,
    -- full, incremental, targeted.
    mode        TEXT    NOT NULL,
    dry_run     INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    -- succeeded, failed, refused, cancelled.
    outcome     TEXT    NOT NULL,
    -- JSON summary (counts, error).
    summary     TEXT    NOT NULL
);

CREATE INDEX sync_runs_tenant ON sync_runs (tenant_id, id);
