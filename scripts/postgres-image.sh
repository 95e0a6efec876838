#!/usr/bin/env bash
# Build a PostgreSQL 15 image with no registry access: a minimal Debian bookworm
# root with the `postgresql` package (debootstrap, from the Debian mirror this
# machine's apt already uses), imported with `docker import`.
#
#   scripts/postgres-image.sh [NAME]        # NAME defaults to minotaur-postgres:15
#
# Does nothing when the image exists (delete it to rebuild). The mirror is the one in
# /etc/apt/sources.list{,.d/*} for bookworm; MINOTAUR_DEBIAN_MIRROR overrides it.
#
# The image behaves like the official one for what Minotaur needs:
#   POSTGRES_PASSWORD (required on first start), POSTGRES_USER (default postgres),
#   POSTGRES_DB (default: the user), PGDATA (default /var/lib/postgresql/data, a volume).
# On its first start (empty PGDATA) it runs initdb (scram-sha-256 password auth from
# any address: the image is meant for a private network), creates the database, then
# execs `postgres` listening on 0.0.0.0:5432 as user `postgres`. `docker stop` sends
# SIGINT (STOPSIGNAL): PostgreSQL's fast shutdown (sessions are disconnected, a
# checkpoint is written); SIGTERM is its smart shutdown (waits for clients to leave).
# Extra arguments are passed to postgres: `docker run IMAGE -c fsync=off`.
set -euo pipefail
name="${1:-minotaur-postgres:15}"
suite=bookworm
pgver=15

if docker image inspect "$name" >/dev/null 2>&1; then
  echo "image $name present"
  exit 0
fi

# The mirror apt uses for $suite: deb822 stanzas (*.sources) or one-line entries
# (sources.list, *.list); security and other suites are skipped.
mirror="${MINOTAUR_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  shopt -s nullglob
  lists=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -r "$f" ]; then lists+=("$f"); fi
  done
  mirror=$(awk -v suite="$suite" '
    function found() {
      if (!done && deb822 && uris != "" && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; done = 1; exit }
      uris = ""; suites = ""
    }
    FNR == 1 { found(); deb822 = (FILENAME ~ /\.sources$/) }
    deb822 && /^[ \t]*$/ { found() }
    deb822 && /^URIs:/ { $1 = ""; uris = $0 }
    deb822 && /^Suites:/ { $1 = ""; suites = $0 }
    !deb822 && $1 == "deb" {
      i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; done = 1; exit }
    }
    END { found() }
  ' "${lists[@]}" /dev/null || true)
  shopt -u nullglob
  mirror="${mirror:-http://deb.debian.org/debian}"
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

start=$SECONDS
root=$(mktemp -d /tmp/minotaur-pgroot.XXXXXX)
trap 'rm -rf "$root" "$root.log"' EXIT
echo "debootstrap $suite from $mirror into $root (postgresql-$pgver)"
debootstrap --variant=minbase --include="postgresql-$pgver" "$suite" "$root" "$mirror" \
  > "$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# No packaged cluster (the entrypoint makes its own in PGDATA), no caches, no docs,
# no message translations, no JIT (LLVM and its z3 are 130 MB of the 400; without
# llvmjit.so PostgreSQL runs every query interpreted, and `jit` is off anyway).
rm -rf "$root/var/lib/postgresql/$pgver" "$root/etc/postgresql/$pgver" \
  "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* \
  "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" \
  "$root/usr/share/locale" "$root/usr/share/i18n" \
  "$root/usr/lib/postgresql/$pgver/lib/"llvmjit* "$root/usr/lib/postgresql/$pgver/lib/bitcode" \
  "$root/usr/lib/x86_64-linux-gnu/"libLLVM-* "$root/usr/lib/x86_64-linux-gnu/"libz3.so* \
  "$root/var/log/"*.log "$root/var/log/apt/"*
install -d -m 0700 "$root/var/lib/postgresql/data"
install -d -m 2775 "$root/run/postgresql"
chroot "$root" chown postgres:postgres /var/lib/postgresql /var/lib/postgresql/data /run/postgresql

cat > "$root/usr/local/bin/pg-entrypoint.sh" <<'EOF'
#!/bin/sh
# First start: initdb into an empty PGDATA, then exec postgres (PID 1: signals reach it).
set -eu
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
shift
: "${PGDATA:=/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
export PGDATA
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "pg-entrypoint: the data directory is empty and POSTGRES_PASSWORD is not set" >&2
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  {
    echo "# pg-entrypoint: password logins from any address (a private network)"
    echo "host all all 0.0.0.0/0 scram-sha-256"
    echo "host all all ::/0 scram-sha-256"
  } >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    db=$(printf '%s' "$POSTGRES_DB" | sed 's/"/""/g')
    echo "CREATE DATABASE \"$db\" OWNER \"$(printf '%s' "$POSTGRES_USER" | sed 's/"/""/g')\"" |
      postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "pg-entrypoint: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c port=5432 -c jit=off "$@"
EOF
chmod 755 "$root/usr/local/bin/pg-entrypoint.sh"

# `docker import` takes no STOPSIGNAL: a metadata-only build step on top adds it
# (the classic builder uses the local base image, nothing is pulled).
base="$name-rootfs"
tar -C "$root" --numeric-owner -c . | docker import \
  --change "ENV PATH=/usr/lib/postgresql/$pgver/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV PGDATA=/var/lib/postgresql/data" \
  --change "ENV LANG=C.UTF-8" \
  --change "VOLUME /var/lib/postgresql/data" \
  --change "EXPOSE 5432" \
  --change "USER postgres" \
  --change "WORKDIR /var/lib/postgresql" \
  --change 'HEALTHCHECK --interval=1s --timeout=2s --start-period=5s --retries=3 CMD pg_isready -q -h 127.0.0.1 -p 5432 -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"' \
  --change 'ENTRYPOINT ["/usr/local/bin/pg-entrypoint.sh"]' \
  --change 'CMD ["postgres"]' \
  -m "debootstrap $suite postgresql-$pgver" - "$base" >/dev/null
printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$base" |
  DOCKER_BUILDKIT=0 docker build -q -t "$name" - >"$root.log" 2>&1 || { cat "$root.log" >&2; exit 1; }
rm -f "$root.log"
docker rmi "$base" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$name")
echo "built $name ($((size / 1024 / 1024)) MiB) in $((SECONDS - start))s"
