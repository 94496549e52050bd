"""Shared fixtures and helpers: a real MariaDB/MySQL server, a real (moto) S3 server over HTTP,
generated CloudTrail days, and the installed ``cloudtrail-mysql`` command.

Fixtures (names are relied upon by other test modules, keep them stable):

* ``mysql_server`` (session)  -- checks MySQL answers at 127.0.0.1:3306; fails clearly otherwise.
* ``mysql_db`` (function)     -- a fresh utf8mb4 database ``ctm_test_<hex>``, dropped afterwards;
  has ``.name``, ``.url``, ``.connect()`` and ``.query(sql, *params)``.
* ``absent_database`` (function) -- the name of a database that does not exist (dropped afterwards).
* ``s3_server`` (session)     -- a moto ``ThreadedMotoServer`` on 127.0.0.1; yields its endpoint URL
  and sets fake AWS credentials in the environment for the session.
* ``s3_env`` (session)        -- environment additions for running the command against that server.
* ``s3_bucket`` (function)    -- ``(client, bucket_name)``: a fresh bucket on that server.
* ``sample_day`` (function)   -- a small generated CloudTrail day written under ``tmp_path``.
* ``run_main`` (function)     -- the command in-process (``cloudtrail_mysql.cli.main``), called as
  ``run_cli`` is; for tests where a separate process is not the point.

Helpers (import them with ``from conftest import ...``): ``run_cli`` (the installed command, in a
process of its own: exit codes, signals, memory, timeouts), ``import_summary`` (the counts of its
summary line), ``make_sample_day``, ``upload_files``, ``read_events``, ``SampleDay``, ``mysql_user``
(a MySQL user with only some grants) and ``airflow_connections`` (the DAG's connections as
environment variables).

Expected values in tests are computed from the generated files with the standard library only
(gzip + json), never with the project's own parsing code.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

MYSQL_HOST = "127.0.0.1"
MYSQL_PORT = 3306
MYSQL_USER = "root"
MYSQL_PASSWORD = ""

CLI = Path(sys.executable).parent / "cloudtrail-mysql"

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would send boto3 somewhere else than the test server, or use real credentials.
_AWS_VARIABLES_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)

DEFAULT_DAY = date(2017, 4, 10)
DEFAULT_ACCOUNTS = ("111122223333", "444455556666")
DEFAULT_REGIONS = ("us-east-1", "eu-west-1")


# -- MySQL ----------------------------------------------------------------------------------------
def _mysql_connect(database: str | None = None, **kwargs: Any) -> Any:
    import MySQLdb

    params: dict[str, Any] = dict(
        host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password=MYSQL_PASSWORD, charset="utf8mb4"
    )
    if database is not None:
        params["database"] = database
    params.update(kwargs)
    return MySQLdb.connect(**params)


@dataclass(frozen=True)
class MySqlServer:
    host: str
    port: int
    user: str
    version: str

    def connect(self, database: str | None = None) -> Any:
        return _mysql_connect(database)


@dataclass(frozen=True)
class MySqlDatabase:
    """A throwaway database: ``name``, ``url`` (for --mysql-url), ``connect()`` and ``query()``."""

    name: str
    url: str

    def connect(self) -> Any:
        """A new MySQLdb connection (utf8mb4) to this database; the caller closes it."""
        return _mysql_connect(self.name)

    def query(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection and return all rows."""
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute(statement, params or None)
            rows = list(cursor.fetchall()) if cursor.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def query_dicts(self, statement: str, *params: Any) -> list[dict[str, Any]]:
        """Like ``query`` but each row is a dict keyed by column name."""
        import MySQLdb.cursors

        conn = self.connect()
        try:
            cursor = conn.cursor(MySQLdb.cursors.DictCursor)
            cursor.execute(statement, params or None)
            return list(cursor.fetchall())
        finally:
            conn.close()

    def tables(self) -> set[str]:
        return {
            row[0]
            for row in self.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", self.name
            )
        }

    def count(self, table: str = "logs") -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {table}")[0][0])


def database_exists(name: str) -> bool:
    conn = _mysql_connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s", (name,))
        return cursor.fetchone()[0] > 0
    finally:
        conn.close()


def drop_database(name: str) -> None:
    conn = _mysql_connect()
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def unique_database_name() -> str:
    return f"ctm_test_{secrets.token_hex(6)}"


def mysql_url(database: str, password: str | None = None) -> str:
    auth = MYSQL_USER if password is None else f"{MYSQL_USER}:{password}"
    return f"mysql://{auth}@{MYSQL_HOST}:{MYSQL_PORT}/{database}"


@dataclass(frozen=True)
class MySqlUser:
    """A MySQL user made by ``mysql_user``: its name, its secret password and its database."""

    name: str
    password: str
    database: str

    def url(self, password: str | None = None) -> str:
        return f"mysql://{self.name}:{password or self.password}@{MYSQL_HOST}:{MYSQL_PORT}/{self.database}"


