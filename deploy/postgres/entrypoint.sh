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

# Written last: a set-up cut short (the node died, a wrong password file) is done again
# at the next start, from where it stopped, instead of leaving a cluster with no role.
ready="$PGDATA/swarm-oauth-setup-done"
if [ ! -e "$ready" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    password=$(cat "$POSTGRES_PASSWORD_FILE") || fail "cannot read POSTGRES_PASSWORD_FILE"
  else
    password=${POSTGRES_PASSWORD:-}
  fi
  [ -n "$password" ] || fail "set POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD)"
  [ "$user" != postgres ] || fail "POSTGRES_USER must not be the superuser postgres"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb --pgdata="$PGDATA" --username=postgres --auth-local=peer \
      --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  fi
  # Set up over the local socket only, with no network listener yet.
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --silent --wait start
  # The password reaches psql through its environment, never its command line. Each
  # statement may run again: the role and the database are made only if missing.
  POSTGRES_PASSWORD=$password psql --quiet --no-psqlrc --set=ON_ERROR_STOP=1 \
    --username=postgres --dbname=postgres --set=user="$user" --set=db="$db" <<'SQL'
\getenv password POSTGRES_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" LOGIN PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
  pg_ctl --pgdata="$PGDATA" --mode=fast --silent --wait stop
  : >"$ready"
  echo "postgres-entrypoint: set up the cluster in $PGDATA: role $user, database $db" >&2
fi
unset POSTGRES_PASSWORD  # not in the server's environment, nor its backends'
exec postgres -D "$PGDATA" "$@"
