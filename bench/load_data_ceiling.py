"""The ceiling: LOAD DATA LOCAL INFILE of the very rows our loader builds, same table, same
parallelism, one transaction per file (rows prepared as TSV before the clock starts).

Usage: load_data_ceiling.py prepare MYSQL_DB TSV_DIR FILE...   (not timed: parse and write TSV)
       load_data_ceiling.py load MYSQL_DB WORKERS TSV_DIR        (timed: LOAD DATA each TSV file)
"""

from __future__ import annotations

import sys
from datetime import datetime
from multiprocessing import Pool
from pathlib import Path

import MySQLdb

from cloudtrail_mysql.records import read_records
from cloudtrail_mysql.writer import MySqlWriter

TABLE = "logs"
_conn = None


def _connect(database: str) -> MySQLdb.Connection:
    return MySQLdb.connect(host="127.0.0.1", user="root", database=database, charset="utf8mb4", local_infile=1)


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def prepare(database: str, out: Path, files: list[str]) -> None:
    conn = _connect(database)
    writer = MySqlWriter(conn, TABLE)
    writer.ensure_schema()
    builder = writer.builder
    out.mkdir(parents=True, exist_ok=True)
    for number, path in enumerate(files, start=1):
        records = read_records(Path(path).read_bytes(), path)
        with open(out / f"{number:06d}.tsv", "w", encoding="utf-8", newline="\n") as handle:
            for row in builder.rows(records, path, number):
                handle.write("\t".join(map(_tsv, row)) + "\n")
    (out / "columns").write_text(",".join(builder.column_names))
    conn.close()


def _start(database: str, columns: str) -> None:
    global _conn, _columns
    _conn = _connect(database)
    _columns = columns


def _load(path: str) -> int:
    cursor = _conn.cursor()
    cursor.execute(
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {TABLE} CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' "
        f"LINES TERMINATED BY '\\n' ({_columns})",
        (path,),
    )
    count = cursor.rowcount
    _conn.commit()
    return count


def load(database: str, workers: int, tsv_dir: Path) -> None:
    files = sorted(str(p) for p in tsv_dir.glob("*.tsv"))
    columns = (tsv_dir / "columns").read_text()
    with Pool(workers, initializer=_start, initargs=(database, columns)) as pool:
        rows = sum(pool.imap_unordered(_load, files, chunksize=1))
    print(rows)


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], Path(sys.argv[3]), sys.argv[4:])
    else:
        load(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
