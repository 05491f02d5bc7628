-- walhook with least privilege: run by a DBA (a superuser) in the
-- application's database. The table and its owner stay as they are.

-- The role walhook logs in as: it may stream changes, and nothing else.
CREATE ROLE walhook LOGIN REPLICATION;
-- Its side schema (events, deliveries, delivery_attempts), which it owns.
CREATE SCHEMA walhook AUTHORIZATION walhook;
-- Reading the table (reading existing rows needs it; the stream does not).
GRANT SELECT ON public.users TO walhook;

-- As the table's owner, here the application's role app: publish the table.
SET ROLE app;
CREATE PUBLICATION walhook FOR TABLE public.users;
-- Recommended: updates carry the old values, deletes the whole row.
ALTER TABLE public.users REPLICA IDENTITY FULL;
RESET ROLE;
