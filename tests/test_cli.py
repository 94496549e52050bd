"""End to end through the ``cloudtrail-mysql`` command, against MariaDB and a moto S3 server: in-process
(``run_main``) where a separate process is not the point, the installed script (``run_cli``) for its
exit codes and its entry point.

Expected values are computed from the generated files with gzip + json (standard library) only.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import shutil
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    SampleDay,
    database_exists,
    make_sample_day,
    mysql_url,
    read_events,
    run_cli,
    upload_files,
)
from conftest import import_summary as _summary

WORKERS = ("--workers", "2")


def _import(run: Callable[..., Any], source: Any, db: Any, *extra: Any, env: dict[str, str] | None = None) -> Any:
    """``import SOURCE`` into ``db`` with ``run``: ``run_main`` (in-process) or ``run_cli`` (the installed script)."""
    return run("import", source, "--mysql-url", db.url, *WORKERS, *extra, env=env)


def _ok(result) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def _request_ids(db) -> Counter:
    return Counter(row[0] for row in db.query("SELECT requestID FROM logs"))


def _manifest(db) -> dict[str, tuple[str, int]]:
    return {name: (status, rows) for name, status, rows in db.query("SELECT file_name, status, row_count FROM logs_files")}


def _dump(db) -> list[tuple[Any, ...]]:
    return db.query("SELECT * FROM logs ORDER BY sourceFileId, recordIndex")


# -- the installed script ---------------------------------------------------------------------------
def test_installed_script_prints_the_package_version() -> None:
    """The version is written once, in cloudtrail_mysql/__init__.py: the installed package's metadata
    (pyproject.toml's dynamic version) and the script's --version both come from there."""
    from importlib.metadata import version

    from cloudtrail_mysql import __version__

    assert version("airflow-cloudtrail-mysql") == __version__
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cloudtrail-mysql {__version__}"


# -- the four SOURCE forms ------------------------------------------------------------------------
def test_import_single_file(run_main, mysql_db, sample_day: SampleDay) -> None:
    item = sample_day.log_files[3]
    path = sample_day.path(item)
    expected = read_events(path)
    assert expected

    result = _import(run_main, path, mysql_db)

    _ok(result)
    assert mysql_db.count() == len(expected)
    assert _request_ids(mysql_db) == Counter(e["requestID"] for e in expected)
    assert _summary(result) == {"loaded": 1, "already_loaded": 0, "skipped": 0, "failed": 0, "rows": len(expected)}
    assert _manifest(mysql_db) == {path.name: ("loaded", len(expected))}
    # the rows keep the file's order and say where they came from
    rows = mysql_db.query("SELECT recordIndex, eventID, requestID, sourceKey FROM logs ORDER BY recordIndex")
    assert [r[2] for r in rows] == [e["requestID"] for e in expected]
    assert [r[0] for r in rows] == list(range(len(expected)))
    assert {r[3] for r in rows} == {str(path.resolve())}


def test_import_folder(run_main, mysql_db, sample_day: SampleDay) -> None:
    expected = sample_day.events()
    assert len(sample_day.log_files) > 10 and sample_day.digest_files

    result = _import(run_main, sample_day.root, mysql_db)

    _ok(result)
    assert mysql_db.count() == len(expected) == 600
    assert _request_ids(mysql_db) == Counter(e["requestID"] for e in expected)
    assert _summary(result) == {
        "loaded": len(sample_day.log_files),
        "already_loaded": 0,
        "skipped": len(sample_day.digest_files),
        "failed": 0,
        "rows": len(expected),
    }
    manifest = _manifest(mysql_db)
    assert manifest == {
        Path(f.key).name: ("loaded", len(read_events(sample_day.path(f)))) for f in sample_day.log_files
    }


def test_import_s3_single_key(run_main, mysql_db, sample_day: SampleDay, s3_bucket, s3_env) -> None:
    client, bucket = s3_bucket
    keys = upload_files(client, bucket, sample_day.files)
    item = sample_day.log_files[5]
    key = item.key
    assert key in keys
    # A second loadable log file whose key starts with the first one's key: must not be picked up.
    decoy = f"{key}.d/{Path(sample_day.log_files[6].key).name}"
    client.put_object(Bucket=bucket, Key=decoy, Body=sample_day.log_files[6].body)
    expected = read_events(sample_day.path(item))

    result = _import(run_main, f"s3://{bucket}/{key}", mysql_db, env=s3_env)

    _ok(result)
    assert "importing 1 files" in result.stderr
    assert mysql_db.count() == len(expected)
    assert _request_ids(mysql_db) == Counter(e["requestID"] for e in expected)
    assert _manifest(mysql_db) == {Path(key).name: ("loaded", len(expected))}
    assert {r[0] for r in mysql_db.query("SELECT DISTINCT sourceKey FROM logs")} == {f"s3://{bucket}/{key}"}


def test_import_s3_prefix(run_main, mysql_db, tmp_path: Path, s3_bucket, s3_env) -> None:
    client, bucket = s3_bucket
    day = make_sample_day(tmp_path / "day", records=500)
    upload_files(client, bucket, day.files, prefix="trail-prefix")
    account = "111122223333"
    mine = [f for f in day.log_files if f"/{account}/" in f.key]
    others = [f for f in day.log_files if f"/{account}/" not in f.key]
    assert mine and others
    expected = day.events(mine)

    result = _import(run_main, f"s3://{bucket}/trail-prefix/AWSLogs/{account}/", mysql_db, env=s3_env)

    _ok(result)
    assert mysql_db.count() == len(expected)
    assert _request_ids(mysql_db) == Counter(e["requestID"] for e in expected)
    assert {r[0] for r in mysql_db.query("SELECT DISTINCT recipientAccountId FROM logs")} == {account}
    summary = _summary(result)
    assert summary["loaded"] == len(mine)
    assert summary["skipped"] == len([f for f in day.digest_files if f"/{account}/" in f.key])
    assert summary["failed"] == 0
    assert set(_manifest(mysql_db)) == {Path(f.key).name for f in mine}

    # the whole bucket, organisation of keys aside: the other account's files are added, nothing twice
    result = _import(run_main, f"s3://{bucket}/", mysql_db, env=s3_env)
    _ok(result)
    assert mysql_db.count() == len(day.events())
    assert _request_ids(mysql_db) == Counter(e["requestID"] for e in day.events())
    assert _summary(result)["already_loaded"] == len(mine)
    assert _summary(result)["loaded"] == len(others)


def test_import_s3_prefix_with_url_characters(run_main, mysql_db, sample_day: SampleDay, s3_bucket, s3_env) -> None:
    """'#', '?', '%' and spaces are characters of an S3 key, not parts of a URL."""
    client, bucket = s3_bucket
    prefix = "odd prefix #1 ?x=%41 \u00e9"
    keys = upload_files(client, bucket, sample_day.log_files, prefix=prefix)

    result = _import(run_main, f"s3://{bucket}/{prefix}/", mysql_db, env=s3_env)

    _ok(result)
    assert _summary(result)["loaded"] == len(sample_day.log_files)
    assert mysql_db.count() == len(sample_day.events())
    assert {r[0] for r in mysql_db.query("SELECT DISTINCT sourceKey FROM logs")} == {f"s3://{bucket}/{key}" for key in keys}


def test_import_org_trail_folder(run_main, mysql_db, tmp_path: Path) -> None:
    day = make_sample_day(tmp_path / "org", records=200, organization_id="o-abc123def4")
    assert all("/o-abc123def4/" in f"/{f.key}" for f in day.files)
    expected = day.events()

    result = _import(run_main, day.root, mysql_db)

    _ok(result)
    assert mysql_db.count() == len(expected) == 200
    assert _summary(result)["skipped"] == len(day.digest_files)


# -- the tutorial's questions ---------------------------------------------------------------------
EMR = "elasticmapreduce.amazonaws.com"


def _grouped(db, statement: str) -> dict[Any, int]:
    rows = db.query(statement)
    grouped = {key: int(count) for count, key in rows}
    assert len(grouped) == len(rows), "GROUP BY returned a key twice"
    return grouped


def test_tutorial_queries(run_main, mysql_db, tmp_path: Path) -> None:
    day = make_sample_day(tmp_path / "day", records=800, seed=11)
    events = day.events()
    emr = [e for e in events if e.get("eventSource") == EMR]
    assert emr, "the generated day has no EMR events; choose another seed"
    _ok(_import(run_main, day.root, mysql_db))

    assert mysql_db.query("SELECT COUNT(*) FROM logs") == [(len(events),)]

    assert _grouped(mysql_db, "SELECT COUNT(*), eventSource FROM logs GROUP BY eventSource") == dict(
        Counter(e.get("eventSource") for e in events)
    )

    assert _grouped(
        mysql_db,
        "SELECT count(*), eventName FROM logs WHERE eventSource='elasticmapreduce.amazonaws.com' GROUP BY eventName",
    ) == dict(Counter(e["eventName"] for e in emr))

    per_hour = Counter(e["eventTime"][:13] for e in emr)
    assert _grouped(
        mysql_db,
        "SELECT count(*), substring(eventTime, 1, 13) as time FROM logs "
        "WHERE eventSource='elasticmapreduce.amazonaws.com' GROUP BY time",
    ) == dict(per_hour)

    hour = max(sorted(per_hour), key=lambda h: per_hour[h])
    per_minute = Counter(e["eventTime"][:16] for e in emr if e["eventTime"][:13] == hour)
    assert per_minute
    assert _grouped(
        mysql_db,
        "SELECT count(*), SUBSTRING(eventTime, 1, 16) as time FROM logs "
        "WHERE eventSource='elasticmapreduce.amazonaws.com' AND SUBSTRING(eventTime, 1, 13)='" + hour + "' "
        "GROUP BY time",
    ) == dict(per_minute)

    minute = max(sorted(per_minute), key=lambda m: per_minute[m])
    per_second = Counter(e["eventTime"] for e in emr if e["eventTime"][:16] == minute)
    assert per_second
    assert _grouped(
        mysql_db,
        "SELECT count(*), eventTime FROM logs "
        "WHERE eventSource='elasticmapreduce.amazonaws.com' AND SUBSTRING(eventTime, 1, 16)='" + minute + "' "
        "GROUP BY eventTime",
    ) == dict(per_second)


def test_group_by_keeps_case_apart(run_main, mysql_db, tmp_path: Path) -> None:
    """The exact collation: 'alice' and 'Alice', 'x' and 'x ' are different groups, as in the JSON."""
    names = ["ListTables", "listtables", "ListTables ", "ListTables", "LİstTables"]
    records = [{"eventSource": "dynamodb.amazonaws.com", "eventName": n, "eventTime": "2017-04-10T01:02:03Z"} for n in names]
    path = tmp_path / "hand-made.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    _ok(_import(run_main, path, mysql_db))
    assert _grouped(mysql_db, "SELECT COUNT(*), eventName FROM logs GROUP BY eventName") == dict(Counter(names))


# -- loading again --------------------------------------------------------------------------------
def test_import_twice_is_idempotent(run_main, mysql_db, sample_day: SampleDay) -> None:
    first = _import(run_main, sample_day.root, mysql_db)
    _ok(first)
    before = _dump(mysql_db)
    manifest_before = _manifest(mysql_db)
    assert len(before) == len(sample_day.events())

    second = _import(run_main, sample_day.root, mysql_db)

    _ok(second)
    assert _summary(second) == {
        "loaded": 0,
        "already_loaded": len(sample_day.log_files),
        "skipped": len(sample_day.digest_files),
        "failed": 0,
        "rows": 0,
    }
    assert _dump(mysql_db) == before
    assert _manifest(mysql_db) == manifest_before


def test_changed_file_replaces_its_rows_on_the_next_import(run_main, mysql_db, sample_day: SampleDay) -> None:
    """A file rewritten in place (same name, new content) is loaded again and its earlier rows
    go; the others stay as they are."""
    _ok(_import(run_main, sample_day.root, mysql_db))
    changed = sample_day.path(sample_day.log_files[0])
    records = read_events(changed)
    kept = [dict(record, eventName=record["eventName"][::-1]) for record in records[:-1]]
    changed.write_bytes(gzip.compress(json.dumps({"Records": kept}).encode()))

    result = _import(run_main, sample_day.root, mysql_db)

    _ok(result)
    assert _summary(result)["loaded"] == 1
    assert _summary(result)["already_loaded"] == len(sample_day.log_files) - 1
    assert mysql_db.count() == len(sample_day.events())
    assert mysql_db.query("SELECT eventName FROM logs WHERE sourceKey = %s ORDER BY recordIndex", str(changed)) == [
        (record["eventName"],) for record in kept
    ]


def test_two_copies_of_a_new_file_in_one_import_are_loaded_once(run_main, mysql_db, sample_day: SampleDay, tmp_path: Path) -> None:
    """New files are loaded without a manifest check each; two copies of one file, loaded at the
    same time by two workers, still end up in the table once (claiming the manifest row settles it)."""
    root = tmp_path / "both"
    shutil.copytree(sample_day.root, root / "a")
    shutil.copytree(sample_day.root, root / "b")

    result = _import(run_main, root, mysql_db)

    _ok(result)
    summary = _summary(result)
    assert summary["loaded"] == summary["already_loaded"] == len(sample_day.log_files)
    assert summary["rows"] == mysql_db.count() == len(sample_day.events())
    assert mysql_db.query("SELECT COUNT(*) FROM logs_files") == [(len(sample_day.log_files),)]


@pytest.mark.parametrize("first", ["folder", "s3"])
def test_folder_and_s3_copies_are_loaded_once(run_main, first: str, mysql_db, sample_day: SampleDay, s3_bucket, s3_env) -> None:
    client, bucket = s3_bucket
    upload_files(client, bucket, sample_day.files)
    sources = {"folder": (sample_day.root, None), "s3": (f"s3://{bucket}/AWSLogs/", s3_env)}
    second = "s3" if first == "folder" else "folder"
    expected = sample_day.events()

    source, env = sources[first]
    _ok(_import(run_main, source, mysql_db, env=env))
    assert mysql_db.count() == len(expected)
    before = _dump(mysql_db)

    source, env = sources[second]
    result = _import(run_main, source, mysql_db, env=env)

    _ok(result)
    summary = _summary(result)
    assert summary["loaded"] == 0
    assert summary["already_loaded"] == len(sample_day.log_files)
    assert _dump(mysql_db) == before
    assert mysql_db.query("SELECT COUNT(*) FROM logs_files") == [(len(sample_day.log_files),)]


# -- failures -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda body: body[: len(body) // 2], id="truncated-gzip"),
        pytest.param(lambda body: gzip.compress(b'{"Records": [{"eventName": "x"},'), id="cut-json"),
        pytest.param(lambda body: b"\x1f\x8b" + bytes(range(256)) * 3, id="garbage"),
    ],
)
def test_corrupt_file_among_good_ones(run_main, corrupt, mysql_db, sample_day: SampleDay) -> None:
    bad = sample_day.log_files[4]
    bad_path = sample_day.path(bad)
    good_bytes = bad_path.read_bytes()
    bad_path.write_bytes(corrupt(good_bytes))
    good_files = [f for f in sample_day.log_files if f is not bad]
    expected_without = [e for f in good_files for e in read_events(sample_day.path(f))]

    result = _import(run_main, sample_day.root, mysql_db)

    assert result.returncode == 1, result.stdout + result.stderr
    assert str(bad_path.resolve()) in result.stderr
    assert "FAILED" in result.stderr
    # only the bad file is named as failed
    for other in good_files:
        assert Path(other.key).name not in result.stderr
    summary = _summary(result)
    assert summary["failed"] == 1
    assert summary["loaded"] == len(good_files)
    assert mysql_db.count() == len(expected_without)
    assert _request_ids(mysql_db) == Counter(e["requestID"] for e in expected_without)
    rows = mysql_db.query("SELECT status, error, row_count FROM logs_files WHERE file_name = %s", bad_path.name)
    assert len(rows) == 1
    status, error, row_count = rows[0]
    assert status == "failed"
    assert bad_path.name in error
    assert row_count == 0
    assert mysql_db.query("SELECT COUNT(*) FROM logs WHERE sourceKey = %s", str(bad_path.resolve())) == [(0,)]

    # the file is fixed; loading again adds exactly its rows
    bad_path.write_bytes(good_bytes)
    again = _import(run_main, sample_day.root, mysql_db)

    _ok(again)
    assert _summary(again)["loaded"] == 1
    assert _summary(again)["already_loaded"] == len(good_files)
    expected = sample_day.events()
    assert mysql_db.count() == len(expected)
    assert _request_ids(mysql_db) == Counter(e["requestID"] for e in expected)
    assert mysql_db.query("SELECT status FROM logs_files WHERE file_name = %s", bad_path.name) == [("loaded",)]
    assert {status for status, _ in _manifest(mysql_db).values()} == {"loaded"}


def test_corrupt_single_file_exit_code_and_message(mysql_db, tmp_path: Path) -> None:
    path = tmp_path / "111122223333_CloudTrail_us-east-1_20170410T0005Z_BrokenBrokenBrok.json.gz"
    path.write_bytes(b"not gzip and not json")
    result = _import(run_cli, path, mysql_db)
    assert result.returncode == 1
    assert path.name in result.stderr
    assert mysql_db.count() == 0
    assert mysql_db.query("SELECT status FROM logs_files") == [("failed",)]


# -- kinds of files -------------------------------------------------------------------------------
def test_digest_files_are_skipped(run_main, mysql_db, sample_day: SampleDay, tmp_path: Path) -> None:
    digest = sample_day.path(sample_day.digest_files[0])
    result = _import(run_main, digest, mysql_db)
    _ok(result)
    assert _summary(result) == {"loaded": 0, "already_loaded": 0, "skipped": 1, "failed": 0, "rows": 0}

    # A digest that does not look like one by its name is recognised by its content, and skipped.
    renamed = tmp_path / "renamed-digest.json.gz"
    renamed.write_bytes(digest.read_bytes())
    assert "digestEndTime" in json.loads(gzip.decompress(renamed.read_bytes()))
    result = _import(run_main, renamed, mysql_db)
    _ok(result)
    assert _summary(result)["skipped"] == 1
    assert _summary(result)["failed"] == 0
    assert mysql_db.count() == 0
    assert mysql_db.query("SELECT COUNT(*) FROM logs_files WHERE status <> 'loaded'") == [(0,)]


def test_insight_files_skipped_by_default_loaded_on_request(run_main, mysql_db, tmp_path: Path) -> None:
    day = make_sample_day(tmp_path / "day", records=300, insight=True)
    assert len(day.insight_files) == 1
    insight_events = day.events(day.insight_files)
    log_events = day.events()

    result = _import(run_main, day.root, mysql_db)
    _ok(result)
    assert _summary(result)["skipped"] == len(day.digest_files) + 1
    assert mysql_db.count() == len(log_events)
    assert mysql_db.query("SELECT COUNT(*) FROM logs WHERE eventType = 'AwsCloudTrailInsight'") == [(0,)]

    result = _import(run_main, day.root, mysql_db, "--include-insight")
    _ok(result)
    summary = _summary(result)
    assert summary["loaded"] == 1
    assert summary["already_loaded"] == len(day.log_files)
    assert summary["skipped"] == len(day.digest_files)
    assert mysql_db.count() == len(log_events) + len(insight_events)
    rows = mysql_db.query("SELECT insightDetails, eventCategory FROM logs WHERE eventType = 'AwsCloudTrailInsight'")
    assert [(json.loads(details), category) for details, category in rows] == [
        (e["insightDetails"], e["eventCategory"]) for e in insight_events
    ]


def test_network_activity_files_skipped_by_default_loaded_on_request(run_main, mysql_db, tmp_path: Path) -> None:
    folder = tmp_path / "AWSLogs/111122223333/CloudTrail-NetworkActivity/us-east-1/2017/04/10"
    folder.mkdir(parents=True)
    path = folder / "111122223333_CloudTrail-NetworkActivity_us-east-1_20170410T0005Z_NetNetNetNetNet1.json.gz"
    records = [
        {"eventVersion": "1.09", "eventTime": "2017-04-10T00:01:00Z", "eventSource": "kms.amazonaws.com",
         "eventName": "Decrypt", "eventCategory": "NetworkActivity", "vpcEndpointId": "vpce-0123", "requestID": str(i)}
        for i in range(3)
    ]
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))

    result = _import(run_main, tmp_path / "AWSLogs", mysql_db)
    _ok(result)
    assert _summary(result)["skipped"] == 1
    assert mysql_db.count() == 0

    result = _import(run_main, tmp_path / "AWSLogs", mysql_db, "--include-network-activity")
    _ok(result)
    assert _summary(result)["loaded"] == 1
    assert mysql_db.query("SELECT requestID, vpcEndpointId FROM logs ORDER BY recordIndex") == [
        (r["requestID"], r["vpcEndpointId"]) for r in records
    ]


def test_non_cloudtrail_files_in_folder_are_skipped(run_main, mysql_db, sample_day: SampleDay) -> None:
    (sample_day.root / "README.txt").write_text("not a log")
    (sample_day.root / "AWSLogs" / "notes.log.gz").write_bytes(gzip.compress(b"x"))
    result = _import(run_main, sample_day.root, mysql_db)
    _ok(result)
    assert _summary(result)["skipped"] == len(sample_day.digest_files) + 2
    assert mysql_db.count() == len(sample_day.events())


def test_shared_log_archive_bucket_loads_only_cloudtrail_events(run_main, mysql_db, sample_day: SampleDay) -> None:
    """A log-archive bucket also holds AWS Config's files, aggregated data events and kinds yet to
    come: JSON that is no CloudTrail log. Skipped by path, none of it fails the import."""
    account = sample_day.root / "AWSLogs" / "111122223333"
    config = account / "Config/us-east-1/2017/4/10/ConfigSnapshot"
    config.mkdir(parents=True)
    (config / "111122223333_Config_us-east-1_ConfigSnapshot_20170410T000000Z_a1b2c3.json.gz").write_bytes(
        gzip.compress(json.dumps({"fileVersion": "1.0", "configSnapshotId": "a1b2c3", "configurationItems": []}).encode())
    )
    aggregated = account / "CloudTrail-Aggregated/us-east-1/2017/04/10"
    aggregated.mkdir(parents=True)
    summary = {
        "eventVersion": "1.0", "accountId": "111122223333", "eventId": "0b5e7c9e-0000-4000-8000-000000000001",
        "eventCategory": "Aggregated", "eventType": "AwsAggregatedEvent", "awsRegion": "us-east-1",
        "eventSource": "s3.amazonaws.com",
        "timeWindow": {"windowStart": "2017-04-10T00:00:00Z", "windowEnd": "2017-04-10T00:05:00Z", "windowSize": "PT5M"},
        "summary": {"primaryDimension": {"dimension": "eventName", "statistics": [{"name": "GetObject", "value": 1000}]}},
    }
    (aggregated / "111122223333_CloudTrail-Aggregated_us-east-1_20170410T0005Z_AgGrEgAtEd123456.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": [summary]}).encode())
    )
    future = account / "CloudTrail-SomethingNew/us-east-1/2017/04/10"
    future.mkdir(parents=True)
    (future / "x.json.gz").write_bytes(gzip.compress(b'{"Records": [{"eventName": "not an event"}]}'))

    result = _import(run_main, sample_day.root, mysql_db)
    _ok(result)
    summary_counts = _summary(result)
    assert summary_counts["failed"] == 0
    assert summary_counts["skipped"] == len(sample_day.digest_files) + 3
    assert mysql_db.count() == len(sample_day.events())
    assert mysql_db.query("SELECT COUNT(*) FROM logs WHERE eventType = 'AwsAggregatedEvent' OR eventName = 'not an event'") == [(0,)]
    assert mysql_db.query("SELECT COUNT(*) FROM logs_files WHERE status <> 'loaded'") == [(0,)]


# -- values ---------------------------------------------------------------------------------------
def test_every_json_type_loads_and_reads_back(run_main, mysql_db, tmp_path: Path) -> None:
    parameters = {
        "int": 42,
        "negative": -7,
        "large": 9007199254740993,
        "float": 0.25,
        "exponent": 1.5e-07,
        "true": True,
        "false": False,
        "null": None,
        "string": "x",
        "array": [1, "two", 3.5, None, {"k": []}],
        "object": {"nested": {"deep": True}},
        "unicode": "ünïcødé \U0001F680",
    }
    identity = {"type": "IAMUser", "userName": "zoë \U0001F9D1\u200d\U0001F4BB", "accountId": "111122223333"}
    resources = [{"ARN": "arn:aws:ec2:us-east-1:111122223333:instance/i-1", "type": "AWS::EC2::Instance"}]
    first = {
        "eventVersion": "1.11",
        "userIdentity": identity,
        "eventTime": "2017-04-10T12:34:56Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "RunInstances",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "agent \U0001F680",
        "errorCode": None,
        "requestParameters": parameters,
        "responseElements": None,
        "requestID": "req-1",
        "eventID": "evt-1",
        "eventType": "AwsApiCall",
        "recipientAccountId": "111122223333",
        "readOnly": True,
        "managementEvent": False,
        "sessionCredentialFromConsole": "true",
        "resources": resources,
        "apiVersion": 20161115,
        "additionalEventData": {"bytesTransferredIn": 123.0, "MFAUsed": "No"},
        "customNumber": 3.14,
        "customArray": [True, False, None],
        "customString": "hello",
        "customObject": {"a": {"b": [1, 2]}},
    }
    second = {"eventTime": "2017-04-10T12:35:00+02:00", "readOnly": False, "managementEvent": True,
              "sessionCredentialFromConsole": "false", "requestID": "req-2"}
    third = {"readOnly": "maybe", "eventVersion": "1.11-and-a-much-longer-suffix",
             "userAgent": "\U0001F680" * 20000, "requestID": "req-3"}
    path = tmp_path / "111122223333_CloudTrail_us-east-1_20170410T1235Z_TypesTypesTypes1.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"Records": [first, second, third]}, ensure_ascii=False).encode()))

    _ok(_import(run_main, path, mysql_db))

    rows = mysql_db.query_dicts("SELECT * FROM logs ORDER BY recordIndex")
    assert [r["requestID"] for r in rows] == ["req-1", "req-2", "req-3"]
    one, two, three = rows

    assert one["eventVersion"] == "1.11"
    assert json.loads(one["userIdentity"]) == identity
    assert one["eventTime"] == "2017-04-10T12:34:56Z"
    assert one["eventTimestamp"] == datetime(2017, 4, 10, 12, 34, 56)
    assert one["userAgent"] == "agent \U0001F680"
    assert one["errorCode"] is None and one["responseElements"] is None and one["errorMessage"] is None
    assert json.loads(one["requestParameters"]) == parameters
    assert json.loads(one["requestParameters"])["large"] == 9007199254740993
    assert one["readOnly"] == 1 and one["managementEvent"] == 0 and one["sessionCredentialFromConsole"] == 1
    assert json.loads(one["resources"]) == resources
    assert one["apiVersion"] == "20161115"
    assert json.loads(one["additionalEventData"]) == first["additionalEventData"]
    assert json.loads(one["extraFields"]) == {  # a boolean given as text is also kept as it was
        k: first[k] for k in ("customNumber", "customArray", "customString", "customObject", "sessionCredentialFromConsole")
    }

    assert two["eventTimestamp"] == datetime(2017, 4, 10, 10, 35, 0)
    assert two["readOnly"] == 0 and two["managementEvent"] == 1 and two["sessionCredentialFromConsole"] == 0
    assert two["userIdentity"] is None and two["eventSource"] is None and two["requestParameters"] is None
    assert json.loads(two["extraFields"]) == {"sessionCredentialFromConsole": "false"}  # kept as it was

    assert three["readOnly"] is None
    assert three["eventVersion"] == third["eventVersion"][:16]
    assert len(three["userAgent"].encode("utf-8")) <= 65535
    assert third["userAgent"].startswith(three["userAgent"]) and len(three["userAgent"]) > 10000
    assert json.loads(three["extraFields"]) == {
        "readOnly": "maybe",
        "eventVersion": third["eventVersion"],
        "userAgent": third["userAgent"],
    }


def test_sample_values_round_trip(run_main, mysql_db, sample_day: SampleDay) -> None:
    """Every generated record's JSON columns read back equal to the JSON, booleans as 1/0."""
    _ok(_import(run_main, sample_day.root, mysql_db))
    by_request = {e["requestID"]: e for e in sample_day.events()}
    rows = mysql_db.query_dicts(
        "SELECT requestID, userIdentity, requestParameters, responseElements, readOnly, userAgent, extraFields FROM logs"
    )
    assert len(rows) == len(by_request)
    for row in rows:
        event = by_request[row["requestID"]]
        for name in ("userIdentity", "requestParameters", "responseElements"):
            value = event.get(name)
            assert (None if row[name] is None else json.loads(row[name])) == value, name
        assert row["readOnly"] == (None if "readOnly" not in event else int(event["readOnly"]))
        assert row["userAgent"] == event["userAgent"]


# -- refusals and errors ---------------------------------------------------------------------------
def test_invalid_table_name_is_refused(run_main, mysql_db, sample_day: SampleDay, absent_database: str) -> None:
    mysql_db.query("CREATE TABLE x (id INT)")
    absent = absent_database
    for url in (mysql_db.url, mysql_url(absent)):
        result = run_main("import", sample_day.root, "--mysql-url", url, "--table", "logs; DROP TABLE x", *WORKERS)
        assert result.returncode == 2
        assert "invalid table name" in result.stderr
        assert "logs; DROP TABLE x" in result.stderr
        assert "Traceback" not in result.stderr
    assert mysql_db.tables() == {"x"}
    assert not database_exists(absent)


@pytest.mark.parametrize("table", ["logs-2017", "1logs", "", "logs`", "t" * 61, "lögs"])
def test_other_invalid_table_names_are_refused(run_main, table: str, mysql_db, sample_day: SampleDay) -> None:
    result = _import(run_main, sample_day.path(sample_day.log_files[0]), mysql_db, "--table", table)
    assert result.returncode == 2
    assert "invalid table name" in result.stderr
    assert mysql_db.tables() == set()


def test_table_name_with_trailing_newline_is_refused(run_main, mysql_db, sample_day: SampleDay) -> None:
    result = _import(run_main, sample_day.path(sample_day.log_files[0]), mysql_db, "--table", "logs\n")
    assert result.returncode == 2
    assert "invalid table name" in result.stderr
    assert mysql_db.tables() == set()


def test_longest_accepted_table_name_works(run_main, mysql_db, sample_day: SampleDay) -> None:
    table = "t" * 60
    item = sample_day.log_files[0]
    result = _import(run_main, sample_day.path(item), mysql_db, "--table", table)
    if result.returncode == 2:  # acceptable: a clear refusal that creates nothing
        assert "invalid table name" in result.stderr
        assert mysql_db.tables() == set()
    else:
        _ok(result)
        assert mysql_db.count(table) == len(read_events(sample_day.path(item)))


def test_reserved_word_table_name(run_main, mysql_db, sample_day: SampleDay) -> None:
    item = sample_day.log_files[0]
    result = _import(run_main, sample_day.path(item), mysql_db, "--table", "order")
    if result.returncode == 2:
        assert "invalid table name" in result.stderr
    else:
        _ok(result)
        assert mysql_db.count("`order`") == len(read_events(sample_day.path(item)))


def test_missing_local_source_is_an_error(mysql_db, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = _import(run_cli, missing, mysql_db)
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_bucket_is_an_error(run_main, mysql_db, s3_server, s3_env) -> None:
    bucket = f"ctm-test-absent-{secrets.token_hex(4)}"
    result = _import(run_main, f"s3://{bucket}/AWSLogs/", mysql_db, env=s3_env)
    assert result.returncode == 2
    assert "NoSuchBucket" in result.stderr or "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_s3_key_is_an_error(run_main, mysql_db, s3_bucket, s3_env) -> None:
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="AWSLogs/other.json.gz", Body=b"{}")
    result = _import(run_main, f"s3://{bucket}/AWSLogs/111122223333_CloudTrail_typo.json.gz", mysql_db, env=s3_env)
    assert result.returncode != 0
    assert "typo" in result.stderr


# -- report ---------------------------------------------------------------------------------------
def test_report_prints_the_counts(run_main, mysql_db, sample_day: SampleDay) -> None:
    _ok(_import(run_main, sample_day.root, mysql_db))
    events = sample_day.events()

    result = run_main("report", "--mysql-url", mysql_db.url)

    _ok(result)
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    output = "\n".join(lines)
    header = lines.index("COUNT(*)")
    assert lines[header + 1].strip() == str(len(events))
    for source, count in Counter(e["eventSource"] for e in events).items():
        assert re.search(rf"^{count}\s+{re.escape(source)}$", output, re.M), source
    errors = Counter(e["errorCode"] for e in events if e.get("errorCode"))
    assert errors
    for code, count in errors.items():
        assert re.search(rf"^{count}\s+{re.escape(code)}$", output, re.M), code
    assert re.search(rf"^loaded\s+{len(sample_day.log_files)}\s+{len(events)}$", output, re.M)


def test_report_prints_null_as_null(run_main, mysql_db, tmp_path: Path) -> None:
    """Events without eventSource (Insight events, old placeholders) are counted under NULL, not None."""
    path = tmp_path / "no-source.json.gz"
    records = [{"eventVersion": "1.07", "eventTime": "2017-04-10T00:00:00Z", "eventName": "x"}] * 2
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    _ok(_import(run_main, path, mysql_db))
    result = run_main("report", "--mysql-url", mysql_db.url)
    _ok(result)
    assert re.search(r"^2\s+NULL\s*$", result.stdout, re.M), result.stdout
    assert "None" not in result.stdout


def test_report_prints_section_titles(run_main, mysql_db, sample_day: SampleDay) -> None:
    _ok(_import(run_main, sample_day.path(sample_day.log_files[0]), mysql_db))
    result = run_main("report", "--mysql-url", mysql_db.url)
    _ok(result)
    sql_text = (Path(__file__).resolve().parents[1] / "include" / "sql" / "report.sql").read_text()
    titles = [line[2:].strip() for line in sql_text.splitlines() if line.startswith("-- ")]
    assert titles
    for title in titles:
        assert title in result.stdout.splitlines()


def test_report_on_missing_database_is_a_clear_error(run_main, absent_database: str) -> None:
    absent = absent_database
    result = run_main("report", "--mysql-url", mysql_url(absent))
    assert result.returncode == 2
    assert absent in result.stderr
    assert "Traceback" not in result.stderr
    assert not database_exists(absent)


# -- LOAD DATA refused ----------------------------------------------------------------------------
@pytest.fixture
def local_infile_off(mysql_db) -> Any:
    """The server refusing LOAD DATA LOCAL, as MySQL 8 does by default (a global setting: restored
    afterwards; the tests of this suite run one at a time)."""
    (before,) = mysql_db.query("SELECT @@GLOBAL.local_infile")[0]
    mysql_db.query("SET GLOBAL local_infile = 0")
    try:
        yield
    finally:
        mysql_db.query("SET GLOBAL local_infile = %s", int(before))


# With parse-ahead on, every file's rows are already written as TSV when the refusal comes.
@pytest.mark.parametrize("parse_ahead", ["on", "off"])
def test_load_data_refused_by_the_client_falls_back_to_inserts(run_main, mysql_db, sample_day: SampleDay, parse_ahead: str) -> None:
    result = run_main(
        "import", sample_day.root, "--mysql-url", f"{mysql_db.url}?local_infile=0", *WORKERS, "--parse-ahead", parse_ahead
    )
    _ok(result)
    assert _summary(result)["loaded"] == len(sample_day.log_files)
    assert _request_ids(mysql_db) == Counter(e["requestID"] for e in sample_day.events())


@pytest.mark.parametrize("parse_ahead", ["on", "off"])
def test_load_data_refused_by_the_server_falls_back_to_inserts(
    run_main, mysql_db, sample_day: SampleDay, local_infile_off, parse_ahead: str
) -> None:
    result = _import(run_main, sample_day.root, mysql_db, "--parse-ahead", parse_ahead)
    _ok(result)
    assert _summary(result)["loaded"] == len(sample_day.log_files)
    assert _request_ids(mysql_db) == Counter(e["requestID"] for e in sample_day.events())


def test_load_data_asked_for_but_refused_stops_with_what_to_do(run_main, mysql_db, sample_day: SampleDay, local_infile_off) -> None:
    result = _import(run_main, sample_day.root, mysql_db, "--method", "load_data")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "LOAD DATA LOCAL INFILE is refused" in result.stderr and "method auto or insert" in result.stderr
    assert mysql_db.count() == 0


def test_mysql_url_option_that_must_be_a_number(run_main, mysql_db, sample_day: SampleDay) -> None:
    result = run_main("import", sample_day.root, "--mysql-url", f"{mysql_db.url}?connect_timeout=soon")
    assert result.returncode == 2
    assert "connect_timeout must be a whole number" in result.stderr and "Traceback" not in result.stderr


# -- credentials ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["import", "report"])
def test_bad_password_is_a_clear_error_without_the_password(run_main, command: str, mysql_db, sample_day: SampleDay) -> None:
    password = f"Wr0ng-{secrets.token_hex(8)}"
    url = mysql_url(mysql_db.name, password)
    args = [command] + ([sample_day.root] if command == "import" else []) + ["--mysql-url", url]

    result = run_main(*args)

    assert result.returncode == 2
    assert "cannot connect" in result.stderr
    assert "Access denied" in result.stderr
    assert f"root@127.0.0.1:3306/{mysql_db.name}" in result.stderr
    assert "Traceback" not in result.stderr
    assert password not in result.stdout + result.stderr
    assert password[6:] not in result.stdout + result.stderr
    assert mysql_db.tables() == set()


@pytest.mark.parametrize("separator", ["#", "/", "?"])
def test_password_with_url_characters_never_printed(run_main, separator: str, mysql_db) -> None:
    head, tail = f"Head{secrets.token_hex(4)}", f"Tail{secrets.token_hex(4)}"
    url = f"mysql://root:{head}{separator}{tail}@127.0.0.1:3306/{mysql_db.name}"
    result = run_main("report", "--mysql-url", url)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert head not in output
    assert tail not in output
