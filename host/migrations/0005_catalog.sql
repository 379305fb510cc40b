-- Plugins uploaded through the API, their assignments to tenants (the history is the
-- list of versions; the newest row is current), tenants created through the API, and
-- schedule overrides.

CREATE TABLE plugins (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256      TEXT    NOT NULL,
    -- NULL: uploaded by a system-wide account, visible to all; else the owner tenant.
    tenant_id   INTEGER,
    label       TEXT    NOT NULL,
    -- What the plugin says of itself.
    name        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    component   BLOB    NOT NULL,
    uploaded_by INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL
);

CREATE UNIQUE INDEX plugins_sha256 ON plugins (sha256, coalesce(tenant_id, -1));

CREATE TABLE tenant_plugins (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL,
    plugin_id   INTEGER NOT NULL REFERENCES plugins (id),
    -- JSON object of setting → value.
    settings    TEXT    NOT NULL,
    assigned_by INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    assigned_at INTEGER NOT NULL,
    -- Why: assign, rollback.
    reason      TEXT    NOT NULL
);

CREATE INDEX tenant_plugins_tenant ON tenant_plugins (tenant_id, id);

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY,
    -- The tenant's settings as JSON (the configuration file's schema), secrets included.
    config      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE schedules (
    tenant_id     INTEGER PRIMARY KEY,
    -- NULL: no background syncs (overrides the tenant's sync_interval_secs).
    interval_secs INTEGER,
    updated_at    INTEGER NOT NULL
);
