-- Statements of endpoint health (SPEC §11): state, auto-disable, and the
-- operator's enable and disable. A disabled endpoint's pending deliveries
-- all wait ('infinity'), so that the claim never meets them; enabling it
-- decides again which delivery of each user comes first.

-- name: register_endpoints
-- Gives each configured endpoint its row, enabled, if it has none.
INSERT INTO {{schema}}.endpoint_state (endpoint)
SELECT * FROM unnest($1::text[]) ON CONFLICT (endpoint) DO NOTHING;

-- name: endpoint_states
-- Per endpoint: whether only probes go out (disabled, its breaker open,
-- or slowed by a 429), when that last changed, when the next probe is due,
-- and when a 429's wait ends.
SELECT endpoint, state = 'disabled' OR open_since IS NOT NULL OR coalesce(slow_until > now(), false),
    greatest(since, breaker_at, slow_until),
    CASE WHEN state = 'enabled' THEN probe_at END,
    CASE WHEN slow_until > now() THEN slow_until END
FROM {{schema}}.endpoint_state;

-- name: take_probe
-- Claims for process $1 the one probe of endpoint $2, if its breaker is
-- open and the probe is due: the earliest pending delivery whose user has
-- no earlier one pending. The next probe waits for the lease ($3 ms), so
-- that no other process probes meanwhile; the probe's outcome reschedules
-- it (note_endpoints).
WITH s AS (
    UPDATE {{schema}}.endpoint_state SET probe_at = now() + $3::bigint * interval '1 millisecond'
    WHERE endpoint = $2 AND state = 'enabled' AND open_since IS NOT NULL AND probe_at <= now()
    RETURNING endpoint
), d AS (
    SELECT q.user_id, q.endpoint, q.commit_lsn, q.seq FROM {{schema}}.queue q JOIN s USING (endpoint)
    WHERE q.status = 'pending' AND q.claimed_by IS NULL
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.queue p
          WHERE p.user_id = q.user_id AND p.endpoint = q.endpoint AND p.status = 'pending'
            AND (p.commit_lsn, p.seq) < (q.commit_lsn, q.seq))
    ORDER BY q.commit_lsn, q.seq
    LIMIT 1
    FOR UPDATE OF q SKIP LOCKED
)
UPDATE {{schema}}.queue q SET claimed_by = $1, next_attempt_at = now() + $3::bigint * interval '1 millisecond'
FROM d, {{schema}}.event_log e
WHERE q.user_id = d.user_id AND q.endpoint = d.endpoint AND q.commit_lsn = d.commit_lsn AND q.seq = d.seq
  AND e.id = q.event_id
RETURNING q.event_id, q.endpoint, q.user_id, q.commit_lsn::text, q.seq, q.attempts, q.attempts_base, q.queued_at,
    e.committed_at, e.body;

