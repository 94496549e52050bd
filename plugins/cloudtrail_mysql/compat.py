"""Airflow 3 (airflow.sdk) and Airflow 2.10/2.11 names, so one code base runs on both."""

from __future__ import annotations

try:  # Airflow 3
    from airflow.sdk import DAG, Asset, BaseOperator, Param, PokeReturnValue, TriggerRule, task
    from airflow.sdk import BaseOperatorLink, CronDataIntervalTimetable
except ImportError:  # Airflow 2
    from airflow.datasets import Dataset as Asset  # type: ignore[no-redef]
    from airflow.decorators import task  # type: ignore[no-redef]
    from airflow.models.baseoperator import BaseOperator  # type: ignore[no-redef]
    from airflow.models.baseoperatorlink import BaseOperatorLink  # type: ignore[no-redef]
    from airflow.models.dag import DAG  # type: ignore[no-redef]
    from airflow.models.param import Param  # type: ignore[no-redef]
    from airflow.sensors.base import PokeReturnValue  # type: ignore[no-redef]
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]
    from airflow.utils.trigger_rule import TriggerRule  # type: ignore[no-redef]

try:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:
    from airflow.exceptions import AirflowException, AirflowFailException  # type: ignore[no-redef]
try:
    from airflow.sdk.exceptions import AirflowSkipException
except ImportError:
    from airflow.exceptions import AirflowSkipException  # type: ignore[no-redef]

__all__ = [
    "Asset",
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "BaseOperator",
    "BaseOperatorLink",
    "CronDataIntervalTimetable",
    "DAG",
    "Param",
    "PokeReturnValue",
    "TriggerRule",
    "task",
]
