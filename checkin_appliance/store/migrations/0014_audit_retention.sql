-- The audit trail's retention (audit_retention_days): the purge removes its oldest rows.
-- Still no UPDATE, and a DELETE only of the oldest row, never of the newest (the chain goes
-- on from it): the purge deletes from the head, after writing an `audit_pruned` row that
-- names the first row kept, so `audit verify` knows where the chain now starts.
DROP TRIGGER audit_log_no_delete;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN old.id <> (SELECT min(id) FROM audit_log) OR old.id = (SELECT max(id) FROM audit_log)
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: only its oldest rows are pruned');
END;
