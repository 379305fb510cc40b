-- Personal access tokens (Rocket.Chat's `users.generatePersonalAccessToken`) are
-- Rocket.Chat sessions that an account names, that do not expire, and that may skip
-- the two-factor check of the endpoints that ask for one, as Rocket.Chat keeps them
-- among an account's login tokens. And each session keeps when it last passed a
-- two-factor check, for the remember window, in the store where every replica sees it.
ALTER TABLE sessions ADD COLUMN name TEXT;
ALTER TABLE sessions ADD COLUMN bypass_two_factor INTEGER NOT NULL DEFAULT 0
    CHECK (bypass_two_factor IN (0, 1));
-- The token's last 6 characters, shown in lists (Rocket.Chat's `lastTokenPart`).
ALTER TABLE sessions ADD COLUMN last_part TEXT;
ALTER TABLE sessions ADD COLUMN two_factor_at INTEGER;

CREATE UNIQUE INDEX sessions_account_name ON sessions (account_id, name) WHERE name IS NOT NULL;
