-- Two-factor codes by email: the account's address, whether the method is on, and the
-- one code outstanding per account (stored hashed, used once).

ALTER TABLE accounts ADD COLUMN email TEXT;
ALTER TABLE accounts ADD COLUMN email_2fa INTEGER NOT NULL DEFAULT 0 CHECK (email_2fa IN (0, 1));

CREATE TABLE email_codes (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash  BLOB    NOT NULL,
    expires_at INTEGER NOT NULL
);
