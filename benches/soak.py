"""Soak-test clients for benches/soak.sh (PyMySQL, text protocol).

  python3 soak.py ledger PORT SECONDS OUT.json   # writers + readers, acknowledged ids recorded
  python3 soak.py verify PRIMARY_SOCKET OUT.json # every acknowledged id is on the primary
  python3 soak.py plot SAMPLES.tsv OUT.svg       # fds and RSS over time

Writers insert rows with ids of their own, alone (autocommit) or three in a transaction;
an id counts as acknowledged once its INSERT (or the transaction's COMMIT) got OK. Every
error is recorded by code; the session reconnects and goes on.
"""

import json
import sys
import threading
import time

import pymysql

WRITERS = 4
READERS = 4


def connect(port):
    return pymysql.connect(host="127.0.0.1", port=port, user="sb", password="sb_pw", database="sb",
                           connect_timeout=5, read_timeout=30, write_timeout=30, autocommit=True)


def error_code(e):
    if isinstance(e, pymysql.err.MySQLError) and e.args and isinstance(e.args[0], int):
        return str(e.args[0])
    return type(e).__name__


def ledger(port, seconds, out):
    deadline = time.time() + seconds
    acked = [[] for _ in range(WRITERS)]
    errors = {}
    reads = [0]
    lock = threading.Lock()

    def note(e, where):
        key = f"{where} {error_code(e)}: {str(e)[:90]}"
        with lock:
            errors[key] = errors.get(key, 0) + 1

    def writer(w):
        conn, n = None, 0
        while time.time() < deadline:
            try:
                if conn is None:
                    conn = connect(port)
                cur = conn.cursor()
                if n % 2 == 0:
                    i = w * 10**9 + n
                    n += 1
                    cur.execute("INSERT INTO ledger (id, writer) VALUES (%s, %s)", (i, w))
                    acked[w].append(i)
                else:
                    ids = [w * 10**9 + n + k for k in range(3)]
                    n += 3
                    cur.execute("BEGIN")
                    for i in ids:
                        cur.execute("INSERT INTO ledger (id, writer) VALUES (%s, %s)", (i, w))
                    cur.execute("COMMIT")
                    acked[w].extend(ids)
            except Exception as e:  # noqa: BLE001 - every error is counted by kind
                note(e, "write")
                try:
                    if conn is not None:
                        conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                time.sleep(0.05)

    def reader(r):
        conn = None
        while time.time() < deadline:
            try:
                if conn is None:
                    conn = connect(port)
                cur = conn.cursor()
                cur.execute("SELECT COUNT(*) FROM ledger WHERE writer = %s", (r % WRITERS,))
                cur.fetchall()
                with lock:
                    reads[0] += 1
            except Exception as e:  # noqa: BLE001
                note(e, "read")
                conn = None
                time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out, "w") as f:
        json.dump({"acked": [i for a in acked for i in a], "errors": errors, "reads": reads[0]}, f)


def verify(socket, out):
    with open(out) as f:
        r = json.load(f)
    conn = pymysql.connect(unix_socket=socket, user="root", database="sb")
    cur = conn.cursor()
    cur.execute("SELECT id FROM ledger")
    present = {row[0] for row in cur.fetchall()}
    acked = set(r["acked"])
    missing = sorted(acked - present)
    print(f"acknowledged writes: {len(acked)}")
    print(f"rows on the primary: {len(present)} (rows without an acknowledgement: {len(present - acked)})")
    print(f"acknowledged but missing: {len(missing)} {missing[:10]}")
    print(f"reads: {r['reads']}")
    print("client errors by kind:")
    for k, v in sorted(r["errors"].items(), key=lambda kv: -kv[1]):
        print(f"  {v:6d}  {k}")
    return 1 if missing else 0


def plot(samples, out):
    rows = []
    with open(samples) as f:
        for line in f:
            p = line.split()
            if len(p) == 3 and p[0].isdigit():
                rows.append((int(p[0]), int(p[1]), int(p[2])))
    w, h, m = 900, 420, 60
    t0, t1 = rows[0][0], max(rows[-1][0], rows[0][0] + 1)
    fd_max = max(r[1] for r in rows) * 1.2 + 1
    rss_max = max(r[2] for r in rows) * 1.2 + 1
    x = lambda t: m + (t - t0) / (t1 - t0) * (w - 2 * m)  # noqa: E731
    y = lambda v, top: h - m - v / top * (h - 2 * m)  # noqa: E731
    fd_pts = " ".join(f"{x(t):.1f},{y(fd, fd_max):.1f}" for t, fd, _ in rows)
    rss_pts = " ".join(f"{x(t):.1f},{y(rss, rss_max):.1f}" for t, _, rss in rows)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{m}" y="25" font-size="15">corelay soak: open file descriptors and RSS (all processes), every 10 s</text>',
           f'<line x1="{m}" y1="{h-m}" x2="{w-m}" y2="{h-m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h-m}" stroke="black"/>',
           f'<line x1="{w-m}" y1="{m}" x2="{w-m}" y2="{h-m}" stroke="black"/>',
           f'<polyline points="{fd_pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>',
           f'<polyline points="{rss_pts}" fill="none" stroke="#d62728" stroke-width="2"/>',
           f'<text x="{m}" y="{m-8}" fill="#1f77b4">fds (max {fd_max/1.2:.0f})</text>',
           f'<text x="{w-m}" y="{m-8}" fill="#d62728" text-anchor="end">RSS KiB (max {rss_max/1.2:.0f})</text>',
           f'<text x="{w/2}" y="{h-20}" text-anchor="middle">minutes</text>']
    for k in range(0, 6):
        v = fd_max * k / 5
        svg.append(f'<text x="{m-6}" y="{y(v, fd_max)+4:.1f}" text-anchor="end">{v:.0f}</text>')
        v = rss_max * k / 5
        svg.append(f'<text x="{w-m+6}" y="{y(v, rss_max)+4:.1f}">{v/1024:.0f}M</text>')
    minutes = (t1 - t0) / 60
    step = max(1, int(minutes / 10))
    for mm in range(0, int(minutes) + 1, step):
        svg.append(f'<text x="{x(t0 + mm*60):.1f}" y="{h-m+16}" text-anchor="middle">{mm}</text>')
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "ledger":
        ledger(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    elif cmd == "verify":
        sys.exit(verify(sys.argv[2], sys.argv[3]))
    elif cmd == "plot":
        plot(sys.argv[2], sys.argv[3])
