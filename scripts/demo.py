"""make demo: a sample CloudTrail day through the daily DAG, against the local MySQL.

1. generates a realistic day (two accounts, three regions, an organization trail, digest files)
   and the day after it, into a local S3 server (moto, over HTTP on 127.0.0.1);
2. runs ``airflow dags test cloudtrail_daily <day>`` with its own Airflow home under .demo/;
3. loads the same day from a folder with ``cloudtrail-mysql import`` into a second table, to
   show the command and that both give the same rows;
4. prints the tutorial's questions answered from the table, and the day's security findings;
5. ends with the HTML day report's path and both tables' rows side by side.

While Airflow works (its database, the DAG run) a line every few seconds says what it is doing;
Airflow's own output goes to .demo/*.log.

Database: DEMO_MYSQL_URL or mysql://root@127.0.0.1:3306/cloudtrail_demo, dropped and made anew.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO = REPO / ".demo"
DAY = date.fromisoformat(os.environ.get("DEMO_DAY", "2017-04-10"))
RECORDS = int(os.environ.get("DEMO_RECORDS", "20000"))
# The demo's own database, emptied at each start (never the `cloudtrail` database real loads use).
URL = os.environ.get("DEMO_MYSQL_URL", "mysql://root@127.0.0.1:3306/cloudtrail_demo")


# Seconds between the "still working" lines while Airflow runs.
PROGRESS_EVERY = 10.0
# The DAG's tasks as `airflow dags test` names them in its output, in their order.
DAG_TASKS = ("resolve_day", "plan_batches", "load_batch", "create_indexes", "build_summaries", "report_day")


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, env={**os.environ, **(env or {})}, text=True)
    if result.returncode != 0:
        sys.exit(f"demo: {command[0]} failed with exit code {result.returncode}")
    return result


def run_quietly(*command: str, env: dict[str, str], doing: str, log: Path) -> str:
    """Run a long, chatty command with its output in ``log``; say every few seconds what it is at."""
    print(f"{doing} ...  (output: {log.relative_to(REPO)})", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    lines: list[str] = []
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1
        )

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while True:
            try:
                process.wait(timeout=PROGRESS_EVERY)
                break
            except subprocess.TimeoutExpired:
                at = latest_task(lines)
                print(f"  ... {time.monotonic() - started:.0f} s, {f'at {at}' if at else 'starting'}", flush=True)
        reader.join()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        print("".join(lines[-60:]))
        sys.exit(f"demo: {' '.join(command[:3])} failed with exit code {process.returncode} (whole output: {log})")
    print(f"  done in {seconds:.1f} s", flush=True)
    return "".join(lines)


_TASK_START = re.compile(r"starting task_id=(\w+)(?: map_index=(\d+))?")


def latest_task(lines: Sequence[str]) -> str | None:
    """The DAG task started last in the output so far ("load_batch 2" for a mapped one), if any."""
    for line in reversed(lines):
        started = _TASK_START.search(line)
        if started:
            task, index = started.groups()
            return task if index is None else f"{task} {index}"
    for line in reversed(lines):  # output without that phrase (Airflow 2)
        for task in DAG_TASKS:
            if task in line:
                return task
    return None


def table_counts(connection: Any, tables: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Each table's rows and a checksum of its event IDs (equal sums: the same events, whatever the order)."""
    cursor = connection.cursor()
    counts = {}
    for table in tables:
        cursor.execute(f"SELECT COUNT(*), COALESCE(BIT_XOR(CRC32(eventID)), 0) FROM `{table}`")
        rows, checksum = cursor.fetchone()
        counts[table] = (int(rows), int(checksum))
    return counts


