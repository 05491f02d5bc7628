-- The example application, as it stands before walhook arrives: its own
-- role, which owns its database and its users table. In your database this
-- exists already; docker-compose.yml runs it to have something to watch.
CREATE ROLE app LOGIN PASSWORD 'app';
ALTER DATABASE app OWNER TO app;

SET ROLE app;
CREATE TABLE public.users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    name          text,
    role          text NOT NULL DEFAULT 'member',
    password_hash text,
    last_seen_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
RESET ROLE;
