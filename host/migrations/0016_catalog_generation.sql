-- A counter every change of the catalog (tenants, schedules, plugin assignments) moves
-- on, whatever writes it: each replica watches it and reloads when it moved, so that a
-- change made through one replica reaches the others within seconds.
CREATE TABLE store_generations (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO store_generations (name, value) VALUES ('catalog', 0);

CREATE TRIGGER tenants_insert_moves_the_catalog AFTER INSERT ON tenants
BEGIN
    UPDATE store_generations SET value = value + 1 WHERE name = 'catalog';
END;

CREATE TRIGGER tenants_update_moves_the_catalog AFTER UPDATE ON tenants
BEGIN
    UPDATE store_generations SET value = value + 1 WHERE name = 'catalog';
END;

CREATE TRIGGER tenants_delete_moves_the_catalog AFTER DELETE ON tenants
BEGIN
    UPDATE store_generations SET value = value + 1 WHERE name = 'catalog';
END;

CREATE TRIGGER schedules_insert_moves_the_catalog AFTER INSERT ON schedules
BEGIN
    UPDATE store_generations SET value = value + 1 WHERE name = 'catalog';
END;

CREATE TRIGGER schedules_update_moves_the_catalog AFTER UPDATE ON schedules
BEGIN
    UPDATE store_generations SET value = value + 1 WHERE name = 'catalog';
END;

CREATE TRIGGER schedules_delete_moves_the_catalog AFTER DELETE ON schedules
BEGIN
    UPDATE store_generations SET value = value + 1 WHERE name = 'catalog';
END;

CREATE TRIGGER tenant_plugins_insert_moves_the_catalog AFTER INSERT ON tenant_plugins
BEGIN
    UPDATE store_generations SET value = value + 1 WHERE name = 'catalog';
END;

CREATE TRIGGER tenant_plugins_update_moves_the_catalog AFTER UPDATE ON tenant_plugins
BEGIN
    UPDATE store_generations SET value = value + 1 WHERE name = 'catalog';
END;

CREATE TRIGGER tenant_plugins_delete_moves_the_catalog AFTER DELETE ON tenant_plugins
BEGIN
    UPDATE store_generations SET value = value + 1 WHERE name = 'catalog';
END;