@contextmanager
def mysql_user(db: MySqlDatabase, grants: str, table: str | None = None) -> Iterator[MySqlUser]:
    """A MySQL user with only ``grants`` on the test database (or on one ``table`` of it) and a secret
    password, at every host the tests connect from; dropped afterwards."""
    user = MySqlUser(f"ctm_u_{secrets.token_hex(5)}", f"S3cr3t-{secrets.token_hex(8)}", db.name)
    on = f"`{db.name}`.`{table}`" if table else f"`{db.name}`.*"
    hosts = ("%", "localhost", "127.0.0.1")
    conn = db.connect()
    try:
        cursor = conn.cursor()
        try:
            for host in hosts:
                cursor.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user.name, host, user.password))
                cursor.execute(f"GRANT {grants} ON {on} TO %s@%s", (user.name, host))
            yield user
        finally:
            for host in hosts:
                cursor.execute("DROP USER IF EXISTS %s@%s", (user.name, host))
    finally:
        conn.close()


@pytest.fixture(scope="session")
def mysql_server() -> MySqlServer:
    """The MySQL/MariaDB server the tests use; fails (does not skip) when it does not answer."""
    try:
        import MySQLdb
    except ImportError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"mysqlclient (MySQLdb) is not installed in this environment: {exc}", pytrace=False)
    try:
        conn = _mysql_connect(connect_timeout=5)
    except MySQLdb.Error as exc:
        pytest.fail(
            f"no MySQL/MariaDB server answers at {MYSQL_HOST}:{MYSQL_PORT} as user {MYSQL_USER!r} "
            f"with an empty password ({exc}). Start one (e.g. MariaDB 10.11) before running these tests.",
            pytrace=False,
        )
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT VERSION()")
        version = str(cursor.fetchone()[0])
    finally:
        conn.close()
    return MySqlServer(MYSQL_HOST, MYSQL_PORT, MYSQL_USER, version)


@pytest.fixture
def mysql_db(mysql_server: MySqlServer) -> Iterable[MySqlDatabase]:
    """A fresh, empty utf8mb4 database with a unique name, dropped after the test."""
    name = unique_database_name()
    conn = _mysql_connect()
    try:
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    try:
        yield MySqlDatabase(name=name, url=mysql_url(name))
    finally:
        drop_database(name)


@pytest.fixture
def absent_database(mysql_server: MySqlServer) -> Iterable[str]:
    """The name of a database that does not exist, for what must not create one; dropped afterwards,
    should it have been made all the same."""
    name = unique_database_name()
    try:
        yield name
    finally:
        drop_database(name)


