#!/usr/bin/env bash
# Side-by-side comparison of corelay builds or flag sets with direct MariaDB and HAProxy,
# in one run on this machine: every repetition runs each target once per cell, in an
# order that rotates, and the medians are reported with the proxy's CPU per statement.
#
#   benches/ab.sh [--time S] [--reps N] [--cells "SCRIPT:PSMODE:THREADS ..."] [--out FILE]
#                 [--no-direct] [--no-haproxy] NAME=BINARY[,FLAGS...] ...
#
# Each NAME=BINARY[,FLAGS] is a corelay started with its own configuration (the embedded
# defaults plus the bench cluster) and the flags given (commas become spaces), e.g.
#   benches/ab.sh base=target/release/corelay fork=target/release/corelay,--worker-mode,fork
# Cells default to oltp_point_select, prepared (auto) and text (disable), 8 and 64 threads.
set -euo pipefail
TIME=8 REPS=3 OUT="" DIRECT=1 HAPROXY=1
CELLS="oltp_point_select:auto:8 oltp_point_select:auto:64 oltp_point_select:disable:8 oltp_point_select:disable:64"
specs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) TIME=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --cells) CELLS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-direct) DIRECT=0; shift ;;
    --no-haproxy) HAPROXY=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *=*) specs+=("$1"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"
bench_setup ab
mdb_start main
sb_prepare "$(mdb_port main)" 4 10000

declare -A PORT PID
targets=()
if [ "$DIRECT" = 1 ]; then targets+=(direct); PORT[direct]=$(mdb_port main); fi
if [ "$HAPROXY" = 1 ]; then
  PORT[haproxy]=$(free_port)
  PID[haproxy]=$(haproxy_start "${PORT[haproxy]}" "$(mdb_port main)" "$(nproc)")
  targets+=(haproxy)
fi
for spec in "${specs[@]}"; do
  name=${spec%%=*}
  IFS=, read -r -a cmd <<<"${spec#*=}"
  PORT[$name]=$(free_port)
  corelay_config "${PORT[$name]}" "$(mdb_port main)" >"$work/$name.toml"
  "${cmd[@]}" --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  PID[$name]=$!
  pids+=($!)
  targets+=("$name")
done
sleep 1
for t in "${targets[@]}"; do
  mariadb --no-defaults -h127.0.0.1 -P"${PORT[$t]}" -usb -psb_pw -e 'SELECT 1' sb >/dev/null
done

results=$work/results.tsv
: >"$results"
n=${#targets[@]}
for rep in $(seq "$REPS"); do
  for cell in $CELLS; do
    IFS=: read -r script ps threads <<<"$cell"
    for i in $(seq 0 $((n - 1))); do
      t=${targets[$(( (i + rep) % n ))]}
      c0=$(cpu_ticks "${PID[$t]:-}")
      read -r stmts qps p99 < <(sb_run "${PORT[$t]}" "$script" "$ps" "$threads" "$TIME")
      c1=$(cpu_ticks "${PID[$t]:-}")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$t" "$qps" "$p99" "$stmts" "$c0" "$c1" >>"$results"
    done
  done
  echo "# repetition $rep of $REPS done" >&2
done

{
  echo "# corelay A/B $(date -u +%Y-%m-%d) ($(nproc) CPUs, $(uname -r))"
  echo
  echo "Command: \`benches/ab.sh --time $TIME --reps $REPS $*\`"
  for spec in "${specs[@]}"; do echo "- \`${spec%%=*}\`: \`$(echo "${spec#*=}" | tr , ' ')\`"; done
  echo
  echo "Medians of $REPS repetitions x ${TIME}s, order rotating; CPU = the proxy process's user+system time per statement."
  echo
  python3 - "$results" "${targets[@]}" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
targets = sys.argv[2:]
cells = list(dict.fromkeys(r[0] for r in rows))
base = "haproxy" if "haproxy" in targets else None
head = ["cell"] + [f"{t} QPS" for t in targets] + [f"{t} p99 ms" for t in targets]
head += [f"{t} CPU us/stmt" for t in targets if t != "direct"]
if base:
    head += [f"{t}/haproxy" for t in targets if t not in ("direct", "haproxy")]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for c in cells:
    q, p, cpu = {}, {}, {}
    for t in targets:
        mine = [r for r in rows if r[0] == c and r[1] == t]
        q[t] = st.median(float(r[2]) for r in mine)
        p[t] = st.median(float(r[3]) for r in mine)
        if t != "direct":
            cpu[t] = st.median((int(r[6]) - int(r[5])) / 100 * 1e6 / max(int(r[4]), 1) for r in mine)
    line = [c] + [f"{q[t]:.0f}" for t in targets] + [f"{p[t]:.2f}" for t in targets]
    line += [f"{cpu[t]:.1f}" for t in targets if t != "direct"]
    if base:
        line += [f"{q[t] / q[base]:.2f}" for t in targets if t not in ("direct", "haproxy")]
    print("| " + " | ".join(line) + " |")
PY
} | tee "${OUT:-/dev/null}"
