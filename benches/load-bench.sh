#!/usr/bin/env bash
# Load bench: sysbench against MariaDB directly, through corelay and through HAProxy (TCP
# mode), in one run, alternating the order of the three targets on every repetition.
#
#   benches/load-bench.sh [--reps N] [--time SECONDS] [--tables N] [--rows N]
#                         [--workers N] [--mode thread|fork] [--replica] [--cost] [--out FILE]
#                         [--corelay-args "FLAGS"] [--scripts "oltp_point_select ..."]
#
# Cells: oltp_point_select and oltp_read_only (--scripts picks), prepared
# (--db-ps-mode=auto) and text (--db-ps-mode=disable), 8 and 64 client threads. For each
# cell and target it prints the median QPS, the median p95/p99 latency (ms, from
# sysbench's histogram) and the median inter-processor interrupts per statement (the
# machine's CAL + TLB lines of /proc/interrupts over the run, whoever sent them) over the
# repetitions, and the ratios corelay/direct and corelay/haproxy. HAProxy runs twice, with
# nbthread = the CPU count and with nbthread = 1 (on a small host the single thread is
# sometimes faster): corelay is compared with the faster of the two in each cell, and CPU
# time per statement is reported for each proxy. Everything runs on this machine: a
# throwaway MariaDB datadir, a release corelay, HAProxy; all are stopped at the end. Needs
# mariadb-server, sysbench, haproxy (see .ci/run for the packages).
# With --replica, a second MariaDB replicates from the first (binlog) and corelay has it as
# a replica of its cluster: corelay's reads go there, direct and HAProxy use the primary.
# With --cost, the targets are two corelays instead: one with every observability feature
# on (status tables, latency histograms, .hgrm files every 10 s, the query log with a 1 s
# threshold) and one with latency histograms and the log off; it prints on/off ratios.
set -euo pipefail

REPS=3 TIME=10 TABLES=4 ROWS=10000 WORKERS=0 MODE=thread OUT="" REPLICA=0 COST=0 CARGS=
SCRIPTS="oltp_point_select oltp_read_only"
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --time) TIME=$2; shift 2 ;;
    --tables) TABLES=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --replica) REPLICA=1; shift ;;
    --cost) COST=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --corelay-args) CARGS=$2; shift 2 ;;
    --scripts) SCRIPTS=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"
bench_setup bench
BIN=$top/target/release/corelay
CR_PORT=$(free_port); HA_PORT=$(free_port); HA1_PORT=$(free_port); OFF_PORT=$(free_port)

if [ "$REPLICA" = 1 ]; then
  mdb_start primary --log-bin=mysql-bin --server-id=1 --binlog-format=ROW
  mdb_start replica --skip-log-bin --server-id=2
  mdb_replicate replica primary
else
  mdb_start primary --skip-log-bin
fi
DB_PORT=$(mdb_port primary)
echo "# MariaDB on $DB_PORT (datadir $work/primary)" >&2
REPLICA_SERVER=""
if [ "$REPLICA" = 1 ]; then
  REPLICA_SERVER=$(printf '[[cluster.server]]\naddress = "127.0.0.1:%s"\nrole = "replica"\nmax_connections = 4000\n' "$(mdb_port replica)")
fi

echo "# preparing $TABLES tables x $ROWS rows" >&2
sb_prepare "$DB_PORT" "$TABLES" "$ROWS"
SB_COMMON+=(--tables="$TABLES" --table-size="$ROWS")
if [ "$REPLICA" = 1 ]; then
  # Wait until the replica has every row.
  want=$(mdb_sql primary "SELECT COUNT(*) FROM sb.sbtest$TABLES")
  for _ in $(seq 300); do
    got=$(mdb_sql replica "SELECT COUNT(*) FROM sb.sbtest$TABLES" 2>/dev/null || echo 0)
    [ "$got" = "$want" ] && break
    sleep 0.2
  done
fi

start_corelay() { # port extra-proxy-keys [flags]: prints its pid
  corelay_config "$1" "$DB_PORT" "$(printf 'workers = %s\nworker_mode = "%s"\n%s' "$WORKERS" "$MODE" "$2")" \
    "$(printf 'max_connections = 4000\n%s' "$REPLICA_SERVER")" >"$work/corelay-$1.toml"
  # shellcheck disable=SC2086
  "$BIN" --config "$work/corelay-$1.toml" ${3:-} >"$work/corelay-$1.log" 2>&1 &
  echo $!
}
ON_KEYS=""
if [ "$COST" = 1 ]; then
  ON_KEYS=$(printf 'log_dir = "%s"\nlog_query_min_time_us = 1000000\nhistogram_dir = "%s"\nhistogram_interval_s = 10\n' "$work/log" "$work/hgrm")
  OFF_PID=$(start_corelay "$OFF_PORT" "latency_histograms = false")
  pids+=("$OFF_PID")
