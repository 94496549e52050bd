"""Airflow plugin: macros for CloudTrail's S3 layout, usable in any DAG's templates.

    {{ macros.cloudtrail_mysql.day_prefix("111122223333", "us-east-1", ds) }}
      -> AWSLogs/111122223333/CloudTrail/us-east-1/2017/04/10/

Registered from the plugins folder and, for pip installs, through the ``airflow.plugins`` entry
point (Airflow loads a plugin of the same name once).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cloudtrail_mysql.layout import day_prefix
from cloudtrail_mysql.operators import DayReportLink

__all__ = ["CloudTrailMySqlPlugin", "day_prefix"]


class CloudTrailMySqlPlugin(AirflowPlugin):
    """Makes ``macros.cloudtrail_mysql.day_prefix`` available in templates, and registers the
    day report's button (``DayReportLink``), which Airflow 2's web server needs to find it."""

    name = "cloudtrail_mysql"
    macros = [day_prefix]
    operator_extra_links = [DayReportLink()]
