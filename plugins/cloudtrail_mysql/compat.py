"""The Airflow names this package uses, each taken from where the running Airflow keeps it.

Each name is resolved on its own: Airflow 3's ``airflow.sdk`` (or ``airflow.sdk.exceptions``) when it
has it, else its Airflow 2 home. So a name that an Airflow 3 release does not have in
``airflow.sdk`` yet (``CronDataIntervalTimetable`` came there in 3.1) falls back alone, and
everything else still comes from the SDK, not from Airflow 2's deprecated modules.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# name -> where to look, in order: (module, attribute) pairs.
_HOMES: dict[str, tuple[tuple[str, str], ...]] = {
    "DAG": (("airflow.sdk", "DAG"), ("airflow.models.dag", "DAG")),
    "Asset": (("airflow.sdk", "Asset"), ("airflow.datasets", "Dataset")),
    "AssetAlias": (("airflow.sdk", "AssetAlias"), ("airflow.datasets", "DatasetAlias")),
    "BaseOperator": (("airflow.sdk", "BaseOperator"), ("airflow.models.baseoperator", "BaseOperator")),
    "BaseOperatorLink": (("airflow.sdk", "BaseOperatorLink"), ("airflow.models.baseoperatorlink", "BaseOperatorLink")),
    "Param": (("airflow.sdk", "Param"), ("airflow.models.param", "Param")),
    "PokeReturnValue": (("airflow.sdk", "PokeReturnValue"), ("airflow.sensors.base", "PokeReturnValue")),
    "TriggerRule": (("airflow.sdk", "TriggerRule"), ("airflow.utils.trigger_rule", "TriggerRule")),
    "task": (("airflow.sdk", "task"), ("airflow.decorators", "task")),
    "CronDataIntervalTimetable": (
        ("airflow.sdk", "CronDataIntervalTimetable"),
        ("airflow.timetables.interval", "CronDataIntervalTimetable"),
    ),
    "AirflowException": (("airflow.sdk.exceptions", "AirflowException"), ("airflow.exceptions", "AirflowException")),
    "AirflowFailException": (
        ("airflow.sdk.exceptions", "AirflowFailException"),
        ("airflow.exceptions", "AirflowFailException"),
    ),
    "AirflowSkipException": (
        ("airflow.sdk.exceptions", "AirflowSkipException"),
        ("airflow.exceptions", "AirflowSkipException"),
    ),
}


def resolve(name: str) -> tuple[Any, str]:
    """The object for ``name`` and the module it came from: the first of its homes that has it."""
    for module_name, attribute in _HOMES[name]:
        try:
            module = import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, attribute):
            return getattr(module, attribute), module_name
    raise ImportError(f"{name} is in none of {[m for m, _ in _HOMES[name]]}: is Airflow 2.11 or later installed?")


# Where each name was found, for tests and bug reports: {"DAG": "airflow.sdk", ...}.
SOURCES: dict[str, str] = {}
for _name in _HOMES:
    globals()[_name], SOURCES[_name] = resolve(_name)

DAG: Any
Asset: Any
AssetAlias: Any
BaseOperator: Any
BaseOperatorLink: Any
Param: Any
PokeReturnValue: Any
TriggerRule: Any
task: Any
CronDataIntervalTimetable: Any
AirflowException: Any
AirflowFailException: Any
AirflowSkipException: Any

__all__ = [*_HOMES, "SOURCES", "resolve"]
