"""Large files are streamed record by record: same records, same errors, loaded whole or not at all."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from cloudtrail_mysql import records
from conftest import run_cli

RECORDS = [
    {"eventVersion": "1.08", "eventTime": f"2017-04-10T11:{i % 60:02d}:00Z", "eventSource": "s3.amazonaws.com",
     "eventName": "GetObject", "eventID": f"id-{i}", "readOnly": True, "requestParameters": {"n": i, "ratio": 0.5}}
    for i in range(500)
]


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "STREAM_ABOVE_BYTES", 1000)


def test_large_file_is_streamed_and_gives_the_same_records(small_threshold: None) -> None:
    data = gzip.compress(json.dumps({"Records": RECORDS}).encode())
    streamed = records.read_records(data, "big.json.gz")
    assert isinstance(streamed, records.StreamedRecords)
    assert list(streamed) == RECORDS
    assert list(streamed) == RECORDS  # iterable again, for a retry


@pytest.mark.parametrize(
    "body, reason",
    [
        (gzip.compress(json.dumps({"Records": RECORDS}).encode())[:-200], "truncated gzip"),
        (gzip.compress(json.dumps({"Records": RECORDS + ["not a record"]}).encode()), "record 500 is a string"),
        (gzip.compress(json.dumps({"Records": RECORDS}).encode()[:-100]), "not valid JSON"),
    ],
)
def test_streamed_file_errors_name_the_file(small_threshold: None, body: bytes, reason: str) -> None:
    with pytest.raises(records.CloudTrailFileError, match=reason) as caught:
        list(records.read_records(body, "s3://bucket/AWSLogs/big.json.gz"))
    assert "s3://bucket/AWSLogs/big.json.gz" in str(caught.value)


def test_a_large_file_loads_whole_or_not_at_all(mysql_db: Any, tmp_path: Path) -> None:
    """A 70 MB file goes the streaming way; a broken one near its end leaves no row behind."""
    big = [dict(RECORDS[i % 500], eventID=f"big-{i}", padding="x" * 500) for i in range(120_000)]
    folder = tmp_path / "files"
    folder.mkdir()
    good = folder / "111122223333_CloudTrail_us-east-1_20170410T2355Z_BIGBIGBIGBIGBIGB.json.gz"
    payload = json.dumps({"Records": big}).encode()
    assert len(payload) > records.STREAM_ABOVE_BYTES
    good.write_bytes(gzip.compress(payload, compresslevel=1))
    broken = folder / "111122223333_CloudTrail_us-east-1_20170410T2356Z_BROKENBROKENBROK.json.gz"
    broken.write_bytes(gzip.compress(payload[:-5000], compresslevel=1))

    result = run_cli("import", folder, "--mysql-url", mysql_db.url, "--workers", "1", timeout=600)
    assert result.returncode == 1
    assert "BROKENBROKENBROK" in result.stderr and "not valid JSON" in result.stderr
    assert mysql_db.count() == len(big)
    assert mysql_db.query("SELECT status, row_count FROM logs_files ORDER BY file_name") == [
        ("loaded", len(big)), ("failed", 0)
    ]
