#!/bin/sh
# Gives the walhook role its password, from the environment rather than from
# a file in the repository. The postgres image runs this after the .sql files
# before it, as the superuser.
set -eu
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$WALHOOK_DB_PASSWORD" <<'SQL'
ALTER ROLE walhook PASSWORD :'password';
SQL