fi
CR_PID=$(start_corelay "$CR_PORT" "$ON_KEYS" "$CARGS")
pids+=("$CR_PID")
HA_PID=$(haproxy_start "$HA_PORT" "$DB_PORT" "$(nproc)")
HA1_PID=$(haproxy_start "$HA1_PORT" "$DB_PORT" 1)
sleep 1
for port in $CR_PORT $HA_PORT $HA1_PORT; do
  mariadb --no-defaults -h127.0.0.1 -P$port -usb -psb_pw -e 'SELECT 1' sb >/dev/null
done

declare -A PORT=([direct]=$DB_PORT [corelay]=$CR_PORT [haproxy]=$HA_PORT [haproxy1]=$HA1_PORT [corelay_off]=$OFF_PORT)
targets=(direct corelay haproxy haproxy1)
[ "$COST" = 1 ] && targets=(corelay corelay_off)
ntargets=${#targets[@]}
results="$work/results.tsv"
: >"$results"
run_one() { # target script psmode threads
  local out="$work/run.txt" i0 i1
  i0=$(ipis)
  sysbench "$2" "${SB_COMMON[@]}" --mysql-port="${PORT[$1]}" --threads="$4" --db-ps-mode="$3" \
    --time="$TIME" --histogram=on --percentile=99 run >"$out" 2>&1 || { echo "sysbench failed on $1:" >&2; tail -5 "$out" >&2; return 1; }
  i1=$(ipis)
  python3 - "$out" "$1" "$2" "$3" "$4" "$((i1 - i0))" >>"$results" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
qps = float(re.search(r"queries:\s+\d+\s+\(([\d.]+) per sec", text).group(1))
statements = int(re.search(r"queries:\s+(\d+)", text).group(1))
hist = [(float(v), int(c)) for v, c in re.findall(r"^\s+([\d.]+) \|\**\s+(\d+)$", text, re.M)]
total = sum(c for _, c in hist)
def pct(p):
    seen = 0
    for v, c in hist:
        seen += c
        if seen >= total * p:
            return v
    return float("nan")
ipis = int(sys.argv[6]) / max(statements, 1)
print("\t".join(sys.argv[2:6] + [f"{qps:.1f}", f"{pct(0.95):.3f}", f"{pct(0.99):.3f}", f"{ipis:.4f}"]))
PY
}

echo "# $REPS repetitions x $(( $(wc -w <<<"$SCRIPTS") * 4 )) cells x $ntargets targets x ${TIME}s" >&2
for rep in $(seq "$REPS"); do
  for script in $SCRIPTS; do
    for ps in auto disable; do
      for threads in 8 64; do
        # Rotate the order every repetition so no target always runs first or last.
        for i in $(seq 0 $((ntargets - 1))); do
          t=${targets[$(( (i + rep) % ntargets ))]}
          run_one "$t" "$script" "$ps" "$threads"
        done
      done
    done
  done
  echo "# repetition $rep done" >&2
done

cr_ticks=$(cpu_ticks "$CR_PID")
if [ "$COST" = 1 ]; then
  off_ticks=$(cpu_ticks "$OFF_PID")
  report=$(python3 - "$results" "$REPS" "$TIME" "$MODE" "$(nproc)" "$cr_ticks" "$off_ticks" <<'PY'
import statistics, sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
reps, secs, mode, cpus, on_ticks, off_ticks = sys.argv[2:8]
cells = collections.defaultdict(lambda: collections.defaultdict(list))
for t, script, ps, th, qps, p95, p99, ipi in rows:
    cells[(script, "prepared" if ps == "auto" else "text", int(th))][t].append((float(qps), float(p99)))
med = statistics.median
print(f"Medians of {reps} repetitions x {secs}s, the two corelays alternating; worker_mode={mode}, {cpus} CPUs.")
print("on: status tables, latency histograms, .hgrm files every 10 s, query log (threshold 1 s); off: latency_histograms = false, no log.")
print()
print("| script | protocol | threads | on QPS | off QPS | on/off | p99 ms on/off |")
print("|---|---|---|---|---|---|---|")
ratios = []
for key in sorted(cells):
    c = cells[key]
    on, off = med([r[0] for r in c["corelay"]]), med([r[0] for r in c["corelay_off"]])
    ratios.append(on / off)
    print(f"| {key[0]} | {key[1]} | {key[2]} | {on:.0f} | {off:.0f} | {on/off:.3f} | "
          f"{med([r[1] for r in c['corelay']]):.2f}/{med([r[1] for r in c['corelay_off']]):.2f} |")
print()
print(f"Geometric mean on/off: {statistics.geometric_mean(ratios):.3f}; worst cell {min(ratios):.3f}.")
# Statements each corelay served over the run (QPS x seconds, every repetition), and its CPU
# time per statement: the least noisy figure on a shared machine.
served = collections.Counter()
for t, script, ps, th, qps, p95, p99, ipi in rows:
    served[t] += float(qps) * float(secs)
on_us = int(on_ticks) / 100 * 1e6 / served["corelay"]
off_us = int(off_ticks) / 100 * 1e6 / served["corelay_off"]
print(f"Process CPU over the whole run: on {int(on_ticks)/100:.1f} s for {served['corelay']:.0f} statements ({on_us:.2f} us each), "
      f"off {int(off_ticks)/100:.1f} s for {served['corelay_off']:.0f} ({off_us:.2f} us each): on/off {on_us/off_us:.3f}.")
PY
)
else
ha_ticks=$(cpu_ticks "$HA_PID")
ha1_ticks=$(cpu_ticks "$HA1_PID")
report=$(python3 - "$results" "$REPS" "$TIME" "$MODE" "$(nproc)" "$cr_ticks" "$ha_ticks" "$ha1_ticks" <<'PY'
import statistics, sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
reps, secs, mode, cpus = sys.argv[2:6]
ticks = {"corelay": int(sys.argv[6]), "haproxy": int(sys.argv[7]), "haproxy1": int(sys.argv[8])}
cells = collections.defaultdict(lambda: collections.defaultdict(list))
for t, script, ps, th, qps, p95, p99, ipi in rows:
    cells[(script, "prepared" if ps == "auto" else "text", int(th))][t].append((float(qps), float(p95), float(p99), float(ipi)))
med = lambda xs: statistics.median(xs)
print(f"Medians of {reps} repetitions x {secs}s, targets alternating; corelay worker_mode={mode}, {cpus} CPUs.")
print("haproxy: nbthread " + cpus + "; haproxy1: nbthread 1; best HAProxy = the faster of the two in the cell.")
print()
print("| script | protocol | threads | direct QPS | corelay QPS | haproxy QPS | haproxy1 QPS | corelay/direct | corelay/best HAProxy | p99 ms direct/corelay/best HAProxy | IPIs/stmt direct/corelay/best HAProxy |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(cells):
    c = cells[key]
    q = {t: med([r[0] for r in c[t]]) for t in c}
    p99 = {t: med([r[2] for r in c[t]]) for t in c}
    ipi = {t: med([r[3] for r in c[t]]) for t in c}
    best = max(("haproxy", "haproxy1"), key=lambda t: q[t])
    print(f"| {key[0]} | {key[1]} | {key[2]} | {q['direct']:.0f} | {q['corelay']:.0f} | {q['haproxy']:.0f} | {q['haproxy1']:.0f} | "
          f"{q['corelay']/q['direct']:.2f} | {q['corelay']/q[best]:.2f} | "
          f"{p99['direct']:.2f}/{p99['corelay']:.2f}/{p99[best]:.2f} | "
          f"{ipi['direct']:.3f}/{ipi['corelay']:.3f}/{ipi[best]:.3f} |")
print()
served = collections.Counter()
for t, script, ps, th, qps, p95, p99, ipi in rows:
    served[t] += float(qps) * float(secs)
us = {t: ticks[t] / 100 * 1e6 / served[t] for t in ticks}
print("Process CPU over the whole run: " + "; ".join(
    f"{t} {ticks[t]/100:.1f} s for {served[t]:.0f} statements ({us[t]:.2f} us each)" for t in ticks) +
    f"; corelay/haproxy {us['corelay']/us['haproxy']:.2f}, corelay/haproxy1 {us['corelay']/us['haproxy1']:.2f}.")
PY
)
fi
echo "$report"
if [ -n "$OUT" ]; then
  {
    echo "# Load bench $(date -u +%Y-%m-%d)"
    echo
    machine_line
    echo "$(mariadbd --version | head -1); $(sysbench --version); $(haproxy -v | head -1)."
    echo "Command: \`benches/load-bench.sh --reps $REPS --time $TIME --tables $TABLES --rows $ROWS --mode $MODE$([ "$REPLICA" = 1 ] && echo ' --replica')$([ "$COST" = 1 ] && echo ' --cost')$([ -n "$CARGS" ] && echo " --corelay-args \"$CARGS\"")$([ "$SCRIPTS" != "oltp_point_select oltp_read_only" ] && echo " --scripts \"$SCRIPTS\"")\`"
    [ "$REPLICA" = 1 ] && echo "corelay's cluster has a replica (binlog replication from the primary): its reads go to the replica; direct and HAProxy use the primary."
    echo "Everything (MariaDB, corelay, HAProxy, sysbench) shares the same CPUs: compare ratios, not absolute numbers."
    echo
    echo "$report"
  } >"$OUT"
  echo "# written to $OUT" >&2
fi
