"""Bounded runtimes: the DAG's timeouts, MySQL connections that cannot hang, failures not retried.

Real parts only: MariaDB (a row lock held by the test stalls a load), a TCP relay that stops
relaying (a MySQL server that stops answering), the moto S3 server, ``airflow dags test``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloudtrail_mysql.sample import day_files
from conftest import airflow_connections

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).parent / "airflow"
# A day of its own: the session's Airflow database is shared with the other DAG tests.
DAY = date(2017, 5, 2)


def _dagbag(env: dict[str, str]) -> Any:
    """The DAG parsed in a fresh interpreter with ``env`` (its timeouts are read at parse time)."""
    probe = (
        "import json, sys\n"
        "try:\n    from airflow.dag_processing.dagbag import DagBag\n"
        "except ImportError:\n    from airflow.models.dagbag import DagBag\n"
        f"bag = DagBag({str(REPO / 'dags')!r})\n"
        "dag = bag.dags.get('cloudtrail_daily')\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},\n"
        "  'dagrun_timeout': dag.dagrun_timeout.total_seconds() if dag and dag.dagrun_timeout else None,\n"
        "  'tasks': {t.task_id: (t.execution_timeout.total_seconds() if t.execution_timeout else None,\n"
        "            t.retry_delay.total_seconds()) for t in (dag.tasks if dag else [])}}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.lane
def test_every_task_has_a_timeout_and_the_run_too_configurable_by_environment(airflow_env: dict[str, str]) -> None:
    default = _dagbag(airflow_env)
    assert default["errors"] == {}
    assert default["dagrun_timeout"] == 12 * 3600
    timeouts = {task: timeout for task, (timeout, _) in default["tasks"].items()}
    assert None not in timeouts.values(), timeouts
    assert timeouts["load_batch"] == 7200 and timeouts["plan_batches"] == 3600 and timeouts["build_summaries"] == 3600

    tuned = _dagbag({**airflow_env, "CLOUDTRAIL_MYSQL_TASK_TIMEOUT_MINUTES": "30", "CLOUDTRAIL_MYSQL_LOAD_TIMEOUT_MINUTES": "0.5",
                     "CLOUDTRAIL_MYSQL_DAGRUN_TIMEOUT_MINUTES": "90", "CLOUDTRAIL_MYSQL_RETRY_DELAY_MINUTES": "0.25"})
    assert tuned["dagrun_timeout"] == 5400
    assert tuned["tasks"]["load_batch"] == [30, 15] and tuned["tasks"]["report_day"] == [1800, 15]

    broken = _dagbag({**airflow_env, "CLOUDTRAIL_MYSQL_LOAD_TIMEOUT_MINUTES": "two hours"})
    assert any("CLOUDTRAIL_MYSQL_LOAD_TIMEOUT_MINUTES='two hours': give a number of minutes" in e
               for e in broken["errors"].values()), broken["errors"]


# -- a MySQL server that stops answering ---------------------------------------------------------
class StallingRelay:
    """A TCP relay to MySQL on 127.0.0.1 that relays until ``stall()``, then holds every byte."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 3306)) -> None:
        self.target = target
        self.stalled = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.stalled.is_set():
                    time.sleep(0.05)  # hold it: the other side hears nothing, and nothing closes
                sink.sendall(data)
        except OSError:
            pass

    def stall(self) -> None:
        self.stalled.set()

    def close(self) -> None:
        for item in self.sockets:
            item.close()


@pytest.fixture
def relay() -> Iterator[StallingRelay]:
    relay = StallingRelay()
    try:
        yield relay
    finally:
        relay.close()