-- name: note_endpoints
-- In the completer's transaction: notes, per endpoint, the last success and
-- failure of a batch of attempts; disables an enabled endpoint that
-- answered 410 Gone or has failed every attempt for its disable_after ($7,
-- ms; 0 never); opens the breaker of one this process saw fail again and
-- again ($8), closes it on a success, and spaces the probes by the
-- endpoint's backoff ($9..$10 ms) while it stays open; after a 429 holds
-- everything back for $11 ms (0: no 429). A row changes only
-- when something worth storing happened, the times at most about once a
-- second, so that busy endpoints do not make their row a hot spot. Returns
-- what changed: disabled (with the reason), opened, closed.
WITH n AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::timestamptz[],
        $6::bool[], $7::bigint[], $8::bool[], $9::bigint[], $10::bigint[], $11::bigint[])
    AS n(endpoint, last_success, last_failure, last_error, first_failure, gone, disable_after_ms, trip,
        initial_ms, max_ms, slow_ms)
), v AS (
    SELECT n.*, CASE
            WHEN n.last_success IS NOT NULL AND n.last_success >= coalesce(s.last_success_at, '-infinity')
                THEN n.first_failure -- the first failure after the batch's last success, or null
            ELSE coalesce(s.failing_since, n.first_failure) END AS failing_since
    FROM n JOIN {{schema}}.endpoint_state s USING (endpoint)
), d AS (
    -- coalesce: failing_since is null while the endpoint succeeds.
    SELECT v.*, s.state = 'enabled' AND (v.gone OR (v.disable_after_ms > 0
            AND coalesce(v.failing_since <= now() - v.disable_after_ms * interval '1 millisecond', false))) AS disable,
        s.open_since IS NOT NULL AND v.last_success IS NOT NULL AS close,
        s.open_since IS NULL AND v.trip AND v.last_success IS NULL AS open,
        s.open_since IS NOT NULL AND v.last_success IS NULL AND v.last_failure IS NOT NULL AS probe_failed
    FROM v JOIN {{schema}}.endpoint_state s USING (endpoint)
)
UPDATE {{schema}}.endpoint_state s SET
    last_success_at = greatest(s.last_success_at, d.last_success),
    last_failure_at = greatest(s.last_failure_at, d.last_failure),
    last_error = CASE WHEN d.last_failure >= coalesce(s.last_failure_at, '-infinity') THEN d.last_error ELSE s.last_error END,
    failing_since = d.failing_since,
    state = CASE WHEN d.disable THEN 'disabled' ELSE s.state END,
    since = CASE WHEN d.disable THEN now() ELSE s.since END,
    reason = CASE WHEN NOT d.disable THEN s.reason
        WHEN d.gone THEN 'answered 410 Gone'
        ELSE format('every attempt failed since %s (disable_after %s)', d.failing_since,
            d.disable_after_ms * interval '1 millisecond') END,
    open_since = CASE WHEN d.close THEN NULL WHEN d.open THEN now() ELSE s.open_since END,
    breaker_at = CASE WHEN d.close OR d.open THEN now() ELSE s.breaker_at END,
    probes = CASE WHEN d.close OR d.open THEN 0 WHEN d.probe_failed THEN s.probes + 1 ELSE s.probes END,
    probe_at = CASE WHEN d.close THEN NULL
        WHEN d.open THEN now() + d.initial_ms * interval '1 millisecond'
        WHEN d.probe_failed THEN now() + least(d.initial_ms * power(2, least(s.probes + 1, 30)), d.max_ms) * interval '1 millisecond'
        ELSE s.probe_at END,
    slow_until = CASE WHEN d.slow_ms > 0 THEN greatest(s.slow_until, now() + d.slow_ms * interval '1 millisecond')
        ELSE s.slow_until END
FROM d
WHERE s.endpoint = d.endpoint
  AND (d.disable OR d.open OR d.close OR d.probe_failed OR d.slow_ms > 0 OR d.failing_since IS DISTINCT FROM s.failing_since
       OR d.last_success > coalesce(s.last_success_at, '-infinity') + interval '1 second'
       OR d.last_failure > coalesce(s.last_failure_at, '-infinity') + interval '1 second')
RETURNING s.endpoint, d.disable, coalesce(s.reason, ''), d.open, d.close;

-- name: hold
-- Gives back claims of process $1 that were not attempted because their
-- endpoint was disabled meanwhile: they wait while it is disabled, and are
-- due again at once if it was enabled meanwhile (rehead_range then
-- decides again which comes first).
UPDATE {{schema}}.queue q SET claimed_by = NULL, next_attempt_at = CASE
        WHEN EXISTS (SELECT 1 FROM {{schema}}.endpoint_state s
                WHERE s.endpoint = q.endpoint AND (s.state = 'disabled' OR s.open_since IS NOT NULL OR s.slow_until > now()))
            OR EXISTS (SELECT 1 FROM {{schema}}.queue p
                WHERE p.user_id = q.user_id AND p.endpoint = q.endpoint AND p.status = 'pending'
                  AND (p.commit_lsn, p.seq) < (q.commit_lsn, q.seq)) THEN 'infinity'
        ELSE now() END
