"""``CloudTrailToMySqlOperator``: load a batch of CloudTrail files from S3 into MySQL.

Thin by design: S3 comes from ``S3Hook`` (its connection carries credentials, region, endpoint_url
and botocore retry settings), MySQL from ``MySqlHook``; reading, parsing and writing are the same
core functions the command-line loader uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloudtrail_mysql.compat import AirflowException, AirflowFailException, BaseOperator, BaseOperatorLink
from cloudtrail_mysql.front import LoadOptions, LoadSummary, open_writers, run_load
from cloudtrail_mysql.mysql_errors import MySqlSetupError
from cloudtrail_mysql.partitions import NotPartitioned
from cloudtrail_mysql.sql import validate_identifier, validate_table_name

if TYPE_CHECKING:
    from airflow.sdk import Context


class CloudTrailToMySqlOperator(BaseOperator):
    """Load CloudTrail log files from S3 into a MySQL table, each file whole or not at all.

    The files are given as ``ranges``, key ranges as planned by ``cloudtrail_mysql.layout.plan_batches``
    (what the daily DAG maps): dicts of prefix, start_after and last_key, the keys within prefix after
    start_after up to and including last_key (None: to the end). Files already loaded (the manifest table) are skipped,
    so retries and reruns never duplicate rows. A bad file does not stop the others: the task
    loads everything it can, then fails naming every file that could not be loaded.

    :param bucket: the S3 bucket holding the CloudTrail files
    :param ranges: key ranges to load, each a dict with prefix, start_after and last_key
    :param table: the logs table (validated identifier); created if missing
    :param aws_conn_id: Airflow connection for S3 (``endpoint_url`` in its extra for MinIO and tests)
    :param mysql_conn_id: Airflow connection for MySQL
    :param include_insight: also load CloudTrail-Insight files
    :param include_network_activity: also load CloudTrail-NetworkActivity files
    :param load_method: "auto" (LOAD DATA LOCAL INFILE where the server allows it, else INSERTs),
        "load_data" or "insert"
    :param parallel_files: files loaded at once by this task, each on its own MySQL connection
        (threads: while one file is parsed, another is written by the server)
    :param read_ahead_files: files read from S3 ahead of the ones being loaded (threads: an S3
        GET waits tens of milliseconds; at most about 64 MB ahead)
    :param parse_ahead: parse each connection's next file while the server loads the current one
        (a thread per connection; off only when the server shares this worker's busy cores)
    :param max_file_bytes: most JSON a file may inflate to (bytes, or "1G"); default
        ``CLOUDTRAIL_MYSQL_MAX_FILE_BYTES`` or 1 GiB. A larger file fails, named
    :param max_record_bytes: largest record, as JSON and as its row (bytes, or "1M"); default
        ``CLOUDTRAIL_MYSQL_MAX_RECORD_BYTES`` or 1 MiB. A file holding a larger one fails, named
    :param retry_seconds: how long a lost MySQL server is waited for before files fail; default
        ``CLOUDTRAIL_MYSQL_RETRY_SECONDS`` or 60
    :return: a summary for XCom: files, loaded, already_loaded, skipped, failed, rows, seconds
    """

    template_fields: Sequence[str] = (
        "bucket", "ranges", "table", "aws_conn_id", "mysql_conn_id", "parallel_files",
    )
    ui_color = "#f9c915"

    def __init__(
        self,
        *,
        bucket: str,
        ranges: list[dict[str, Any]],
        table: str = "logs",
        aws_conn_id: str | None = "aws_default",
        mysql_conn_id: str = "mysql_default",
        include_insight: bool = False,
        include_network_activity: bool = False,
        load_method: str = "auto",
        parallel_files: int | str = 2,
        read_ahead_files: int = 8,
        parse_ahead: bool = True,
        max_file_bytes: int | str | None = None,
        max_record_bytes: int | str | None = None,
        retry_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket = bucket
        self.ranges = ranges
        self.table = table
        self.aws_conn_id = aws_conn_id
        self.mysql_conn_id = mysql_conn_id
        self.include_insight = include_insight
        self.include_network_activity = include_network_activity
        self.load_method = load_method
        self.parallel_files = parallel_files
        self.read_ahead_files = read_ahead_files
        self.parse_ahead = parse_ahead
        self.max_file_bytes = max_file_bytes
        self.max_record_bytes = max_record_bytes
        self.retry_seconds = retry_seconds

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.providers.mysql.hooks.mysql import MySqlHook

        from cloudtrail_mysql.layout import iter_batch
        from cloudtrail_mysql.sources import fetch

        options = LoadOptions.from_flags(
            table=self.table,
            include_insight=self.include_insight,
            include_network_activity=self.include_network_activity,
            method=self.load_method,
            parse_ahead=self.parse_ahead,
            read_ahead=int(self.read_ahead_files),
            max_file_bytes=self.max_file_bytes,
            max_record_bytes=self.max_record_bytes,
            retry_seconds=self.retry_seconds,
        )
        client = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        # local_infile lets the writer use LOAD DATA LOCAL INFILE where the server allows it.
        hook = MySqlHook(mysql_conn_id=self.mysql_conn_id, local_infile=self.load_method != "insert")
        summary = LoadSummary()
        writers: list[Any] = []

        def connect() -> Any:
            return _connect_with_timeouts(hook)

        try:
            writers.extend(open_writers(connect, options))
            writers[0].ensure_schema()
            sources = list(iter_batch(client, self.bucket, self.ranges))
            summary.files = len(sources)
            self.log.info("%d files to load into %s", len(sources), options.table)
            # The hook caches its Airflow connection, so the threads' reconnects only dial MySQL.
            if len(sources) > 1 and int(self.parallel_files) > 1:
                count = min(int(self.parallel_files), len(sources)) - 1
                writers.extend(open_writers(connect, options, count, writers[0].logs_table))
            for result in summary.tally(run_load(sources, lambda s: fetch(s, client), writers, options)):
                if result.status == "failed":
                    self.log.error("FAILED %s", result.detail)
                elif result.status == "loaded":
                    self.log.info("%s: %d rows in %.2f s %s", result.location, result.rows, result.seconds, result.detail)
                else:
                    self.log.info("%s: %s (%s)", result.location, result.status, result.detail)
        except MySqlSetupError as exc:
            raise AirflowFailException(f"MySQL connection {self.mysql_conn_id!r}: {exc}") from None
        except NotPartitioned as exc:
            raise AirflowFailException(str(exc)) from None
        finally:
            for writer in writers:
                writer.conn.close()
        self.log.info("batch: %s", summary.finish().line())
        if summary.failures:
            raise AirflowException(
                f"{len(summary.failures)} file(s) could not be loaded (the others were):\n"
                + "\n".join(failure.detail for failure in summary.failures)
            )
        return summary.as_dict()

    # -- OpenLineage (read by apache-airflow-providers-openlineage when it is installed) -----------
    def get_openlineage_facets_on_start(self) -> Any:
        """What this task reads and writes, as the Amazon and MySQL providers name them: the S3 key
        prefixes (namespace ``s3://<bucket>``) and the table (``mysql://<host>:<port>``, ``<database>.<table>``)."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        inputs = [Dataset(namespace=f"s3://{self.bucket}", name=prefix) for prefix in self.lineage_prefixes()]
        table = self.lineage_table()
        return OperatorLineage(inputs=inputs, outputs=[Dataset(namespace=table["namespace"], name=table["name"])])

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_start()

    def lineage_prefixes(self) -> list[str]:
        """The S3 key prefixes this task reads: its ranges' folders, once each."""
        return sorted({str(r["prefix"]) for r in self.ranges or ()})

    def lineage_table(self) -> dict[str, str]:
        """The logs table as an OpenLineage dataset's namespace and name (the MySQL provider's naming)."""
        server, database = mysql_location(self.mysql_conn_id)
        return {"namespace": server, "name": f"{database}.{validate_table_name(self.table)}"}


def mysql_location(mysql_conn_id: str) -> tuple[str, str]:
    """``mysql://<host>:<port>`` and the database of a MySQL connection, as the MySQL provider
    names them for OpenLineage (``get_openlineage_database_info``) and in its Asset URIs."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    hook = MySqlHook(mysql_conn_id=mysql_conn_id)
    connection = hook.get_connection(mysql_conn_id)
    # What get_openlineage_database_info returns, without needing the OpenLineage provider.
    authority = hook.get_openlineage_authority_part(connection, default_port=3306)
    return f"{hook.get_openlineage_database_dialect(connection)}://{authority}", str(hook.schema or connection.schema)


def table_asset(mysql_conn_id: str, table: str) -> Any:
    """The Asset of a MySQL table, ``mysql://<host>:<port>/<database>/<table>``, the URI the MySQL
    provider's asset factory gives it (so OpenLineage and other DAGs know it as that table)."""
    from cloudtrail_mysql.compat import Asset

    server, database = mysql_location(mysql_conn_id)
    return Asset(f"{server}/{database}/{validate_identifier(table)}")


def emit_table_asset(task: Any, context: Any, mysql_conn_id: str, table: str) -> None:
    """Put the table's Asset behind every AssetAlias among the task's outlets (an Asset event for it).
    Airflow 3 only: Airflow 2.11's ``dags test`` does not store the DAG's aliases, and an event
    through one fails the task there; the x-cloudtrail-mysql Datasets are updated all the same."""
    from cloudtrail_mysql.compat import SOURCES, AssetAlias

    if SOURCES["AssetAlias"] != "airflow.sdk":
        return

    aliases = [outlet for outlet in getattr(task, "outlets", None) or () if isinstance(outlet, AssetAlias)]
    if aliases:
        asset = table_asset(mysql_conn_id, table)
        for alias in aliases:
            context["outlet_events"][alias].add(asset)


# Bounded waits on every MySQL statement, as the command has them: a server that stops answering
# fails the statement (and the file is retried) instead of holding the task forever. The
# connection's extra may set its own.
MYSQL_TIMEOUTS = {"connect_timeout": 10, "read_timeout": 300, "write_timeout": 15}


def _connect_with_timeouts(hook: Any, read_timeout: int | None = None) -> Any:
    """``hook.get_conn()`` with MYSQL_TIMEOUTS, for the mysqlclient driver (the hook passes none).

    ``read_timeout``: for the day's tasks, whose one statement (an index built over a day of
    14M events, a scan of it) may rightly run longer than any file's."""
    connection = getattr(hook, "connection", None) or hook.get_connection(hook.get_conn_id())
    configure = getattr(hook, "_get_conn_config_mysql_client", None)
    if connection.extra_dejson.get("client", "mysqlclient") != "mysqlclient" or configure is None:
        return hook.get_conn()
    import MySQLdb

    config = configure(connection)
    defaults = {**MYSQL_TIMEOUTS, **({"read_timeout": read_timeout} if read_timeout else {})}
    for name, default in defaults.items():
        config.setdefault(name, int(connection.extra_dejson.get(name, default)))
    return MySQLdb.connect(**config)


from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator  # noqa: E402


class MySqlQueryOperator(SQLExecuteQueryOperator):
    """``SQLExecuteQueryOperator`` on a MySQL connection, with ``MYSQL_TIMEOUTS`` on its connection.

    Everything else (templated SQL from include/sql, split statements, parameters, its OpenLineage
    facets) is the common.sql operator's own.
    """

    template_fields: Sequence[str] = (*SQLExecuteQueryOperator.template_fields, "asset_table")

    def __init__(self, *, asset_table: str | None = None, **kwargs: Any) -> None:
        """``asset_table``: a table whose Asset (``table_asset``) goes behind the AssetAliases among
        the outlets once the SQL has run."""
        super().__init__(**kwargs)
        self.asset_table = asset_table

    def post_execute(self, context: Any, result: Any = None) -> None:
        super().post_execute(context, result)
        if self.asset_table:
            emit_table_asset(self, context, str(self.conn_id), self.asset_table)

    def get_db_hook(self) -> Any:
        from cloudtrail_mysql.hooks import BoundedMySqlHook

        if getattr(self, "_bounded_hook", None) is None:
            self._bounded_hook = BoundedMySqlHook(mysql_conn_id=self.conn_id, **(self.hook_params or {}))
            if self.database:
                self._bounded_hook.schema = self.database
        return self._bounded_hook


# -- the day report -------------------------------------------------------------------------------
DAY_REPORT_XCOM_KEY = "day_report_url"


class DayReportLink(BaseOperatorLink):
    """The task's "Day report" button: the page where the report task put it (XCom ``day_report_url``)."""

    name = "Day report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.providers.common.compat.sdk import XCom

        return XCom.get_value(ti_key=ti_key, key=DAY_REPORT_XCOM_KEY) or ""


class CloudTrailDayReportOperator(BaseOperator):
    """Write a loaded day's HTML report where people can open it, and link it from the task.

    ``report_location``: ``s3://bucket/prefix/`` (written with the AWS connection, as text/html),
    any other URL that ``ObjectStoragePath`` knows (``file:///srv/reports/``, ``gs://...`` with its
    fsspec filesystem installed), or empty: a folder on the worker, ``CLOUDTRAIL_MYSQL_REPORT_DIR``
    or ``<base_log_folder>/cloudtrail_reports``, which only that machine can open (fine for
    ``airflow dags test``). The page goes to ``<location>/<table>/<day>.html``; the task log and
    the task's "Day report" button (``DayReportLink``) give its address.

    :return: for XCom: day, files (by manifest status), report (where it went), url (the link)
    """

    template_fields: Sequence[str] = ("day", "table", "mysql_conn_id", "aws_conn_id", "report_location", "controls_file")
    operator_extra_links = (DayReportLink(),)
    ui_color = "#c9e7f5"

    def __init__(
        self,
        *,
        day: str,
        table: str = "logs",
        mysql_conn_id: str = "mysql_default",
        aws_conn_id: str | None = "aws_default",
        report_location: str | None = None,
        controls_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.day = day
        self.table = table
        self.mysql_conn_id = mysql_conn_id
        self.aws_conn_id = aws_conn_id
        self.report_location = report_location
        self.controls_file = controls_file

    def execute(self, context: Context) -> dict[str, Any]:
        from cloudtrail_mysql.findings import load_controls
        from cloudtrail_mysql.hooks import BoundedMySqlHook
        from cloudtrail_mysql.report import day_report, day_report_name
        from cloudtrail_mysql.sql import validate_identifier

        table = validate_identifier(self.table)
        titles = {control.id: control.title for control in load_controls(self.controls_file or None)}
        hook = BoundedMySqlHook(mysql_conn_id=self.mysql_conn_id)
        page, files = day_report(lambda query, parameters: hook.get_records(query, parameters=parameters), table, self.day, titles)
        where, url = self._publish(page, day_report_name(table, self.day))
        print(f"{self.day}: {files}")
        print(f"Day report: {where}")
        if url != where:
            print(f"Day report, to open: {url}")
        context["ti"].xcom_push(key=DAY_REPORT_XCOM_KEY, value=url)
        return {"day": self.day, "files": files, "report": where, "url": url}

    def _publish(self, page: str, name: str) -> tuple[str, str]:
        """Write the page under the report location; (where it is, a link a browser can open)."""
        import os
        from pathlib import Path

        location = (self.report_location or "").strip()
        if not location:
            from airflow.configuration import conf

            directory = Path(os.environ.get("CLOUDTRAIL_MYSQL_REPORT_DIR")
                             or Path(conf.get("logging", "base_log_folder")) / "cloudtrail_reports")
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(page, encoding="utf-8")
            return path.resolve().as_uri(), path.resolve().as_uri()
        if location.startswith("s3://"):
            from urllib.parse import quote

            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            from cloudtrail_mysql.layout import check_bucket_name

            bucket, _, prefix = location.removeprefix("s3://").partition("/")
            check_bucket_name(bucket)
            key = f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name
            S3Hook(aws_conn_id=self.aws_conn_id).get_conn().put_object(
                Bucket=bucket, Key=key, Body=page.encode("utf-8"), ContentType="text/html; charset=utf-8"
            )
            # The S3 console's page of the object: opens for whoever may read it, and shares no secret.
            return f"s3://{bucket}/{key}", f"https://console.aws.amazon.com/s3/object/{bucket}?prefix={quote(key)}"
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        stored = ObjectStoragePath(location.rstrip("/") + "/" + name)
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(page, encoding="utf-8")
        return str(stored), str(stored)
