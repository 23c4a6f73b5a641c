#!/usr/bin/env bash
# Wake-ups, inter-processor interrupts and CPU per statement: corelay (defaults) against
# HAProxy (TCP, nbthread 2) and MariaDB direct, in one run, from /proc (voluntary +
# involuntary context switches of all the proxy's threads, user + system time; the
# machine's function-call (CAL) and TLB-shootdown (TLB) interrupts from /proc/interrupts,
# whoever caused them: the direct row is the floor the server and sysbench make) with no
# tracer attached (strace slows every system call enough that the shards rarely get to
# sleep, which hides what a wake-up costs).
#
#   benches/wakeups.sh [--time SECONDS] [--corelay-args "--workers 8 --worker-mode fork"]
#                      [--cells "oltp_point_select:8 oltp_read_only:64"] [--out FILE]
set -euo pipefail
TIME=6 OUT="" ARGS=""
CELLS="oltp_point_select:8 oltp_point_select:64 oltp_read_only:8 oltp_read_only:64"
while [ $# -gt 0 ]; do
  case "$1" in
    --time) TIME=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --corelay-args) ARGS=$2; shift 2 ;;
    --cells) CELLS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$top/benches/results/wakeups-$(date -u +%Y-%m-%d).md}
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"
bench_setup wakeups
mdb_start db --skip-log-bin
DB=$(mdb_port db)
sb_prepare "$DB" 4 10000
P=$(free_port) H=$(free_port)
# shellcheck disable=SC2086
corelay_start c "$P" "$DB" $ARGS
CP=${CORELAY_PID[c]}
HP=$(haproxy_start "$H" "$DB" 2)
sleep 1
family() { echo "$1" $(pgrep -P "$1" || true); } # the process and its children (fork-mode shards)
switches() { # pid: context switches of all threads of it and its children so far
  local t=0 f p
  for p in $(family "$1"); do
    for f in /proc/"$p"/task/*/status; do
      t=$((t + $(awk '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { print v + n }' "$f")))
    done
  done
  echo "$t"
}
user_sys() { # pid: user and system ticks of it and its children
  local p
  for p in $(family "$1"); do awk '{ print $14, $15 }' /proc/"$p"/stat; done | awk '{ u += $1; k += $2 } END { print u, k }'
}
# The direct row has no proxy process: its context switches and CPU are MariaDB's.
DP=$(pgrep -f "mariadbd.*$work/db" | head -1 || true)
{
  echo "# Wake-ups per statement $(date -u +%Y-%m-%d) ($(nproc) CPUs, $(uname -r))"
  echo
  echo "Command: \`benches/wakeups.sh --time $TIME${ARGS:+ --corelay-args \"$ARGS\"}\`. sysbench, text protocol, 4 tables x 10,000 rows, $TIME s per cell;"
  echo "corelay on its defaults${ARGS:+ plus \`$ARGS\`} and HAProxy (TCP, nbthread 2) in front of one MariaDB, everything on this machine."
  echo
  echo "| script | threads | proxy | QPS | context switches / stmt | CPU us / stmt | of which user | IPIs (CAL+TLB) / stmt, whole machine |"
  echo "|---|---|---|---|---|---|---|---|"
  for cell in $CELLS; do
    IFS=: read -r script th <<<"$cell"
    targets=("corelay:$CP:$P" "haproxy:$HP:$H")
    [ -n "$DP" ] && targets+=("direct (MariaDB's figures):$DP:$DB")
    for target in "${targets[@]}"; do
      IFS=: read -r name pid port <<<"$target"
      s0=$(switches "$pid"); read -r u0 k0 < <(user_sys "$pid"); i0=$(ipis)
      read -r n rate < <(sysbench "$script" "${SB_COMMON[@]}" --tables=4 --table-size=10000 --mysql-port="$port" \
        --threads="$th" --time="$TIME" --db-ps-mode=disable run 2>&1 |
        sed -n 's/.*queries: *\([0-9]*\) *(\([0-9.]*\) per sec.).*/\1 \2/p')
      s1=$(switches "$pid"); read -r u1 k1 < <(user_sys "$pid"); i1=$(ipis)
      awk -v s="$script" -v th="$th" -v nm="$name" -v r="$rate" -v d=$((s1 - s0)) -v n="$n" -v u=$((u1 - u0)) -v k=$((k1 - k0)) -v i=$((i1 - i0)) \
        'BEGIN { printf "| %s | %s | %s | %.0f | %.2f | %.1f | %.0f %% | %.3f |\n", s, th, nm, r, d / n, (u + k) / 100 * 1e6 / n, u / (u + k) * 100, i / n }'
    done
  done
} | tee "$OUT"
