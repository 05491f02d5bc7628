-- When an endpoint's waiting deliveries are made due again (its breaker
-- closing, an enable), chunk by chunk, a process that stops between two
-- chunks leaves the remaining users waiting. The mark says a rehead began
-- and has not ended, so that only then a starting process walks the
-- endpoint's waiting deliveries again; null when none is unfinished.
ALTER TABLE {{schema}}.endpoint_state ADD COLUMN rehead_since timestamptz;
-- A process of an earlier version may have stopped in the middle of one.
UPDATE {{schema}}.endpoint_state SET rehead_since = now();
