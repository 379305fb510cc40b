-- Each tenant's plugin health, shared by every replica: failed syncs in a row caused by
-- the plugin, the last one's message, and whether the plugin is suspended (after
-- `SUSPEND_AFTER` failures). No row: healthy. A success, a new assignment or a resume
-- removes the row.
CREATE TABLE plugin_health (
    tenant_id  INTEGER PRIMARY KEY,
    failures   INTEGER NOT NULL,
    last_error TEXT,
    suspended  INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
    updated_at INTEGER NOT NULL
);
