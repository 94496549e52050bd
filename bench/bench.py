"""make bench: how fast the loader writes CloudTrail rows into MySQL, against a baseline and a ceiling.

All in one run, against the same MySQL server, on the same generated files (default 200k events,
~1,000+ files, 3 accounts x 4 regions), each method several times (medians reported):

- baseline: the tutorial's way (stdlib json, one INSERT per row, autocommit), same workers, on a
  fraction of the files (it is slow; its rate is what counts);
- ceiling:  LOAD DATA LOCAL INFILE of the very rows our loader builds, prepared as TSV before the
  clock starts, same workers, one transaction per file;
- ours:     `cloudtrail-mysql import FOLDER --workers N` (everything: read, parse, build, write);
- ours-s3:  `cloudtrail-mysql import s3://BUCKET/ --workers N` from the local S3 server (moto);
- dag:      `airflow dags test cloudtrail_daily DAY` over a local S3 server (moto, over HTTP), the
  whole run: Airflow's start-up, planning, loading, indexes, summaries and the report
  (--skip-dag to leave it out);
- dag-load: the same run's load phase, from the first load_batch task's start to the last one's
  end, as Airflow's metadata database records them (rows reach MySQL only in those tasks).

--s3-latency-ms N makes the S3 server answer each GET after N ms, as a distant S3 does (the
command and the DAG read files ahead, so that wait hides behind loading).

--events-per-file K makes a day of small files instead (K events each, --records in all: e.g.
--records 10000 --events-per-file 5, a quiet trail's day of 2,000 files), in a folder of its own.

--against DIR (A/B mode) also runs the command from another checkout's plugins folder (DIR, e.g. a
`git archive` of main extracted somewhere) as ours-base and ours-s3-base, each run right before or
after ours and ours-s3 (the order alternates run by run), and reports the per-run ratios.

--days N (growth mode) measures instead what a table's daily life costs: N consecutive generated
days of --records events each, each through `airflow dags test cloudtrail_daily D` into the same
table, as production runs them; per day: the run's wall time, the load phase's rows/s, the
create_indexes, build_summaries, build_findings and apply_retention seconds (Airflow's metadata
DB), the table's size, and whether the day is exact. --retention-days K then reruns the last day
with that param.

Figures: rows/s, MB/s of gzip input, peak RSS of the largest process (each measured command is
run under a small wrapper whose RUSAGE_CHILDREN gives it), the CPU seconds of the command's
processes and of the MySQL server's process (mariadbd/mysqld, from /proc/<pid>/stat) and their
ratio (median of each run's ratio), and ratios against the ceiling and the baseline measured in
the same run. Uses only the standard library, the project and its deps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = date(2017, 4, 10)
ACCOUNTS = ("111122223333", "444455556666", "777788889999")
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2")
# Runs a command and prints its exit code, the peak RSS (KiB) of the largest process in its tree
# and the CPU seconds (user + system) of the whole tree.
MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(code, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, file=sys.stderr)\n"
)


@dataclass
class Method:
    name: str
    rows: int = 0
    gzip_bytes: int = 0
    seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    s3_cpu: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.rows / statistics.median(self.seconds) if self.seconds else 0.0


def mysql(statement: str) -> None:
    import MySQLdb

    conn = MySQLdb.connect(host=os.environ.get("BENCH_MYSQL_HOST", "127.0.0.1"), user="root")
    conn.cursor().execute(statement)
    conn.close()


@dataclass(frozen=True)
class Measured:
    seconds: float
    rss_kib: int
    client_cpu: float  # the measured command's processes
    server_cpu: float | None  # the local MySQL server's (None: not found on this machine)
    s3_cpu: float  # the local S3 server's (moto, a thread of this process)


def _own_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu() -> float | None:
    """CPU seconds the local mariadbd/mysqld has used so far, from /proc (None if not local)."""
    for name in ("mariadbd", "mysqld"):
        found = subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split()
        if found:
            fields = Path(f"/proc/{found[0]}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def measure(command: list[str], env: dict[str, str] | None = None) -> Measured:
    own, server = _own_cpu(), _server_cpu()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], env={**os.environ, **(env or {})}, stderr=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - started
    last = result.stderr.strip().splitlines()[-1].split()
    code, rss, cpu = int(last[0]), int(last[1]), float(last[2])
    if code != 0:
        sys.exit(f"bench: {' '.join(command[:3])} ... failed (exit {code}):\n{result.stderr[-3000:]}")
    server_after = _server_cpu()
    return Measured(seconds, rss, cpu, None if server is None or server_after is None else server_after - server, _own_cpu() - own)


def generate(root: Path, records: int, files_per_region: int, days: int = 1) -> list[Path]:
    """``days`` consecutive days from DAY of ``records`` events each (a seed per day), made once."""
    from datetime import timedelta

    from cloudtrail_mysql.sample import day_files, write_files

    marker = root / (f".complete-{records}-{files_per_region}" + (f"-{days}days" if days > 1 else ""))
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        for offset in range(days):
            write_files(root, day_files(DAY + timedelta(days=offset), records=records, accounts=ACCOUNTS, regions=REGIONS,
                                        files_per_region=files_per_region, digests=False, seed=offset))
        marker.touch()
    return sorted(root.rglob("*.json.gz"))


def growth(args: argparse.Namespace) -> None:
    """Growth mode (--days): one table, a day a run, as production runs the DAG."""
    from datetime import timedelta

    from cloudtrail_mysql.layout import delivery_day

    work = Path(args.workdir)
    streams = len(ACCOUNTS) * len(REGIONS)
    root = Path(args.data) if args.data else work / "growth-files"
    files = sorted(root.rglob("*.json.gz")) if args.data else generate(root, args.records, max(1, args.files // streams), args.days)
    days = sorted({day for day in map(delivery_day, map(str, files)) if day is not None}) if args.data else [
        DAY + timedelta(days=offset) for offset in range(args.days)
    ]
    database = "ctm_bench_growth"
    url = f"mysql://root@127.0.0.1:3306/{database}"
    what = f"the files in {args.data}" if args.data else f"{args.records:,} events"
    print(f"growth: {len(days)} days of {what} ({len(files)} files in all) through "
          f"`airflow dags test`, one table; {os.cpu_count()} cores", flush=True)
    mysql(f"DROP DATABASE IF EXISTS {database}")
    mysql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    s3 = _start_s3(work, files, args.s3_latency_ms, root=root)
    lines = [
        "| day | run s | load s | rows/s | create_indexes s | publish_day s | build_summaries s | summaries % of run "
        "| build_findings s | findings % of load | retention s | table MiB | exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    runs: list[tuple[date, dict[str, Any]]] = [(day, {}) for day in days]
    if args.retention_days:
        runs.append((runs[-1][0], {"retention_days": args.retention_days}))
    try:
        for number, (day, extra) in enumerate(runs, 1):
            conf = json.dumps({"parallel_files": args.workers, "bucket": "bench-cloudtrail", **extra})
            measured = measure([str(BIN / "airflow"), "dags", "test", "cloudtrail_daily", day.isoformat(), "--conf", conf],
                               env=s3.env(url))
            tasks = s3.task_seconds()
            expected = sum(len(_events(path)) for path in files if f"/{day:%Y/%m/%d}/" in str(path) and "/CloudTrail/" in str(path))
            loaded = _query_one(database, "SELECT COUNT(*) FROM logs WHERE deliveryDay = %s", day.isoformat())
            label = f"{number} ({day})" + (f" retention_days={extra['retention_days']}" if extra else "")
            summaries = tasks.get("build_summaries", 0.0)
            lines.append(
                f"| {label} | {measured.seconds:.1f} | {tasks.get('load', 0.0):.1f} | "
                f"{loaded / max(tasks.get('load', 0.0), 1e-9):,.0f} | {tasks.get('create_indexes', 0.0):.1f} | "
                f"{tasks.get('publish_day', 0.0):.1f} | {summaries:.1f} | {100 * summaries / measured.seconds:.0f}% | "
                f"{tasks.get('build_findings', 0.0):.1f} | "
                f"{100 * tasks.get('build_findings', 0.0) / max(tasks.get('load', 0.0), 1e-9):.0f}% | "
                f"{tasks.get('apply_retention', 0.0):.1f} | "
                f"{_table_mib(database):,.0f} | {'yes' if loaded == expected else f'NO: {loaded} of {expected}'} |"
            )
            print(lines[-1], flush=True)
        if args.retention_days:
            kept = [str(row) for row in _query_all(database, "SELECT DISTINCT deliveryDay FROM logs ORDER BY 1")]
            manifest = [str(row) for row in _query_all(database, "SELECT DISTINCT delivery_day FROM logs_files ORDER BY 1")]
            summary_days = [str(row) for row in _query_all(database, "SELECT DISTINCT event_day FROM logs_daily_events ORDER BY 1")]
            print(f"after retention_days={args.retention_days}: logs {kept}; manifest {manifest}; summaries' event days "
                  f"{summary_days}", flush=True)
    finally:
        s3.stop()
    table = "\n".join(lines)
    print()
    print(table)
    (work / "growth.md").write_text(table + "\n")


def _events(path: Path) -> list[Any]:
    import gzip

    return json.loads(gzip.decompress(path.read_bytes())).get("Records", [])


def _query_all(database: str, statement: str, *args: Any) -> list[Any]:
    import MySQLdb

    conn = MySQLdb.connect(host="127.0.0.1", user="root", database=database)
    cursor = conn.cursor()
    cursor.execute(statement, args or None)
    rows = [row[0] for row in cursor.fetchall()]
    conn.close()
    return rows


def _query_one(database: str, statement: str, *args: Any) -> int:
    return int(_query_all(database, statement, *args)[0])


def _table_mib(database: str) -> float:
    """The logs table's data and indexes, as InnoDB reports them (all partitions)."""
    _query_all(database, "ANALYZE TABLE logs")
    return _query_one(database, "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.partitions "
                                "WHERE table_schema = DATABASE() AND table_name = 'logs'") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=1_080, help="about how many files (default 1080)")
    parser.add_argument("--events-per-file", type=int, default=0,
                        help="a day of small files of this many events each (--records in all), instead of --files")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--baseline-fraction", type=float, default=0.1)
    parser.add_argument("--skip-dag", action="store_true")
    parser.add_argument("--only", help="comma-separated methods to run (baseline,ceiling,ours,ours-s3,dag); default all")
    parser.add_argument("--s3-latency-ms", type=float, default=0.0,
                        help="the local S3 server answers each GET after this many ms, as a distant S3 does (default 0)")
    parser.add_argument("--workdir", default=str(REPO / ".bench"))
    parser.add_argument("--database", default="ctm_bench",
                        help="the MySQL database the runs drop and create (default ctm_bench; another name lets two "
                             "benches share a server)")
    parser.add_argument("--against", help="A/B mode: another checkout's plugins folder, run as ours-base (and ours-s3-base)")
    parser.add_argument("--days", type=int, default=0, help="growth mode: this many consecutive days into one table")
    parser.add_argument("--retention-days", type=int, default=0, help="growth mode: then rerun the last day with this retention")
    parser.add_argument("--data", help="growth mode: CloudTrail files already made (e.g. by cloudtrail-mysql generate), "
                                       "one run per delivery day found, instead of --days generated ones")
    args = parser.parse_args()
    if args.days or args.data:
        growth(args)
        return

    work = Path(args.workdir)
    streams = len(ACCOUNTS) * len(REGIONS)
    per_region = -(-args.records // (streams * args.events_per_file)) if args.events_per_file else args.files // streams
    data_folder = work / ("files" if not args.events_per_file else f"files-{args.events_per_file}-per-file")
    files = generate(data_folder, args.records, max(1, per_region))
    gzip_bytes = sum(f.stat().st_size for f in files)
    from cloudtrail_mysql import sql

    database = sql.validate_identifier(args.database, "database name")
    url = f"mysql://root@127.0.0.1:3306/{database}"
    print(f"data: {args.records} events in {len(files)} files, {gzip_bytes / 2**20:.1f} MiB gzip; "
          f"workers {args.workers}; {args.runs} runs each; {os.cpu_count()} cores"
          + (f"; S3 answers each GET after {args.s3_latency_ms:g} ms" if args.s3_latency_ms else ""), flush=True)

    baseline_files = files[:: max(1, round(1 / args.baseline_fraction))]
    methods = {name: Method(name) for name in ("baseline", "ceiling", "ours", "ours-base", "ours-s3", "ours-s3-base", "dag", "dag-load")}
    only = set(args.only.split(",")) if args.only else {"baseline", "ceiling", "ours", "ours-s3", "dag"}
    methods["baseline"].gzip_bytes = sum(f.stat().st_size for f in baseline_files)
    for name in ("ceiling", "ours", "ours-base", "ours-s3", "ours-s3-base", "dag", "dag-load"):
        methods[name].gzip_bytes = gzip_bytes

    # The ceiling's rows, built once by the loader's own code, before any clock starts.
    tsv = work / "tsv"
    shutil.rmtree(tsv, ignore_errors=True)
    mysql(f"DROP DATABASE IF EXISTS {database}")
    mysql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    subprocess.run([sys.executable, str(REPO / "bench" / "load_data_ceiling.py"), "prepare", database, str(tsv), *map(str, files)], check=True)

    s3 = _start_s3(work, files, args.s3_latency_ms, root=data_folder) if not args.skip_dag and only & {"dag", "ours-s3"} else None
    try:
        for run in range(1, args.runs + 1):
            print(f"run {run}/{args.runs}", flush=True)
            if "baseline" in only:  # the tutorial's way, into the tutorial's table
                mysql(f"DROP DATABASE IF EXISTS {database}")
                mysql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
                mysql(f"CREATE TABLE {database}.tutorial_logs (eventVersion varchar(10), userIdentity text, eventTime varchar(24), "
                      "eventSource varchar(80), eventName varchar(80), awsRegion varchar(20), sourceIPAddress varchar(40), "
                      "userAgent text, errorCode varchar(80), errorMessage text, requestParameters text, responseElements longtext, "
                      "requestID varchar(80), eventID varchar(80), eventType varchar(24), recipientAccountId varchar(12)) CHARACTER SET utf8mb4")
                measured = measure([sys.executable, str(REPO / "bench" / "tutorial_baseline.py"), database, str(args.workers),
                                   *map(str, baseline_files)])
                _record(methods["baseline"], measured, _count(database, "tutorial_logs"))
            if "ceiling" in only:  # same schema as ours, created by our code, then LOAD DATA of the prepared rows
                mysql(f"DROP DATABASE IF EXISTS {database}")
                ensure = f"ensure_database(MySqlTarget.from_url({url!r}), 'logs')"
                subprocess.run(
                    [str(BIN / "python"), "-c", f"from cloudtrail_mysql.cli import MySqlTarget, ensure_database; {ensure}"],
                    check=True,
                )
                measured = measure([sys.executable, str(REPO / "bench" / "load_data_ceiling.py"), "load", database, str(args.workers), str(tsv)])
                _record(methods["ceiling"], measured, _count(database, "logs"))
            # With --against, each of ours and ours-s3 next to the other checkout's, in turns (first, then second).
            plugins = [("", REPO / "plugins")] + ([("-base", Path(args.against).resolve())] if args.against else [])
            for suffix, folder in plugins if run % 2 else plugins[::-1]:
                if "ours" in only:  # through the command
                    mysql(f"DROP DATABASE IF EXISTS {database}")
                    command = [*_command(folder), "import", str(data_folder), "--mysql-url", url, "--workers", str(args.workers)]
                    measured = measure(command, env={"PYTHONPATH": str(folder)})
                    _record(methods["ours" + suffix], measured, _count(database, "logs"))
            for suffix, folder in plugins if run % 2 else plugins[::-1]:
                if s3 is not None and "ours-s3" in only:  # the command, reading from the S3 server
                    mysql(f"DROP DATABASE IF EXISTS {database}")
                    measured = measure([*_command(folder), "import", "s3://bench-cloudtrail/", "--mysql-url", url,
                                        "--workers", str(args.workers)], env={"AWS_ENDPOINT_URL_S3": s3.endpoint, "PYTHONPATH": str(folder)})
                    _record(methods["ours-s3" + suffix], measured, _count(database, "logs"))
            if s3 is not None and "dag" in only:  # the DAG, end to end, and its load phase
                mysql(f"DROP DATABASE IF EXISTS {database}")
                mysql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
                conf = json.dumps({"parallel_files": args.workers})
                measured = measure([str(BIN / "airflow"), "dags", "test", "cloudtrail_daily", DAY.isoformat(), "--conf", conf], env=s3.env(url))
                rows = _count(database, "logs")
                _record(methods["dag"], measured, rows)
                _record(methods["dag-load"], measured, rows, seconds=s3.load_phase_seconds())
    finally:
        if s3 is not None:
            s3.stop()
    _report(methods, args, work)
    if s3 is not None:
        print(f"DAG file parse time (airflow dags report, median of 3): {_parse_seconds(s3):.3f} s")


def _command(plugins: Path) -> list[str]:
    """The command, run from the plugins folder given (on PYTHONPATH, ahead of the installed one)."""
    if plugins == REPO / "plugins":
        return [str(BIN / "cloudtrail-mysql")]
    return [str(BIN / "python"), "-c", "import sys; from cloudtrail_mysql.cli import main; sys.exit(main())"]


def _parse_seconds(s3: _S3) -> float:
    """What Airflow's own `dags report` says parsing the DAG file takes."""
    found = []
    for _ in range(3):
        result = subprocess.run([str(BIN / "airflow"), "dags", "report", "-o", "json"], env={**os.environ, **s3.env("mysql://x@127.0.0.1/x")},
                                capture_output=True, text=True, check=True)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        hours, minutes, seconds = next(r for r in report if r["file"] == "cloudtrail_daily.py")["duration"].split(":")
        found.append(int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    return statistics.median(found)


def _count(database: str, table: str) -> int:
    import MySQLdb

    conn = MySQLdb.connect(host="127.0.0.1", user="root", database=database)
    cursor = conn.cursor()
    cursor.execute(f"SELECT COUNT(*) FROM {table}")
    count = int(cursor.fetchone()[0])
    conn.close()
    return count


def _record(method: Method, measured: Measured, rows: int, seconds: float | None = None) -> None:
    """One run of a method; ``seconds`` overrides the wall time (the DAG's load phase)."""
    seconds = measured.seconds if seconds is None else seconds
    method.seconds.append(seconds)
    method.rss_kib.append(measured.rss_kib)
    method.rows = rows
    line = f"  {method.name:9s} {rows:>9,} rows  {seconds:7.2f} s  {rows / seconds:>9,.0f} rows/s  peak RSS {measured.rss_kib / 1024:6.1f} MiB"
    if seconds == measured.seconds:  # CPU only for whole commands, not for a phase of one
        method.client_cpu.append(measured.client_cpu)
        line += f"  CPU: loader {measured.client_cpu:5.1f} s"
        if measured.server_cpu is not None:
            method.server_cpu.append(measured.server_cpu)
            line += f", MySQL {measured.server_cpu:5.1f} s"
            if measured.server_cpu > 0:
                line += f" (loader/MySQL {measured.client_cpu / measured.server_cpu:.2f})"
        if measured.s3_cpu > 0.5:
            method.s3_cpu.append(measured.s3_cpu)
            line += f", S3 server {measured.s3_cpu:5.1f} s"
    print(line, flush=True)


class _S3:
    """moto's S3 over HTTP in a thread of this process (as moto's ThreadedMotoServer runs it),
    each GET answered after ``latency_ms``: 0 here, tens of milliseconds from a real S3."""

    def __init__(self, work: Path, files: list[Path], latency_ms: float = 0.0, root: Path | None = None) -> None:
        import logging
        import threading

        import boto3
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
        app = DomainDispatcherApplication(create_backend_app)

        def answer(environ: dict[str, Any], start_response: Any) -> Any:
            if latency_ms and environ["REQUEST_METHOD"] == "GET":
                time.sleep(latency_ms / 1000)
            return app(environ, start_response)

        self.server = make_server("127.0.0.1", 0, answer, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        client = boto3.client("s3", endpoint_url=self.endpoint)
        client.create_bucket(Bucket="bench-cloudtrail")
        root = root or work / "files"
        for path in files:
            client.put_object(Bucket="bench-cloudtrail", Key=str(path.relative_to(root)), Body=path.read_bytes())
        self.home = work / "airflow"
        self.home.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env={**os.environ, **self.env("mysql://root@127.0.0.1/x")},
                       check=True, capture_output=True)

    def env(self, url: str) -> dict[str, str]:
        return {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "bench", "password": "bench",
                                                     "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"}}),
            "AIRFLOW_CONN_MYSQL_DEFAULT": url,
            "CLOUDTRAIL_BUCKET": "bench-cloudtrail",
        }

    def load_phase_seconds(self) -> float:
        """From the first load_batch start to the last load_batch end, in the last run (metadata DB)."""
        return self.task_seconds()["load"]

    def task_seconds(self) -> dict[str, float]:
        """Seconds of each task of the last run; 'load': from the first load_batch start to the last end."""
        import sqlite3

        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "SELECT task_id, (julianday(MAX(end_date)) - julianday(MIN(start_date))) * 86400 FROM task_instance "
                "WHERE dag_id = 'cloudtrail_daily' AND run_id = "
                "(SELECT run_id FROM dag_run WHERE dag_id = 'cloudtrail_daily' ORDER BY id DESC LIMIT 1) GROUP BY task_id"
            ).fetchall()
        found = {task: float(seconds or 0.0) for task, seconds in rows}
        found["load"] = found.pop("load_batch", 0.0)
        return found

    def stop(self) -> None:
        self.server.shutdown()


