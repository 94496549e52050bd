"""make demo: a sample CloudTrail day through the daily DAG, against the local MySQL.

1. generates a realistic day (two accounts, three regions, an organization trail, digest files)
   and the day after it, into a local S3 server (moto, over HTTP on 127.0.0.1);
2. runs ``airflow dags test cloudtrail_daily <day>`` with its own Airflow home under .demo/;
3. loads the same day from a folder with ``cloudtrail-mysql import`` into a second table, to
   show the command and that both give the same rows;
4. prints the tutorial's questions answered from the table, and the day's security findings.

Database: DEMO_MYSQL_URL or mysql://root@127.0.0.1:3306/cloudtrail_demo, dropped and made anew.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO = REPO / ".demo"
DAY = date.fromisoformat(os.environ.get("DEMO_DAY", "2017-04-10"))
RECORDS = int(os.environ.get("DEMO_RECORDS", "20000"))
# The demo's own database, emptied at each start (never the `cloudtrail` database real loads use).
URL = os.environ.get("DEMO_MYSQL_URL", "mysql://root@127.0.0.1:3306/cloudtrail_demo")


def run(*command: str, env: dict[str, str] | None = None, quiet: bool = False) -> subprocess.CompletedProcess:
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, env={**os.environ, **(env or {})}, text=True, capture_output=quiet)
    if result.returncode != 0:
        if quiet:
            print(result.stdout[-5000:], result.stderr[-5000:], sep="\n")
        sys.exit(f"demo: {command[0]} failed with exit code {result.returncode}")
    return result


def main() -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from cloudtrail_mysql.cli import MySqlTarget, ensure_database
    from cloudtrail_mysql.sample import day_files, write_files

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the S3 server's request log
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    fake = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(fake)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        bucket = "demo-cloudtrail"
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=bucket)
        uploaded = events = 0
        for day in (DAY, DAY + timedelta(days=1)):
            for generated in (
                day_files(day, records=RECORDS),
                day_files(day, records=RECORDS // 10, organization_id="o-demo123456", accounts=("777788889999",), regions=("us-west-2",)),
            ):
                for item in generated:
                    client.put_object(Bucket=bucket, Key=item.key, Body=item.body)
                    uploaded += 1
                    events += item.records if day == DAY else 0
        print(f"uploaded {uploaded} objects to s3://{bucket} on {endpoint} ({events} events delivered on {DAY})")

        home = DEMO / "airflow"
        home.mkdir(parents=True, exist_ok=True)
        database = urlsplit(URL).path.lstrip("/") or "cloudtrail"
        airflow_env = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {"conn_type": "aws", "login": "demo", "password": "demo", "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
            ),
            "AIRFLOW_CONN_MYSQL_DEFAULT": URL,
            "CLOUDTRAIL_BUCKET": bucket,
        }
        # The Airflow connection names an existing database: make it anew.
        target = MySqlTarget.from_url(URL)
        conn = target.connect(with_database=False)
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {target.database}")
        conn.close()
        ensure_database(target, "logs")
        run(str(BIN / "airflow"), "db", "migrate", env=airflow_env, quiet=True)
        started = time.monotonic()
        run(str(BIN / "airflow"), "dags", "test", "cloudtrail_daily", DAY.isoformat(), env=airflow_env, quiet=True)
        seconds = time.monotonic() - started
        print(f"airflow dags test cloudtrail_daily {DAY}: success in {seconds:.1f} s (whole run, Airflow start-up included)")

        folder = DEMO / "files"
        write_files(folder, day_files(DAY, records=RECORDS))
        write_files(folder, day_files(DAY, records=RECORDS // 10, organization_id="o-demo123456", accounts=("777788889999",), regions=("us-west-2",)))
        run(str(BIN / "cloudtrail-mysql"), "import", str(folder), "--mysql-url", URL, "--table", "logs_from_folder")
    finally:
        server.stop()
    run(str(BIN / "cloudtrail-mysql"), "report", "--mysql-url", URL)
    run(str(BIN / "cloudtrail-mysql"), "findings", "--day", DAY.isoformat(), "--limit", "3", "--mysql-url", URL)
    print(f"\nDone. Query it yourself: mysql -h 127.0.0.1 -u root {database} -e 'SELECT COUNT(*) FROM logs'")


if __name__ == "__main__":
    main()
