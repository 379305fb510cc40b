-- Admin accounts, their sessions, and background tasks.

CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The id clients see (Rocket.Chat's `userId`): random, never reused.
    public_id      TEXT    NOT NULL UNIQUE,
    username       TEXT    NOT NULL UNIQUE,
    -- PHC string (argon2id).
    password_hash  TEXT    NOT NULL,
    -- NULL: system-wide; otherwise the only tenant the account may see.
    tenant_id      INTEGER,
    -- JSON array of permission names.
    permissions    TEXT    NOT NULL,
    -- TOTP secret (raw bytes) once enrolment started; enabled after a first valid code.
    totp_secret    BLOB,
    totp_enabled   INTEGER NOT NULL DEFAULT 0 CHECK (totp_enabled IN (0, 1)),
    -- The last accepted TOTP time step: a code is never accepted twice.
    totp_last_step INTEGER,
    created_at     INTEGER NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the token: a stolen database holds no usable token.
    token_hash  BLOB    PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- rocketchat (X-Auth-Token) or grommunio (JWT cookie id).
    dialect     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE INDEX sessions_account ON sessions (account_id);

CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL,
    -- What runs: ldap.downsync, ldap.syncNow, abac.usersSync, schedule.
    command     TEXT    NOT NULL,
    -- queued, running, completed, error, cancelled, interrupted.
    state       TEXT    NOT NULL,
    message     TEXT    NOT NULL DEFAULT '',
    -- JSON object of the parameters asked for.
    params      TEXT    NOT NULL,
    -- JSON result once finished.
    result      TEXT,
    -- The account that asked (NULL for the scheduler).
    account_id  INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE INDEX tasks_tenant ON tasks (tenant_id, id);
CREATE INDEX tasks_state ON tasks (state);
