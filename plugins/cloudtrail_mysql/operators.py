"""``CloudTrailToMySqlOperator``: load a batch of CloudTrail files from S3 into MySQL.

Thin by design: S3 comes from ``S3Hook`` (its connection carries credentials, region, endpoint_url
and botocore retry settings), MySQL from ``MySqlHook``; reading, parsing and writing are the same
core functions the command-line loader uses.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from cloudtrail_mysql.compat import AirflowException, AirflowFailException, BaseOperator
from cloudtrail_mysql.loader import DEFAULT_KINDS, MySqlSetupError, load_files
from cloudtrail_mysql.partitions import NotPartitioned
from cloudtrail_mysql.records import FileKind, Limits
from cloudtrail_mysql.sql import validate_table_name
from cloudtrail_mysql.writer import MySqlWriter, SourceFile

if TYPE_CHECKING:
    from airflow.sdk import Context


class CloudTrailToMySqlOperator(BaseOperator):
    """Load CloudTrail log files from S3 into a MySQL table, each file whole or not at all.

    Give ``keys`` (a list of S3 keys), ``ranges`` (key ranges as planned by
    ``cloudtrail_mysql.layout.plan_batches``: dicts of prefix, start_after, last_key), or one
    range: the keys within ``prefix`` after ``start_after`` up to and including ``last_key``
    (None: to the end). Files already loaded (the manifest table) are skipped,
    so retries and reruns never duplicate rows. A bad file does not stop the others: the task
    loads everything it can, then fails naming every file that could not be loaded.

    :param bucket: the S3 bucket holding the CloudTrail files
    :param keys: explicit keys to load
    :param ranges: key ranges to load, each a dict with prefix, start_after and last_key
    :param prefix: a folder of keys to load (with start_after/last_key for a part of it)
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
        "bucket", "keys", "ranges", "prefix", "start_after", "last_key", "table", "aws_conn_id", "mysql_conn_id",
        "parallel_files",
    )
    ui_color = "#f9c915"

    def __init__(
        self,
        *,
        bucket: str,
        keys: list[str] | None = None,
        ranges: list[dict[str, Any]] | None = None,
        prefix: str | None = None,
        start_after: str | None = None,
        last_key: str | None = None,
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
        self.keys = keys
        self.ranges = ranges
        self.prefix = prefix
        self.start_after = start_after
        self.last_key = last_key
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

    def _sources(self, client: Any) -> list[SourceFile]:
        from cloudtrail_mysql.layout import iter_batch, iter_range

        if self.keys is not None:
            return [SourceFile(f"s3://{self.bucket}/{key}") for key in self.keys]
        if self.ranges is not None:
            return list(iter_batch(client, self.bucket, self.ranges))
        if self.prefix is None:
            raise AirflowException("give keys, ranges or prefix")
        return list(iter_range(client, self.bucket, self.prefix, self.start_after or None, self.last_key or None))

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.providers.mysql.hooks.mysql import MySqlHook

        from cloudtrail_mysql.sources import fetch

        table = validate_table_name(self.table)
        client = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        # local_infile lets the writer use LOAD DATA LOCAL INFILE where the server allows it.
        hook = MySqlHook(mysql_conn_id=self.mysql_conn_id, local_infile=self.load_method != "insert")
        kinds = set(DEFAULT_KINDS) | ({FileKind.INSIGHT} if self.include_insight else set())
        kinds |= {FileKind.NETWORK_ACTIVITY} if self.include_network_activity else set()
        started = time.monotonic()
        counts = {"loaded": 0, "already_loaded": 0, "skipped": 0, "failed": 0}
        rows = 0
        failed: list[str] = []
        writers: list[MySqlWriter] = []
        limits = Limits.from_env(self.max_file_bytes, self.max_record_bytes)

        def connect() -> Any:
            return _connect_with_timeouts(hook)

        def new_writer() -> MySqlWriter:
            return MySqlWriter(
                connect(), table, connect=connect, method=self.load_method, limits=limits, retry_seconds=self.retry_seconds
            )

        try:
            writers.append(new_writer())
            writers[0].ensure_schema()
            sources = self._sources(client)
            self.log.info("%d files to load into %s", len(sources), table)
            # The hook caches its Airflow connection, so the threads' reconnects only dial MySQL.
            for _ in range(min(max(1, int(self.parallel_files)), len(sources)) - 1):
                writers.append(new_writer())
            for result in load_files(
                sources, lambda s: fetch(s, client), writers, kinds, read_ahead=int(self.read_ahead_files),
                parse_ahead=self.parse_ahead,
            ):
                counts[result.status] += 1
                rows += result.rows
                if result.status == "failed":
                    failed.append(result.detail)
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
        seconds = time.monotonic() - started
        self.log.info(
            "batch: %d loaded, %d already loaded, %d skipped, %d failed; %d rows in %.1f s (%.0f rows/s)",
            counts["loaded"], counts["already_loaded"], counts["skipped"], counts["failed"],
            rows, seconds, rows / max(seconds, 1e-9),
        )
        if failed:
            raise AirflowException(
                f"{len(failed)} file(s) could not be loaded (the others were):\n" + "\n".join(failed)
            )
        return {"files": len(sources), **counts, "rows": rows, "seconds": round(seconds, 3)}


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


from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator  # noqa: E402


class MySqlQueryOperator(SQLExecuteQueryOperator):
    """``SQLExecuteQueryOperator`` on a MySQL connection, with ``MYSQL_TIMEOUTS`` on its connection.

    Everything else (templated SQL from include/sql, split statements, parameters, its OpenLineage
    facets) is the common.sql operator's own.
    """

    def get_db_hook(self) -> Any:
        from cloudtrail_mysql.hooks import BoundedMySqlHook

        if getattr(self, "_bounded_hook", None) is None:
            self._bounded_hook = BoundedMySqlHook(mysql_conn_id=self.conn_id, **(self.hook_params or {}))
            if self.database:
                self._bounded_hook.schema = self.database
        return self._bounded_hook
