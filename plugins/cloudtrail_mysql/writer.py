"""Rows into MySQL: one transaction per source file, remembered in a manifest table.

Works on any DB-API connection from mysqlclient (what ``MySqlHook.get_conn()`` returns, or
``MySQLdb.connect``), so the command-line loader and the Airflow operator share it unchanged.
A file is loaded whole or not at all, and a file already in the manifest is never loaded twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import islice
from typing import Any, NoReturn

from cloudtrail_mysql import partitions, sql
from cloudtrail_mysql.records import (
    UNDATED_DAY,
    CloudTrailFileError,
    Column,
    Limits,
    RowBuilder,
    delivery_day,
    file_identity,
)

__all__ = [
    "FileResult", "MySqlWriter", "SourceFile", "TsvRows", "describe_mysql_error", "mysql_error_code", "replaced_note",
    "replaced_rows",
]

log = logging.getLogger(__name__)

_LOADER_SQL = "loader.sql"
_CREATED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS `([^`]+)`")
_TEXT_TYPES = {"tinytext", "text", "mediumtext", "longtext"}
_CHAR_TYPES = {"varchar", "char"}
_INT_TYPES = {"smallint", "mediumint", "int", "bigint"}


@dataclass(frozen=True)
class SourceFile:
    """A file to load: where it is (``s3://bucket/key`` or a path) and what the listing said of it."""

    location: str
    size: int | None = None
    etag: str | None = None

    @property
    def name(self) -> str:
        """How the manifest knows the file (CloudTrail's file name, or the full location)."""
        return file_identity(self.location)

    @property
    def delivery_day(self) -> date | None:
        return delivery_day(self.location)

    @property
    def name_hash(self) -> str:
        return hashlib.sha256(self.name.encode("utf-8")).hexdigest()

    @property
    def location_hash(self) -> str:
        """The manifest key of a file refused because another file has its name (``MySqlWriter.load``)."""
        return hashlib.sha256(self.location.encode("utf-8")).hexdigest()

    @property
    def manifest_values(self) -> tuple[Any, ...]:
        """Its manifest row's values, in the order of loader.sql's add_file, claim_file and record_failure."""
        return (self.name_hash, self.name, self.location, self.etag, self.size, self.delivery_day)


class TsvRows:
    """A file's rows written as LOAD DATA text to a temporary file, possibly ahead of its turn
    (by another thread, while this connection's server works on an earlier file). ``close``
    removes the file.

    Where the system allows it (Linux), the file has no name from the start: the client reads it
    through /proc/self/fd, so no exit, not even SIGKILL, leaves it behind.
    """

    def __init__(self, builder: RowBuilder, records: Iterable[dict[str, Any]], source_key: str) -> None:
        self._named = not os.path.isdir(_OWN_DESCRIPTORS)
        if self._named:
            handle: Any = tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", newline="\n", suffix=".tsv", prefix="cloudtrail-", delete=False
            )
            self.path = handle.name
        else:
            handle = tempfile.TemporaryFile("w", encoding="utf-8", newline="\n", suffix=".tsv", prefix="cloudtrail-")
            self.path = f"{_OWN_DESCRIPTORS}/{handle.fileno()}"
        self._handle = handle
        try:
            self.count = builder.write_tsv(records, source_key, handle)
            handle.flush()
            if self._named:
                handle.close()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._handle.close()
        if self._named:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


# This process's open files by descriptor number (Linux): a file opened there is the same file.
_OWN_DESCRIPTORS = "/proc/self/fd"


@dataclass(frozen=True)
class FileResult:
    """What happened to one file: loaded, already_loaded, skipped or failed."""

    location: str
    status: str
    rows: int = 0
    seconds: float = 0.0
    detail: str = ""


def _same_content(status: str, etag: Any, size: Any, source: SourceFile) -> bool:
    if status != "loaded":
        return False
    if source.etag and etag:
        mine, known = source.etag.strip('"'), str(etag).strip('"')
        # A multipart upload's ETag (<hash>-<parts>) is not the MD5 of the content: then sizes decide.
        if mine != known and ("-" in mine) == ("-" in known):
            return False
    if source.size is not None and size is not None and int(size) != source.size:
        return False
    return True


