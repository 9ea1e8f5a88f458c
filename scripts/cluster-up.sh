#!/usr/bin/env bash
# Starts a whole Mailyard cluster on loopback (issue 21) and prints how to use it:
#
#   scripts/cluster-up.sh [DIR]      (DIR: ./.cluster; `make cluster`)
#   scripts/cluster-down.sh [DIR]    stops everything this started (`make cluster-down`)
#
# - NATS: three nats-server processes routed into one cluster, JetStream on each (the queue
#   with replicas = 3, and the account events), on free ports;
# - PostgreSQL: two shard databases (mailyard_cluster_s0, _s1) on the machine's server at
#   127.0.0.1:5432 when it answers, else on a private one (scripts/postgres-up.sh);
# - Redis: the machine's at 127.0.0.1:6379 when it answers, else a private redis-server;
# - S3: a private Ceph radosgw (scripts/ceph-rgw-up.sh, ~20 s) when BLOBS=s3 (the default
#   where Ceph is installed); BLOBS=fs instead links every node's blob directory to one
#   shared directory (one machine standing in for a bucket);
# - three `mailyard serve` nodes, a, b and c, each with its own config (DIR/a/mailyard.toml)
#   and ports, and nothing of its own but its data_dir's TLS certificate and logs.
# Everything listens on 127.0.0.1 only. Pids go to DIR/pids, logs to DIR/*/*.log.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${1:-$root/.cluster}")
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "cluster-up: run \`make install\` first (no $py)" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "cluster-up: nats-server is not installed" >&2; exit 1; }
[ -e "$dir/pids" ] && { echo "cluster-up: $dir is running; scripts/cluster-down.sh first" >&2; exit 1; }
mkdir -p "$dir"
: > "$dir/pids"
step() { echo "cluster-up: $*" >&2; }
# Every port this script needs, distinct and free now, from 10000-19999: below the kernel's
# ephemeral range (where clients' source ports, and so collisions, come from) and the test
# suite's port ranges (tests/e2e/server.py). port() hands them out in turn.
read -r -a ports <<< "$("$py" - <<'PY'
import random, socket
held, out = [], []
while len(out) < 30:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(10000, 20000)))
    except OSError:
        s.close()
        continue
    held.append(s)
    out.append(str(s.getsockname()[1]))
print(" ".join(out))
PY
)"
next_port=0
take() { REPLY=${ports[$next_port]}; next_port=$((next_port + 1)); }
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "cluster-up: nothing listens on $1 ($2)" >&2; exit 1
}

# ------------------------------------------------------------------------------------- NATS
step "NATS: three servers with JetStream"
routes=()
for _ in 1 2 3; do take; routes+=("$REPLY"); done
nats_urls=()
for n in 1 2 3; do
  take; client=$REPLY
  nats_urls+=("nats://127.0.0.1:$client")
  mkdir -p "$dir/nats/n$n"
  cat > "$dir/nats/n$n.conf" <<CONF
