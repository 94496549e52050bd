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


# -- 2. nothing dropped without a trace ------------------------------------------------------------
def _ct_path(root: Path, unique: str, account: str = "111122223333") -> Path:
    path = root / f"AWSLogs/{account}/CloudTrail/us-east-1/2017/04/10/{account}_CloudTrail_us-east-1_20170410T0000Z_{unique}.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("method", ["auto", "insert"])
def test_duplicate_keys_fail_the_file_and_odd_values_are_kept(mysql_db, tmp_path: Path, method: str) -> None:
    root = tmp_path / "day"
    event = '{"eventVersion":"1.08","eventTime":"2017-04-10T00:00:01Z","eventName":"A","requestID":"%s"}'
    twice_records = _ct_path(root, "RecordsTwiceAAAA")
    twice_records.write_bytes(gzip.compress(('{"Records":[%s],"Records":[%s]}' % (event % "r1", event % "r2")).encode()))
    twice_key = _ct_path(root, "KeyTwiceBBBBBBBB")
    twice_key.write_bytes(gzip.compress(('{"Records":[%s,{"eventName":"Deleted","eventName":"Harmless"}]}' % (event % "k1")).encode()))
    # Whitespace and a \u003a escape in the text do not hide a duplicate.
    hidden = _ct_path(root, "HiddenTwiceCCCCC")
    hidden.write_bytes(gzip.compress(b'{"Records" : [{"b":"\\"\\u003a", "a":1, "a" :2}]}'))
    good = _ct_path(root, "GoodGoodGoodGood")
    odd = [
        {"eventName": "E0", "readOnly": "TRUE ", "managementEvent": "true", "sessionCredentialFromConsole": 1},
        {"eventName": "E1", "readOnly": True, "managementEvent": False, "userAgent": "x\\ud800y\\udfffz"},
    ]
    text = json.dumps({"Records": odd}).replace("\\\\ud800", "\\ud800").replace("\\\\udfff", "\\udfff")
    good.write_bytes(gzip.compress(text.encode()))

    result = _import(root, mysql_db, "--method", method)

    assert result.returncode == 1, result.stdout + result.stderr
    assert _summary(result)["loaded"] == 1 and _summary(result)["failed"] == 3
    assert f"{twice_records}: duplicate JSON key: the file has the key 'Records' twice" in result.stderr
    assert f"{twice_key}: duplicate JSON key: record 1 has the key 'eventName' twice" in result.stderr
    assert f"{hidden}: duplicate JSON key: record 0 has the key 'a' twice" in result.stderr
    statuses = dict(mysql_db.query("SELECT source, status FROM logs_files"))
    assert statuses == {str(twice_records): "failed", str(twice_key): "failed", str(hidden): "failed", str(good): "loaded"}
    assert mysql_db.query("SELECT DISTINCT sourceKey FROM logs") == [(str(good),)]
    rows = mysql_db.query_dicts(
        "SELECT readOnly, managementEvent, sessionCredentialFromConsole, userAgent, extraFields FROM logs ORDER BY recordIndex"
    )
    assert (rows[0]["readOnly"], rows[0]["managementEvent"], rows[0]["sessionCredentialFromConsole"]) == (1, 1, None)
    assert json.loads(rows[0]["extraFields"]) == {"readOnly": "TRUE ", "managementEvent": "true", "sessionCredentialFromConsole": 1}
    assert (rows[1]["readOnly"], rows[1]["managementEvent"], rows[1]["extraFields"]) == (1, 0, None)
    assert rows[1]["userAgent"] == "x\ufffdy\ufffdz"  # one U+FFFD per lone surrogate
