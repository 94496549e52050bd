"""compat.py resolves each Airflow name on its own: one missing from ``airflow.sdk`` falls back alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.lane
def test_every_name_comes_from_the_running_airflows_own_home() -> None:
    import airflow

    from cloudtrail_mysql import compat

    assert set(compat.SOURCES) == set(compat.__all__) - {"SOURCES", "resolve"}
    if airflow.__version__.startswith("2."):
        assert not any(source.startswith("airflow.sdk") for source in compat.SOURCES.values()), compat.SOURCES
        return
    # Airflow 3: from the SDK whenever the SDK has it (3.0's lacks a few: those, and only those, fall back).
    from importlib import import_module

    for name, source in compat.SOURCES.items():
        sdk_module, attribute = compat._HOMES[name][0]
        if not source.startswith("airflow.sdk"):
            assert not hasattr(import_module(sdk_module), attribute), (name, source)
    assert {compat.SOURCES[name] for name in ("DAG", "BaseOperator", "Param", "task", "Asset")} == {"airflow.sdk"}


def test_a_name_missing_from_the_sdk_falls_back_alone_without_deprecated_imports() -> None:
    """As on Airflow 3.0, whose airflow.sdk has no CronDataIntervalTimetable yet."""
    pytest.importorskip("airflow.sdk")
    probe = (
        "import warnings, json, sys\n"
        "import airflow.sdk as sdk\n"
        "vars(sdk)['__lazy_imports'].pop('CronDataIntervalTimetable')\n"
        "vars(sdk).pop('CronDataIntervalTimetable', None)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from cloudtrail_mysql import compat\n"
        "print(json.dumps({'sources': compat.SOURCES, 'deprecations': [str(w.message) for w in caught\n"
        "    if issubclass(w.category, DeprecationWarning) and 'airflow' in str(w.message).lower()]}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["sources"]["CronDataIntervalTimetable"] == "airflow.timetables.interval"
    others = {name: source for name, source in found["sources"].items() if name != "CronDataIntervalTimetable"}
    assert all(source.startswith("airflow.sdk") for source in others.values()), others
    assert found["deprecations"] == []


def test_a_name_found_nowhere_says_which_and_where_it_looked() -> None:
    from cloudtrail_mysql import compat

    compat._HOMES["Nowhere"] = (("airflow.no_such_module", "Nowhere"), ("airflow", "NoSuchName"))
    try:
        with pytest.raises(ImportError, match=r"Nowhere is in none of \['airflow.no_such_module', 'airflow'\]"):
            compat.resolve("Nowhere")
    finally:
        del compat._HOMES["Nowhere"]
