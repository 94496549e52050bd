"""``BoundedMySqlHook``: the MySQL provider's hook with bounded waits on every connection it opens.

``MySqlHook`` passes no connect/read/write timeouts to mysqlclient, so a MySQL server that stops
answering holds a task (and its worker slot) until the TCP stack gives up, hours later. Every
MySQL connection the DAG's tasks open comes from here or from the operator's
``_connect_with_timeouts``, with the same ``MYSQL_TIMEOUTS``; the Airflow connection's extra may
set its own (``{"read_timeout": 600}``). Imported inside tasks only: it pulls in the MySQL driver.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.mysql.hooks.mysql import MySqlHook

from cloudtrail_mysql.operators import MYSQL_TIMEOUTS, _connect_with_timeouts

__all__ = ["BoundedMySqlHook", "MYSQL_TIMEOUTS"]


class BoundedMySqlHook(MySqlHook):
    """``MySqlHook`` whose mysqlclient connections carry ``MYSQL_TIMEOUTS`` (other drivers: unchanged);
    ``read_timeout`` (seconds) replaces the default one, for the day's long statements."""

    def __init__(self, *args: Any, read_timeout: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def get_conn(self) -> Any:
        connection = getattr(self, "connection", None) or self.get_connection(self.get_conn_id())
        if connection.extra_dejson.get("client", "mysqlclient") != "mysqlclient":
            return super().get_conn()
        return _connect_with_timeouts(self, self.read_timeout)