# -- S3 (moto server over real HTTP) ---------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_server() -> Iterable[str]:
    """A moto S3 server on 127.0.0.1 (free port), for the whole session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        for name in _AWS_VARIABLES_TO_CLEAR:
            patch.delenv(name, raising=False)
        for name, value in FAKE_AWS_ENV.items():
            patch.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture(scope="session")
def s3_env(s3_server: str) -> dict[str, str]:
    """Environment for running the command against the moto server (pass as run_cli(env=...))."""
    return {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": s3_server, "AWS_ENDPOINT_URL_S3": s3_server}


def s3_client_for(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=FAKE_AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def s3_bucket(s3_server: str) -> Iterable[tuple[Any, str]]:
    """A fresh, uniquely named bucket on the moto server: yields (boto3 s3 client, bucket name)."""
    client = s3_client_for(s3_server)
    name = f"ctm-test-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    try:
        yield client, name
    finally:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)


# -- generated CloudTrail days -------------------------------------------------------------------
@dataclass
class SampleDay:
    """A generated day written under ``root`` (keys become paths); ``files`` are the SampleFiles."""

    root: Path
    files: list[Any] = field(default_factory=list)

    def path(self, item: Any) -> Path:
        return self.root / item.key

    @property
    def log_files(self) -> list[Any]:
        """Event log files, told apart by CloudTrail's folder layout (not by project code)."""
        return [f for f in self.files if "/CloudTrail/" in f"/{f.key}"]

    @property
    def digest_files(self) -> list[Any]:
        return [f for f in self.files if "/CloudTrail-Digest/" in f"/{f.key}"]

    @property
    def insight_files(self) -> list[Any]:
        return [f for f in self.files if "/CloudTrail-Insight/" in f"/{f.key}"]

    def events(self, files: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """The events of the given files (default: the log files), read back from disk with the stdlib."""
        found: list[dict[str, Any]] = []
        for item in self.log_files if files is None else files:
            found.extend(read_events(self.path(item)))
        return found


def read_events(path: Path | str) -> list[dict[str, Any]]:
    """The Records of a CloudTrail file, with gzip + json from the standard library."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    document = json.loads(data)
    return list(document.get("Records", []))


def make_sample_day(
    out: Path,
    *,
    records: int = 600,
    accounts: Sequence[str] = DEFAULT_ACCOUNTS,
    regions: Sequence[str] = DEFAULT_REGIONS,
    day: date = DEFAULT_DAY,
    insight: bool = False,
    digests: bool = True,
    organization_id: str | None = None,
    seed: int = 7,
) -> SampleDay:
    """Generate a small day with cloudtrail_mysql.sample.day_files and write it under ``out``."""
    from cloudtrail_mysql.sample import day_files

    sample = SampleDay(root=Path(out))
    for item in day_files(
        day,
        records=records,
        accounts=accounts,
        regions=regions,
        organization_id=organization_id,
        digests=digests,
        insight=insight,
        seed=seed,
    ):
        target = sample.root / item.key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item.body)
        sample.files.append(item)
    return sample


@pytest.fixture
def sample_day(tmp_path: Path) -> SampleDay:
    """600 events, 2 accounts x 2 regions, with digest files, written under tmp_path/cloudtrail."""
    return make_sample_day(tmp_path / "cloudtrail")


def upload_files(client: Any, bucket: str, files: Iterable[Any], prefix: str = "") -> list[str]:
    """Put SampleFile objects (``.key``, ``.body``) into a bucket, under an optional key prefix."""
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    keys = []
    for item in files:
        key = base + item.key
        client.put_object(Bucket=bucket, Key=key, Body=item.body)
        keys.append(key)
    return keys


# -- the command ----------------------------------------------------------------------------------
def import_summary(output: subprocess.CompletedProcess[str] | str) -> dict[str, int]:
    """The counts of the import summary line ('N files loaded, N already loaded, ...; N rows ...') of
    a run of the command, or of its stdout."""
    stdout, stderr = (output, "") if isinstance(output, str) else (output.stdout, output.stderr)
    match = re.search(r"(\d+) files loaded, (\d+) already loaded, (\d+) skipped, (\d+) failed; (\d+) rows", stdout)
    assert match, f"no summary line in stdout:\n{stdout}\nstderr:\n{stderr}"
    keys = ("loaded", "already_loaded", "skipped", "failed", "rows")
    return dict(zip(keys, map(int, match.groups()), strict=True))


def run_cli(
    *args: Any, env: Mapping[str, str | None] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``cloudtrail-mysql`` command; ``env`` adds to (None: removes from) os.environ."""
    environment = dict(os.environ)
    environment.pop("CLOUDTRAIL_MYSQL_URL", None)
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [str(CLI), *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def run_main(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli``'s twin in-process: ``main(argv)`` with the same arguments and ``env``, its exit code
    and what it printed (capsys) as a CompletedProcess. No interpreter start-up per call."""
    import boto3

    from cloudtrail_mysql.cli import main

    def run(*args: Any, env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(arg) for arg in args]
        with monkeypatch.context() as patch:
            patch.delenv("CLOUDTRAIL_MYSQL_URL", raising=False)
            for name, value in (env or {}).items():
                if value is None:
                    patch.delenv(name, raising=False)
                else:
                    patch.setenv(name, value)
            patch.setattr(boto3, "DEFAULT_SESSION", None)  # credentials and endpoint from this environment
            capsys.readouterr()
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
            out, err = capsys.readouterr()
        return subprocess.CompletedProcess([str(CLI), *argv], code, out, err)

    return run


# -- Airflow --------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).parent / "airflow"


def airflow_connections(s3_endpoint: str, mysql_url: str) -> dict[str, str]:
    """The DAG's connections (aws_default to the test S3 server, mysql_default) as environment variables."""
    aws = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": FAKE_AWS_ENV["AWS_DEFAULT_REGION"]},
    }
    return {"AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws), "AIRFLOW_CONN_MYSQL_DEFAULT": mysql_url}


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for an isolated Airflow: its own home and SQLite metadata DB, this repo's folders."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    os.environ.update(env)
    migrated = subprocess.run([str(AIRFLOW), "db", "migrate"], env={**os.environ, **env}, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    if _airflow_version().startswith("3.0."):
        # Airflow 3.0's `dags test` runs a DAG that was never written to the metadata DB, so its
        # Assets are not active and each task with outlets fails (apache/airflow#51644; 3.1 writes
        # the DAG first). A deployment's DAG processor writes it, as `dags reserialize` does here.
        written = subprocess.run([str(AIRFLOW), "dags", "reserialize"], env={**os.environ, **env}, capture_output=True, text=True)
        assert written.returncode == 0, written.stderr[-3000:]
    return env


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need an isolated Airflow (``airflow_env``: db migrate, the airflow CLI) are marked
    ``airflow``, so that ``make test-quick`` (-m "not slow and not ui and not airflow") leaves them out."""
    for item in items:
        if "airflow_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.airflow)
