-- One sync per tenant at a time across every replica: the replica running a tenant's
-- sync holds its row, renewed with its task leases; a row whose lease ran out (its
-- replica died) may be taken.
CREATE TABLE tenant_runs (
    tenant_id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    task_id INTEGER,
    lease_until INTEGER NOT NULL
) STRICT;

-- A cancel asked of a running task, read by the replica running it.
ALTER TABLE tasks ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;

-- The last schedule period each tenant's background sync was fired for: whichever
-- replica moves it on fires the period's sync, so that a period fires once over every
-- replica.
CREATE TABLE schedule_fires (
    tenant_id INTEGER PRIMARY KEY,
    period_start INTEGER NOT NULL
) STRICT;
