"""Airflow plugin: macros for CloudTrail's S3 layout, usable in any DAG's templates.

    {{ macros.cloudtrail_mysql.day_prefix("111122223333", "us-east-1", ds) }}
      -> AWSLogs/111122223333/CloudTrail/us-east-1/2017/04/10/

Registered from the plugins folder and, for pip installs, through the ``airflow.plugins`` entry
point (Airflow loads a plugin of the same name once).
"""

from __future__ import annotations

from datetime import date, datetime

from airflow.plugins_manager import AirflowPlugin

from cloudtrail_mysql.operators import DayReportLink


def day_prefix(
    account: str,
    region: str,
    day: str | date | datetime,
    key_prefix: str = "",
    organization_id: str | None = None,
    kind: str = "CloudTrail",
) -> str:
    """The S3 key prefix under which CloudTrail delivers one account's region's files for a day."""
    if isinstance(day, str):
        day = date.fromisoformat(day[:10])
    base = f"{key_prefix.strip('/')}/" if key_prefix.strip("/") else ""
    org = f"{organization_id}/" if organization_id else ""
    return f"{base}AWSLogs/{org}{account}/{kind}/{region}/{day:%Y/%m/%d}/"


class CloudTrailMySqlPlugin(AirflowPlugin):
    """Makes ``macros.cloudtrail_mysql.day_prefix`` available in templates, and registers the
    day report's button (``DayReportLink``), which Airflow 2's web server needs to find it."""

    name = "cloudtrail_mysql"
    macros = [day_prefix]
    operator_extra_links = [DayReportLink()]
