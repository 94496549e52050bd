"""Security findings: the CIS CloudWatch controls' filter patterns, parsed, compiled to SQL and run.

Expected findings come from hand-written events (built from the examples in AWS's CloudTrail
documentation, with the expected controls written next to each) and, for generated days, from a
small evaluator of CloudWatch Logs' JSON pattern semantics written here, over the files' JSON,
independent of the project's parser and SQL.
"""

from __future__ import annotations

import gzip
import json
import re
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloudtrail_mysql.findings import (
    And,
    Check,
    Compare,
    ControlsFileError,
    Or,
    PatternError,
    compile_pattern,
    load_controls,
    parse,
)
from conftest import airflow_connections, make_sample_day, read_events
from test_dag import _dags_test, _put

DAY = date(2017, 4, 10)
ACCOUNT = "111122223333"


# -- a tiny independent evaluator of CloudWatch Logs' JSON filter patterns -----------------------
_TOKEN = re.compile(r'\s*(\{|\}|\(|\)|&&|\|\||!=|<=|>=|=|<|>|"(?:[^"\\]|\\.)*"|\$[A-Za-z0-9_.\-\[\]]+|[^\s(){}&|"=!<>]+)')
_MISSING = object()


def _tokens(pattern: str) -> list[str]:
    out, i = [], 0
    while i < len(pattern.rstrip()):
        match = _TOKEN.match(pattern, i)
        assert match, pattern[i:]
        out.append(match.group(1))
        i = match.end()
    return out


def _lookup(record: dict[str, Any], selector: str) -> Any:
    value: Any = record
    steps = re.findall(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]", selector[1:])
    for index, (name, position) in enumerate(steps):
        if name and isinstance(value, dict) and name in value:
            value = value[name]
        elif position and isinstance(value, list) and int(position) < len(value):
            value = value[int(position)]
        else:
            return _MISSING
        if index == 0 and value is None:
            return _MISSING  # the table cannot tell a top-level null from a missing field (docs/findings.md)
    return value


def _equal(value: Any, literal: str, quoted: bool) -> bool:
    if isinstance(value, str):
        return re.fullmatch(".*".join(re.escape(part) for part in literal.split("*")), value, re.S) is not None
    number = None if quoted or "*" in literal else float(literal) if re.fullmatch(r"[+-]?\d+(\.\d+)?", literal) else None
    return number is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value == number


def matches(pattern: str, record: dict[str, Any]) -> bool:
    """CloudWatch semantics: && binds tighter than ||; = and != only on strings and numbers (a
    missing field, null, boolean, object or array matches neither); '*' is any text."""
    tokens = _tokens(pattern)
    assert tokens[0] == "{" and tokens[-1] == "}"
    position = 1

    def disjunction() -> bool:
        nonlocal position
        result = conjunction()
        while tokens[position] == "||":
            position += 1
            result = conjunction() or result
        return result

    def conjunction() -> bool:
        nonlocal position
        result = primary()
        while tokens[position] == "&&":
            position += 1
            result = primary() and result
        return result

    def primary() -> bool:
        nonlocal position
        if tokens[position] == "(":
            position += 1
            result = disjunction()
            assert tokens[position] == ")"
            position += 1
            return result
        value = _lookup(record, tokens[position])
        op = tokens[position + 1]
        if op == "NOT":
            position += 3
            return value is _MISSING
        literal = tokens[position + 2]
        position += 3
        quoted = literal.startswith('"')
        text = json.loads(literal) if quoted else literal
        if value is _MISSING or value is None or isinstance(value, (bool, dict, list)):
            return False
        return _equal(value, text, quoted) if op == "=" else not _equal(value, text, quoted)

    result = disjunction()
    assert position == len(tokens) - 1
    return result


# -- events from AWS's CloudTrail documentation, and near misses ---------------------------------
def _event(name: str, source: str, identity: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": identity or {
            "type": "IAMUser", "principalId": "AIDACKCEVSQ6C2EXAMPLE", "arn": f"arn:aws:iam::{ACCOUNT}:user/Mary_Major",
            "accountId": ACCOUNT, "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "userName": "Mary_Major",
        },
        "eventTime": "2017-04-10T12:00:00Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.1",
        "userAgent": "aws-cli/2.13.5 Python/3.11.4",
        "requestParameters": None,
        "responseElements": None,
        "requestID": "0123456789abcdef",
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    event.update(fields)
    return event


