#!/usr/bin/env bash
# Soak: mixed sysbench load (read/write prepared and text, read-only) plus PyMySQL ledger
# writers through a fork-mode corelay in front of a primary and two replicas (real
# replication, throwaway datadirs), with a fault every minute, in turn:
#   kill -9 a shard process; kill replica1 and restart it 15 s later; reload the
#   configuration (SIGHUP; replica2 and user sb2 leave or come back, weights change);
# and, once, halfway, a restart of the primary instead.
# Afterwards: every acknowledged ledger write is on the primary, fds and RSS of all
# corelay processes (sampled every 10 s, plotted), client errors by kind.
#
#   benches/soak.sh [--minutes N] [--out DIR]
set -euo pipefail
MINUTES=30
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$top/benches/results/soak-$(date -u +%Y-%m-%d)}
mkdir -p "$OUT"
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"
bench_setup soak
log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$work/faults.log"; }
stop_server() { kill "${MDB_PID[$1]}" 2>/dev/null || true; wait "${MDB_PID[$1]}" 2>/dev/null || true; }
kill_server() { kill -9 "${MDB_PID[$1]}" 2>/dev/null || true; wait "${MDB_PID[$1]}" 2>/dev/null || true; }
sql() { mdb_sql "$@"; }
mdb_start primary --server-id=1 --log-bin=mysql-bin --binlog-format=ROW
mdb_start replica1 --server-id=2 --skip-log-bin --relay-log=relay-bin
mdb_start replica2 --server-id=3 --skip-log-bin --relay-log=relay-bin
for r in replica1 replica2; do mdb_replicate $r primary ", MASTER_CONNECT_RETRY=1"; done
declare -A PORT
for s in primary replica1 replica2; do PORT[$s]=$(mdb_port $s); done
sql primary "CREATE TABLE sb.ledger (id BIGINT PRIMARY KEY, writer INT, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6));"

CR=$(free_port) ADMIN=$(free_port)
write_config() { # variant: a (both replicas, one user) or b (replica2 gone, user sb2 added, weights changed)
  local replica2="" user2="" w1=1
  if [ "$1" = a ]; then
    replica2="[[cluster.server]]
address = \"127.0.0.1:${PORT[replica2]}\"
role = \"replica\"
reconnect_interval_s = 2"
  else
    w1=3
    user2="[[user]]
name = \"sb2\"
password = \"sb2_pw\"
db_user = \"sb\""
  fi
  cat >"$work/corelay.toml.new" <<TOML
[proxy]
listen = "127.0.0.1:$CR"
admin_listen = "127.0.0.1:$ADMIN"
metrics_listen = ""
workers = 2
worker_mode = "fork"
log_level = "warn"
drain_timeout_s = 5
[[cluster]]
name = "c"
health_interval_ms = 500
monitor_user = "root"
[[cluster.server]]
address = "127.0.0.1:${PORT[primary]}"
role = "primary"
reconnect_interval_s = 1
[[cluster.server]]
address = "127.0.0.1:${PORT[replica1]}"
role = "replica"
weight = $w1
reconnect_interval_s = 2
$replica2
[[db_user]]
name = "sb"
password = "sb_pw"
cluster = "c"
default_db = "sb"
[[user]]
name = "sb"
password = "sb_pw"
db_user = "sb"
$user2
[[admin_user]]
name = "admin"
password = "admin_pw"
TOML
  mv "$work/corelay.toml.new" "$work/corelay.toml"
}
write_config a
"$top/target/release/corelay" --config "$work/corelay.toml" >"$work/corelay.log" 2>&1 &
CPID=$!
pids+=($CPID)
sleep 2
SB=("${SB_COMMON[@]}" --tables=4 --table-size=10000)
sysbench oltp_read_write "${SB[@]}" --mysql-port="${PORT[primary]}" --threads=4 prepare >/dev/null
sleep 2
SECONDS_TOTAL=$((MINUTES * 60))
t_start=$(date +%s)
t_end=$((t_start + SECONDS_TOTAL))

# sysbench 1.0.20 crashes when it reconnects after an ignored connection error, so a lost
# client connection (a killed shard) ends a run (FATAL) and the loop starts the next one;
# each run's end is recorded with its exit status and the error that ended it. Errors
# corelay answers while the session goes on (1927 backend lost, 1429 backend unreachable,
# 1053 server shutdown) and InnoDB's deadlock/lock-wait errors are ignored by sysbench
# (it retries the transaction) and counted by kind from its debug output.
stream() { # name script args...
  local name=$1; shift
  local n=0
  while [ "$(date +%s)" -lt "$((t_end - 2))" ]; do
    n=$((n + 1))
    local left=$((t_end - $(date +%s)))
    set +e
    sysbench "$@" "${SB[@]}" --mysql-port="$CR" --time="$left" --report-interval=10 \
      --mysql-ignore-errors=1213,1205,1020,1927,1429,1053 --verbosity=5 run >"$work/sb-$name.$n.txt" 2>&1
    local rc=$?
    set -e
    echo "$(date -u +%H:%M:%S) run $n exit $rc $(grep -m1 -E 'FATAL: .*(error|Error)' "$work/sb-$name.$n.txt" | sed 's/^.*FATAL: //' | cut -c1-120)" >>"$work/sb-$name.runs"
    [ $rc -ne 0 ] && sleep 1
  done
}
stream rw_ps oltp_read_write --threads=3 &
pids+=($!)
stream rw_text oltp_read_write --threads=3 --db-ps-mode=disable &
pids+=($!)
stream ro oltp_read_only --threads=2 --skip_trx=on &
pids+=($!)
python3 "$top/benches/soak.py" ledger "$CR" "$SECONDS_TOTAL" "$work/ledger.json" &
LEDGER=$!
pids+=($LEDGER)

