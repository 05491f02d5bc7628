-- Endpoint health (SPEC §11): one row per endpoint that walhook has run
-- with, its state and the times of its last success and failure. The
-- completer keeps the times in the round trip that records outcomes, at
-- most about once a second per endpoint, so that the row is no hot spot.
CREATE TABLE {{schema}}.endpoint_state (
    endpoint        text        PRIMARY KEY,
    state           text        NOT NULL DEFAULT 'enabled' CHECK (state IN ('enabled', 'disabled')),
    since           timestamptz NOT NULL DEFAULT now(), -- when the state last changed
    reason          text,                               -- why (null for the first enabled state)
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_error      text,                               -- of the last failure
    -- The first failed attempt after the last success: every attempt since
    -- has failed. disable_after counts from here; null while succeeding.
    failing_since   timestamptz,
    -- The circuit breaker: open since this time after consecutive failures,
    -- while one delivery at a time probes the endpoint (at probe_at, the
    -- probes-th so far, with backoff); null while closed. breaker_at is
    -- when it last opened or closed.
    open_since      timestamptz,
    breaker_at      timestamptz,
    probe_at        timestamptz,
    probes          int         NOT NULL DEFAULT 0,
    -- rate_limit: the next free sending slot, shared by every process;
    -- each request takes one, 1/rate_limit seconds after the last.
    next_slot       timestamptz,
    -- After a 429 Too Many Requests, nothing goes to the endpoint until
    -- then (its Retry-After, else its backoff's initial delay).
    slow_until      timestamptz
);

-- The operator's view of endpoint_state.
CREATE VIEW {{schema}}.endpoints AS
    SELECT endpoint AS name, state, since, reason, last_success_at AS last_success,
        last_failure_at AS last_failure, last_error, failing_since, open_since AS probing_since, probe_at AS next_probe,
        slow_until AS slowed_until
    FROM {{schema}}.endpoint_state;
