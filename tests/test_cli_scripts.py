"""The command in scripts and cron: --version, --help's exit codes, --json, -v/-q, the days of an S3
trail (--day/--from/--to/--accounts/--regions), --dry-run and --conn-id, each with its exit code.

Through the installed command (exit codes are the point), against MariaDB and the moto S3 server.
Expected values come from the generated files, read with gzip + json.
"""

from __future__ import annotations

import gzip
import json
from datetime import date, timedelta
from typing import Any

import pytest

from cloudtrail_mysql.sample import day_files
from conftest import database_exists, make_sample_day, mysql_url, run_cli

DAY = date(2017, 4, 10)
ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("us-east-1", "eu-west-1")


def _json(result: Any) -> dict[str, Any]:
    return json.loads(result.stdout)


@pytest.fixture
def trail(s3_bucket: tuple[Any, str]) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """Two delivery days, two accounts x two regions, with digests, under the key prefix 'org/trail'.
    Returns the bucket and each log file's records by key."""
    client, bucket = s3_bucket
    records: dict[str, list[dict[str, Any]]] = {}
    for day in (DAY, DAY + timedelta(days=1)):
        for item in day_files(day, records=160, accounts=ACCOUNTS, regions=REGIONS, files_per_region=2):
            key = f"org/trail/{item.key}"
            client.put_object(Bucket=bucket, Key=key, Body=item.body)
            if "/CloudTrail/" in key:
                records[key] = json.loads(gzip.decompress(item.body))["Records"]
    return bucket, records


def _keys(records: dict[str, Any], day: date, account: str | None = None, region: str | None = None) -> list[str]:
    return sorted(
        key for key in records
        if f"/{day:%Y/%m/%d}/" in key and (account is None or f"/{account}/" in key) and (region is None or f"/{region}/" in key)
    )


def test_version_and_help_with_the_exit_codes() -> None:
    from cloudtrail_mysql import __version__

    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"cloudtrail-mysql {__version__}"
    for args in (("--help",), ("import", "--help")):
        shown = run_cli(*args)
        assert shown.returncode == 0
        assert "exit codes:" in shown.stdout
        for code in ("0 ", "1 ", "2 ", "130 "):
            assert f"\n  {code}" in shown.stdout, shown.stdout
    for flag in ("--day", "--from", "--to", "--accounts", "--regions", "--dry-run", "--json", "--conn-id", "--verbose", "--quiet"):
        assert flag in run_cli("import", "--help").stdout


def test_a_day_of_an_s3_trail_for_some_accounts_and_regions_as_json(mysql_db: Any, trail: Any, s3_env: dict[str, str]) -> None:
    bucket, records = trail
    result = run_cli("import", f"s3://{bucket}/org/trail", "--day", DAY, "--accounts", ACCOUNTS[0], "--regions", "eu-west-1",
                     "--mysql-url", mysql_db.url, "--json", env=s3_env)
    assert result.returncode == 0, result.stderr[-3000:]
    keys = _keys(records, DAY, ACCOUNTS[0], "eu-west-1")
    summary = _json(result)
    assert summary["files"] == summary["loaded"] == len(keys) == 2
    assert summary["rows"] == sum(len(records[k]) for k in keys) == mysql_db.count()
    assert summary["failed"] == 0 and summary["failures"] == [] and summary["exit_code"] == 0
    loaded = {row[0] for row in mysql_db.query("SELECT source FROM logs_files")}
    assert loaded == {f"s3://{bucket}/{key}" for key in keys}


def test_from_to_dry_run_lists_both_days_and_writes_nothing(trail: Any, s3_env: dict[str, str], absent_database: str) -> None:
    bucket, records = trail
    name = absent_database
    result = run_cli("import", f"s3://{bucket}/org/trail/", "--from", DAY, "--to", DAY + timedelta(days=1), "--dry-run",
                     "--json", "--mysql-url", mysql_url(name), env=s3_env)
    assert result.returncode == 0, result.stderr[-3000:]
    plan = _json(result)
    expected = sorted(f"s3://{bucket}/{key}" for key in records)  # both days' log files, no digests
    assert sorted(item["file"] for item in plan["to_load"]) == expected and plan["files"] == len(expected) == 16
    assert plan["dry_run"] is True and not database_exists(name)

    text = run_cli("import", f"s3://{bucket}/org/trail", "--day", DAY, "--dry-run", "--mysql-url", mysql_url(name), env=s3_env)
    assert text.returncode == 0
    assert "dry run: 8 files" in text.stdout and "nothing was written" in text.stdout
    assert sorted(line.split("\t")[0] for line in text.stdout.splitlines() if line.startswith("s3://")) == sorted(
        f"s3://{bucket}/{key}" for key in _keys(records, DAY)
    )
    assert not database_exists(name)


def test_the_days_are_planned_as_the_dag_plans_them(trail: Any, s3_env: dict[str, str], s3_server: str) -> None:
    """The command's files for a day are exactly the keys of the DAG's planned batches."""
    from cloudtrail_mysql.layout import day_folders, iter_batch, plan_batches
    from conftest import s3_client_for

    bucket, _ = trail
    client = s3_client_for(s3_server)
    folders = day_folders(client, bucket, DAY, "org/trail", regions=["us-east-1"])
    planned = [s.location for b in plan_batches(client, bucket, folders, max_files=3) for s in iter_batch(client, bucket, b.ranges)]
    result = run_cli("import", f"s3://{bucket}/org/trail", "--day", DAY, "--regions", "us-east-1", "--dry-run", "--json",
                     env=s3_env)
    assert result.returncode == 0, result.stderr
    assert [item["file"] for item in _json(result)["to_load"]] == planned and len(planned) == 4


