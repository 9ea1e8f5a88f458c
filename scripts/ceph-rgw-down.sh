#!/usr/bin/env bash
# Stops what scripts/ceph-rgw-up.sh DIR started (its daemons' pids are in DIR/run/*.pid) and
# removes DIR. Only those pids are signalled: other Ceph daemons on the machine are left alone.
#
#   scripts/ceph-rgw-down.sh DIR
set -euo pipefail

dir=${1:?usage: ceph-rgw-down.sh DIR}
[ -d "$dir" ] || exit 0
pids=()
for f in "$dir"/run/*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && pids+=("$pid")
done
# The gateway first (it is the monitor's and OSD's client), then the rest.
[ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null || true
for _ in $(seq 1 50); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 0.1
done
for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
rm -rf "$dir"
