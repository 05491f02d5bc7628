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
    failing_since   timestamptz
);

-- The operator's view of endpoint_state.
CREATE VIEW {{schema}}.endpoints AS
    SELECT endpoint AS name, state, since, reason, last_success_at AS last_success,
        last_failure_at AS last_failure, last_error, failing_since
    FROM {{schema}}.endpoint_state;