def test_the_dags_mysql_connections_give_up_on_a_server_that_stops_answering(
    airflow_env: dict[str, str], mysql_db: Any, relay: StallingRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook of the DAG's Python tasks and of its SQL tasks: a query to a stalled server fails
    after the read timeout instead of waiting for ever (MySqlHook alone sets none)."""
    import MySQLdb

    from cloudtrail_mysql.hooks import BoundedMySqlHook
    from cloudtrail_mysql.operators import MySqlQueryOperator

    extra = json.dumps({"read_timeout": 2, "write_timeout": 2})
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_STALLING",
                       json.dumps({"conn_type": "mysql", "host": "127.0.0.1", "port": relay.port, "login": "root",
                                   "schema": mysql_db.name, "extra": extra}))
    hooks = {
        "BoundedMySqlHook": BoundedMySqlHook(mysql_conn_id="mysql_stalling"),
        "MySqlQueryOperator": MySqlQueryOperator(task_id="q", conn_id="mysql_stalling", sql="SELECT 1").get_db_hook(),
    }
    connections = {name: hook.get_conn() for name, hook in hooks.items()}
    for conn in connections.values():
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        assert cursor.fetchall() == ((1,),)
    relay.stall()
    for name, conn in connections.items():
        started = time.monotonic()
        with pytest.raises(MySQLdb.OperationalError):
            conn.cursor().execute("SELECT 1")
        waited = time.monotonic() - started
        # libmariadb retries a timed-out read once or twice: a few read_timeouts, never for ever.
        assert 1.5 <= waited < 15, (name, waited)

    # Without an extra, the defaults apply (the driver is given a read timeout at all).
    from cloudtrail_mysql.operators import MYSQL_TIMEOUTS

    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_PLAIN", mysql_db.url)
    plain = BoundedMySqlHook(mysql_conn_id="mysql_plain")
    config: dict[str, Any] = {}
    monkeypatch.setattr(MySQLdb, "connect", lambda **kwargs: config.update(kwargs))
    plain.get_conn()
    assert {name: config[name] for name in MYSQL_TIMEOUTS} == MYSQL_TIMEOUTS


# -- a load stopped by its timeout, then retried --------------------------------------------------
def _waiting_transactions(mysql_db: Any, ours: int) -> int:
    rows = mysql_db.query(
        "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT' AND trx_mysql_thread_id <> %s", ours
    )
    return int(rows[0][0])


def _load_batch_tries(airflow_env: dict[str, str], day: date) -> list[tuple[int, str]]:
    db = sqlite3.connect(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    try:
        return db.execute(
            "SELECT ti.try_number, ti.state FROM task_instance ti JOIN dag_run r ON r.run_id = ti.run_id AND r.dag_id = ti.dag_id "
            "WHERE ti.dag_id = 'cloudtrail_daily' AND ti.task_id = 'load_batch' AND r.logical_date LIKE ?",
            (f"{day.isoformat()}%",),
        ).fetchall()
    finally:
        db.close()


@pytest.mark.slow
def test_a_stalled_load_is_stopped_by_its_timeout_and_its_retry_loads_exactly_the_day(
    airflow_env: dict[str, str], s3_bucket: tuple[Any, str], mysql_db: Any, s3_server: str
) -> None:
    import gzip

    from cloudtrail_mysql.writer import MySqlWriter

    client, bucket = s3_bucket
    events = []
    for item in day_files(DAY, records=120, accounts=("111122223333",), regions=("us-east-1",), files_per_region=4, digests=False):
        client.put_object(Bucket=bucket, Key=item.key, Body=item.body)
        events += json.loads(gzip.decompress(item.body))["Records"]
    conn = mysql_db.connect()
    try:
        writer = MySqlWriter(conn, "logs")
        writer.ensure_schema()
        writer.ensure_day_partitions([DAY])
    finally:
        conn.close()

    # The test holds a lock on the whole (empty) logs table: every file's rows wait for it, as on a
    # stuck server, while planning (which writes no rows) goes through.
    locker = mysql_db.connect()
    locker.autocommit(False)
    cursor = locker.cursor()
    cursor.execute("SELECT CONNECTION_ID()")
    ours = int(cursor.fetchone()[0])
    cursor.execute("SELECT * FROM logs FOR UPDATE")

    env = {**os.environ, **airflow_env, **airflow_connections(s3_server, mysql_db.url), "CLOUDTRAIL_BUCKET": bucket,
           "CLOUDTRAIL_MYSQL_LOAD_TIMEOUT_MINUTES": "0.1", "CLOUDTRAIL_MYSQL_RETRY_DELAY_MINUTES": "0.05"}
    run = subprocess.Popen([str(AIRFLOW), "dags", "test", "cloudtrail_daily", DAY.isoformat()], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(run.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not _waiting_transactions(mysql_db, ours):
            assert run.poll() is None and time.monotonic() < deadline, "".join(output)[-4000:]
            time.sleep(0.2)
        # The load waits on the lock; its 6 s timeout goes by; only then is the lock let go.
        time.sleep(6 + 4)
        assert run.poll() is None
    finally:
        locker.rollback()
        locker.close()
    assert run.wait(timeout=300) == 0, "".join(output)[-6000:]
    reader.join(timeout=10)
    text = "".join(output)

    assert "AirflowTaskTimeout" in text or "Timeout" in text, text[-4000:]
    # Stopped once by its timeout, then retried once: two tries, the last a success.
    assert _load_batch_tries(airflow_env, DAY) == [(2, "success")]
    assert mysql_db.count("logs") == len(events) == 120
    assert mysql_db.query("SELECT COUNT(DISTINCT eventID) FROM logs")[0][0] == 120
    assert mysql_db.query("SELECT status, COUNT(*) FROM logs_files GROUP BY status") == [("loaded", 4)]


@pytest.mark.slow
def test_a_day_with_too_many_batches_fails_at_once_without_retries(
    airflow_env: dict[str, str], s3_bucket: tuple[Any, str], mysql_db: Any, s3_server: str
) -> None:
    client, bucket = s3_bucket
    day = DAY + timedelta(days=1)
    for item in day_files(day, records=60, accounts=("111122223333",), regions=("us-east-1",), files_per_region=3, digests=False):
        client.put_object(Bucket=bucket, Key=item.key, Body=item.body)
    env = {**os.environ, **airflow_env, **airflow_connections(s3_server, mysql_db.url), "CLOUDTRAIL_BUCKET": bucket,
           "AIRFLOW__CORE__MAX_MAP_LENGTH": "2"}
    started = time.monotonic()
    run = subprocess.run([str(AIRFLOW), "dags", "test", "cloudtrail_daily", day.isoformat(), "--conf", '{"batch_files": 1}'],
                         env=env, capture_output=True, text=True, timeout=600)
    text = run.stdout + run.stderr
    assert run.returncode != 0
    assert "the day needs 3 batches, more than the 2" in text, text[-4000:]
    # Failed, not up for retry: the default retry delay (2 minutes) was never waited.
    assert time.monotonic() - started < 110
    assert mysql_db.count("logs") == 0