def test_a_day_without_files_is_done_with_exit_0(mysql_db: Any, trail: Any, s3_env: dict[str, str]) -> None:
    bucket, _ = trail
    result = run_cli("import", f"s3://{bucket}/org/trail", "--day", DAY - timedelta(days=3), "--mysql-url", mysql_db.url,
                     env=s3_env)
    assert result.returncode == 0, result.stderr
    assert f"no files delivered on {DAY - timedelta(days=3)}" in result.stdout


def test_json_names_the_failed_file_with_exit_1(mysql_db: Any, tmp_path: Any) -> None:
    sample = make_sample_day(tmp_path / "day", records=40, accounts=ACCOUNTS[:1], regions=REGIONS[:1])
    bad = sample.root / sample.log_files[0].key.replace(".json.gz", "X.json.gz")
    bad.write_bytes(gzip.compress(b'{"Records": ['))
    result = run_cli("import", sample.root, "--mysql-url", mysql_db.url, "--json")
    assert result.returncode == 1, result.stderr[-3000:]
    summary = _json(result)
    assert summary["exit_code"] == 1 and summary["failed"] == 1
    assert [item["file"] for item in summary["failures"]] == [str(bad.resolve())]
    assert summary["loaded"] == len(sample.log_files) and summary["rows"] == mysql_db.count() == 40
    assert "FAILED" in result.stderr  # the text report went to stderr, stdout is JSON alone


def test_json_says_the_error_with_exit_2(mysql_server: Any, tmp_path: Any) -> None:
    sample = make_sample_day(tmp_path / "day", records=10, accounts=ACCOUNTS[:1], regions=REGIONS[:1])
    result = run_cli("import", sample.root, "--mysql-url", "mysql://root:wrong@127.0.0.1:3306/ctm_no_such", "--json")
    assert result.returncode == 2
    assert _json(result)["exit_code"] == 2 and "cannot connect" in _json(result)["error"]


def test_quiet_prints_nothing_and_verbose_shows_the_switch_to_inserts(mysql_db: Any, tmp_path: Any) -> None:
    sample = make_sample_day(tmp_path / "day", records=30, accounts=ACCOUNTS[:1], regions=REGIONS[:1])
    quiet = run_cli("import", sample.root, "--mysql-url", mysql_db.url, "-q")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    assert mysql_db.count() == 30

    refused = f"{mysql_db.url}?local_infile=0"
    plain = run_cli("import", sample.root, "--mysql-url", refused, "--table", "second", "--workers", "1")
    assert plain.returncode == 0 and "multi-row INSERTs" not in plain.stderr
    verbose = run_cli("-v", "import", sample.root, "--mysql-url", refused, "--table", "third", "--workers", "1")
    assert verbose.returncode == 0, verbose.stderr
    assert "LOAD DATA LOCAL INFILE is not available" in verbose.stderr and "using multi-row INSERTs" in verbose.stderr
    after = run_cli("import", sample.root, "--mysql-url", refused, "--table", "fourth", "--workers", "1", "-v")
    assert after.returncode == 0 and "using multi-row INSERTs" in after.stderr

    both = run_cli("import", sample.root, "-v", "-q")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_conn_id_takes_an_airflow_connection(mysql_db: Any, tmp_path: Any) -> None:
    sample = make_sample_day(tmp_path / "day", records=20, accounts=ACCOUNTS[:1], regions=REGIONS[:1])
    connection = json.dumps({"conn_type": "mysql", "host": "127.0.0.1", "port": 3306, "login": "root", "schema": mysql_db.name,
                             "extra": {"read_timeout": 120, "local_infile": True}})
    result = run_cli("import", sample.root, "--conn-id", "trail_db", "--mysql-url", "mysql://nobody@127.0.0.1:1/unused",
                     env={"AIRFLOW_CONN_TRAIL_DB": connection})
    assert result.returncode == 0, result.stderr[-3000:]
    assert mysql_db.count() == 20 and f"root@127.0.0.1:3306/{mysql_db.name}" in result.stderr

    missing = run_cli("import", sample.root, "--conn-id", "no_such_connection")
    assert missing.returncode == 2 and "Airflow connection 'no_such_connection'" in missing.stderr
    s3 = run_cli("import", sample.root, "--conn-id", "aws_x", env={"AIRFLOW_CONN_AWS_X": "aws://"})
    assert s3.returncode == 2 and "not mysql" in s3.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--day", "2017-13-01"), "not a day"),
        (("--to", "2017-04-10"), "--to goes with --from"),
        (("--from", "2017-04-11", "--to", "2017-04-10"), "is before --from"),
        (("--accounts", "111122223333"), "go with --day or --from"),
        (("--day", "2012-01-01"), "2012-01-01"),
    ],
)
def test_bad_day_options_exit_2(args: tuple[str, ...], message: str, s3_env: dict[str, str]) -> None:
    result = run_cli("import", "s3://some-bucket", *args, "--dry-run", env=s3_env)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_days_need_an_s3_trail(tmp_path: Any) -> None:
    result = run_cli("import", tmp_path, "--day", "2017-04-10", "--dry-run")
    assert result.returncode == 2 and "give SOURCE as s3://bucket[/key_prefix]" in result.stderr
