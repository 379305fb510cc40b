-- The audit trail: lifecycle changes and ABAC value changes of users.

CREATE TABLE audit_events (
    -- AUTOINCREMENT: ids are never reused, even after the newest events are removed,
    -- so an id keeps naming one event.
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL,
    -- No foreign key: events outlive deleted users.
    user_id   INTEGER NOT NULL,
    -- The username at the time of the event.
    username  TEXT    NOT NULL,
    -- created, updated, attribute, deactivated, reactivated, deleted.
    kind      TEXT    NOT NULL,
    -- The ABAC key of an 'attribute' event; the changed field names of an 'updated' one.
    key       TEXT,
    -- JSON arrays of strings.
    added     TEXT    NOT NULL DEFAULT '[]',
    removed   TEXT    NOT NULL DEFAULT '[]',
    cause     TEXT    NOT NULL,
    run_id    TEXT,
    at        INTEGER NOT NULL
);

CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id);
CREATE INDEX audit_events_tenant_user ON audit_events (tenant_id, user_id, id);