ROOT = {"type": "Root", "principalId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root", "accountId": ACCOUNT}
ROOT_BY_SERVICE = {**ROOT, "invokedBy": "support.amazonaws.com"}
IAM_USER = {"type": "IAMUser", "principalId": "AIDACKCEVSQ6C2EXAMPLE", "arn": f"arn:aws:iam::{ACCOUNT}:user/JohnDoe",
            "accountId": ACCOUNT, "userName": "JohnDoe"}


def _login(identity: dict[str, Any], result: str, mfa: str | None, message: str | None = None) -> dict[str, Any]:
    data = {"LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No"}
    if mfa is not None:
        data["MFAUsed"] = mfa
    event = _event("ConsoleLogin", "signin.amazonaws.com", identity, eventType="AwsConsoleSignIn",
                   responseElements={"ConsoleLogin": result}, additionalEventData=data, userAgent="Mozilla/5.0")
    if message:
        event["errorMessage"] = message
    return event


# (event, the controls it must match): hand-picked, each near miss next to what it misses.
LABELLED: list[tuple[dict[str, Any], set[str]]] = [
    # CloudWatch.1: the root user, not an AWS service acting as root.
    (_login(ROOT, "Success", "Yes"), {"CloudWatch.1"}),
    (_event("ListBuckets", "s3.amazonaws.com", ROOT), {"CloudWatch.1"}),
    (_event("ListBuckets", "s3.amazonaws.com", ROOT_BY_SERVICE), set()),
    (_event("Decrypt", "kms.amazonaws.com", ROOT, eventType="AwsServiceEvent"), set()),
    (_event("ListBuckets", "s3.amazonaws.com", {**ROOT, "type": "root"}), set()),
    # CloudWatch.2: AccessDenied* and *UnauthorizedOperation, case-sensitive, prefix and suffix only.
    (_event("GetObject", "s3.amazonaws.com", errorCode="AccessDenied", errorMessage="Access Denied"), {"CloudWatch.2"}),
    (_event("ListKeys", "kms.amazonaws.com", errorCode="AccessDeniedException"), {"CloudWatch.2"}),
    (_event("RunInstances", "ec2.amazonaws.com", errorCode="Client.UnauthorizedOperation"), {"CloudWatch.2"}),
    (_event("RunInstances", "ec2.amazonaws.com", errorCode="UnauthorizedOperation"), {"CloudWatch.2"}),
    (_event("GetObject", "s3.amazonaws.com", errorCode="Client.AccessDenied"), set()),
    (_event("GetObject", "s3.amazonaws.com", errorCode="accessdenied"), set()),
    (_event("RunInstances", "ec2.amazonaws.com", errorCode="UnauthorizedOperationRetry"), set()),
    (_event("GetObject", "s3.amazonaws.com", errorCode="ThrottlingException", errorMessage="AccessDenied"), set()),
    # CloudWatch.3 and .6: console sign-ins.
    (_login(IAM_USER, "Success", "No"), {"CloudWatch.3"}),
    (_login(IAM_USER, "Success", "Yes"), set()),
    (_login(IAM_USER, "Failure", "No", "Failed authentication"), {"CloudWatch.6"}),
    (_login(IAM_USER, "Failure", "No", "No username found in supplied account"), set()),
    (_login(ROOT, "Success", "No"), {"CloudWatch.1"}),  # root without MFA: CloudWatch.3 is about IAM users
    (_login(IAM_USER, "Success", None), set()),  # no MFAUsed at all: != needs the field (docs/findings.md)
    # CloudWatch.4 to .14: the changes each one watches, and look-alikes.
    (_event("PutUserPolicy", "iam.amazonaws.com"), {"CloudWatch.4"}),
    (_event("AttachRolePolicy", "iam.amazonaws.com"), {"CloudWatch.4"}),
    (_event("GetUserPolicy", "iam.amazonaws.com"), set()),
    (_event("attachrolepolicy", "iam.amazonaws.com"), set()),
    (_event("StopLogging", "cloudtrail.amazonaws.com"), {"CloudWatch.5"}),
    (_event("UpdateTrail", "cloudtrail.amazonaws.com"), {"CloudWatch.5"}),
    (_event("DescribeTrails", "cloudtrail.amazonaws.com"), set()),
    (_event("ScheduleKeyDeletion", "kms.amazonaws.com"), {"CloudWatch.7"}),
    (_event("DisableKey", "kms.amazonaws.com"), {"CloudWatch.7"}),
    (_event("DisableKey", "payment-cryptography.amazonaws.com"), set()),
    (_event("PutBucketPolicy", "s3.amazonaws.com"), {"CloudWatch.8"}),
    (_event("DeleteBucketCors", "s3.amazonaws.com"), {"CloudWatch.8"}),
    (_event("PutBucketPolicy", "s3-outposts.amazonaws.com"), set()),
    (_event("StopConfigurationRecorder", "config.amazonaws.com"), {"CloudWatch.9"}),
    (_event("PutDeliveryChannel", "config.amazonaws.com"), {"CloudWatch.9"}),
    (_event("AuthorizeSecurityGroupIngress", "ec2.amazonaws.com"), {"CloudWatch.10"}),
    (_event("DescribeSecurityGroups", "ec2.amazonaws.com"), set()),
    (_event("ReplaceNetworkAclAssociation", "ec2.amazonaws.com"), {"CloudWatch.11"}),
    (_event("AttachInternetGateway", "ec2.amazonaws.com"), {"CloudWatch.12"}),
    (_event("CreateRoute", "ec2.amazonaws.com"), {"CloudWatch.13"}),
    (_event("DisassociateRouteTable", "ec2.amazonaws.com"), {"CloudWatch.13"}),
    (_event("ModifyVpcAttribute", "ec2.amazonaws.com"), {"CloudWatch.14"}),
    (_event("CreateVpcPeeringConnection", "ec2.amazonaws.com", errorCode="Client.UnauthorizedOperation"),
     {"CloudWatch.14", "CloudWatch.2"}),
    (_event("DescribeVpcs", "ec2.amazonaws.com"), set()),
]


