"""``cloudtrail-mysql``: the loader without a scheduler.

    cloudtrail-mysql import SOURCE      SOURCE: a file, a folder, s3://bucket/key or s3://bucket/prefix/
    cloudtrail-mysql generate OUT       write a realistic sample day in CloudTrail's layout
    cloudtrail-mysql report             answer the tutorial's questions from the table
    cloudtrail-mysql findings --day D   security findings of a day (--all: rebuild every day's)

The database comes from --mysql-url or CLOUDTRAIL_MYSQL_URL (mysql://user:password@host:port/db);
the password is never printed.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl, unquote

from cloudtrail_mysql import sql
from cloudtrail_mysql.loader import DEFAULT_KINDS, MySqlSetupError, load_files, setup_error
from cloudtrail_mysql.records import FileKind
from cloudtrail_mysql.writer import FileResult, MySqlWriter, SourceFile

DEFAULT_URL = "mysql://root@127.0.0.1:3306/cloudtrail"
URL_VARIABLE = "CLOUDTRAIL_MYSQL_URL"


class MySqlConnectError(ConnectionError):
    """Connecting failed; ``code`` is MySQL's error number."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# mysqlclient options that take a number; a URL gives every option as text.
_INTEGER_OPTIONS = frozenset({"connect_timeout", "read_timeout", "write_timeout", "local_infile", "compress", "client_flag"})


@dataclass(frozen=True)
class MySqlTarget:
    """Connection settings from a mysql:// URL; ``describe`` shows them without the password."""

    host: str
    port: int
    user: str
    password: str
    database: str
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_url(cls, url: str) -> MySqlTarget:
        """Parse mysql://user:password@host:port/database?option=value.

        The password is everything between the first ':' and the last '@', so it may hold
        '#', '/', '?' or '@' unescaped; no error message ever repeats a part of the URL
        before that '@'.
        """
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("mysql", "mariadb"):
            raise ValueError("the MySQL URL must look like mysql://user:password@host:port/database")
        userinfo, at, location = rest.rpartition("@")
        user, _, password = userinfo.partition(":") if at else ("", "", "")
        location, _, query = location.partition("?")
        hostport, _, path = location.partition("/")
        if hostport.startswith("["):  # [IPv6]:port
            host, _, port_part = hostport[1:].partition("]")
            colon, port_text = (":", port_part[1:]) if port_part.startswith(":") else ("", "")
        else:
            host, colon, port_text = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        if colon and not port_text.isdigit():
            raise ValueError("the port in the MySQL URL is not a number")
        database = unquote(path.strip("/")) or "cloudtrail"
        sql.validate_identifier(database, "database name")
        return cls(
            host=host or "127.0.0.1",
            port=int(port_text) if colon else 3306,
            user=unquote(user or "root"),
            password=unquote(password),
            database=database,
            options=tuple(parse_qsl(query)),
        )

    @property
    def on_this_machine(self) -> bool:
        """Whether the server runs here, sharing this machine's cores with the loader."""
        return self.host in ("localhost", "127.0.0.1", "::1") or any(name == "unix_socket" for name, _ in self.options)

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def connect(self, with_database: bool = True) -> Any:
        import MySQLdb

        kwargs: dict[str, Any] = dict(self.options)
        for name in _INTEGER_OPTIONS.intersection(kwargs):
            try:
                kwargs[name] = int(kwargs[name])
            except ValueError:
                raise ValueError(f"the MySQL URL option {name} must be a whole number") from None
        kwargs.update(host=self.host, port=self.port, user=self.user, password=self.password, charset="utf8mb4")
        kwargs.setdefault("local_infile", 1)  # lets the writer use LOAD DATA LOCAL INFILE when the server allows
        # Bounded waits: a connection killed while a file is streamed must fail (and be retried),
        # not hang. Generous enough for the largest statement the loader sends.
        kwargs["read_timeout"] = int(kwargs.get("read_timeout", 300))
        kwargs["write_timeout"] = int(kwargs.get("write_timeout", 15))
        if with_database:
            kwargs["database"] = self.database
        try:
            return MySQLdb.connect(**kwargs)
        except MySQLdb.OperationalError as exc:
            raise MySqlConnectError(f"cannot connect to MySQL at {self.describe()}: {exc.args[-1]}", exc.args[0]) from None


# -- import -------------------------------------------------------------------------------------
_worker: dict[str, Any] = {}


