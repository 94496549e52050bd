"""The tutorial's way, as the baseline: stdlib json, one INSERT per row, autocommit, 16 columns.

Usage: tutorial_baseline.py MYSQL_DB WORKERS FILE...   (loads into table tutorial_logs)
"""

from __future__ import annotations

import gzip
import json
import sys
from multiprocessing import Pool

import MySQLdb

FIELDS = (
    "eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
    "userAgent", "errorCode", "errorMessage", "requestParameters", "responseElements", "requestID", "eventID",
    "eventType", "recipientAccountId",
)
INSERT = f"INSERT INTO tutorial_logs ({', '.join(FIELDS)}) VALUES ({', '.join(['%s'] * len(FIELDS))})"
_conn = None


def _start(database: str) -> None:
    global _conn
    _conn = MySQLdb.connect(host="127.0.0.1", user="root", database=database, charset="utf8mb4", autocommit=True)


def _attribute(record: dict, name: str) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _load(path: str) -> int:
    records = json.loads(gzip.decompress(open(path, "rb").read()))["Records"]
    cursor = _conn.cursor()
    for record in records:
        cursor.execute(INSERT, [_attribute(record, name) for name in FIELDS])
    return len(records)


def main() -> None:
    database, workers, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    with Pool(workers, initializer=_start, initargs=(database,)) as pool:
        rows = sum(pool.imap_unordered(_load, files))
    print(rows)


if __name__ == "__main__":
    main()
