-- Failed (and under way) login and two-factor attempts, counted in the store so that
-- every replica sees the same counts: N replicas allow what one allows.
CREATE TABLE rate_limit_attempts (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX rate_limit_attempts_key ON rate_limit_attempts (scope, key, expires_at);
CREATE INDEX rate_limit_attempts_expiry ON rate_limit_attempts (expires_at);
