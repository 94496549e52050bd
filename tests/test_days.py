"""Weeks, not one day: day partitions made ahead, summaries read from the days that hold their
events, retention by whole days, and the migration of a table made before partitions.

Expected values come from the generated files, read with the standard library only.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest

from cloudtrail_mysql import cli, sql
from cloudtrail_mysql.daytasks import create_indexes
from conftest import CLI, SampleDay, make_sample_day

DAY = date(2017, 4, 10)
FIXTURES = Path(__file__).parent / "fixtures"


def _cli(capsys: Any, *args: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _day(tmp_path: Path, day: date, records: int = 120, seed: int = 1) -> SampleDay:
    return make_sample_day(tmp_path / f"d{day:%Y%m%d}", day=day, records=records, digests=False, seed=seed)


def _partitions(db: Any) -> dict[str, int]:
    """Partition name -> rows it holds (counted, not the statistics' estimate)."""
    names = [row[0] for row in db.query(
        "SELECT partition_name FROM information_schema.partitions WHERE table_schema = DATABASE() "
        "AND table_name = 'logs' ORDER BY partition_ordinal_position"
    )]
    return {name: db.query(f"SELECT COUNT(*) FROM logs PARTITION (`{name}`)")[0][0] for name in names}


def _event_day_totals(samples: list[SampleDay]) -> Counter[str]:
    """Events per UTC day of eventTime, each eventID once (events without one: each delivered copy)."""
    seen: set[str] = set()
    totals: Counter[str] = Counter()
    for sample in samples:
        for event in sample.events():
            event_id = event.get("eventID")
            if event_id is not None:
                if event_id in seen:
                    continue
                seen.add(event_id)
            totals[event["eventTime"][:10]] += 1
    return totals


def test_each_delivery_day_gets_a_partition_of_its_own_made_ahead_backfills_included(
    tmp_path: Path, mysql_db: Any, capsys: Any
) -> None:
    from cloudtrail_mysql.writer import MySqlWriter

    # Made ahead: the day's partition exists, empty, before any file of it is loaded.
    conn = mysql_db.connect()
    writer = MySqlWriter(conn, "logs")
    writer.ensure_schema()
    writer.ensure_day_partitions([DAY])
    conn.close()
    assert _partitions(mysql_db) == {"p_undated": 0, "g19700102": 0, "p20170410": 0}

    today = _day(tmp_path, DAY)
    backfill, next_day = _day(tmp_path, DAY - timedelta(days=30)), _day(tmp_path, DAY + timedelta(days=1))
    for sample in (today, next_day, backfill):  # the backfill comes last and lands in the middle
        code, _, err = _cli(capsys, "import", sample.root, "--mysql-url", mysql_db.url, "--workers", "1")
        assert code == 0, err
    found = _partitions(mysql_db)
    assert found == {
        "p_undated": 0,
        "g19700102": 0,
        "p20170311": len(backfill.events()),
        "g20170312": 0,
        "p20170410": len(today.events()),
        "p20170411": len(next_day.events()),
    }
    # Each row sits in the partition of its file's delivery folder.
    rows = mysql_db.query("SELECT deliveryDay, COUNT(*) FROM logs GROUP BY deliveryDay ORDER BY 1")
    assert rows == [
        (DAY - timedelta(days=30), len(backfill.events())), (DAY, len(today.events())),
        (DAY + timedelta(days=1), len(next_day.events())),
    ]


def test_two_imports_of_different_days_at_once_make_their_partitions_without_a_clash(
    tmp_path: Path, mysql_db: Any
) -> None:
    samples = [_day(tmp_path, DAY + timedelta(days=offset), records=400) for offset in (0, 3, -5)]
    processes = [
        subprocess.Popen(
            [str(CLI), "import", str(sample.root), "--mysql-url", mysql_db.url, "--workers", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for sample in samples
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    found = _partitions(mysql_db)
    for sample, offset in zip(samples, (0, 3, -5), strict=True):
        assert found[f"p{DAY + timedelta(days=offset):%Y%m%d}"] == len(sample.events())
    assert sum(found.values()) == sum(len(s.events()) for s in samples)


def test_summaries_of_an_event_day_count_its_events_from_every_delivery_day_that_holds_them(
    tmp_path: Path, mysql_db: Any, capsys: Any
) -> None:
    before, today = _day(tmp_path, DAY - timedelta(days=1), records=300), _day(tmp_path, DAY, records=300, seed=2)
    # Late evening events of D-1 are delivered on D: D's folder holds some.
    assert any(e["eventTime"].startswith(f"{DAY - timedelta(days=1)}") for e in today.events())
    # D first, then D-1 (a backfill): each summarised as the DAG does, after its load.
    for sample, day in ((today, DAY), (before, DAY - timedelta(days=1))):
        code, _, err = _cli(capsys, "import", sample.root, "--mysql-url", mysql_db.url, "--workers", "1")
        assert code == 0, err
        code, out, err = _cli(capsys, "summarize", "--day", day, "--mysql-url", mysql_db.url)
        assert code == 0, err
        assert f"delivered on {day}" in out
    expected = _event_day_totals([before, today])
    found = {str(day): int(total) for day, total in mysql_db.query(
        "SELECT event_day, SUM(events) FROM logs_daily_events GROUP BY event_day"
    )}
    assert found == dict(expected)
    # Summarising again changes nothing.
    code, _, _ = _cli(capsys, "summarize", "--all", "--mysql-url", mysql_db.url)
    assert code == 0
    again = {str(day): int(total) for day, total in mysql_db.query(
        "SELECT event_day, SUM(events) FROM logs_daily_events GROUP BY event_day"
    )}
    assert again == found


def test_retention_keeps_the_last_days_whole_and_refuses_a_late_file_into_a_dropped_day(
    tmp_path: Path, mysql_db: Any, capsys: Any
) -> None:
    days = [DAY + timedelta(days=offset) for offset in range(5)]
    samples = {day: _day(tmp_path, day, records=150, seed=day.day) for day in days}
    for sample in samples.values():
        code, _, err = _cli(capsys, "import", sample.root, "--mysql-url", mysql_db.url, "--workers", "1", "--summarize")
        assert code == 0, err
    loaded_files = dict(mysql_db.query("SELECT delivery_day, COUNT(*) FROM logs_files GROUP BY delivery_day"))

    code, out, err = _cli(capsys, "retention", "--retention-days", 3, "--mysql-url", mysql_db.url)
    assert code == 0, err
    assert f"dropped 2 delivery day(s), {days[0]} to {days[1]}" in out
    kept = days[2:]
    assert [row[0] for row in mysql_db.query("SELECT DISTINCT deliveryDay FROM logs ORDER BY 1")] == kept
    assert [row[0] for row in mysql_db.query("SELECT DISTINCT delivery_day FROM logs_files ORDER BY 1")] == kept
    assert mysql_db.count() == sum(len(samples[day].events()) for day in kept)
    for summary in ("events", "errors", "principals", "source_ips"):
        assert mysql_db.query(f"SELECT MIN(event_day) FROM logs_daily_{summary}")[0][0] == kept[0]
    for part in ("events", "errors", "principals", "source_ips", "findings", "findings_built"):
        assert mysql_db.query(f"SELECT MIN(delivery_day) FROM logs_parts_{part}")[0][0] == kept[0], part
    assert mysql_db.query("SELECT delivery_day, files, events FROM logs_dropped_days ORDER BY 1") == [
        (day, loaded_files[day], len(samples[day].events())) for day in days[:2]
    ]
    # Whole partitions went: the dropped days are one empty gap, not a partition each.
    partitions = _partitions(mysql_db)
    assert list(partitions) == ["p_undated", "g19700102"] + [f"p{day:%Y%m%d}" for day in kept]
    assert partitions["g19700102"] == 0

    # Again: nothing more to drop, nothing changes.
    code, out, _ = _cli(capsys, "retention", "--retention-days", 3, "--mysql-url", mysql_db.url)
    assert code == 0 and "nothing older to drop" in out
    assert _partitions(mysql_db) == partitions

    # A file delivered late into a dropped day is refused by name, never loaded into a partial day.
    late = samples[days[0]].log_files[0]
    code, _, err = _cli(capsys, "import", samples[days[0]].path(late), "--mysql-url", mysql_db.url)
    assert code == 1
    assert late.key.rsplit("/", 1)[-1] in err and "retention dropped" in err
    assert mysql_db.query("SELECT COUNT(*) FROM logs WHERE deliveryDay = %s", days[0])[0][0] == 0

    # The next day, through import --retention-days: the oldest kept day goes.
    nxt = DAY + timedelta(days=5)
    code, out, err = _cli(
        capsys, "import", _day(tmp_path, nxt, records=100).root, "--mysql-url", mysql_db.url, "--retention-days", 3
    )
    assert code == 0, err
    assert [row[0] for row in mysql_db.query("SELECT DISTINCT deliveryDay FROM logs ORDER BY 1")] == [days[3], days[4], nxt]


def _old_table(mysql_db: Any, tmp_path: Path, capsys: Any) -> list[tuple[Any, ...]]:
    """A logs table and manifest in the layout of release 0.1.0, holding two real days; returns
    (its rows, the loader's own principal and deliveryDay for each) to compare with after migrating."""
    for day in (DAY, DAY + timedelta(days=1)):
        code, _, err = _cli(capsys, "import", _day(tmp_path, day, records=200).root, "--mysql-url", mysql_db.url,
                            "--table", "src", "--workers", "1")
        assert code == 0, err
    template = jinja2.Template((FIXTURES / "create_tables_0.1.0.sql").read_text())
    conn = mysql_db.connect()
    cursor = conn.cursor()
    for statement in sql.split_statements(template.render(params={"table": "logs", "collation": "utf8mb4_nopad_bin"})):
        cursor.execute(statement)
    old_columns = [row[0] for row in mysql_db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'logs' "
        "ORDER BY ordinal_position"
    )]
    manifest_columns = [row[0] for row in mysql_db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'logs_files' "
        "ORDER BY ordinal_position"
    )]
    listed = ", ".join(f"`{c}`" for c in old_columns)
    cursor.execute(f"INSERT INTO logs ({listed}) SELECT {listed} FROM src")
    manifest = ", ".join(f"`{c}`" for c in manifest_columns)
    cursor.execute(f"INSERT INTO logs_files ({manifest}) SELECT {manifest} FROM src_files")
    conn.commit()
    create_indexes(conn, "logs")
    conn.close()
    return mysql_db.query(f"SELECT {listed}, principal, deliveryDay FROM src ORDER BY sourceFileId, recordIndex")


def test_migrate_converts_a_table_made_by_release_0_1_0_once_and_loses_nothing(
    tmp_path: Path, mysql_db: Any, capsys: Any
) -> None:
    expected = _old_table(mysql_db, tmp_path, capsys)
    third = _day(tmp_path, DAY + timedelta(days=2), records=100)

    # Loading into the old layout is refused with what to do.
    code, _, err = _cli(capsys, "import", third.root, "--mysql-url", mysql_db.url)
    assert code == 2 and "cloudtrail-mysql migrate --table logs" in err

    code, out, err = _cli(capsys, "migrate", "--mysql-url", mysql_db.url)
    assert code == 0, err
    assert f"{len(expected)} rows copied" in out
    # Each delivery day's part of the summaries is made, so later days add to whole sums.
    assert mysql_db.query("SELECT event_day, SUM(events) FROM logs_parts_events GROUP BY 1 ORDER BY 1") == mysql_db.query(
        "SELECT event_day, SUM(events) FROM logs_daily_events GROUP BY 1 ORDER BY 1"
    )
    assert mysql_db.query("SELECT DISTINCT delivery_day FROM logs_parts_events ORDER BY 1") == [
        (DAY,), (DAY + timedelta(days=1),)
    ]
    columns = ", ".join(f"`{row[0]}`" for row in mysql_db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'src' "
        "ORDER BY ordinal_position"
    ) if row[0] not in ("principal", "deliveryDay"))
    # Every row whole, with the deliveryDay and principal the loader itself gives.
    assert mysql_db.query(f"SELECT {columns}, principal, deliveryDay FROM logs ORDER BY sourceFileId, recordIndex") == expected
    assert mysql_db.query("SELECT id, first_event, last_event FROM logs_files ORDER BY id") == mysql_db.query(
        "SELECT id, first_event, last_event FROM src_files ORDER BY id"
    )
    assert set(_partitions(mysql_db)) == {"p_undated", "g19700102", "p20170410", "p20170411"}
    indexes = {row[0] for row in mysql_db.query(
        "SELECT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'logs'"
    )}
    assert {"ix_eventSource", "ix_eventTimestamp"} <= indexes
    assert not {t for t in mysql_db.tables() if "__" in t}

    # Once only: a rerun has nothing to do; loading and summarising go on as usual.
    code, out, _ = _cli(capsys, "migrate", "--mysql-url", mysql_db.url)
    assert code == 0 and "nothing to do" in out
    code, _, err = _cli(capsys, "import", third.root, "--mysql-url", mysql_db.url, "--summarize")
    assert code == 0, err
    assert mysql_db.count() == len(expected) + len(third.events())


# Constructs MariaDB 10.11 accepts and MySQL 8.0/8.4 refuses (no MySQL 8 server is at hand here).
_MARIADB_ONLY = {
    r"\bCREATE\s+OR\s+REPLACE\b": "CREATE OR REPLACE",
    r"\bADD\s+(?:COLUMN|INDEX|KEY)\s+IF\s+NOT\s+EXISTS\b": "ADD ... IF NOT EXISTS",
    r"\bDROP\s+(?:COLUMN|INDEX|KEY|PARTITION)\s+IF\s+EXISTS\b": "DROP ... IF EXISTS inside ALTER",
    r"\bRETURNING\b": "RETURNING",
    r"\bJSON_(?:DETAILED|LOOSE|COMPACT|EXISTS|QUERY)\b": "a MariaDB JSON function",
    r"\bVALUE\s*\(": "VALUE()",
    r"\bnopad\b": "a MariaDB collation",
    r"\bWITH\s+SYSTEM\s+VERSIONING\b": "system versioning",
    r"\bIN\s*\(\s*SELECT\b[^()]*\bLIMIT\b": "LIMIT in an IN subquery",
}


def _rendered_sql() -> dict[str, list[str]]:
    """Every SQL file and macro of include/sql rendered as for MySQL 8 (its exact collation), as
    statements without comments."""
    rendered = {}
    for path in sorted(sql.sql_dir().glob("*.sql")):
        text = path.read_text()
        if "{% macro" in text and path.name != "build_findings.sql":  # its macro serves the file itself
            module = jinja2.Environment(loader=jinja2.FileSystemLoader(str(sql.sql_dir()))).get_template(path.name).module
            for name in re.findall(r"{% macro (\w+)\(", text):
                macro = getattr(module, name)
                args = {
                    "columns": ("eventName", "eventTime"), "count": 2, "with_source_key": True,
                    "with_delivery_day": True, "partitions": ("p20170410",), "old": ("g19700102",),
                    "names": ("p20170410",), "rows_table": "logs__migrating", "new": "logs__migrating",
                    "stage": "logs__day_20170410", "partition": "p20170410",
                    "indexes": (("ix_a", False, (("eventName", None),)), ("ix_b", True, (("eventTime", 10),))),
                }
                params = [args.get(arg, "logs") for arg in macro.arguments]
                rendered[f"{path.name}:{name}"] = sql.split_statements(str(macro(*params)))
        elif path.name == "build_findings.sql":
            from cloudtrail_mysql.findings import load_controls, render_build

            for all_days, from_parts in ((False, False), (True, False), (False, True)):
                statements, _ = render_build("logs", load_controls(), all_days=all_days, from_parts=from_parts)
                rendered[f"{path.name}:all_days={all_days},from_parts={from_parts}"] = statements
        elif path.name == "build_summaries.sql":
            from cloudtrail_mysql.findings import compile_controls, load_controls

            rendered[path.name] = sql.split_statements(sql.render(path.name, table="logs"))
            controls = compile_controls(load_controls()).controls
            rendered[f"{path.name}:controls"] = sql.split_statements(
                sql.render(path.name, table="logs", controls=controls)
            )
        else:
            rendered[path.name] = sql.split_statements(
                sql.render(path.name, table="logs", database="cloudtrail", collation="utf8mb4_0900_bin")
            )
    return rendered


def test_sql_files_keep_to_what_mysql_8_also_accepts() -> None:
    rendered = _rendered_sql()
    assert "build_summaries.sql" in rendered and "partitions.sql:add_partitions" in rendered
    for name, statements in rendered.items():
        for pattern, what in _MARIADB_ONLY.items():
            assert not re.search(pattern, ";\n".join(statements), re.IGNORECASE), f"{name} uses {what}, which MySQL 8 refuses"
        # MySQL cannot open a temporary table twice in one statement (ER_CANT_REOPEN_TABLE).
        for statement in statements:
            if statement.lstrip().upper().startswith(("CREATE", "DROP")):
                continue
            for temporary in ("touched_days", "other_days", "day_events", "day_calls", "repeated_ids", "repeated_rows",
                              "later_copies", "findings_candidates", "findings_matches"):
                assert len(re.findall(rf"(?<![@\w]){temporary}\b", statement)) <= 1, (
                    f"{name}: {temporary} appears twice in one statement, which MySQL refuses"
                )


@pytest.mark.parametrize("order", ["in order", "backfill"])
def test_an_event_delivered_on_two_days_counts_once_whichever_day_is_loaded_first(
    tmp_path: Path, mysql_db: Any, capsys: Any, order: str
) -> None:
    import gzip
    import json

    before, today = _day(tmp_path, DAY - timedelta(days=1), records=200), _day(tmp_path, DAY, records=200, seed=2)
    # An event of D-1's last minutes, delivered in D-1's folder and again in D's (CloudTrail may).
    late_evening = next(
        e for e in before.events() if e["eventTime"].startswith(f"{DAY - timedelta(days=1)}T2") and "eventID" in e
    )
    item = today.log_files[0]
    records = json.loads(gzip.decompress(today.path(item).read_bytes()))["Records"]
    records.insert(1, json.loads(json.dumps(late_evening)))
    today.path(item).write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))

    days = [(before, DAY - timedelta(days=1)), (today, DAY)]
    for sample, _delivery_day in days if order == "in order" else days[::-1]:
        code, _, err = _cli(capsys, "import", sample.root, "--mysql-url", mysql_db.url, "--workers", "1", "--summarize")
        assert code == 0, err
    assert mysql_db.query("SELECT COUNT(*) FROM logs WHERE eventID = %s", late_evening["eventID"])[0][0] == 2
    found = {str(day): int(total) for day, total in mysql_db.query(
        "SELECT event_day, SUM(events) FROM logs_daily_events GROUP BY event_day"
    )}
    assert found == dict(_event_day_totals([before, today]))
    # Summarising a day again, in any order, changes nothing.
    for day in (DAY, DAY - timedelta(days=1)):
        assert _cli(capsys, "summarize", "--day", day, "--mysql-url", mysql_db.url)[0] == 0
    again = {str(day): int(total) for day, total in mysql_db.query(
        "SELECT event_day, SUM(events) FROM logs_daily_events GROUP BY event_day"
    )}
    assert again == found


