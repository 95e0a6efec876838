# shellcheck shell=bash
# A throwaway PostgreSQL for the benchmarks (docs/BENCHMARKS.md), sourced by
# scripts/bench-load.sh (`*-pg` modes) and scripts/bench-cluster.sh:
#   . scripts/bench-pg.sh
#   pg_up DIR PORT          initdb in DIR/pg, start on 127.0.0.1:PORT (or the next free one, up to
#                           PORT+9; socket and log in DIR/pg-run),
#                           create database `minotaur`; sets PG_URL, PG_DIR, PG_PORT
#   pg_sql 'SELECT ...'     one query, unaligned tuples-only output
#   pg_down                 stop it (fast shutdown); call it from the caller's EXIT trap
# PostgreSQL keeps its durable defaults (fsync on, synchronous_commit on, full_page_writes
# on): an ack waits for the commit's WAL flush, as redb's group commit waits for its fsync.
# The only setting changed is wal_keep_size (WAL_KEEP, default 4GB), so that the WAL of a
# run is still on disk for pg_waldump's breakdown afterwards (retention only: it changes
# neither what is written nor when checkpoints happen).
# PG_EXTRA adds server options for a diagnosis run (e.g. "-c log_min_duration_statement=20
# -c log_lock_waits=on"); a measured run leaves it empty.
# PGBIN (default: pg_config --bindir, else /usr/lib/postgresql/15/bin). Run as root, the
# server runs as the `postgres` user (runuser); otherwise as the calling user.

PGBIN=${PGBIN:-$( (pg_config --bindir 2>/dev/null) || echo /usr/lib/postgresql/15/bin)}
[ -x "$PGBIN/initdb" ] || PGBIN=/usr/lib/postgresql/15/bin

pg_as() { # run a PostgreSQL binary as the server's user
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_up() { # DIR PORT (if PORT cannot be bound, the next ones up to PORT+9 are tried)
  PG_DIR=$1/pg
  local sock=$1/pg-run port
  mkdir -p "$PG_DIR" "$sock"
  chmod 755 "$1"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR" "$sock"; fi
  pg_as "$PGBIN/initdb" -D "$PG_DIR" -U postgres --auth=trust > "$1/pg-initdb.log" 2>&1 ||
    { cat "$1/pg-initdb.log" >&2; return 1; }
  for port in $(seq "$2" $(($2 + 9))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue   # someone listens there
    PG_PORT=$port
    pg_as "$PGBIN/pg_ctl" -D "$PG_DIR" -l "$sock/pg.log" -w \
      -o "-p $PG_PORT -k $sock -c listen_addresses=127.0.0.1 -c wal_keep_size=${WAL_KEEP:-4GB} ${PG_EXTRA:-}" \
      start > /dev/null && break
    PG_PORT=
  done
  [ -n "${PG_PORT:-}" ] || { echo "PostgreSQL did not start on ports $2-$(($2 + 9)):" >&2; cat "$sock/pg.log" >&2; return 1; }
  PG_SOCK=$sock
  "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres minotaur
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/minotaur"
}

pg_sql() { # SQL
  "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d minotaur -X -At -v ON_ERROR_STOP=1 -c "$1"
}

pg_down() {
  [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/postmaster.pid" ] &&
    pg_as "$PGBIN/pg_ctl" -D "$PG_DIR" -m fast -w stop > /dev/null 2>&1
  return 0
}
