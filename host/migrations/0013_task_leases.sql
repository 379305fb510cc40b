-- Tasks are leased by the replica that queued or runs them: it renews the lease while
-- the task is alive, and any replica marks a task whose lease ran out interrupted
-- (its owner died). Tasks from before this version have no lease: they are treated
-- as expired.
ALTER TABLE tasks ADD COLUMN owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_until INTEGER;
CREATE INDEX tasks_unfinished ON tasks (state, lease_until) WHERE state IN ('queued', 'running');

-- Secrets every replica must share (the grommunio cookie's signing key), drawn once
-- by whichever replica needs one first.
CREATE TABLE shared_secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
