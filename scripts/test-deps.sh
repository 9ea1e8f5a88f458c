#!/usr/bin/env bash
# Installs what the suite needs from Debian when it is missing (CI runs on a fresh machine).
# Tests skip nothing for a missing tool: if this cannot install swaks, the swaks tests fail.
set -euo pipefail
need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v mbsync >/dev/null 2>&1 || need+=(isync)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v offlineimap >/dev/null 2>&1 || need+=(offlineimap3)
command -v neomutt >/dev/null 2>&1 || need+=(neomutt)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v clamd >/dev/null 2>&1 || need+=(clamav-daemon)
command -v fetchmail >/dev/null 2>&1 || need+=(fetchmail)
command -v sieve-connect >/dev/null 2>&1 || need+=(sieve-connect)
# fail2ban-regex: the documented filter (docs/fail2ban.md) run on a real server's log lines
command -v fail2ban-regex >/dev/null 2>&1 || need+=(fail2ban)
# Debian's chromium, driven by Playwright in the webmail tests (Playwright's own browsers are
# never downloaded)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Postfix: the receiving MX of the outbound tests, a private instance per test (tests/postfixmx.py);
# the package's own mail system stays unconfigured (preseeded below) and is never started
[ -x /usr/sbin/postfix ] || need+=(postfix)
# Dovecot: the reference IMAP server that tests/e2e/test_imap_reference.py runs the same RFC
# transcripts against (a private instance per module, tests/dovecotserver.py; the package's
# own service is never started)
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
# PostgreSQL: tests use the one on 127.0.0.1:5432, else start their own (scripts/postgres-up.sh)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 \
  || need+=(postgresql)
# NATS and Redis: private servers of the cluster tests (tests/natsserver.py, the Redis outage
# test), beside the machine's own on 4222 and 6379
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# S3: a private single-node Ceph radosgw, started once per test session by tests/s3.py
# (scripts/ceph-rgw-up.sh) unless $MAILYARD_TEST_S3_ENDPOINT names a running one
{ command -v radosgw >/dev/null 2>&1 && command -v ceph-osd >/dev/null 2>&1 \
  && command -v ceph-mon >/dev/null 2>&1; } || need+=(ceph-mon ceph-osd radosgw ceph-common)
if [ ${#need[@]} -gt 0 ]; then
  # One line per package, so a CI log shows what the machine lacked (nothing when all are present)
  printf 'test-deps: installing %s\n' "${need[@]}"
  preseed="postfix postfix/main_mailer_type select No configuration"
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    echo "$preseed" | debconf-set-selections
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null; }
  else
    echo "$preseed" | sudo -n debconf-set-selections
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
# sslyze for tests/e2e/test_tls_profile.py, in a venv of its own: sslyze 6 pins cryptography
# below the version Mailyard runs on (scripts/test-run.sh names it in MAILYARD_SSLYZE_PYTHON).
if [ ! -x .venv-sslyze/bin/sslyze ]; then
  echo "test-deps: installing sslyze into .venv-sslyze" >&2
  python3 -m venv .venv-sslyze
  .venv-sslyze/bin/python -m pip install --quiet 'sslyze>=6.3,<7'
fi
