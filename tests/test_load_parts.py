"""The load path's parts that need no server: MySQL error kinds, the command's shards, the front end's tally."""

from __future__ import annotations

import pickle

import pytest

from cloudtrail_mysql.files import FileResult, SourceFile, replaced_note
from cloudtrail_mysql.front import LoadOptions, LoadSummary, kinds_for
from cloudtrail_mysql.layout import FileKind
from cloudtrail_mysql.mysql_errors import (
    ConnectionLost,
    LoadDataUnavailable,
    MySqlSetupError,
    StatementTooLarge,
    TransientMySqlError,
    at_mysql,
    describe_mysql_error,
    typed_error,
)


class FakeDriverError(Exception):
    """What mysqlclient raises: (number, message)."""


@pytest.mark.parametrize(
    ("code", "load_data", "kind"),
    [
        (2006, False, ConnectionLost),
        (2013, True, ConnectionLost),
        (1213, False, TransientMySqlError),
        (1205, False, TransientMySqlError),
        (1153, False, StatementTooLarge),
        (1142, False, MySqlSetupError),
        (1148, True, LoadDataUnavailable),
        # 1227: a missing privilege, except from LOAD DATA, where it means LOAD DATA is not allowed.
        (1227, False, MySqlSetupError),
        (1227, True, LoadDataUnavailable),
    ],
)
def test_driver_errors_become_typed_errors_at_the_boundary(code: int, load_data: bool, kind: type) -> None:
    driver = FakeDriverError(code, "said by the server")
    with pytest.raises(kind) as raised:
        with at_mysql(load_data=load_data):
            raise driver
    assert raised.value.__cause__ is driver
    assert isinstance(typed_error(driver, load_data), kind)


def test_unknown_errors_pass_the_boundary_unchanged_and_typed_errors_say_what_happened() -> None:
    unknown = FakeDriverError(1064, "syntax")
    with pytest.raises(FakeDriverError):
        with at_mysql():
            raise unknown
    lost = typed_error(FakeDriverError(2006, ""))
    assert str(lost) == describe_mysql_error(lost) == "MySQL server went away (2006)"
    assert isinstance(pickle.loads(pickle.dumps(lost)), ConnectionLost)  # crosses from a worker process whole


def test_the_command_shares_files_out_in_long_shards_then_short_ones() -> None:
    from cloudtrail_mysql.cli import MIN_FILES_PER_SHARD, _shards

    sources = [SourceFile(f"/data/{n:04d}.json.gz", size=1000) for n in range(1080)]
    shards = _shards(sources, 2)
    assert [s for shard in shards for s in shard] == sources  # every file once, in order
    lengths = [len(shard) for shard in shards]
    assert lengths[0] == 1080 // 4 and lengths == sorted(lengths, reverse=True)
    assert min(lengths) <= MIN_FILES_PER_SHARD < lengths[0]
    assert len(shards) < 1080 // MIN_FILES_PER_SHARD // 3  # far fewer starts than 16-file tasks
    assert _shards(sources, 1) == [sources]
    assert _shards(sources[:5], 4) == [sources[:5]]


def test_summary_tallies_results_in_the_words_the_command_prints() -> None:
    summary = LoadSummary(files=4)
    results = [
        FileResult("a", "loaded", rows=10, detail=replaced_note(7)),
        FileResult("b", "already_loaded"),
        FileResult("c", "failed", detail="c: broken"),
        FileResult("d", "skipped"),
    ]
    assert list(summary.tally(results)) == results
    summary.finish()
    assert summary.line().startswith("1 files loaded, 1 already loaded, 1 skipped, 1 failed; 10 rows in ")
    assert summary.replacements == [("a", 7)] and [f.location for f in summary.failures] == ["c"]
    assert {k: v for k, v in summary.as_dict().items() if k != "seconds"} == {
        "files": 4, "loaded": 1, "already_loaded": 1, "skipped": 1, "failed": 1, "rows": 10,
    }


def test_options_from_flags() -> None:
    assert kinds_for() == {FileKind.LOG}
    assert kinds_for(True, True) == {FileKind.LOG, FileKind.INSIGHT, FileKind.NETWORK_ACTIVITY}
    options = LoadOptions.from_flags(table="t1", include_insight=True, max_record_bytes="2M", retry_seconds=3)
    assert options.kinds == {FileKind.LOG, FileKind.INSIGHT}
    assert options.limits.max_record_bytes == 2 * 1024 * 1024 and options.retry_seconds == 3
    with pytest.raises(ValueError):
        LoadOptions.from_flags(table="no such`table")
    with pytest.raises(ValueError):
        LoadOptions.from_flags(method="copy")
