"""The logs table: its schema, its columns as the server describes them, and the row builder fitted to them.

One ``LogsTable`` per table, shared by every connection (thread) loading into it: the columns are
read once, the row builder and the INSERT and LOAD DATA statements are made once. Each method that
asks the server takes the connection to ask on.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterable
from datetime import date
from typing import Any

from cloudtrail_mysql import partitions, sql
from cloudtrail_mysql.records import Column, Limits, RowBuilder

__all__ = ["LOADER_SQL", "LogsTable", "TsvRows", "server_collation"]

LOADER_SQL = "loader.sql"
_CREATED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS `([^`]+)`")
_TEXT_TYPES = {"tinytext", "text", "mediumtext", "longtext"}
_CHAR_TYPES = {"varchar", "char"}
_INT_TYPES = {"smallint", "mediumint", "int", "bigint"}
# Room for the statement around the largest row (column names, escaping of the INSERT path).
_STATEMENT_MARGIN = 64 * 1024


def server_collation(conn: Any) -> str:
    """The server's exact (binary, no-pad) utf8mb4 collation."""
    cursor = conn.cursor()
    cursor.execute(sql.macro(LOADER_SQL, "server_version"))
    version = str(cursor.fetchone()[0])
    cursor.close()
    return "utf8mb4_nopad_bin" if "mariadb" in version.lower() else "utf8mb4_0900_bin"


class LogsTable:
    """A logs table (validated name) and what loading into it needs, read from the server once."""

    def __init__(self, name: str = "logs", limits: Limits | None = None) -> None:
        self.name = sql.validate_table_name(name)
        self.limits = limits or Limits.from_env()
        self._lock = threading.Lock()
        self._builder: RowBuilder | None = None
        self.insert_statement = ""
        self.load_data_statement = ""
        self.delete_rows_statement = sql.macro(LOADER_SQL, "delete_file_rows", self.name)
        self._row_statements: dict[str, tuple[str, str, str]] = {}
        self._day_partitions: set[date | None] = {None}  # delivery days known to have their partition

    def ensure_schema(self, conn: Any) -> None:
        """Create the logs table, its manifest and the summaries where missing (create_tables.sql).

        Nothing is run when they all exist, so a loading user needs no CREATE privilege then.
        """
        rendered = sql.render("create_tables.sql", table=self.name, collation=server_collation(conn))
        wanted = set(_CREATED_TABLE.findall(rendered))
        cursor = conn.cursor()
        cursor.execute(sql.macro(LOADER_SQL, "existing_tables"))
        existing = {str(name) for (name,) in cursor.fetchall()}
        if not wanted <= existing:
            sql.execute_statements(cursor, sql.split_statements(rendered))
        cursor.close()
        conn.commit()
        partitions.check_partitioned(conn, self.name)
        with self._lock:
            self._builder = None

    def ensure_day_partitions(self, conn: Any, days: Iterable[date | None]) -> None:
        """Give each delivery day its partition before its files are loaded (DDL: outside a file's
        transaction). Remembered, so a day is checked once per table, whichever connection asks."""
        with self._lock:
            wanted = set(days) - self._day_partitions
        if wanted:
            partitions.ensure_day_partitions(conn, self.name, wanted)
            with self._lock:
                self._day_partitions |= wanted

    def columns(self, conn: Any) -> list[Column]:
        """The table's columns as the server describes them, in order."""
        cursor = conn.cursor()
        cursor.execute(sql.macro(LOADER_SQL, "table_columns"), (self.name,))
        found = cursor.fetchall()
        cursor.close()
        if not found:
            raise LookupError(f"table {self.name!r} does not exist in this database")
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

    def builder(self, conn: Any) -> RowBuilder:
        """The row builder for this table's columns (read on ``conn`` the first time), with its statements."""
        with self._lock:
            if self._builder is not None:
                return self._builder
            max_row, reason = self._max_row_bytes(conn)
            try:
                builder = RowBuilder(self.columns(conn), max_row, reason)
                builder.limits = self.limits
            except ValueError as exc:
                raise ValueError(
                    f"table {self.name!r} is not a table this loader created ({exc}); "
                    "load into a new table (--table) or let the loader create it"
                ) from exc
            self._builder = builder
            self._row_statements = {}
            self.insert_statement, self.load_data_statement, _ = self._statements_for(self.name)
            return builder

    def row_statements(self, rows_table: str | None) -> tuple[str, str, str]:
        """INSERT, LOAD DATA and DELETE of a file's rows for ``rows_table`` (a day's stage, see
        staging.py) or, with None, this table itself; after ``builder``."""
        with self._lock:
            return self._statements_for(rows_table or self.name)

    def _statements_for(self, rows_table: str) -> tuple[str, str, str]:
        found = self._row_statements.get(rows_table)
        if found is None:
            builder = self._builder
            assert builder is not None, "builder() first"
            found = (
                sql.macro(LOADER_SQL, "insert_rows", rows_table, builder.column_names),
                sql.macro(LOADER_SQL, "load_data", rows_table, builder.tsv_column_names,
                          builder.has_source_key, builder.has_delivery_day),
                sql.macro(LOADER_SQL, "delete_file_rows", rows_table),
            )
            self._row_statements[rows_table] = found
        return found

    def _max_row_bytes(self, conn: Any) -> tuple[int, str]:
        """The largest row to send: the record limit, or less if the server's max_allowed_packet
        would refuse it (a refused statement can cost the connection)."""
        limit = self.limits.max_record_bytes
        cursor = conn.cursor()
        cursor.execute(sql.macro(LOADER_SQL, "max_allowed_packet"))
        packet = int(cursor.fetchone()[0])
        cursor.close()
        room = packet - _STATEMENT_MARGIN
        if room < limit:
            return max(room, 1), (
                f"the MySQL server's max_allowed_packet is {packet} bytes; raise it on the server to load larger records"
            )
        return limit, ""


# This process's open files by descriptor number (Linux): a file opened there is the same file.
_OWN_DESCRIPTORS = "/proc/self/fd"


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