# Every 10 s: descriptors and RSS of the master and its shard processes.
sample() {
  while [ "$(date +%s)" -lt "$t_end" ]; do
    local fds=0 rss=0
    for p in $CPID $(cat /proc/$CPID/task/*/children 2>/dev/null); do
      # A shard just killed may be a zombie: no descriptors, no VmRSS line.
      local f r
      f=$(ls /proc/$p/fd 2>/dev/null | wc -l)
      r=$(awk '/VmRSS/{print $2}' /proc/$p/status 2>/dev/null || true)
      fds=$((fds + ${f:-0}))
      rss=$((rss + ${r:-0}))
    done
    echo "$(date +%s) $fds $rss" >>"$work/samples.tsv"
    sleep 10
  done
}
sample &
pids+=($!)

com_select() { sql "$1" "SHOW GLOBAL STATUS LIKE 'Com_select'" | cut -f2; }
variant=a removed_at=""
for m in $(seq 1 $((MINUTES - 1))); do
  while [ "$(date +%s)" -lt "$((t_start + m * 60))" ]; do sleep 1; done
  if [ "$m" = $((MINUTES / 2)) ]; then
    log "minute $m: restart the primary (clean shutdown, start again)"
    stop_server primary; mdb_start primary
    continue
  fi
  case $((m % 3)) in
    1)
      victim=$(cat /proc/$CPID/task/*/children | awk '{print $1}')
      log "minute $m: kill -9 shard process $victim"
      kill -9 "$victim" ;;
    2)
      log "minute $m: kill -9 replica1; restart it in 15 s"
      kill_server replica1; sleep 15; mdb_start replica1; log "minute $m: replica1 back" ;;
    0)
      if [ $variant = a ]; then variant=b; else variant=a; fi
      if [ $variant = a ] && [ -n "$removed_at" ]; then
        log "minute $m: replica2 got $(( $(com_select replica2) - removed_at )) SELECTs while removed"
      fi
      write_config $variant
      kill -HUP "$CPID"
      log "minute $m: reload (SIGHUP) to variant $variant ($([ $variant = b ] && echo 'replica2 and weight 1 out, user sb2 in, replica1 weight 3' || echo 'replica2 back, sb2 out'))"
      if [ $variant = b ]; then sleep 3; removed_at=$(com_select replica2); fi ;;
  esac
done
wait "$LEDGER" || true
sleep 5
mariadb --no-defaults -h127.0.0.1 -P"$ADMIN" -uadmin -padmin_pw -e 'SHOW SHARDS; SHOW STATS' >"$work/admin.txt" 2>&1 || true

{
  echo "# corelay soak, $MINUTES minutes ($(date -u +%Y-%m-%d), $(nproc) CPUs)"
  echo
  echo '```'
  cat "$work/faults.log"
  echo '```'
  echo
  echo "## Ledger (PyMySQL, 4 writers, 4 readers)"
  echo '```'
  python3 "$top/benches/soak.py" verify "$work/primary.sock" "$work/ledger.json" || true
  echo '```'
  echo
  echo "## sysbench streams (runs end at a connection error; the loop starts the next)"
  for s in rw_ps rw_text ro; do
    echo "### $s"
    echo '```'
    runs=$(wc -l <"$work/sb-$s.runs")
    echo "runs: $runs"
    awk '{ $1 = $2 = $3 = ""; print }' "$work/sb-$s.runs" | sed 's/^ *//' | sort | uniq -c | sort -rn
    # A run that ends at an error prints no totals: add up its 10-second reports instead.
    read -r tx q err < <(cat "$work"/sb-$s.*.txt | awk '/^\[ *[0-9]+s \]/ {
        for (i = 1; i <= NF; i++) { if ($i == "tps:") t += $(i+1) * 10; if ($i == "qps:") q += $(i+1) * 10; if ($i == "err/s:") e += $(i+1) * 10 }
      } END { printf "%.0f %.0f %.0f\n", t, q, e }')
    ign=$(cat "$work"/sb-$s.*.txt | grep -c 'Ignoring error' || true)
    echo "transactions: $tx  queries: $q (from the 10 s reports; err/s x 10: $err)  ignored errors: $ign, by kind:"
    cat "$work"/sb-$s.*.txt | grep -o 'Ignoring error [0-9]* [^,]*' | cut -c1-110 | sort | uniq -c | sort -rn
    echo '```'
  done
  echo
  echo "## Descriptors and RSS (master + shards, every 10 s)"
  echo '```'
  awk 'NR==1{f0=$2; r0=$3} {if($2>fm)fm=$2; if($3>rm)rm=$3; f=$2; r=$3} END{printf "first: %d fds, %d KiB; last: %d fds, %d KiB; max: %d fds, %d KiB; samples: %d\n", f0, r0, f, r, fm, rm, NR}' "$work/samples.tsv"
  echo '```'
  echo
  echo "## corelay at the end"
  echo '```'
  cat "$work/admin.txt"
  echo '```'
  echo "## corelay log (warnings and errors, counted)"
  echo '```'
  sed -E 's/^[0-9T:.Z-]+ +//; s/[0-9]+/N/g' "$work/corelay.log" | sort | uniq -c | sort -rn | head -40
  echo '```'
} >"$OUT/summary.md"
cp "$work/samples.tsv" "$OUT/samples.tsv"
# The raw sysbench outputs and the ledger's error list, for whoever wants to look closer.
tar -czf "$OUT/raw.tar.gz" -C "$work" $(cd "$work" && ls sb-* faults.log corelay.log 2>/dev/null)
python3 "$top/benches/soak.py" plot "$work/samples.tsv" "$OUT/fds-rss.svg"
cat "$OUT/summary.md"
