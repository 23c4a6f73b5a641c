#!/usr/bin/env bash
# Allocations per statement on corelay's steady-state path.
#
#   benches/alloc-count/run.sh PORT USER DB [SYSBENCH ARGS...]
#
# Starts a release corelay (one shard, embedded default unless CORELAY_ARGS says otherwise)
# under an LD_PRELOAD malloc counter, runs sysbench oltp_point_select for 1,000 and then
# 5,000 events through it, and prints the difference in allocator calls per statement.
# CORELAY_BIN picks another binary. Needs the tables of `sysbench oltp_point_select prepare` in DB on the backend.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
port=${1:-6033} user=${2:-root} db=${3:-sbtest}
shift $(( $# < 3 ? $# : 3 ))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -shared -fPIC -O2 -o "$work/libcount.so" "$top/benches/alloc-count/count.c" -ldl
cargo build --release --quiet --manifest-path "$top/Cargo.toml"
count() { # events [sysbench args]
  local events=$1; shift
  LD_PRELOAD="$work/libcount.so" "${CORELAY_BIN:-$top/target/release/corelay}" --workers 1 --listen "127.0.0.1:$port" ${CORELAY_ARGS:-} \
    >"$work/log" 2>&1 &
  local pid=$!
  sleep 1
  sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port" --mysql-user="$user" \
    --mysql-db="$db" --threads=4 --time=0 --events="$events" "$@" run >/dev/null
  kill -INT $pid; wait $pid || true
  sed -n 's/.*malloc=\([0-9]*\) realloc=\([0-9]*\).*/\1 \2/p' "$work/log" | awk '{print $1 + $2}'
}
a=$(count 1000 "$@"); b=$(count 5000 "$@")
echo "allocator calls: 1000 statements: $a; 5000 statements: $b; per statement: $(( (b - a) / 4000 ))"
