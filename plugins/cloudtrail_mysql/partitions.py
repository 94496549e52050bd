"""The logs table's day partitions: made ahead of a day's load, emptied whole by retention.

``logs`` is partitioned by ``deliveryDay`` (RANGE COLUMNS): one partition ``pYYYYMMDD`` per
delivery day loaded, empty ``gYYYYMMDD`` partitions over the days between them, and ``p_undated``
for files outside CloudTrail's dated layout. A day's secondary indexes are then a tree of their own
that stays small however many days the table holds, and a day's summaries read only the partitions
that hold its events.

Only empty partitions are ever split or merged (REORGANIZE copies rows): a new day is added after
the last partition, or cut out of an empty gap; retention first truncates the days it drops, then
merges them into one gap. Changes are serialised by a named lock per table, so a DAG's tasks and
the command can make partitions at the same time.

Plain DB-API (mysqlclient); no Airflow.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from cloudtrail_mysql import sql
from cloudtrail_mysql.records import UNDATED_DAY

__all__ = [
    "DroppedDays", "LOCK_WAIT_SECONDS", "day_is_dropped", "NotPartitioned", "Partition", "RetentionResult", "apply_retention",
    "ensure_day_partitions", "partition_lock", "read_partitions",
]

log = logging.getLogger(__name__)

_SQL = "partitions.sql"
UNDATED_PARTITION = "p_undated"
# How long a partition change waits for another one (named lock) and for loads in flight (metadata lock).
LOCK_WAIT_SECONDS = 300
# Summary tables emptied with the days retention drops (findings too, where the table exists).
SUMMARY_SUFFIXES = ("_daily_events", "_daily_errors", "_daily_principals", "_daily_source_ips", "_findings")
PARTS_SUFFIXES = ("_parts_events", "_parts_errors", "_parts_principals", "_parts_source_ips", "_parts_findings")
# Tables of one row per delivery day.
DAY_SUFFIXES = ("_parts_findings_built",)


class NotPartitioned(RuntimeError):
    """The table was made by a release before day partitions: ``cloudtrail-mysql migrate`` converts it."""


class DroppedDays(RuntimeError):
    """Days that retention has dropped were asked to be loaded again."""


@dataclass(frozen=True)
class Partition:
    """One partition: its name and the days it holds, ``lower`` (inclusive) to ``upper`` (exclusive)."""

    name: str
    lower: date | None
    upper: date

    @property
    def day(self) -> date | None:
        """The delivery day of a day partition (pYYYYMMDD), else None."""
        return self.lower if self.name == day_partition_name(self.lower) else None


def day_partition_name(day: date | None) -> str:
    return f"p{day:%Y%m%d}" if day is not None else UNDATED_PARTITION


def _gap_name(day: date) -> str:
    return f"g{day:%Y%m%d}"


def _bound(description: Any) -> date:
    """A RANGE COLUMNS bound as information_schema shows it ('2017-04-11', quotes included)."""
    return date.fromisoformat(str(description).strip().strip("'"))


def read_partitions(conn: Any, table: str) -> list[Partition]:
    """The table's partitions in order; empty if it is not partitioned."""
    cursor = conn.cursor()
    cursor.execute(sql.macro(_SQL, "list_partitions"), (table,))
    found = cursor.fetchall()
    cursor.close()
    partitions: list[Partition] = []
    for name, description in found:
        upper = _bound(description)
        partitions.append(Partition(str(name), partitions[-1].upper if partitions else None, upper))
    return partitions


def check_partitioned(conn: Any, table: str) -> list[Partition]:
    partitions = read_partitions(conn, table)
    if not partitions or partitions[0].name != UNDATED_PARTITION:
        raise NotPartitioned(
            f"table {table!r} was made by an earlier release of cloudtrail-mysql, without day partitions; "
            f"convert it once with: cloudtrail-mysql migrate --table {table} (it copies the table; "
            "nothing is lost, loads wait until it is done)"
        )
    return partitions


