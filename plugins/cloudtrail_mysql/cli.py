"""``cloudtrail-mysql``: the loader without a scheduler.

    cloudtrail-mysql import SOURCE      SOURCE: a file, a folder, s3://bucket/key or s3://bucket/prefix/
    cloudtrail-mysql summarize --day D  indexes where missing, and the summaries of delivery day D
    cloudtrail-mysql retention --retention-days N   keep only the last N delivery days
    cloudtrail-mysql migrate            convert a table made before day partitions, once
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
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from cloudtrail_mysql import __version__, sql, staging
from cloudtrail_mysql.files import FileResult, SourceFile
from cloudtrail_mysql.front import LoadOptions, LoadSummary, kinds_for, open_writers, run_load
from cloudtrail_mysql.layout import delivery_day
from cloudtrail_mysql.loader import LOAD_AGAIN_HINT
from cloudtrail_mysql.mysql_errors import (
    CANNOT_REACH,
    CONNECTION_LOST,
    NO_SUCH_TABLE,
    UNKNOWN_COLUMN,
    UNKNOWN_DATABASE,
    WRONG_PASSWORD,
    MySqlConnectError,
    MySqlSetupError,
    describe_mysql_error,
    mysql_error_code,
    setup_error,
)
from cloudtrail_mysql.partitions import NotPartitioned, apply_retention
from cloudtrail_mysql.records import parse_size
from cloudtrail_mysql.writer import MySqlWriter

DEFAULT_URL = "mysql://root@127.0.0.1:3306/cloudtrail"
URL_VARIABLE = "CLOUDTRAIL_MYSQL_URL"


# mysqlclient options that take a number; a URL gives every option as text.
# The day's tasks (indexes, the swap of a day loaded on its own, summaries, retention): a statement
# over a tutorial-sized day (14M events) can take many minutes; a stalled server still fails them.
DAY_TASK_READ_TIMEOUT = 6 * 3600
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

    @classmethod
    def from_airflow_connection(cls, conn_id: str) -> MySqlTarget:
        """The settings of an Airflow MySQL connection (environment, secrets backend or metadata
        database, as Airflow finds it); its extra's mysqlclient options (timeouts, local_infile) too."""
        try:
            from airflow.models.connection import Connection
        except ImportError:  # pragma: no cover - Airflow is a dependency
            raise ValueError("--conn-id needs Airflow installed") from None
        try:
            connection = Connection.get_connection_from_secrets(conn_id)
        except Exception as exc:  # AirflowNotFoundException and the secrets backends' own errors
            raise LookupError(f"Airflow connection {conn_id!r}: {exc}") from None
        if connection.conn_type not in ("mysql", "mariadb"):
            raise ValueError(f"Airflow connection {conn_id!r} is of type {connection.conn_type!r}, not mysql")
        extra = connection.extra_dejson
        options = tuple((name, str(int(extra[name]))) for name in sorted(_INTEGER_OPTIONS.intersection(extra)))
        options += tuple((name, str(extra[name])) for name in ("unix_socket",) if extra.get(name))
        database = connection.schema or "cloudtrail"
        sql.validate_identifier(database, "database name")
        return cls(
            host=connection.host or "127.0.0.1", port=int(connection.port or 3306), user=connection.login or "root",
            password=connection.password or "", database=database, options=options,
        )

    @property
    def on_this_machine(self) -> bool:
        """Whether the server runs here, sharing this machine's cores with the loader."""
        return self.host in ("localhost", "127.0.0.1", "::1") or any(name == "unix_socket" for name, _ in self.options)

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def connect(self, with_database: bool = True, long_statements: bool = False) -> Any:
        """A connection with bounded waits; ``long_statements``: for the day's tasks (an index built
        over a day, a scan of it), whose one statement may take far longer than any file's."""
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
        kwargs["read_timeout"] = int(kwargs.get("read_timeout", DAY_TASK_READ_TIMEOUT if long_statements else 300))
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


def _start_worker(target: MySqlTarget, options: LoadOptions) -> None:
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the command's handler is for the command itself
    _worker["target"] = target
    _worker["options"] = options
    try:
        (_worker["writer"],) = open_writers(target.connect, options)
    except MySqlConnectError:
        # Not here: a pool whose initializer fails starts it again and again. The first task says why.
        _worker["writer"] = None
    _worker["client"] = None  # one S3 client per worker, made on its first S3 file


