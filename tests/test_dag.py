"""The daily DAG and its operator, against a real S3 endpoint (moto over HTTP) and MariaDB.

End-to-end runs go through the real command, ``airflow dags test cloudtrail_daily <day>``, on a
SQLite metadata database of their own.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from copy import deepcopy
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cloudtrail_mysql.sample import day_files
from conftest import airflow_connections

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).parent / "airflow"
DAY = date(2017, 4, 10)


def _put(client: Any, bucket: str, files: Any) -> dict[str, list[dict[str, Any]]]:
    """Upload generated objects; return each log file's records, read back independently."""
    records: dict[str, list[dict[str, Any]]] = {}
    for item in files:
        client.put_object(Bucket=bucket, Key=item.key, Body=item.body)
        if "/CloudTrail/" in item.key:
            records[item.key] = json.loads(gzip.decompress(item.body))["Records"]
    return records


@pytest.fixture
def cloudtrail_bucket(s3_bucket: tuple[Any, str]) -> tuple[Any, str, dict[str, list[dict[str, Any]]]]:
    """Three delivery days of two accounts x two regions, an organization trail, digests and an Insight file."""
    client, bucket = s3_bucket
    records: dict[str, list[dict[str, Any]]] = {}
    for day in (DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)):
        records.update(
            _put(client, bucket, day_files(day, records=240, accounts=("111122223333", "444455556666"),
                                           regions=("us-east-1", "eu-west-1"), files_per_region=3, insight=True))
        )
        records.update(
            _put(client, bucket, day_files(day, records=60, accounts=("777788889999",), regions=("ap-south-1",),
                                           organization_id="o-a1b2c3d4e5", files_per_region=2))
        )
    client.put_object(Bucket=bucket, Key=f"AWSLogs/111122223333/CloudTrail/us-east-1/{DAY:%Y/%m/%d}/README.txt", Body=b"hi")
    return client, bucket, records


def _records_of_day(records: dict[str, list[dict[str, Any]]], day: date) -> list[dict[str, Any]]:
    folder = f"/{day:%Y/%m/%d}/"
    return [r for key, found in records.items() if folder in key for r in found]


def _dags_test(airflow_env: dict[str, str], day: date, extra_env: dict[str, str], *, conf: dict | None = None) -> subprocess.CompletedProcess:
    command = [str(AIRFLOW), "dags", "test", "cloudtrail_daily", day.isoformat()]
    if conf is not None:
        command += ["--conf", json.dumps(conf)]
    env = {**os.environ, **airflow_env, **extra_env}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _query(mysql_db: Any, statement: str, *args: Any) -> list[tuple]:
    conn = mysql_db.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(statement, args or None)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        conn.close()


def _numbers(rows: list[tuple]) -> list[tuple]:
    """SUM() comes back as Decimal: compare as integers."""
    return [tuple(int(v) if isinstance(v, Decimal) else v for v in row) for row in rows]


def _summaries(mysql_db: Any) -> dict[str, list[tuple]]:
    return {
        name: _query(mysql_db, f"SELECT * FROM logs_daily_{name} ORDER BY 1, 2, 3")
        for name in ("events", "errors", "principals", "source_ips")
    }


def _table_counts(mysql_db: Any) -> dict[str, int]:
    return {
        table: _query(mysql_db, f"SELECT COUNT(*) FROM {table}")[0][0]
        for table in ("logs", "logs_files", "logs_daily_events", "logs_daily_errors", "logs_daily_principals", "logs_daily_source_ips")
    }