@contextmanager
def partition_lock(conn: Any, table: str) -> Iterator[None]:
    """A named lock per database and table (names are at most 64 characters, so hashed), and a
    bounded wait for the metadata lock that DDL takes (it waits for loads in flight)."""
    cursor = conn.cursor()
    cursor.execute("SELECT DATABASE(), @@SESSION.lock_wait_timeout")
    database, saved_timeout = cursor.fetchone()
    name = "cloudtrail_mysql:" + hashlib.sha1(f"{database}.{table}".encode()).hexdigest()
    cursor.execute(sql.macro(_SQL, "get_lock"), (name, LOCK_WAIT_SECONDS))
    (got,) = cursor.fetchone()
    if got != 1:
        cursor.close()
        raise TimeoutError(f"another loader has been changing the partitions of {table!r} for {LOCK_WAIT_SECONDS} s")
    cursor.execute("SET SESSION lock_wait_timeout = %s", (LOCK_WAIT_SECONDS,))
    try:
        yield
    finally:
        cursor.execute("SET SESSION lock_wait_timeout = %s", (int(saved_timeout),))
        cursor.execute(sql.macro(_SQL, "release_lock"), (name,))
        cursor.fetchall()
        cursor.close()


def _alter(conn: Any, macro: str, table: str, *names: Sequence[str], values: Sequence[Any] = ()) -> None:
    cursor = conn.cursor()
    cursor.execute(sql.macro(_SQL, macro, table, *(tuple(n) for n in names)), tuple(values))
    cursor.close()


def _dropped(conn: Any, table: str) -> set[date]:
    cursor = conn.cursor()
    cursor.execute(sql.macro(_SQL, "dropped_days", table))
    days = {row[0] for row in cursor.fetchall()}
    cursor.close()
    return days


def ensure_day_partitions(
    conn: Any, table: str, days: Iterable[date | None], manifest_table: str | None = None
) -> list[date]:
    """Make a partition of its own for each delivery day (None: undated, always there); the days made.

    Days that retention dropped (``<manifest_table or table>_dropped_days``) get none: their files
    are refused when they are loaded.
    """
    wanted = sorted({day for day in days if day is not None and day > UNDATED_DAY})
    if not wanted:
        check_partitioned(conn, table)
        return []
    existing = check_partitioned(conn, table)
    if all(day_partition_name(day) in {p.name for p in existing} for day in wanted):
        return []  # the usual case: nothing to lock
    made: list[date] = []
    with partition_lock(conn, table):
        dropped = _dropped(conn, manifest_table or table)
        for day in wanted:
            if day in dropped:
                continue
            partitions = read_partitions(conn, table)
            if _make_day(conn, table, partitions, day):
                made.append(day)
    if made:
        log.info("%s: made day partitions for %s", table, ", ".join(map(str, made)))
    return made


def _make_day(conn: Any, table: str, partitions: list[Partition], day: date) -> bool:
    last = partitions[-1]
    next_day = day + timedelta(days=1)
    if day >= last.upper:
        names, bounds = [], []
        if day > last.upper:
            names.append(_gap_name(last.upper))
            bounds.append(day)
        names.append(day_partition_name(day))
        bounds.append(next_day)
        _alter(conn, "add_partitions", table, names, values=bounds)
        return True
    holder = next(p for p in partitions if (p.lower is None or p.lower <= day) and day < p.upper)
    if holder.lower is None or holder.day == day:
        return False  # the undated partition (days before 1970), or made meanwhile
    # An empty gap: cut the day out of it.
    names, bounds = [], []
    if holder.lower < day:
        names.append(_gap_name(holder.lower))
        bounds.append(day)
    names.append(day_partition_name(day))
    bounds.append(next_day)
    if next_day < holder.upper:
        names.append(_gap_name(next_day))
        bounds.append(holder.upper)
    _alter(conn, "reorganize_partitions", table, [holder.name], names, values=bounds)
    return True


@dataclass(frozen=True)
class RetentionResult:
    """What retention did: the delivery days dropped (with their files and events) and the first day kept."""

    kept_from: date
    days: tuple[date, ...] = ()
    files: int = 0
    events: int = 0

    def describe(self, table: str) -> str:
        if not self.days:
            return f"{table}: retention kept everything from {self.kept_from} (nothing older to drop)"
        span = f"{self.days[0]}" if len(self.days) == 1 else f"{self.days[0]} to {self.days[-1]}"
        return (
            f"{table}: retention dropped {len(self.days)} delivery day(s), {span} ({self.files} files, "
            f"{self.events} events); kept from {self.kept_from}"
        )