def _write_file(folder: Path, records: list[dict[str, Any]], day: date = DAY, stamp: str = "1200", uid: str = "AAAAAAAAAAAAAAAA") -> Path:
    path = folder / f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{day:%Y/%m/%d}/{ACCOUNT}_CloudTrail_us-east-1_{day:%Y%m%d}T{stamp}Z_{uid}.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    return path


def _found(mysql_db: Any) -> dict[str, set[tuple[str, int]]]:
    """Findings per control as (file name, record index), read back from the findings table."""
    rows = mysql_db.query(
        "SELECT f.control, l.sourceKey, f.recordIndex FROM logs_findings f "
        "JOIN logs l ON l.sourceFileId = f.sourceFileId AND l.recordIndex = f.recordIndex"
    )
    found: dict[str, set[tuple[str, int]]] = {}
    for control, key, index in rows:
        found.setdefault(control, set()).add((Path(key).name, int(index)))
    return found


def _expected(controls: list[Any], files: list[Path]) -> dict[str, set[tuple[str, int]]]:
    expected: dict[str, set[tuple[str, int]]] = {}
    for path in files:
        for index, record in enumerate(read_events(path)):
            for control in controls:
                if record.get("eventTime") and matches(control.pattern, record):
                    expected.setdefault(control.id, set()).add((path.name, index))
    return expected


# -- parser ---------------------------------------------------------------------------------------
def test_builtin_controls_are_cis_cloudwatch_1_to_14_and_all_parse() -> None:
    controls = load_controls()
    assert [c.id for c in controls] == [f"CloudWatch.{n}" for n in range(1, 15)]
    assert all(c.severity == "Low" and c.title for c in controls)
    first, second, seventh = controls[0].pattern, controls[1].pattern, controls[6].pattern
    at = lambda pattern, text, start=0: pattern.index(text, start) + 1  # noqa: E731  (1-based)
    assert parse(first) == And((
        Compare(("userIdentity", "type"), "=", "Root", True, at(first, "$.userIdentity.type")),
        Check(("userIdentity", "invokedBy"), "NOT EXISTS", at(first, "$.userIdentity.invokedBy")),
        Compare(("eventType",), "!=", "AwsServiceEvent", True, at(first, "$.eventType")),
    ))
    assert parse(second) == Or((
        Compare(("errorCode",), "=", "*UnauthorizedOperation", True, at(second, "$.errorCode")),
        Compare(("errorCode",), "=", "AccessDenied*", True, at(second, "$.errorCode", 5)),
    ))
    kms = parse(seventh)
    assert isinstance(kms, And) and kms.items[0] == Compare(("eventSource",), "=", "kms.amazonaws.com", False, 3)


