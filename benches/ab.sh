#!/usr/bin/env bash
# Side-by-side comparison of corelay builds or flag sets with direct MariaDB and HAProxy,
# in one run on this machine: every repetition runs each target once per cell, in an
# order that rotates, and the medians are reported with the proxy's CPU per statement.
#
#   benches/ab.sh [--time S] [--reps N] [--cells "SCRIPT:PSMODE:THREADS ..."] [--out FILE]
#                 [--no-direct] [--no-haproxy] [--haproxy-threads "N ..."] NAME=BINARY[,FLAGS...] ...
#
# Each NAME=BINARY[,FLAGS] is a corelay started with its own configuration (the embedded
# defaults plus the bench cluster) and the flags given (commas become spaces); a flag
# server:KEY=VALUE sets a key of the server's section instead (max_connections is 4000
# unless given), and append:FILE appends FILE to its configuration (rules, say), e.g.
#   benches/ab.sh base=target/release/corelay fork=target/release/corelay,--worker-mode,fork \
#                 pool16=target/release/corelay,server:max_connections=16 \
#                 rules=target/release/corelay,append:benches/rules-20.toml
# Cells default to oltp_point_select, prepared (auto) and text (disable), 8 and 64 threads.
# HAProxy runs with nbthread = the CPU count; --haproxy-threads "2 1" runs one per count
# (haproxy, haproxy1, ...: the first is the baseline of the ratios).
set -euo pipefail
TIME=8 REPS=3 OUT="" DIRECT=1 HAPROXY=1 HA_THREADS=$(nproc)
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
    --haproxy-threads) HA_THREADS=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
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
  first=1
  for n in $HA_THREADS; do
    name=haproxy$([ $first = 1 ] || echo "$n")
    first=0
    PORT[$name]=$(free_port)
    PID[$name]=$(haproxy_start "${PORT[$name]}" "$(mdb_port main)" "$n")
    targets+=("$name")
  done
fi
for spec in "${specs[@]}"; do
  name=${spec%%=*}
  IFS=, read -r -a parts <<<"${spec#*=}"
  cmd=() server_keys="" appended=()
  for p in "${parts[@]}"; do
    case "$p" in
      server:*) server_keys+="${p#server:}"$'\n' ;;
      append:*) appended+=("${p#append:}") ;;
      *) cmd+=("$p") ;;
    esac
  done
  PORT[$name]=$(free_port)
  corelay_config "${PORT[$name]}" "$(mdb_port main)" "" "${server_keys:-max_connections = 4000}" >"$work/$name.toml"
  for f in "${appended[@]}"; do cat "$f" >>"$work/$name.toml"; done
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
      c0=$(cpu_ticks "${PID[$t]:-}") m0=$(cpu_ticks "${MDB_PID[main]}")
      read -r stmts qps p99 < <(sb_run "${PORT[$t]}" "$script" "$ps" "$threads" "$TIME")
      c1=$(cpu_ticks "${PID[$t]:-}") m1=$(cpu_ticks "${MDB_PID[main]}")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$t" "$qps" "$p99" "$stmts" "$c0" "$c1" "$m0" "$m1" >>"$results"
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
  echo "Medians of $REPS repetitions x ${TIME}s, order rotating; CPU = user+system time per statement of the proxy"
  echo "process, and of MariaDB's (mariadbd) while that target ran."
  echo
  python3 - "$results" "${targets[@]}" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
targets = sys.argv[2:]
cells = list(dict.fromkeys(r[0] for r in rows))
base = "haproxy" if "haproxy" in targets else None
head = ["cell"] + [f"{t} QPS" for t in targets] + [f"{t} p99 ms" for t in targets]
head += [f"{t} CPU us/stmt" for t in targets if t != "direct"]
head += [f"MariaDB us/stmt via {t}" for t in targets]
proxies = [t for t in targets if t != "direct" and not t.startswith("haproxy")]
if base:
    head += [f"{t}/haproxy" for t in proxies]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for c in cells:
    q, p, cpu, db = {}, {}, {}, {}
    for t in targets:
        mine = [r for r in rows if r[0] == c and r[1] == t]
        q[t] = st.median(float(r[2]) for r in mine)
        p[t] = st.median(float(r[3]) for r in mine)
        if t != "direct":
            cpu[t] = st.median((int(r[6]) - int(r[5])) / 100 * 1e6 / max(int(r[4]), 1) for r in mine)
        db[t] = st.median((int(r[8]) - int(r[7])) / 100 * 1e6 / max(int(r[4]), 1) for r in mine)
    line = [c] + [f"{q[t]:.0f}" for t in targets] + [f"{p[t]:.2f}" for t in targets]
    line += [f"{cpu[t]:.1f}" for t in targets if t != "direct"]
    line += [f"{db[t]:.1f}" for t in targets]
    if base:
        line += [f"{q[t] / q[base]:.2f}" for t in proxies]
    print("| " + " | ".join(line) + " |")
PY
} | tee "${OUT:-/dev/null}"
