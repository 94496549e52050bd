"""Both ways of writing rows (LOAD DATA LOCAL INFILE and multi-row INSERT) store exactly the same rows."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import make_sample_day


def _rows(mysql_db: Any, table: str) -> list[tuple]:
    columns = [
        name for (name,) in mysql_db.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = %s "
            "AND column_name NOT IN ('sourceFileId') ORDER BY ordinal_position", table,
        )
    ]
    select = ", ".join(f"`{c}`" for c in columns)
    return mysql_db.query(f"SELECT {select} FROM `{table}` ORDER BY sourceKey, recordIndex")


def _awkward_file(path: Path) -> int:
    """Values that TSV must escape: tabs, newlines, carriage returns, backslashes, NUL, \\N, quotes."""
    records = [
        {
            "eventVersion": "1.08",
            "eventTime": "2017-04-10T11:35:00Z",
            "eventSource": "s3.amazonaws.com",
            "eventName": "Put\tObject",
            "errorMessage": "line one\nline two\r\nand a back\\slash, a \\N and a NUL \u0000 here",
            "userAgent": "agent 'quoted' \"double\" \U0001F680",
            "requestParameters": {"key": "a\\b\tc\nd", "n": 1, "ok": True, "none": None},
            "readOnly": False,
            "eventID": "\\N",
            "recipientAccountId": "",
        },
        {"eventVersion": "1.0", "eventTime": "2017-04-10T11:36:00Z", "eventSource": "\\", "eventName": "\\\\"},
        # A lone surrogate escape, control characters, and eventTimes off CloudTrail's usual form.
        {"eventTime": "2017-02-30T11:35:00Z", "sharedEventID": "x\ud800y", "vpcEndpointId": "\x1d\x1e\x1f\x01"},
        {"eventTime": "2017-04-10T13:35:00.250+02:00", "eventName": "\u00e9t\u00e9 \u4e2d\u6587"},
        {"eventTime": "0999-04-10T11:35:00Z", "readOnly": "TRUE", "managementEvent": 1},
        {"eventTime": "2017-04-10 11:35:00Z", "eventCategory": ["not", "a", "string"]},
        # One character to escape in an otherwise plain row each: a line is written unescaped only
        # when it has exactly one backslash per NULL, one tab per field boundary and no newline,
        # CR or NUL, so each of these must be caught by that check.
        {"eventTime": "2017-04-10T11:37:00Z", "eventID": "\\N"},
        {"eventTime": "2017-04-10T11:37:00Z", "requestID": "ends with a backslash\\"},
        {"eventTime": "2017-04-10T11:37:00Z", "eventName": "a\tb"},
        {"eventTime": "2017-04-10T11:37:00Z", "eventName": "a\nb"},
        {"eventTime": "2017-04-10T11:37:00Z", "eventName": "a\rb"},
        {"eventTime": "2017-04-10T11:37:00Z", "eventName": "a\u0000b"},
        {"eventTime": "2017-04-10T11:37:00Z", "eventName": "\t", "errorCode": "\\"},
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    return len(records)


# The server's sql_mode as a DBA may set it: '\\t' is two characters in SQL text under
# NO_BACKSLASH_ESCAPES, double quotes name identifiers under ANSI_QUOTES.
STRICT_SQL_MODE = "STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,ANSI_QUOTES,ONLY_FULL_GROUP_BY,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION"


@pytest.fixture(params=["default", "strict"])
def server_sql_mode(request: pytest.FixtureRequest, mysql_db: Any) -> Any:
    """The server's default sql_mode, or a strict one set globally for new connections (restored
    afterwards; the tests of this suite run one at a time)."""
    if request.param == "default":
        yield request.param
        return
    (before,) = mysql_db.query("SELECT @@GLOBAL.sql_mode")[0]
    mysql_db.query("SET GLOBAL sql_mode = %s", STRICT_SQL_MODE)
    try:
        yield request.param
    finally:
        mysql_db.query("SET GLOBAL sql_mode = %s", before)


@pytest.mark.parametrize("with_awkward_values", [False, True])
def test_load_data_and_insert_store_identical_rows(
    run_main, mysql_db: Any, tmp_path: Path, with_awkward_values: bool, server_sql_mode: str
) -> None:
    if server_sql_mode == "strict":
        assert "NO_BACKSLASH_ESCAPES" in mysql_db.query("SELECT @@SESSION.sql_mode")[0][0]
    root = tmp_path / "files"
    make_sample_day(root, records=300, insight=False)
    extra = 0
    if with_awkward_values:
        folder = root / "AWSLogs/111122223333/CloudTrail/us-east-1/2017/04/10"
        extra = _awkward_file(folder / "111122223333_CloudTrail_us-east-1_20170410T1135Z_AWKWARDAWKWARDAW.json.gz")

    for method, table in (("load_data", "via_load_data"), ("insert", "via_insert")):
        result = run_main("import", root, "--mysql-url", mysql_db.url, "--table", table, "--method", method, "--workers", "1")
        assert result.returncode == 0, result.stderr
    load_data_rows = _rows(mysql_db, "via_load_data")
    insert_rows = _rows(mysql_db, "via_insert")
    assert len(load_data_rows) == 300 + extra
    assert load_data_rows == insert_rows

    if with_awkward_values:
        found = mysql_db.query_dicts(
            "SELECT eventName, errorMessage, requestParameters, eventID, recipientAccountId, readOnly FROM via_load_data"
            " WHERE sourceKey LIKE %s ORDER BY recordIndex",
            "%AWKWARD%",
        )
        assert found[0]["eventName"] == "Put\tObject"
        assert found[0]["errorMessage"] == "line one\nline two\r\nand a back\\slash, a \\N and a NUL \u0000 here"
        assert json.loads(found[0]["requestParameters"]) == {"key": "a\\b\tc\nd", "n": 1, "ok": True, "none": None}
        assert found[0]["eventID"] == "\\N"  # the text, not NULL
        assert found[0]["recipientAccountId"] == ""  # empty, not NULL
        assert found[0]["readOnly"] == 0
        assert found[1]["eventName"] == "\\\\" and found[1]["readOnly"] is None
        odd = mysql_db.query_dicts(
            "SELECT eventTimestamp, sharedEventID, vpcEndpointId, eventName, readOnly, managementEvent FROM via_load_data "
            "WHERE sourceKey LIKE %s AND recordIndex BETWEEN 2 AND 5 ORDER BY recordIndex", "%AWKWARD%",
        )
        assert [row["eventTimestamp"] for row in odd] == [None, datetime(2017, 4, 10, 11, 35), None, datetime(2017, 4, 10, 11, 35)]
        assert set(odd[0]["sharedEventID"].strip("xy")) == {"\ufffd"} and odd[0]["vpcEndpointId"] == "\x1d\x1e\x1f\x01"
        assert odd[1]["eventName"] == "\u00e9t\u00e9 \u4e2d\u6587"
        assert odd[2]["readOnly"] == 1 and odd[2]["managementEvent"] is None
        single = mysql_db.query_dicts(
            "SELECT eventID, requestID, eventName, errorCode FROM via_load_data WHERE sourceKey LIKE %s AND recordIndex >= 6 "
            "ORDER BY recordIndex", "%AWKWARD%",
        )
        assert single[0]["eventID"] == "\\N" and single[1]["requestID"] == "ends with a backslash\\"
        assert [row["eventName"] for row in single[2:]] == ["a\tb", "a\nb", "a\rb", "a\u0000b", "\t"]
        assert single[6]["errorCode"] == "\\"
