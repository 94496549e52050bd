"""cloudtrail_daily: load one day of CloudTrail logs from S3 into MySQL, then index and summarise it."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cloudtrail_mysql.compat import (
    DAG,
    Asset,
    AssetAlias,
    CronDataIntervalTimetable,
    Param,
    PokeReturnValue,
    TriggerRule,
    task,
)
from cloudtrail_mysql.operators import CloudTrailDayReportOperator, CloudTrailToMySqlOperator, MySqlQueryOperator
from cloudtrail_mysql.sql import TABLE_NAME_PATTERN, sql_dir

DOC_MD = """
### CloudTrail logs into MySQL, one day per run

The run for day **D** loads every CloudTrail log file that CloudTrail *delivered* on D: the keys
`[key_prefix/]AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/D/` for every account and region
found in the bucket (digest and aggregated files are left out; Insight and network-activity files
unless the params ask for them). Those files also
hold events from just before midnight of D-1, as CloudTrail delivers them a few minutes late.

1. D is the `day` param if given, else the run's logical date (a scheduled run for D starts at
   midnight after D, a backfill of D, or `airflow dags test cloudtrail_daily D`); `resolve_day` says it.
2. `plan_batches` waits until `delivery_delay_minutes` after D has ended (no wait for past days),
   creates the tables where missing and D's partition of the logs table, lists the day (delimiter
   listings, page by page) and cuts it into key ranges; `load_batch` is mapped over them, at most 4
   at a time per DAG.
