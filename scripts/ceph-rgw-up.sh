#!/usr/bin/env bash
# Starts a private single-node Ceph with an S3 gateway (radosgw) for the tests and prints how to
# reach it, as one JSON line on stdout (the last line):
#
#   scripts/ceph-rgw-up.sh DIR     {"endpoint": "http://127.0.0.1:PORT", "access_key": "...",
#                                   "secret_key": "...", "dir": "DIR"}
#   scripts/ceph-rgw-down.sh DIR   stops it and removes DIR
#
# One monitor, one BlueStore OSD on a sparse file in DIR, and radosgw on a free loopback port,
# with cephx on (radosgw refuses auth "none"); no manager (the gateway does not need one and it
# costs seconds and memory). An S3 user with fresh random keys is made with radosgw-admin.
# Everything lives in DIR and listens on 127.0.0.1 only; nothing else of the machine is touched.
# Installs Debian's ceph-mon ceph-osd radosgw ceph-common when missing (non-interactive, as
# scripts/test-deps.sh does). Ready in ~15 s; the first PUT waits ~2 s while pools are made.
# Progress and the daemons' complaints go to stderr and DIR/log/.
set -euo pipefail

dir=${1:?usage: ceph-rgw-up.sh DIR}

if ! command -v radosgw >/dev/null 2>&1 || ! command -v ceph-mon >/dev/null 2>&1 \
    || ! command -v ceph-osd >/dev/null 2>&1 || ! command -v radosgw-admin >/dev/null 2>&1; then
  pkgs=(ceph-mon ceph-osd radosgw ceph-common)
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq "${pkgs[@]}" >/dev/null; }
  else
    sudo -n apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -rf "$dir/mon.a" "$dir/osd.0" "$dir/osd.0.block" "$dir/rgw.a" "$dir/run" "$dir/log" \
  "$dir/monmap" "$dir/keyring"
mkdir -p "$dir/run" "$dir/log" "$dir/mon.a" "$dir/osd.0" "$dir/rgw.a"
mon_port=$(free_port)
rgw_port=$(free_port)
fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')

cat >"$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port
public_network = 127.0.0.0/8
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = $dir/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 5
osd_crush_chooseleaf_type = 0
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
log_file = $dir/log/\$name.log
pid_file = $dir/run/\$name.pid
[mon]
mon_data = $dir/mon.\$id
mon_allow_pool_delete = true
[osd]
osd_data = $dir/osd.\$id
osd_objectstore = bluestore
bluestore_block_path = $dir/osd.\$id.block
bluestore_block_create = true
bluestore_block_size = 10737418240
osd_memory_target = 939524096
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw_data = $dir/rgw.a
rgw_dns_name = 127.0.0.1
CONF
export CEPH_CONF=$dir/ceph.conf
key=$dir/keyring

step() { echo "ceph-rgw-up: $*" >&2; }

{
  ceph-authtool --create-keyring "$key" --gen-key -n mon. --cap mon 'allow *'
  ceph-authtool "$key" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *'
  ceph-authtool "$key" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' \
    --cap mgr 'allow profile osd'
  ceph-authtool "$key" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' \
    --cap mgr 'allow rw'
  monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap"
} >"$dir/log/setup.log" 2>&1

step "monitor on 127.0.0.1:$mon_port"
ceph-mon --mkfs -i a --monmap "$dir/monmap" --keyring "$key" >>"$dir/log/setup.log" 2>&1
ceph-mon -i a 2>>"$dir/log/setup.log"
for _ in $(seq 1 100); do
  ceph -s --connect-timeout 2 >/dev/null 2>&1 && break
  sleep 0.2
done

step "OSD (BlueStore on a sparse file)"
osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
osd_id=$(ceph osd new "$osd_uuid" 2>>"$dir/log/setup.log")
ceph-osd -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/setup.log" 2>&1
ceph-osd -i "$osd_id" 2>>"$dir/log/setup.log"
up=""
for _ in $(seq 1 240); do
  if ceph osd stat 2>/dev/null | grep -q "1 up"; then up=1; break; fi
  sleep 0.25
done
[ -n "$up" ] || { step "the OSD did not come up"; tail -20 "$dir/log/osd.0.log" >&2; exit 3; }

step "radosgw on 127.0.0.1:$rgw_port"
radosgw -n client.rgw.a 2>>"$dir/log/setup.log"
ready=""
for _ in $(seq 1 240); do
  code=$(curl -s -m 2 -o /dev/null -w "%{http_code}" "http://127.0.0.1:$rgw_port/" 2>/dev/null \
    || true)
  if [ "$code" = 200 ]; then ready=1; break; fi
  pid=$(cat "$dir/run/client.rgw.a.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.25
done
[ -n "$ready" ] || { step "radosgw did not answer"; tail -20 "$dir/log/client.rgw.a.log" >&2; exit 3; }

access=$(python3 -c 'import secrets, string; a = string.ascii_uppercase + string.digits; print("".join(secrets.choice(a) for _ in range(20)))')
secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(30))')
radosgw-admin user create --uid=mailyard --display-name=mailyard \
  --access-key="$access" --secret-key="$secret" >>"$dir/log/setup.log" 2>&1

printf '{"endpoint": "http://127.0.0.1:%s", "access_key": "%s", "secret_key": "%s", "dir": "%s"}\n' \
  "$rgw_port" "$access" "$secret" "$dir"
