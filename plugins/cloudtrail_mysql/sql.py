"""The SQL files of include/sql/, rendered with Jinja exactly as Airflow renders them.

Templates see ``params`` (as in an Airflow task); values are never put into SQL text, only
identifiers, and only after ``validate_identifier``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

# The longest suffix the loader adds to a table name is "_daily_source_ips" (17 characters) and
# MySQL names stop at 64, so a table name has at most 47. Also the DAG's param pattern.
MAX_IDENTIFIER_LENGTH = 47
IDENTIFIER_PATTERN = rf"^[A-Za-z_][A-Za-z0-9_]{{0,{MAX_IDENTIFIER_LENGTH - 1}}}$"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
# The loader names its own tables after the logs table: <table>_files (the manifest), <table>_daily_*
# and <table>_parts_* (summaries), <table>_findings, <table>_dropped_days, <table>_staged_days and
# <table>__day_YYYYMMDD (a day loading on its own), and <table>__migrating and __premigration while
# migrating. A logs table so named would collide with another's: refused.
DERIVED_TABLE_NAMES = (
    r"_files|_daily_[A-Za-z0-9_]*|_parts_[A-Za-z0-9_]*|_findings|_dropped_days|_staged_days|__day_[0-9]{8}"
    r"|__migrating|__premigration"
)
# A table name as the --table option and the DAG's table param take it (JSON Schema / JavaScript safe).
TABLE_NAME_PATTERN = rf"^(?![A-Za-z0-9_]+(?:{DERIVED_TABLE_NAMES})$){IDENTIFIER_PATTERN[1:]}"
_DERIVED = re.compile(rf"[A-Za-z0-9_]+(?:{DERIVED_TABLE_NAMES})")


def validate_identifier(name: str, what: str = "table name") -> str:
    """Refuse anything but a plain identifier, so a table name can never carry SQL.

    The SQL files also quote every identifier with backticks, so reserved words work as names.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits and underscores, starting with a letter"
            f" or underscore, at most {MAX_IDENTIFIER_LENGTH} characters"
        )
    return name


def validate_table_name(name: str) -> str:
    """A logs table's name: a plain identifier (``validate_identifier``) that is not one of the names
    the loader derives for its own tables (``DERIVED_TABLE_NAMES``), checked before anything is created."""
    validate_identifier(name)
    if _DERIVED.fullmatch(name):
        raise ValueError(
            f"invalid table name {name!r}: names ending in _files, _daily_..., _parts_..., _findings, _dropped_days, "
            "_staged_days, __day_YYYYMMDD, __migrating or __premigration are the loader's own tables (the manifest, "
            "summaries, findings, dropped and loading days of a logs table); choose another name for the logs table"
        )
    return name


def sql_dir() -> Path:
    """include/sql of this checkout, or CLOUDTRAIL_MYSQL_SQL_DIR where the files were put elsewhere."""
    configured = os.environ.get("CLOUDTRAIL_MYSQL_SQL_DIR")
    if configured:
        return Path(configured)
    here = Path(__file__).resolve()
    for base in (here.parents[2], here.parents[1]):
        candidate = base / "include" / "sql"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "cannot find include/sql; set CLOUDTRAIL_MYSQL_SQL_DIR to the folder holding the SQL files"
    )


@lru_cache(maxsize=4)
def _environment(directory: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(name: str, **params: Any) -> str:
    """Render include/sql/<name> with the given params (identifiers must already be validated)."""
    return _environment(str(sql_dir())).get_template(name).render(params=params)


# A statement's end: ';' at the end of a line (see split_statements).
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


def split_statements(rendered: str) -> list[str]:
    """Statements of a rendered file, in order, without comments and the trailing semicolons.

    The files of include/sql keep to two rules that make this a split of the text: a statement
    ends with ';' at the end of a line, and a comment is a whole '--' line. A SQL parser is not
    needed, and sqlparse gives up on the 10,000-token statements of compiled controls."""
    lines = [line for line in rendered.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in _STATEMENT_END.split("\n".join(lines)) if statement.strip()]


def execute_statements(cursor: Any, statements: Iterable[str], params: Mapping[str, Any] | None = None) -> None:
    """Run ``statements`` in order, each bound to ``params`` only if it names one (%(name)s), so
    that a statement without parameters keeps any '%' of its text as written."""
    for statement in statements:
        cursor.execute(statement, params if params and "%(" in statement else None)
        if cursor.description:
            cursor.fetchall()


@lru_cache(maxsize=256)
def macro(file: str, name: str, *args: Any, **kwargs: Any) -> str:
    """One statement of a macro file such as include/sql/loader.sql."""
    module = _environment(str(sql_dir())).get_template(file).module
    return str(getattr(module, name)(*args, **kwargs)).strip()
