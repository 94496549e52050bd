"""Load AWS CloudTrail logs into MySQL: a plain-Python core (records, writer, loader, sources),
the ``cloudtrail-mysql`` command, and Airflow operators built on the same core."""

__version__ = "0.1.0"
