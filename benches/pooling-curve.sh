#!/usr/bin/env bash
# The pooling curve: sysbench oltp_read_only at 16, 64, 256 and 1024 client threads,
# directly against MariaDB (one server thread per client) and through corelay with a pool
# of 16 backend connections for the whole proxy (clients queue in corelay for a connection
# while a transaction holds one), HAProxy alongside for reference. Same run, order rotating.
#
#   benches/pooling-curve.sh [--reps N] [--time S] [--threads "16 64 256 1024"] [--pool 16]
#                            [--corelay-args "FLAGS"] [--out FILE]
set -euo pipefail
REPS=3 TIME=10 THREADS="16 64 256 1024" POOL=16 CARGS="" OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --time) TIME=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --pool) POOL=$2; shift 2 ;;
    --corelay-args) CARGS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"
bench_setup pooling
mdb_start main
DB=$(mdb_port main)
sb_prepare "$DB" 4 10000

CR=$(free_port)
corelay_config "$CR" "$DB" "pool_wait_timeout_ms = 60000
max_client_connections = 10000" "max_connections = $POOL" >"$work/corelay.toml"
# shellcheck disable=SC2086
"$top/target/release/corelay" --config "$work/corelay.toml" $CARGS >"$work/corelay.log" 2>&1 &
CPID=$!
pids+=($CPID)
HA=$(free_port)
haproxy_start "$HA" "$DB" "$(nproc)" >/dev/null
sleep 1
declare -A PORT=([direct]=$DB [corelay]=$CR [haproxy]=$HA)
targets=(direct corelay haproxy)
results=$work/results.tsv
: >"$results"
for rep in $(seq "$REPS"); do
  for th in $THREADS; do
    for i in 0 1 2; do
      t=${targets[$(( (i + rep) % 3 ))]}
      read -r stmts qps p99 < <(sb_run "${PORT[$t]}" oltp_read_only auto "$th" "$TIME")
      printf '%s\t%s\t%s\t%s\n' "$th" "$t" "$qps" "$p99" >>"$results"
    done
  done
  echo "# repetition $rep of $REPS done" >&2
done
peak=$(mdb_sql main "SHOW GLOBAL STATUS LIKE 'Max_used_connections'" | cut -f2)

{
  echo "# Pooling curve $(date -u +%Y-%m-%d) ($(nproc) CPUs, $(uname -r))"
  echo
  echo "Command: \`benches/pooling-curve.sh --reps $REPS --time $TIME --threads \"$THREADS\" --pool $POOL$([ -n "$CARGS" ] && echo " --corelay-args \"$CARGS\"")\`"
  echo "sysbench oltp_read_only (prepared), 4 tables x 10,000 rows; corelay: a pool of $POOL backend connections"
  echo "for the whole proxy ($(nproc) shards), clients waiting in corelay for one; HAProxy (TCP, nbthread $(nproc)) and direct:"
  echo "one MariaDB connection per client. Medians of $REPS repetitions x ${TIME}s, order rotating."
  echo
  python3 - "$results" <<'PY'
import sys, statistics as st, collections
rows = [l.split() for l in open(sys.argv[1])]
by = collections.defaultdict(lambda: collections.defaultdict(list))
for th, t, qps, p99 in rows:
    by[int(th)][t].append((float(qps), float(p99)))
print("| client threads | direct QPS | corelay QPS | haproxy QPS | corelay/direct | corelay/haproxy | p99 ms direct/corelay/haproxy |")
print("|---|---|---|---|---|---|---|")
for th in sorted(by):
    q = {t: st.median(v[0] for v in by[th][t]) for t in by[th]}
    p = {t: st.median(v[1] for v in by[th][t]) for t in by[th]}
    print(f"| {th} | {q['direct']:.0f} | {q['corelay']:.0f} | {q['haproxy']:.0f} | {q['corelay']/q['direct']:.2f} | "
          f"{q['corelay']/q['haproxy']:.2f} | {p['direct']:.1f}/{p['corelay']:.1f}/{p['haproxy']:.1f} |")
PY
  echo
  echo "MariaDB's Max_used_connections over the run: $peak (direct and HAProxy bring one per client)."
} | tee "${OUT:-/dev/null}"