def _start_worker(
    target: MySqlTarget, table: str, kinds: frozenset[FileKind], method: str = "auto", parse_ahead: bool = True
) -> None:
    _worker["writer"] = MySqlWriter(target.connect(), table, connect=target.connect, method=method)
    _worker["kinds"] = kinds
    _worker["parse_ahead"] = parse_ahead
    _worker["client"] = None  # one S3 client per worker, made on its first S3 file


# Files of S3 read ahead by each worker while it parses and writes (an S3 GET waits tens of ms).
READ_AHEAD_FILES = 8
# A task is a few files (fewer IPC round trips, and room to read ahead), small enough to share
# the work out evenly at the end.
MAX_FILES_PER_TASK = 16


def _tasks(sources: Sequence[SourceFile], workers: int) -> list[list[SourceFile]]:
    per_task = max(1, min(MAX_FILES_PER_TASK, -(-len(sources) // (workers * 4))))
    return [list(sources[i : i + per_task]) for i in range(0, len(sources), per_task)]


def _load_in_worker(task: list[SourceFile]) -> list[FileResult]:
    from cloudtrail_mysql.sources import fetch, s3_client

    from_s3 = task[0].location.startswith("s3://")
    if from_s3 and _worker["client"] is None:
        _worker["client"] = s3_client()
    return list(load_files(
        task, lambda s: fetch(s, _worker["client"]), [_worker["writer"]], _worker["kinds"],
        read_ahead=READ_AHEAD_FILES if from_s3 else 0, parse_ahead=_worker["parse_ahead"],
    ))


def _results(
    tasks: list[list[SourceFile]], workers: int, target: MySqlTarget, table: str, kinds: frozenset[FileKind], method: str,
    parse_ahead: bool,
) -> Iterable[FileResult]:
    if workers <= 1 or len(tasks) <= 1:
        _start_worker(target, table, kinds, method, parse_ahead)
        for task in tasks:
            yield from _load_in_worker(task)
        return
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(target, table, kinds, method, parse_ahead)) as pool:
        for results in pool.imap_unordered(_load_in_worker, tasks, chunksize=1):
            yield from results


def _progress(total: int) -> Any:
    """A rich progress bar on a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("files"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rows]:,} rows  {task.fields[rate]:,.0f} rows/s"),
        TimeElapsedColumn(), transient=True,
    )
    progress.add_task("import", total=total, rows=0, rate=0.0)
    return progress


def ensure_database(target: MySqlTarget, table: str) -> None:
    """Create the database (utf8mb4) and the tables where missing; touch nothing that exists."""
    import MySQLdb

    try:
        conn = target.connect()
    except MySqlConnectError as exc:
        if exc.code != 1049:  # anything but "unknown database"
            raise
        server = target.connect(with_database=False)
        try:
            cursor = server.cursor()
            for statement in sql.split_statements(sql.render("create_database.sql", database=target.database)):
                cursor.execute(statement)
            server.commit()
        except MySQLdb.Error as error:
            raise setup_error(error, f"cannot create the database {target.database}") or error from None
        finally:
            server.close()
        conn = target.connect()
    try:
        MySqlWriter(conn, table).ensure_schema()
    except MySQLdb.Error as error:
        raise setup_error(error, f"cannot create the tables in {target.database}") or error from None
    finally:
        conn.close()


def run_import(args: argparse.Namespace) -> int:
    from cloudtrail_mysql.sources import list_sources

    target = MySqlTarget.from_url(args.mysql_url)
    table = sql.validate_identifier(args.table)
    kinds = set(DEFAULT_KINDS)
    if args.include_insight:
        kinds.add(FileKind.INSIGHT)
    if args.include_network_activity:
        kinds.add(FileKind.NETWORK_ACTIVITY)
    ensure_database(target, table)
    sources = list_sources(args.source)
    if not sources:
        raise FileNotFoundError(f"no files found at {args.source}")
    cores = os.cpu_count() or 1
    workers = max(1, args.workers or cores)
    # Parsing ahead needs a core of its own: not there when a local server and the workers fill them all.
    parse_ahead = args.parse_ahead == "on" or (
        args.parse_ahead == "auto" and (workers < cores or not target.on_this_machine)
    )
    print(f"importing {len(sources)} files from {args.source} into {target.describe()} table {table} with {workers} workers", file=sys.stderr)

    started = time.monotonic()
    counts = {"loaded": 0, "already_loaded": 0, "skipped": 0, "failed": 0}
    rows = 0
    failures: list[FileResult] = []
    progress = _progress(len(sources))
    if progress is not None:
        progress.start()
    try:
        for result in _results(_tasks(sources, workers), workers, target, table, frozenset(kinds), args.method, parse_ahead):
            counts[result.status] += 1
            rows += result.rows
            if result.status == "failed":
                failures.append(result)
                print(f"FAILED {result.detail}", file=sys.stderr)
            if progress is not None:
                elapsed = max(time.monotonic() - started, 1e-9)
                progress.update(progress.task_ids[0], advance=1, rows=rows, rate=rows / elapsed)
    finally:
        if progress is not None:
            progress.stop()
    seconds = time.monotonic() - started
    print(
        f"{counts['loaded']} files loaded, {counts['already_loaded']} already loaded, {counts['skipped']} skipped, "
        f"{counts['failed']} failed; {rows} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)"
    )
    if failures:
        print(f"{len(failures)} file(s) failed and were not loaded:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure.location}: {failure.detail.removeprefix(failure.location + ': ')}", file=sys.stderr)
        return 1
    return 0


# -- generate -----------------------------------------------------------------------------------
def run_generate(args: argparse.Namespace) -> int:
    from cloudtrail_mysql.sample import DEFAULT_ACCOUNTS, DEFAULT_REGIONS, day_files, write_files

    files, events = write_files(
        Path(args.out),
        day_files(
            date.fromisoformat(args.day),
            records=args.records,
            accounts=args.accounts.split(",") if args.accounts else DEFAULT_ACCOUNTS,
            regions=args.regions.split(",") if args.regions else DEFAULT_REGIONS,
            organization_id=args.organization_id,
            insight=args.insight,
            seed=args.seed,
        ),
    )
    print(f"wrote {files} files holding {events} events for {args.day} under {args.out}")
    return 0


# -- report -------------------------------------------------------------------------------------
def run_report(args: argparse.Namespace) -> int:
    target = MySqlTarget.from_url(args.mysql_url)
    table = sql.validate_identifier(args.table)
    conn = target.connect()
    try:
        cursor = conn.cursor()
        # Each block of report.sql is a "-- title" line and one query.
        for block in sql.render("report.sql", table=table).split("\n\n"):
            title = next((line[2:].strip() for line in block.splitlines() if line.startswith("--")), "")
            for statement in sql.split_statements(block):
                cursor.execute(statement)
                header = [d[0] for d in cursor.description]
                print(f"\n{title}" if title else "")
                _print_table(header, cursor.fetchall())
    finally:
        conn.close()
    return 0


# -- findings -----------------------------------------------------------------------------------
def run_findings(args: argparse.Namespace) -> int:
    """Print a day's findings per control, or (--all) rebuild them for every event day first."""
    import json

    from cloudtrail_mysql.findings import build_findings, day_findings, load_controls

    target = MySqlTarget.from_url(args.mysql_url)
    table = sql.validate_identifier(args.table)
    controls = load_controls(args.controls)
    titles = {control.id: control for control in controls}
    ensure_database(target, table)
    conn = target.connect()
    try:
        if args.all:
            started = time.monotonic()
            counts = build_findings(conn, table, controls)
            days = [str(d) for (d,) in _rows(conn, f"SELECT DISTINCT event_day FROM `{table}_findings` ORDER BY 1")]
            if args.json:
                print(json.dumps({"rebuilt": True, "days_with_findings": days, "findings": counts}, indent=2))
            else:
                total = sum(counts.values())
                print(f"findings rebuilt for every event day in {table} in {time.monotonic() - started:.1f} s: "
                      f"{total} findings on {len(days)} day(s)")
                _print_table(("control", "findings", "title"), [(c, n, titles[c].title) for c, n in counts.items()])
            return 0
        day = date.fromisoformat(args.day).isoformat()
        found = day_findings(lambda query, params: _rows(conn, query, params), table, day, args.limit)
    finally:
        conn.close()
    if args.json:
        print(json.dumps({"day": day, "controls": [
            {"control": f.control, "title": titles[f.control].title if f.control in titles else None,
             "severity": titles[f.control].severity if f.control in titles else None,
             "findings": f.count, "rows": f.rows}
            for f in found
        ]}, indent=2, default=str))
        return 0
    if not found:
        print(f"{day}: no findings in {table}_findings")
    for entry in found:
        control = titles.get(entry.control)
        heading = f"{entry.control} ({control.severity}): {control.title}" if control else entry.control
        shown = f", first {len(entry.rows)}" if len(entry.rows) < entry.count else ""
        print(f"\n{heading}: {entry.count} finding(s){shown}")
        header = ("eventTime", "account", "region", "principal", "sourceIPAddress", "eventName", "errorCode")
        _print_table(header, [
            (r["eventTime"], r["recipientAccountId"], r["awsRegion"], r["principal"], r["sourceIPAddress"],
             r["eventName"], r["errorCode"])
            for r in entry.rows
        ])
    return 0


def _rows(conn: Any, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    cursor = conn.cursor()
    try:
        cursor.execute(query, params)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def add_findings_command(commands: Any, database_options: Any) -> None:
    findings = commands.add_parser(
        "findings", help="security findings (CIS CloudWatch.1-14 and your own filter patterns) per control"
    )
    which = findings.add_mutually_exclusive_group(required=True)
    which.add_argument("--day", help="print the findings of this event day (YYYY-MM-DD, UTC)")
    which.add_argument("--all", action="store_true", help="rebuild the findings of every event day in the table")
    database_options(findings)
    findings.add_argument("--controls", help="a JSON file of more controls (same format as include/controls/)")
    findings.add_argument("--limit", type=int, default=20, help="rows shown per control with --day (0: all; default 20)")
    findings.add_argument("--json", action="store_true", help="print JSON, for scripts")
    findings.set_defaults(run=run_findings)


def _print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    # SQL's NULL as NULL, not as Python's None (records without eventSource, e.g. Insight events).
    rows = [tuple("NULL" if value is None else value for value in row) for row in rows]
    widths = [max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(header)]
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudtrail-mysql", description="Load AWS CloudTrail logs into MySQL.")
    commands = parser.add_subparsers(dest="command", required=True)

    def database_options(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--mysql-url", default=os.environ.get(URL_VARIABLE, DEFAULT_URL),
            help=f"mysql://user:password@host:port/database (default: ${URL_VARIABLE} or {DEFAULT_URL})",
        )
        command.add_argument("--table", default="logs", help="table name (default: logs)")

    load = commands.add_parser("import", help="load CloudTrail files from a file, a folder or S3")
    load.add_argument("source", help="a .json.gz file, a folder (recursive), s3://bucket/key or s3://bucket/prefix/")
    database_options(load)
    load.add_argument("--workers", type=int, default=0, help="worker processes (default: number of cores)")
    load.add_argument(
        "--method", choices=("auto", "load_data", "insert"), default="auto",
        help="how rows reach MySQL: LOAD DATA LOCAL INFILE (fastest), multi-row INSERTs, or auto: "
        "LOAD DATA where the server allows it (default)",
    )
    load.add_argument(
        "--parse-ahead", choices=("auto", "on", "off"), default="auto",
        help="parse each worker's next file while MySQL loads the current one (a thread per worker); "
        "auto: unless the server is on this machine and the workers already use every core (default)",
    )
    load.add_argument("--include-insight", action="store_true", help="also load CloudTrail-Insight files")
    load.add_argument("--include-network-activity", action="store_true", help="also load CloudTrail-NetworkActivity files")
    load.set_defaults(run=run_import)

    generate = commands.add_parser("generate", help="write a realistic sample CloudTrail day")
    generate.add_argument("out", help="folder to write AWSLogs/... into")
    generate.add_argument("--day", default="2017-04-10", help="delivery day, YYYY-MM-DD")
    generate.add_argument("--records", type=int, default=20_000, help="events in all (default 20000)")
    generate.add_argument("--accounts", help="comma-separated account ids")
    generate.add_argument("--regions", help="comma-separated regions")
    generate.add_argument("--organization-id", help="lay files out as an organization trail (o-...)")
    generate.add_argument("--insight", action="store_true", help="add a CloudTrail-Insight file")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(run=run_generate)

    report = commands.add_parser("report", help="the tutorial's questions, answered from the table")
    database_options(report)
    report.set_defaults(run=run_report)
    add_findings_command(commands, database_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import MySQLdb
    from botocore.exceptions import BotoCoreError, ClientError

    args = build_parser().parse_args(argv)
    # Failures are printed once, by the summary; the core's log lines are for Airflow's task logs.
    logging.getLogger("cloudtrail_mysql").addHandler(logging.NullHandler())
    logging.getLogger("cloudtrail_mysql").propagate = False
    try:
        return args.run(args)
    except (
        ConnectionError, ValueError, FileNotFoundError, LookupError, MySqlSetupError, MySQLdb.Error, BotoCoreError, ClientError
    ) as exc:
        print(f"cloudtrail-mysql: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
