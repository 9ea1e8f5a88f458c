#!/bin/sh
# Stop the private Dovecot started by bench/dovecot-up.sh (its master pid, nothing else).
# The directory is kept (log, maildir) until the next dovecot-up.sh; --wipe removes it.
set -eu

DIR=${DOVECOT_BENCH_DIR:-/tmp/mailyard-dovecot-bench}
PIDFILE="$DIR/run/master.pid"

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    PID=$(cat "$PIDFILE")
    dovecot -c "$DIR/dovecot.conf" stop 2>/dev/null || kill "$PID"
    for _ in $(seq 50); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PID" 2>/dev/null; then
        echo "dovecot (pid $PID) still running" >&2
        exit 1
    fi
    echo "dovecot (pid $PID) stopped"
else
    echo "no dovecot running from $DIR"
fi
if [ "${1:-}" = "--wipe" ]; then
    rm -rf "$DIR"
fi
