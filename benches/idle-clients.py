#!/usr/bin/env python3
"""Memory per idle client connection of a running corelay.

    benches/idle-clients.py --port 6033 --user root --password '' --pid PID [--clients 10000]

Opens N client sessions (PyMySQL, each logged in and having run one SELECT), holds them
idle, and prints corelay's RSS at rest and with the clients held, and the difference per
client. Raise the open-file limit first (ulimit -n) for both corelay and this script.
"""
import argparse
import time

import pymysql


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=6033)
    ap.add_argument("--user", default="root")
    ap.add_argument("--password", default="")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--clients", type=int, default=10000)
    a = ap.parse_args()
    before = rss_kib(a.pid)
    held = []
    for i in range(a.clients):
        c = pymysql.connect(host="127.0.0.1", port=a.port, user=a.user, password=a.password, autocommit=True)
        c.cursor().execute("SELECT 1")
        held.append(c)
    time.sleep(2)
    after = rss_kib(a.pid)
    print(f"clients={a.clients} rss_at_rest_kib={before} rss_with_clients_kib={after} "
          f"per_client_kib={(after - before) / a.clients:.1f}")
    for c in held:
        c.close()


if __name__ == "__main__":
    main()
