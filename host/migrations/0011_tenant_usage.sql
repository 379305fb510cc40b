-- What each tenant's users hold, for the quota of attribute bytes: each ABAC pair
-- counts its key's bytes plus its value's. Kept by every apply in the same
-- transaction, so that checking the quota reads one row instead of the tenant's
-- users.
CREATE TABLE tenant_usage (
    tenant_id       INTEGER PRIMARY KEY,
    attribute_bytes INTEGER NOT NULL
);

INSERT INTO tenant_usage (tenant_id, attribute_bytes)
    SELECT tenant_id, sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)))
    FROM user_attributes GROUP BY tenant_id;

