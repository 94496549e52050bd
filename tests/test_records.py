"""records.py alone: classifying keys, file identity, reading files, building rows. No database."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from typing import Any

import pytest

from cloudtrail_mysql.records import (
    CloudTrailFileError,
    Column,
    DigestFile,
    FileKind,
    RowBuilder,
    classify,
    file_identity,
    read_records,
)

ACCOUNT = "111122223333"
DAY = "2017/04/10"
LOG_NAME = f"{ACCOUNT}_CloudTrail_us-east-1_20170410T0005Z_AbCdEfGh12345678.json.gz"
DIGEST_NAME = f"{ACCOUNT}_CloudTrail-Digest_us-east-1_management-trail_us-east-1_20170410T010000Z.json.gz"
INSIGHT_NAME = f"{ACCOUNT}_CloudTrail-Insight_us-east-1_20170410T0000Z_QwErTyUiOp123456.json.gz"
NETWORK_NAME = f"{ACCOUNT}_CloudTrail-NetworkActivity_us-east-1_20170410T0005Z_ZxCvBnMaSdFg1234.json.gz"
AGGREGATED_NAME = f"{ACCOUNT}_CloudTrail-Aggregated_us-east-1_20170410T0005Z_AgGrEgAtEd123456.json.gz"


def _gz(document: Any) -> bytes:
    return gzip.compress(json.dumps(document).encode("utf-8"), mtime=0)


# -- classify -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, kind",
    [
        # plain account trail
        (f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/{LOG_NAME}", FileKind.LOG),
        (f"s3://bucket/my-prefix/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/{LOG_NAME}", FileKind.LOG),
        (f"/tmp/x/AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/{DAY}/{DIGEST_NAME}", FileKind.DIGEST),
        (f"AWSLogs/{ACCOUNT}/CloudTrail-Insight/us-east-1/{DAY}/{INSIGHT_NAME}", FileKind.INSIGHT),
        (
            f"AWSLogs/{ACCOUNT}/CloudTrail-NetworkActivity/us-east-1/{DAY}/{NETWORK_NAME}",
            FileKind.NETWORK_ACTIVITY,
        ),
        # organization trail: AWSLogs/<org-id>/<account>/...
        (f"AWSLogs/o-abc123/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/{LOG_NAME}", FileKind.LOG),
        (f"s3://b/AWSLogs/o-abc123/{ACCOUNT}/CloudTrail-Digest/us-east-1/{DAY}/{DIGEST_NAME}", FileKind.DIGEST),
        (f"AWSLogs/o-abc123/{ACCOUNT}/CloudTrail-Insight/us-east-1/{DAY}/{INSIGHT_NAME}", FileKind.INSIGHT),
        # CloudTrail's file names alone, e.g. files copied into one flat folder
        (LOG_NAME, FileKind.LOG),
        (DIGEST_NAME, FileKind.DIGEST),
        (INSIGHT_NAME, FileKind.INSIGHT),
        (NETWORK_NAME, FileKind.NETWORK_ACTIVITY),
        (f"flat/{DIGEST_NAME}", FileKind.DIGEST),
        # odd account folders / names not in CloudTrail's form: the nearest kind folder decides
        (f"AWSLogs/not-an-account/CloudTrail-Digest/us-east-1/{DAY}/renamed.json.gz", FileKind.DIGEST),
        (f"AWSLogs/Account_With_Underscores/CloudTrail-Insight/us-east-1/{DAY}/x.json.gz", FileKind.INSIGHT),
        (f"AWSLogs/123/CloudTrail/us-east-1/{DAY}/hand-made.json", FileKind.LOG),
        (f"CloudTrail/AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/{DAY}/renamed.json.gz", FileKind.DIGEST),
        (f"CloudTrail-Digest/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/renamed.json.gz", FileKind.LOG),
        (
            f"C:\\logs\\AWSLogs\\{ACCOUNT}\\CloudTrail-Insight\\us-east-1\\2017\\04\\10\\renamed.json.gz",
            FileKind.INSIGHT,
        ),
        # upper-case extension: still a CloudTrail file, its folder decides
        (f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/{LOG_NAME[:-8]}.JSON.GZ", FileKind.LOG),
        (f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/{DAY}/{DIGEST_NAME[:-8]}.JSON.GZ", FileKind.DIGEST),
        # hand-made samples outside the layout: loaded, their content decides
        ("sample.json.gz", FileKind.LOG),
        ("/home/me/events.json", FileKind.LOG),
        # not CloudTrail files at all
        (f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/README.txt", FileKind.OTHER),
        (f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/{LOG_NAME}.tmp", FileKind.OTHER),
        (f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/", FileKind.OTHER),
        (f"AWSLogs/{ACCOUNT}/elasticloadbalancing/us-east-1/{DAY}/{ACCOUNT}_elb_x.log.gz", FileKind.OTHER),
        ("notes.gz", FileKind.OTHER),
        ("archive.json.gz.zip", FileKind.OTHER),
        # aggregated data events: 5-minute summaries, a kind of their own
        (f"AWSLogs/{ACCOUNT}/CloudTrail-Aggregated/us-east-1/{DAY}/{AGGREGATED_NAME}", FileKind.AGGREGATED),
        (f"AWSLogs/o-abc123/{ACCOUNT}/CloudTrail-Aggregated/us-east-1/{DAY}/renamed.json.gz", FileKind.AGGREGATED),
        (AGGREGATED_NAME, FileKind.AGGREGATED),
        # other services sharing a log-archive bucket, and CloudTrail kinds this loader does not know
        (f"AWSLogs/{ACCOUNT}/Config/us-east-1/2017/4/10/ConfigSnapshot/"
         f"{ACCOUNT}_Config_us-east-1_ConfigSnapshot_20170410T000000Z_x.json.gz", FileKind.OTHER),
        (f"s3://b/AWSLogs/o-abc123/{ACCOUNT}/Config/us-east-1/2017/4/10/ConfigHistory/{ACCOUNT}_Config_x.json.gz", FileKind.OTHER),
        (f"AWSLogs/{ACCOUNT}/CloudTrail-SomethingNew/us-east-1/{DAY}/x.json.gz", FileKind.OTHER),
        (f"{ACCOUNT}_CloudTrail-SomethingNew_us-east-1_20170410T0005Z_AbCdEfGh12345678.json.gz", FileKind.OTHER),
        ("s3://b/AWSLogs/manifest.json", FileKind.OTHER),
        # a user's own folder that merely starts like a kind folder is no CloudTrail folder
        ("/home/me/cloudtrail-samples/events.json", FileKind.LOG),
    ],
)
def test_classify(name: str, kind: FileKind) -> None:
    assert classify(name) is kind


@pytest.mark.parametrize(
    "name, kind",
    [
        (f"{INSIGHT_NAME[:-8]}.JSON.GZ", FileKind.INSIGHT),
        (f"flat/{DIGEST_NAME[:-8]}.JSON.GZ", FileKind.DIGEST),
    ],
)
def test_classify_upper_case_extension_by_name(name: str, kind: FileKind) -> None:
    assert classify(name) is kind


def test_wanted_kinds_follow_classify() -> None:
    from cloudtrail_mysql.loader import DEFAULT_KINDS, wanted

    insight = f"AWSLogs/{ACCOUNT}/CloudTrail-Insight/us-east-1/{DAY}/{INSIGHT_NAME}"
    assert wanted(f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/{LOG_NAME}") == (True, "")
    ok, why = wanted(insight)
    assert not ok and "Insight" in why
    assert wanted(insight, DEFAULT_KINDS | {FileKind.INSIGHT}) == (True, "")
    ok, why = wanted("notes.txt")
    assert not ok and why
    ok, why = wanted(f"AWSLogs/{ACCOUNT}/CloudTrail-Aggregated/us-east-1/{DAY}/{AGGREGATED_NAME}")
    assert not ok and "Aggregated" in why


# -- file_identity --------------------------------------------------------------------------------
def test_file_identity_same_cloudtrail_file_from_folder_and_s3() -> None:
    key = f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/{LOG_NAME}"
    local = file_identity(f"/data/download/{key}")
    remote = file_identity(f"s3://bucket/prefix/{key}")
    windows = file_identity("C:\\data\\" + key.replace("/", "\\"))
    assert local == remote == windows == LOG_NAME


def test_file_identity_org_trail_and_digest_names() -> None:
    assert file_identity(f"s3://b/AWSLogs/o-abc123/{ACCOUNT}/CloudTrail/us-east-1/{DAY}/{LOG_NAME}") == LOG_NAME
    assert file_identity(f"/x/{DIGEST_NAME}") == DIGEST_NAME
    assert file_identity(f"s3://b/AWSLogs/{ACCOUNT}/CloudTrail-Aggregated/us-east-1/{DAY}/{AGGREGATED_NAME}") == AGGREGATED_NAME


def test_file_identity_other_files_keep_full_location() -> None:
    first = file_identity("/data/a/sample.json.gz")
    second = file_identity("/data/b/sample.json.gz")
    assert first == "/data/a/sample.json.gz"
    assert first != second
    assert file_identity("s3://bucket/x/sample.json.gz") == "s3://bucket/x/sample.json.gz"


# -- read_records ---------------------------------------------------------------------------------
SOURCE = "s3://bucket/AWSLogs/111122223333/CloudTrail/us-east-1/2017/04/10/the-file-under-test.json.gz"
GOOD_RECORDS = [
    {"eventVersion": "1.08", "eventName": "AssumeRole", "eventTime": "2017-04-10T00:00:01Z"},
    {"eventVersion": "1.08", "eventName": "Decrypt", "userAgent": "x \U0001F680"},
]


def test_read_records_gzip() -> None:
    assert read_records(_gz({"Records": GOOD_RECORDS}), SOURCE) == GOOD_RECORDS


def test_read_records_plain_json_not_gzipped() -> None:
    data = json.dumps({"Records": GOOD_RECORDS}, ensure_ascii=False).encode("utf-8")
    assert read_records(data, "/tmp/plain.json") == GOOD_RECORDS


def test_read_records_empty_records_list() -> None:
    assert read_records(_gz({"Records": []}), SOURCE) == []


def test_read_records_invalid_utf8_keeps_events() -> None:
    raw = b'{"Records": [{"eventName": "A\xff\xfeB"}, {"eventName": "C"}]}'
    records = read_records(gzip.compress(raw), SOURCE)
    assert len(records) == 2
    assert records[0]["eventName"].startswith("A") and records[0]["eventName"].endswith("B")
    assert "\ufffd" in records[0]["eventName"]
    assert records[1] == {"eventName": "C"}


def _valid_gzip() -> bytes:
    return _gz({"Records": GOOD_RECORDS * 50})


@pytest.mark.parametrize(
    "data, reason",
    [
        pytest.param(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64, "corrupt gzip", id="corrupt-gzip"),
        pytest.param(_valid_gzip()[: len(_valid_gzip()) // 2], "truncated gzip", id="truncated-gzip"),
        pytest.param(_valid_gzip()[:12], "truncated gzip", id="gzip-header-only"),
        pytest.param(gzip.compress(b"this is not JSON at all"), "not valid JSON", id="gzip-of-text"),
        pytest.param(gzip.compress(b'{"Records": [1, 2'), "not valid JSON", id="gzip-of-cut-json"),
        pytest.param(b"plain garbage, not gzip, not json", "not valid JSON", id="not-gzip-not-json"),
        pytest.param(_gz({"events": GOOD_RECORDS}), "no 'Records' key", id="no-records-key"),
        pytest.param(_gz({"Records": {"0": GOOD_RECORDS[0]}}), "'Records' is an object, not a list", id="records-object"),
        pytest.param(_gz({"Records": "events"}), "'Records' is a string, not a list", id="records-string"),
        pytest.param(_gz({"Records": [GOOD_RECORDS[0], "oops"]}), "record 1 is a string, not an object", id="record-string"),
        pytest.param(_gz({"Records": [GOOD_RECORDS[0], GOOD_RECORDS[1], [1]]}), "record 2 is a list", id="record-list"),
        pytest.param(_gz({"Records": [None]}), "record 0 is null", id="record-null"),
        pytest.param(_gz([GOOD_RECORDS]), "top-level JSON is a list", id="top-level-list"),
        pytest.param(b"", "empty file", id="empty-file"),
        pytest.param(b"  \n", "empty file", id="blank-file"),
        pytest.param(gzip.compress(b""), "empty file", id="empty-gzip"),
    ],
)
def test_read_records_errors_name_the_source(data: bytes, reason: str) -> None:
    with pytest.raises(CloudTrailFileError) as caught:
        read_records(data, SOURCE)
    error = caught.value
    assert not isinstance(error, DigestFile)
    assert SOURCE in str(error)
    assert reason in str(error)
    assert error.source == SOURCE


# The inflater (ISA-L where its wheel is installed, else zlib) must not change what a file gives.
def _gzip_cases() -> dict[str, bytes]:
    good = _gz({"Records": GOOD_RECORDS * 50})
    text = json.dumps({"Records": GOOD_RECORDS * 2}).encode()
    return {
        "good": good,
        "two-members": gzip.compress(text[:40]) + gzip.compress(text[40:]),  # one JSON text in two gzip members
        "member-then-garbage": good + b"these bytes are not gzip",
        "truncated": good[: len(good) // 2],
        "header-only": good[:12],
        "corrupt": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64,
        "empty": gzip.compress(b""),
        "large": gzip.compress(json.dumps({"Records": [{"eventName": "x" * 900, "n": i} for i in range(200)]}).encode()),
    }


def _outcome(data: bytes) -> Any:
    try:
        return ("records", list(read_records(data, SOURCE)))
    except CloudTrailFileError as exc:
        return ("error", exc.reason.split(" (")[0])


def test_isal_is_the_inflater_and_gives_what_zlib_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    import zlib

    from cloudtrail_mysql import records

    assert records._inflating.__name__ == "isal.isal_zlib"  # declared in pyproject, pinned in both constraints
    with_isal = {name: _outcome(data) for name, data in _gzip_cases().items()}
    monkeypatch.setattr(records, "_inflating", zlib)
    with_zlib = {name: _outcome(data) for name, data in _gzip_cases().items()}
    assert with_isal == with_zlib
    assert with_isal["two-members"] == ("records", GOOD_RECORDS * 2)
    assert with_isal["large"][0] == "records" and len(with_isal["large"][1]) == 200
    assert [with_isal[name][1] for name in ("member-then-garbage", "truncated", "header-only", "corrupt", "empty")] == [
        "gzip followed by 24 bytes of trailing data that are not gzip", "truncated gzip", "truncated gzip", "corrupt gzip",
        "empty file",
    ]


def test_read_records_number_beyond_a_double_is_a_clear_error() -> None:
    data = b'{"Records": [{"eventName": "x", "requestParameters": {"n": 1e400}}]}'
    with pytest.raises(CloudTrailFileError, match=r"big\.json: a number too large to store: 1e400"):
        read_records(data, "big.json")


def test_read_records_digest_file_raises_digest_file() -> None:
    digest = {
        "awsAccountId": ACCOUNT,
        "digestStartTime": "2017-04-10T00:00:00Z",
        "digestEndTime": "2017-04-10T01:00:00Z",
        "digestS3Bucket": "cloudtrail-bucket",
        "logFiles": [],
    }
    with pytest.raises(DigestFile) as caught:
        read_records(_gz(digest), SOURCE)
    assert SOURCE in str(caught.value)
    assert isinstance(caught.value, CloudTrailFileError)


def test_read_records_sample_day_file_matches_stdlib() -> None:
    from datetime import date

    from cloudtrail_mysql.sample import day_files

    for item in day_files(date(2017, 4, 10), records=60, accounts=[ACCOUNT], regions=["us-east-1"]):
        if "/CloudTrail/" in item.key:
            expected = json.loads(gzip.decompress(item.body))["Records"]
            assert read_records(item.body, item.key) == expected
            assert len(expected) == item.records
        else:
            with pytest.raises(DigestFile):
                read_records(item.body, item.key)


@pytest.mark.xfail(
    reason=(
        "BUG: read_records parses with orjson, which turns integers beyond 64 bits into floats "
        "silently (2**64 + 1 becomes 1.8446744073709552e+19); a valid JSON value is altered without "
        "any trace in extraFields"
    ),
    strict=True,
)
def test_read_records_keeps_integers_beyond_64_bits() -> None:
    big = 2**64 + 1
    data = b'{"Records": [{"requestParameters": {"n": ' + str(big).encode() + b"}}]}"
    records = read_records(data, SOURCE)
    assert records[0]["requestParameters"]["n"] == big


# -- RowBuilder -----------------------------------------------------------------------------------
COLUMNS = [
    Column("eventVersion", "text", max_chars=16),
    Column("userIdentity", "text", max_bytes=16_777_215),
    Column("eventTime", "text", max_chars=40),
    Column("eventSource", "text", max_chars=255),
    Column("eventName", "text", max_chars=12),
    Column("userAgent", "text", max_bytes=24),
    Column("errorCode", "text", max_chars=255),
    Column("requestParameters", "text", max_bytes=16_777_215),
    Column("responseElements", "text", max_bytes=40),
    Column("recipientAccountId", "text", max_chars=64),
    Column("eventTimestamp", "datetime"),
    Column("readOnly", "bool"),
    Column("managementEvent", "bool"),
    Column("sessionCredentialFromConsole", "bool"),
    Column("resources", "text", max_bytes=16_777_215),
    Column("apiVersion", "text", max_chars=64),
    Column("extraFields", "text", max_bytes=16_777_215),
    Column("sourceKey", "text", max_chars=1024),
    Column("sourceFileId", "int"),
    Column("recordIndex", "int"),
]


def _rows(records: list[dict[str, Any]], source_key: str = "s3://b/k.json.gz", file_id: int = 7) -> list[dict[str, Any]]:
    builder = RowBuilder(COLUMNS)
    assert builder.column_names == tuple(c.name for c in COLUMNS)
    rows = list(builder.rows(records, source_key, file_id))
    assert all(len(row) == len(COLUMNS) for row in rows)
    return [dict(zip(builder.column_names, row, strict=True)) for row in rows]


def _row(record: dict[str, Any]) -> dict[str, Any]:
    return _rows([record])[0]


def _extra(row: dict[str, Any]) -> dict[str, Any]:
    assert row["extraFields"] is not None
    return json.loads(row["extraFields"])


def test_row_builder_requires_manifest_columns() -> None:
    with pytest.raises(ValueError, match="sourceFileId"):
        RowBuilder([Column("eventName", "text"), Column("recordIndex", "int")])
    with pytest.raises(ValueError, match="recordIndex"):
        RowBuilder([Column("eventName", "text"), Column("sourceFileId", "int")])


def test_row_builder_source_columns_and_index() -> None:
    rows = _rows([{"eventName": "A"}, {"eventName": "B"}, {"eventName": "C"}], "s3://bkt/key.json.gz", 42)
    assert [r["recordIndex"] for r in rows] == [0, 1, 2]
    assert {r["sourceFileId"] for r in rows} == {42}
    assert {r["sourceKey"] for r in rows} == {"s3://bkt/key.json.gz"}
    assert [r["eventName"] for r in rows] == ["A", "B", "C"]


@pytest.mark.parametrize(
    "value, stored",
    [(True, 1), (False, 0), ("true", 1), ("false", 0), ("TRUE", 1), (" False ", 0)],
)
def test_row_builder_booleans(value: Any, stored: int) -> None:
    row = _row({"readOnly": value, "managementEvent": value, "sessionCredentialFromConsole": value})
    for name in ("readOnly", "managementEvent", "sessionCredentialFromConsole"):
        assert row[name] == stored
        assert row[name] in (0, 1)
    # Anything but a JSON boolean also keeps its original value in extraFields.
    kept = None if isinstance(value, bool) else {name: value for name in ("readOnly", "managementEvent", "sessionCredentialFromConsole")}
    assert (row["extraFields"] and json.loads(row["extraFields"])) == kept


@pytest.mark.parametrize("value", [1, 0, "yes", "", [True], {"v": True}, 0.0])
def test_row_builder_non_boolean_into_bool_column_goes_to_extra(value: Any) -> None:
    row = _row({"readOnly": value})
    assert row["readOnly"] is None
    assert _extra(row) == {"readOnly": value}


def test_row_builder_objects_and_arrays_as_json_text() -> None:
    identity = {"type": "AssumedRole", "sessionContext": {"attributes": {"mfaAuthenticated": "false"}, "x": None}}
    parameters = {
        "int": 1,
        "negative": -42,
        "float": 0.25,
        "exponent": 1.5e-07,
        "large": 9007199254740993,
        "true": True,
        "false": False,
        "null": None,
        "nested": {"list": [1, "two", 3.5, None, {"deep": [[]]}]},
        "unicode": "zoë \U0001F680",
    }
    resources = [{"ARN": "arn:aws:kms:us-east-1:111122223333:key/abc", "type": "AWS::KMS::Key"}, {}]
    row = _row({"userIdentity": identity, "requestParameters": parameters, "resources": resources})
    assert isinstance(row["requestParameters"], str)
    assert json.loads(row["userIdentity"]) == identity
    assert json.loads(row["requestParameters"]) == parameters
    assert json.loads(row["resources"]) == resources
    assert row["extraFields"] is None


@pytest.mark.parametrize(
    "value, text",
    [(20161115, "20161115"), (-3, "-3"), (2.5, "2.5"), (0.1, "0.1"), (True, "true"), (False, "false")],
)
def test_row_builder_scalars_into_text_columns(value: Any, text: str) -> None:
    row = _row({"apiVersion": value})
    assert row["apiVersion"] == text
    assert row["extraFields"] is None


def test_row_builder_too_long_varchar_is_cut_and_kept_whole() -> None:
    long_name = "DescribeInstancesInEveryRegion"
    row = _row({"eventName": long_name})
    assert row["eventName"] == long_name[:12]
    assert _extra(row) == {"eventName": long_name}


def test_row_builder_varchar_counts_characters_not_bytes() -> None:
    twelve_emoji = "\U0001F680" * 12  # 12 characters, 48 bytes: fits VARCHAR(12)
    row = _row({"eventName": twelve_emoji})
    assert row["eventName"] == twelve_emoji
    assert row["extraFields"] is None


def test_row_builder_too_long_text_is_cut_on_a_character_boundary() -> None:
    agent = "ab" + "\U0001F680" * 10  # 42 bytes of UTF-8 for a 24-byte column
    row = _row({"userAgent": agent})
    stored = row["userAgent"]
    assert len(stored.encode("utf-8")) <= 24
    assert agent.startswith(stored)
    assert stored == "ab" + "\U0001F680" * 5  # 22 bytes: the 6th emoji would not fit whole
    assert _extra(row) == {"userAgent": agent}


def test_row_builder_too_long_object_kept_whole_as_object() -> None:
    response = {"credentials": {"sessionToken": "x" * 100}, "count": 3}
    row = _row({"responseElements": response})
    assert len(row["responseElements"].encode("utf-8")) <= 40
    assert json.dumps(response, separators=(",", ":")).startswith(row["responseElements"])
    assert _extra(row) == {"responseElements": response}


def test_row_builder_unknown_fields_go_to_extra_fields() -> None:
    record = {
        "eventName": "Publish",
        "brandNewField": {"nested": [1, 2.5, None, True]},
        "anotherOne": 17,
        "aString": "\U0001F600",
        "sourceKey": "a record field named like a loader column",
        "recordIndex": "also not the loader's",
    }
    row = _row(record)
    assert row["eventName"] == "Publish"
    assert _extra(row) == {k: v for k, v in record.items() if k != "eventName"}
    assert row["sourceKey"] == "s3://b/k.json.gz"
    assert row["recordIndex"] == 0


@pytest.mark.parametrize(
    "event_time, expected",
    [
        ("2017-04-10T12:34:56Z", datetime(2017, 4, 10, 12, 34, 56)),
        ("2017-04-10T00:00:00Z", datetime(2017, 4, 10, 0, 0, 0)),
        ("2017-04-10T12:34:56.789Z", datetime(2017, 4, 10, 12, 34, 56)),
        ("2017-04-10T14:34:56+02:00", datetime(2017, 4, 10, 12, 34, 56)),
        ("2017-04-10T00:30:00+01:00", datetime(2017, 4, 9, 23, 30, 0)),
        ("2017-04-10T12:34:56", datetime(2017, 4, 10, 12, 34, 56)),
        ("not a time at all, long enough", None),
        ("2017-04-10", None),
        ("", None),
        (1491827696, None),
        (None, None),
    ],
)
def test_row_builder_event_timestamp_from_event_time(event_time: Any, expected: datetime | None) -> None:
    row = _row({"eventTime": event_time})
    assert row["eventTimestamp"] == expected
    if expected is not None:
        assert row["eventTimestamp"].tzinfo is None
        assert row["eventTime"] == event_time  # the text column keeps CloudTrail's own text


def test_row_builder_missing_event_time_gives_null_timestamp() -> None:
    row = _row({"eventName": "X"})
    assert row["eventTimestamp"] is None


@pytest.mark.parametrize("event_time", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_row_builder_out_of_range_event_time_does_not_fail_the_file(event_time: str) -> None:
    rows = _rows([{"eventTime": event_time}, {"eventTime": "2017-04-10T00:00:00Z"}])
    assert rows[0]["eventTimestamp"] is None
    assert rows[0]["eventTime"] == event_time
    assert rows[1]["eventTimestamp"] == datetime(2017, 4, 10)


def test_row_builder_missing_and_null_fields_are_null() -> None:
    row = _row({"errorCode": None, "responseElements": None, "readOnly": None})
    for column in COLUMNS:
        if column.name in ("sourceKey", "sourceFileId", "recordIndex"):
            continue
        assert row[column.name] is None, column.name


def test_row_builder_four_byte_characters_kept() -> None:
    agent = "Mozilla/5.0 \U0001F680 \U0001F600 \U00010348"
    identity = {"userName": "\U0001F9D1\u200d\U0001F4BB"}
    short = "\U0001F680\U0001F600\U00010348"  # 3 characters, 12 bytes: fits the 24-byte column
    row = _row({"userAgent": short, "userIdentity": identity, "eventSource": agent})
    assert row["eventSource"] == agent
    assert json.loads(row["userIdentity"]) == identity
    assert row["userAgent"] == short
    assert row["extraFields"] is None


def test_row_builder_rows_are_lazy() -> None:
    builder = RowBuilder(COLUMNS)
    consumed = []

    def records():
        for index in range(3):
            consumed.append(index)
            yield {"eventName": str(index)}

    rows = builder.rows(records(), "k", 1)
    assert consumed == []
    first = next(iter(rows))
    assert first[builder.column_names.index("eventName")] == "0"
    assert consumed == [0]
