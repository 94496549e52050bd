"""A day's work after its load, for the command (the DAG runs the same include/sql files as SQL tasks).

Indexes where missing, the summaries of the event days a delivery day touched, and retention.
Plain DB-API (mysqlclient); no Airflow.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

from cloudtrail_mysql import sql

__all__ = ["build_summaries", "create_indexes", "delivery_days", "run_sql_file"]

log = logging.getLogger(__name__)


def run_sql_file(conn: Any, name: str, table: str, **values: Any) -> float:
    """Run include/sql/<name> for ``table`` as the DAG's SQL task does (values bound by name); seconds."""
    started = time.monotonic()
    cursor = conn.cursor()
    for statement in sql.split_statements(sql.render(name, table=sql.validate_identifier(table))):
        cursor.execute(statement, values or None)
        if cursor.description:
            cursor.fetchall()
    cursor.close()
    conn.commit()
    return time.monotonic() - started


def create_indexes(conn: Any, table: str) -> float:
    """The tutorial's indexes, where missing (create_indexes.sql); seconds."""
    return run_sql_file(conn, "create_indexes.sql", table)


def build_summaries(conn: Any, table: str, day: date) -> float:
    """Rebuild the summaries of every event day that the files delivered on ``day`` hold; seconds."""
    seconds = run_sql_file(conn, "build_summaries.sql", table, day=day)
    log.info("%s: summaries of delivery day %s rebuilt in %.1f s", table, day, seconds)
    return seconds


def delivery_days(conn: Any, table: str) -> list[date]:
    """Every delivery day with a loaded file in the manifest, oldest first."""
    cursor = conn.cursor()
    cursor.execute(sql.macro("partitions.sql", "loaded_days", sql.validate_identifier(table)))
    days = [row[0] for row in cursor.fetchall()]
    cursor.close()
    return days