def _dagbag(folder: Path) -> Any:
    """A DagBag of ``folder``: airflow.dag_processing.dagbag on Airflow 3, airflow.models.dagbag on Airflow 2."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(str(folder))


@pytest.mark.lane
def test_dagbag_has_the_daily_dag_without_import_errors(airflow_env: dict[str, str]) -> None:
    bag = _dagbag(REPO / "dags")
    assert bag.import_errors == {}
    dag = bag.dags["cloudtrail_daily"]
    assert {"cloudtrail", "mysql"} <= set(dag.tags)
    assert dag.default_args["retries"] >= 1
    for name in ("day", "bucket", "key_prefix", "accounts", "regions", "table", "batch_files", "aws_conn_id", "mysql_conn_id"):
        assert name in dag.params
    assert dag.params["aws_conn_id"] == "aws_default" and dag.params["mysql_conn_id"] == "mysql_default"
    tasks = {task.task_id for task in dag.tasks}
    summaries = dag.get_task("build_summaries")
    assert [o.uri for o in summaries.outlets if hasattr(o, "uri")] == ["x-cloudtrail-mysql://summaries/cloudtrail_daily"]
    assert {"plan_batches", "load_batch", "create_indexes", "build_summaries"} <= tasks
    assert dag.doc_md and "Trigger" in dag.doc_md


def test_dag_file_imports_nothing_heavy_at_parse_time(airflow_env: dict[str, str]) -> None:
    """Parsing must not pull in boto3, the MySQL driver or the S3 hook; they are imported in tasks."""
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag', {str(REPO / 'dags' / 'cloudtrail_daily.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "heavy = ['boto3', 'botocore', 'MySQLdb', 'airflow.providers.amazon.aws.hooks.s3', 'airflow.providers.mysql.hooks.mysql']\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **airflow_env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_param_table_refuses_sql(airflow_env: dict[str, str]) -> None:
    dag = _dagbag(REPO / "dags").dags["cloudtrail_daily"]
    params = deepcopy(dag.params)
    params["table"] = "logs_2024"
    params.validate()
    with pytest.raises(Exception, match="table"):
        params["table"] = "logs; DROP TABLE x"
        params.validate()


@pytest.mark.slow
@pytest.mark.lane
def test_daily_run_loads_exactly_the_day_then_reruns_change_nothing(
    airflow_env: dict[str, str], cloudtrail_bucket: Any, mysql_db: Any, s3_server: str
) -> None:
    client, bucket, records = cloudtrail_bucket
    env = {**airflow_connections(s3_server, mysql_db.url), "CLOUDTRAIL_BUCKET": bucket}
    expected = _records_of_day(records, DAY)

    run = _dags_test(airflow_env, DAY, env)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    # Exactly the day's log files, once each: no neighbouring day, digest, Insight or stray file.
    assert _query(mysql_db, "SELECT COUNT(*) FROM logs")[0][0] == len(expected)
    by_source = Counter(row[0] for row in _query(mysql_db, "SELECT eventSource FROM logs"))
    assert by_source == Counter(r.get("eventSource") for r in expected)
    loaded_keys = {row[0].split("/", 3)[3] for row in _query(mysql_db, "SELECT DISTINCT sourceKey FROM logs")}
    assert loaded_keys == {key for key in records if f"/{DAY:%Y/%m/%d}/" in key}
    assert any("/o-a1b2c3d4e5/" in key for key in loaded_keys)
    assert _query(mysql_db, "SELECT COUNT(*) FROM logs_files WHERE status <> 'loaded'")[0][0] == 0

    # Indexes: the tutorial's five plus the timestamp.
    indexed = {row[0] for row in _query(
        mysql_db, "SELECT column_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'logs'"
    )}
    assert {"eventSource", "eventName", "errorCode", "requestID", "eventType", "eventTimestamp"} <= indexed

    # Summaries equal GROUP BY queries on the table, for both event days the files touched.
    event_days = {d for (d,) in _query(mysql_db, "SELECT DISTINCT event_day FROM logs_daily_events")}
    assert event_days == {DAY, DAY - timedelta(days=1)}
    direct = _query(
        mysql_db,
        "SELECT DATE(eventTimestamp), HOUR(eventTimestamp), eventSource, eventName, COUNT(*), SUM(errorCode IS NOT NULL) "
        "FROM logs GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
    summary = _query(mysql_db, "SELECT event_day, event_hour, event_source, event_name, events, errors FROM logs_daily_events ORDER BY 1, 2, 3, 4")
    assert _numbers(summary) == _numbers(direct)
    errors_expected = Counter((r["eventTime"][:10], r.get("eventSource"), r["errorCode"]) for r in expected if r.get("errorCode"))
    errors_found = {(str(d), s, c): n for d, s, c, n in _query(mysql_db, "SELECT event_day, event_source, error_code, events FROM logs_daily_errors")}
    assert errors_found == dict(errors_expected)
    ips_expected = Counter((r["eventTime"][:10], r.get("sourceIPAddress")) for r in expected)
    ips_found = {(str(d), ip): n for d, ip, n in _query(mysql_db, "SELECT event_day, source_ip, events FROM logs_daily_source_ips")}
    assert ips_found == dict(ips_expected)

    # The day report: written by report_day, linked from its log, with the day's figures.
    report = Path(airflow_env["AIRFLOW_HOME"]) / "logs" / "cloudtrail_reports" / "logs" / f"{DAY}.html"
    assert report.is_file(), run.stdout[-3000:]
    assert f"Day report: {report.resolve().as_uri()}" in run.stdout + run.stderr
    page = report.read_text()
    top_error = max(errors_found.items(), key=lambda item: (item[1], item[0]))[0] if errors_found else None
    assert f"<td>{len(loaded_keys)}</td><td>{len(expected)}</td>" in page  # files and rows delivered that day
    assert "<svg" in page and (top_error is None or top_error[2] in page)

    # A second run of the same day changes nothing at all.
    before = (_table_counts(mysql_db), _summaries(mysql_db))
    again = _dags_test(airflow_env, DAY, env)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert (_table_counts(mysql_db), _summaries(mysql_db)) == before

    # The next day's run completes the previous event day: its summary now counts every event of it.
    after = _dags_test(airflow_env, DAY + timedelta(days=1), env)
    assert after.returncode == 0, after.stdout[-4000:] + after.stderr[-4000:]
    both = _records_of_day(records, DAY) + _records_of_day(records, DAY + timedelta(days=1))
    want = sum(1 for r in both if r["eventTime"].startswith(DAY.isoformat()))
    got = _query(mysql_db, "SELECT SUM(events) FROM logs_daily_events WHERE event_day = %s", DAY)[0][0]
    assert int(got) == want


@pytest.mark.slow
def test_params_restrict_accounts_and_regions_and_an_empty_day_is_green(
    airflow_env: dict[str, str], cloudtrail_bucket: Any, mysql_db: Any, s3_server: str
) -> None:
    client, bucket, records = cloudtrail_bucket
    network = [
        {"eventVersion": "1.09", "eventTime": "2017-04-10T00:01:00Z", "eventSource": "kms.amazonaws.com",
         "eventName": "Decrypt", "eventCategory": "NetworkActivity", "vpcEndpointId": "vpce-0123", "requestID": f"net-{i}"}
        for i in range(3)
    ]
    client.put_object(
        Bucket=bucket,
        Key=f"AWSLogs/444455556666/CloudTrail-NetworkActivity/eu-west-1/{DAY:%Y/%m/%d}/"
        f"444455556666_CloudTrail-NetworkActivity_eu-west-1_{DAY:%Y%m%d}T0005Z_NetNetNetNetNet1.json.gz",
        Body=gzip.compress(json.dumps({"Records": network}).encode()),
    )
    env = airflow_connections(s3_server, mysql_db.url)
    conf = {"bucket": bucket, "accounts": ["444455556666"], "regions": ["eu-west-1"], "table": "trail_logs", "batch_files": 1,
            "include_network_activity": True}
    run = _dags_test(airflow_env, DAY, env, conf=conf)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    expected = [
        r for key, found in records.items()
        if f"/{DAY:%Y/%m/%d}/" in key and "/444455556666/CloudTrail/eu-west-1/" in key for r in found
    ]
    assert _query(mysql_db, "SELECT COUNT(*) FROM trail_logs")[0][0] == len(expected) + len(network)
    assert _query(mysql_db, "SELECT requestID FROM trail_logs WHERE eventCategory = 'NetworkActivity' ORDER BY recordIndex") == [
        (r["requestID"],) for r in network
    ]

    # A day with no files at all is a normal, successful run.
    empty = _dags_test(airflow_env, date(2016, 1, 1), env, conf={"bucket": bucket})
    assert empty.returncode == 0, empty.stdout[-4000:] + empty.stderr[-4000:]


@pytest.mark.slow
def test_operator_loads_the_good_files_of_a_batch_and_names_the_bad_one(
    airflow_env: dict[str, str], s3_bucket: tuple[Any, str], mysql_db: Any, s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudtrail_mysql.compat import AirflowException
    from cloudtrail_mysql.operators import CloudTrailToMySqlOperator

    client, bucket = s3_bucket
    records = _put(client, bucket, day_files(DAY, records=90, accounts=("111122223333",), regions=("us-east-1",), files_per_region=3, digests=False))
    bad_key = (f"AWSLogs/111122223333/CloudTrail/us-east-1/{DAY:%Y/%m/%d}/"
               f"111122223333_CloudTrail_us-east-1_{DAY:%Y%m%d}T2359Z_BADBADBADBADBADB.json.gz")
    client.put_object(Bucket=bucket, Key=bad_key, Body=gzip.compress(b'{"Records": [')[:-4])
    for name, value in airflow_connections(s3_server, mysql_db.url).items():
        monkeypatch.setenv(name, value)

    folder = f"AWSLogs/111122223333/CloudTrail/us-east-1/{DAY:%Y/%m/%d}/"
    operator = CloudTrailToMySqlOperator(task_id="load", bucket=bucket, ranges=[{"prefix": folder}])
    with pytest.raises(AirflowException, match="BADBADBADBADBADB"):
        operator.execute({})
    assert _query(mysql_db, "SELECT COUNT(*) FROM logs")[0][0] == sum(len(v) for v in records.values()) == 90
    assert _query(mysql_db, "SELECT status FROM logs_files WHERE source = %s", f"s3://{bucket}/{bad_key}") == [("failed",)]

    # The retry (fixed file in place) loads only what is missing: exact rows, nothing doubled.
    record = {"eventVersion": "1.08", "eventTime": "2017-04-10T23:58:00Z", "eventSource": "s3.amazonaws.com",
              "eventName": "GetObject"}
    client.put_object(Bucket=bucket, Key=bad_key, Body=gzip.compress(json.dumps({"Records": [record]}).encode()))
    summary = operator.execute({})
    assert summary["loaded"] == 1 and summary["already_loaded"] == 3 and summary["failed"] == 0
    assert _query(mysql_db, "SELECT COUNT(*) FROM logs")[0][0] == 91
    assert _query(mysql_db, "SELECT status FROM logs_files WHERE source = %s", f"s3://{bucket}/{bad_key}") == [("loaded",)]


def test_plugin_is_registered_and_its_macro_gives_the_day_prefix(airflow_env: dict[str, str]) -> None:
    result = subprocess.run([str(AIRFLOW), "plugins", "-o", "json"], env={**os.environ, **airflow_env},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    plugins = json.loads(result.stdout.strip().splitlines()[-1])
    ours = [p for p in plugins if p["name"] == "cloudtrail_mysql"]
    assert len(ours) == 1 and any(m.endswith("day_prefix") for m in ours[0]["macros"])

    from cloudtrail_mysql.plugin import day_prefix

    assert day_prefix("111122223333", "us-east-1", "2017-04-10T00:00:00+00:00") == (
        "AWSLogs/111122223333/CloudTrail/us-east-1/2017/04/10/"
    )
    assert day_prefix("444455556666", "eu-west-1", date(2017, 4, 9), key_prefix="/trails/", organization_id="o-a1b2c3d4e5") == (
        "trails/AWSLogs/o-a1b2c3d4e5/444455556666/CloudTrail/eu-west-1/2017/04/09/"
    )


@pytest.mark.slow
def test_retention_through_the_dag_keeps_the_last_days_whole_and_a_dropped_day_is_refused(
    airflow_env: dict[str, str], cloudtrail_bucket: Any, mysql_db: Any, s3_server: str
) -> None:
    client, bucket, records = cloudtrail_bucket
    env = {**airflow_connections(s3_server, mysql_db.url), "CLOUDTRAIL_BUCKET": bucket}
    before, after = DAY - timedelta(days=1), DAY + timedelta(days=1)
    for day in (before, DAY):
        run = _dags_test(airflow_env, day, env)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    run = _dags_test(airflow_env, after, env, conf={"retention_days": 2})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert f"retention dropped 1 delivery day(s), {before}" in run.stdout + run.stderr

    assert [row[0] for row in _query(mysql_db, "SELECT DISTINCT deliveryDay FROM logs ORDER BY 1")] == [DAY, after]
    assert _query(mysql_db, "SELECT COUNT(*) FROM logs")[0][0] == len(_records_of_day(records, DAY)) + len(
        _records_of_day(records, after)
    )
    assert [row[0] for row in _query(mysql_db, "SELECT DISTINCT delivery_day FROM logs_files ORDER BY 1")] == [DAY, after]
    assert _query(mysql_db, "SELECT MIN(event_day) FROM logs_daily_events")[0][0] == DAY
    assert _query(mysql_db, "SELECT delivery_day FROM logs_dropped_days") == [(before,)]

    # The dropped day again: refused at once, nothing of it loaded.
    run = _dags_test(airflow_env, before, env)
    assert run.returncode != 0
    assert f"delivery day {before} was dropped by retention" in run.stdout + run.stderr
    assert _query(mysql_db, "SELECT COUNT(*) FROM logs WHERE deliveryDay = %s", before)[0][0] == 0
