"""The ceiling: LOAD DATA LOCAL INFILE of the very rows our loader builds, same table, same
statement, same parallelism, one transaction per file (rows prepared as TSV before the clock starts).

Usage: load_data_ceiling.py prepare MYSQL_DB TSV_DIR FILE...   (not timed: parse and write TSV)
       load_data_ceiling.py load MYSQL_DB WORKERS TSV_DIR        (timed: LOAD DATA each TSV file)
"""

from __future__ import annotations

import json
import sys
from multiprocessing import Pool
from pathlib import Path

import MySQLdb

from cloudtrail_mysql.records import read_records
from cloudtrail_mysql.writer import MySqlWriter

TABLE = "logs"
_conn = None


def _connect(database: str) -> MySQLdb.Connection:
    return MySQLdb.connect(host="127.0.0.1", user="root", database=database, charset="utf8mb4", local_infile=1)


def prepare(database: str, out: Path, files: list[str]) -> None:
    conn = _connect(database)
    writer = MySqlWriter(conn, TABLE)
    writer.ensure_schema()
    builder = writer.builder
    out.mkdir(parents=True, exist_ok=True)
    for number, path in enumerate(files, start=1):
        records = read_records(Path(path).read_bytes(), path)
        with open(out / f"{number:06d}.tsv", "w", encoding="utf-8", newline="\n") as handle:
            builder.write_tsv(records, path, handle)
        # The values the statement sets once per file (its id, its key), as the loader binds them.
        (out / f"{number:06d}.constants").write_text(json.dumps(builder.tsv_constants(number, path), default=str))
    (out / "statement").write_text(writer.load_data_statement)
    conn.close()


def _start(database: str, statement: str) -> None:
    global _conn, _statement
    _conn = _connect(database)
    _statement = statement


def _load(path: str) -> int:
    cursor = _conn.cursor()
    constants = json.loads(Path(path).with_suffix(".constants").read_text())
    cursor.execute(_statement, (path, *constants))
    count = cursor.rowcount
    _conn.commit()
    return count


def load(database: str, workers: int, tsv_dir: Path) -> None:
    files = sorted(str(p) for p in tsv_dir.glob("*.tsv"))
    statement = (tsv_dir / "statement").read_text()
    with Pool(workers, initializer=_start, initargs=(database, statement)) as pool:
        rows = sum(pool.imap_unordered(_load, files, chunksize=1))
    print(rows)


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], Path(sys.argv[3]), sys.argv[4:])
    else:
        load(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
