-- Users and their ABAC attributes.
--
-- Every row carries its tenant: every query filters by tenant_id, and the unique
-- constraints are per tenant. Timestamps are milliseconds since the Unix epoch (UTC).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL,
    username      TEXT    NOT NULL,
    email         TEXT,
    display_name  TEXT,
    language      TEXT,
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    -- 'ldap' or 'local'; no CHECK so that a later source needs no table rebuild.
    source        TEXT    NOT NULL,
    -- NULL for local users; UNIQUE lets any number of NULLs through.
    ldap_id       TEXT,
    ldap_dn       TEXT,
    avatar        BLOB,
    avatar_sha256 TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CONSTRAINT users_tenant_username UNIQUE (tenant_id, username),
    CONSTRAINT users_tenant_ldap_id UNIQUE (tenant_id, ldap_id)
);

-- Listing a tenant's users in id order (keyset pagination) and counting them.
CREATE INDEX users_tenant_id ON users (tenant_id, id);

-- Targeted syncs name users by email, compared case-insensitively.
CREATE INDEX users_tenant_email ON users (tenant_id, email COLLATE NOCASE);

-- One row per (user, key, value): ABAC values are sets.
CREATE TABLE user_attributes (
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The user's tenant, copied so that "users of tenant T with key K (and value V)"
    -- is one index lookup.
    tenant_id INTEGER NOT NULL,
    key       TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (user_id, key, value)
) WITHOUT ROWID;

CREATE INDEX user_attributes_tenant_key_value ON user_attributes (tenant_id, key, value);