def test_precedence_parentheses_selectors_and_values() -> None:
    text = '{ $.a = 1 || $.b[0].c != "x y" && $.d IS NULL }'
    assert parse(text) == Or((
        Compare(("a",), "=", "1", False, 3),
        And((Compare(("b", 0, "c"), "!=", "x y", True, text.index("$.b") + 1), Check(("d",), "NULL", text.index("$.d") + 1))),
    ))
    text = "{($.a=1||$.b=2)&&$.c>=-1.5e3}"
    assert parse(text) == And((
        Or((Compare(("a",), "=", "1", False, 3), Compare(("b",), "=", "2", False, text.index("$.b") + 1))),
        Compare(("c",), ">=", "-1.5e3", False, text.index("$.c") + 1),
    ))
    assert parse(r'{ $.m = "say \"hi\"" }') == Compare(("m",), "=", 'say "hi"', True, 3)
    text = "{ $.flag IS TRUE || $.x NOT EXISTS }"
    assert parse(text) == Or((Check(("flag",), "TRUE", 3), Check(("x",), "NOT EXISTS", text.index("$.x") + 1)))


@pytest.mark.parametrize(
    ("pattern", "position", "words"),
    [
        ('$.eventName = "x"', 1, "starts with '{'"),
        ('{ $.eventName = }', 17, "expected a value"),
        ('{ $.eventName = "x" ', 21, "closing '}'"),
        ('{ $.eventName = "x', 17, "unterminated string"),
        ('{ eventName = "x" }', 3, "expected a selector"),
        ('{ $.a = 1 & $.b = 2 }', 11, "'&' alone"),
        ('{ $.a IS NOT NULL }', 10, "NULL, TRUE or FALSE"),
        ('{ $.a NOT THERE }', 11, "EXISTS"),
        ('{ $.a < abc }', 9, "compares numbers"),
        ('{ ($.a = 1 }', 12, "expected ')'"),
        ('{ $.a = 1 } $.b = 2', 13, "nothing may follow"),
        ('{ $..a = 1 }', 5, "property name"),
        ('{ $.a[x] = 1 }', 6, "array index"),
        ('{ $.a ! = 1 }', 7, "'!' must be followed"),
        ('{ $.a }', 7, "expected an operator"),
    ],
)
def test_bad_patterns_are_refused_with_the_control_and_the_position(pattern: str, position: int, words: str) -> None:
    with pytest.raises(PatternError) as caught:
        parse(pattern, "Team.7")
    assert caught.value.position == position, str(caught.value)
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"control Team.7: bad filter pattern at position {position}: ")


def test_a_bad_controls_file_is_refused_naming_file_control_and_position(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"controls": [
        {"id": "Mine.1", "title": "ok", "severity": "High", "pattern": '{ $.eventName = "StopLogging" }'},
        {"id": "Mine.2", "title": "bad", "severity": "High", "pattern": '{ $.eventName = "StopLogging" && }'},
    ]}))
    with pytest.raises(ControlsFileError, match=r"mine\.json: control Mine\.2: bad filter pattern at position 34"):
        load_controls(path)
    path.write_text(json.dumps([{"id": "CloudWatch.3", "pattern": '{ $.a = 1 }'}]))
    with pytest.raises(ControlsFileError, match="CloudWatch.3 is defined twice"):
        load_controls(path)
    path.write_text(json.dumps([{"id": "bad id; DROP", "pattern": '{ $.a = 1 }'}]))
    with pytest.raises(ControlsFileError, match="needs an id"):
        load_controls(path)
    path.write_text("{not json")
    with pytest.raises(ControlsFileError, match="mine.json: not valid JSON"):
        load_controls(path)


def test_values_never_reach_the_sql_text() -> None:
    hostile = "x') OR 1=1 -- %s %(day)s `"
    condition, params = compile_pattern(parse('{ $.eventName = "' + hostile.replace('"', '\\"') + '" || $.userIdentity.arn = "' + hostile + '*" }'))
    assert "OR 1=1" not in condition and "%s" not in condition.replace("%(", "") and "day" not in condition
    assert hostile in params.values()
    assert re.fullmatch(r"[^%]*(%\([a-z0-9_]+\)s[^%]*)*", condition), "only %(name)s placeholders"


