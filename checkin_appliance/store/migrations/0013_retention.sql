-- The retention purge (retention.py): when a patient's name, intake answers and photo were
-- removed. The row stays, blank, so the visits' statistics (queue_entries,
-- visit_transitions) keep their patient.
ALTER TABLE patients ADD COLUMN purged_at TEXT;
