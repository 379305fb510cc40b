-- Where a tenant's incremental syncs continue from: the server the mark was taken on
-- (Active Directory's USNs are a server's own), and an RFC 4533 sync cookie.
ALTER TABLE sync_state ADD COLUMN mark_origin TEXT;
ALTER TABLE sync_state ADD COLUMN sync_cookie BYTEA;

-- Who watches a tenant's directory (a persistent search, `watch = true`): one replica
-- at a time, under a lease it renews.
CREATE TABLE watchers (
    tenant_id   BIGINT PRIMARY KEY,
    owner       TEXT   NOT NULL,
    lease_until BIGINT NOT NULL
);
