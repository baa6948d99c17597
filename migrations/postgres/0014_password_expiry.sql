-- The bootstrap credential (issue 21, docs/auth.md "The first admin"): `controller init`
-- creates the first admin as a local user whose password is the one-time bootstrap
-- credential, which must be replaced at the first login (must_change_password) and is
-- refused after password_expires_at (Unix seconds). NULL: the password does not expire.
-- Any change of the password clears it.
ALTER TABLE local_users ADD COLUMN password_expires_at BIGINT;
