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

from cloudtrail_mysql import sql
from conftest import (
    CLI,
    database_exists,
    make_sample_day,
    mysql_url,
    read_events,
    run_cli,
    upload_files,
)
from conftest import import_summary as _summary

WORKERS = ("--workers", "2")


def _import(source: Any, db: Any, *extra: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("import", source, "--mysql-url", db.url, *WORKERS, *extra, env=env)


def _gz(document: Any) -> bytes:
    return gzip.compress(json.dumps(document).encode())


# -- 6. names the loader derives are refused as --table -----------------------------------------
@pytest.mark.parametrize(
    "table", [
        "logs_files", "logs_daily_events", "logs_daily_anything", "logs_parts_events", "logs_findings", "logs_dropped_days",
        "logs_staged_days", "logs__day_20170410", "x__migrating",
    ]
)
def test_a_derived_table_name_is_refused_before_anything_is_created(table: str, absent_database: str, sample_day) -> None:
    name = absent_database
    result = run_cli("import", sample_day.root, "--mysql-url", mysql_url(name), "--table", table)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"invalid table name {table!r}" in result.stderr and "the loader's own tables" in result.stderr
    assert not database_exists(name)


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
    twice_records.write_bytes(gzip.compress(f'{{"Records":[{event % "r1"}],"Records":[{event % "r2"}]}}'.encode()))
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


# -- 1. a file's identity cannot collide silently --------------------------------------------------
def _events(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {"eventVersion": "1.08", "eventTime": f"2017-04-10T00:{i:02d}:00Z", "eventName": f"{tag}{i}", "requestID": f"{tag}-{i}"}
        for i in range(n)
    ]


def _namesakes(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """The same CloudTrail file name in two folders, with different events (10 and 29)."""
    first = _ct_path(tmp_path / "one" / "a", "SameNameSameName")
    second = _ct_path(tmp_path / "one" / "b", "SameNameSameName")
    first.write_bytes(_gz({"Records": _events(10, "first")}))
    second.write_bytes(_gz({"Records": _events(29, "second")}))
    return tmp_path / "one", first, second, _ct_path(tmp_path / "one" / "b", "OtherFileOtherFi")


def test_a_namesake_with_other_content_is_refused_naming_both_places(mysql_db, tmp_path: Path) -> None:
    root, first, second, other = _namesakes(tmp_path)
    other.write_bytes(_gz({"Records": _events(3, "other")}))

    result = _import(root, mysql_db)

    assert result.returncode == 1, result.stdout + result.stderr
    # Whichever of the two was loaded first stays; the other is refused, naming both places.
    manifest = {source: (status, name, error)
                for source, status, name, error in mysql_db.query("SELECT source, status, file_name, error FROM logs_files")}
    winner, loser = (first, second) if manifest[str(first)][0] == "loaded" else (second, first)
    kept = _events(10, "first") if winner == first else _events(29, "second")
    assert _summary(result) == {"loaded": 2, "already_loaded": 0, "skipped": 0, "failed": 1, "rows": len(kept) + 3}
    assert f"{loser}: a different file of the same name is loaded from {winner}" in result.stderr
    assert sorted(mysql_db.query("SELECT eventName FROM logs WHERE sourceKey = %s", str(winner))) == sorted((e["eventName"],) for e in kept)
    assert mysql_db.count() == len(kept) + 3
    assert manifest[str(winner)][:2] == ("loaded", first.name) and manifest[str(winner)][2] is None
    assert manifest[str(loser)][:2] == ("failed", first.name) and str(winner) in manifest[str(loser)][2]

    # A rerun changes nothing and says the same.
    again = _import(root, mysql_db)
    assert again.returncode == 1 and _summary(again)["failed"] == 1 and _summary(again)["already_loaded"] == 2
    assert mysql_db.count() == len(kept) + 3


def test_two_loaders_at_once_with_namesakes_end_exact(mysql_db, tmp_path: Path) -> None:
    """Two imports started together, each with one of two different files of the same name: one is
    loaded, the other refused naming it; never both, never a mix."""
    _, first, second, _ = _namesakes(tmp_path)
    ensure = run_cli("import", first, "--mysql-url", mysql_db.url)  # tables made, then emptied
    assert ensure.returncode == 0, ensure.stderr
    mysql_db.query("DELETE FROM logs")
    mysql_db.query("DELETE FROM logs_files")
    for _ in range(3):
        commands = [[str(CLI), "import", str(path), "--mysql-url", mysql_db.url] for path in (first, second)]
        running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
        outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in running]
        for p in running:
            p.stdout.close()
            p.stderr.close()
        assert sorted(code for code, _ in outcomes) == [0, 1], outcomes
        winner, loser = (first, second) if outcomes[0][0] == 0 else (second, first)
        assert f"{loser}: a different file of the same name is loaded from {winner}" in outcomes[[first, second].index(loser)][1]
        expected = 10 if winner == first else 29
        assert mysql_db.query("SELECT COUNT(*), COUNT(DISTINCT sourceKey), MIN(sourceKey) FROM logs") == [(expected, 1, str(winner))]
        assert sorted(mysql_db.query("SELECT source, status FROM logs_files")) == sorted([(str(winner), "loaded"), (str(loser), "failed")])
        mysql_db.query("DELETE FROM logs")
        mysql_db.query("DELETE FROM logs_files")


def test_a_file_changed_in_place_is_reported_as_replacing_its_rows(mysql_db, tmp_path: Path) -> None:
    from cloudtrail_mysql.report import write_day_report

    root, first, _, _ = _namesakes(tmp_path)
    shutil.rmtree(root / "b")
    assert _import(root, mysql_db).returncode == 0
    first.write_bytes(_gz({"Records": _events(7, "redelivered")}))  # CloudTrail delivered it again, changed

    result = _import(root, mysql_db)

    assert result.returncode == 0, result.stdout + result.stderr
    assert _summary(result)["loaded"] == 1
    assert "1 file(s) changed since loaded replaced 10 earlier rows:" in result.stdout
    assert f"  {first}: replaced 10 rows of its earlier version" in result.stdout
    assert sorted(mysql_db.query("SELECT eventName FROM logs")) == sorted((e["eventName"],) for e in _events(7, "redelivered"))
    (status, rows, note), = mysql_db.query("SELECT status, row_count, error FROM logs_files")
    assert (status, rows) == ("loaded", 7) and note.startswith("replaced 10 rows of an earlier version")

    conn = mysql_db.connect()
    try:
        def query(statement: str, parameters: Any) -> list[tuple[Any, ...]]:
            cursor = conn.cursor()
            cursor.execute(statement, parameters)
            return list(cursor.fetchall())

        path, files = write_day_report(query, "logs", "2017-04-10", tmp_path / "reports")
    finally:
        conn.close()
    page = path.read_text()
    assert files == {"loaded": {"files": 1, "rows": 7}}
    assert "Files that replaced an earlier version of themselves" in page and str(first) in page and "replaced 10 rows" in page

    # Loading it again unchanged: already loaded, nothing replaced, the note stays.
    again = _import(root, mysql_db)
    assert _summary(again)["already_loaded"] == 1 and "replaced" not in again.stdout


# -- 3. a dead worker never hangs the command ------------------------------------------------------
def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def test_a_worker_killed_mid_import_fails_its_file_by_name_and_a_rerun_is_exact(mysql_db, tmp_path: Path) -> None:
    sample = make_sample_day(tmp_path / "base", records=40, accounts=("111122223333",), regions=("us-east-1",), digests=False)
    base = read_events(sample.root.rglob("*.json.gz").__next__())
    root = tmp_path / "big"
    files: dict[Path, int] = {}
    for n in range(4):  # big files, so that each worker is inside one for a while
        records = [dict(base[i % len(base)], eventID=f"e-{n}-{i}", requestID=f"r-{n}-{i}") for i in range(12000)]
        path = _ct_path(root, f"BigFile{n}BigFile{n}", account=f"11112222333{n}")
        path.write_bytes(_gz({"Records": records}))
        files[path] = len(records)

    command = subprocess.Popen(
        [str(CLI), "import", str(root), "--mysql-url", mysql_db.url, *WORKERS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        victim = None
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline and command.poll() is None:
            # A worker holding a file has parsed it: its memory grows well above an idle worker's.
            victim = next((pid for pid in _children(command.pid) if _rss_mib(pid) > 60), None)
            time.sleep(0.02)
        assert victim is not None, "no worker was seen loading a file"
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        stdout, stderr = command.communicate(timeout=90)
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()
    assert time.monotonic() - killed_at < 60
    assert command.returncode == 1, stdout + stderr
    failed = [(source, error) for source, status, error in mysql_db.query("SELECT source, status, error FROM logs_files") if status == "failed"]
    assert len(failed) == 1, (failed, stderr)
    source, error = failed[0]
    assert f"the worker process loading it (pid {victim}) was killed by SIGKILL" in error
    assert f"FAILED {error}" in stderr and f"  {source}: the worker process loading it (pid {victim})" in stderr
    summary = _summary(stdout)
    assert summary["failed"] == 1 and summary["loaded"] == len(files) - 1
    assert mysql_db.count() == sum(files.values()) - files[Path(source)]

    rerun = _import(root, mysql_db)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _summary(rerun)["loaded"] == 1 and _summary(rerun)["already_loaded"] == len(files) - 1
    assert mysql_db.query("SELECT COUNT(*), COUNT(DISTINCT eventID) FROM logs") == [(sum(files.values()), sum(files.values()))]
    assert mysql_db.query("SELECT status, COUNT(*) FROM logs_files GROUP BY status") == [("loaded", len(files))]


# -- 4. the DAG refuses at once what no retry can fix ----------------------------------------------
from conftest import REPO  # noqa: E402

_RUNNER = r"""
import json, sys
from datetime import datetime, timedelta, timezone
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2
    from airflow.models.dagbag import DagBag
dag = DagBag(sys.argv[1]).dags["cloudtrail_daily"]
for task in dag.tasks:  # a retry, if any, comes at once: the test sees it in try_number
    task.retry_delay = timedelta(seconds=0)
    task.retry_exponential_backoff = False
results = {}
for name, (day, conf) in json.loads(sys.argv[2]).items():
    conf = {"day": None, "table": "logs", **conf}  # one run's conf stays in the DAG's params for the next
    try:
        run = dag.test(logical_date=datetime.fromisoformat(day).replace(tzinfo=timezone.utc), run_conf=conf)
    except Exception as exc:
        results[name] = {"refused": f"{type(exc).__name__}: {exc}"}
        continue
    tasks = {}
    for ti in run.get_task_instances():
        tasks.setdefault(ti.task_id, [str(ti.state), ti.try_number])
    results[name] = {"state": str(run.state), "tasks": tasks}
print("RESULTS " + json.dumps(results))
"""


class _Trap:
    """A TCP port that counts the connections made to it (and closes them at once)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.connections = 0
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = self.socket.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.socket.close()


@pytest.mark.slow
def test_the_dag_refuses_what_no_retry_can_fix_before_touching_mysql_or_s3(
    airflow_env: dict[str, str], mysql_db, s3_bucket, s3_server: str, tmp_path: Path
) -> None:
    from datetime import UTC, date, datetime, timedelta

    from cloudtrail_mysql.sample import day_files
    from conftest import _mysql_connect

    client, bucket = s3_bucket
    upload_files(client, bucket, day_files(date(2017, 4, 9), records=20, accounts=("111122223333",), regions=("us-east-1",), digests=False))
    empty_bucket = f"{bucket}-empty"
    client.create_bucket(Bucket=empty_bucket)
    client.put_object(Bucket=empty_bucket, Key="config/not-a-trail.json", Body=b"{}")
    mysql_trap, s3_trap = _Trap(), _Trap()
    aws = lambda endpoint: json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",  # noqa: E731
                                       "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})
    env = {
        **os.environ, **airflow_env,
        "AIRFLOW_CONN_MYSQL_REAL": mysql_db.url,
        "AIRFLOW_CONN_MYSQL_BADPW": mysql_url(mysql_db.name, password="not-the-password"),
        "AIRFLOW_CONN_MYSQL_LIMITED": f"mysql://ctm_limited:limited-pw@127.0.0.1:3306/{mysql_db.name}",
        "AIRFLOW_CONN_MYSQL_TRAP": f"mysql://root@127.0.0.1:{mysql_trap.port}/trap",
        "AIRFLOW_CONN_AWS_REAL": aws(s3_server),
        "AIRFLOW_CONN_AWS_TRAP": aws(f"http://127.0.0.1:{s3_trap.port}"),
    }
    trap = {"mysql_conn_id": "mysql_trap", "aws_conn_id": "aws_trap"}
    real = {"mysql_conn_id": "mysql_real", "aws_conn_id": "aws_real"}
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    cases = {
        "bad_bucket": ("2017-04-10", {**trap, "bucket": "../etc"}),
        "before_cloudtrail": ("2017-04-09", {**trap, "bucket": bucket, "day": "2013-10-31"}),
        "far_future": ("2017-04-11", {**trap, "bucket": bucket, "day": "9999-12-31"}),
        "after_tomorrow": ("2017-04-12", {**trap, "bucket": bucket, "day": (tomorrow + timedelta(days=1)).isoformat()}),
        "derived_table": ("2017-04-13", {**trap, "bucket": bucket, "table": "logs_files"}),
        "wrong_password": ("2017-04-14", {"mysql_conn_id": "mysql_badpw", "aws_conn_id": "aws_trap", "bucket": bucket}),
        "missing_privilege": ("2017-04-15", {"mysql_conn_id": "mysql_limited", "aws_conn_id": "aws_trap", "bucket": bucket}),
        "no_trail_layout": ("2017-04-16", {**real, "bucket": empty_bucket}),
        "empty_day": ("2017-04-17", {**real, "bucket": bucket}),
    }
    root = _mysql_connect()
    try:
        cursor = root.cursor()
        cursor.execute("CREATE USER 'ctm_limited'@'127.0.0.1' IDENTIFIED BY 'limited-pw'")
        cursor.execute("CREATE USER 'ctm_limited'@'localhost' IDENTIFIED BY 'limited-pw'")
        for host in ("127.0.0.1", "localhost"):
            cursor.execute(f"GRANT SELECT ON `{mysql_db.name}`.* TO 'ctm_limited'@'{host}'")
        started = time.monotonic()
        run = subprocess.run(
            [str(Path(os.sys.executable)), "-c", _RUNNER, str(REPO / "dags"), json.dumps(cases)],
            env=env, capture_output=True, text=True, timeout=900,
        )
        seconds = time.monotonic() - started
    finally:
        for host in ("127.0.0.1", "localhost"):
            root.cursor().execute(f"DROP USER IF EXISTS 'ctm_limited'@'{host}'")
        root.close()
        mysql_trap.close()
        s3_trap.close()
        client.delete_object(Bucket=empty_bucket, Key="config/not-a-trail.json")
        client.delete_bucket(Bucket=empty_bucket)
    output = run.stdout + run.stderr
    (tmp_path / "runs.log").write_text(output)
    line = next((x for x in run.stdout.splitlines() if x.startswith("RESULTS ")), None)
    assert line, output[-6000:]
    results = json.loads(line[len("RESULTS "):])
    print(f"\n{len(cases)} runs in {seconds:.0f} s: {json.dumps(results, indent=1)}")

    # Bad params: nothing ever reached MySQL or S3, and nothing was retried.
    assert mysql_trap.connections == 0 and s3_trap.connections == 0, (mysql_trap.connections, s3_trap.connections)
    for name in ("bad_bucket", "before_cloudtrail", "far_future", "after_tomorrow", "wrong_password", "missing_privilege", "no_trail_layout"):
        result = results[name]
        assert result["state"] == "failed", (name, result)
        assert result["tasks"]["plan_batches"] == ["failed", 1], (name, result)
        for task in ("create_indexes", "build_summaries", "apply_retention", "report_day"):
            assert result["tasks"][task][0] in ("upstream_failed", "skipped", "None"), (name, task, result)
    for name in ("bad_bucket", "before_cloudtrail", "far_future", "after_tomorrow"):
        assert results[name]["tasks"]["resolve_day"] == ["failed", 1], (name, results[name])
    assert "refused" in results["derived_table"] and "logs_files" in results["derived_table"]["refused"]
    assert "invalid S3 bucket name '../etc'" in output
    assert "day 2013-10-31 is before CloudTrail began (2013-11-01)" in output
    assert "day 9999-12-31 is in the future" in output
    assert "the MySQL user or password is wrong" in output
    assert "the MySQL user lacks a privilege" in output
    assert f"no CloudTrail files at all in s3://{empty_bucket}/AWSLogs/" in output
    assert "not-the-password" not in output and "limited-pw" not in output
    # Only the tables of create_tables.sql, made by the runs with real connections.
    made = set(re.findall(r"CREATE TABLE IF NOT EXISTS `([^`]+)`", sql.render("create_tables.sql", table="logs", collation="x")))
    assert "logs_files" in made and mysql_db.tables() == made
    # A quiet day of a real trail is a green run.
    assert results["empty_day"]["state"] == "success", results["empty_day"]
    assert results["empty_day"]["tasks"]["plan_batches"] == ["success", 1]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    "text, where",
    [
        (b'{"Records":[{"a":1}],"Records":[{"b":2}]}', "the file has the key 'Records' twice"),
        (b'{"Records":[{"e":"x"},{"a":1,"a":2}]}', "record 1 has the key 'a' twice"),
        (b'{"Records":[{"b":{"c":1,"c":2}}]}', "record 0 has the key 'c' twice in a nested object"),
        (b'{"Records" : [{"b":"\\"\\u003a", "a":1, "a" :2}]}', "record 0 has the key 'a' twice"),
        (b'{"Records":[{"a":"x\\":y", "b" : 1.5e3}]}', None),
    ],
)
def test_duplicate_keys_are_found_in_whole_and_streamed_files(text: bytes, where: str | None, streamed: bool, monkeypatch) -> None:
    from cloudtrail_mysql import records

    if streamed:
        monkeypatch.setattr(records, "STREAM_ABOVE_BYTES", 10)
    if where is None:
        assert list(records.read_records(gzip.compress(text), "f.json.gz")) == json.loads(text)["Records"]
        return
    with pytest.raises(records.CloudTrailFileError, match=re.escape(f"f.json.gz: duplicate JSON key: {where};")):
        list(records.read_records(gzip.compress(text), "f.json.gz"))
