-- The queue churns: every delivery passes through it and leaves it. A
-- vacuum that truncates its empty tail pages takes the table's strongest
-- lock, and the truncation's WAL flush, while stores and claims wait
-- behind it; the pages are needed again a moment later. The option holds
-- for walhook's own vacuum of the queue (vacuum_queue) and autovacuum.
ALTER TABLE {{schema}}.queue SET (vacuum_truncate = false);