def summary(
    report: Path | None, day: date, counts: dict[str, tuple[int, int]], loaded_by: dict[str, str]
) -> tuple[list[str], bool]:
    """The demo's last lines, and whether the tables agree: the day report's path, the tables' rows side by side."""
    columns = [(loaded_by[table], table, f"{rows}") for table, (rows, _) in counts.items()]
    widths = [max(len(cell) for cell in column) for column in columns]
    lines = [f"Day report of {day} (HTML, written by the DAG's report_day task): {report if report else 'not found'}", ""]
    for index, name in enumerate(("loaded by", "table", "rows")):
        lines.append(f"{name:<12}" + "   ".join(column[index].ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip())
    agree = len(set(counts.values())) == 1
    lines.append(
        "The same events in both tables: same row count and same event IDs."
        if agree else "The tables DIFFER (row count or event IDs): the DAG and the command did not load the same events."
    )
    return lines, agree


def main() -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from cloudtrail_mysql.cli import MySqlTarget, ensure_database
    from cloudtrail_mysql.sample import day_files, write_files

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the S3 server's request log
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    fake = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(fake)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        bucket = "demo-cloudtrail"
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=bucket)
        uploaded = events = 0
        for day in (DAY, DAY + timedelta(days=1)):
            for trail, generated in (
                ("account trails", day_files(day, records=RECORDS)),
                ("organization trail", day_files(
                    day, records=RECORDS // 10, organization_id="o-demo123456", accounts=("777788889999",), regions=("us-west-2",)
                )),
            ):
                print(f"generating {day}'s files of the {trail} and uploading them to s3://{bucket} ...", flush=True)
                for item in generated:
                    client.put_object(Bucket=bucket, Key=item.key, Body=item.body)
                    uploaded += 1
                    events += item.records if day == DAY else 0
        print(f"uploaded {uploaded} objects to s3://{bucket} on {endpoint} ({events} events delivered on {DAY})")

        home = DEMO / "airflow"
        home.mkdir(parents=True, exist_ok=True)
        database = urlsplit(URL).path.lstrip("/") or "cloudtrail"
        airflow_env = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {"conn_type": "aws", "login": "demo", "password": "demo", "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
            ),
            "AIRFLOW_CONN_MYSQL_DEFAULT": URL,
            "CLOUDTRAIL_BUCKET": bucket,
        }
        # The Airflow connection names an existing database: make it anew.
        target = MySqlTarget.from_url(URL)
        conn = target.connect(with_database=False)
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {target.database}")
        conn.close()
        ensure_database(target, "logs")
        run_quietly(
            str(BIN / "airflow"), "db", "migrate", env=airflow_env,
            doing="preparing Airflow's database (airflow db migrate, SQLite under .demo/airflow)", log=DEMO / "airflow-db-migrate.log",
        )
        output = run_quietly(
            str(BIN / "airflow"), "dags", "test", "cloudtrail_daily", DAY.isoformat(), env=airflow_env,
            doing=f"running the DAG: airflow dags test cloudtrail_daily {DAY} (Airflow start-up included)",
            log=DEMO / "airflow-dags-test.log",
        )
        found = re.search(r"Day report: (file://\S+)", output)
        report = Path(unquote(urlsplit(found.group(1)).path)) if found else None

        folder = DEMO / "files"
        print(f"writing the same {DAY} files into {folder.relative_to(REPO)}/ for the command ...", flush=True)
        write_files(folder, day_files(DAY, records=RECORDS))
        write_files(folder, day_files(DAY, records=RECORDS // 10, organization_id="o-demo123456", accounts=("777788889999",), regions=("us-west-2",)))
        run(str(BIN / "cloudtrail-mysql"), "import", str(folder), "--mysql-url", URL, "--table", "logs_from_folder")
    finally:
        server.stop()
    run(str(BIN / "cloudtrail-mysql"), "report", "--mysql-url", URL)
    run(str(BIN / "cloudtrail-mysql"), "findings", "--day", DAY.isoformat(), "--limit", "3", "--mysql-url", URL)
    conn = target.connect()
    try:
        counts = table_counts(conn, ("logs", "logs_from_folder"))
    finally:
        conn.close()
    lines, agree = summary(
        report, DAY, counts, {"logs": "the DAG (airflow dags test)", "logs_from_folder": "cloudtrail-mysql import (folder)"}
    )
    print("\n" + "\n".join(lines))
    print(f"\nDone. Query it yourself: mysql -h 127.0.0.1 -u root {database} -e 'SELECT COUNT(*) FROM logs'")
    if not agree:
        sys.exit("demo: the DAG's table and the command's table differ")
    if report is None or not report.is_file():
        sys.exit(f"demo: the DAG's output names no day report (see {DEMO / 'airflow-dags-test.log'})")


if __name__ == "__main__":
    main()
