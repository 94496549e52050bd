"""Load AWS CloudTrail logs into MySQL: a plain-Python core (records, writer, loader, sources),
the ``cloudtrail-mysql`` command, and Airflow operators built on the same core."""

# The one place the version is written: pyproject.toml reads it (dynamic), so does ``--version``,
# and a deployment that copies plugins/ without pip has it too.
__version__ = "0.2.0"
