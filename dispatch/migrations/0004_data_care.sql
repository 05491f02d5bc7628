-- Data care (SPEC §12): erasing a user's payloads, and pruning failed
-- deliveries. {{schema}} is replaced by the quoted schema name.

-- An erased event keeps its row (id, type, user, times) without its body.
ALTER TABLE {{schema}}.event_log ALTER COLUMN body DROP NOT NULL;
ALTER TABLE {{schema}}.event_log ADD COLUMN erased_at timestamptz;
-- The deleted events not erased yet, so that erase_on_delete finds them
-- without reading event_log: only a deletion writes an entry here, and it
-- leaves once its event is erased or pruned.
CREATE INDEX event_log_deleted_idx ON {{schema}}.event_log (user_id)
    WHERE type LIKE '%.deleted' AND erased_at IS NULL;

CREATE OR REPLACE VIEW {{schema}}.events AS
    SELECT id, commit_lsn, seq, type, user_id, committed_at, body::jsonb AS payload, body, captured_at, erased_at
    FROM {{schema}}.event_log;

-- Events of an erased user that still had a pending delivery when the
-- erasure ran: each is erased once none of its deliveries is pending.
CREATE TABLE {{schema}}.erasure_waits (
    event_id     text        PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now()
);

-- Failed deliveries by when they failed, for delivery.failed_retention.
-- Only a failure writes an entry: every update that makes one already
-- changes an indexed column (next_attempt_at), so none loses a HOT update.
CREATE INDEX queue_failed_idx ON {{schema}}.queue ((coalesce(last_attempt_at, queued_at)))
    WHERE status = 'failed';
