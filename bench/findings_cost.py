"""What the findings cost a day, on a table that already holds loaded days (A/B, interleaved rounds).

For one delivery day: build_summaries.sql without controls and with them (the scan that also finds
the day's part of the findings), build_findings from that part, and build_findings' own scan of the
day. Per step: wall seconds and the server's CPU seconds for this session only (MariaDB's
information_schema.PROFILING), so that other work on a shared machine does not count.

    .venv/bin/python bench/findings_cost.py --mysql-url mysql://root@127.0.0.1:3306/DB --day 2017-04-11
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from cloudtrail_mysql.cli import MySqlTarget
from cloudtrail_mysql.daytasks import build_summaries
from cloudtrail_mysql.findings import build_findings, load_controls


def _session_cpu(conn: Any) -> float:
    """The server's CPU seconds for this session's statements since the last call (MariaDB profiling)."""
    cursor = conn.cursor()
    cursor.execute("SELECT COALESCE(SUM(CPU_USER + CPU_SYSTEM), 0) FROM information_schema.PROFILING")
    (seconds,) = cursor.fetchone()
    cursor.execute("SET profiling_history_size = 0")
    cursor.execute("SET profiling_history_size = 100")
    cursor.close()
    return float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mysql-url", required=True)
    parser.add_argument("--table", default="logs")
    parser.add_argument("--day", required=True, type=date.fromisoformat)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    controls = load_controls()
    conn = MySqlTarget.from_url(args.mysql_url).connect()
    cursor = conn.cursor()
    cursor.execute("SET profiling = 1")
    cursor.execute("SET profiling_history_size = 100")
    cursor.close()
    steps: dict[str, Callable[[], Any]] = {
        "summaries without controls": lambda: build_summaries(conn, args.table, args.day),
        "findings, own scan": lambda: build_findings(conn, args.table, controls, args.day.isoformat()),
        "summaries with controls": lambda: build_summaries(conn, args.table, args.day, controls),
        "findings from the part": lambda: build_findings(conn, args.table, controls, args.day.isoformat()),
    }
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            _session_cpu(conn)
            started = time.perf_counter()
            step()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(_session_cpu(conn))
    conn.close()
    print(f"| step ({args.rounds} rounds, median) | wall s | server CPU s |")
    print("|---|---:|---:|")
    for name in steps:
        print(f"| {name} | {statistics.median(wall[name]):.2f} | {statistics.median(cpu[name]):.2f} |")
    extra = statistics.median(cpu["summaries with controls"]) - statistics.median(cpu["summaries without controls"])
    print(f"findings in the summaries' scan: {extra:.2f} s more server CPU in the scan, "
          f"{statistics.median(cpu['findings from the part']):.2f} s to publish; own scan: "
          f"{statistics.median(cpu['findings, own scan']):.2f} s")


if __name__ == "__main__":
    main()
