-- A task's per-user results, in pages of a few thousand (a JSON array each), beside
-- its report: a sync of a million users writes a couple of hundred rows here, not one
-- row holding its whole report. The pages go with their task.
CREATE TABLE task_results (
    task_id BIGINT  NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    -- The number of the page's first result, from 0.
    first   BIGINT  NOT NULL,
    count   INTEGER NOT NULL,
    items   TEXT    NOT NULL,
    PRIMARY KEY (task_id, first)
);
