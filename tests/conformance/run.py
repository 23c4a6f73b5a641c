#!/usr/bin/env python3
"""Differential conformance: runs the same session scripts on a direct connection and
through corelay, and compares everything a client sees.

For each script (see scripts.sql for the format) and each protocol (text, and binary through
the client library's server-side prepared statements):

  * session A runs the script's statements;
  * between two of A's statements, session B runs the next "noise" statement: B changes
    state corelay replays (character set, sql_mode, time zone, schema) and reads what a
    leak from A would show (user variables, temporary tables, settings), so that with a
    small pool A and B take turns on one backend connection;
  * after the script, session C, while A is still open, and then session D, after A has
    closed, run the leak check: they must see nothing of A's.

Every statement's outcome is recorded: result sets with column metadata (name, type,
flags, character set), rows, affected rows, insert id, warning count, the server status
flags of the last OK/EOF, or the error (code, SQLSTATE, message). The direct run and the
corelay run must record the same, statement by statement.

Usage: run.py --direct HOST:PORT:USER:PASSWORD --proxy HOST:PORT:USER:PASSWORD --db DB
              --root HOST:PORT:USER:PASSWORD [--scripts FILE] [--protocol text|binary|both]
              [--only NAME] [--strict]
--strict: also compare the scripts marked "@multiplexed-differs" (for a user with
multiplex = false, whose sessions must show no difference at all).
"""

import argparse
import os
import sys

import mysql.connector
from mysql.connector import connection as _connection

# The client library keeps only two bits of the status flags: keep them all.
_orig_status = _connection.MySQLConnection._handle_server_status


def _record_status(self, flags):
    self._corelay_flags = flags
    _orig_status(self, flags)


_connection.MySQLConnection._handle_server_status = _record_status

# Before each run, as root on the server: the same tables and rows for every run.
DEFAULT_SETUP = [
    "CREATE DATABASE IF NOT EXISTS conformance_other",
    "CREATE OR REPLACE TABLE conformance_other.t_other (a INT)",
    "INSERT INTO conformance_other.t_other VALUES (42)",
    "CREATE OR REPLACE TABLE t1 (id INT AUTO_INCREMENT PRIMARY KEY, a INT, s VARCHAR(20)) ENGINE=InnoDB",
    "INSERT INTO t1 (a, s) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
    "CREATE OR REPLACE TABLE t2 (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB",
    "INSERT INTO t2 VALUES (1, 'x'), (2, 'y')",
    "CREATE OR REPLACE SEQUENCE seq1",
]

NOISE = [
    "SET NAMES latin1",
    "SELECT @@character_set_client, @@collation_connection, @@sql_mode, @@time_zone, DATABASE()",
    "SET sql_mode = 'NO_ENGINE_SUBSTITUTION,ANSI_QUOTES'",
    "SELECT @v, @v1, @v2, @a, @b, @x",
    "SET time_zone = '+03:00'",
    "SELECT COUNT(*) FROM tmp1",
    "SELECT 1/0",
    "SHOW WARNINGS",
    "USE conformance_other",
    "SELECT @@autocommit, @@tx_isolation, @@optimizer_switch = @@global.optimizer_switch, "
    "@@join_cache_level, @@lc_time_names, @@div_precision_increment, DATABASE()",
    "SET NAMES utf8mb4",
    "SELECT @@in_transaction, @@last_insert_id",
]

LEAK_CHECK = [
    "SHOW WARNINGS",
    "SELECT @v, @v1, @v2, @a, @b, @x",
    "SELECT COUNT(*) FROM tmp1",
    "SELECT COUNT(*) FROM tmp2",
    "SELECT IS_FREE_LOCK('lk1'), IS_FREE_LOCK('lk2')",
    "SELECT @@sql_mode, @@time_zone, @@character_set_client, @@character_set_results, "
    "@@collation_connection, DATABASE(), @@autocommit, @@tx_isolation, @@tx_read_only",
    "SELECT @@optimizer_switch = @@global.optimizer_switch, @@join_cache_level, @@lc_time_names, "
    "@@div_precision_increment, @@max_statement_time, @@foreign_key_checks, @@unique_checks, "
    "@@sql_select_limit, @@group_concat_max_len, @@big_tables, @@sql_auto_is_null",
    "SELECT @@in_transaction, LAST_INSERT_ID(), ROW_COUNT()",
    "SELECT LASTVAL(seq1)",
    "SELECT COUNT(*) FROM t1",
]


def parse_scripts(path):
    scripts, cur = [], None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("== "):
                cur = {"name": line[3:].strip(), "setup": [], "body": [], "flags": set()}
                scripts.append(cur)
            elif cur is None:
                raise SystemExit(f"{path}: a statement before the first '== name' line: {line}")
            elif line.startswith("setup: "):
                cur["setup"].append(line[7:])
            elif line.startswith("@"):
                cur["flags"].add(line.strip())
            else:
                cur["body"].append(line)
    return scripts


def endpoint(spec):
    host, port, user, password = spec.split(":", 3)
    return dict(host=host, port=int(port), user=user, password=password)


def connect(ep, db):
    conn = mysql.connector.connect(
        **ep,
        database=db,
        autocommit=True,
        use_pure=True,
        consume_results=True,
        allow_local_infile=False,
        charset="utf8mb4",
        collation="utf8mb4_general_ci",
    )
    conn._corelay_ep, conn._corelay_db = ep, db or "mysql"
    return conn


