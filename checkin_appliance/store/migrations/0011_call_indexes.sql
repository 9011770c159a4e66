-- Wait estimates (issue 17): each line's calls are read by time, today and on the same
-- weekday and hour in past weeks, whenever the patients' status pages refresh. Without an
-- index that read scanned every transition ever made.
CREATE INDEX visit_transitions_calls ON visit_transitions (at)
    WHERE action IN ('call', 'complete');
-- A console finds its own open call (GET /api/doctors/current/) without scanning visits.
CREATE INDEX queue_entries_called_by ON queue_entries (called_by, called_at)
    WHERE called_by IS NOT NULL;