def test_the_compiler_knows_the_columns_the_table_has(mysql_db: Any) -> None:
    from cloudtrail_mysql.findings import BOOL_COLUMNS, JSON_COLUMNS, TEXT_COLUMNS
    from cloudtrail_mysql.writer import MySqlWriter

    conn = mysql_db.connect()
    try:
        writer = MySqlWriter(conn, "logs")
        writer.ensure_schema()
        kinds = {column.name: column.kind for column in writer.columns()}
    finally:
        conn.close()
    for name in TEXT_COLUMNS | JSON_COLUMNS:
        assert kinds.get(name) == "text", name
    for name in BOOL_COLUMNS:
        assert kinds.get(name) == "bool", name


# -- against MySQL --------------------------------------------------------------------------------
def test_each_control_matches_exactly_its_documented_events_and_no_near_miss(run_main, tmp_path: Path, mysql_db: Any) -> None:
    records = [event for event, _ in LABELLED]
    path = _write_file(tmp_path / "trail", records)
    loaded = run_main("import", tmp_path / "trail", "--mysql-url", mysql_db.url, "--workers", "1")
    assert loaded.returncode == 0, loaded.stderr
    built = run_main("findings", "--all", "--json", "--mysql-url", mysql_db.url)
    assert built.returncode == 0, built.stderr

    controls = load_controls()
    want: dict[str, set[tuple[str, int]]] = {}
    for index, (_event, labels) in enumerate(LABELLED):
        for control in labels:
            want.setdefault(control, set()).add((path.name, index))
    # The labels and the independent evaluator agree, and the SQL gives exactly that.
    assert _expected(controls, [path]) == want
    assert _found(mysql_db) == want
    assert set(want) == {f"CloudWatch.{n}" for n in range(1, 15)}, "every control has at least one event"
    assert json.loads(built.stdout)["findings"] == {c: len(v) for c, v in want.items()}

    row = mysql_db.query_dicts("SELECT * FROM logs_findings WHERE control = 'CloudWatch.3'")[0]
    assert row["event_day"] == DAY and row["principal"] == IAM_USER["arn"] and row["eventName"] == "ConsoleLogin"
    assert row["recipientAccountId"] == ACCOUNT and row["awsRegion"] == "us-east-1" and row["sourceIPAddress"] == "192.0.2.1"
    assert str(row["eventTime"]) == "2017-04-10 12:00:00" and row["errorCode"] is None


def test_user_patterns_wildcards_numbers_cut_values_and_unknown_fields(run_main, tmp_path: Path, mysql_db: Any) -> None:
    """Values kept whole in extraFields (cut or untyped) and fields without a column are matched
    on the whole value; '%' and '_' are literal; numbers compare as numbers."""
    records = [
        _event("Get", "s3.amazonaws.com", errorCode="E" * 300 + "Z"),                    # 0: cut, ends in Z
        _event("Get", "s3.amazonaws.com", errorCode="E" * 300),                          # 1: cut, no Z
        _event("Get", "s3.amazonaws.com", errorCode="50%_x"),                            # 2
        _event("Get", "s3.amazonaws.com", errorCode="50abx"),                            # 3: % and _ are literal
        _event("Get", "s3.amazonaws.com", errorCode="50%Zx"),                            # 4
        _event("Get", "s3.amazonaws.com", futureField={"level": 7}),                     # 5: no column
        _event("Get", "s3.amazonaws.com", futureField={"level": 2}),                     # 6
        _event("Get", "s3.amazonaws.com", requestParameters={"bucketName": "b", "max": 1000, "tags": ["a", "b"]}),  # 7
        _event("Get", "s3.amazonaws.com", requestParameters={"bucketName": "b", "max": "1000"}),  # 8: a string
        _event("Get", "s3.amazonaws.com", readOnly="maybe"),                             # 9: not a boolean: extraFields
        _event("Get", "s3.amazonaws.com", readOnly=True),                                # 10
        _event("Get", "s3.amazonaws.com", requestParameters={"bucketName": "b", "max": None}),  # 11
    ]
    path = _write_file(tmp_path / "trail", records)
    mine = tmp_path / "mine.json"
    patterns = {
        "Mine.cut": '{ $.errorCode = "*Z" }',
        "Mine.literal": '{ $.errorCode = "50%_*" }',
        "Mine.future": "{ $.futureField.level > 5 }",
        "Mine.number": "{ $.requestParameters.max = 1000 }",
        "Mine.array": '{ $.requestParameters.tags[1] = "b" }',
        "Mine.maybe": '{ $.readOnly = "maybe" }',
        "Mine.true": "{ $.readOnly IS TRUE }",
        "Mine.null": "{ $.requestParameters.max IS NULL }",
    }
    mine.write_text(json.dumps([{"id": k, "title": k, "severity": "Info", "pattern": v} for k, v in patterns.items()]))
    assert run_main("import", tmp_path / "trail", "--mysql-url", mysql_db.url, "--workers", "1").returncode == 0
    built = run_main("findings", "--all", "--controls", mine, "--mysql-url", mysql_db.url)
    assert built.returncode == 0, built.stderr
    found = {c: {i for _, i in v} for c, v in _found(mysql_db).items() if c.startswith("Mine.")}
    assert found == {
        "Mine.cut": {0}, "Mine.literal": {2}, "Mine.future": {5}, "Mine.number": {7, 8}, "Mine.array": {7},
        "Mine.maybe": {9}, "Mine.true": {10}, "Mine.null": {11},
    }
    assert path.name