def value(v):
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    return repr(v)


def localise(sql, db):
    """Scripts name the schemas corelay_test and conformance_other, the locks lk1 and lk2
    and the XA transaction x1; each run uses its own (locks and XA ids are server-wide), so
    that runs may go side by side."""
    return (
        sql.replace("corelay_test", db)
        .replace("conformance_other", f"{db}_other")
        .replace("'lk", f"'{db}_lk")
        .replace("'x1'", f"'{db}_x1'")
    )


def observe(conn, sql, binary):
    """Runs one statement; returns what the client saw, as a list of plain values.
    `!reset` sends COM_RESET_CONNECTION, `!change_user` COM_CHANGE_USER (same user)."""
    sql = localise(sql, conn._corelay_db)
    out = []
    try:
        if sql == "!reset":
            conn.cmd_reset_connection()
            return [("reset", getattr(conn, "_corelay_flags", None))]
        if sql == "!change_user":
            ep = conn._corelay_ep
            conn.cmd_change_user(username=ep["user"], password=ep["password"], database=conn._corelay_db)
            return [("change_user", getattr(conn, "_corelay_flags", None))]
        cur = conn.cursor(prepared=True) if binary else conn.cursor()
        cur.execute(sql)
        while True:
            if cur.with_rows:
                desc = [tuple(d) for d in (cur.description or [])]
                rows = [tuple(value(x) for x in r) for r in cur.fetchall()]
                out.append(("rows", desc, rows, cur.warning_count, getattr(conn, "_corelay_flags", None)))
            else:
                out.append(("ok", cur.rowcount, cur.lastrowid, cur.warning_count, getattr(conn, "_corelay_flags", None)))
            # (The library cannot walk a prepared CALL's further results: they are read and
            # dropped, alike on both sides.)
            if binary or not cur.nextset():
                break
        cur.close()
    except mysql.connector.Error as e:
        out.append(("error", e.errno, e.sqlstate, e.msg))
        try:
            conn.consume_results()
        except Exception:
            pass
    except Exception as e:  # the client library itself failed on the reply
        raise SystemExit(
            f"{getattr(observe, 'script', '?')}: the client library failed on {sql!r} "
            f"({'binary' if binary else 'text'}): {e!r}"
        )
    return out


def run_script(script, ep, db, root, binary):
    """One run of a script on `ep`; returns the transcript (list of lines)."""
    setup = connect(root, db)
    for sql in DEFAULT_SETUP + script["setup"]:
        r = observe(setup, sql, False)
        if r and r[0][0] == "error":
            raise SystemExit(f"{script['name']}: setup failed: {sql}: {r}")
    setup.close()
    lines = []
    a = connect(ep, db)
    b = connect(ep, db)
    for i, sql in enumerate(script["body"]):
        observe.script = script["name"]
        lines.append(("A", sql, observe(a, sql, binary)))
        noise = NOISE[i % len(NOISE)]
        lines.append(("B", noise, observe(b, noise, binary)))
    c = connect(ep, db)
    for sql in LEAK_CHECK:
        lines.append(("C", sql, observe(c, sql, binary)))
    c.close()
    a.close()
    d = connect(ep, db)
    for sql in LEAK_CHECK:
        lines.append(("D", sql, observe(d, sql, binary)))
    d.close()
    b.close()
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--direct", required=True)
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--scripts", default=os.path.join(os.path.dirname(__file__), "scripts.sql"))
    ap.add_argument("--list", action="store_true", help="print the script names and exit")
    ap.add_argument("--protocol", default="both", choices=["text", "binary", "both"])
    ap.add_argument("--only")
    ap.add_argument("--strict", action="store_true")
    args = ap.parse_args()
    direct, proxy, root = endpoint(args.direct), endpoint(args.proxy), endpoint(args.root)
    scripts = parse_scripts(args.scripts)
    if args.list:
        print("\n".join(s["name"] for s in scripts))
        return
    setup = connect(root, None)
    for sql in [f"CREATE DATABASE IF NOT EXISTS {args.db}", f"CREATE DATABASE IF NOT EXISTS {args.db}_other"]:
        observe(setup, sql, False)
    setup.close()
    protocols = ["text", "binary"] if args.protocol == "both" else [args.protocol]
    compared = failed = skipped = 0
    for script in scripts:
        if args.only and args.only not in script["name"]:
            continue
        if "@multiplexed-differs" in script["flags"] and not args.strict:
            skipped += 1
            continue
        for proto in protocols:
            if "@text-only" in script["flags"] and proto == "binary":
                continue
            binary = proto == "binary"
            want = run_script(script, direct, args.db, root, binary)
            got = run_script(script, proxy, args.db, root, binary)
            compared += 1
            if want != got:
                failed += 1
                print(f"DIFFERS: {script['name']} ({proto})")
                for w, g in zip(want, got):
                    if w != g:
                        print(f"  session {w[0]}: {w[1]}")
                        print(f"    direct:  {w[2]}")
                        print(f"    corelay: {g[2]}")
                if len(want) != len(got):
                    print(f"  {len(want)} statements direct, {len(got)} through corelay")
    print(f"{len(scripts)} scripts, {compared} runs compared, {skipped} skipped (documented differences), {failed} differ")
    sys.exit(1 if failed or compared == 0 else 0)


if __name__ == "__main__":
    main()