def _start_s3(work: Path, files: list[Path], latency_ms: float = 0.0, root: Path | None = None) -> _S3:
    return _S3(work, files, latency_ms, root)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def _cpu_ratio(method: Method) -> str:
    """The loader's CPU seconds over the MySQL server's for the same rows, median of each run's
    ratio (the server's are the whole mariadbd process's, so other load on it counts too)."""
    pairs = [(c, m) for c, m in zip(method.client_cpu, method.server_cpu, strict=False) if m > 0]
    return f"{statistics.median(c / m for c, m in pairs):.2f}" if pairs else "-"


def _ratio(method: Method, reference: Method, digits: int) -> str:
    """Median of the per-run ratios of rates: runs are interleaved, so each pair saw the same
    machine (this one is shared and noisy), which a ratio of separate medians would not."""
    pairs = list(zip(method.seconds, reference.seconds, strict=False))
    if not pairs or not reference.rows:
        return "-"
    ratios = [(method.rows / mine) / (reference.rows / theirs) for mine, theirs in pairs]
    return f"{statistics.median(ratios):.{digits}f}"


def _report(methods: dict[str, Method], args: argparse.Namespace, work: Path) -> None:
    ceiling = methods["ceiling"]
    baseline = methods["baseline"]
    lines = [
        "| method | rows | median s | rows/s | gzip MB/s | peak RSS MiB | CPU s: loader | CPU s: MySQL | loader/MySQL CPU "
        "| x ceiling | x baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method in methods.values():
        if not method.seconds:
            continue
        median = statistics.median(method.seconds)
        lines.append(
            f"| {method.name} | {method.rows:,} | {median:.2f} | {method.rate:,.0f} | "
            f"{method.gzip_bytes / 2**20 / median:.2f} | {max(method.rss_kib) / 1024:.0f} | "
            f"{_median(method.client_cpu)} | {_median(method.server_cpu)} | {_cpu_ratio(method)} | "
            f"{_ratio(method, ceiling, 2)} | {_ratio(method, baseline, 1)} |"
        )
    table = "\n".join(lines)
    print()
    shape = f"{args.events_per_file}-event files" if args.events_per_file else f"{args.files} files"
    print(f"{args.records:,} events ({shape}), {args.workers} workers, medians of {args.runs} runs "
          f"(baseline on {args.baseline_fraction:.0%} of the files; ratios: median of each run's ratio):")
    print(table)
    notes = _cpu_bound(methods)
    print(notes)
    ab = _ab(methods)
    print(ab)
    (work / "results.md").write_text(table + "\n\n" + notes + "\n\n" + ab + "\n")


def _ab(methods: dict[str, Method]) -> str:
    """--against: each method against its base, by the median of the per-run ratios (interleaved runs)."""
    lines = []
    for name in ("ours", "ours-s3"):
        mine, base = methods[name], methods[name + "-base"]
        if not mine.seconds or not base.seconds:
            continue
        speed = statistics.median(theirs / ours for ours, theirs in zip(mine.seconds, base.seconds, strict=True))
        memory = statistics.median(ours / theirs for ours, theirs in zip(mine.rss_kib, base.rss_kib, strict=True))
        lines.append(
            f"A/B {name}: median {statistics.median(mine.seconds):.2f} s vs base {statistics.median(base.seconds):.2f} s "
            f"(runs: {', '.join(f'{s:.2f}' for s in mine.seconds)} vs {', '.join(f'{s:.2f}' for s in base.seconds)}); "
            f"speed x{speed:.3f} of base (median of per-run ratios); peak RSS median {statistics.median(mine.rss_kib) / 1024:.0f} "
            f"vs {statistics.median(base.rss_kib) / 1024:.0f} MiB (x{memory:.3f})"
        )
        if mine.client_cpu and len(mine.client_cpu) == len(base.client_cpu):
            cpu = statistics.median(ours / theirs for ours, theirs in zip(mine.client_cpu, base.client_cpu, strict=True))
            lines[-1] += (
                f"; loader CPU {', '.join(f'{c:.1f}' for c in mine.client_cpu)} vs "
                f"{', '.join(f'{c:.1f}' for c in base.client_cpu)} s (x{cpu:.3f} of base, median of per-run ratios)"
            )
    return "\n".join(lines)


def _cpu_bound(methods: dict[str, Method]) -> str:
    """What the CPU seconds say: with loader and MySQL on the same cores, a method's wall time is at
    least its total CPU over the cores, so ours/ceiling is at most the ratio of CPU per row."""
    lines = []
    per_row: dict[str, float] = {}
    for name in ("ceiling", "ours", "ours-base", "ours-s3", "ours-s3-base"):
        method = methods[name]
        if method.client_cpu and method.server_cpu and method.rows:
            s3 = method.s3_cpu or [0.0] * len(method.client_cpu)
            total = statistics.median(c + m + s for c, m, s in zip(method.client_cpu, method.server_cpu, s3, strict=False))
            per_row[name] = total / method.rows * 1e6
            cores = os.cpu_count() or 1
            parts = "loader + MySQL + S3 server" if method.s3_cpu else "loader + MySQL"
            lines.append(f"{name}: {per_row[name]:.0f} CPU-us a row ({parts}), so at least "
                         f"{total / cores:.2f} s on {cores} cores; measured {statistics.median(method.seconds):.2f} s")
    if "ceiling" in per_row and "ours" in per_row:
        lines.append(f"CPU-bound on shared cores, ours/ceiling can reach at most {per_row['ceiling'] / per_row['ours']:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
