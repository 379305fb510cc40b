-- What a sync last wrote each directory user from: a digest of the plugin's decision
-- for the entry (with its DN and avatar). A sync whose decision has the same digest
-- knows the user is unchanged without loading it. NULL when unknown: users written
-- before this column, and users changed since by anything but a sync's full write
-- (a deactivation, for instance), are compared field by field.
ALTER TABLE users ADD COLUMN mapped_digest BLOB;