def test_generated_days_give_exactly_the_events_the_patterns_select_and_rebuilds_are_exact(run_main, tmp_path: Path, mysql_db: Any) -> None:
    day = make_sample_day(tmp_path / "day", records=2400, digests=False, seed=5)
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"controls": [{
        "id": "Team.sts-denied", "title": "STS calls denied", "severity": "Medium",
        "pattern": '{ ($.eventSource = "sts.amazonaws.com") && ($.errorCode = "AccessDenied" || $.errorCode = "*Exception") }',
    }]}))
    assert run_main("import", day.root, "--mysql-url", mysql_db.url, "--workers", "1").returncode == 0
    built = run_main("findings", "--all", "--controls", mine, "--mysql-url", mysql_db.url)
    assert built.returncode == 0, built.stderr

    controls = load_controls(mine)
    files = [day.path(item) for item in day.log_files]
    expected = _expected(controls, files)
    found = _found(mysql_db)
    assert found == expected
    for wanted in ("CloudWatch.1", "CloudWatch.2", "CloudWatch.3", "CloudWatch.6", "Team.sts-denied"):
        assert expected.get(wanted), f"the sample day has no {wanted} event"

    # The day's findings on the command line, text and JSON; exit 0 with findings and without.
    shown = run_main("findings", "--day", str(DAY), "--limit", "2", "--controls", mine, "--mysql-url", mysql_db.url)
    assert shown.returncode == 0, shown.stderr
    on_day = {c: {k for k in v if _event_day(files, k) == DAY} for c, v in expected.items()}
    title = "Ensure a log metric filter and alarm exist for unauthorized API calls"
    assert f"CloudWatch.2 (Low): {title}: {len(on_day['CloudWatch.2'])} finding(s)" in shown.stdout
    as_json = run_main("findings", "--day", str(DAY), "--json", "--limit", "0", "--mysql-url", mysql_db.url)
    document = json.loads(as_json.stdout)
    assert {c["control"]: c["findings"] for c in document["controls"]} == {c: len(v) for c, v in on_day.items() if v}
    assert all(len(c["rows"]) == c["findings"] for c in document["controls"])
    clean = run_main("findings", "--day", "2001-01-01", "--mysql-url", mysql_db.url)
    assert clean.returncode == 0 and "no findings" in clean.stdout

    # Rebuilding changes nothing; rows gone from the logs table (retention) leave no finding behind.
    snapshot = mysql_db.query("SELECT * FROM logs_findings ORDER BY 1, 2, 3, 4")
    assert run_main("findings", "--all", "--controls", mine, "--mysql-url", mysql_db.url).returncode == 0
    assert mysql_db.query("SELECT * FROM logs_findings ORDER BY 1, 2, 3, 4") == snapshot
    mysql_db.query("DELETE FROM logs WHERE eventTimestamp < %s", DAY)
    assert run_main("findings", "--all", "--controls", mine, "--mysql-url", mysql_db.url).returncode == 0
    assert mysql_db.query("SELECT COUNT(*) FROM logs_findings WHERE event_day < %s", DAY) == [(0,)]
    assert _found(mysql_db) == {c: {k for k in v if _event_day(files, k) == DAY} for c, v in expected.items() if on_day[c]}


def _event_day(files: list[Path], key: tuple[str, int]) -> date:
    path = next(p for p in files if p.name == key[0])
    return date.fromisoformat(read_events(path)[key[1]]["eventTime"][:10])


def test_a_bad_user_file_fails_the_command_clearly(run_main, tmp_path: Path, mysql_db: Any) -> None:
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps([{"id": "Mine.1", "pattern": '{ $.eventName = "x" || ( }'}]))
    result = run_main("findings", "--all", "--controls", mine, "--mysql-url", mysql_db.url)
    assert result.returncode == 2
    assert "mine.json: control Mine.1: bad filter pattern at position 26" in result.stderr


