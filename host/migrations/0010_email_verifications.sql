-- An email address waiting for proof: two-factor codes go to an address only once the
-- code sent there has come back (one outstanding per account, stored hashed, used once).

CREATE TABLE email_verifications (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    address    TEXT    NOT NULL,
    code_hash  BLOB    NOT NULL,
    expires_at INTEGER NOT NULL
);
