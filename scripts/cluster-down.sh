#!/usr/bin/env bash
# Stops what scripts/cluster-up.sh DIR started (the pids it wrote to DIR/pids, nothing else):
# the Mailyard nodes first, then NATS, Redis, Ceph and a private PostgreSQL. The data stays in
# DIR (and the shard databases on PostgreSQL); PURGE=1 removes DIR and drops the databases.
#
#   scripts/cluster-down.sh [DIR]    (DIR: ./.cluster)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${1:-$root/.cluster}")
[ -d "$dir" ] || { echo "cluster-down: nothing in $dir"; exit 0; }
touch "$dir/pids"

stop_pids() {  # TERM, wait up to 20 s, then KILL
  local pids=("$@") alive
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null
  for _ in $(seq 1 200); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null
}

for what in mailyard nats redis; do
  pids=()
  while read -r pid name; do
    case "$name" in "$what"*) pids+=("$pid") ;; esac
  done < "$dir/pids"
  stop_pids "${pids[@]}"
done
while read -r kind path; do
  case "$kind" in
    ceph) "$root/scripts/ceph-rgw-down.sh" "$path" ;;
    postgres) "$root/scripts/postgres-up.sh" stop "$path" ;;
  esac
done < "$dir/pids"
rm -f "$dir/pids"
if [ "${PURGE:-0}" = 1 ]; then
  for node in a b c; do
    cfg="$dir/$node/mailyard.toml"
    [ -f "$cfg" ] && grep -o 'postgresql://[^"]*' "$cfg" | sort -u
  done | sort -u | while read -r dsn; do
    admin="${dsn%/*}/postgres"
    "$root/.venv/bin/python" -c 'import asyncio, sys, asyncpg
async def main(admin, name):
    c = await asyncpg.connect(admin)
    await c.execute(f"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
    await c.close()
asyncio.run(main(sys.argv[1], sys.argv[2]))' "$admin" "${dsn##*/}" 2>/dev/null || true
  done
  rm -rf "$dir"
fi
echo "cluster-down: stopped"
