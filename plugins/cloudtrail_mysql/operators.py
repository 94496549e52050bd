"""``CloudTrailToMySqlOperator``: load a batch of CloudTrail files from S3 into MySQL.

Thin by design: S3 comes from ``S3Hook`` (its connection carries credentials, region, endpoint_url
and botocore retry settings), MySQL from ``MySqlHook``; reading, parsing and writing are the same
core functions the command-line loader uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from cloudtrail_mysql.compat import AirflowException, AirflowFailException, BaseOperator
from cloudtrail_mysql.front import LoadOptions, LoadSummary, open_writers, run_load
from cloudtrail_mysql.mysql_errors import MySqlSetupError
from cloudtrail_mysql.partitions import NotPartitioned

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


# Bounded waits on every MySQL statement, as the command has them: a server that stops answering
# fails the statement (and the file is retried) instead of holding the task forever. The
# connection's extra may set its own.
MYSQL_TIMEOUTS = {"connect_timeout": 10, "read_timeout": 300, "write_timeout": 15}


def _connect_with_timeouts(hook: Any) -> Any:
    """``hook.get_conn()`` with MYSQL_TIMEOUTS, for the mysqlclient driver (the hook passes none)."""
    connection = getattr(hook, "connection", None) or hook.get_connection(hook.get_conn_id())
    configure = getattr(hook, "_get_conn_config_mysql_client", None)
    if connection.extra_dejson.get("client", "mysqlclient") != "mysqlclient" or configure is None:
        return hook.get_conn()
    import MySQLdb

    config = configure(connection)
    for name, default in MYSQL_TIMEOUTS.items():
        config.setdefault(name, int(connection.extra_dejson.get(name, default)))
    return MySQLdb.connect(**config)
