"""Security findings: CloudWatch Logs metric-filter patterns over CloudTrail events, as MySQL SQL.

Plain Python, no Airflow. A control is an id, a title, a severity and a JSON filter pattern in
CloudWatch Logs' syntax (the CIS controls CloudWatch.1 to CloudWatch.14 ship in
include/controls/cis_cloudwatch.json, verbatim from AWS's documentation; users add their own in a
file of the same format). ``parse`` turns a pattern into an AST, ``compile_pattern`` turns the AST
into a WHERE condition over the logs table with every value bound as a %(name)s parameter, and
``build_findings`` rebuilds ``<table>_findings`` (include/sql/build_findings.sql). The matching
rules, and what was chosen where AWS's documentation is silent, are in docs/findings.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "CompiledControls",
    "Control",
    "ControlsFileError",
    "PatternError",
    "builtin_controls_path",
    "build_findings",
    "compile_controls",
    "compile_pattern",
    "day_findings",
    "load_controls",
    "parse",
]

log = logging.getLogger(__name__)


# -- controls --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Control:
    """One monitoring control: its pattern is CloudWatch Logs filter-pattern syntax."""

    id: str
    title: str
    severity: str
    pattern: str


class ControlsFileError(ValueError):
    """A controls file that cannot be used; the message names the file (and the control)."""


class PatternError(ValueError):
    """A filter pattern that cannot be parsed; ``position`` is 1-based, in characters."""

    def __init__(self, message: str, position: int, control: str = "") -> None:
        self.reason = message
        self.position = position
        self.control = control
        where = f"control {control}: " if control else ""
        super().__init__(f"{where}bad filter pattern at position {position}: {message}")


# A control id is stored in the findings table and shown in reports: a plain short name.
_CONTROL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def builtin_controls_path() -> Path:
    """include/controls/cis_cloudwatch.json, beside include/sql (found as the SQL files are)."""
    from cloudtrail_mysql.sql import sql_dir

    return sql_dir().parent / "controls" / "cis_cloudwatch.json"


def _read_controls(path: Path) -> list[Control]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ControlsFileError(f"{path}: cannot read the controls file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ControlsFileError(f"{path}: not valid JSON ({exc})") from None
    items = document.get("controls") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ControlsFileError(f'{path}: expected a list of controls or {{"controls": [...]}}')
    controls = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ControlsFileError(f"{path}: control {index + 1} is not an object")
        control_id = item.get("id")
        if not isinstance(control_id, str) or not _CONTROL_ID.match(control_id):
            raise ControlsFileError(
                f"{path}: control {index + 1} needs an id of letters, digits and . _ : - (at most 64), got {control_id!r}"
            )
        pattern = item.get("pattern")
        if not isinstance(pattern, str):
            raise ControlsFileError(f"{path}: control {control_id} has no pattern (a string)")
        control = Control(control_id, str(item.get("title") or control_id), str(item.get("severity") or ""), pattern)
        try:
            parse(pattern, control_id)
        except PatternError as exc:
            raise ControlsFileError(f"{path}: {exc}") from None
        controls.append(control)
    return controls


def load_controls(extra: str | Path | None = None, builtin: bool = True) -> list[Control]:
    """The built-in CIS controls, then those of ``extra`` (a JSON file of the same format).

    Every pattern is parsed here, so a bad one is refused before anything runs; an id given
    twice is refused too (a user file may not silently replace a built-in control).
    """
    controls = _read_controls(builtin_controls_path()) if builtin else []
    if extra:
        controls += _read_controls(Path(extra))
    seen: set[str] = set()
    for control in controls:
        if control.id in seen:
            raise ControlsFileError(f"{extra or builtin_controls_path()}: control id {control.id} is defined twice")
        seen.add(control.id)
    return controls


# -- tokens ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # '{' '}' '(' ')' '&&' '||' 'op' 'selector' 'string' 'word' 'end'
    text: str
    position: int  # 1-based
    value: Any = None  # selector: its path; string: the unescaped text


_OPERATORS = ("!=", "<=", ">=", "=", "<", ">")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_INDEX = re.compile(r"\[([0-9]+)\]")
_WORD_STOP = set(" \t\r\n(){}&|\"=!<>")


def tokenize(pattern: str, control: str = "") -> list[Token]:
    """The tokens of a JSON filter pattern; raises PatternError naming the position."""
    tokens: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char in " \t\r\n":
            i += 1
            continue
        start = i + 1
        if char in "{}()":
            tokens.append(Token(char, char, start))
            i += 1
        elif pattern.startswith("&&", i) or pattern.startswith("||", i):
            tokens.append(Token(pattern[i : i + 2], pattern[i : i + 2], start))
            i += 2
        elif char in "&|":
            raise PatternError(f"'{char}' alone: use '{char * 2}'", start, control)
        elif any(pattern.startswith(op, i) for op in _OPERATORS):
            op = next(op for op in _OPERATORS if pattern.startswith(op, i))
            tokens.append(Token("op", op, start))
            i += len(op)
        elif char == "!":
            raise PatternError("'!' must be followed by '=' (the only negation is '!=')", start, control)
        elif char == "$":
            path, i = _selector(pattern, i, control)
            tokens.append(Token("selector", pattern[start - 1 : i], start, path))
        elif char == '"':
            text, i = _quoted(pattern, i, control)
            tokens.append(Token("string", pattern[start - 1 : i], start, text))
        else:
            j = i
            while j < n and pattern[j] not in _WORD_STOP:
                j += 1
            tokens.append(Token("word", pattern[i:j], start, pattern[i:j]))
            i = j
    tokens.append(Token("end", "", n + 1))
    return tokens


def _selector(pattern: str, i: int, control: str) -> tuple[tuple[str | int, ...], int]:
    """``$.a.b[0].c`` from position i: its path (names and array indexes) and where it ends."""
    path: list[str | int] = []
    i += 1
    n = len(pattern)
    while i < n and pattern[i] in ".[":
        if pattern[i] == ".":
            match = _NAME.match(pattern, i + 1)
            if not match:
                raise PatternError("expected a property name (letters, digits, '_' or '-') after '.'", i + 2, control)
            path.append(match.group())
            i = match.end()
        else:
            match = _INDEX.match(pattern, i)
            if not match or not path:
                raise PatternError("expected an array index such as [0] after a property name", i + 1, control)
            path.append(int(match.group(1)))
            i = match.end()
    if not path or not isinstance(path[0], str):
        raise PatternError("a selector starts with '$.' and a property name, as in $.eventName", i + 1 if path else i, control)
    if i < n and pattern[i] not in _WORD_STOP:
        raise PatternError(f"unexpected character {pattern[i]!r} in a selector", i + 1, control)
    return tuple(path), i


def _quoted(pattern: str, i: int, control: str) -> tuple[str, int]:
    """A double-quoted value; a backslash makes the next character literal (\\" and \\\\)."""
    out: list[str] = []
    j = i + 1
    while j < len(pattern):
        char = pattern[j]
        if char == "\\" and j + 1 < len(pattern):
            out.append(pattern[j + 1])
            j += 2
        elif char == '"':
            return "".join(out), j + 1
        else:
            out.append(char)
            j += 1
    raise PatternError("unterminated string: no closing '\"'", i + 1, control)


# -- AST -------------------------------------------------------------------------------------------
FieldPath = tuple[str | int, ...]
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Compare:
    """``selector op value``: op is = != < > <= >=; quoted says the value was in double quotes."""

    path: FieldPath
    op: str
    value: str
    quoted: bool
    position: int

    @property
    def number(self) -> float | None:
        """The value as a number when it was written as one (unquoted), else None."""
        return float(self.value) if not self.quoted and _NUMBER.match(self.value) else None


@dataclass(frozen=True)
class Check:
    """``selector IS NULL|TRUE|FALSE`` or ``selector NOT EXISTS`` (what = 'NOT EXISTS')."""

    path: FieldPath
    what: str
    position: int


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Compare | Check | And | Or


class _Parser:
    def __init__(self, pattern: str, control: str) -> None:
        self.tokens = tokenize(pattern, control)
        self.index = 0
        self.control = control

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, message: str, token: Token | None = None) -> PatternError:
        token = token or self.peek()
        found = "the end of the pattern" if token.kind == "end" else repr(token.text)
        return PatternError(f"{message}, found {found}", token.position, self.control)

    def pattern(self) -> Node:
        if self.peek().kind != "{":
            raise self.fail("a JSON filter pattern starts with '{'")
        self.take()
        node = self.disjunction()
        if self.peek().kind != "}":
            raise self.fail("expected '&&', '||' or the closing '}'")
        self.take()
        if self.peek().kind != "end":
            raise self.fail("nothing may follow the closing '}'")
        return node

    def disjunction(self) -> Node:
        items = [self.conjunction()]
        while self.peek().kind == "||":
            self.take()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Node:
        items = [self.primary()]
        while self.peek().kind == "&&":
            self.take()
            items.append(self.primary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def primary(self) -> Node:
        token = self.peek()
        if token.kind == "(":
            self.take()
            node = self.disjunction()
            if self.peek().kind != ")":
                raise self.fail("expected ')'")
            self.take()
            return node
        if token.kind != "selector":
            raise self.fail("expected a selector such as $.eventName or '('")
        self.take()
        path = token.value
        following = self.peek()
        if following.kind == "op":
            self.take()
            value = self.peek()
            if value.kind not in ("string", "word"):
                raise self.fail(f"expected a value after '{following.text}'")
            self.take()
            node = Compare(path, following.text, value.value, value.kind == "string", token.position)
            if following.text in ("<", ">", "<=", ">=") and node.number is None:
                raise self.fail(f"'{following.text}' compares numbers: expected a number", value)
            return node
        if following.kind == "word" and following.text == "IS":
            self.take()
            what = self.peek()
            if what.kind != "word" or what.text not in ("NULL", "TRUE", "FALSE"):
                raise self.fail("expected NULL, TRUE or FALSE after IS")
            self.take()
            return Check(path, what.text, token.position)
        if following.kind == "word" and following.text == "NOT":
            self.take()
            what = self.peek()
            if what.kind != "word" or what.text != "EXISTS":
                raise self.fail("expected EXISTS after NOT (IS NOT is not supported)")
            self.take()
            return Check(path, "NOT EXISTS", token.position)
        raise self.fail("expected an operator (= != < > <= >=), IS or NOT EXISTS after the selector")


def parse(pattern: str, control: str = "") -> Node:
    """The AST of a JSON filter pattern ``{ ... }``; PatternError names the control and position."""
    return _Parser(pattern, control).pattern()


# -- SQL -------------------------------------------------------------------------------------------
# Columns of the logs table (include/sql/create_tables.sql) that hold a CloudTrail field of the
# same name. Plain text columns hold the field's string; JSON columns the object's JSON text;
# boolean columns 1/0. Any other top-level field is read from extraFields.
TEXT_COLUMNS = frozenset({
    "eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent",
    "errorCode", "errorMessage", "requestID", "eventID", "eventType", "recipientAccountId", "eventCategory",
    "apiVersion", "sharedEventID", "vpcEndpointId", "vpcEndpointAccountId",
})
JSON_COLUMNS = frozenset({
    "userIdentity", "requestParameters", "responseElements", "resources", "additionalEventData",
    "serviceEventDetails", "tlsDetails", "edgeDeviceDetails", "insightDetails", "addendum",
})
BOOL_COLUMNS = frozenset({"readOnly", "managementEvent", "sessionCredentialFromConsole"})

_JSON_NUMBER_TYPES = "('INTEGER', 'DOUBLE', 'DECIMAL', 'UNSIGNED INTEGER')"
_TEXT_NUMBER = "^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?$"
_TRUE, _FALSE = "1", "0"


def _json_path(path: FieldPath) -> str:
    """A MySQL JSON path with every key quoted ($."a"."b"[0]); names are [A-Za-z0-9_-] only."""
    return "$" + "".join(f"[{step}]" if isinstance(step, int) else f'."{step}"' for step in path)


def _like(value: str) -> str:
    """A wildcard value as a LIKE pattern (ESCAPE '!'): '*' is any sequence, the rest literal."""
    escaped = value.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return escaped.replace("*", "%")


class _Compiler:
    """Emits SQL for one pattern; values go to ``params`` under names unique to the pattern."""

    def __init__(self, prefix: str, alias: str) -> None:
        self.prefix = prefix
        self.alias = alias
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"{self.prefix}_{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    @staticmethod
    def binary(parameter: str) -> str:
        """A bound text as utf8mb4 bytes, whatever the connection's character set: compared
        byte for byte with a JSON string (exact, case-sensitive, trailing spaces count)."""
        return f"CAST(CONVERT({parameter} USING utf8mb4) AS BINARY)"

    def column(self, name: str) -> str:
        return f"{self.alias}.`{name}`"

    # Whole patterns: fast path for rows without extraFields (nearly all), careful path otherwise.
    def pattern(self, node: Node) -> str:
        fast = self.node(node, extra_aware=False)
        careful = self.node(node, extra_aware=True)
        if fast == careful:
            return fast
        return f"(CASE WHEN {self.column('extraFields')} IS NULL THEN {fast} ELSE {careful} END)"

    def node(self, node: Node, extra_aware: bool) -> str:
        if isinstance(node, Or) and not extra_aware:
            return self._any_of(node)
        if isinstance(node, (And, Or)):
            joiner = " AND " if isinstance(node, And) else " OR "
            return "(" + joiner.join(self.node(item, extra_aware) for item in self._ordered(node)) + ")"
        return self.leaf(node, extra_aware)

    @staticmethod
    def _ordered(node: And | Or) -> list[Node]:
        """Cheap column tests first (AND and OR are commutative here: nothing has side effects)."""
        def cost(item: Node) -> int:
            if isinstance(item, (Compare, Check)):
                return 0 if len(item.path) == 1 and item.path[0] in TEXT_COLUMNS | BOOL_COLUMNS else 1
            return 2
        return sorted(node.items, key=cost)

    def _any_of(self, node: Or) -> str:
        """An OR, with ``c = 'a' OR c = 'b' ...`` on one text column as ``c IN ('a', 'b', ...)``."""
        groups: dict[str, list[str]] = {}
        others: list[Node] = []
        for item in self._ordered(node):
            if (
                isinstance(item, Compare) and item.op == "=" and "*" not in item.value
                and len(item.path) == 1 and item.path[0] in TEXT_COLUMNS
            ):
                groups.setdefault(str(item.path[0]), []).append(item.value)
            else:
                others.append(item)
        parts = [
            f"{self.column(name)} IN ({', '.join(self.bind(v) for v in values)})" for name, values in groups.items()
        ]
        parts += [self.node(item, extra_aware=False) for item in others]
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def leaf(self, node: Compare | Check, extra_aware: bool) -> str:
        name, rest = str(node.path[0]), node.path[1:]
        if name not in TEXT_COLUMNS | JSON_COLUMNS | BOOL_COLUMNS:
            # No column: the field, if the event had it, is in extraFields.
            if extra_aware:
                return self.json_condition(node, self.extra_value(node.path))
            return _TRUE if isinstance(node, Check) and node.what == "NOT EXISTS" else _FALSE
        own = self.column_condition(node, name, rest)
        if not extra_aware:
            return own
        in_extra = self.json_condition(node, self.extra_value(node.path))
        # A value cut to its column, or not of the column's type, is kept whole in extraFields.
        key = self.bind(_json_path((name,)))
        return f"(CASE WHEN JSON_CONTAINS_PATH({self.column('extraFields')}, 'one', {key}) THEN {in_extra} ELSE {own} END)"

    def extra_value(self, path: FieldPath) -> str:
        return f"JSON_EXTRACT({self.column('extraFields')}, {self.bind(_json_path(path))})"

    def column_condition(self, node: Compare | Check, name: str, rest: FieldPath) -> str:
        col = self.column(name)
        if rest:
            if name in BOOL_COLUMNS:  # a boolean has no properties
                return _TRUE if isinstance(node, Check) and node.what == "NOT EXISTS" else _FALSE
            value = f"(CASE WHEN JSON_VALID({col}) THEN JSON_EXTRACT({col}, {self.bind(_json_path(rest))}) END)"
            condition = self.json_condition(node, value)
            return self._prefiltered(node, col, condition)
        if name in BOOL_COLUMNS:
            return self.bool_condition(node, col)
        scalar = f"{col} IS NOT NULL"
        if name in JSON_COLUMNS:  # an object or array is not a value node
            kind = f"(CASE WHEN JSON_VALID({col}) THEN JSON_TYPE({col}) END)"  # JSON_TYPE refuses non-JSON
            scalar = f"({col} IS NOT NULL AND COALESCE({kind} NOT IN ('OBJECT', 'ARRAY'), 1))"
        if isinstance(node, Check):
            if node.what in ("NOT EXISTS", "NULL"):  # the column cannot tell a null from a missing field
                return f"{col} IS NULL"
            return _FALSE  # a text column holds no boolean
        if node.op in ("=", "!="):
            equal = f"{col} LIKE {self.bind(_like(node.value))} ESCAPE '!'" if "*" in node.value else f"{col} = {self.bind(node.value)}"
            if node.op == "=":
                return equal if name in TEXT_COLUMNS else f"({scalar} AND {equal})"
            return f"({scalar} AND NOT ({equal}))"
        number = f"(CASE WHEN {col} REGEXP {self.bind(_TEXT_NUMBER)} THEN CAST({col} AS DOUBLE) END)"
        return f"({scalar} AND {number} {node.op} {self.bind(node.number)})"

    def bool_condition(self, node: Compare | Check, col: str) -> str:
        if isinstance(node, Check):
            if node.what in ("NOT EXISTS", "NULL"):
                return f"{col} IS NULL"
            return f"{col} = {_TRUE if node.what == 'TRUE' else _FALSE}"
        # CloudTrail writes some flags as strings ("true"); the column keeps 1/0 for both forms.
        if node.op in ("=", "!=") and node.value in ("true", "false") and "*" not in node.value:
            wanted = _TRUE if node.value == "true" else _FALSE
            return f"{col} {'=' if node.op == '=' else '<>'} {wanted}"
        return _FALSE

    def json_condition(self, node: Compare | Check, value: str) -> str:
        """The test on a JSON value expression that is SQL NULL when the field is missing."""
        if isinstance(node, Check):
            if node.what == "NOT EXISTS":
                return f"({value} IS NULL)"
            if node.what == "NULL":
                return f"(JSON_TYPE({value}) = 'NULL')"
            return f"(JSON_TYPE({value}) = 'BOOLEAN' AND JSON_UNQUOTE({value}) = '{node.what.lower()}')"
        text = f"CAST(JSON_UNQUOTE({value}) AS BINARY)"
        number = f"(CASE WHEN JSON_TYPE({value}) IN {_JSON_NUMBER_TYPES} THEN CAST(JSON_UNQUOTE({value}) AS DOUBLE) END)"
        if node.op in ("<", ">", "<=", ">="):
            return f"({number} {node.op} {self.bind(node.number)})"
        if "*" in node.value:
            equal = f"(JSON_TYPE({value}) = 'STRING' AND {text} LIKE {self.binary(self.bind(_like(node.value)))} ESCAPE '!')"
        else:
            equal = f"(JSON_TYPE({value}) = 'STRING' AND {text} = {self.binary(self.bind(node.value))})"
        if node.number is not None:
            equal = f"({equal} OR {number} = {self.bind(node.number)})"
        if node.op == "=":
            return equal
        is_value = f"JSON_TYPE({value}) IN ('STRING', 'INTEGER', 'DOUBLE', 'DECIMAL', 'UNSIGNED INTEGER')"
        return f"({is_value} AND NOT {equal})"

    def _prefiltered(self, node: Compare | Check, col: str, condition: str) -> str:
        """A cheap necessary condition before parsing the column's JSON: for ``= "text"``, the
        text (JSON-escaped, as the loader wrote it) must occur in the column."""
        if not (isinstance(node, Compare) and node.op == "=" and node.number is None):
            return condition
        fragments = [f for f in node.value.split("*") if f]
        if not fragments:
            return condition
        needle = json.dumps(max(fragments, key=len), ensure_ascii=False)[1:-1]
        return f"(INSTR(CAST({col} AS BINARY), {self.binary(self.bind(needle))}) > 0 AND {condition})"


def compile_pattern(node: Node, prefix: str = "p", alias: str = "l") -> tuple[str, dict[str, Any]]:
    """A WHERE condition over the logs table (aliased ``alias``) and its parameters (%(name)s).

    Names in the SQL text come only from validated selectors; every value is a parameter.
    """
    compiler = _Compiler(prefix, alias)
    return compiler.pattern(node), compiler.params


# -- the findings table ----------------------------------------------------------------------------
# The day's part of the findings keeps one bit per control in a BIGINT UNSIGNED: more controls than
# that are found by build_findings.sql's own scan only.
MAX_CONTROLS_IN_PARTS = 64


@dataclass(frozen=True)
class CompiledControls:
    """Controls as build_summaries.sql and build_findings.sql take them: [{number, condition}] with
    the values bound as parameters (%(cN_...)s, the id as %(cN_id)s), and a hash that tells whether
    a day's part of the findings was built for these very controls."""

    controls: list[dict[str, Any]]
    params: dict[str, Any]
    hash: str


def compile_controls(controls: Sequence[Control]) -> CompiledControls:
    params: dict[str, Any] = {}
    compiled = []
    for number, control in enumerate(controls, 1):
        condition, bound = compile_pattern(parse(control.pattern, control.id), prefix=f"c{number}")
        params.update(bound)
        params[f"c{number}_id"] = control.id
        compiled.append({"number": number, "condition": condition})
    fingerprint = hashlib.sha256(orjson.dumps([compiled, params], option=orjson.OPT_SORT_KEYS)).hexdigest()
    return CompiledControls(compiled, params, fingerprint)


def render_build(
    table: str, controls: Sequence[Control], all_days: bool = False, from_parts: bool = False
) -> tuple[list[str], dict[str, Any]]:
    """The statements of include/sql/build_findings.sql for these controls, and their parameters."""
    from cloudtrail_mysql import sql

    sql.validate_identifier(table)
    compiled = compile_controls(controls)
    rendered = sql.render(
        "build_findings.sql", table=table, controls=compiled.controls, all_days=all_days, from_parts=from_parts
    )
    return sql.split_statements(rendered), dict(compiled.params)


def _part_is_current(cursor: Any, table: str, day: str, compiled: CompiledControls) -> bool:
    """Whether build_summaries.sql built the day's part of the findings for these controls."""
    from cloudtrail_mysql import sql

    cursor.execute(sql.macro("day_report.sql", "findings_part_controls", table), {"day": day})
    row = cursor.fetchone()
    return row is not None and row[0] == compiled.hash


def build_findings(conn: Any, table: str, controls: Sequence[Control], day: str | None = None) -> dict[str, int]:
    """Rebuild the findings of the events delivered on ``day`` (every event in the table when
    ``day`` is None), in one transaction; returns the findings per control of what was rebuilt.
    A day's findings come from its part (found by the summaries' scan) when that was built for
    these controls, else from a scan of their own."""
    from cloudtrail_mysql import sql

    cursor = conn.cursor()
    try:
        from_parts = day is not None and _part_is_current(cursor, table, day, compile_controls(controls))
        conn.commit()  # the file's own isolation level (its first statement) applies from its first read
        statements, params = render_build(table, controls, all_days=day is None, from_parts=from_parts)
        if day is not None:
            params["day"] = day
        sql.execute_statements(cursor, statements, params)
        cursor.execute(sql.macro("day_report.sql", "findings_per_control", table, day is None), {"day": day})
        counts = {str(control): int(n) for control, n in cursor.fetchall()}
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cursor.close()
    log.info("%s: findings of %s built %s", table, day or "every day",
             "from the day's part (the summaries' scan)" if from_parts else "in a scan of their own")
    return {control.id: counts.get(control.id, 0) for control in controls if counts.get(control.id)}


FINDING_COLUMNS = (
    "eventTime", "recipientAccountId", "awsRegion", "principal", "sourceIPAddress", "eventName", "errorCode",
    "sourceFileId", "recordIndex",
)


@dataclass(frozen=True)
class ControlFindings:
    """One control's findings of a day: how many, and the first ones by time (FINDING_COLUMNS)."""

    control: str
    count: int
    rows: list[dict[str, Any]]


def day_findings(query: Any, table: str, day: str, limit: int = 20) -> list[ControlFindings]:
    """The findings of one event day per control (natural order of ids), at most ``limit`` rows
    each (0: all), with ``query(sql, params) -> rows``."""
    from cloudtrail_mysql import sql

    statement = sql.macro("day_report.sql", "findings", sql.validate_identifier(table))
    per_control: dict[str, ControlFindings] = {}
    for control, count, *values in query(statement, {"day": day, "limit": limit if limit > 0 else 2**62}):
        entry = per_control.setdefault(str(control), ControlFindings(str(control), int(count), []))
        entry.rows.append(dict(zip(FINDING_COLUMNS, values, strict=True)))
    return [per_control[c] for c in control_order(per_control)]


def control_order(ids: Iterable[str]) -> list[str]:
    """Control ids in natural order (CloudWatch.2 before CloudWatch.10)."""
    return sorted(ids, key=lambda i: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", i)])
