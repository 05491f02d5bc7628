-- Backfills (docs/cli.md, walhook backfill): one row per `walhook backfill`,
-- its options and its progress. The backfill process creates the row and
-- marks it done or cancelled; the sidecar advances it one chunk at a time,
-- after the chunk's events are stored and before its position passes the
-- chunk's watermark.
-- {{schema}} is replaced by the quoted schema name.

CREATE TABLE {{schema}}.backfills (
    id          text        PRIMARY KEY,
    -- A random secret every mark of the backfill carries: any role may emit
    -- logical decoding messages, only walhook's roles read this table, so
    -- the sidecar accepts no mark another role forged.
    token       text        NOT NULL,
    endpoints   text[]      NOT NULL,           -- where its events go, whatever their events lists
    where_sql   text        NOT NULL DEFAULT '', -- the -where condition, '' for every row
    chunk_size  int         NOT NULL CHECK (chunk_size > 0),
    last_key    text[],                         -- primary key (text form) of the last row read; null before the first chunk
    end_key     text[],                         -- primary key of the last row at the start: rows inserted later have live events
    chunks_done bigint      NOT NULL DEFAULT 0,
    rows_read   bigint      NOT NULL DEFAULT 0, -- rows read, the progress over the table
    rows_sent   bigint      NOT NULL DEFAULT 0, -- of those, emitted as snapshot events (the others were superseded by live changes)
    estimate    bigint      NOT NULL DEFAULT 0, -- the planner's estimate of the rows to read, at the start
    state       text        NOT NULL DEFAULT 'running'
                            CHECK (state IN ('running', 'done', 'cancelled')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
