-- Statistics over a year (issue 18, bench.stats): each visit's waiting and service times were
-- worked out from its moves at every request, a join of every move of the range. Kept on the
-- visit instead, as its moves are written (store: _log_transition), and put back with the
-- rest of the row by an undo:
--   first_called_at  its first call that stands (call or complete)
--   service_from     the last move that took it to called or in service (a call, a recall,
--                    the start), the start of what the doctor spent on it
--   done_at          when it was done
-- Filled here from the moves already made, by the same rules (undone moves left out).
ALTER TABLE queue_entries ADD COLUMN first_called_at TEXT;
ALTER TABLE queue_entries ADD COLUMN service_from TEXT;
ALTER TABLE queue_entries ADD COLUMN done_at TEXT;
UPDATE queue_entries SET
    first_called_at = (SELECT min(t.at) FROM visit_transitions t WHERE t.entry_id = queue_entries.id
        AND t.undone_by IS NULL AND t.action IN ('call', 'complete')),
    service_from = (SELECT max(t.at) FROM visit_transitions t WHERE t.entry_id = queue_entries.id
        AND t.undone_by IS NULL AND t.action != 'undo' AND t.to_status IN ('called', 'in_service')),
    done_at = (SELECT max(t.at) FROM visit_transitions t WHERE t.entry_id = queue_entries.id
        AND t.undone_by IS NULL AND t.action = 'done');
