"""The package is an Airflow provider: listed by `airflow providers list`, its extra link known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AIRFLOW = Path(sys.executable).parent / "airflow"


def _airflow(airflow_env: dict[str, str], *args: str) -> str:
    result = subprocess.run([str(AIRFLOW), *args], env={**os.environ, **airflow_env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_airflow_providers_list_shows_the_package_at_its_version(airflow_env: dict[str, str]) -> None:
    from cloudtrail_mysql import __version__

    listed = json.loads(_airflow(airflow_env, "providers", "list", "-o", "json").strip().splitlines()[-1])
    ours = [p for p in listed if p["package_name"] == "airflow-cloudtrail-mysql"]
    assert len(ours) == 1, [p["package_name"] for p in listed]
    assert ours[0]["version"] == __version__
    assert "CloudTrail" in ours[0]["description"] and "MySQL" in ours[0]["description"]


def test_the_providers_extra_link_is_registered(airflow_env: dict[str, str]) -> None:
    links = json.loads(_airflow(airflow_env, "providers", "links", "-o", "json").strip().splitlines()[-1])
    assert "cloudtrail_mysql.operators.DayReportLink" in {link["extra_link_class_name"] for link in links}


def test_every_param_is_described_and_the_advanced_ones_are_in_their_section(airflow_env: dict[str, str]) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    dag = DagBag(str(Path(__file__).resolve().parents[1] / "dags")).dags["cloudtrail_daily"]
    params = {name: dag.params.get_param(name) for name in dag.params}
    schemas = {name: param.schema for name, param in params.items()}
    assert {name for name, param in params.items() if not (param.description or "").strip()} == set()
    assert {name for name, schema in schemas.items() if not schema.get("title")} == set()
    advanced = {name for name, schema in schemas.items() if schema.get("section") == "Advanced"}
    assert advanced == {"batch_files", "batch_megabytes", "parallel_files", "include_insight", "include_network_activity",
                        "delivery_delay_minutes", "controls_file", "aws_conn_id", "mysql_conn_id"}
    # What a run is about stays at the top of the form.
    assert not advanced & {"day", "bucket", "key_prefix", "accounts", "regions", "table", "report_location", "retention_days"}
