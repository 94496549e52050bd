"""The load front end shared by the command and the operator: options in, a summary out.

``cloudtrail-mysql import`` (cli.py, one connection per worker process) and
``CloudTrailToMySqlOperator`` (operators.py, one connection per thread) differ only in where
connections and bytes come from; which files to load (the flags-to-kinds conversion), the limits,
the writers sharing one table, the pipeline's settings and the tally of results are here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudtrail_mysql.files import FileResult, SourceFile, replaced_rows
from cloudtrail_mysql.layout import FileKind
from cloudtrail_mysql.records import Limits
from cloudtrail_mysql.table import LogsTable

__all__ = [
    "DEFAULT_KINDS", "LoadOptions", "LoadSummary", "kinds_for", "open_writers", "retry_seconds_from_env", "run_load",
]

DEFAULT_KINDS: frozenset[FileKind] = frozenset({FileKind.LOG})
STATUSES = ("loaded", "already_loaded", "skipped", "failed")


def kinds_for(include_insight: bool = False, include_network_activity: bool = False) -> frozenset[FileKind]:
    """The kinds of files to load: log files, and Insight or network-activity files if asked."""
    kinds = set(DEFAULT_KINDS)
    if include_insight:
        kinds.add(FileKind.INSIGHT)
    if include_network_activity:
        kinds.add(FileKind.NETWORK_ACTIVITY)
    return frozenset(kinds)


def retry_seconds_from_env(default: float = 60.0) -> float:
    """CLOUDTRAIL_MYSQL_RETRY_SECONDS, else ``default``: how long a lost MySQL server is waited for."""
    text = os.environ.get("CLOUDTRAIL_MYSQL_RETRY_SECONDS")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"CLOUDTRAIL_MYSQL_RETRY_SECONDS must be a number of seconds, not {text!r}") from None
    if value < 0:
        raise ValueError("CLOUDTRAIL_MYSQL_RETRY_SECONDS must be 0 or more")
    return value


@dataclass(frozen=True)
class LoadOptions:
    """How to load: into which table, which kinds of files, by which method, how far ahead, within which limits.

    ``read_ahead``: files fetched ahead of their turn (worth it for S3, where a GET waits);
    ``parse_ahead``: files also parsed ahead, one per connection, while the server loads earlier ones.
    """

    table: str = "logs"
    kinds: frozenset[FileKind] = DEFAULT_KINDS
    method: str = "auto"
    parse_ahead: bool = True
    read_ahead: int = 0
    limits: Limits = field(default_factory=Limits.from_env)
    retry_seconds: float = field(default_factory=retry_seconds_from_env)

    @classmethod
    def from_flags(
        cls,
        table: str = "logs",
        include_insight: bool = False,
        include_network_activity: bool = False,
        method: str = "auto",
        parse_ahead: bool = True,
        read_ahead: int = 0,
        max_file_bytes: int | str | None = None,
        max_record_bytes: int | str | None = None,
        retry_seconds: float | None = None,
    ) -> LoadOptions:
        """The options from the command's flags or the operator's arguments (None: the environment's default)."""
        from cloudtrail_mysql.sql import validate_table_name
        from cloudtrail_mysql.writer import METHODS

        if method not in METHODS:
            raise ValueError(f"method must be auto, insert or load_data, not {method!r}")
        return cls(
            table=validate_table_name(table),
            kinds=kinds_for(include_insight, include_network_activity),
            method=method,
            parse_ahead=parse_ahead,
            read_ahead=max(0, int(read_ahead)),
            limits=Limits.from_env(max_file_bytes, max_record_bytes),
            retry_seconds=retry_seconds if retry_seconds is not None else retry_seconds_from_env(),
        )


def open_writers(
    connect: Callable[[], Any], options: LoadOptions, count: int = 1, table: LogsTable | None = None
) -> list[Any]:
    """``count`` writers (``MySqlWriter``), each on a new connection, sharing one ``LogsTable``
    (``table``, else a new one): its columns are read once, whatever the number of connections."""
    from cloudtrail_mysql.writer import MySqlWriter

    table = table or LogsTable(options.table, options.limits)
    writers: list[MySqlWriter] = []
    try:
        for _ in range(max(1, count)):
            writers.append(MySqlWriter(
                connect(), options.table, connect=connect, method=options.method, retry_seconds=options.retry_seconds,
                logs_table=table,
            ))
    except BaseException:
        for writer in writers:
            writer.conn.close()
        raise
    return writers


def run_load(
    sources: Sequence[SourceFile], fetch: Callable[[SourceFile], bytes], writers: Sequence[Any], options: LoadOptions
) -> Iterator[FileResult]:
    """Each file's result, in the order of ``sources``, from the load pipeline (loader.load_files)."""
    from cloudtrail_mysql.loader import load_files

    return load_files(
        sources, fetch, writers, options.kinds, read_ahead=options.read_ahead, parse_ahead=options.parse_ahead
    )


@dataclass
class LoadSummary:
    """The tally of a load's results: counts by status, rows, failures, files that replaced earlier versions."""

    files: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    rows: int = 0
    failures: list[FileResult] = field(default_factory=list)
    replacements: list[tuple[str, int]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def add(self, result: FileResult) -> None:
        self.counts[result.status] += 1
        self.rows += result.rows
        if result.status == "failed":
            self.failures.append(result)
        elif result.status == "loaded":
            replaced = replaced_rows(result.detail)
            if replaced is not None:
                self.replacements.append((result.location, replaced))

    def tally(self, results: Iterable[FileResult]) -> Iterator[FileResult]:
        """``add`` each result as it passes."""
        for result in results:
            self.add(result)
            yield result

    def finish(self) -> LoadSummary:
        self.ended = time.monotonic()
        return self

    @property
    def seconds(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.rows / max(self.seconds, 1e-9)

    def line(self) -> str:
        """One line: '3 files loaded, 1 already loaded, 0 skipped, 0 failed; 120 rows in 0.4 s (300 rows/s)'."""
        c = self.counts
        return (
            f"{c['loaded']} files loaded, {c['already_loaded']} already loaded, {c['skipped']} skipped, "
            f"{c['failed']} failed; {self.rows} rows in {self.seconds:.1f} s ({self.rate:,.0f} rows/s)"
        )

    def as_dict(self) -> dict[str, Any]:
        """For XCom: files, loaded, already_loaded, skipped, failed, rows, seconds."""
        return {"files": self.files, **self.counts, "rows": self.rows, "seconds": round(self.seconds, 3)}

    def as_report(self) -> dict[str, Any]:
        """``as_dict`` plus the files that replaced earlier versions and the failures, each named
        (the command's ``--json``)."""
        return {
            **self.as_dict(),
            "replaced": [{"file": location, "rows": rows} for location, rows in self.replacements],
            "failures": [
                {"file": f.location, "error": f.detail.removeprefix(f.location + ": ")} for f in self.failures
            ],
        }
