#!/usr/bin/env bash
# Many-core scaling run, for a host without package access (packed by
# ../shared/tools/bench-kit.sh target/release/corelay into .kit/).
#
#   ../shared/tools/bench-kit.sh target/release/corelay     # here, once
#   bash benches/scaling.sh [SECONDS] > scaling.txt          # there, from the repo root
#
# Against one MariaDB on the same host: sysbench oltp_point_select (text protocol), 256
# client threads, direct, through HAProxy (nbthread 8), and through corelay with 1, 2, 4
# and 8 shards pinned to CPUs 8-15 (sysbench and MariaDB get the rest). Prints QPS per
# target, corelay/direct, and the scaling efficiency QPS(n) / (n x QPS(1)). Each corelay
# has a pool of 32 backend connections per shard.
set -uo pipefail
T=${1:-8}
source .kit/bench-env.sh
mdb_up
sb_prepare 8 100000
cat >/tmp/corelay.toml <<'TOML'
[proxy]
admin_listen = ""
metrics_listen = ""
worker_mode = "thread"
max_client_connections = 10000
[[cluster]]
name = "main"
[[cluster.server]]
address = "127.0.0.1:3306"
role = "primary"
max_connections = 512
[[db_user]]
name = "app"
password = "app_pw"
cluster = "main"
default_db = "sb"
[[user]]
name = "app"
password = "app_pw"
db_user = "app"
TOML
echo "target	QPS"
direct=$(sb_qps 3306 256 oltp_point_select disable "$T")
echo "direct	$direct"
hap_up 4000 8
echo "haproxy-8	$(sb_qps 4000 256 oltp_point_select disable "$T")"
kill "$(cat /tmp/h-4000.pid)" 2>/dev/null
declare -A Q
for n in 1 2 4 8; do
  cpus=$(seq -s, 8 $((8 + n - 1)))
  .kit/corelay --config /tmp/corelay.toml --listen 127.0.0.1:6033 --workers "$n" --cpus "$cpus" \
    --log-level warn >/tmp/corelay-$n.log 2>&1 &
  pid=$!
  sleep 1
  Q[$n]=$(sb_qps 6033 256 oltp_point_select disable "$T")
  echo "corelay-$n	${Q[$n]}	cpu_s=$(awk '{print ($14+$15)/100}' /proc/$pid/stat)"
  kill "$pid"; wait "$pid" 2>/dev/null
done
echo
echo "shards	QPS	x direct	efficiency"
for n in 1 2 4 8; do
  awk -v n="$n" -v q="${Q[$n]}" -v q1="${Q[1]}" -v d="$direct" \
    'BEGIN { printf "%d\t%.0f\t%.2f\t%.2f\n", n, q, q / d, q / (n * q1) }'
done