3. `create_indexes` adds the tutorial's indexes where missing; `publish_day` swaps in a day that the
   command loaded into a table of its own (the DAG's own days load in place); `build_summaries` rebuilds the daily
   summary tables for every event day the files touched, reading only the partitions that hold them,
   and in the same scan of D's partition finds the events that match a security control (CIS
   CloudWatch.1-14, plus `controls_file`); `build_findings` rebuilds D's findings from them;
   `publish_findings` updates the findings Asset when there are any; `apply_retention` keeps the last
   `retention_days` delivery days (0: all) and empties older ones whole; `report_day` logs the day's
   totals and writes the HTML day report to `report_location` (S3 or any ObjectStoragePath URL;
   empty: the worker's log folder), linked from its log and its **Day report** button.

Files already loaded are skipped (manifest table `<table>_files`), so reruns, retries and backfills
never duplicate rows, and a rerun picks up files that arrived late. To load one day by hand:
**Trigger DAG w/ config**, set `day`, and run.
"""

def run_day(context: Any) -> str:
    """The delivery day a run loads: the day param, else the logical date's day (UTC)."""
    params = context["params"]
    if params.get("day"):
        return date.fromisoformat(str(params["day"])).isoformat()
    logical = context.get("logical_date")
    if logical is not None:
        return logical.astimezone(UTC).date().isoformat()
    # Airflow 3 manual run without a logical date: the last complete day.
    run_after = context["dag_run"].run_after
    return (run_after.astimezone(UTC) - timedelta(days=1)).date().isoformat()


def checked_day(context: Any) -> str:
    """The run's day, once the params are known to make sense: a bad value fails the task at once,
    without retries and before any call to MySQL or S3 (a retry would only fail the same way)."""
    from cloudtrail_mysql.compat import AirflowFailException
    from cloudtrail_mysql.layout import check_bucket_name, check_day
    from cloudtrail_mysql.sql import validate_table_name

    params = context["params"]
    try:
        day = run_day(context)
        check_day(date.fromisoformat(day), datetime.now(UTC).date())
        check_bucket_name(str(params["bucket"]))
        validate_table_name(str(params["table"]))
    except (ValueError, OverflowError) as exc:
        raise AirflowFailException(f"bad params: {exc}") from None
    return day


def _controls(params: Any) -> list[Any]:
    """The CIS controls and the controls_file's; a bad file fails the task without retries."""
    from cloudtrail_mysql.compat import AirflowFailException
    from cloudtrail_mysql.findings import ControlsFileError, load_controls

    try:
        return load_controls(params.get("controls_file"))
    except ControlsFileError as exc:
        raise AirflowFailException(str(exc)) from None


# S3 answers that no retry changes.
_S3_REFUSALS = {
    "NoSuchBucket": "the bucket does not exist",
    "AccessDenied": "access denied (the AWS connection's identity may not list the bucket)",
    "InvalidAccessKeyId": "the AWS access key is unknown",
    "SignatureDoesNotMatch": "the AWS secret key is wrong",
}

# Updated each time a day is loaded and summarised (an Asset on Airflow 3, a Dataset on Airflow 2).
CLOUDTRAIL_SUMMARIES = Asset("x-cloudtrail-mysql://summaries/cloudtrail_daily")

# Updated when a run's rebuilt event days hold security findings (publish_findings), so an
# alerting DAG can be scheduled on it: schedule=[CLOUDTRAIL_FINDINGS]. Clean days do not update it.
CLOUDTRAIL_FINDINGS = Asset("x-cloudtrail-mysql://findings/cloudtrail_daily")

# The same two moments as events of the real tables' Assets, mysql://<host>:<port>/<database>/<table>
# (and <table>_findings), as the MySQL provider names them; which server and table is known only
# when the run reads its connection, hence aliases. schedule=[Asset("mysql://db:3306/cloudtrail/logs")]
# or schedule=[CLOUDTRAIL_TABLE] both work.
CLOUDTRAIL_TABLE = AssetAlias("cloudtrail_daily_table")
CLOUDTRAIL_FINDINGS_TABLE = AssetAlias("cloudtrail_daily_findings_table")

# The trigger form's collapsed section for the params most runs leave alone.
ADVANCED = "Advanced"

# Mapped load tasks running at once across all runs of this DAG: MySQL's write path is the limit.
MAX_PARALLEL_LOADS = int(os.environ.get("CLOUDTRAIL_MYSQL_PARALLEL_LOADS", "4"))


def _minutes(variable: str, default: float) -> timedelta:
    """A duration from the environment, in minutes (decimals allowed); read once, when the DAG is parsed."""
    text = os.environ.get(variable, "").strip()
    try:
        minutes = float(text) if text else default
    except ValueError:
        raise ValueError(f"{variable}={text!r}: give a number of minutes") from None
    if not 0 < minutes < float("inf"):
        raise ValueError(f"{variable}={text!r}: give a number of minutes above 0")
    return timedelta(minutes=minutes)


# Bounded runtimes: a task that runs longer is stopped (and retried), a run that lasts longer fails.
# A load task writes at most batch_megabytes of compressed files; a day of the largest trails takes
# well under an hour per batch. The sensor waits up to 6 hours for the day's last deliveries.
TASK_TIMEOUT = _minutes("CLOUDTRAIL_MYSQL_TASK_TIMEOUT_MINUTES", 60)
LOAD_TIMEOUT = _minutes("CLOUDTRAIL_MYSQL_LOAD_TIMEOUT_MINUTES", 120)
# The tasks after the loads send statements over a whole day (an index built, a scan): their MySQL
# connections wait as long as the task may run, not the few minutes a file's statements get.
DAY_TASK_READ_TIMEOUT = int(TASK_TIMEOUT.total_seconds())
DAGRUN_TIMEOUT = _minutes("CLOUDTRAIL_MYSQL_DAGRUN_TIMEOUT_MINUTES", 12 * 60)
RETRY_DELAY = _minutes("CLOUDTRAIL_MYSQL_RETRY_DELAY_MINUTES", 2)

with DAG(
    dag_id="cloudtrail_daily",
    description="Load a day of CloudTrail logs from S3 into MySQL, index and summarise it",
    doc_md=DOC_MD,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    # CloudTrail began in November 2013: any day since can be backfilled (catchup stays off).
    start_date=datetime(2013, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=4,
    template_searchpath=[str(sql_dir())],
    tags=["cloudtrail", "mysql", "aws", "security"],
    dagrun_timeout=DAGRUN_TIMEOUT,
    default_args={
        "retries": 2, "retry_delay": RETRY_DELAY, "retry_exponential_backoff": True, "execution_timeout": TASK_TIMEOUT,
    },
    params={
        "day": Param(None, type=["null", "string"], format="date", title="Day",
                     description="Delivery day to load (YYYY-MM-DD). Empty: the run's logical date."),
        "bucket": Param(os.environ.get("CLOUDTRAIL_BUCKET", "cloudtrail-logs"), type="string", minLength=3,
                        title="S3 bucket", description="The bucket CloudTrail delivers to."),
        # Optional fields take null: the UI form treats an empty non-null param as missing.
        "key_prefix": Param(None, type=["null", "string"], title="Key prefix",
                            description="The trail's S3 key prefix, before AWSLogs/ (often empty)."),
        "accounts": Param([], type="array", items={"type": "string"}, title="Accounts",
                          description="Only these account ids (empty: every account found)."),
        "regions": Param([], type="array", items={"type": "string"}, title="Regions",
                         description="Only these regions (empty: every region found)."),
        "table": Param("logs", type="string", pattern=TABLE_NAME_PATTERN, title="Table",
                       description="MySQL table to load into; created with its manifest and summaries if missing."),
        "batch_files": Param(500, type="integer", minimum=1, title="Files per batch", section=ADVANCED,
                             description="Most files one load_batch task loads; the day is cut into batches "
                             "of at most this many files (fewer, larger tasks when raised)."),
        "batch_megabytes": Param(256, type="integer", minimum=1, title="Megabytes per batch (compressed)", section=ADVANCED,
                                 description="Most compressed megabytes one load_batch task loads."),
        "parallel_files": Param(2, type="integer", minimum=1, maximum=16, title="Files at once per load task",
                                section=ADVANCED,
                                description="Each on its own MySQL connection: one is parsed while another is written."),
        "include_insight": Param(False, type="boolean", title="Also load CloudTrail-Insight files", section=ADVANCED,
                                 description="Insight events (unusual API activity) go into the same table."),
        "include_network_activity": Param(False, type="boolean", title="Also load CloudTrail-NetworkActivity files",
                                          section=ADVANCED,
                                          description="VPC endpoint network activity events go into the same table."),
        "delivery_delay_minutes": Param(30, type="integer", minimum=0, title="Wait after the day ends (minutes)",
                                        section=ADVANCED,
                                        description="plan_batches waits this long after midnight UTC for CloudTrail's "
                                        "last deliveries of the day (no wait for past days)."),
        "retention_days": Param(
            int(os.environ.get("CLOUDTRAIL_MYSQL_RETENTION_DAYS", "0")), type="integer", minimum=0,
            title="Delivery days kept",
            description="After the load, keep only the last N delivery days (the day loaded counts as one); "
            "older days leave the table, the manifest and the summaries whole. 0: keep everything.",
        ),
        "controls_file": Param(None, type=["null", "string"], title="More controls (file)", section=ADVANCED,
                               description="Absolute path of a JSON file of your own CloudWatch filter-pattern "
                               "controls, readable by the workers; added to the CIS controls CloudWatch.1-14."),
        "report_location": Param(
            os.environ.get("CLOUDTRAIL_MYSQL_REPORT_LOCATION") or None, type=["null", "string"],
            title="Day report location",
            description="Where report_day writes the HTML day report (<location>/<table>/<day>.html): "
            "s3://bucket/prefix/ (with the AWS connection), or any ObjectStoragePath URL. "
            "Empty: the worker's log folder (or CLOUDTRAIL_MYSQL_REPORT_DIR), which only that machine can open.",
        ),
        "aws_conn_id": Param("aws_default", type="string", title="AWS connection id", section=ADVANCED,
                             description="Airflow connection to read the trail's bucket (and write an S3 day report)."),
        "mysql_conn_id": Param("mysql_default", type="string", title="MySQL connection id", section=ADVANCED,
                               description="Airflow connection to the MySQL database to load into."),
    },
) as dag:

    @task
    def resolve_day(**context: Any) -> str:
        """The delivery day this run loads, as YYYY-MM-DD."""
        return checked_day(context)

    @task.sensor(poke_interval=300, timeout=6 * 3600, mode="reschedule")
    def plan_batches(**context: Any) -> PokeReturnValue:
        """Once the day's files are all delivered: the tables where missing, and the key ranges to load.

        CloudTrail delivers a file some minutes after its events, so this waits
        delivery_delay_minutes after the day ends (past days: no wait), rescheduling itself
        rather than holding a worker slot.
        """
        from airflow.configuration import conf
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from botocore.exceptions import ClientError

        from cloudtrail_mysql.compat import AirflowFailException
        from cloudtrail_mysql.front import kinds_for
        from cloudtrail_mysql.hooks import BoundedMySqlHook
        from cloudtrail_mysql.layout import NoCloudTrailLayout, TooManyBatches, day_folders
        from cloudtrail_mysql.layout import plan_batches as cut_batches
        from cloudtrail_mysql.mysql_errors import setup_error
        from cloudtrail_mysql.partitions import DroppedDays, NotPartitioned, day_is_dropped
        from cloudtrail_mysql.writer import MySqlWriter

        params = context["params"]
        day = checked_day(context)
        ready_at = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(
            days=1, minutes=int(params["delivery_delay_minutes"])
        )
        if datetime.now(UTC) < ready_at:
            print(f"{day}: waiting for CloudTrail's last deliveries until {ready_at:%Y-%m-%d %H:%M} UTC")
            return PokeReturnValue(is_done=False)

        try:
            conn = BoundedMySqlHook(mysql_conn_id=params["mysql_conn_id"]).get_conn()
            try:
                writer = MySqlWriter(conn, params["table"])
                writer.ensure_schema()
                day_is_dropped(conn, params["table"], date.fromisoformat(day))
                writer.ensure_day_partitions([date.fromisoformat(day)])
            finally:
                conn.close()
        except (NotPartitioned, DroppedDays) as exc:
            raise AirflowFailException(str(exc)) from None
        except Exception as exc:
            # Wrong password, a missing privilege, a read-only server: no retry can fix those.
            refusal = setup_error(exc, f"MySQL connection {params['mysql_conn_id']!r}")
            if refusal is not None:
                raise AirflowFailException(str(refusal)) from None
            raise

        client = S3Hook(aws_conn_id=params["aws_conn_id"]).get_conn()
        kinds = kinds_for(params["include_insight"], params["include_network_activity"])
        try:
            folders = day_folders(
                client, params["bucket"], date.fromisoformat(day), params["key_prefix"] or "",
                accounts=params["accounts"] or None, regions=params["regions"] or None, kinds=kinds,
            )
        except NoCloudTrailLayout as exc:
            raise AirflowFailException(str(exc)) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _S3_REFUSALS:
                raise AirflowFailException(f"S3 bucket {params['bucket']!r}: {_S3_REFUSALS[code]} ({exc})") from None
            raise
        try:
            batches = cut_batches(
                client, params["bucket"], folders,
                max_files=int(params["batch_files"]),
                max_bytes=int(params["batch_megabytes"]) * 1024 * 1024,
                max_batches=conf.getint("core", "max_map_length", fallback=1024),
            )
        except TooManyBatches as exc:
            raise AirflowFailException(str(exc)) from None  # the same files give the same count: no retry
        print(f"{day}: {len(folders)} account/region folders, {sum(b.files for b in batches)} files, "
              f"{sum(b.bytes for b in batches) / 2**20:.1f} MiB, {len(batches)} batches")
        # No staging here for now (staging.py is the command's): a load task stopped by its timeout can
        # leave its transaction holding the day's row until the server drops it, and publish_day would wait.
        return PokeReturnValue(
            is_done=True,
            xcom_value=[
                {
                    **b.as_kwargs(),
                    "include_insight": bool(params["include_insight"]),
                    "include_network_activity": bool(params["include_network_activity"]),
                }
                for b in batches
            ],
        )

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def build_findings(day: str, **context: Any) -> dict[str, int]:
        """Rebuild the day's findings (from the part build_summaries found); findings per control."""
        from cloudtrail_mysql import findings
        from cloudtrail_mysql.hooks import BoundedMySqlHook
        from cloudtrail_mysql.sql import validate_identifier

        params = context["params"]
        controls = _controls(params)
        conn = BoundedMySqlHook(mysql_conn_id=params["mysql_conn_id"], read_timeout=DAY_TASK_READ_TIMEOUT).get_conn()
        try:
            counts = findings.build_findings(conn, validate_identifier(params["table"]), controls, day)
        finally:
            conn.close()
        print(f"{day}: findings of the touched event days, per control: {counts or 'none'}")
        return counts

    @task(outlets=[CLOUDTRAIL_FINDINGS, CLOUDTRAIL_FINDINGS_TABLE])
    def publish_findings(counts: dict[str, int], day: str, **context: Any) -> dict[str, Any]:
        """Updates the findings Assets when there are findings; skipped (no Asset event) when clean."""
        from cloudtrail_mysql.compat import AirflowSkipException
        from cloudtrail_mysql.operators import emit_table_asset

        if not counts:
            raise AirflowSkipException("no findings: the Asset is not updated")
        params = context["params"]
        emit_table_asset(context["task"], context, params["mysql_conn_id"], f"{params['table']}_findings")
        return {"day": day, "findings": counts}

    day = resolve_day()
    # A setup task: should planning fail (bad params, wrong credentials, no trail at all), the tasks
    # after the loads, which run whatever the loads did (all_done), do not run either.
    batches = plan_batches().as_setup()

    loads = CloudTrailToMySqlOperator.partial(
        task_id="load_batch",
        bucket="{{ params.bucket }}",
        table="{{ params.table }}",
        aws_conn_id="{{ params.aws_conn_id }}",
        mysql_conn_id="{{ params.mysql_conn_id }}",
        parallel_files="{{ params.parallel_files }}",
        max_active_tis_per_dag=MAX_PARALLEL_LOADS,
        execution_timeout=LOAD_TIMEOUT,
    ).expand_kwargs(batches)

    indexes = MySqlQueryOperator(
        task_id="create_indexes",
        conn_id="{{ params.mysql_conn_id }}",
        sql="create_indexes.sql",
        split_statements=True,
        hook_params={"read_timeout": DAY_TASK_READ_TIMEOUT},
        trigger_rule=TriggerRule.ALL_DONE,
    )

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def publish_day(day: str, **context: Any) -> dict[str, Any]:
        """A fresh day loads into a table of its own (staging.py): here it takes its place in the
        logs table, its indexes built in one pass. A day that already had rows has nothing to do."""
        from cloudtrail_mysql.hooks import BoundedMySqlHook
        from cloudtrail_mysql.staging import publish_days

        params = context["params"]
        conn = BoundedMySqlHook(mysql_conn_id=params["mysql_conn_id"], read_timeout=DAY_TASK_READ_TIMEOUT).get_conn()
        try:
            published = publish_days(conn, params["table"], [date.fromisoformat(day)])
        finally:
            conn.close()
        for done in published:
            print(f"{done.day}: {done.rows} rows {done.how} into {params['table']} in {done.seconds:.1f} s")
        return {"published": [{"day": d.day.isoformat(), "rows": d.rows, "how": d.how} for d in published]}

    # Downstream DAGs can be scheduled on it: schedule=[CLOUDTRAIL_SUMMARIES], or on the table's Asset.
    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[CLOUDTRAIL_SUMMARIES, CLOUDTRAIL_TABLE])
    def build_summaries(day: str, **context: Any) -> float:
        """build_summaries.sql for the day; its one scan of the day also finds the day's part of the
        findings, for the controls build_findings uses."""
        from cloudtrail_mysql import daytasks
        from cloudtrail_mysql.hooks import BoundedMySqlHook
        from cloudtrail_mysql.operators import emit_table_asset

        params = context["params"]
        conn = BoundedMySqlHook(mysql_conn_id=params["mysql_conn_id"], read_timeout=DAY_TASK_READ_TIMEOUT).get_conn()
        try:
            seconds = daytasks.build_summaries(conn, params["table"], date.fromisoformat(day), _controls(params))
        finally:
            conn.close()
        emit_table_asset(context["task"], context, params["mysql_conn_id"], params["table"])
        return seconds

    # One XCom, the whole dict (multiple_outputs=False): Airflow 3.0's task API refuses an XCom whose
    # value is None, which kept_from is when retention is off.
    @task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
    def apply_retention(day: str, **context: Any) -> dict[str, Any]:
        """Keep the last retention_days delivery days up to the run's day; older ones leave whole."""
        from cloudtrail_mysql.hooks import BoundedMySqlHook
        from cloudtrail_mysql.partitions import apply_retention as keep_last_days

        params = context["params"]
        if not int(params["retention_days"]):
            print("retention_days is 0: every day is kept")
            return {"kept_from": None, "dropped_days": []}
        conn = BoundedMySqlHook(mysql_conn_id=params["mysql_conn_id"], read_timeout=DAY_TASK_READ_TIMEOUT).get_conn()
        try:
            result = keep_last_days(conn, params["table"], date.fromisoformat(day), int(params["retention_days"]))
        finally:
            conn.close()
        print(result.describe(params["table"]))
        return {"kept_from": result.kept_from.isoformat(), "dropped_days": [d.isoformat() for d in result.days],
                "files": result.files, "events": result.events}

    summaries = build_summaries(day)
    findings = build_findings(day)
    loads >> indexes >> publish_day(day) >> summaries >> findings >> apply_retention(day)
    publish_findings(findings, day)
    # The day's files and rows by status (XCom) and the HTML day report, where report_location says.
    report_day = CloudTrailDayReportOperator(
        task_id="report_day",
        day=day,
        table="{{ params.table }}",
        mysql_conn_id="{{ params.mysql_conn_id }}",
        aws_conn_id="{{ params.aws_conn_id }}",
        report_location="{{ params.report_location or '' }}",
        controls_file="{{ params.controls_file or '' }}",
        trigger_rule=TriggerRule.NONE_FAILED,
    )
    [loads, summaries, findings] >> report_day
