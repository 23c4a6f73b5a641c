#!/usr/bin/env bash
# Where a statement's CPU goes in corelay: syscalls per statement (strace -c), a perf
# profile of the hot path, and an A/B of a knob, all under a sysbench script
# (oltp_point_select unless told) against a throwaway MariaDB on this machine.
#
#   benches/profile.sh [--time SECONDS] [--knob "--spin-before-park-us 50"]
#                      [--script oltp_read_only] [--out DIR]
set -euo pipefail
TIME=10 KNOB="--spin-before-park-us 50" OUT="" SCRIPT=oltp_point_select
while [ $# -gt 0 ]; do
  case "$1" in
    --time) TIME=$2; shift 2 ;;
    --knob) KNOB=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --script) SCRIPT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$top/benches/results/profile-$(date -u +%Y-%m-%d)}
mkdir -p "$OUT"
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"
bench_setup prof
mdb_start db --skip-log-bin
DB=$(mdb_port db)
sb_prepare "$DB" 4 10000
SB=("${SB_COMMON[@]}" --tables=4 --table-size=10000)
A=$(free_port) B=$(free_port)
corelay_start a "$A" "$DB"
# shellcheck disable=SC2086
corelay_start b "$B" "$DB" $KNOB
APID=${CORELAY_PID[a]} BPID=${CORELAY_PID[b]}
sleep 1
qps() { # port threads psmode seconds
  sysbench "$SCRIPT" "${SB[@]}" --mysql-port="$1" --threads="$2" --db-ps-mode="$3" --time="$4" run 2>&1 |
    sed -n 's/.*queries: *\([0-9]*\) *(\([0-9.]*\) per sec.).*/\1 \2/p'
}
syscalls() { # pid port name lines: strace -c of every thread of pid under 8 text-protocol threads
  echo '```'
  strace -c -f -p "$1" -o "$work/$3.txt" &
  local spid=$! n rate total
  sleep 1
  read -r n rate < <(qps "$2" 8 disable "$TIME")
  kill -INT $spid; wait $spid 2>/dev/null || true
  echo "statements: $n ($rate/s under strace)"
  head -"$4" "$work/$3.txt"
  total=$(awk '/^[ 0-9.]+ +total/ || $NF=="total" {print $(NF-2)}' "$work/$3.txt" | tail -1)
  [ -n "$total" ] && awk -v t="$total" -v n="$n" 'BEGIN { printf "syscalls per statement: %.2f\n", t / n }'
  echo '```'
  echo
}

{
  echo "# corelay profile $(date -u +%Y-%m-%d) ($(nproc) CPUs, $(uname -r))"
  echo
  echo "Command: \`benches/profile.sh --time $TIME --knob \"$KNOB\" --script $SCRIPT\`. sysbench $SCRIPT, 4 tables x 10,000 rows; corelay with the"
  echo "default configuration ($(nproc) shards, thread mode) in front of one MariaDB; everything on this machine."
  echo
  echo "## Syscalls per statement (strace -c -f, text protocol, 8 threads, $TIME s)"
  syscalls "$APID" "$A" strace 20
  echo "Same workload through HAProxy (TCP mode, nbthread 2), for comparison:"
  H=$(free_port)
  HPID=$(haproxy_start "$H" "$DB" 2)
  pids+=("$HPID")
  syscalls "$HPID" "$H" strace-haproxy 12
  kill "$HPID"
  echo "## perf profile (perf record -g, prepared, 8 threads, $TIME s): top of perf report --no-children"
  echo '```'
  perf record -F 999 -g -p "$APID" -o "$work/perf.data" -- sleep "$TIME" >/dev/null 2>&1 &
  PPID2=$!
  qps "$A" 8 auto "$TIME" >/dev/null
  wait $PPID2 || true
  perf report -i "$work/perf.data" --no-children --stdio --percent-limit 1.5 -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
  echo '```'
  echo
  echo "## A/B: default vs \`$KNOB\` (3 alternating repetitions x $TIME s, medians)"
  echo
  echo "| protocol | threads | default QPS | knob QPS | knob/default | CPU us/stmt default | CPU us/stmt knob |"
  echo "|---|---|---|---|---|---|---|"
  for ps in auto disable; do
    for th in 8 64; do
      ra=() rb=() ca=() cb=()
      for rep in 1 2 3; do
        for side in a b; do
          [ $(( rep % 2 )) = 0 ] && side=$([ $side = a ] && echo b || echo a)
          port=$([ $side = a ] && echo "$A" || echo "$B"); pid=$([ $side = a ] && echo "$APID" || echo "$BPID")
          t0=$(cpu_ticks "$pid")
          read -r n rate < <(qps "$port" "$th" "$ps" "$TIME")
          t1=$(cpu_ticks "$pid")
          us=$(awk -v d=$((t1 - t0)) -v n="$n" 'BEGIN { printf "%.2f", d / 100 * 1e6 / n }')
          if [ $side = a ]; then ra+=("$rate"); ca+=("$us"); else rb+=("$rate"); cb+=("$us"); fi
        done
      done
      med() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
      qa=$(med "${ra[@]}") qb=$(med "${rb[@]}")
      echo "| $([ $ps = auto ] && echo prepared || echo text) | $th | $qa | $qb | $(awk -v a="$qa" -v b="$qb" 'BEGIN{printf "%.3f", b/a}') | $(med "${ca[@]}") | $(med "${cb[@]}") |"
    done
  done
} | tee "$OUT/summary.md"
