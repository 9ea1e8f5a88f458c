#!/bin/sh
# Start a private Dovecot (Debian's dovecot-imapd) for bench/imap_load.py only: its own config
# file, IMAP on 127.0.0.1 at a free port, maildir in a fresh directory, one passwd-file user,
# no SSL, no FTS plugin, plaintext LOGIN allowed (loopback only). A normal process (no systemd);
# bench/dovecot-down.sh stops it. Nothing in the test suite uses it.
#
#   apt-get install -y dovecot-imapd       # once, as root (the package's service is not used)
#   bench/dovecot-up.sh                     # prints the port, user and password; writes $DIR/env
#   .venv/bin/python bench/imap_load.py --mode imaptest-mix --port PORT --user U --password P
#   bench/dovecot-down.sh
#
# DOVECOT_BENCH_DIR (default /tmp/mailyard-dovecot-bench) holds everything; it is wiped and
# recreated, so every start is an empty mailbox. DOVECOT_BENCH_PORT picks the port (default: a
# free one). Run as root: Dovecot's master drops to the `dovecot`/`dovenull` users (created by
# the package) and the mail processes run as `nobody`, who owns the maildir.
set -eu

DIR=${DOVECOT_BENCH_DIR:-/tmp/mailyard-dovecot-bench}
USER_NAME=${DOVECOT_BENCH_USER:-bench@example.test}
PASSWORD=${DOVECOT_BENCH_PASSWORD:-bench-password-123}
MAIL_USER=nobody
MAIL_GROUP=nogroup

command -v dovecot >/dev/null || { echo "dovecot not installed: apt-get install -y dovecot-imapd" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (dovecot's master needs it)" >&2; exit 1; }

if [ -f "$DIR/run/master.pid" ] && kill -0 "$(cat "$DIR/run/master.pid")" 2>/dev/null; then
    echo "already running (pid $(cat "$DIR/run/master.pid")); bench/dovecot-down.sh first" >&2
    exit 1
fi

PORT=${DOVECOT_BENCH_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
UID_=$(id -u "$MAIL_USER")
GID_=$(getent group "$MAIL_GROUP" | cut -d: -f3)

rm -rf "$DIR"
mkdir -p "$DIR/run" "$DIR/state" "$DIR/mail"
chmod 755 "$DIR"
chown "$MAIL_USER:$MAIL_GROUP" "$DIR/mail"
printf '%s:{PLAIN}%s::::::\n' "$USER_NAME" "$PASSWORD" > "$DIR/passwd"
chmod 644 "$DIR/passwd"

cat > "$DIR/dovecot.conf" <<EOF
# Written by bench/dovecot-up.sh: a private Dovecot for the IMAP benchmark.
instance_name = mailyard-bench
protocols = imap
listen = 127.0.0.1
base_dir = $DIR/run
state_dir = $DIR/state
log_path = $DIR/dovecot.log
info_log_path = $DIR/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = 127.0.0.1/32
mail_location = maildir:$DIR/mail/%u/Maildir
mail_privileged_group =
first_valid_uid = $UID_
mail_max_userip_connections = 100000
mail_plugins =

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DIR/passwd
}
userdb {
  driver = static
  args = uid=$UID_ gid=$GID_ home=$DIR/mail/%u
}

namespace inbox {
  inbox = yes
  separator = /
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service imap {
  process_limit = 1024
}
service anvil {
  chroot =
}
EOF

dovecot -c "$DIR/dovecot.conf"
for _ in $(seq 50); do
    python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1', $PORT), 1); sys.exit(0 if s.recv(100).startswith(b'* OK') else 1)" 2>/dev/null && break
    sleep 0.1
done
python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1', $PORT), 1); sys.exit(0 if s.recv(100).startswith(b'* OK') else 1)" \
    || { echo "dovecot did not answer on $PORT; see $DIR/dovecot.log" >&2; exit 1; }

cat > "$DIR/env" <<EOF
DOVECOT_PORT=$PORT
DOVECOT_USER=$USER_NAME
DOVECOT_PASSWORD=$PASSWORD
DOVECOT_PID=$(cat "$DIR/run/master.pid")
DOVECOT_CONF=$DIR/dovecot.conf
EOF
echo "dovecot $(dovecot --version) up: 127.0.0.1:$PORT user $USER_NAME password $PASSWORD" \
     "(pid $(cat "$DIR/run/master.pid"), config $DIR/dovecot.conf, env $DIR/env)"
