"""The day report where people are: S3 (the moto server) or any ObjectStoragePath location, its
address in the task log, and the task's "Day report" button (an XCom-backed extra link)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cloudtrail_mysql.sample import day_files
from conftest import airflow_connections

AIRFLOW = Path(sys.executable).parent / "airflow"
DAY = date(2017, 5, 9)


@pytest.mark.slow
def test_the_day_report_goes_to_s3_and_its_link_is_in_the_log_and_on_the_task(
    airflow_env: dict[str, str], s3_bucket: tuple[Any, str], mysql_db: Any, s3_server: str
) -> None:
    import gzip

    client, bucket = s3_bucket
    events = 0
    for item in day_files(DAY, records=80, accounts=("111122223333",), regions=("us-east-1",), files_per_region=2, digests=False):
        client.put_object(Bucket=bucket, Key=item.key, Body=item.body)
        events += len(json.loads(gzip.decompress(item.body))["Records"])
    reports = f"{bucket}-reports"  # not the trail's bucket
    client.create_bucket(Bucket=reports)
    try:
        env = {**os.environ, **airflow_env, **airflow_connections(s3_server, mysql_db.url), "CLOUDTRAIL_BUCKET": bucket}
        conf = {"report_location": f"s3://{reports}/cloudtrail/daily/"}
        run = subprocess.run([str(AIRFLOW), "dags", "test", "cloudtrail_daily", DAY.isoformat(), "--conf", json.dumps(conf)],
                             env=env, capture_output=True, text=True, timeout=600)
        text = run.stdout + run.stderr
        assert run.returncode == 0, text[-5000:]

        key = f"cloudtrail/daily/logs/{DAY}.html"
        found = client.get_object(Bucket=reports, Key=key)
        page = found["Body"].read().decode("utf-8")
        assert found["ContentType"].startswith("text/html")
        assert f"CloudTrail events of {DAY}" in page and f"<td>loaded</td><td>2</td><td>{events}</td>" in page
        console = f"https://console.aws.amazon.com/s3/object/{reports}?prefix=cloudtrail/daily/logs/{DAY}.html"
        assert f"Day report: s3://{reports}/{key}" in text
        assert f"Day report, to open: {console}" in text
        # Nothing went to the trail's bucket, nor to the local folder.
        assert not client.list_objects_v2(Bucket=bucket, Prefix="cloudtrail/").get("KeyCount")
        assert not (Path(airflow_env["AIRFLOW_HOME"]) / "logs" / "cloudtrail_reports" / "logs" / f"{DAY}.html").exists()

        # The task's button: Airflow 3 stores each extra link's URL as an XCom of the task.
        db = sqlite3.connect(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
        try:
            links = db.execute(
                "SELECT x.key, x.value FROM xcom x JOIN dag_run r ON r.id = x.dag_run_id "
                "WHERE x.dag_id = 'cloudtrail_daily' AND x.task_id = 'report_day' AND r.logical_date LIKE ?",
                (f"{DAY.isoformat()}%",),
            ).fetchall()
        finally:
            db.close()
        values = {k: json.loads(v) for k, v in links}
        assert values["_link_DayReportLink"] == console and values["day_report_url"] == console
    finally:
        for item in client.list_objects_v2(Bucket=reports).get("Contents", ()):
            client.delete_object(Bucket=reports, Key=item["Key"])
        client.delete_bucket(Bucket=reports)


def test_the_day_report_goes_to_any_object_storage_location(
    mysql_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file:// URL through ObjectStoragePath (the same path as gs://, abfs://, ...)."""
    from cloudtrail_mysql.operators import DAY_REPORT_XCOM_KEY, CloudTrailDayReportOperator
    from cloudtrail_mysql.writer import MySqlWriter

    conn = mysql_db.connect()
    try:
        MySqlWriter(conn, "trail").ensure_schema()
    finally:
        conn.close()
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_DEFAULT", mysql_db.url)
    pushed: dict[str, Any] = {}

    class TaskInstance:
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    operator = CloudTrailDayReportOperator(task_id="report", day=str(DAY), table="trail", report_location=f"file://{tmp_path}/reports/")
    result = operator.execute({"ti": TaskInstance()})  # type: ignore[arg-type]
    written = tmp_path / "reports" / "trail" / f"{DAY}.html"
    assert f"CloudTrail events of {DAY} (table trail)" in written.read_text(encoding="utf-8")
    assert result["files"] == {} and result["report"].endswith(f"reports/trail/{DAY}.html")
    assert pushed == {DAY_REPORT_XCOM_KEY: result["url"]}