FROM unnest($2::text[], $3::text[], $4::text[]::pg_lsn[], $5::int[]) AS h(user_id, endpoint, commit_lsn, seq)
WHERE q.user_id = h.user_id AND q.endpoint = h.endpoint AND q.commit_lsn = h.commit_lsn AND q.seq = h.seq
  AND q.claimed_by IS NOT DISTINCT FROM $1;

-- name: hold_disabled
-- Makes the deliveries of the paused (disabled, probed, slowed by a 429)
-- endpoints among $1 that became due anyway (a retry recorded, or a next delivery promoted, after
-- the disable) wait. The range on next_attempt_at goes by the due index.
UPDATE {{schema}}.queue q SET next_attempt_at = 'infinity'
FROM {{schema}}.endpoint_state s
WHERE s.endpoint = ANY($1::text[]) AND (s.state = 'disabled' OR s.open_since IS NOT NULL OR s.slow_until > now())
  AND q.endpoint = s.endpoint
  AND q.status = 'pending' AND q.claimed_by IS NULL AND q.next_attempt_at < 'infinity';

-- name: rehead_begin
-- A rehead of endpoint $1 begins: until one begun since then ends
-- (rehead_end), a starting process reheads the endpoint again, since a
-- process that stopped between two chunks left users waiting. Returns
-- when it began, nothing if the endpoint has no row (never run).
UPDATE {{schema}}.endpoint_state SET rehead_since = clock_timestamp()
WHERE endpoint = $1
RETURNING rehead_since;

-- name: rehead_end
-- The rehead of endpoint $1 begun at $2 ended: every user's first pending
-- delivery that waited when it began is due. If another rehead began
-- since, that one's end clears the mark.
UPDATE {{schema}}.endpoint_state SET rehead_since = NULL
WHERE endpoint = $1 AND rehead_since = $2;

-- name: rehead_unfinished
-- The endpoints whose last rehead began and did not end.
SELECT endpoint FROM {{schema}}.endpoint_state WHERE rehead_since IS NOT NULL;

-- name: rehead_bound
-- After an enable, or a breaker closing, rehead decides again, for every
-- user, which pending delivery to endpoint $1 comes first (due) and which
-- wait behind it, in chunks of users, so that delivery starts after the
-- first chunk and no statement grows with the backlog. This finds a
-- chunk's last user: that of the $4-th waiting delivery in key order after
-- user $2 ($3: from user $2 itself). No row: the rest is the last chunk.
SELECT q.user_id FROM {{schema}}.queue q
WHERE q.endpoint = $1 AND q.user_id >= $2 AND (q.user_id > $2 OR $3)
  AND q.status = 'pending' AND q.claimed_by IS NULL AND q.next_attempt_at = 'infinity'
ORDER BY q.user_id, q.endpoint, q.commit_lsn, q.seq
OFFSET $4 - 1 LIMIT 1;

-- name: rehead_range
-- Makes due the first pending delivery to endpoint $1 of each user after
-- $2 ($3: from $2) up to $4, where it waits. The subquery, not NOT EXISTS,
-- keeps the plan a key lookup per row: an anti-join hashes the whole queue.
UPDATE {{schema}}.queue d SET next_attempt_at = now()
WHERE d.endpoint = $1 AND d.user_id >= $2 AND (d.user_id > $2 OR $3) AND d.user_id <= $4
  AND d.status = 'pending' AND d.claimed_by IS NULL AND d.next_attempt_at = 'infinity'
  AND (d.commit_lsn, d.seq) = (SELECT p.commit_lsn, p.seq FROM {{schema}}.queue p
      WHERE p.user_id = d.user_id AND p.endpoint = d.endpoint AND p.status = 'pending'
      ORDER BY p.commit_lsn, p.seq LIMIT 1);

