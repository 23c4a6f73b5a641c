#!/usr/bin/env bash
# TLS bench: sysbench over TLS directly to MariaDB and through corelay with TLS on both sides
# (clients to corelay, corelay to MariaDB with tls = "verify"), in one run, alternating;
# the same without TLS beside them, for the CPU TLS costs corelay per statement; and new
# TLS connections per second (connect, handshake, log in, quit), direct and through corelay.
#
#   benches/tls-bench.sh [--reps N] [--time SECONDS] [--workers N] [--out FILE]
#
# Cells: oltp_point_select, prepared and text, 8 and 64 client threads. Prints median QPS
# per target, corelay+TLS / direct+TLS, and corelay's process CPU per statement with and
# without TLS (two corelays, each serving only its own cells). Handshakes: 4 client
# processes (PyMySQL with a verifying ssl context) for SECONDS each, direct and through
# corelay; corelay's CPU per new connection. Certificates are made with openssl here.
set -euo pipefail

REPS=3 TIME=10 WORKERS=0 OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --time) TIME=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=benches/lib.sh
source "$top/benches/lib.sh"
bench_setup tls
python3 -c 'import pymysql' || { echo "missing PyMySQL (pip install pymysql)" >&2; exit 1; }

# A CA and a certificate for 127.0.0.1, used by MariaDB and by corelay.
(
  cd "$work"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" -keyout ca-key.pem -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout key.pem -out req.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf
  openssl x509 -req -in req.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem 2>/dev/null
  # sysbench's --mysql-ssl=on reads these three names from its working directory.
  mkdir -p sb
  openssl req -newkey rsa:2048 -nodes -subj "/CN=sysbench" -keyout sb/client-key.pem -out client.csr 2>/dev/null
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -out sb/client-cert.pem 2>/dev/null
  cp ca.pem sb/cacert.pem
  chmod 644 ./*.pem sb/*.pem
)

mdb_start primary --skip-log-bin --ssl-cert="$work/cert.pem" --ssl-key="$work/key.pem" --ssl-ca="$work/ca.pem"
DB_PORT=$(mdb_port primary)
echo "# preparing 4 tables x 10000 rows" >&2
sb_prepare "$DB_PORT" 4 10000
SB_COMMON+=(--tables=4 --table-size=10000)

TLS_PORT=$(free_port); PLAIN_PORT=$(free_port)
corelay_config "$TLS_PORT" "$DB_PORT" \
  "$(printf 'workers = %s\ntls_cert = "%s"\ntls_key = "%s"\n' "$WORKERS" "$work/cert.pem" "$work/key.pem")" \
  "$(printf 'max_connections = 4000\ntls = "verify"\ntls_ca = "%s"\n' "$work/ca.pem")" >"$work/tls.toml"
corelay_config "$PLAIN_PORT" "$DB_PORT" "$(printf 'workers = %s\n' "$WORKERS")" >"$work/plain.toml"
chmod 600 "$work"/*.toml
"$top/target/release/corelay" --config "$work/tls.toml" >"$work/tls.log" 2>&1 &
TLS_PID=$!; pids+=($!)
"$top/target/release/corelay" --config "$work/plain.toml" >"$work/plain.log" 2>&1 &
PLAIN_PID=$!; pids+=($!)
sleep 1
mariadb --no-defaults -h127.0.0.1 -P"$TLS_PORT" -usb -psb_pw --ssl --ssl-verify-server-cert --ssl-ca="$work/ca.pem" \
  -e "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'" sb >/dev/null
mariadb --no-defaults -h127.0.0.1 -P"$PLAIN_PORT" -usb -psb_pw --skip-ssl -e 'SELECT 1' sb >/dev/null

declare -A PORT=([direct_tls]=$DB_PORT [corelay_tls]=$TLS_PORT [direct]=$DB_PORT [corelay]=$PLAIN_PORT)
declare -A SSL=([direct_tls]=on [corelay_tls]=on [direct]=off [corelay]=off)
targets=(direct_tls corelay_tls direct corelay)
results="$work/results.tsv"
: >"$results"
run_one() { # target psmode threads
  local out="$work/run.txt"
  (cd "$work/sb" && sysbench oltp_point_select "${SB_COMMON[@]}" --mysql-port="${PORT[$1]}" --mysql-ssl="${SSL[$1]}" \
    --threads="$3" --db-ps-mode="$2" --time="$TIME" --percentile=99 run) >"$out" 2>&1 ||
    { echo "sysbench failed on $1:" >&2; tail -5 "$out" >&2; return 1; }
  awk -v t="$1" -v ps="$2" -v th="$3" '/queries:/ && /per sec/ { gsub(/[()]/, ""); q = $3 } /99th percentile:/ { p = $3 }
    END { print t "\t" ps "\t" th "\t" q "\t" p }' "$out" >>"$results"
}

echo "# $REPS repetitions x 4 cells x 4 targets x ${TIME}s" >&2
tls_before=$(cpu_ticks "$TLS_PID"); plain_before=$(cpu_ticks "$PLAIN_PID")
for rep in $(seq "$REPS"); do
  for ps in auto disable; do
    for threads in 8 64; do
      for i in 0 1 2 3; do
        run_one "${targets[$(( (i + rep) % 4 ))]}" "$ps" "$threads"
      done
    done
  done
  echo "# repetition $rep done" >&2
done
tls_ticks=$(( $(cpu_ticks "$TLS_PID") - tls_before )); plain_ticks=$(( $(cpu_ticks "$PLAIN_PID") - plain_before ))

# New TLS connections per second: 4 processes connecting, logging in and quitting.
handshakes() { # port: prints connections made in TIME seconds
  python3 - "$1" "$work/ca.pem" "$TIME" <<'PY'
import multiprocessing, ssl, sys, time
import pymysql
port, ca, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
def worker(q):
    ctx = ssl.create_default_context(cafile=ca)
    n, end = 0, time.time() + secs
    while time.time() < end:
        pymysql.connect(host="127.0.0.1", port=port, user="sb", password="sb_pw", database="sb", ssl=ctx).close()
        n += 1
    q.put(n)
q = multiprocessing.Queue()
ps = [multiprocessing.Process(target=worker, args=(q,)) for _ in range(4)]
for p in ps: p.start()
print(sum(q.get() for _ in ps))
for p in ps: p.join()
PY
}
hs_direct=()
hs_corelay=()
hs_before=$(cpu_ticks "$TLS_PID")
for _ in $(seq "$REPS"); do
  hs_direct+=("$(handshakes "$DB_PORT")")
  hs_corelay+=("$(handshakes "$TLS_PORT")")
done
hs_ticks=$(( $(cpu_ticks "$TLS_PID") - hs_before ))

report=$(python3 - "$results" "$REPS" "$TIME" "$(nproc)" "$tls_ticks" "$plain_ticks" "$hs_ticks" \
  "${hs_direct[*]}" "${hs_corelay[*]}" <<'PY'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
reps, secs, cpus, tls_ticks, plain_ticks, hs_ticks = sys.argv[2:8]
hs_direct = [int(x) for x in sys.argv[8].split()]
hs_corelay = [int(x) for x in sys.argv[9].split()]
cells = collections.defaultdict(lambda: collections.defaultdict(list))
served = collections.Counter()
for t, ps, th, qps, p99 in rows:
    cells[("prepared" if ps == "auto" else "text", int(th))][t].append((float(qps), float(p99)))
    served[t] += float(qps) * float(secs)
med = statistics.median
print(f"oltp_point_select, medians of {reps} repetitions x {secs}s, targets alternating; {cpus} CPUs shared by everything.")
print("direct_tls: sysbench over TLS to MariaDB; corelay_tls: TLS client to corelay and corelay to MariaDB (tls = \"verify\");")
print("direct / corelay: the same without TLS.")
print()
print("| protocol | threads | direct_tls QPS | corelay_tls QPS | corelay_tls/direct_tls | direct QPS | corelay QPS | corelay/direct | p99 ms direct_tls/corelay_tls |")
print("|---|---|---|---|---|---|---|---|---|")
ratios = []
for key in sorted(cells):
    c = cells[key]
    q = {t: med([r[0] for r in c[t]]) for t in c}
    p = {t: med([r[1] for r in c[t]]) for t in c}
    ratios.append(q["corelay_tls"] / q["direct_tls"])
    print(f"| {key[0]} | {key[1]} | {q['direct_tls']:.0f} | {q['corelay_tls']:.0f} | {q['corelay_tls']/q['direct_tls']:.2f} | "
          f"{q['direct']:.0f} | {q['corelay']:.0f} | {q['corelay']/q['direct']:.2f} | {p['direct_tls']:.2f}/{p['corelay_tls']:.2f} |")
print()
print(f"Geometric mean corelay_tls/direct_tls: {statistics.geometric_mean(ratios):.2f}.")
tls_us = int(tls_ticks) / 100 * 1e6 / served["corelay_tls"]
plain_us = int(plain_ticks) / 100 * 1e6 / served["corelay"]
print(f"corelay process CPU per statement: with TLS on both sides {tls_us:.2f} us ({int(tls_ticks)/100:.1f} s for "
      f"{served['corelay_tls']:.0f}), without TLS {plain_us:.2f} us ({int(plain_ticks)/100:.1f} s for {served['corelay']:.0f}): "
      f"TLS/plain {tls_us/plain_us:.2f}.")
d, c = med(hs_direct) / float(secs), med(hs_corelay) / float(secs)
print(f"New TLS connections per second (4 PyMySQL processes, connect + verify + log in + quit): direct {d:.0f}/s, "
      f"through corelay {c:.0f}/s (corelay/direct {c/d:.2f}); corelay CPU per new connection "
      f"{int(hs_ticks)/100*1e6/sum(hs_corelay):.0f} us (its backend connections are pooled: no backend handshake per client).")
PY
)
echo "$report"
if [ -n "$OUT" ]; then
  {
    echo "# TLS bench $(date -u +%Y-%m-%d)"
    echo
    machine_line
    echo "$(mariadbd --version | head -1); $(sysbench --version); Python $(python3 -c 'import sys; print(sys.version.split()[0])')."
    echo "Command: \`benches/tls-bench.sh --reps $REPS --time $TIME --workers $WORKERS\`"
    echo "Everything (MariaDB, corelay, sysbench, the Python clients) shares the same CPUs: compare ratios, not absolute numbers."
    echo
    echo "$report"
  } >"$OUT"
  echo "# written to $OUT" >&2
fi
