"""A day's work after its load, for the command and the DAG alike (the same include/sql files).

Indexes where missing, the summaries of the event days a delivery day touched (and, in the same
scan, the day's part of the findings), and the delivery days loaded. Plain DB-API; no Airflow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

from cloudtrail_mysql import sql
from cloudtrail_mysql.findings import MAX_CONTROLS_IN_PARTS, Control, compile_controls

__all__ = ["build_summaries", "create_indexes", "delivery_days", "run_sql_file"]

log = logging.getLogger(__name__)


def run_sql_file(conn: Any, name: str, table: str, rendering: dict[str, Any] | None = None, **values: Any) -> float:
    """Run include/sql/<name> for ``table`` as the DAG's SQL task does (``rendering``: more Jinja
    params; values bound by name); seconds."""
    started = time.monotonic()
    rendered = sql.render(name, table=sql.validate_identifier(table), **(rendering or {}))
    cursor = conn.cursor()
    sql.execute_statements(cursor, sql.split_statements(rendered), values)
    cursor.close()
    conn.commit()
    return time.monotonic() - started


def create_indexes(conn: Any, table: str, days: Sequence[date] | None = None) -> float:
    """The tutorial's indexes, where missing (create_indexes.sql), then the staged days among ``days``
    (None: all) swapped in with theirs (staging.py); seconds."""
    from cloudtrail_mysql.staging import publish_days

    started = time.monotonic()
    run_sql_file(conn, "create_indexes.sql", table)
    publish_days(conn, table, days)
    return time.monotonic() - started


def build_summaries(conn: Any, table: str, day: date, controls: Sequence[Control] = ()) -> float:
    """Rebuild the summaries of every event day that the files delivered on ``day`` hold, and the
    day's part of the findings for ``controls`` (build_findings then needs no scan of its own); seconds."""
    if not controls or len(controls) > MAX_CONTROLS_IN_PARTS:
        seconds = run_sql_file(conn, "build_summaries.sql", table, day=day)
    else:
        compiled = compile_controls(controls)
        seconds = run_sql_file(conn, "build_summaries.sql", table, {"controls": compiled.controls},
                               day=day, controls_hash=compiled.hash, **compiled.params)
    log.info("%s: summaries of delivery day %s rebuilt in %.1f s", table, day, seconds)
    return seconds


def delivery_days(conn: Any, table: str) -> list[date]:
    """Every delivery day with a loaded file in the manifest, oldest first."""
    cursor = conn.cursor()
    cursor.execute(sql.macro("partitions.sql", "loaded_days", sql.validate_identifier(table)))
    days = [row[0] for row in cursor.fetchall()]
    cursor.close()
    return days