-- name: rehead_rest
-- rehead_range for the last chunk: every user after $2 ($3: from $2).
UPDATE {{schema}}.queue d SET next_attempt_at = now()
WHERE d.endpoint = $1 AND d.user_id >= $2 AND (d.user_id > $2 OR $3)
  AND d.status = 'pending' AND d.claimed_by IS NULL AND d.next_attempt_at = 'infinity'
  AND (d.commit_lsn, d.seq) = (SELECT p.commit_lsn, p.seq FROM {{schema}}.queue p
      WHERE p.user_id = d.user_id AND p.endpoint = d.endpoint AND p.status = 'pending'
      ORDER BY p.commit_lsn, p.seq LIMIT 1);

-- name: disable_endpoint
-- The operator disables endpoint $1 for reason $2; its pending deliveries
-- wait. Returns nothing if it was disabled already.
WITH s AS (
    INSERT INTO {{schema}}.endpoint_state AS s (endpoint, state, reason) VALUES ($1, 'disabled', $2)
    ON CONFLICT (endpoint) DO UPDATE SET state = 'disabled', since = now(), reason = $2
        WHERE s.state = 'enabled'
    RETURNING endpoint
), q AS (
    UPDATE {{schema}}.queue q SET next_attempt_at = 'infinity' FROM s
    WHERE q.endpoint = s.endpoint AND q.status = 'pending' AND q.claimed_by IS NULL AND q.next_attempt_at < 'infinity'
)
SELECT endpoint FROM s;

-- name: enable_endpoint
-- The operator enables endpoint $1 for reason $2. Returns how long it was
-- disabled (ms), nothing if it was enabled already. shift_queued_at and
-- the rehead follow, in the same transaction.
UPDATE {{schema}}.endpoint_state s SET state = 'enabled', since = now(), reason = $2, failing_since = NULL,
    probe_at = CASE WHEN s.open_since IS NOT NULL THEN now() END, probes = 0 -- an open breaker probes at once
FROM {{schema}}.endpoint_state o
WHERE s.endpoint = $1 AND o.endpoint = s.endpoint AND s.state = 'disabled'
RETURNING (extract(epoch FROM now() - o.since) * 1000)::bigint;

-- name: shift_queued_at
-- After enable_endpoint: the time endpoint $1 was disabled ($2 ms) is not
-- counted towards its pending deliveries' max_age.
UPDATE {{schema}}.queue SET queued_at = queued_at + $2::bigint * interval '1 millisecond'
WHERE endpoint = $1 AND status = 'pending';

-- name: endpoint_report
-- `walhook endpoints`: each endpoint's state, the share of its attempts in
-- the last hour that succeeded (a scan of the last hour's attempts: an
-- operator's command, not the hot path), and its pending deliveries.
SELECT s.endpoint, s.state, s.since, coalesce(s.reason, ''), s.last_success_at, s.last_failure_at,
    coalesce(s.last_error, ''),
    (SELECT count(*) FROM {{schema}}.delivery_attempts a
     WHERE a.endpoint = s.endpoint AND a.attempted_at > now() - interval '1 hour'),
    (SELECT count(*) FROM {{schema}}.delivery_attempts a
     WHERE a.endpoint = s.endpoint AND a.attempted_at > now() - interval '1 hour' AND a.error IS NULL),
    (SELECT count(*) FROM {{schema}}.queue q WHERE q.endpoint = s.endpoint AND q.status = 'pending')
FROM {{schema}}.endpoint_state s
ORDER BY s.endpoint;

-- name: reserve_slots
-- Reserves $2 sending slots of endpoint $1, spaced $3 microseconds apart
-- (1/rate_limit), after the last one any process reserved. Returns the
-- first slot's delay from now, in microseconds (0 if it is free now).
UPDATE {{schema}}.endpoint_state SET next_slot = greatest(next_slot, now()) + $2::int * $3::bigint * interval '1 microsecond'
WHERE endpoint = $1
RETURNING (extract(epoch FROM next_slot - $2::int * $3::bigint * interval '1 microsecond' - now()) * 1e6)::bigint;
