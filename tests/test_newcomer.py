"""What a newcomer meets first: the command's error messages, the day report's chart, the demo's ending.

The command runs in-process (``cloudtrail_mysql.cli.main``) against the real MySQL and moto S3
servers; messages are read with capsys.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import socket
import sys
import tomllib
import xml.etree.ElementTree as ET
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from cloudtrail_mysql.cli import main
from cloudtrail_mysql.report import render_day_report
from conftest import (
    database_exists,
    make_sample_day,
    mysql_user,
    read_events,
)

REPO = Path(__file__).resolve().parents[1]


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command in-process; it must exit 2 (usage or setup error): its stderr."""
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 2, captured
    return captured.err


def _import(capsys: pytest.CaptureFixture[str], source: Path, url: str, table: str = "logs") -> None:
    assert main(["import", str(source), "--mysql-url", url, "--table", table, "--workers", "1"]) == 0
    capsys.readouterr()


# -- report: missing database or table, wrong table, refusals ----------------------------------------
def test_report_on_a_missing_table_says_which_and_what_to_do(mysql_db, capsys, tmp_path: Path) -> None:
    err = _error(capsys, "report", "--mysql-url", mysql_db.url, "--table", "nope")
    assert "1146" not in err and "doesn't exist" not in err  # not MySQL's raw tuple
    assert f"the table nope does not exist in the database {mysql_db.name}" in err
    assert "cloudtrail-mysql import SOURCE --table nope" in err and "check --table" in err
    assert "no table was loaded into this database yet" in err

    # Once a table is loaded, the message names it as the likely one meant.
    sample = make_sample_day(tmp_path / "day", records=60, accounts=("111122223333",), regions=("us-east-1",))
    _import(capsys, sample.root, mysql_db.url)
    err = _error(capsys, "report", "--mysql-url", mysql_db.url, "--table", "nope")
    assert "tables loaded here: logs" in err
    assert main(["report", "--mysql-url", mysql_db.url]) == 0
    assert str(len(sample.events())) in capsys.readouterr().out


def test_report_on_a_missing_database_says_so_and_creates_nothing(absent_database: str, capsys) -> None:
    name = absent_database
    url = f"mysql://root@127.0.0.1:3306/{name}"
    err = _error(capsys, "report", "--mysql-url", url)
    assert f"the database {name} does not exist at root@127.0.0.1:3306" in err
    assert "cloudtrail-mysql import SOURCE creates it" in err and "--mysql-url" in err
    assert "1049" not in err
    assert not database_exists(name)


def test_report_on_a_table_the_loader_did_not_make(mysql_db, capsys, tmp_path: Path) -> None:
    mysql_db.query("CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40))")
    err = _error(capsys, "report", "--mysql-url", mysql_db.url, "--table", "customers")
    assert "cannot read the table customers" in err
    assert "not a CloudTrail table made by this loader" in err and "check --table" in err
    assert "1054" not in err


def test_report_refused_by_a_missing_privilege_points_to_the_grants(mysql_db, capsys, tmp_path: Path) -> None:
    sample = make_sample_day(tmp_path / "day", records=60, accounts=("111122223333",), regions=("us-east-1",))
    _import(capsys, sample.root, mysql_db.url)
    with mysql_user(mysql_db, "SELECT", table="logs") as user:  # not logs_files, the manifest
        url, password = user.url(), user.password
        code = main(["report", "--mysql-url", url])
        captured = capsys.readouterr()
    assert code == 2
    assert "Events loaded" in captured.out  # the queries it may run, it ran
    assert "cannot read the table logs" in captured.err
    assert "lacks a privilege on the table (see the README's grants)" in captured.err
    assert password not in captured.out + captured.err


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connect_errors_come_with_a_hint(mysql_db, capsys) -> None:
    err = _error(capsys, "report", "--mysql-url", f"mysql://root@127.0.0.1:{_unused_port()}/{mysql_db.name}")
    assert "cannot connect to MySQL" in err and "hint: is a MySQL server running" in err and "host and port" in err

    password = f"not-{secrets.token_hex(6)}"
    err = _error(capsys, "report", "--mysql-url", f"mysql://root:{password}@127.0.0.1:3306/{mysql_db.name}")
    assert "Access denied" in err and "hint: check the user and password in --mysql-url or $CLOUDTRAIL_MYSQL_URL" in err
    assert password not in err