_DUPLICATE_KEY = 1062
_REPLACED = "replaced "


def replaced_note(rows: int) -> str:
    """What a file that replaced its earlier version says, in its FileResult and its manifest row."""
    return f"{_REPLACED}{rows} rows of an earlier version of this file (same location, changed content)"


def replaced_rows(detail: str | None) -> int | None:
    """The rows a loaded file replaced, from its ``replaced_note``; None if it replaced nothing."""
    if not detail or not detail.startswith(_REPLACED):
        return None
    return int(detail[len(_REPLACED):].split(" ", 1)[0])


class DroppedDayFile(CloudTrailFileError):
    """A file delivered on a day that retention has dropped: refused, never loaded into a partial day."""


class LoadDataUnavailable(RuntimeError):
    """The server or the connection does not allow LOAD DATA LOCAL INFILE."""


# Not allowed with this MySQL version / local data disabled / rejected by the client.
_LOAD_DATA_REFUSED = frozenset({1148, 3948, 2068, 4166, 1227})


# Room for the statement around the largest row (column names, escaping of the INSERT path).
_STATEMENT_MARGIN = 64 * 1024


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


def mysql_error_code(exc: BaseException) -> int | None:
    """MySQL's error number of a DB-API exception (its first argument), if it has one."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


_MYSQL_ERROR_WORDS = {
    2006: "MySQL server went away",
    2013: "lost the connection to MySQL during a statement",
    2055: "lost the connection to MySQL",
    2003: "cannot reach the MySQL server",
    2002: "cannot reach the MySQL server",
    1927: "the MySQL connection was killed",
    1053: "the MySQL server is shutting down",
    1153: "MySQL refused a statement larger than its max_allowed_packet",
    1301: "a value was larger than the MySQL server's max_allowed_packet",
    1205: "a lock wait timed out in MySQL",
    1213: "MySQL found a deadlock",
}


def describe_mysql_error(exc: BaseException) -> str:
    """A MySQL error in words, with its number and what the server said if anything:
    "MySQL server went away (2006)", never a bare "(2006, '')"."""
    code = mysql_error_code(exc)
    said = str(exc.args[-1]).strip() if len(getattr(exc, "args", ())) > 1 else ""
    words = _MYSQL_ERROR_WORDS.get(code) if code is not None else None
    if words is None:
        return f"MySQL error {code}: {said}" if code is not None else (str(exc) or type(exc).__name__)
    return f"{words} ({code})" + (f": {said}" if said and said.lower() not in words.lower() else "")


class MySqlWriter:
    """Writes CloudTrail rows for one table through one DB-API connection.

    ``connect`` (a function returning a new connection) lets the loader reconnect after the
    connection is lost (server restart, KILL, network): the lost transaction was rolled back by
    the server, so the file is simply loaded again.
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
    ) -> None:
        if method not in ("auto", "insert", "load_data"):
            raise ValueError(f"method must be auto, insert or load_data, not {method!r}")
        self.method = method
        self.limits = limits or Limits.from_env()
        # How long a lost server is waited for (reconnecting with backoff) before a file fails.
        self.retry_seconds = retry_seconds if retry_seconds is not None else retry_seconds_from_env()
        # Since when the server has been unreachable (monotonic), None while it answers.
        self.unreachable_since: float | None = None
        # Failures that could not be written to the manifest (the server was gone): written when it is back.
        self.unrecorded_failures: list[tuple[SourceFile, str]] = []
        self.table = sql.validate_table_name(table)
        self.batch_rows = batch_rows
        self._connect = connect
        self._builder: RowBuilder | None = None
        self._insert: str | None = None
        self._load_data: str | None = None
        self._day_partitions: set[date | None] = {None}  # delivery days known to have their partition
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

    # -- schema ---------------------------------------------------------------------------
    def collation(self) -> str:
        """The server's exact (binary, no-pad) utf8mb4 collation."""
        cursor = self.conn.cursor()
        cursor.execute(sql.macro(_LOADER_SQL, "server_version"))
        version = str(cursor.fetchone()[0])
        cursor.close()
        return "utf8mb4_nopad_bin" if "mariadb" in version.lower() else "utf8mb4_0900_bin"

    def ensure_schema(self) -> None:
        """Create the logs table, its manifest and the summaries where missing (create_tables.sql).

        Nothing is run when they all exist, so a loading user needs no CREATE privilege then.
        """
        rendered = sql.render("create_tables.sql", table=self.table, collation=self.collation())
        wanted = set(_CREATED_TABLE.findall(rendered))
        cursor = self.conn.cursor()
        cursor.execute(sql.macro(_LOADER_SQL, "existing_tables"))
        existing = {str(name) for (name,) in cursor.fetchall()}
        if not wanted <= existing:
            for statement in sql.split_statements(rendered):
                cursor.execute(statement)
        cursor.close()
        self.conn.commit()
        partitions.check_partitioned(self.conn, self.table)
        self._builder = None

    def ensure_day_partitions(self, days: Iterable[date | None]) -> None:
        """Give each delivery day its partition before its files are loaded (DDL: outside a file's
        transaction). Remembered, so a day is checked once per writer."""
        wanted = set(days) - self._day_partitions
        if wanted:
            partitions.ensure_day_partitions(self.conn, self.table, wanted)
            self._day_partitions |= wanted

    def columns(self) -> list[Column]:
        """The table's columns as the server describes them, in order."""
        cursor = self.conn.cursor()
        cursor.execute(sql.macro(_LOADER_SQL, "table_columns"), (self.table,))
        found = cursor.fetchall()
        cursor.close()
        if not found:
            raise LookupError(f"table {self.table!r} does not exist in this database")
        columns = []
        for name, data_type, max_chars, max_bytes in found:
            data_type = str(data_type).lower()
            if data_type in _CHAR_TYPES:
                columns.append(Column(name, "text", max_chars=int(max_chars)))
            elif data_type in _TEXT_TYPES:
                columns.append(Column(name, "text", max_bytes=int(max_bytes)))
            elif data_type == "tinyint":
                columns.append(Column(name, "bool"))
            elif data_type in _INT_TYPES:
                columns.append(Column(name, "int"))
            elif data_type in ("datetime", "timestamp"):
                columns.append(Column(name, "datetime"))
            elif data_type == "date":
                columns.append(Column(name, "date"))
            else:
                columns.append(Column(name, "text"))
        return columns

    @property
    def builder(self) -> RowBuilder:
        if self._builder is None:
            max_row, reason = self._max_row_bytes()
            try:
                self._builder = RowBuilder(self.columns(), max_row, reason)
                self._builder.limits = self.limits
            except ValueError as exc:
                raise ValueError(
                    f"table {self.table!r} is not a table this loader created ({exc}); "
                    "load into a new table (--table) or let the loader create it"
                ) from exc
            self._insert = sql.macro(
                _LOADER_SQL, "insert_rows", self.table, self._builder.column_names
            )
            self._load_data = sql.macro(
                _LOADER_SQL, "load_data", self.table, self._builder.tsv_column_names,
                self._builder.has_source_key, self._builder.has_delivery_day,
            )
        return self._builder

    def _max_row_bytes(self) -> tuple[int, str]:
        """The largest row to send: the record limit, or less if the server's max_allowed_packet
        would refuse it (a refused statement can cost the connection)."""
        limit = self.limits.max_record_bytes
        cursor = self.conn.cursor()
        cursor.execute(sql.macro(_LOADER_SQL, "max_allowed_packet"))
        packet = int(cursor.fetchone()[0])
        cursor.close()
        room = packet - _STATEMENT_MARGIN
        if room < limit:
            return max(room, 1), (
                f"the MySQL server's max_allowed_packet is {packet} bytes; raise it on the server to load larger records"
            )
        return limit, ""

    @property
    def load_data_statement(self) -> str:
        """The LOAD DATA statement for this table (bound: TSV file name, file id[, source key])."""
        _ = self.builder
        assert self._load_data is not None
        return self._load_data

    # -- manifest -------------------------------------------------------------------------
    def loaded(self, sources: Sequence[SourceFile]) -> set[str]:
        """Locations among ``sources`` that are already loaded with the same content."""
        return {
            source.location
            for source, status, etag, size in self._manifest_rows(sources)
            if _same_content(status, etag, size, source)
        }

    def manifest_state(self, sources: Sequence[SourceFile]) -> tuple[set[str], set[str]]:
        """What the manifest says of ``sources``, one query per 500 files: the locations loaded
        with the same ETag, and every location it has a row for, whatever its status.

        A file without an ETag yet (a local file, known by its MD5 once read) is never in the
        first set. A file in neither was never seen: it needs no check before it is read
        (claiming its row when it is loaded still settles a race between two copies of it).
        """
        rows = self._manifest_rows(sources)
        done = {
            source.location
            for source, status, etag, size in rows
            if source.etag is not None and _same_content(status, etag, size, source)
        }
        return done, {source.location for source, *_ in rows}

    def _manifest_rows(self, sources: Sequence[SourceFile], per_query: int = 500) -> list[tuple[SourceFile, Any, Any, Any]]:
        """(source, status, etag, size) for each of ``sources`` the manifest has a row for."""
        by_hash: dict[str, list[SourceFile]] = {}
        for source in sources:
            by_hash.setdefault(source.name_hash, []).append(source)
        hashes = list(by_hash)
        if not hashes:
            return []
        found: list[tuple[Any, ...]] = []
        cursor = self.conn.cursor()
        for start in range(0, len(hashes), per_query):
            part = tuple(hashes[start : start + per_query])
            cursor.execute(sql.macro(_LOADER_SQL, "find_files", self.table, len(part)), part)
            found.extend(cursor.fetchall())
        cursor.close()
        self.conn.commit()
        return [
            (source, status, etag, size)
            for name_hash, status, etag, size in found
            for source in by_hash[name_hash]
        ]

    def record_failure(self, source: SourceFile, error: str) -> None:
        """Note a file that could not be loaded, so that it can be seen and retried."""
        self.conn.rollback()
        cursor = self.conn.cursor()
        cursor.execute(
            sql.macro(_LOADER_SQL, "record_failure", self.table),
            (*source.manifest_values, error[:60000]),
        )
        cursor.close()
        self.conn.commit()

    # -- loading --------------------------------------------------------------------------
    def load(
        self, source: SourceFile, records: Iterable[dict[str, Any]], tsv: TsvRows | None = None, new: bool = False
    ) -> FileResult:
        """Insert one file's records in one transaction; a file already loaded is left as it is.

        ``tsv``: the same records already written as LOAD DATA text (``TsvRows``), used as they are
        (the caller closes it); ``records`` are then read only if LOAD DATA turns out refused.
        ``new``: the manifest had no row for the file when the load began (``manifest_state``), so
        its row is simply inserted; should another loader have added it since, it is claimed as usual.
        """
        if self.method != "insert":
            try:
                return self._load(source, records, "load_data", tsv, new)
            except LoadDataUnavailable as exc:
                if self.method == "load_data":
                    raise
                log.info("LOAD DATA LOCAL INFILE is not available (%s); using multi-row INSERTs", exc)
                self.method = "insert"
        return self._load(source, records, "insert", new=new)

    def _insert_rows(self, cursor: Any, rows: Iterator[tuple[Any, ...]]) -> int:
        """Multi-row INSERT statements through executemany, batch_rows rows at a time."""
        count = 0
        while True:
            batch = list(islice(rows, self.batch_rows))
            if not batch:
                return count
            cursor.executemany(self._insert, batch)
            count += len(batch)

    def _load_tsv(self, cursor: Any, rows: TsvRows, constants: tuple[Any, ...]) -> int:
        """LOAD DATA LOCAL INFILE of the rows in ``rows``' file; the file's id and location are
        set once by the statement, not sent on every line."""
        try:
            cursor.execute(self._load_data, (rows.path, *constants))
        except Exception as exc:
            if mysql_error_code(exc) in _LOAD_DATA_REFUSED:
                raise LoadDataUnavailable(str(exc)) from exc
            raise
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

    def _add_file(self, cursor: Any, source: SourceFile) -> int | None:
        """The id of the manifest row inserted for a new file (0: its day was dropped), or None if
        another loader has added it."""
        try:
            cursor.execute(sql.macro(_LOADER_SQL, "add_file", self.table), (*source.manifest_values, source.delivery_day))
        except Exception as exc:
            if mysql_error_code(exc) == _DUPLICATE_KEY:
                return None
            raise
        return int(cursor.lastrowid) if cursor.rowcount else 0

    def _refuse_namesake(self, source: SourceFile, known_at: str, started: float) -> FileResult:
        """A file with the name (CloudTrail's file name) of a file loaded from elsewhere, but another
        content: not loaded over it. Kept failed in a manifest row of its own (by location)."""
        message = (
            f"{source.location}: a different file of the same name is loaded from {known_at}; not loaded, so that "
            f"neither replaces the other's events (if this one is the right one, delete the row of {known_at} "
            f"from {self.table}_files and load both again)"
        )
        log.error("failed: %s", message)
        cursor = self.conn.cursor()
        try:
            cursor.execute(
                sql.macro(_LOADER_SQL, "record_failure", self.table),
                (source.location_hash, *source.manifest_values[1:], message),
            )
            self.conn.commit()
        finally:
            cursor.close()
        return FileResult(source.location, "failed", seconds=time.monotonic() - started, detail=message)

    def _refuse_dropped_day(self, cursor: Any, source: SourceFile) -> NoReturn:
        cursor.execute(sql.macro(_LOADER_SQL, "dropped_day", self.table), (source.delivery_day,))
        found = cursor.fetchone()
        when = f" on {found[0]:%Y-%m-%d %H:%M} UTC" if found else ""
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
            file_id = self._add_file(cursor, source) if new else None
            claimed = file_id is None
            if claimed:
                cursor.execute(
                    sql.macro(_LOADER_SQL, "claim_file", self.table), (*source.manifest_values, source.delivery_day)
                )
                file_id = cursor.lastrowid
            if not file_id:
                self._refuse_dropped_day(cursor, source)
            replaced: int | None = None
            if claimed:
                cursor.execute(sql.macro(_LOADER_SQL, "file_state", self.table), (file_id,))
                status, etag, size, known_at = cursor.fetchone()
                if _same_content(status, etag, size, source):
                    self.conn.rollback()
                    return FileResult(source.location, "already_loaded", detail="in the manifest")
                if status == "loaded" and known_at != source.location:
                    self.conn.rollback()
                    return self._refuse_namesake(source, str(known_at), started)
                if status != "loading":
                    # A failed attempt left nothing; a changed file (CloudTrail delivered it again, changed,
                    # at the same place) replaces its earlier rows, and says so.
                    cursor.execute(sql.macro(_LOADER_SQL, "delete_file_rows", self.table), (file_id,))
                    replaced = int(cursor.rowcount) if status == "loaded" else None
            if method == "load_data":
                rows = tsv if tsv is not None else TsvRows(builder, records, source.location)
                try:
                    count = self._load_tsv(
                        cursor, rows, builder.tsv_constants(file_id, source.location, source.delivery_day)
                    )
                finally:
                    if rows is not tsv:
                        rows.close()
            else:
                count = self._insert_rows(cursor, builder.rows(records, source.location, file_id, source.delivery_day))
            seconds = time.monotonic() - started
            note = None if replaced is None else replaced_note(replaced)
            cursor.execute(
                sql.macro(_LOADER_SQL, "finish_file", self.table),
                (file_id, source.delivery_day or UNDATED_DAY, count, note, seconds, source.location, source.etag,
                 source.size, source.delivery_day, file_id),
            )
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
