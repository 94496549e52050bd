"""A fresh day loads into a table of its own and is swapped into its partition (staging.py).

Expected counts come from the generated files, read with the standard library only.
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cloudtrail_mysql import cli, staging
from conftest import SampleDay, make_sample_day, read_events

DAY = date(2017, 4, 10)
NEXT = DAY + timedelta(days=1)
INDEXES_OF_CREATE_INDEXES = {"ix_eventSource", "ix_eventName", "ix_errorCode", "ix_requestID", "ix_eventType", "ix_eventTimestamp"}


def _cli(capsys: Any, *args: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _day(tmp_path: Path, day: date, records: int = 200, seed: int = 1) -> SampleDay:
    return make_sample_day(tmp_path / f"d{day:%Y%m%d}", day=day, records=records, digests=False, seed=seed)


def _partition_rows(db: Any, day: date) -> int:
    return int(db.query(f"SELECT COUNT(*) FROM logs PARTITION (`p{day:%Y%m%d}`)")[0][0])


def _stages(db: Any) -> set[str]:
    return {name for name in db.tables() if "__day_" in name}


def _partition_indexes(db: Any) -> set[str]:
    return {row[0] for row in db.query(
        "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() "
        "AND table_name = 'logs' AND index_name <> 'PRIMARY'"
    )}


def test_a_fresh_day_loads_on_its_own_and_is_swapped_in_with_its_indexes(tmp_path: Path, mysql_db: Any, capsys: Any) -> None:
    first, second = _day(tmp_path, DAY), _day(tmp_path, NEXT, seed=2)
    code, out, err = _cli(capsys, "import", first.root, "--mysql-url", mysql_db.url, "--workers", "2", "--summarize")
    assert code == 0, err
    assert f"delivery day {DAY} in place, {len(first.events())} rows exchanged" in out
    code, out, err = _cli(capsys, "import", second.root, "--mysql-url", mysql_db.url, "--workers", "2")
    assert code == 0, err
    # The second day went into its stage (no index kept up row by row), then took its partition's place.
    assert f"delivery day {NEXT} in place, {len(second.events())} rows exchanged" in out
    assert _partition_rows(mysql_db, DAY) == len(first.events())
    assert _partition_rows(mysql_db, NEXT) == len(second.events())
    assert _stages(mysql_db) == set() and mysql_db.query("SELECT * FROM logs_staged_days") == []
    assert _partition_indexes(mysql_db) == INDEXES_OF_CREATE_INDEXES
    # The indexes are whole: a lookup through each finds the rows a full scan finds.
    some = mysql_db.query("SELECT requestID, eventName FROM logs WHERE deliveryDay = %s LIMIT 1", NEXT.isoformat())[0]
    by_index = mysql_db.query("SELECT COUNT(*) FROM logs FORCE INDEX (ix_requestID) WHERE requestID = %s", some[0])
    by_scan = mysql_db.query("SELECT COUNT(*) FROM logs IGNORE INDEX (ix_requestID) WHERE requestID = %s", some[0])
    assert by_index == by_scan and by_index[0][0] >= 1
    # The manifest's first/last events were read from the stage, as from the partition.
    assert mysql_db.query(
        "SELECT COUNT(*) FROM logs_files WHERE delivery_day = %s AND (first_event IS NULL OR last_event IS NULL)",
        NEXT.isoformat(),
    ) == [(0,)]


def test_a_day_that_has_rows_loads_in_place_and_a_rerun_changes_nothing(tmp_path: Path, mysql_db: Any, capsys: Any) -> None:
    day = _day(tmp_path, DAY, records=300)
    files = sorted(day.root.rglob("*.json.gz"))
    early, late = tmp_path / "early", tmp_path / "late"
    for target, part in ((early, files[: len(files) // 2]), (late, files[len(files) // 2:])):
        for path in part:
            copy = target / path.relative_to(day.root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, copy)
    code, out, err = _cli(capsys, "import", early, "--mysql-url", mysql_db.url, "--workers", "1")
    assert code == 0, err and "exchanged" in out
    # Late files of a day already in place: no stage, straight into the partition.
    code, out, err = _cli(capsys, "import", late, "--mysql-url", mysql_db.url, "--workers", "2")
    assert code == 0, err
    assert "in place" not in out, out
    assert _partition_rows(mysql_db, DAY) == len(day.events())
    code, out, err = _cli(capsys, "import", day.root, "--mysql-url", mysql_db.url, "--workers", "2")
    assert code == 0, err
    assert "0 files loaded" in out and "in place" not in out
    assert _partition_rows(mysql_db, DAY) == len(day.events()) and _stages(mysql_db) == set()


def _load_without_publishing(db: Any, sample: SampleDay) -> None:
    """The files of a day loaded as the command loads them, but stopped before the day is published."""
    from cloudtrail_mysql.front import LoadOptions, open_writers, run_load
    from cloudtrail_mysql.sources import fetch, list_sources

    conn = db.connect()
    writer = open_writers(db.connect, LoadOptions())[0]
    writer.ensure_schema()
    writer.ensure_day_partitions([DAY])
    assert staging.stage_days(conn, "logs", [DAY]) == [DAY]
    conn.close()
    sources = list_sources(str(sample.root))
    results = list(run_load(sources, fetch, [writer], LoadOptions()))
    writer.conn.close()
    assert {r.status for r in results} <= {"loaded", "skipped"}


def test_publishing_ends_exact_after_a_stop_at_any_step(tmp_path: Path, mysql_db: Any) -> None:
    sample = _day(tmp_path, DAY)
    expected = len(sample.events())
    _load_without_publishing(mysql_db, sample)
    stage = staging.stage_name("logs", DAY)
    # Loaded, not published: the rows are in the stage, the partition is empty.
    assert mysql_db.count(stage) == expected and _partition_rows(mysql_db, DAY) == 0

    # Stopped after the day was marked closing: publishing again finishes it.
    mysql_db.query("UPDATE logs_staged_days SET closing = 1")
    conn = mysql_db.connect()
    (done,) = staging.publish_days(conn, "logs", [DAY])
    conn.close()
    assert (done.rows, done.how) == (expected, "exchanged")
    assert _partition_rows(mysql_db, DAY) == expected and _stages(mysql_db) == set()

    # Stopped after the swap, before the stage was dropped and the row deleted: finished, nothing moved.
    mysql_db.query(f"CREATE TABLE `{stage}` LIKE logs")
    mysql_db.query(f"ALTER TABLE `{stage}` REMOVE PARTITIONING")
    mysql_db.query("INSERT INTO logs_staged_days VALUES (%s, %s, 1, UTC_TIMESTAMP())", DAY.isoformat(), stage)
    conn = mysql_db.connect()
    (done,) = staging.publish_days(conn, "logs")
    assert done.how == "already in place" and staging.publish_days(conn, "logs") == []
    conn.close()
    assert _partition_rows(mysql_db, DAY) == expected and _stages(mysql_db) == set()
    assert mysql_db.query("SELECT * FROM logs_staged_days") == []


def test_an_index_added_while_a_day_loads_on_its_own_is_built_for_it_too(tmp_path: Path, mysql_db: Any) -> None:
    sample = _day(tmp_path, DAY)
    _load_without_publishing(mysql_db, sample)
    mysql_db.query("ALTER TABLE logs ADD INDEX ix_region_time (awsRegion, eventTimestamp)")
    conn = mysql_db.connect()
    (done,) = staging.publish_days(conn, "logs", [DAY])
    conn.close()
    assert done.how == "exchanged" and _partition_rows(mysql_db, DAY) == len(sample.events())
    by_index = mysql_db.query("SELECT COUNT(*) FROM logs FORCE INDEX (ix_region_time) WHERE awsRegion = 'us-east-1'")
    by_scan = mysql_db.query("SELECT COUNT(*) FROM logs IGNORE INDEX (ix_region_time) WHERE awsRegion = 'us-east-1'")
    assert by_index == by_scan and by_index[0][0] > 0


def test_a_file_arriving_while_its_day_is_swapped_in_waits_then_loads_once(tmp_path: Path, mysql_db: Any) -> None:
    from cloudtrail_mysql.front import LoadOptions, open_writers, run_load
    from cloudtrail_mysql.sources import fetch, list_sources

    sample = _day(tmp_path, DAY)
    expected = len(sample.events())
    files = sorted(sample.root.rglob("*.json.gz"))
    held_back = files[-1]
    moved = tmp_path / "held" / held_back.relative_to(sample.root)
    moved.parent.mkdir(parents=True)
    held_back.rename(moved)
    _load_without_publishing(mysql_db, sample)
    mysql_db.query("UPDATE logs_staged_days SET closing = 1")  # a publisher is swapping the day in

    writer = open_writers(mysql_db.connect, LoadOptions())[0]
    results: list[Any] = []
    loading = threading.Thread(target=lambda: results.extend(run_load(
        list_sources(str(tmp_path / "held")), fetch, [writer], LoadOptions()
    )))
    loading.start()
    time.sleep(1.5)
    assert not results and loading.is_alive()  # waiting: neither in the stage nor in the empty partition
    conn = mysql_db.connect()
    (done,) = staging.publish_days(conn, "logs", [DAY])
    conn.close()
    loading.join(timeout=60)
    writer.conn.close()
    assert [r.status for r in results] == ["loaded"]
    assert results[0].rows == len(read_events(moved)) > 0
    assert _partition_rows(mysql_db, DAY) == expected == done.rows + results[0].rows
    assert mysql_db.query("SELECT COUNT(*), SUM(row_count) FROM logs_files WHERE status = 'loaded'")[0][1] == expected


def test_retention_drops_the_stage_of_a_day_it_drops(tmp_path: Path, mysql_db: Any, capsys: Any) -> None:
    code, _, err = _cli(capsys, "import", _day(tmp_path, DAY).root, "--mysql-url", mysql_db.url, "--workers", "1")
    assert code == 0, err
    from cloudtrail_mysql.writer import MySqlWriter

    conn = mysql_db.connect()
    MySqlWriter(conn, "logs").ensure_day_partitions([DAY - timedelta(days=5)])
    assert staging.stage_days(conn, "logs", [DAY - timedelta(days=5)]) == [DAY - timedelta(days=5)]
    conn.close()
    assert _stages(mysql_db) == {staging.stage_name("logs", DAY - timedelta(days=5))}
    code, out, err = _cli(capsys, "retention", "--mysql-url", mysql_db.url, "--retention-days", "2")
    assert code == 0, err
    assert _stages(mysql_db) == set() and mysql_db.query("SELECT * FROM logs_staged_days") == []
    assert mysql_db.query("SELECT DISTINCT deliveryDay FROM logs") == [(DAY,)]


def test_a_day_too_large_to_swap_in_loads_into_its_partition(
    tmp_path: Path, mysql_db: Any, capsys: Any, monkeypatch: Any, caplog: Any
) -> None:
    monkeypatch.setattr(staging, "MAX_STAGED_BYTES_PER_POOL_BYTE", 0)  # every day is "too large"
    sample = _day(tmp_path, DAY)
    with caplog.at_level("INFO", logger="cloudtrail_mysql.staging"):
        code, out, err = _cli(capsys, "import", sample.root, "--mysql-url", mysql_db.url, "--workers", "1")
    assert code == 0, err
    assert "in place" not in out and "loads into its partition" in caplog.text
    assert _partition_rows(mysql_db, DAY) == len(sample.events()) and _stages(mysql_db) == set()


def test_a_day_copied_instead_of_swapped_is_copied_whole_in_bounded_transactions(
    tmp_path: Path, mysql_db: Any, monkeypatch: Any
) -> None:
    sample = _day(tmp_path, DAY)
    _load_without_publishing(mysql_db, sample)
    stage = staging.stage_name("logs", DAY)
    files = mysql_db.query(f"SELECT COUNT(DISTINCT sourceFileId) FROM `{stage}`")[0][0]
    # A row already in the partition (loaded meanwhile by other means): the swap would move it out.
    mysql_db.query(f"INSERT INTO logs SELECT * FROM `{stage}` ORDER BY sourceFileId DESC, recordIndex DESC LIMIT 1")
    mysql_db.query(f"DELETE FROM `{stage}` ORDER BY sourceFileId DESC, recordIndex DESC LIMIT 1")
    monkeypatch.setattr(staging, "COPY_FILES_PER_STATEMENT", 2)
    conn = mysql_db.connect()
    (done,) = staging.publish_days(conn, "logs", [DAY])
    conn.close()
    assert done.how == "copied" and files > 4
    assert _partition_rows(mysql_db, DAY) == len(sample.events()) and _stages(mysql_db) == set()
    assert mysql_db.query("SELECT COUNT(*) FROM (SELECT sourceFileId, recordIndex FROM logs GROUP BY 1, 2 HAVING COUNT(*) > 1) d") == [(0,)]
