"""A fresh delivery day loads into a table of its own, then is swapped into its partition.

A day's partition of ``logs`` has its own secondary index trees, but they are kept up row by row:
on a tutorial-sized day (14M events) the random keys' trees (requestID) outgrow the buffer pool and
every insert becomes a random read. So a day whose partition is empty when its load is planned is
*staged*: ``<table>__day_YYYYMMDD`` has the table's columns and primary key, no partitions and no
secondary index, and the day's files go there, each in its own transaction as before (the
manifest stays the authority). Once the day is loaded, *publishing* builds the indexes in one
sorted pass and swaps the stage with the empty partition (``EXCHANGE PARTITION``, a rename), so
every day costs what the first day costs.

``<table>_staged_days`` says which days are staged. Each file's transaction reads its day's row
in share mode, so publishing (which marks the row ``closing`` first) waits for the files loading
into the stage, and a file arriving while the day is swapped in waits, then loads into the
partition. A day that already holds rows (a rerun, a late file) is never staged: its files go
straight to the partition. Publishing is safe to run again after a failure at any step.

Plain DB-API (mysqlclient); no Airflow.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cloudtrail_mysql import partitions, sql
from cloudtrail_mysql.mysql_errors import LOCK_WAIT_TIMEOUT, REFUSALS, mysql_error_code

__all__ = ["DayBeingPublished", "PublishedDay", "publish_days", "stage_days", "stage_name", "stage_of"]

log = logging.getLogger(__name__)

_SQL = "staging.sql"
_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# How long a file waits for its day to be swapped in before it fails (to be loaded again).
PUBLISH_WAIT_SECONDS = partitions.LOCK_WAIT_SECONDS
# MariaDB checks every row of a table swapped into a partition under a shared lock, and InnoDB keeps
# its locks in the buffer pool: a 14.2M-event day (1.6 GB of files) overflowed a 128 MiB pool (error
# 1206) where a 300,000-event one (35 MB) did not. Days of more compressed bytes than this many
# times the pool load into their partitions directly; a swap that fails all the same is copied.
MAX_STAGED_BYTES_PER_POOL_BYTE = 3
# Files per statement when a day is copied instead of swapped: bounded transactions.
COPY_FILES_PER_STATEMENT = 50


class DayBeingPublished(RuntimeError):
    """The file's day is being swapped into the logs table right now: its file waits, then loads."""


@dataclass(frozen=True)
class PublishedDay:
    day: date
    rows: int
    seconds: float
    how: str  # "exchanged", "copied" or "already in place"


def stage_name(table: str, day: date) -> str:
    return f"{sql.validate_identifier(table)}__day_{day:%Y%m%d}"