def retention_cutoff(day: date, keep_days: int) -> date:
    """The first delivery day kept when ``keep_days`` days up to ``day`` (included) are kept."""
    if keep_days < 1:
        raise ValueError(f"retention keeps at least 1 day, not {keep_days}")
    return day - timedelta(days=keep_days - 1)


def apply_retention(conn: Any, table: str, day: date, keep_days: int) -> RetentionResult:
    """Keep the last ``keep_days`` delivery days up to ``day``; empty the older ones whole.

    Their partitions are truncated and merged into one gap (no row-by-row DELETE), their manifest
    rows and the summaries of event days before the cutoff are deleted, and the days are recorded
    in ``<table>_dropped_days``. Undated files are kept. Safe to run again: a rerun finds nothing.
    """
    table = sql.validate_identifier(table)
    cutoff = retention_cutoff(day, keep_days)
    check_partitioned(conn, table)
    with partition_lock(conn, table):
        cursor = conn.cursor()
        cursor.execute(sql.macro(_SQL, "days_before", table), (cutoff,))
        in_manifest = {row[0]: (int(row[1]), int(row[2])) for row in cursor.fetchall()}
        partitions = read_partitions(conn, table)
        # The partitions after p_undated, in order, up to the first day kept: all empty once truncated.
        emptied: list[Partition] = []
        for partition in partitions[1:]:
            if partition.day is not None and partition.day >= cutoff:
                break
            if partition.day is None and partition.upper > cutoff:
                break
            emptied.append(partition)
        days = sorted(set(in_manifest) | {p.day for p in emptied if p.day is not None})
        for dropped_day in days:
            files, events = in_manifest.get(dropped_day, (0, 0))
            cursor.execute(sql.macro(_SQL, "record_dropped_day", table), (dropped_day, files, events))
        conn.commit()
        day_partitions = [p.name for p in emptied if p.day is not None]
        if day_partitions:
            _alter(conn, "truncate_partitions", table, day_partitions)
        if len(emptied) > 1 or day_partitions:
            _alter(
                conn, "reorganize_partitions", table, [p.name for p in emptied], [_gap_name(emptied[0].lower or cutoff)],
                values=[emptied[-1].upper],
            )
        cursor.execute(sql.macro(_SQL, "delete_manifest_before", table), (cutoff,))
        existing = _existing_tables(cursor)
        if f"{table}_staged_days" in existing:  # days dropped while loading on their own (staging.py)
            cursor.execute(sql.macro("staging.sql", "markers", table))
            for staged_day, stage in cursor.fetchall():
                if staged_day < cutoff and stage == f"{table}__day_{staged_day:%Y%m%d}":
                    cursor.execute(sql.macro("staging.sql", "drop_table", stage))
                    cursor.execute(sql.macro("staging.sql", "remove_marker", table), (staged_day,))
        for suffix in SUMMARY_SUFFIXES:
            if f"{table}{suffix}" in existing:
                cursor.execute(sql.macro(_SQL, "delete_summaries_before", f"{table}{suffix}"), (cutoff,))
        for suffix in PARTS_SUFFIXES:
            if f"{table}{suffix}" in existing:
                cursor.execute(sql.macro(_SQL, "delete_parts_before", f"{table}{suffix}"), (cutoff, cutoff))
        for suffix in DAY_SUFFIXES:
            if f"{table}{suffix}" in existing:
                cursor.execute(sql.macro(_SQL, "delete_days_before", f"{table}{suffix}"), (cutoff,))
        conn.commit()
        cursor.close()
    result = RetentionResult(
        cutoff, tuple(days), sum(in_manifest.get(d, (0, 0))[0] for d in days),
        sum(in_manifest.get(d, (0, 0))[1] for d in days),
    )
    log.info("%s", result.describe(table))
    return result


def _existing_tables(cursor: Any) -> set[str]:
    cursor.execute(sql.macro("loader.sql", "existing_tables"))
    return {str(name) for (name,) in cursor.fetchall()}


def day_is_dropped(conn: Any, table: str, day: date) -> None:
    """Refuse a day that retention has dropped (``DroppedDays``), before anything of it is loaded."""
    if day in _dropped(conn, sql.validate_identifier(table)):
        raise DroppedDays(
            f"{table}: delivery day {day} was dropped by retention (retention_days); it is not loaded "
            f"again in part. To load it anew, delete its row from {table}_dropped_days first."
        )