server_name: n$n
listen: 127.0.0.1:$client
jetstream { store_dir: "$dir/nats/n$n", max_memory_store: 256MB, max_file_store: 4GB }
cluster {
  name: mailyard-cluster
  listen: 127.0.0.1:${routes[$((n - 1))]}
  routes: [ nats-route://127.0.0.1:${routes[0]}, nats-route://127.0.0.1:${routes[1]}, nats-route://127.0.0.1:${routes[2]} ]
}
CONF
  nohup nats-server -c "$dir/nats/n$n.conf" >"$dir/nats/n$n.log" 2>&1 &
  echo "$! nats-n$n" >> "$dir/pids"
done
for url in "${nats_urls[@]}"; do wait_port "${url##*:}" nats; done
"$py" - "${nats_urls[@]}" <<'PY'
import asyncio, sys, time
import nats

async def main(urls):
    deadline = time.monotonic() + 60
    while True:  # JetStream answers once the servers have elected a meta leader
        try:
            nc = await nats.connect(urls, connect_timeout=1, max_reconnect_attempts=0)
            try:
                await nc.jsm(timeout=2).account_info()
                return
            finally:
                await nc.close()
        except Exception as e:
            if time.monotonic() > deadline:
                sys.exit(f"cluster-up: JetStream not ready: {e}")
            await asyncio.sleep(0.3)

asyncio.run(main(sys.argv[1:]))
PY

# ------------------------------------------------------------------------------- PostgreSQL
if "$py" -c 'import asyncio, asyncpg; asyncio.run(asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=3))' 2>/dev/null; then
  pg_admin="postgresql://postgres@127.0.0.1:5432/postgres"
  step "PostgreSQL: the machine's, 127.0.0.1:5432"
else
  step "PostgreSQL: a private server (scripts/postgres-up.sh)"
  pg_admin=$("$root/scripts/postgres-up.sh" "$dir/postgres" | tail -1)
  echo "postgres $dir/postgres" >> "$dir/pids"
fi
shards=$("$py" - "$pg_admin" <<'PY'
import asyncio, sys
import asyncpg
from urllib.parse import urlsplit, urlunsplit

async def main(admin):
    conn = await asyncpg.connect(admin)
    dsns = []
    try:
        for n in (0, 1):
            name = f"mailyard_cluster_s{n}"
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
            dsns.append(urlunsplit(urlsplit(admin)._replace(path="/" + name)))
    finally:
        await conn.close()
    print(", ".join(f'"{d}"' for d in dsns))

asyncio.run(main(sys.argv[1]))
PY
)

# ------------------------------------------------------------------------------------ Redis
if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  redis_url="redis://127.0.0.1:6379/0"
  step "Redis: the machine's, 127.0.0.1:6379"
else
  take; rport=$REPLY
  mkdir -p "$dir/redis"
  nohup redis-server --port "$rport" --bind 127.0.0.1 --dir "$dir/redis" --save "" \
    >"$dir/redis/redis.log" 2>&1 &
  echo "$! redis" >> "$dir/pids"
  wait_port "$rport" redis
  redis_url="redis://127.0.0.1:$rport/0"
  step "Redis: a private server on $rport"
fi

# --------------------------------------------------------------------------------------- S3
blobs=${BLOBS:-$(command -v radosgw >/dev/null && echo s3 || echo fs)}
store_s3=""
if [ "$blobs" = s3 ]; then
  step "S3: a private Ceph radosgw (scripts/ceph-rgw-up.sh, ~20 s)"
  rgw=$("$root/scripts/ceph-rgw-up.sh" "$dir/ceph" | tail -1)
  echo "ceph $dir/ceph" >> "$dir/pids"
  store_s3=$("$py" -c 'import json, sys; g = json.loads(sys.argv[1]); print(f"""blobs = "s3://mailyard-cluster"
[store.s3]
endpoint = "{g["endpoint"]}"
access_key = "{g["access_key"]}"
secret_key = "{g["secret_key"]}\"""")' "$rgw")
else
  step "S3: none; the nodes share $dir/blobs (BLOBS=fs)"
  mkdir -p "$dir/blobs"
fi

# ---------------------------------------------------------------------------- Mailyard nodes
nats_list=$(printf '"%s", ' "${nats_urls[@]}"); nats_list="[${nats_list%, }]"
declare -A smtp imap http submission pop3
for node in a b c; do
  take; smtp[$node]=$REPLY; take; imap[$node]=$REPLY; take; http[$node]=$REPLY
  take; submission[$node]=$REPLY; take; pop3[$node]=$REPLY
  mkdir -p "$dir/$node/data"
  if [ "$blobs" = fs ] && [ ! -e "$dir/$node/data/blobs" ]; then
    ln -s "$dir/blobs" "$dir/$node/data/blobs"
  fi
  cat > "$dir/$node/mailyard.toml" <<TOML
# Node $node of the loopback cluster made by scripts/cluster-up.sh.
data_dir = "$dir/$node/data"
hostname = "mx-$node.example.test"
domains = ["example.test"]

[listen]
smtp = "127.0.0.1:${smtp[$node]}"
submission = "127.0.0.1:${submission[$node]}"
submissions = ""
imap = "127.0.0.1:${imap[$node]}"
imaps = ""
pop3 = "127.0.0.1:${pop3[$node]}"
pop3s = ""
http = "127.0.0.1:${http[$node]}"

[auth]
plaintext_on_loopback = true

[store]
metadata = [$shards]
search = "postgresql"
counters = "$redis_url"
$store_s3

[cluster]
node = "$node"
nats = $nats_list
queue = "nats"
events = "nats"
replicas = 3
TOML
done
# One node makes the schemas first, so three do not race to create them.
MAILYARD_CONFIG="$dir/a/mailyard.toml" "$root/.venv/bin/mailyard" domain add example.test >/dev/null 2>&1 || true
for node in a b c; do
  step "mailyard node $node"
  nohup "$root/.venv/bin/mailyard" --config "$dir/$node/mailyard.toml" serve \
    >"$dir/$node/serve.log" 2>&1 &
  echo "$! mailyard-$node" >> "$dir/pids"
done
for node in a b c; do
  for _ in $(seq 1 600); do
    grep -q "mailyard: serving" "$dir/$node/serve.log" && break
    kill -0 "$(grep " mailyard-$node\$" "$dir/pids" | cut -d' ' -f1)" 2>/dev/null \
      || { cat "$dir/$node/serve.log" >&2; echo "cluster-up: node $node died" >&2; exit 1; }
    sleep 0.1
  done
done

cat <<EOF

Mailyard cluster up in $dir (stop: scripts/cluster-down.sh $dir, or make cluster-down)

  NATS JetStream:  ${nats_urls[*]}
  PostgreSQL:      $shards
  Redis:           $redis_url
  blobs:           $([ "$blobs" = s3 ] && echo "Ceph radosgw, bucket mailyard-cluster" || echo "$dir/blobs")

  node  SMTP   submission  IMAP   POP3   HTTP (JMAP)   config
EOF
for node in a b c; do
  printf '  %-5s %-6s %-11s %-6s %-6s %-13s %s\n' "$node" "${smtp[$node]}" "${submission[$node]}" \
    "${imap[$node]}" "${pop3[$node]}" "${http[$node]}" "$dir/$node/mailyard.toml"
done
cat <<EOF

Try it (any node sees what another did):
  export MAILYARD_CONFIG=$dir/a/mailyard.toml
  .venv/bin/mailyard user add alice@example.test
  swaks --server 127.0.0.1:${smtp[a]} --to alice@example.test        # in through node a
  curl -u alice@example.test 'imap://127.0.0.1:${imap[b]}/INBOX;MAILINDEX=1'   # read on node b
  .venv/bin/mailyard queue stats                                       # the one JetStream queue
EOF