def _fetch(conn: Any, statement: str, values: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cursor = conn.cursor()
    cursor.execute(statement, values or None)
    rows = list(cursor.fetchall())
    cursor.close()
    return rows


def _run(conn: Any, statement: str, values: tuple[Any, ...] = ()) -> None:
    cursor = conn.cursor()
    cursor.execute(statement, values or None)
    cursor.close()


def _markers(conn: Any, table: str) -> dict[date, str]:
    return {day: str(stage) for day, stage in _fetch(conn, sql.macro(_SQL, "markers", table))}


Index = tuple[str, bool, tuple[tuple[str, int | None], ...]]  # name, unique, (column, prefix length)s


def _secondary_indexes(conn: Any, table: str) -> tuple[Index, ...] | None:
    """The table's secondary B-tree indexes as (name, unique, [(column, prefix)]); None if one of
    them cannot be written again here (a full-text index, an unusual name)."""
    indexes: dict[str, tuple[bool, list[tuple[str, int | None]]]] = {}
    for name, non_unique, column, sub_part, index_type in _fetch(conn, sql.macro(_SQL, "secondary_indexes"), (table,)):
        if str(index_type).upper() != "BTREE" or not _NAME.match(str(name)) or not _NAME.match(str(column)):
            return None
        unique, columns = indexes.setdefault(str(name), (not int(non_unique), []))
        columns.append((str(column), int(sub_part) if sub_part is not None else None))
    return tuple((name, unique, tuple(columns)) for name, (unique, columns) in indexes.items())


def stage_days(
    conn: Any, table: str, days: Iterable[date | None], day_bytes: Mapping[date | None, int] | None = None
) -> list[date]:
    """Stage each of ``days`` whose partition exists and is empty (a day not loaded yet); the days staged.

    Run by the front ends (the DAG's planning, the command) after the days' partitions are made.
    ``day_bytes``: the compressed size of each day's files; a day larger than the server can swap in
    (``MAX_STAGED_BYTES_PER_POOL_BYTE``) loads into its partition directly.
    """
    table = sql.validate_identifier(table)
    wanted = sorted({day for day in days if day is not None})
    if not wanted:
        return []
    if day_bytes:
        limit = MAX_STAGED_BYTES_PER_POOL_BYTE * int(_fetch(conn, "SELECT @@innodb_buffer_pool_size")[0][0])
        for day in [d for d in wanted if day_bytes.get(d, 0) > limit]:
            log.info("%s: delivery day %s (%.0f MiB of files) loads into its partition: swapping in a day larger "
                     "than %d times innodb_buffer_pool_size would overflow InnoDB's lock table", table, day,
                     day_bytes[day] / 2**20, MAX_STAGED_BYTES_PER_POOL_BYTE)
            wanted.remove(day)
    staged: list[date] = []
    with partitions.partition_lock(conn, table):
        markers = _markers(conn, table)
        existing = {p.name for p in partitions.read_partitions(conn, table)}
        for day in wanted:
            partition = partitions.day_partition_name(day)
            if day in markers or partition not in existing:
                continue
            if _fetch(conn, sql.macro(_SQL, "partition_has_rows", table, partition)):
                continue  # loaded before: its files go to the partition
            stage = stage_name(table, day)
            try:
                # A stage without its row never received a file (files only go where the row says).
                _run(conn, sql.macro(_SQL, "drop_table", stage))
                _run(conn, sql.macro(_SQL, "create_stage", table, stage))
            except Exception as exc:
                if mysql_error_code(exc) not in REFUSALS:
                    raise
                # Without CREATE and DROP the day loads in place, as it would without staging.
                log.warning("%s: delivery day %s loads into its partition (%s: staging needs CREATE, ALTER and "
                            "DROP on the database)", table, day, exc)
                conn.rollback()
                break
            _run(conn, sql.macro(_SQL, "remove_partitioning", stage))
            indexes = _secondary_indexes(conn, stage) or ()
            if indexes:
                _run(conn, sql.macro(_SQL, "drop_indexes", stage, indexes))
            _run(conn, sql.macro(_SQL, "add_marker", table), (day, stage))
            conn.commit()
            staged.append(day)
    if staged:
        log.info("%s: delivery day(s) %s load into tables of their own until published", table, ", ".join(map(str, staged)))
    return staged


def stage_of(cursor: Any, table: str, day: date | None) -> str | None:
    """In a file's transaction: the stage its rows go to (None: the logs table itself).

    Raises ``DayBeingPublished`` while the day is being swapped in.
    """
    if day is None:
        return None
    cursor.execute(sql.macro(_SQL, "stage_of", table), (day,))
    row = cursor.fetchone()
    if row is None:
        return None
    if row[1]:
        raise DayBeingPublished(f"delivery day {day} is being swapped into {table}; its files load after")
    return str(row[0])


def publish_days(conn: Any, table: str, days: Iterable[date] | None = None) -> list[PublishedDay]:
    """Swap each staged day of ``days`` (None: every staged day) into its partition, indexes built."""
    table = sql.validate_identifier(table)
    if not _fetch(conn, sql.macro(_SQL, "table_exists"), (f"{table}_staged_days",))[0][0]:
        return []  # a table made before staging, not loaded since
    markers = _markers(conn, table)
    conn.commit()
    chosen = sorted(markers if days is None else set(days) & set(markers))
    return [_publish(conn, table, day, markers[day]) for day in chosen]


def _publish(conn: Any, table: str, day: date, stage: str) -> PublishedDay:
    started = time.monotonic()
    stage = _checked_stage(table, day, stage)
    # Closing waits (row lock) for the files loading into the stage; later files wait for the swap.
    deadline = time.monotonic() + PUBLISH_WAIT_SECONDS
    while True:
        try:
            _run(conn, sql.macro(_SQL, "close_day", table), (day,))
            conn.commit()
            break
        except Exception as exc:  # a lock wait timeout: a long file is loading; wait on, bounded
            conn.rollback()
            if mysql_error_code(exc) != LOCK_WAIT_TIMEOUT or time.monotonic() > deadline:
                raise
    partition = partitions.day_partition_name(day)
    with partitions.partition_lock(conn, table):
        rows = 0
        how = "already in place"
        if _fetch(conn, sql.macro(_SQL, "table_exists"), (stage,))[0][0]:
            # Counted by the manifest: a COUNT(*) of the stage would read the whole day once more.
            staged = bool(_fetch(conn, sql.macro(_SQL, "table_has_rows", stage)))
            rows = int(_fetch(conn, sql.macro(_SQL, "day_rows", table), (day,))[0][0]) if staged else 0
            in_partition = bool(_fetch(conn, sql.macro(_SQL, "partition_has_rows", table, partition)))
            if staged and not in_partition:
                how = _swap_in(conn, table, partition, stage)
            elif staged:  # the partition got rows meanwhile (not by this loader): the stage's join them
                how = _copy(conn, table, stage)
            if _fetch(conn, sql.macro(_SQL, "table_has_rows", stage)):
                raise RuntimeError(f"{stage} holds rows after delivery day {day} was put in place: left as it is")
            _run(conn, sql.macro(_SQL, "drop_table", stage))
        _run(conn, sql.macro(_SQL, "remove_marker", table), (day,))
        conn.commit()
    published = PublishedDay(day, rows, time.monotonic() - started, how)
    log.info("%s: delivery day %s published (%d rows %s in %.1f s)", table, day, rows, how, published.seconds)
    return published


def _checked_stage(table: str, day: date, stage: str) -> str:
    if stage != stage_name(table, day):
        raise ValueError(f"{table}_staged_days names {stage!r} for {day}, not {stage_name(table, day)!r}")
    return stage


def _swap_in(conn: Any, table: str, partition: str, stage: str) -> str:
    """The table's indexes built on the stage, then the stage swapped with the empty partition;
    copied instead where the two no longer have the same structure."""
    wanted = _secondary_indexes(conn, table)
    if wanted is not None:
        have = {name for name, _, _ in (_secondary_indexes(conn, stage) or ())}
        missing = tuple(index for index in wanted if index[0] not in have)
        if missing:
            _run(conn, sql.macro(_SQL, "add_indexes", stage, missing))
        # In autocommit: inside a transaction, MariaDB's check of the stage's rows waits for a lock
        # of its own transaction (a lock wait timeout, 1205).
        conn.autocommit(True)
        try:
            _run(conn, sql.macro(_SQL, "exchange", table, partition, stage))
            return "exchanged"
        except Exception as exc:  # noqa: BLE001 - a structure that differs: copied below
            log.warning("%s: %s cannot be exchanged with %s (%s); copying its rows", table, stage, partition, exc)
        finally:
            conn.autocommit(False)
    return _copy(conn, table, stage)


def _copy(conn: Any, table: str, stage: str) -> str:
    """The stage's rows into the table, a range of files at a time, each range its own transaction
    (read committed: no lock on the rows read), then deleted from the stage."""
    conn.commit()
    _run(conn, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    while True:
        low = _fetch(conn, sql.macro(_SQL, "first_file", stage))[0][0]
        if low is None:
            return "copied"
        high = int(low) + COPY_FILES_PER_STATEMENT - 1
        _run(conn, sql.macro(_SQL, "copy_rows", table, stage), (low, high))
        _run(conn, sql.macro(_SQL, "delete_files", stage), (low, high))
        conn.commit()
