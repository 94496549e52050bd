"""Convert a logs table made before day partitions, once: ``cloudtrail-mysql migrate``.

The rows are copied into a new partitioned table (file by file range, so no transaction holds the
whole table), counted, and the two tables swapped in one atomic RENAME; only then is the old one
dropped. Stopped anywhere, it can simply be run again: a half-made copy is dropped and made anew,
and the old table is never changed before the swap. Loads must wait until it is done.
Plain DB-API (mysqlclient); no Airflow.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudtrail_mysql import partitions, sql

__all__ = ["MigrationResult", "migrate_table"]

log = logging.getLogger(__name__)

_SQL = "migrate.sql"
_FILES_PER_SLICE = 2000


@dataclass(frozen=True)
class MigrationResult:
    table: str
    migrated: bool
    rows: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        if not self.migrated:
            return f"{self.table}: already partitioned by day, nothing to do"
        return f"{self.table}: {self.rows} rows copied into the day-partitioned layout in {self.seconds:.1f} s"


def _values(cursor: Any, statement: str, args: tuple[Any, ...] = ()) -> list[Any]:
    cursor.execute(statement, args or None)
    return [row[0] for row in cursor.fetchall()]


def _columns(cursor: Any, table: str) -> list[str]:
    """The table's column names, in order (the loader's own query of information_schema)."""
    return [str(name) for name in _values(cursor, sql.macro("loader.sql", "table_columns"), (table,))]


def migrate_table(
    conn: Any, table: str, collation: str, say: Callable[[str], None] = log.info
) -> MigrationResult:
    """Copy ``table`` (made by an earlier release) into the day-partitioned layout, then swap."""
    table = sql.validate_identifier(table)
    new, old = f"{table}__migrating", f"{table}__premigration"
    started = time.monotonic()
    cursor = conn.cursor()
    macro = lambda name, *args: sql.macro(_SQL, name, *args)  # noqa: E731
    columns = _columns(cursor, table)
    if not columns:
        raise LookupError(f"table {table!r} does not exist in this database")
    cursor.execute(macro("drop_table", old))  # left by a run stopped after its swap: already copied
    if "deliveryDay" in columns:
        partitions.check_partitioned(conn, table)
        return MigrationResult(table, False)
    if "first_event" not in _columns(cursor, f"{table}_files"):
        cursor.execute(macro("add_manifest_columns", table))
    writer_schema = sql.render("create_tables.sql", table=table, collation=collation)
    for statement in sql.split_statements(writer_schema):
        if statement.split("(")[0].rstrip().endswith((f"`{table}_dropped_days`", f"`{table}_staged_days`")):
            cursor.execute(statement)
    # A fresh copy: the logs table's CREATE statement of create_tables.sql, under the new name.
    cursor.execute(macro("drop_table", new))
    created = sql.render("create_tables.sql", table=new, collation=collation)
    statement = next(s for s in sql.split_statements(created) if re.match(rf"CREATE TABLE IF NOT EXISTS `{new}` \(", s))
    cursor.execute(statement)
    days = _values(cursor, macro("manifest_days", table))
    partitions.ensure_day_partitions(conn, new, days, manifest_table=table)
    in_new = set(_columns(cursor, new)) - {"principal", "deliveryDay"}
    copied = [c for c in columns if c in in_new]
    low, high = _rows(cursor, macro("file_id_bounds", table))[0]
    if low is not None:
        for start in range(int(low), int(high) + 1, _FILES_PER_SLICE):
            cursor.execute(macro("copy_rows", table, new, tuple(copied)), (start, start + _FILES_PER_SLICE - 1))
            conn.commit()
            say(f"{table}: copied the rows of files {start} to {min(start + _FILES_PER_SLICE - 1, int(high))} of {high}")
    rows = int(_values(cursor, macro("count_rows", new))[0])
    before = int(_values(cursor, macro("count_rows", table))[0])
    if rows != before:
        raise RuntimeError(f"{table}: the copy holds {rows} rows, the table {before}; nothing was changed")
    if _values(cursor, macro("index_names", table)):
        say(f"{table}: adding the indexes to the copy")
        sql.execute_statements(cursor, sql.split_statements(sql.render("create_indexes.sql", table=new)))
    cursor.execute(macro("file_event_bounds", table, new))
    conn.commit()
    cursor.execute(macro("swap", table, new, old))
    cursor.execute(macro("drop_table", old))
    conn.commit()
    cursor.close()
    return MigrationResult(table, True, rows, time.monotonic() - started)


def _rows(cursor: Any, statement: str) -> list[tuple[Any, ...]]:
    cursor.execute(statement)
    return list(cursor.fetchall())
