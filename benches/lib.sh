# Shared set-up for the bench scripts (sourced): a work folder that is removed at exit,
# throwaway MariaDB servers, sysbench, HAProxy and corelay configurations.
#
#   bench_setup NAME                 work folder $work; everything in $pids is killed at exit
#   free_port                        an unused TCP port on 127.0.0.1
#   mdb_start NAME [MARIADBD ARGS]   a MariaDB with its own datadir ($work/NAME), user sb/sb_pw,
#                                    database sb; a second call restarts it on the same port
#   mdb_port NAME, mdb_sql NAME SQL
#   mdb_replicate REPLICA PRIMARY    REPLICA replicates from PRIMARY's first binary log
#                                    (start PRIMARY with --log-bin, REPLICA with a server id)
#   sb_prepare PORT TABLES ROWS      sysbench tables in database sb (exported as SB_TABLES/SB_ROWS)
#   sb_run PORT SCRIPT PSMODE THREADS SECONDS   prints "statements qps p99_ms"
#   haproxy_start PORT DB_PORT NBTHREAD         HAProxy in TCP mode; prints its pid
#   corelay_config PORT DB_PORT [PROXY KEYS] [SERVER KEYS]   a corelay configuration for user sb
#   corelay_start NAME PORT DB_PORT [FLAGS]     the release corelay on that configuration
#                                    ($work/NAME.toml, log $work/NAME.log); pid in CORELAY_PID[NAME]
#   cpu_ticks PID                    user+system ticks (1/100 s) of PID and its child processes
#   ipis                             the machine's CAL and TLB interrupts so far (each one an
#                                    inter-processor interrupt some CPU sent)
#   machine_line                     "Machine: N CPUs (model), memory, kernel;" for a results file

bench_setup() {
  for tool in mariadbd mariadb-install-db mariadb sysbench haproxy python3; do
    command -v $tool >/dev/null || { echo "missing $tool (apt-get install mariadb-server mariadb-client sysbench haproxy)" >&2; exit 1; }
  done
  cargo build --release --quiet --manifest-path "$top/Cargo.toml"
  work=$(mktemp -d "/tmp/corelay-$1.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
  user_flag=()
  [ "$(id -u)" = 0 ] && user_flag=(--user=root)
  declare -gA MDB_PORT MDB_PID MDB_ARGS CORELAY_PID
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$work"/haproxy-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 1
  rm -rf "$work"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mdb_start() {
  local name=$1; shift
  if [ ! -d "$work/$name" ]; then
    if [ ! -d "$work/template" ]; then
      mariadb-install-db --no-defaults "${user_flag[@]}" --datadir="$work/template" --auth-root-authentication-method=normal \
        --skip-test-db --innodb-log-file-size=64M >"$work/install.log" 2>&1
    fi
    cp -a "$work/template" "$work/$name"
    MDB_PORT[$name]=$(free_port)
    MDB_ARGS[$name]="$*"
  fi
  # shellcheck disable=SC2086
  mariadbd --no-defaults "${user_flag[@]}" --datadir="$work/$name" --port="${MDB_PORT[$name]}" --socket="$work/$name.sock" \
    --bind-address=127.0.0.1 --skip-name-resolve --performance-schema=OFF --max-connections=4000 --max-prepared-stmt-count=1000000 \
    --innodb-buffer-pool-size=512M --innodb-log-file-size=64M --innodb-flush-log-at-trx-commit=2 ${MDB_ARGS[$name]} \
    >>"$work/$name.log" 2>&1 &
  MDB_PID[$name]=$!
  pids+=($!)
  for _ in $(seq 200); do
    if mariadb --no-defaults -uroot -S "$work/$name.sock" -e 'SELECT 1' >/dev/null 2>&1; then
      mdb_sql "$name" "CREATE USER IF NOT EXISTS sb@'%' IDENTIFIED BY 'sb_pw'; GRANT ALL ON *.* TO sb@'%'; CREATE DATABASE IF NOT EXISTS sb;"
      return
    fi
    sleep 0.2
  done
  echo "MariaDB $name did not start; see $work/$name.log" >&2
  exit 1
}

mdb_port() { echo "${MDB_PORT[$1]}"; }
mdb_sql() { mariadb --no-defaults -uroot -S "$work/$1.sock" -N -e "$2"; }
mdb_replicate() { # replica primary [", MORE=OPTIONS" of CHANGE MASTER]
  local first
  first=$(mdb_sql "$2" "SHOW BINARY LOGS" | head -1 | cut -f1)
  mdb_sql "$1" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$(mdb_port "$2"), MASTER_USER='root', \
    MASTER_PASSWORD='', MASTER_LOG_FILE='$first', MASTER_LOG_POS=4, MASTER_USE_GTID=no${3:-}; START SLAVE"
}

SB_COMMON=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=sb --mysql-password=sb_pw --mysql-db=sb)
sb_prepare() {
  export SB_TABLES=$2 SB_ROWS=$3
  sysbench oltp_read_only "${SB_COMMON[@]}" --tables="$2" --table-size="$3" --mysql-port="$1" --threads=4 prepare \
    >"$work/prepare.log" 2>&1
}

sb_run() {
  local out=$work/run.$1.txt
  sysbench "$2" "${SB_COMMON[@]}" --tables="$SB_TABLES" --table-size="$SB_ROWS" --mysql-port="$1" --threads="$4" \
    --db-ps-mode="$3" --time="$5" --percentile=99 run >"$out" 2>&1 || { echo "sysbench failed on port $1:" >&2; tail -5 "$out" >&2; return 1; }
  awk '/queries:/ && /per sec/ { gsub(/[()]/, ""); n = $2; q = $3 } /99th percentile:/ { p = $3 } END { print n, q, p }' "$out"
}

haproxy_start() {
  printf 'global\n  maxconn 8000\n  nbthread %s\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\nlisten m\n  bind 127.0.0.1:%s\n  server db 127.0.0.1:%s\n' \
    "$3" "$1" "$2" >"$work/haproxy-$1.cfg"
  haproxy -f "$work/haproxy-$1.cfg" -D -p "$work/haproxy-$1.pid"
  cat "$work/haproxy-$1.pid"
}

corelay_config() {
  cat <<TOML
[proxy]
listen = "127.0.0.1:$1"
admin_listen = ""
metrics_listen = ""
log_level = "warn"
${3:-}
[[cluster]]
name = "bench"
[[cluster.server]]
address = "127.0.0.1:$2"
role = "primary"
${4:-max_connections = 4000}
[[db_user]]
name = "sb"
password = "sb_pw"
cluster = "bench"
default_db = "sb"
[[user]]
name = "sb"
password = "sb_pw"
db_user = "sb"
max_connections = 100000
[[admin_user]]
name = "admin"
password = "admin_pw"
TOML
}

corelay_start() {
  local name=$1 port=$2 db=$3; shift 3
  corelay_config "$port" "$db" >"$work/$name.toml"
  "$top/target/release/corelay" --config "$work/$name.toml" "$@" >"$work/$name.log" 2>&1 &
  CORELAY_PID[$name]=$!
  pids+=($!)
}

cpu_ticks() {
  [ -n "$1" ] || { echo 0; return; }
  local p t=0
  for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    t=$((t + $(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0)))
  done
  echo "$t"
}

ipis() { awk '$1 == "CAL:" || $1 == "TLB:" { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) t += $i } END { print t + 0 }' /proc/interrupts; }

machine_line() {
  echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name\t*: *//p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r);"
}