def test_duplicate_deliveries_are_one_finding_and_late_files_join_their_day(run_main, tmp_path: Path, mysql_db: Any) -> None:
    stop = _event("StopLogging", "cloudtrail.amazonaws.com", eventID="e-1", eventTime="2017-04-09T23:58:00Z")
    _write_file(tmp_path / "trail", [stop], stamp="0005", uid="BBBBBBBBBBBBBBBB")
    _write_file(tmp_path / "trail", [dict(stop)], stamp="0010", uid="CCCCCCCCCCCCCCCC")  # delivered twice
    assert run_main("import", tmp_path / "trail", "--mysql-url", mysql_db.url, "--workers", "1").returncode == 0
    conn = mysql_db.connect()
    try:
        from cloudtrail_mysql.findings import build_findings

        assert build_findings(conn, "logs", load_controls(), str(DAY)) == {"CloudWatch.5": 1}
        late = _write_file(tmp_path / "late", [_event("DeleteTrail", "cloudtrail.amazonaws.com", eventTime="2017-04-09T23:59:00Z")],
                           stamp="2300", uid="DDDDDDDDDDDDDDDD")
        assert run_main("import", late, "--mysql-url", mysql_db.url).returncode == 0
        assert build_findings(conn, "logs", load_controls(), str(DAY)) == {"CloudWatch.5": 2}
    finally:
        conn.close()
    assert mysql_db.query("SELECT event_day, eventName FROM logs_findings ORDER BY eventTime") == [
        (DAY - timedelta(days=1), "StopLogging"), (DAY - timedelta(days=1), "DeleteTrail")]


def test_findings_from_the_summaries_scan_equal_a_scan_of_their_own(
    run_main: Any, tmp_path: Path, mysql_db: Any, caplog: Any
) -> None:
    """The day's part of the findings, found in build_summaries' scan, gives the very rows that
    build_findings' own scan gives: copies counted once (the first loaded, whatever it holds), other
    controls than the part was built for found by a scan, a reload making the part stale."""
    from cloudtrail_mysql.daytasks import build_summaries
    from cloudtrail_mysql.findings import build_findings

    trail = tmp_path / "trail"
    make_sample_day(trail, records=1200, digests=False, seed=11)
    before = _event("StopLogging", "cloudtrail.amazonaws.com", eventID="x-1", eventTime="2017-04-09T23:57:00Z")
    _write_file(trail, [before], day=DAY - timedelta(days=1), stamp="2350", uid="EEEEEEEEEEEEEEEE")
    _write_file(trail, [dict(before)], stamp="0003", uid="FFFFFFFFFFFFFFFF")  # a copy delivered the next day
    # The first copy of an event does not match, a later copy of it does: the event is no finding.
    quiet = _event("DescribeTrails", "cloudtrail.amazonaws.com", eventID="x-2", eventTime="2017-04-10T08:00:00Z")
    _write_file(trail, [quiet, dict(quiet, eventName="StopLogging")], stamp="0800", uid="GGGGGGGGGGGGGGGG")
    assert run_main("import", trail, "--mysql-url", mysql_db.url, "--workers", "1").returncode == 0

    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"controls": [{
        "id": "Team.describe", "title": "Describe calls", "severity": "Low", "pattern": '{ $.eventName = "Describe*" }'}]}))
    cis, more = load_controls(), load_controls(mine)
    days = [DAY - timedelta(days=1), DAY]
    conn = mysql_db.connect()
    try:
        caplog.set_level("INFO", logger="cloudtrail_mysql.findings")
        for day in days:
            build_summaries(conn, "logs", day, cis)
            build_findings(conn, "logs", cis, str(day))
        assert caplog.text.count("from the day's part (the summaries' scan)") == 2
        from_parts = mysql_db.query("SELECT * FROM logs_findings ORDER BY 1, 2, 3, 4")
        assert mysql_db.query("SELECT COUNT(*) FROM logs_parts_findings") != [(0,)]
        build_findings(conn, "logs", cis)  # every day, in a scan of its own
        assert mysql_db.query("SELECT * FROM logs_findings ORDER BY 1, 2, 3, 4") == from_parts
        stops = mysql_db.query("SELECT deliveryDay, eventTime FROM logs_findings WHERE eventName = 'StopLogging' "
                               "AND eventTime IN ('2017-04-09 23:57:00', '2017-04-10 08:00:00')")
        assert stops == [(DAY - timedelta(days=1), datetime(2017, 4, 9, 23, 57))]  # the first copy, once

        # Other controls than the part was built for: a scan of their own, the same as every day's.
        caplog.clear()
        for day in days:
            build_findings(conn, "logs", more, str(day))
        assert caplog.text.count("in a scan of their own") == 2
        per_day = mysql_db.query("SELECT * FROM logs_findings ORDER BY 1, 2, 3, 4")
        build_findings(conn, "logs", more)
        assert mysql_db.query("SELECT * FROM logs_findings ORDER BY 1, 2, 3, 4") == per_day
        assert mysql_db.query("SELECT COUNT(*) FROM logs_findings WHERE control = 'Team.describe'") != [(0,)]

        # Summaries rebuilt without controls leave no part that could be stale.
        build_summaries(conn, "logs", DAY)
        assert mysql_db.query("SELECT COUNT(*) FROM logs_parts_findings_built WHERE delivery_day = %s", DAY) == [(0,)]
        assert mysql_db.query("SELECT COUNT(*) FROM logs_parts_findings WHERE delivery_day = %s", DAY) == [(0,)]
    finally:
        conn.close()


