-- A retried check-in must be the same check-in: the key's body fingerprint (SHA-256 of the
-- name and the photo bytes, domain.check_in_fingerprint) tells a retry from a new body sent
-- under an old key. Keys stored before this have none and replay as they did.
ALTER TABLE idempotency_keys ADD COLUMN body_sha256 TEXT;
