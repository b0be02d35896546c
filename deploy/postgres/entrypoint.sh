#!/bin/sh
# Start PostgreSQL on PGDATA, making the cluster on the first start: the role
# POSTGRES_USER (not a superuser) with the password of POSTGRES_PASSWORD_FILE (or
# POSTGRES_PASSWORD), owning the database POSTGRES_DB. Connections from the network need
# that password (scram-sha-256); the superuser postgres is reachable only on the local
# socket. Extra arguments go to postgres (e.g. -c max_connections=200).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
user=${POSTGRES_USER:-swarm_oauth}
db=${POSTGRES_DB:-$user}

fail() {
  echo "error: $*" >&2
  exit 2
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    password=$(cat "$POSTGRES_PASSWORD_FILE") || fail "cannot read POSTGRES_PASSWORD_FILE"
  else
    password=${POSTGRES_PASSWORD:-}
  fi
  [ -n "$password" ] || fail "set POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD)"
  [ "$user" != postgres ] || fail "POSTGRES_USER must not be the superuser postgres"
  initdb --pgdata="$PGDATA" --username=postgres --auth-local=peer \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  # Set up over the local socket only, with no network listener yet.
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --silent --wait start
  # The password reaches psql through its environment, never its command line.
  POSTGRES_PASSWORD=$password psql --quiet --no-psqlrc --set=ON_ERROR_STOP=1 \
    --username=postgres --dbname=postgres --set=user="$user" --set=db="$db" <<'SQL'
\getenv password POSTGRES_PASSWORD
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
SQL
  pg_ctl --pgdata="$PGDATA" --mode=fast --silent --wait stop
  echo "postgres-entrypoint: made the cluster in $PGDATA: role $user, database $db" >&2
fi
exec postgres -D "$PGDATA" "$@"
