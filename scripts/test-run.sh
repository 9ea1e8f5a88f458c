#!/usr/bin/env bash
# Runs the suite in parallel (pytest-xdist, one test file per worker at a time, so module-scoped
# servers stay in one process) with one S3 gateway for the whole run: started here unless
# MAILYARD_TEST_S3_ENDPOINT names one, shared by every worker and stage, stopped at the end.
#
# Two stages, both run even when the first fails (the exit status says whether any did):
#   default      the whole suite on the embedded default (SQLite + files);
#   postgres-s3  the end-to-end suites of PG_S3_E2E again with the MailStore and SearchIndex in
#                a fresh PostgreSQL database per server and the blobs in the S3 gateway
#                (tests/e2e/server.py: MAILYARD_TEST_STORE=postgres, MAILYARD_TEST_BLOBS=s3).
# Usage: scripts/test-run.sh [pytest arguments]  (given to every stage)
#   TEST_STAGES="postgres-s3" runs only that stage (`make test-postgres`);
#   TEST_WORKERS=N overrides the worker count.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

# The end-to-end suites of issue 9's "done when" (SMTP in, IMAP, JMAP, search), the two
# that exercise the same ports hardest (POP3's maildrop, the store path's dedup and corpus), and
# issue 16's IMAP trust suites (new message per APPEND/COPY, UIDVALIDITY, the model-based
# concurrency test, subscriptions kept through the store), and issue 18's head-of-line test
# (a search's reads and highlighting off the loop on either engine).
PG_S3_E2E=(
  tests/e2e/test_smtp_inbound.py
  tests/e2e/test_imap.py
  tests/e2e/test_imap_trust.py
  tests/e2e/test_imap_model.py
  tests/e2e/test_rfc3501_mailbox.py
  tests/e2e/test_jmap_mail.py
  tests/e2e/test_search.py
  tests/e2e/test_head_of_line.py
  tests/e2e/test_pop3.py
  tests/e2e/test_store_path.py
)

stages=${TEST_STAGES:-default postgres-s3}
for stage in $stages; do
  case $stage in
    default|postgres-s3) ;;
    *) echo "test-run.sh: unknown stage $stage (default, postgres-s3)" >&2; exit 2 ;;
  esac
done

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

# sslyze for tests/e2e/test_tls_profile.py, in a venv of its own (scripts/test-deps.sh makes
# it): sslyze 6 pins cryptography below the version Mailyard runs on.
export MAILYARD_SSLYZE_PYTHON=${MAILYARD_SSLYZE_PYTHON:-$PWD/.venv-sslyze/bin/python}

workers=${TEST_WORKERS:-3}
failed=()
summary=()
for stage in $stages; do
  started=$SECONDS
  echo "== stage $stage" >&2
  status=0
  case $stage in
    default)
      "$BIN/python" -m pytest -q -n "$workers" --dist loadfile "$@" || status=$? ;;
    postgres-s3)
      MAILYARD_TEST_STORE=postgres MAILYARD_TEST_BLOBS=s3 \
        "$BIN/python" -m pytest -q -n "$workers" --dist loadfile "${PG_S3_E2E[@]}" "$@" \
        || status=$? ;;
  esac
  took=$((SECONDS - started))
  summary+=("stage $stage: exit $status in $((took / 60)) min $((took % 60)) s")
  [ "$status" -eq 0 ] || failed+=("$stage")
done
printf '%s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -gt 0 ]; then
  echo "test-run.sh: failed stages: ${failed[*]}" >&2
  exit 1
fi
