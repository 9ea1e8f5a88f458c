#!/usr/bin/env bash
# Starts a clamd for tests on loopback, with a local signature database that holds only the
# EICAR test signature (no signatures ship with the package and none are downloaded).
# usage: scripts/clamd-up.sh DIR PORT   -> clamd in the foreground of its own process;
#        its pid in DIR/clamd.pid, its socket at DIR/clamd.sock and 127.0.0.1:PORT.
set -euo pipefail
dir=$(realpath -m "$1")
port=$2
mkdir -p "$dir/db"
# MD5 of the 68-byte EICAR file, and its body as a hex body signature (ClamAV .hdb / .ndb).
echo "44d88612fea8a8f36de82e1278abb02f:68:Local.EICAR.HDB" > "$dir/db/local.hdb"
echo "Local.EICAR.NDB:0:*:45494341522d5354414e444152442d414e544956495255532d544553542d46494c45" \
  > "$dir/db/local.ndb"
cat > "$dir/clamd.conf" <<CONF
DatabaseDirectory $dir/db
LocalSocket $dir/clamd.sock
TCPSocket $port
TCPAddr 127.0.0.1
Foreground yes
LogFile $dir/clamd.log
PidFile $dir/clamd.pid
StreamMaxLength 50M
ScanArchive yes
CONF
if [ "$(id -u)" = 0 ]; then
  echo "User root" >> "$dir/clamd.conf"
fi
exec clamd -c "$dir/clamd.conf"
