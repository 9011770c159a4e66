-- A transferred visit keeps its ticket (issue 16): N-001 may wait in line L. A ticket is
-- unique in its day as shown, not by the line the visit is in now: under the old index a
-- transfer into a line that had already given that number today failed, and once one had
-- landed, so did that line's next check-in (the same number, taken from its own counter).
-- The numbers themselves still come from each line's counter (ticket_counters).
DROP INDEX queue_entries_ticket;
CREATE UNIQUE INDEX queue_entries_ticket ON queue_entries (ticket_day, ticket);
