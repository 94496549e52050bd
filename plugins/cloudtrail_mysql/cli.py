"""``cloudtrail-mysql``: the loader without a scheduler.

    cloudtrail-mysql import SOURCE      SOURCE: a file, a folder, s3://bucket/key or s3://bucket/prefix/
    cloudtrail-mysql generate OUT       write a realistic sample day in CloudTrail's layout
    cloudtrail-mysql report             answer the tutorial's questions from the table

The database comes from --mysql-url or CLOUDTRAIL_MYSQL_URL (mysql://user:password@host:port/db);
the password is never printed.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl, unquote

from cloudtrail_mysql import __version__, sql
from cloudtrail_mysql.loader import DEFAULT_KINDS, LOAD_AGAIN_HINT, MySqlSetupError, load_files, setup_error
from cloudtrail_mysql.records import FileKind, Limits, parse_size
from cloudtrail_mysql.writer import FileResult, MySqlWriter, SourceFile, describe_mysql_error, retry_seconds_from_env

DEFAULT_URL = "mysql://root@127.0.0.1:3306/cloudtrail"
URL_VARIABLE = "CLOUDTRAIL_MYSQL_URL"


class MySqlConnectError(ConnectionError):
    """Connecting failed; ``code`` is MySQL's error number."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker, it reaches the command whole
        return type(self), (str(self), self.code)


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
        kwargs["connect_timeout"] = int(kwargs.get("connect_timeout", 10))
        if with_database:
            kwargs["database"] = self.database
        try:
            return MySQLdb.connect(**kwargs)
        except MySQLdb.OperationalError as exc:
            raise MySqlConnectError(
                f"cannot connect to MySQL at {self.describe()}: {describe_mysql_error(exc)}", exc.args[0]
            ) from None


# -- import -------------------------------------------------------------------------------------
_worker: dict[str, Any] = {}


@dataclass(frozen=True)
class _Settings:
    """What every worker needs to know besides the target and the table."""

    limits: Limits
    retry_seconds: float


def _start_worker(
    target: MySqlTarget, table: str, kinds: frozenset[FileKind], method: str = "auto", parse_ahead: bool = True,
    settings: _Settings | None = None,
) -> None:
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the command's handler is for the command itself
    settings = settings or _Settings(Limits.from_env(), retry_seconds_from_env())

    def new_writer() -> MySqlWriter:
        return MySqlWriter(
            target.connect(), table, connect=target.connect, method=method, limits=settings.limits,
            retry_seconds=settings.retry_seconds,
        )

    _worker["new_writer"] = new_writer
    try:
        _worker["writer"] = new_writer()
    except MySqlConnectError:
        # Not here: a pool whose initializer fails starts it again and again. The first task says why.
        _worker["writer"] = None
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
    if _worker["writer"] is None:
        _worker["writer"] = _worker["new_writer"]()
    return list(load_files(
        task, lambda s: fetch(s, _worker["client"]), [_worker["writer"]], _worker["kinds"],
        read_ahead=READ_AHEAD_FILES if from_s3 else 0, parse_ahead=_worker["parse_ahead"],
    ))


def _results(
    tasks: list[list[SourceFile]], workers: int, target: MySqlTarget, table: str, kinds: frozenset[FileKind], method: str,
    parse_ahead: bool, settings: _Settings | None = None,
) -> Iterable[FileResult]:
    if workers <= 1 or len(tasks) <= 1:
        _start_worker(target, table, kinds, method, parse_ahead, settings)
        for task in tasks:
            yield from _load_in_worker(task)
        return
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    initargs = (target, table, kinds, method, parse_ahead, settings)
    with context.Pool(workers, initializer=_start_worker, initargs=initargs) as pool:
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
    workers = args.workers or cores
    settings = _Settings(
        Limits.from_env(args.max_file_bytes, args.max_record_bytes),
        args.retry_seconds if args.retry_seconds is not None else retry_seconds_from_env(),
    )
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
        for result in _results(
            _tasks(sources, workers), workers, target, table, frozenset(kinds), args.method, parse_ahead, settings
        ):
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
        lost = sum(LOAD_AGAIN_HINT in failure.detail for failure in failures)
        if lost:
            print(
                f"{lost} of them for want of the MySQL server: run the same command again once it is back; "
                "it loads exactly the files not loaded yet.", file=sys.stderr,
            )
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


def _print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    # SQL's NULL as NULL, not as Python's None (records without eventSource, e.g. Insight events).
    rows = [tuple("NULL" if value is None else value for value in row) for row in rows]
    widths = [max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(header)]
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudtrail-mysql", description="Load AWS CloudTrail logs into MySQL.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    load.add_argument(
        "--workers", type=_positive_int, default=None, help="worker processes, 1 or more (default: number of cores)"
    )
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
    load.add_argument(
        "--max-file-bytes", type=_size, default=None, metavar="SIZE",
        help="most JSON a file may inflate to, e.g. 1G (default: $CLOUDTRAIL_MYSQL_MAX_FILE_BYTES or 1 GiB); "
        "a larger file fails, named",
    )
    load.add_argument(
        "--max-record-bytes", type=_size, default=None, metavar="SIZE",
        help="largest record, as JSON and as its row, e.g. 1M (default: $CLOUDTRAIL_MYSQL_MAX_RECORD_BYTES or 1 MiB; "
        "CloudTrail's events are at most 256 KB); a file holding a larger one fails, named",
    )
    load.add_argument(
        "--retry-seconds", type=_seconds, default=None, metavar="SECONDS",
        help="how long a lost MySQL server is waited for, reconnecting, before the files fail "
        "(default: $CLOUDTRAIL_MYSQL_RETRY_SECONDS or 60)",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import MySQLdb
    from botocore.exceptions import BotoCoreError, ClientError

    args = build_parser().parse_args(argv)
    # Failures are printed once, by the summary; the core's log lines are for Airflow's task logs.
    logging.getLogger("cloudtrail_mysql").addHandler(logging.NullHandler())
    logging.getLogger("cloudtrail_mysql").propagate = False
    # Stopped (timeout, kill, a scheduler): unwind as for Ctrl-C, so that workers are stopped too.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        return args.run(args)
    except MySQLdb.Error as exc:
        print(f"cloudtrail-mysql: error: {describe_mysql_error(exc)}", file=sys.stderr)
        return 2
    except (
        ConnectionError, ValueError, FileNotFoundError, LookupError, MySqlSetupError, BotoCoreError, ClientError
    ) as exc:
        print(f"cloudtrail-mysql: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except _Terminated:
        print("cloudtrail-mysql: stopped (SIGTERM); files being loaded were rolled back", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM: raised in the main thread so that every ``finally`` runs and workers are stopped."""


def _stopped(signum: int, frame: Any) -> None:
    raise _Terminated()


if __name__ == "__main__":
    sys.exit(main())
