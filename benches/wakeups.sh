#!/usr/bin/env bash
# Wake-ups and CPU per statement: corelay (defaults) against HAProxy (TCP, nbthread 2), in
# one run, from /proc (voluntary + involuntary context switches of all threads, user +
# system time) with no tracer attached (strace slows every system call enough that the
# shards rarely get to sleep, which hides what a wake-up costs).
#
#   benches/wakeups.sh [--time SECONDS] [--corelay-args "--spin-before-park-us 0"] [--out FILE]
set -euo pipefail
TIME=6 OUT="" ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --time) TIME=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --corelay-args) ARGS=$2; shift 2 ;;
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
switches() { # pid: context switches of all its threads so far
  local t=0 f
  for f in /proc/"$1"/task/*/status; do
    t=$((t + $(awk '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { print v + n }' "$f")))
  done
  echo "$t"
}
user_sys() { awk '{ print $14, $15 }' /proc/"$1"/stat; }
{
  echo "# Wake-ups per statement $(date -u +%Y-%m-%d) ($(nproc) CPUs, $(uname -r))"
  echo
  echo "Command: \`benches/wakeups.sh --time $TIME${ARGS:+ --corelay-args \"$ARGS\"}\`. sysbench, text protocol, 4 tables x 10,000 rows, $TIME s per cell;"
  echo "corelay on its defaults${ARGS:+ plus \`$ARGS\`} and HAProxy (TCP, nbthread 2) in front of one MariaDB, everything on this machine."
  echo
  echo "| script | threads | proxy | QPS | context switches / stmt | CPU us / stmt | of which user |"
  echo "|---|---|---|---|---|---|---|"
  for script in oltp_point_select oltp_read_only; do
    for th in 8 64; do
      for target in "corelay:$CP:$P" "haproxy:$HP:$H"; do
        IFS=: read -r name pid port <<<"$target"
        s0=$(switches "$pid"); read -r u0 k0 < <(user_sys "$pid")
        read -r n rate < <(sysbench "$script" "${SB_COMMON[@]}" --tables=4 --table-size=10000 --mysql-port="$port" \
          --threads="$th" --time="$TIME" --db-ps-mode=disable run 2>&1 |
          sed -n 's/.*queries: *\([0-9]*\) *(\([0-9.]*\) per sec.).*/\1 \2/p')
        s1=$(switches "$pid"); read -r u1 k1 < <(user_sys "$pid")
        awk -v s="$script" -v th="$th" -v nm="$name" -v r="$rate" -v d=$((s1 - s0)) -v n="$n" -v u=$((u1 - u0)) -v k=$((k1 - k0)) \
          'BEGIN { printf "| %s | %s | %s | %.0f | %.2f | %.1f | %.0f %% |\n", s, th, nm, r, d / n, (u + k) / 100 * 1e6 / n, u / (u + k) * 100 }'
      done
    done
  done
} | tee "$OUT"