def test_the_summaries_and_findings_scans_lock_none_of_the_rows_they_read(tmp_path: Path, mysql_db: Any, capsys: Any) -> None:
    """Under repeatable read, CREATE/INSERT ... SELECT lock every row they read: on a day of 14M
    events that overflows InnoDB's lock table (error 1206). The files' scans must read without locks."""
    from cloudtrail_mysql.findings import load_controls, render_build

    sample = _day(tmp_path, DAY, records=3000)
    code, _, err = _cli(capsys, "import", sample.root, "--mysql-url", mysql_db.url, "--summarize")
    assert code == 0, err
    day_rows = mysql_db.count()
    assert day_rows == len(sample.events())
    findings, findings_params = render_build("logs", load_controls(), all_days=False, from_parts=False)

    def rows_locked(statements: list[str], values: dict[str, Any]) -> int:
        """The most row locks the session's transaction held after any of the statements."""
        conn = mysql_db.connect()
        try:
            cursor = conn.cursor()
            most = 0
            for statement in statements:
                sql.execute_statements(cursor, [statement], values)
                if not re.search(r"`logs`(?!_)", statement):
                    continue
                time.sleep(0.15)  # InnoDB refreshes information_schema.innodb_trx at most every 0.1 s
                cursor.execute("SELECT trx_rows_locked FROM information_schema.innodb_trx "
                               "WHERE trx_mysql_thread_id = CONNECTION_ID()")
                most = max([most, *(int(row[0]) for row in cursor.fetchall())])
            conn.rollback()
            return most
        finally:
            conn.close()

    isolation = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
    for name, statements, values in (
        ("build_summaries.sql", sql.split_statements(sql.render("build_summaries.sql", table="logs")), {"day": DAY}),
        ("build_findings.sql", findings, {**findings_params, "day": DAY}),
    ):
        assert isolation in statements, name
        as_the_file_runs = rows_locked(statements, values)
        repeatable_read = rows_locked([s for s in statements if s != isolation], values)
        # The file's own isolation level spares a lock on each row of the day it reads (what is left:
        # the rows it deletes from the summaries and findings it replaces).
        assert repeatable_read >= day_rows > 4 * as_the_file_runs, (name, as_the_file_runs, repeatable_read, day_rows)
