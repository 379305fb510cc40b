-- A created user's ABAC values, in its `created` event: a JSON object of key → array
-- of values. One event per created user instead of one more per key (a first import
-- of 100,000 users wrote 500,000 events, a fifth of its write time). NULL on every
-- other event, and on `created` events written before this column: those users'
-- initial values are in the `attribute` events that follow them.
ALTER TABLE audit_events ADD COLUMN attributes TEXT;
