#!/usr/bin/env bash
# Starts a private PostgreSQL for the test suite when the machine runs none, and prints its DSN.
#
#   scripts/postgres-up.sh DIR        initdb into DIR/data (once), start on a free loopback port,
#                                     print postgresql://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres-up.sh stop DIR   stop it (fast shutdown)
#
# Trust authentication on 127.0.0.1 only, the socket in DIR, nothing else of the machine touched.
# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user (made by
# Debian's postgresql package, which scripts/test-deps.sh installs when initdb is missing).
set -euo pipefail

bindir=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && bindir="$d"
done
if [ -z "$bindir" ]; then
  initdb_path=$(command -v initdb || true)
  [ -n "$initdb_path" ] || { echo "postgres-up: no initdb (install Debian's postgresql)" >&2; exit 1; }
  bindir=$(dirname "$initdb_path")
fi

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "${1:-}" = stop ]; then
  dir=${2:?usage: postgres-up.sh stop DIR}
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  exit 0
fi

dir=${1:?usage: postgres-up.sh DIR}
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres: "$dir"
if [ ! -f "$dir/data/PG_VERSION" ]; then
  as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }
echo "postgresql://postgres@127.0.0.1:$port/postgres"
