"""OpenLineage: the load task's inputs (the S3 prefixes) and output (the MySQL table), as the Amazon
and MySQL providers name them, read from the events of a real run (the provider's file transport)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cloudtrail_mysql.sample import day_files
from conftest import airflow_connections

AIRFLOW = Path(sys.executable).parent / "airflow"
DAY = date(2017, 5, 16)


def test_the_operator_names_its_inputs_and_output_as_the_providers_do(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow.providers.openlineage")
    from airflow.providers.mysql.assets.mysql import convert_asset_to_openlineage, create_asset

    from cloudtrail_mysql.operators import CloudTrailToMySqlOperator

    monkeypatch.setenv("AIRFLOW_CONN_TRAIL_DB", "mysql://loader:secret@db.example.internal/cloudtrail")
    ranges = [
        {"prefix": "AWSLogs/111122223333/CloudTrail/us-east-1/2017/05/16/", "start_after": None, "last_key": None},
        {"prefix": "AWSLogs/111122223333/CloudTrail/eu-west-1/2017/05/16/", "start_after": None, "last_key": "x"},
        {"prefix": "AWSLogs/111122223333/CloudTrail/eu-west-1/2017/05/16/", "start_after": "x", "last_key": None},
    ]
    operator = CloudTrailToMySqlOperator(task_id="load", bucket="trail-bucket", ranges=ranges, table="trail", mysql_conn_id="trail_db")
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("s3://trail-bucket", "AWSLogs/111122223333/CloudTrail/eu-west-1/2017/05/16/"),
        ("s3://trail-bucket", "AWSLogs/111122223333/CloudTrail/us-east-1/2017/05/16/"),
    ]
    # The same dataset as the MySQL provider's own Asset for that table converts to.
    asset = create_asset(host="db.example.internal", database="cloudtrail", table="trail")
    expected = convert_asset_to_openlineage(asset, None)
    assert [(d.namespace, d.name) for d in lineage.outputs] == [(expected.namespace, expected.name)] == [
        ("mysql://db.example.internal:3306", "cloudtrail.trail")
    ]


@pytest.mark.slow
def test_a_runs_lineage_events_carry_the_load_tasks_inputs_and_output(
    airflow_env: dict[str, str], s3_bucket: tuple[Any, str], mysql_db: Any, s3_server: str, tmp_path: Path
) -> None:
    pytest.importorskip("airflow.providers.openlineage")
    from airflow.providers.mysql.assets.mysql import sanitize_uri

    client, bucket = s3_bucket
    prefixes = set()
    for item in day_files(DAY, records=60, accounts=("111122223333", "444455556666"), regions=("us-east-1",),
                          files_per_region=2, digests=False):
        client.put_object(Bucket=bucket, Key=item.key, Body=item.body)
        prefixes.add(item.key.rsplit("/", 1)[0] + "/")
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ, **airflow_env, **airflow_connections(s3_server, mysql_db.url), "CLOUDTRAIL_BUCKET": bucket,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "cloudtrail-tests",
    }
    run = subprocess.run([str(AIRFLOW), "dags", "test", "cloudtrail_daily", DAY.isoformat()], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]

    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    loads = [e for e in events if e["job"]["name"].endswith("load_batch") and e["eventType"] == "COMPLETE"]
    assert len(loads) == 1, [(e["job"]["name"], e["eventType"]) for e in events]
    assert sorted((d["namespace"], d["name"]) for d in loads[0]["inputs"]) == sorted((f"s3://{bucket}", p) for p in prefixes)
    assert [(d["namespace"], d["name"]) for d in loads[0]["outputs"]] == [("mysql://127.0.0.1:3306", f"{mysql_db.name}.logs")]

    # The table's own Asset, on the URI the MySQL provider gives it, got an event from build_summaries
    # (through the AssetAlias; Airflow 2's `dags test` records no dataset events at all).
    with sqlite3.connect(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db") as db:
        if "asset_event" in {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}:
            uri = f"mysql://127.0.0.1:3306/{mysql_db.name}/logs"
            sanitized = sanitize_uri(urlsplit(uri)).geturl()
            assert sanitized == uri
            events = db.execute(
                "SELECT e.source_task_id FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ?", (uri,)
            ).fetchall()
            assert events == [("build_summaries",)]