# -- import from S3 without AWS credentials ----------------------------------------------------------
@pytest.fixture
def no_aws_credentials(s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 finds no credentials anywhere: no variables, no files, no instance or container role."""
    import boto3

    for name in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)  # never the real AWS, whatever happens
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a session that has cached no credentials


def test_import_from_s3_without_credentials_explains_aws_credentials(no_aws_credentials, mysql_db, capsys) -> None:
    err = _error(capsys, "import", "s3://some-bucket/AWSLogs/", "--mysql-url", mysql_db.url)
    assert "Unable to locate credentials" in err
    hint = next(line for line in err.splitlines() if "hint:" in line)
    for needed in ("AWS credentials", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "role"):
        assert needed in hint


def test_partial_credentials_get_the_hint_and_are_never_printed(no_aws_credentials, mysql_db, capsys, monkeypatch) -> None:
    key_id = f"AKIA{secrets.token_hex(8).upper()}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)  # the secret key is missing
    err = _error(capsys, "import", "s3://some-bucket/AWSLogs/", "--mysql-url", mysql_db.url)
    assert "AWS_SECRET_ACCESS_KEY" in err and "hint:" in err
    assert key_id not in err


# -- the day report's chart ------------------------------------------------------------------------
def _y_axis(page: str) -> list[tuple[float, int]]:
    """(y, value) of the chart's y-axis labels, top to bottom."""
    svg = ET.fromstring(re.search(r"<svg.*</svg>", page, re.S).group(0))
    labels = [t for t in svg.iter("{http://www.w3.org/2000/svg}text") if t.get("text-anchor") == "end"]
    return sorted((float(t.get("y")), int(t.text.replace(",", ""))) for t in labels)


@pytest.mark.parametrize("peak", [1, 7, 99, 1234, 48_000, 123_457])
def test_chart_has_a_few_round_ticks_from_zero_to_at_least_the_peak(peak: int) -> None:
    hourly = [(hour, "s3.amazonaws.com", peak * (hour + 1) // 24) for hour in range(24)]
    hourly += [(3, "ec2.amazonaws.com", peak // 3)]
    page = render_day_report("2017-04-10", "logs", [], hourly, [], [], [])
    axis = _y_axis(page)
    values = [value for _, value in axis][::-1]  # bottom to top
    assert 3 <= len(values) <= 6 or (peak == 1 and values == [0, 1])
    assert values[0] == 0 and values[-1] >= peak
    steps = {b - a for a, b in pairwise(values)}
    assert len(steps) == 1  # evenly spaced
    step = steps.pop()
    assert values[-1] - step < peak  # the top is the first round value at or above the peak
    leading = int(str(step).rstrip("0") or "0")
    assert leading in (1, 2, 25, 5)  # 1, 2, 2.5 or 5 times a power of ten
    # Labels sit evenly down the axis, and the polyline's peak point lies where the axis puts it.
    ys = [y for y, _ in axis]
    gaps = {round(b - a, 1) for a, b in pairwise(ys)}
    assert max(gaps) - min(gaps) <= 1.0
    line = re.search(r'<polyline[^>]*points="([^"]+)"', page).group(1)
    top_y = min(float(point.split(",")[1]) for point in line.split())
    zero_y, top_label_y = ys[-1] - 4, ys[0] - 4  # labels are drawn 4 px below their value
    assert top_y == pytest.approx(zero_y + (top_label_y - zero_y) * peak / values[-1], abs=1.0)


# -- make demo: its last lines ---------------------------------------------------------------------
def _demo() -> Any:
    spec = importlib.util.spec_from_file_location("demo_script", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_script"] = module
    spec.loader.exec_module(module)
    return module


def test_demo_ends_with_the_report_path_and_both_tables_rows_side_by_side(mysql_db, capsys, tmp_path: Path) -> None:
    demo = _demo()
    sample = make_sample_day(tmp_path / "day", records=300)
    _import(capsys, sample.root, mysql_db.url, "logs")
    _import(capsys, sample.root, mysql_db.url, "logs_from_folder")
    expected = len(sample.events())
    report = tmp_path / "reports" / "logs" / "2017-04-10.html"
    loaded_by = {"logs": "the DAG", "logs_from_folder": "the command"}

    conn = mysql_db.connect()
    try:
        counts = demo.table_counts(conn, ("logs", "logs_from_folder"))
        lines, agree = demo.summary(report, date(2017, 4, 10), counts, loaded_by)
        assert agree
        assert {rows for rows, _ in counts.values()} == {expected}
        assert str(report) in lines[0]
        side_by_side = next(line for line in lines if line.startswith("rows"))
        assert side_by_side.split() == ["rows", str(expected), str(expected)]
        assert next(line for line in lines if line.startswith("table")).split() == ["table", "logs", "logs_from_folder"]
        assert "same event IDs" in lines[-1]

        # One event swapped for another (same row count): the checksum of event IDs tells.
        event_id = read_events(sample.path(sample.log_files[0]))[0]["eventID"]
        conn.cursor().execute("UPDATE logs_from_folder SET eventID = %s WHERE eventID = %s", ("x-" + event_id, event_id))
        conn.commit()
        counts = demo.table_counts(conn, ("logs", "logs_from_folder"))
        lines, agree = demo.summary(report, date(2017, 4, 10), counts, loaded_by)
        assert not agree and "DIFFER" in lines[-1]
        assert next(line for line in lines if line.startswith("rows")).split() == ["rows", str(expected), str(expected)]
    finally:
        conn.close()


def test_demo_progress_names_the_task_airflow_is_at() -> None:
    demo = _demo()
    lines = [
        "[info] [DAG TEST] starting task_id=plan_batches map_index=-1 [airflow.sdk.definitions.dag]\n",
        "[info] Poking callable: <function plan_batches>\n",
        "[info] [DAG TEST] starting task_id=load_batch map_index=2 [airflow.sdk.definitions.dag]\n",
        "[info] running task <TaskInstance: cloudtrail_daily.load_batch map_index=2>\n",
    ]
    assert demo.latest_task([]) is None
    assert demo.latest_task(lines[:2]) == "plan_batches"
    assert demo.latest_task(lines) == "load_batch 2"


# -- make install --------------------------------------------------------------------------------------
def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it() -> None:
    """The table form makes setuptools print a deprecation banner at every install."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    bound = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert int(re.search(r">=\s*(\d+)", bound).group(1)) >= 77
    from importlib.metadata import metadata

    assert metadata("airflow-cloudtrail-mysql")["License-Expression"] == "Apache-2.0"
