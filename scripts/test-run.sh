#!/usr/bin/env bash
# Runs the suite in parallel (pytest-xdist, one test file per worker at a time, so module-scoped
# servers stay in one process) with one S3 gateway for the whole run: started here unless
# MAILYARD_TEST_S3_ENDPOINT names one, shared by every worker, stopped at the end.
# Usage: scripts/test-run.sh [pytest arguments]; TEST_WORKERS=N overrides the worker count.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

if [ -z "${MAILYARD_TEST_S3_ENDPOINT:-}" ]; then
  ceph_dir=$(mktemp -d /tmp/mailyard-ceph-XXXXXX)
  trap 'scripts/ceph-rgw-down.sh "$ceph_dir" >/dev/null 2>&1 || true' EXIT
  gateway=$(scripts/ceph-rgw-up.sh "$ceph_dir" </dev/null | tail -n 1)
  eval "$("$BIN/python" - "$gateway" <<'PY'
import json, shlex, sys
g = json.loads(sys.argv[1])
for name, key in (("ENDPOINT", "endpoint"), ("KEY", "access_key"), ("SECRET", "secret_key")):
    print(f"export MAILYARD_TEST_S3_{name}={shlex.quote(g[key])}")
PY
)"
fi

workers=${TEST_WORKERS:-3}
"$BIN/python" -m pytest -q -n "$workers" --dist loadfile "$@"