# -- the DAG --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.lane
def test_daily_run_fills_findings_reports_them_publishes_the_asset_and_reruns_identically(
    airflow_env: dict[str, str], s3_bucket: tuple[Any, str], mysql_db: Any, s3_server: str, tmp_path: Path
) -> None:
    from cloudtrail_mysql.sample import day_files

    client, bucket = s3_bucket
    records = _put(client, bucket, day_files(DAY, records=400, accounts=(ACCOUNT,), regions=("us-east-1", "eu-west-1"),
                                             files_per_region=3, digests=False, seed=3))
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps([{"id": "Team.trail", "title": "Trail API calls", "severity": "High",
                                 "pattern": '{ $.eventSource = "cloudtrail.amazonaws.com" }'}]))
    env = {**airflow_connections(s3_server, mysql_db.url), "CLOUDTRAIL_BUCKET": bucket}
    conf = {"controls_file": str(mine)}

    run = _dags_test(airflow_env, DAY, env, conf=conf)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    controls = load_controls(mine)
    expected: dict[str, set[tuple[str, int]]] = {}
    for key, found in records.items():
        for index, record in enumerate(found):
            for control in controls:
                if matches(control.pattern, record):
                    expected.setdefault(control.id, set()).add((Path(key).name, index))
    assert _found(mysql_db) == expected and expected.get("Team.trail") and expected.get("CloudWatch.2")

    report = Path(airflow_env["AIRFLOW_HOME"]) / "logs" / "cloudtrail_reports" / "logs" / f"{DAY}.html"
    page = report.read_text()
    on_day = mysql_db.query("SELECT control, COUNT(*) FROM logs_findings WHERE event_day = %s GROUP BY control", DAY)
    assert "<h2>Findings</h2>" in page
    for control, count in on_day:
        assert f"<tr><td>{control}</td><td>{count}</td>" in page
    assert "Trail API calls" in page

    def findings_events() -> int | None:
        """Asset events of the findings Asset; None on Airflow 2, whose `dags test` runs tasks in
        test mode and records no dataset events at all."""
        with sqlite3.connect(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db") as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "asset_event" not in tables:
                return None
            return db.execute(
                "SELECT COUNT(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                "WHERE a.uri = 'x-cloudtrail-mysql://findings/cloudtrail_daily'"
            ).fetchone()[0]

    published = findings_events()
    assert published is None or published >= 1
    snapshot = mysql_db.query("SELECT * FROM logs_findings ORDER BY 1, 2, 3, 4")
    again = _dags_test(airflow_env, DAY, env, conf=conf)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert mysql_db.query("SELECT * FROM logs_findings ORDER BY 1, 2, 3, 4") == snapshot

    # A day without findings (no files at all) leaves the Asset alone and its report without the section.
    empty = _dags_test(airflow_env, date(2016, 1, 1), env)
    assert empty.returncode == 0, empty.stdout[-4000:] + empty.stderr[-4000:]
    if published is not None:
        assert findings_events() == published + 1  # the rerun above published; the empty day did not
    clean = report.with_name("2016-01-01.html").read_text()
    assert "Findings" not in clean