# Files of S3 fetched ahead by each worker while it parses and writes (an S3 GET waits tens of ms).
READ_AHEAD_FILES = 8
# The last shards' length: small enough to share the end of the work out evenly.
MIN_FILES_PER_SHARD = 16


def _shards(sources: Sequence[SourceFile], workers: int) -> list[list[SourceFile]]:
    """The files cut into shards of decreasing length, in order (guided scheduling): each is half of
    what is left shared among the workers, down to MIN_FILES_PER_SHARD (less for a few files). The
    first shards are long, so a worker's pipeline seldom starts again; the last are short, so a worker
    slowed down (a busy machine) is helped out at the end instead of holding the import up. One
    worker: one shard."""
    if workers <= 1:
        return [list(sources)] if sources else []
    # A few files: shorter still, so that every worker gets some.
    shortest = min(MIN_FILES_PER_SHARD, -(-len(sources) // (workers * 4)))
    shards: list[list[SourceFile]] = []
    start = 0
    while start < len(sources):
        length = max(shortest, (len(sources) - start) // (2 * workers))
        shards.append(list(sources[start : start + length]))
        start += length
    return shards


def _load_in_worker(shard: list[SourceFile]) -> Iterator[FileResult]:
    from cloudtrail_mysql.sources import fetch, s3_client

    from_s3 = shard[0].location.startswith("s3://")
    if from_s3 and _worker["client"] is None:
        _worker["client"] = s3_client()
    if _worker["writer"] is None:
        (_worker["writer"],) = open_writers(_worker["target"].connect, _worker["options"])
    options = _worker["options"]
    if from_s3:
        options = replace(options, read_ahead=READ_AHEAD_FILES)
    return run_load(shard, lambda s: fetch(s, _worker["client"]), [_worker["writer"]], options)


def _results(
    shards: list[list[SourceFile]], workers: int, target: MySqlTarget, options: LoadOptions
) -> Iterable[FileResult]:
    if workers <= 1 or len(shards) <= 1:
        _start_worker(target, options)
        for shard in shards:
            yield from _load_in_worker(shard)
        return
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    yield from _in_processes(shards, workers, context, (target, options))


def _worker_main(conn: Any, parent: int, *setup: Any) -> None:
    """A worker process: loads the tasks the command sends, one at a time, and sends back each file's
    result as soon as it is done, so that the command knows which file it held should it die."""
    try:
        _start_worker(*setup)
        while True:
            while not conn.poll(1.0):
                if os.getppid() != parent:  # the command is gone: so is the work
                    return
            task = conn.recv()
            if task is None:
                return
            for result in _load_in_worker(task):
                conn.send(("result", result))
            conn.send(("done", None))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return
    except BaseException as exc:  # noqa: BLE001 - the command reports it (a refusal stops the import)
        conn.send(("error", _portable(exc)))


def _portable(exc: BaseException) -> BaseException:
    """The exception, or one of its kind with its message if it cannot cross to the command."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - e.g. an exception whose __init__ takes more than its message
        kind = next((k for k in (MySqlSetupError, ConnectionError, ValueError, LookupError) if isinstance(exc, k)), RuntimeError)
        return kind(f"{exc}")


@dataclass
class _Worker:
    process: Any
    conn: Any
    task: list[SourceFile] | None = None
    done: int = 0  # files of the task whose result came back (a task's results come in its order)


def _in_processes(
    tasks: list[list[SourceFile]], workers: int, context: Any, setup: tuple[Any, ...]
) -> Iterator[FileResult]:
    """The tasks' results, file by file, from ``workers`` processes. A worker that dies (the kernel's
    out-of-memory killer, a kill -9) does not stop or hang the import: the file it was loading is
    recorded failed and named, the rest of its task goes to the others, and a new worker replaces it."""
    from multiprocessing.connection import wait

    pending = deque(tasks)
    live: list[_Worker] = []

    def start() -> None:
        here, there = context.Pipe()
        process = context.Process(target=_worker_main, args=(there, os.getpid(), *setup), daemon=True)
        process.start()
        there.close()
        live.append(_Worker(process, here))
        give_work(live[-1])

    def give_work(worker: _Worker) -> None:
        worker.task, worker.done = (pending.popleft() if pending else None), 0
        try:
            worker.conn.send(worker.task)
        except (BrokenPipeError, OSError):
            pass  # it died meanwhile: its sentinel says so

    try:
        for _ in range(min(workers, len(pending))):
            start()
        while live:
            ready = wait([w.conn for w in live] + [w.process.sentinel for w in live])
            for worker in list(live):
                ended = worker.process.sentinel in ready
                if worker.conn in ready or ended:
                    try:
                        while worker.conn.poll():
                            kind, value = worker.conn.recv()
                            if kind == "result":
                                worker.done += 1
                                yield value
                            elif kind == "done":
                                give_work(worker)
                            else:
                                raise value
                    except EOFError:
                        ended = True
                if not ended:
                    continue
                worker.process.join()
                live.remove(worker)
                worker.conn.close()
                if worker.task is not None and worker.done < len(worker.task):
                    held, rest = worker.task[worker.done], worker.task[worker.done + 1 :]
                    if rest:
                        pending.appendleft(rest)
                    yield _worker_died(held, worker.process.pid, worker.process.exitcode, setup)
                if pending and len(live) < workers:
                    start()
    finally:
        for worker in live:
            worker.process.kill()
        for worker in live:
            worker.process.join()
            worker.conn.close()


def _worker_died(source: SourceFile, pid: int, exitcode: int | None, setup: tuple[Any, ...]) -> FileResult:
    """The file a dead worker was loading: its transaction died with it (nothing of it is stored);
    recorded failed in the manifest, unless it was committed just before the worker died."""
    import signal

    target, table = setup[0], setup[1].table
    how = f"was killed by {signal.Signals(-exitcode).name}" if exitcode and exitcode < 0 else f"exited with {exitcode}"
    oom = " (as the kernel's out-of-memory killer does)" if exitcode == -signal.SIGKILL else ""
    message = f"{source.location}: the worker process loading it (pid {pid}) {how}{oom}; not loaded, a rerun loads it"
    try:
        conn = target.connect()
        try:
            writer = MySqlWriter(conn, table)
            if writer.loaded([source]):
                return FileResult(source.location, "already_loaded", detail="committed just before its worker died")
            writer.record_failure(source, message)
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - still named in the summary
        logging.getLogger(__name__).warning("could not record the failure of %s: %s", source.location, exc)
    return FileResult(source.location, "failed", detail=message)


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


def ensure_database(target: MySqlTarget, table: str, sources: Sequence[SourceFile] = ()) -> None:
    """Create the database (utf8mb4) and the tables where missing, and the partitions of the
    sources' delivery days ahead of the load (a fresh day staged); touch nothing that exists."""
    import MySQLdb

    try:
        conn = target.connect()
    except MySqlConnectError as exc:
        if exc.code != UNKNOWN_DATABASE:
            raise
        server = target.connect(with_database=False)
        try:
            cursor = server.cursor()
            sql.execute_statements(cursor, sql.split_statements(sql.render("create_database.sql", database=target.database)))
            server.commit()
        except MySQLdb.Error as error:
            raise setup_error(error, f"cannot create the database {target.database}") or error from None
        finally:
            server.close()
        conn = target.connect()
    try:
        writer = MySqlWriter(conn, table)
        writer.ensure_schema()
        day_bytes: dict[date | None, int] = {}
        for source in sources:
            day_bytes[source.delivery_day] = day_bytes.get(source.delivery_day, 0) + (source.size or 0)
        writer.ensure_day_partitions(day_bytes)
        staging.stage_days(conn, table, day_bytes, day_bytes)
    except MySQLdb.Error as error:
        raise setup_error(error, f"cannot create the tables in {target.database}") or error from None
    finally:
        conn.close()


def run_import(args: argparse.Namespace) -> int:
    from cloudtrail_mysql.sources import list_sources

    target = getattr(args, "target", None) or MySqlTarget.from_url(args.mysql_url)
    table = sql.validate_table_name(args.table)
    if args.retention_days is not None and args.retention_days < 1:
        raise ValueError("--retention-days keeps at least 1 day (the newest one loaded)")
    sources = args.sources if getattr(args, "sources", None) is not None else list_sources(args.source)
    if not sources:
        raise FileNotFoundError(f"no files found at {args.source}")
    ensure_database(target, table, sources)
    cores = os.cpu_count() or 1
    workers = args.workers or cores
    options = LoadOptions.from_flags(
        table=table,
        include_insight=args.include_insight,
        include_network_activity=args.include_network_activity,
        method=args.method,
        # Parsing ahead needs a core of its own: not there when a local server and the workers fill them all.
        parse_ahead=args.parse_ahead == "on" or (
            args.parse_ahead == "auto" and (workers < cores or not target.on_this_machine)
        ),
        max_file_bytes=args.max_file_bytes,
        max_record_bytes=args.max_record_bytes,
        retry_seconds=args.retry_seconds,
    )
    if not getattr(args, "quiet", False):
        print(f"importing {len(sources)} files from {args.source} into {target.describe()} table {table} with {workers} workers", file=sys.stderr)

    summary = LoadSummary(files=len(sources))
    progress = None if getattr(args, "quiet", False) else _progress(len(sources))
    if progress is not None:
        progress.start()
    try:
        for result in summary.tally(_results(_shards(sources, workers), workers, target, options)):
            if result.status == "failed":
                print(f"FAILED {result.detail}", file=sys.stderr)
            if progress is not None:
                progress.update(progress.task_ids[0], advance=1, rows=summary.rows, rate=summary.rate)
    finally:
        if progress is not None:
            progress.stop()
    print(summary.finish().line())
    if summary.replacements:
        # A changed file at the same place (CloudTrail delivered it again): its earlier rows went.
        print(f"{len(summary.replacements)} file(s) changed since loaded replaced "
              f"{sum(n for _, n in summary.replacements)} earlier rows:")
        for location, replaced in summary.replacements:
            print(f"  {location}: replaced {replaced} rows of its earlier version")
    days = sorted({day for day in (delivery_day(s.location) for s in sources) if day is not None})
    published = _publish_days(target, table, days)
    if args.summarize or args.retention_days:
        conn = target.connect(long_statements=True)
        try:
            if args.summarize:
                _summarize(conn, table, days, args.controls)
            if args.retention_days and days:
                print(apply_retention(conn, table, days[-1], args.retention_days).describe(table))
        finally:
            conn.close()
    args.summary = summary  # for --json
    if summary.failures:
        print(f"{len(summary.failures)} file(s) failed and were not loaded:", file=sys.stderr)
        for failure in summary.failures:
            print(f"  {failure.location}: {failure.detail.removeprefix(failure.location + ': ')}", file=sys.stderr)
        lost = sum(LOAD_AGAIN_HINT in failure.detail for failure in summary.failures)
        if lost:
            print(
                f"{lost} of them for want of the MySQL server: run the same command again once it is back; "
                "it loads exactly the files not loaded yet.", file=sys.stderr,
            )
        return 1
    return 0 if published else 1


def _publish_days(target: MySqlTarget, table: str, days: Sequence[date]) -> bool:
    """The days loaded into tables of their own (staging.py) swapped into the logs table, indexes
    built; False (said) if that could not be done now."""
    try:
        conn = target.connect(long_statements=True)
        try:
            for published in staging.publish_days(conn, table, days):
                print(f"{table}: delivery day {published.day} in place, {published.rows} rows {published.how} "
                      f"in {published.seconds:.1f} s")
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - the files are loaded; said, with what finishes the job
        print(f"{table}: the days loaded are not in the table yet ({exc}); run `cloudtrail-mysql summarize "
              f"--table {table} --day D` (or this import again) to put them in place", file=sys.stderr)
        return False
    return True


# -- summarize, retention, migrate ---------------------------------------------------------------
def _summarize(conn: Any, table: str, days: Sequence[date], controls_file: str | None = None) -> None:
    """The DAG's work after a day's load: indexes where missing, then each day's summaries and findings."""
    from cloudtrail_mysql.daytasks import build_summaries, create_indexes
    from cloudtrail_mysql.findings import build_findings, load_controls

    controls = load_controls(controls_file)
    print(f"{table}: indexes where missing, and the days loaded on their own swapped in, in "
          f"{create_indexes(conn, table, days):.1f} s")
    for day in days:
        print(f"{table}: summaries of the files delivered on {day} in {build_summaries(conn, table, day, controls):.1f} s")
        started = time.monotonic()
        found = build_findings(conn, table, controls, day.isoformat())
        print(f"{table}: findings of the events delivered on {day} in {time.monotonic() - started:.1f} s: "
              f"{sum(found.values())} ({', '.join(f'{c} {n}' for c, n in found.items()) or 'none'})")


@contextmanager
def _table_connection(args: argparse.Namespace) -> Iterator[tuple[Any, str]]:
    """A connection to --mysql-url and the --table it works on (validated first), closed after."""
    target = MySqlTarget.from_url(args.mysql_url)
    table = sql.validate_table_name(args.table)
    conn = target.connect(long_statements=True)
    try:
        yield conn, table
    finally:
        conn.close()


def run_summarize(args: argparse.Namespace) -> int:
    from cloudtrail_mysql.daytasks import delivery_days

    with _table_connection(args) as (conn, table):
        MySqlWriter(conn, table).ensure_schema()
        days = delivery_days(conn, table) if args.all else [date.fromisoformat(day) for day in args.day]
        if not days:
            print(f"{table}: no delivery day to summarise (give --day D, or --all)", file=sys.stderr)
            return 2
        _summarize(conn, table, days, args.controls)
    return 0


def run_retention(args: argparse.Namespace) -> int:
    from cloudtrail_mysql.daytasks import delivery_days

    if args.retention_days < 1:
        raise ValueError("--retention-days keeps at least 1 day")
    with _table_connection(args) as (conn, table):
        MySqlWriter(conn, table).ensure_schema()
        loaded = delivery_days(conn, table)
        day = date.fromisoformat(args.day) if args.day else (loaded[-1] if loaded else None)
        if day is None:
            print(f"{table}: no delivery day loaded yet, nothing to keep or drop")
            return 0
        print(apply_retention(conn, table, day, args.retention_days).describe(table))
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from cloudtrail_mysql.daytasks import delivery_days
    from cloudtrail_mysql.migrate import migrate_table

    with _table_connection(args) as (conn, table):
        writer = MySqlWriter(conn, table)
        result = migrate_table(conn, table, writer.collation(), say=lambda line: print(line, file=sys.stderr))
        writer.ensure_schema()  # tables added since (the summaries' parts, <table>_dropped_days)
        if result.migrated:
            # Each delivery day's part of the summaries, which tables before 0.2.0 did not keep.
            _summarize(conn, table, delivery_days(conn, table))
    print(result.describe())
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
    import MySQLdb

    target = MySqlTarget.from_url(args.mysql_url)
    table = sql.validate_table_name(args.table)
    try:
        conn = target.connect(long_statements=True)
    except MySqlConnectError as exc:
        if exc.code != UNKNOWN_DATABASE:
            raise
        raise LookupError(
            f"the database {target.database} does not exist at {target.user}@{target.host}:{target.port}: "
            f"load files first (cloudtrail-mysql import SOURCE creates it), or check the database name in "
            f"--mysql-url or ${URL_VARIABLE}"
        ) from None
    try:
        cursor = conn.cursor()
        # Each block of report.sql is a "-- title" line and one query.
        for block in sql.render("report.sql", table=table).split("\n\n"):
            title = next((line[2:].strip() for line in block.splitlines() if line.startswith("--")), "")
            for statement in sql.split_statements(block):
                try:
                    cursor.execute(statement)
                except MySQLdb.Error as exc:
                    raise _report_error(exc, target, table, conn) from None
                header = [d[0] for d in cursor.description]
                print(f"\n{title}" if title else "")
                _print_table(header, cursor.fetchall())
    finally:
        conn.close()
    return 0


def _report_error(exc: BaseException, target: MySqlTarget, table: str, conn: Any) -> Exception:
    """A MySQL error met by ``report``, in words: what is missing or refused, and what to do."""
    code = mysql_error_code(exc)
    said = exc.args[-1] if exc.args else exc
    reading = f"cannot read the table {table} in {target.describe()}"
    if code == NO_SUCH_TABLE:  # no such table: the one asked for, or its manifest <table>_files
        missing = re.search(r"Table '(?:[^'.]*\.)?([^']*)' doesn't exist", str(said))
        return LookupError(
            f"the table {missing.group(1) if missing else table} does not exist in the database {target.database}: "
            f"load files into it first (cloudtrail-mysql import SOURCE --table {table}), or check --table; "
            f"{_loaded_tables_here(conn)}"
        )
    if code == UNKNOWN_COLUMN:  # a table of that name, but not one this loader made
        return LookupError(
            f"{reading}: it is not a CloudTrail table made by this loader (MySQL said {said}); check --table; "
            f"{_loaded_tables_here(conn)}"
        )
    refusal = setup_error(exc, reading)
    if refusal is not None:
        return refusal
    if code in CONNECTION_LOST:
        return ConnectionError(f"{reading}: the connection to MySQL was lost (MySQL said {said}); run the report again")
    return MySqlSetupError(f"{reading}: MySQL error {code}: {said}")


def _loaded_tables_here(conn: Any) -> str:
    """Which tables of the current database this loader made (each has its <table>_files manifest)."""
    try:
        cursor = conn.cursor()
        cursor.execute(sql.render("loaded_tables.sql"))
        names = [str(row[0]) for row in cursor.fetchall()]
    except Exception:  # only a hint: never hide the error it adds to
        return "could not list the tables here"
    return f"tables loaded here: {', '.join(names)}" if names else "no table was loaded into this database yet"


# -- findings -----------------------------------------------------------------------------------
def run_findings(args: argparse.Namespace) -> int:
    """Print a day's findings per control, or (--all) rebuild them for every event day first."""
    import json

    from cloudtrail_mysql.findings import build_findings, day_findings, load_controls

    target = MySqlTarget.from_url(args.mysql_url)
    table = sql.validate_table_name(args.table)
    controls = load_controls(args.controls)
    titles = {control.id: control for control in controls}
    ensure_database(target, table)
    conn = target.connect(long_statements=True)
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
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


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
    parser = argparse.ArgumentParser(
        prog="cloudtrail-mysql", description="Load AWS CloudTrail logs into MySQL.", epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_verbosity_options(parser, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    def database_options(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--mysql-url", default=os.environ.get(URL_VARIABLE, DEFAULT_URL),
            help=f"mysql://user:password@host:port/database (default: ${URL_VARIABLE} or {DEFAULT_URL})",
        )
        command.add_argument("--table", default="logs", help="table name (default: logs)")

    load = commands.add_parser(
        "import", help="load CloudTrail files from a file, a folder or S3", epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    load.add_argument(
        "--summarize", action="store_true",
        help="then add the indexes where missing and rebuild the summaries and findings of every delivery day imported",
    )
    load.add_argument("--controls", help="with --summarize: a JSON file of more finding controls (see findings)")
    load.add_argument(
        "--retention-days", type=int, metavar="N",
        help="then keep only the last N delivery days, up to the newest one imported (older days are "
        "dropped whole: rows, manifest and summaries)",
    )
    add_script_options(load)
    load.set_defaults(run=run_import_command)

    summarize = commands.add_parser(
        "summarize", help="indexes where missing, then a delivery day's summaries and security findings"
    )
    database_options(summarize)
    days = summarize.add_mutually_exclusive_group(required=True)
    days.add_argument("--day", action="append", default=[], help="delivery day, YYYY-MM-DD (repeatable)")
    days.add_argument("--all", action="store_true", help="every delivery day in the manifest")
    summarize.add_argument("--controls", help="a JSON file of more finding controls (see findings)")
    summarize.set_defaults(run=run_summarize)

    retention = commands.add_parser("retention", help="keep only the last N delivery days; drop older ones whole")
    database_options(retention)
    retention.add_argument("--retention-days", type=int, required=True, metavar="N", help="delivery days to keep")
    retention.add_argument("--day", help="the newest day kept, YYYY-MM-DD (default: the newest day loaded)")
    retention.set_defaults(run=run_retention)

    migrate = commands.add_parser("migrate", help="convert a table made before day partitions (safe to rerun)")
    database_options(migrate)
    migrate.set_defaults(run=run_migrate)

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


# -- the command in scripts and cron: exit codes, verbosity, days of a trail, dry runs, JSON ------
EXIT_CODES = """exit codes:
  0    done: every file loaded, already loaded or skipped (also: a day with no files, --dry-run)
  1    some files failed and were not loaded; they are named (a rerun loads exactly those)
  2    nothing was loaded: bad arguments, or MySQL, S3 or the source refused (the message says which)
  130  interrupted (Ctrl-C); 143: stopped by SIGTERM. Files being loaded were rolled back
"""


def add_verbosity_options(parser: argparse.ArgumentParser, default: Any = 0) -> None:
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="count", default=default,
                          help="say more on stderr: the loader's log lines, such as a switch from LOAD DATA to INSERTs or a "
                          "reconnect (-vv: debug too)")
    loudness.add_argument("-q", "--quiet", action="store_true", default=default if default is argparse.SUPPRESS else False,
                          help="print nothing but warnings and errors (no progress, no summary)")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one name, comma-separated")
    return names


def add_script_options(load: argparse.ArgumentParser) -> None:
    """The import's options for scripts: which days of an S3 trail, a dry run, JSON, an Airflow connection."""
    add_verbosity_options(load, argparse.SUPPRESS)
    trail = load.add_argument_group(
        "days of an S3 trail (SOURCE is s3://bucket[/key_prefix], the part before AWSLogs/; the files "
        "are found as the DAG's plan_batches finds them)"
    )
    trail.add_argument("--day", dest="days", action="append", type=_day, metavar="YYYY-MM-DD",
                       help="a delivery day to load (repeatable)")
    trail.add_argument("--from", dest="from_day", type=_day, metavar="YYYY-MM-DD", help="first delivery day to load")
    trail.add_argument("--to", dest="to_day", type=_day, metavar="YYYY-MM-DD",
                       help="last delivery day to load, included (default with --from: today, UTC)")
    trail.add_argument("--accounts", type=_names, metavar="ID,ID", help="only these account ids (default: all found)")
    trail.add_argument("--regions", type=_names, metavar="REGION,REGION", help="only these regions (default: all found)")
    load.add_argument("--dry-run", action="store_true",
                      help="list the files that would be loaded, and stop: nothing is written, MySQL is not contacted")
    load.add_argument("--json", action="store_true",
                      help="print the summary (and the failed files) as JSON on stdout; the rest goes to stderr")
    load.add_argument("--conn-id", metavar="CONN_ID",
                      help="take the MySQL settings from this Airflow connection instead of --mysql-url")


def _log_to_stderr(verbose: int) -> None:
    """-v: the core's log lines (INFO) on stderr; -vv: DEBUG too."""
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("cloudtrail_mysql")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _trail_days(args: argparse.Namespace) -> list[date]:
    """The delivery days asked for with --day, --from and --to (sorted, once each); [] for none."""
    from datetime import datetime, timedelta

    from cloudtrail_mysql.layout import check_day

    days = set(args.days or ())
    if args.to_day and not args.from_day:
        raise ValueError("--to goes with --from")
    if args.from_day:
        last = args.to_day or datetime.now(UTC).date()
        if last < args.from_day:
            raise ValueError(f"--to {last} is before --from {args.from_day}")
        days.update(args.from_day + timedelta(days=n) for n in range((last - args.from_day).days + 1))
    today = datetime.now(UTC).date()
    for day in days:
        check_day(day, today)
    return sorted(days)


def _trail_sources(args: argparse.Namespace) -> list[SourceFile] | None:
    """The files of the days asked for, over an S3 trail; None when no day was asked for."""
    from cloudtrail_mysql.layout import check_bucket_name, day_sources
    from cloudtrail_mysql.sources import parse_s3_uri, s3_client

    days = _trail_days(args)
    if not days:
        if args.accounts or args.regions:
            raise ValueError("--accounts and --regions go with --day or --from")
        return None
    if not args.source.startswith("s3://"):
        raise ValueError(f"--day, --from and --to read an S3 trail: give SOURCE as s3://bucket[/key_prefix], not {args.source}")
    location = parse_s3_uri(args.source)
    check_bucket_name(location.bucket)
    kinds = kinds_for(args.include_insight, args.include_network_activity)
    return day_sources(
        s3_client(), location.bucket, days, location.key.strip("/"), accounts=args.accounts, regions=args.regions, kinds=kinds
    )


def run_import_command(args: argparse.Namespace) -> int:
    """``import`` with the options for scripts around ``run_import``."""
    import contextlib
    import json

    try:
        if args.conn_id:
            args.target = MySqlTarget.from_airflow_connection(args.conn_id)
        args.sources = _trail_sources(args)
        if args.dry_run:
            return _dry_run(args)
        if args.sources == []:  # asked-for days with no files: nothing to do, as for the DAG
            empty = LoadSummary().finish().as_report()
            print(json.dumps({**empty, "exit_code": 0}, indent=2) if args.json else f"no files delivered on {_days_text(args)}")
            return 0
        quiet = getattr(args, "quiet", False)
        out = sys.stderr if args.json else (open(os.devnull, "w") if quiet else sys.stdout)
        try:
            with contextlib.redirect_stdout(out):
                code = run_import(args)
        finally:
            if out not in (sys.stdout, sys.stderr):
                out.close()
    except Exception as exc:
        if args.json:
            print(json.dumps({"error": str(exc), "exit_code": 2}, indent=2))
        raise
    if args.json:
        print(json.dumps({**args.summary.finish().as_report(), "exit_code": code}, indent=2))
    return code


def _days_text(args: argparse.Namespace) -> str:
    days = _trail_days(args)
    return days[0].isoformat() if len(days) == 1 else f"{days[0]} to {days[-1]} ({len(days)} days)"


def _dry_run(args: argparse.Namespace) -> int:
    """What an import would load, without writing anything or contacting MySQL."""
    import json

    from cloudtrail_mysql.loader import wanted
    from cloudtrail_mysql.sources import list_sources

    sources = args.sources if args.sources is not None else list_sources(args.source)
    kinds = kinds_for(args.include_insight, args.include_network_activity)
    files = [(source, wanted(source.location, kinds)[0]) for source in sources]
    loadable = [source for source, ok in files if ok]
    target = getattr(args, "target", None) or MySqlTarget.from_url(args.mysql_url)
    table = sql.validate_table_name(args.table)
    size = sum(source.size or 0 for source in loadable)
    if args.json:
        print(json.dumps({
            "dry_run": True, "target": target.describe(), "table": table, "files": len(loadable), "bytes": size,
            "skipped": len(files) - len(loadable), "to_load": [{"file": s.location, "size": s.size} for s in loadable],
        }, indent=2))
        return 0
    if not getattr(args, "quiet", False):
        for source in loadable:
            print(f"{source.location}\t{source.size if source.size is not None else ''}")
        print(f"dry run: {len(loadable)} files, {size / 2**20:.1f} MiB would be loaded into {target.describe()} "
              f"table {table} (already loaded ones are skipped then); {len(files) - len(loadable)} other files "
              "skipped; nothing was written")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import MySQLdb

    args = build_parser().parse_args(argv)
    # Failures are printed once, by the summary; the core's log lines are for Airflow's task logs,
    # and for -v (-vv: everything) on stderr.
    logging.getLogger("cloudtrail_mysql").addHandler(logging.NullHandler())
    logging.getLogger("cloudtrail_mysql").propagate = False
    _log_to_stderr(getattr(args, "verbose", 0))
    # Stopped (timeout, kill, a scheduler): unwind as for Ctrl-C, so that workers are stopped too.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        return args.run(args)
    except MySQLdb.Error as exc:
        print(f"cloudtrail-mysql: error: {describe_mysql_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not isinstance(exc, _REPORTED + _boto_errors()):
            raise
        print(f"cloudtrail-mysql: error: {exc}", file=sys.stderr)
        hint = _hint(exc)
        if hint:
            print(f"cloudtrail-mysql: hint: {hint}", file=sys.stderr)
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


# Errors that the command reports in a line (and a hint), not with a traceback.
_REPORTED: tuple[type[Exception], ...] = (
    ConnectionError, ValueError, FileNotFoundError, LookupError, MySqlSetupError, NotPartitioned, TimeoutError,
)


def _boto_errors() -> tuple[type[Exception], ...]:
    """botocore's errors, once S3 was used (botocore imported): a local import never loads botocore
    (about 3 MB) just to name errors it cannot raise."""
    errors = sys.modules.get("botocore.exceptions")
    return (errors.BotoCoreError, errors.ClientError) if errors else ()


def _hint(exc: BaseException) -> str | None:
    """What to do about an error whose message alone leaves a newcomer guessing; names no secret."""
    errors = sys.modules.get("botocore.exceptions")
    if errors and isinstance(exc, (errors.NoCredentialsError, errors.PartialCredentialsError)):
        return (
            "these are the AWS credentials for reading S3, which boto3 did not find: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE naming a profile "
            "of ~/.aws/credentials, or run where an instance or task role provides them"
        )
    if isinstance(exc, MySqlConnectError):
        if exc.code == WRONG_PASSWORD:
            return f"check the user and password in --mysql-url or ${URL_VARIABLE}"
        if exc.code in CANNOT_REACH:
            return f"is a MySQL server running and reachable there? check the host and port in --mysql-url or ${URL_VARIABLE}"
    return None


if __name__ == "__main__":
    sys.exit(main())
