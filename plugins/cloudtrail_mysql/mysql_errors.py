"""MySQL's errors, in one place: what an error number means, and the typed errors the loader acts on.

The writer turns a driver exception into one of these where a statement meets the server
(``at_mysql``), so the rest of the loader decides by type, never by number:

- ``ConnectionLost``: the server went away, the connection was killed; the file's transaction was
  rolled back whole, so the file is loaded again once a new connection answers;
- ``TransientMySqlError``: a deadlock or a lock wait timeout; the file is loaded again after a pause;
- ``StatementTooLarge``: refused for its size (max_allowed_packet); no retry can help;
- ``MySqlSetupError``: a refusal no retry can fix (access denied, unknown database, read-only);
- ``LoadDataUnavailable``: LOAD DATA LOCAL INFILE is refused; ``auto`` falls back to INSERTs.

Error 1227 (a privilege is missing) is a refusal, except from a LOAD DATA statement, where it
means LOAD DATA is not allowed: which one is decided by the statement that raised it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "ConnectionLost", "LoadDataUnavailable", "MySqlConnectError", "MySqlError", "MySqlSetupError", "StatementTooLarge",
    "TransientMySqlError", "at_mysql", "describe_mysql_error", "mysql_error_code", "setup_error", "typed_error",
]

# Error numbers the loader names (server errors 1xxx-4xxx, client errors 2xxx).
DUPLICATE_KEY = 1062
UNKNOWN_DATABASE = 1049
NO_SUCH_TABLE = 1146
UNKNOWN_COLUMN = 1054
WRONG_PASSWORD = 1045
# Cannot reach the server (socket, TCP, unknown host): said with a hint on where to look.
CANNOT_REACH = frozenset({2002, 2003, 2005})
# Server gone away, lost connection (during a query), can't connect, connection killed, shutting down.
CONNECTION_LOST = frozenset({2006, 2013, 2055, 2003, 2002, 1927, 1053})
# Lock wait timeout, deadlock: the transaction was rolled back, the same work can simply run again.
LOCK_WAIT_TIMEOUT = 1205
TRANSIENT = frozenset({LOCK_WAIT_TIMEOUT, 1213})
# Statements refused for their size: no retry can help, the server's setting or the file must change.
PACKET_TOO_LARGE = frozenset({1153, 1301})
# Access denied (user, database), unknown database, command or column denied, read-only server.
REFUSALS = {
    1045: "the MySQL user or password is wrong",
    1044: "the MySQL user lacks a privilege on this database (see the README's grants)",
    1049: "the database does not exist",
    1142: "the MySQL user lacks a privilege on the table (see the README's grants)",
    1143: "the MySQL user lacks a privilege on a column (see the README's grants)",
    1227: "the MySQL user lacks a privilege (see the README's grants)",
    1290: "the MySQL server is read-only",
    1836: "the MySQL server is read-only",
}
# From a LOAD DATA statement: not allowed with this MySQL version / local data disabled / rejected
# by the client / not allowed for this user.
LOAD_DATA_REFUSED = frozenset({1148, 3948, 2068, 4166, 1227})

_WORDS = {
    2006: "MySQL server went away",
    2013: "lost the connection to MySQL during a statement",
    2055: "lost the connection to MySQL",
    2003: "cannot reach the MySQL server",
    2002: "cannot reach the MySQL server",
    1927: "the MySQL connection was killed",
    1053: "the MySQL server is shutting down",
    1153: "MySQL refused a statement larger than its max_allowed_packet",
    1301: "a value was larger than the MySQL server's max_allowed_packet",
    1205: "a lock wait timed out in MySQL",
    1213: "MySQL found a deadlock",
}


def mysql_error_code(exc: BaseException) -> int | None:
    """MySQL's error number of a DB-API exception (its first argument) or of a typed error, if it has one."""
    if isinstance(exc, MySqlError):
        return exc.code
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def describe_mysql_error(exc: BaseException) -> str:
    """A MySQL error in words, with its number and what the server said if anything:
    "MySQL server went away (2006)", never a bare "(2006, '')"."""
    if isinstance(exc, MySqlError):
        exc = exc.cause
    code = mysql_error_code(exc)
    said = str(exc.args[-1]).strip() if len(getattr(exc, "args", ())) > 1 else ""
    words = _WORDS.get(code) if code is not None else None
    if words is None:
        return f"MySQL error {code}: {said}" if code is not None else (str(exc) or type(exc).__name__)
    return f"{words} ({code})" + (f": {said}" if said and said.lower() not in words.lower() else "")


class MySqlError(Exception):
    """A driver exception the loader acts on by its kind; ``cause`` is the driver's exception."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause
        self.code = mysql_error_code(cause)

    def __str__(self) -> str:
        return describe_mysql_error(self.cause)

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker process, it reaches the command whole
        return type(self), (self.cause,)


class ConnectionLost(MySqlError):
    """The connection is gone (server restart, KILL, network): what it was doing was rolled back."""


class TransientMySqlError(MySqlError):
    """A deadlock or a lock wait timeout: the transaction was rolled back and may simply run again."""


class StatementTooLarge(MySqlError):
    """A statement refused for its size (the server's max_allowed_packet)."""


class MySqlSetupError(RuntimeError):
    """MySQL refused the loader in a way no retry can fix; the message says what to fix."""


class LoadDataUnavailable(RuntimeError):
    """The server or the connection does not allow LOAD DATA LOCAL INFILE."""


class MySqlConnectError(ConnectionError):
    """Connecting failed; ``code`` is MySQL's error number."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker, it reaches the command whole
        return type(self), (str(self), self.code)


def setup_error(exc: BaseException, doing: str = "") -> MySqlSetupError | None:
    """The refusal no retry can fix, said plainly, if ``exc`` is one; else None."""
    if isinstance(exc, MySqlSetupError):
        return MySqlSetupError(f"{doing}: {exc}") if doing else exc
    code = mysql_error_code(exc)
    if code not in REFUSALS:
        return None
    prefix = f"{doing}: " if doing else ""
    return MySqlSetupError(f"{prefix}{REFUSALS[code]}: MySQL said {exc.args[-1]}")


def typed_error(exc: BaseException, load_data: bool = False) -> BaseException:
    """The typed error for a driver exception met running a statement (``load_data``: a LOAD DATA
    statement), or ``exc`` itself if it is none of the kinds above."""
    if isinstance(exc, (MySqlError, MySqlSetupError, LoadDataUnavailable)):
        return exc
    code = mysql_error_code(exc)
    if code is None:
        return exc
    if load_data and code in LOAD_DATA_REFUSED:
        return LoadDataUnavailable(str(exc))
    refusal = setup_error(exc)
    if refusal is not None:
        return refusal
    if code in CONNECTION_LOST:
        return ConnectionLost(exc)
    if code in TRANSIENT:
        return TransientMySqlError(exc)
    if code in PACKET_TOO_LARGE:
        return StatementTooLarge(exc)
    return exc


@contextmanager
def at_mysql(load_data: bool = False) -> Iterator[None]:
    """Statements run inside raise typed errors (``typed_error``) instead of the driver's numbered ones."""
    try:
        yield
    except Exception as exc:
        typed = typed_error(exc, load_data)
        if typed is exc:
            raise
        raise typed from exc
