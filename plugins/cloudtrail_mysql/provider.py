"""The provider entry point: ``airflow providers list`` shows this package, and Airflow knows its
extra link (the day report) and its operators without importing them first."""

from __future__ import annotations

from typing import Any

from cloudtrail_mysql import __version__


def get_provider_info() -> dict[str, Any]:
    """Read by Airflow through the ``apache_airflow_provider`` entry point of pyproject.toml."""
    return {
        "package-name": "airflow-cloudtrail-mysql",
        "name": "CloudTrail to MySQL",
        # Shown by `airflow providers list` as plain text (its Markdown is stripped: no backticks).
        "description": "Load AWS CloudTrail logs from S3 into MySQL every day, with the day's summaries, "
        "security findings and an HTML day report.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "CloudTrail to MySQL",
                "external-doc-url": "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/",
                "tags": ["aws", "mysql"],
            }
        ],
        "operators": [
            {"integration-name": "CloudTrail to MySQL", "python-modules": ["cloudtrail_mysql.operators"]},
        ],
        "hooks": [
            {"integration-name": "CloudTrail to MySQL", "python-modules": ["cloudtrail_mysql.hooks"]},
        ],
        "extra-links": ["cloudtrail_mysql.operators.DayReportLink"],
    }
