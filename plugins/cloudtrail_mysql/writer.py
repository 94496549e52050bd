"""One connection's writes: each file in one transaction (claim, replace, LOAD DATA or INSERT, finish).

Works on any DB-API connection from mysqlclient (what ``MySqlHook.get_conn()`` returns, or
``MySQLdb.connect``), so the command-line loader and the Airflow operator share it unchanged.
A file is loaded whole or not at all, and a file already in the manifest is never loaded twice.
What a table is (columns, row builder, statements) lives in table.py, shared by the connections;
the manifest's rows in manifest.py; what MySQL's errors mean in mysql_errors.py: statements here
raise those typed errors, never bare error numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date
from itertools import islice
from typing import Any

from cloudtrail_mysql import staging
from cloudtrail_mysql.files import FileResult, SourceFile, replaced_note
from cloudtrail_mysql.manifest import Manifest, same_content
from cloudtrail_mysql.mysql_errors import LoadDataUnavailable, at_mysql
from cloudtrail_mysql.records import CloudTrailFileError, Column, Limits, RowBuilder
from cloudtrail_mysql.table import LogsTable, TsvRows, server_collation

__all__ = ["DroppedDayFile", "METHODS", "MySqlWriter"]

log = logging.getLogger(__name__)

METHODS = ("auto", "insert", "load_data")


class DroppedDayFile(CloudTrailFileError):
    """A file delivered on a day that retention has dropped: refused, never loaded into a partial day."""


class MySqlWriter:
    """Writes CloudTrail rows for one table through one DB-API connection.

    ``connect`` (a function returning a new connection) lets the loader reconnect after the
    connection is lost (server restart, KILL, network): the lost transaction was rolled back by
    the server, so the file is simply loaded again. ``logs_table``: the table as shared by the
    writers of one load (else one of its own).
    """

    def __init__(
        self,
        conn: Any,
        table: str = "logs",
        batch_rows: int = 2000,
        connect: Callable[[], Any] | None = None,
        method: str = "auto",
        limits: Limits | None = None,
        retry_seconds: float | None = None,
        logs_table: LogsTable | None = None,
    ) -> None:
        from cloudtrail_mysql.front import retry_seconds_from_env

        if method not in METHODS:
            raise ValueError(f"method must be auto, insert or load_data, not {method!r}")
        self.method = method
        self.logs_table = logs_table or LogsTable(table, limits)
        self.table = self.logs_table.name
        self.limits = self.logs_table.limits
        self.manifest = Manifest(self.table)
        # How long a lost server is waited for (reconnecting with backoff) before a file fails.
        self.retry_seconds = retry_seconds if retry_seconds is not None else retry_seconds_from_env()
        # Since when the server has been unreachable (monotonic), None while it answers.
        self.unreachable_since: float | None = None
        # Failures that could not be written to the manifest (the server was gone): written when it is back.
        self.unrecorded_failures: list[tuple[SourceFile, str]] = []
        self.batch_rows = batch_rows
        self._connect = connect
        self.conn = self._prepare(conn)

    @staticmethod
    def _prepare(conn: Any) -> Any:
        if hasattr(conn, "set_character_set"):
            conn.set_character_set("utf8mb4")
        return conn

    def reconnect(self) -> None:
        """Replace a lost connection with a new one (needs ``connect``)."""
        if self._connect is None:
            raise ConnectionError("the MySQL connection was lost and no way to reconnect was given")
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - it is already gone
            pass
        self.conn = self._prepare(self._connect())

    # -- the table, on this connection -----------------------------------------------------------
    def collation(self) -> str:
        """The server's exact (binary, no-pad) utf8mb4 collation."""
        return server_collation(self.conn)

    def ensure_schema(self) -> None:
        """``LogsTable.ensure_schema``: the tables where missing."""
        self.logs_table.ensure_schema(self.conn)

    def ensure_day_partitions(self, days: Iterable[date | None]) -> None:
        """``LogsTable.ensure_day_partitions``: each delivery day's partition, checked once per table."""
        self.logs_table.ensure_day_partitions(self.conn, days)

    def columns(self) -> list[Column]:
        """The table's columns as the server describes them, in order."""
        return self.logs_table.columns(self.conn)

    @property
    def builder(self) -> RowBuilder:
        return self.logs_table.builder(self.conn)

    @property
    def load_data_statement(self) -> str:
        """The LOAD DATA statement for this table (bound: TSV file name, file id[, source key])."""
        _ = self.builder
        return self.logs_table.load_data_statement

    # -- the manifest, on this connection --------------------------------------------------------
    def loaded(self, sources: Sequence[SourceFile]) -> set[str]:
        """Locations among ``sources`` that are already loaded with the same content."""
        return self.manifest.loaded(self.conn, sources)

    def record_failure(self, source: SourceFile, error: str) -> None:
        """Note a file that could not be loaded, so that it can be seen and retried."""
        with at_mysql():
            self.manifest.record_failure(self.conn, source, error)

    # -- one file's transaction ------------------------------------------------------------------
    def load(
        self, source: SourceFile, records: Iterable[dict[str, Any]], tsv: TsvRows | None = None, new: bool = False
    ) -> FileResult:
        """Insert one file's records in one transaction; a file already loaded is left as it is.

        ``tsv``: the same records already written as LOAD DATA text (``TsvRows``), used as they are
        (the caller closes it); ``records`` are then read only if LOAD DATA turns out refused.
        ``new``: the manifest had no row for the file when the load began (``ManifestSnapshot.is_new``),
        so its row is simply inserted; should another loader have added it since, it is claimed as usual.
        Raises the typed errors of mysql_errors.py.
        """
        deadline = time.monotonic() + staging.PUBLISH_WAIT_SECONDS
        while True:
            try:
                return self._load_once(source, records, tsv, new)
            except staging.DayBeingPublished:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # nothing of the file was used yet: it loads once the day is swapped in

    def _load_once(
        self, source: SourceFile, records: Iterable[dict[str, Any]], tsv: TsvRows | None, new: bool
    ) -> FileResult:
        if self.method != "insert":
            try:
                with at_mysql():
                    return self._load(source, records, "load_data", tsv, new)
            except LoadDataUnavailable as exc:
                if self.method == "load_data":
                    raise
                log.info("LOAD DATA LOCAL INFILE is not available (%s); using multi-row INSERTs", exc)
                self.method = "insert"
        with at_mysql():
            return self._load(source, records, "insert", new=new)

    def _insert_rows(self, cursor: Any, rows: Iterator[tuple[Any, ...]], statement: str) -> int:
        """Multi-row INSERT statements through executemany, batch_rows rows at a time."""
        count = 0
        while True:
            batch = list(islice(rows, self.batch_rows))
            if not batch:
                return count
            cursor.executemany(statement, batch)
            count += len(batch)

    def _load_tsv(self, cursor: Any, rows: TsvRows, constants: tuple[Any, ...], statement: str) -> int:
        """LOAD DATA LOCAL INFILE of the rows in ``rows``' file; the file's id and location are
        set once by the statement, not sent on every line."""
        with at_mysql(load_data=True):
            cursor.execute(statement, (rows.path, *constants))
        loaded = cursor.rowcount
        warnings = self.conn.warning_count() if hasattr(self.conn, "warning_count") else 0
        if loaded != rows.count or warnings:
            # LOCAL loads turn errors into warnings; never keep a silently altered file. The row
            # builder fits every value to its column, so this is a server that differs from its table.
            said = ""
            if warnings:
                cursor.execute("SHOW WARNINGS LIMIT 3")
                said = "; MySQL said: " + "; ".join(str(row[-1]) for row in cursor.fetchall())
            raise RuntimeError(
                f"LOAD DATA stored {loaded} of {rows.count} rows with {warnings} warnings, so the file was not kept{said}"
            )
        return rows.count

    def _refuse_namesake(self, source: SourceFile, known_at: str, started: float) -> FileResult:
        """A file with the name (CloudTrail's file name) of a file loaded from elsewhere, but another
        content: not loaded over it. Kept failed in a manifest row of its own (by location)."""
        message = (
            f"{source.location}: a different file of the same name is loaded from {known_at}; not loaded, so that "
            f"neither replaces the other's events (if this one is the right one, delete the row of {known_at} "
            f"from {self.table}_files and load both again)"
        )
        log.error("failed: %s", message)
        self.manifest.record_namesake(self.conn, source, message)
        return FileResult(source.location, "failed", seconds=time.monotonic() - started, detail=message)

    def _refuse_dropped_day(self, cursor: Any, source: SourceFile) -> None:
        dropped_at = self.manifest.dropped_at(cursor, source)
        when = f" on {dropped_at:%Y-%m-%d %H:%M} UTC" if dropped_at else ""
        raise DroppedDayFile(
            source.location,
            f"delivered on {source.delivery_day}, a day that retention dropped{when}: not loaded, so that "
            f"the day is not kept in part (to load it again, delete its row from {self.table}_dropped_days)",
        )

    def _load(
        self, source: SourceFile, records: Iterable[dict[str, Any]], method: str, tsv: TsvRows | None = None,
        new: bool = False,
    ) -> FileResult:
        started = time.monotonic()
        builder = self.builder
        self.ensure_day_partitions([source.delivery_day])
        cursor = self.conn.cursor()
        if hasattr(cursor, "max_stmt_length"):
            cursor.max_stmt_length = 1024 * 1024
        try:
            # Claim: the file's manifest row, inserted or locked, is the authority on whether it is loaded.
            file_id = self.manifest.add(cursor, source) if new else None
            claimed = file_id is None
            if file_id is None:
                file_id = self.manifest.claim(cursor, source)
            if not file_id:
                self._refuse_dropped_day(cursor, source)
            # Where the day's rows go: its stage while it loads fresh (staging.py), else its partition.
            rows_table = staging.stage_of(cursor, self.table, source.delivery_day)
            insert, load_data, delete = self.logs_table.row_statements(rows_table)
            replaced: int | None = None
            if claimed:
                status, etag, size, known_at = self.manifest.state(cursor, file_id)
                if same_content(status, etag, size, source):
                    self.conn.rollback()
                    return FileResult(source.location, "already_loaded", detail="in the manifest")
                if status == "loaded" and known_at != source.location:
                    self.conn.rollback()
                    return self._refuse_namesake(source, str(known_at), started)
                if status != "loading":
                    # Replace: a failed attempt left nothing; a changed file (CloudTrail delivered it again,
                    # changed, at the same place) replaces its earlier rows, and says so.
                    cursor.execute(delete, (file_id,))
                    replaced = int(cursor.rowcount) if status == "loaded" else None
            # Rows: LOAD DATA of the file's TSV, or multi-row INSERTs.
            if method == "load_data":
                rows = tsv if tsv is not None else TsvRows(builder, records, source.location)
                try:
                    count = self._load_tsv(
                        cursor, rows, builder.tsv_constants(file_id, source.location, source.delivery_day), load_data
                    )
                finally:
                    if rows is not tsv:
                        rows.close()
            else:
                count = self._insert_rows(
                    cursor, builder.rows(records, source.location, file_id, source.delivery_day), insert
                )
            # Finish: the row says loaded, with its count, in the same commit as the rows.
            seconds = time.monotonic() - started
            note = None if replaced is None else replaced_note(replaced)
            self.manifest.finish(cursor, file_id, source, count, note, seconds, rows_table)
            self.conn.commit()
            return FileResult(source.location, "loaded", rows=count, seconds=seconds, detail=note or "")
        except BaseException:
            try:
                self.conn.rollback()
            except Exception:  # the connection itself may be gone; the server rolls back then
                pass
            raise
        finally:
            cursor.close()
