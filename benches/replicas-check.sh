#!/usr/bin/env bash
# Read/write splitting under load, with real replication: one primary and two replicas
# (throwaway datadirs), a release corelay in front, sysbench through it.
#
#   benches/replicas-check.sh [--time SECONDS] [--threads N]
#
# 1. oltp_read_write (prepared) through corelay: exit status, and how Com_select grew on the
#    replicas and Com_insert/Com_update on the primary.
# 2. oltp_read_only while one replica is stopped halfway: errors reported by sysbench.
# 3. Both replicas stopped: reads served by the primary. Restarted: they get reads again.
set -euo pipefail
TIME=60 THREADS=32
while [ $# -gt 0 ]; do
  case "$1" in
    --time) TIME=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"
bench_setup repl
mdb_start primary --server-id=1 --log-bin=mysql-bin --binlog-format=ROW
for r in replica1 replica2; do
  mdb_start $r --server-id=$([ $r = replica1 ] && echo 2 || echo 3) --skip-log-bin
  mdb_replicate $r primary
done
declare -A PORT
for s in primary replica1 replica2; do PORT[$s]=$(mdb_port $s); done
sql() { mdb_sql "$@"; }
CR=$(free_port)
cat >"$work/corelay.toml" <<TOML
[proxy]
listen = "127.0.0.1:$CR"
admin_listen = "127.0.0.1:$(free_port)"
metrics_listen = "127.0.0.1:$(free_port)"
log_level = "warn"
[[cluster]]
name = "c"
health_interval_ms = 500
# No read-your-writes window here, so that autocommit reads right after writes may use replicas.
write_time_interval_ms = 0
[[cluster.server]]
address = "127.0.0.1:${PORT[primary]}"
role = "primary"
[[cluster.server]]
address = "127.0.0.1:${PORT[replica1]}"
role = "replica"
reconnect_interval_s = 2
[[cluster.server]]
address = "127.0.0.1:${PORT[replica2]}"
role = "replica"
reconnect_interval_s = 2
[[db_user]]
name = "sb"
password = "sb_pw"
cluster = "c"
default_db = "sb"
[[user]]
name = "sb"
password = "sb_pw"
db_user = "sb"
TOML
"$top/target/release/corelay" --config "$work/corelay.toml" >"$work/corelay.log" 2>&1 &
pids+=($!)
SB=("${SB_COMMON[@]}" --tables=4 --table-size=10000)
sysbench oltp_read_write "${SB[@]}" --mysql-port="${PORT[primary]}" --threads=4 prepare >/dev/null
sleep 3
status() { sql "$1" "SHOW GLOBAL STATUS LIKE '$2'" | cut -f2; }
before=$(for s in primary replica1 replica2; do echo "$(status $s Com_select) $(status $s Com_insert) $(status $s Com_update)"; done)
echo "## 1. oltp_read_write, prepared, $THREADS threads, ${TIME}s through corelay"
set +e
sysbench oltp_read_write "${SB[@]}" --mysql-port="$CR" --threads="$THREADS" --time="$TIME" run >"$work/rw.txt" 2>&1
echo "exit status: $?"
set -e
grep -E "transactions:|ignored errors|FATAL" "$work/rw.txt" | head -5
after=$(for s in primary replica1 replica2; do echo "$(status $s Com_select) $(status $s Com_insert) $(status $s Com_update)"; done)
paste <(echo "$before") <(echo "$after") | awk 'BEGIN{split("primary replica1 replica2",n," ")} {printf "%-9s Com_select +%d  Com_insert +%d  Com_update +%d\n", n[NR], $4-$1, $5-$2, $6-$3}'
echo "## 1b. without BEGIN/COMMIT (--skip_trx=on; concurrent DELETE+INSERT of one id gives 1062, ignored): autocommit reads use replicas"
before=$(for s in primary replica1 replica2; do echo "$(status $s Com_select) $(status $s Com_insert) $(status $s Com_update)"; done)
set +e
sysbench oltp_read_write "${SB[@]}" --mysql-port="$CR" --threads="$THREADS" --time=20 --skip_trx=on --mysql-ignore-errors=1062 run >"$work/rw2.txt" 2>&1
echo "exit status: $?"
set -e
grep -E "transactions:|ignored errors|FATAL" "$work/rw2.txt" | head -5
after=$(for s in primary replica1 replica2; do echo "$(status $s Com_select) $(status $s Com_insert) $(status $s Com_update)"; done)
paste <(echo "$before") <(echo "$after") | awk 'BEGIN{split("primary replica1 replica2",n," ")} {printf "%-9s Com_select +%d  Com_insert +%d  Com_update +%d\n", n[NR], $4-$1, $5-$2, $6-$3}'
echo "## 2. oltp_read_only, replica1 stopped halfway"
set +e
sysbench oltp_read_only "${SB[@]}" --mysql-port="$CR" --threads="$THREADS" --time=20 run >"$work/ro.txt" 2>&1 &
sbpid=$!
sleep 10; kill "${MDB_PID[replica1]}"; wait "$sbpid"; echo "exit status: $?"
set -e
grep -E "queries:|ignored errors|FATAL" "$work/ro.txt" | head -5
echo "## 3. both replicas stopped, then replica2 restarted"
kill "${MDB_PID[replica2]}"; sleep 2
p0=$(status primary Com_select)
sysbench oltp_point_select "${SB[@]}" --mysql-port="$CR" --threads=4 --time=5 run 2>&1 | grep -E "queries:|FATAL|errors:" | head -3
echo "primary Com_select +$(( $(status primary Com_select) - p0 ))"
mdb_start replica2
sleep 3
r0=$(status replica2 Com_select)
sysbench oltp_point_select "${SB[@]}" --mysql-port="$CR" --threads=4 --time=5 run 2>&1 | grep -E "queries:|FATAL|errors:" | head -3
echo "replica2 Com_select after restart +$(( $(status replica2 Com_select) - r0 ))"
echo "## 4. SIGHUP during oltp_read_only (--skip_trx): replica2 removed, user sb2 added"
sleep 3
cp "$work/corelay.toml" "$work/corelay.toml.orig"
python3 - "$work/corelay.toml" "${PORT[replica2]}" <<'PY'
import sys
path, port = sys.argv[1], sys.argv[2]
text = open(path).read()
block = f'[[cluster.server]]\naddress = "127.0.0.1:{port}"\nrole = "replica"\nreconnect_interval_s = 2\n'
assert block in text
text = text.replace(block, "") + '\n[[user]]\nname = "sb2"\npassword = "sb2_pw"\ndb_user = "sb"\n'
open(path, "w").write(text)
PY
set +e
sysbench oltp_read_only "${SB[@]}" --mysql-port="$CR" --threads="$THREADS" --time=20 --skip_trx=on run >"$work/hup.txt" 2>&1 &
sbpid=$!
sleep 8
kill -HUP "$(pgrep -f "corelay --config $work/corelay.toml")"
sleep 2
r2=$(status replica2 Com_select)
mariadb --no-defaults -h127.0.0.1 -P"$CR" -usb2 -psb2_pw -N -e 'SELECT CONCAT("new user sb2 logged in as ", CURRENT_USER())'
wait "$sbpid"; echo "sysbench exit status: $?"
set -e
grep -E "queries:|ignored errors|FATAL" "$work/hup.txt" | head -5
echo "after the reload: replica2 Com_select +$(( $(status replica2 Com_select) - r2 )) (replica1 is still stopped from step 2: reads go to the primary)"
grep -E "SIGHUP|configuration version" "$work/corelay.log" | sed 's/^[^ ]* *//' | head -5 || true
