-- What each task was asked to do (the sync request, JSON), so that another replica can
-- run it again when the replica running it dies, and how many times that happened
-- (a task is taken over a bounded number of times). NULL for tasks from before this
-- version: those are marked interrupted instead, as before.
ALTER TABLE tasks ADD COLUMN request TEXT;
ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
