"""Integrity of the audit log: nothing replaced or dropped silently, a dead worker never hangs the
command, the DAG refuses at once what no retry can fix, and derived table names are refused.

Against the real MariaDB and the local S3 (moto) server; hostile files are made here.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import CLI, database_exists, drop_database, make_sample_day, mysql_url, read_events, run_cli, unique_database_name, upload_files

WORKERS = ("--workers", "2")


def _import(source: Any, db: Any, *extra: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("import", source, "--mysql-url", db.url, *WORKERS, *extra, env=env)


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    match = re.search(r"(\d+) files loaded, (\d+) already loaded, (\d+) skipped, (\d+) failed; (\d+) rows", result.stdout)
    assert match, f"no summary line:\n{result.stdout}\n{result.stderr}"
    return dict(zip(("loaded", "already_loaded", "skipped", "failed", "rows"), map(int, match.groups())))


def _gz(document: Any) -> bytes:
    return gzip.compress(json.dumps(document).encode())


# -- 6. names the loader derives are refused as --table -----------------------------------------
@pytest.mark.parametrize("table", ["logs_files", "logs_daily_events", "logs_daily_anything", "logs_findings", "logs_dropped_days", "x__migrating"])
def test_a_derived_table_name_is_refused_before_anything_is_created(table: str, mysql_server, sample_day) -> None:
    name = unique_database_name()
    try:
        result = run_cli("import", sample_day.root, "--mysql-url", mysql_url(name), "--table", table)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"invalid table name {table!r}" in result.stderr and "the loader's own tables" in result.stderr
        assert not database_exists(name)
    finally:
        drop_database(name)


def test_the_table_param_of_the_dag_refuses_derived_names() -> None:
    from cloudtrail_mysql.sql import TABLE_NAME_PATTERN

    for good in ("logs", "trail_logs", "logs_2024", "files", "my_files_x"):
        assert re.search(TABLE_NAME_PATTERN, good), good
    for bad in ("logs_files", "logs_daily_errors", "org_findings", "logs_dropped_days", "logs; DROP TABLE x"):
        assert not re.search(TABLE_NAME_PATTERN, bad), bad
