"""Load one CloudTrail file: decide whether to load it, read it, parse it, write it, note failures.

The command-line loader and the Airflow operator both call ``load_file``; only how bytes are
fetched (local disk, S3 through boto3 or S3Hook) differs between them.

Errors come in three kinds:
- a bad file (corrupt, not CloudTrail, S3 says it is gone): that file fails, named, and is recorded
  in the manifest; the other files go on;
- a passing MySQL fault (deadlock, lock wait timeout, lost connection): the file's transaction was
  rolled back whole, so the file is loaded again, after reconnecting if needed, a few times with
  backoff;
- a MySQL refusal that no retry can fix (access denied, unknown database, missing privilege):
  ``MySqlSetupError`` stops the whole load at once with what to fix.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from cloudtrail_mysql.records import (
    CloudTrailFileError,
    DigestFile,
    FileKind,
    Limits,
    RecordsOnDemand,
    RowBuilder,
    classify,
    read_records,
)
from cloudtrail_mysql.writer import (
    FileResult,
    LoadDataUnavailable,
    MySqlWriter,
    SourceFile,
    TsvRows,
    describe_mysql_error,
    mysql_error_code,
)

__all__ = [
    "DEFAULT_KINDS", "MySqlSetupError", "ReadAhead", "ReadFile", "load_file", "load_files", "read_file", "setup_error",
    "wanted",
]

log = logging.getLogger(__name__)

DEFAULT_KINDS: frozenset[FileKind] = frozenset({FileKind.LOG})

# Lock wait timeout, deadlock; server gone away, lost connection, lost during query, can't connect.
RETRYABLE_MYSQL_ERRORS = frozenset({1205, 1213, 2006, 2013, 2055, 2003, 2002, 1927, 1053})
LOST_CONNECTION_ERRORS = frozenset({2006, 2013, 2055, 2003, 2002, 1927, 1053})
# Access denied (user, database), unknown database, command or column denied, read-only server.
SETUP_MYSQL_ERRORS = {
    1045: "the MySQL user or password is wrong",
    1044: "the MySQL user lacks a privilege on this database (see the README's grants)",
    1049: "the database does not exist",
    1142: "the MySQL user lacks a privilege on the table (see the README's grants)",
    1143: "the MySQL user lacks a privilege on a column (see the README's grants)",
    1227: "the MySQL user lacks a privilege (see the README's grants)",
    1290: "the MySQL server is read-only",
    1836: "the MySQL server is read-only",
}
# Statements refused for their size: no retry can help, the server's setting or the file must change.
PACKET_TOO_LARGE_ERRORS = frozenset({1153, 1301})
ATTEMPTS = 5
# What a failed file's message says when the MySQL server could not be reached in time.
LOAD_AGAIN_HINT = "the file was not loaded; load again once the MySQL server is back (files already loaded are skipped)"


class MySqlSetupError(RuntimeError):
    """MySQL refused the loader in a way no retry can fix; the message says what to fix."""


def setup_error(exc: BaseException, doing: str = "") -> MySqlSetupError | None:
    """The refusal no retry can fix, said plainly, if ``exc`` is one; else None."""
    code = mysql_error_code(exc)
    if code not in SETUP_MYSQL_ERRORS:
        return None
    prefix = f"{doing}: " if doing else ""
    return MySqlSetupError(f"{prefix}{SETUP_MYSQL_ERRORS[code]}: MySQL said {exc.args[-1]}")


def wanted(location: str, kinds: Collection[FileKind] = DEFAULT_KINDS) -> tuple[bool, str]:
    """Whether a file is one to load, and if not, why (digest, Insight, not a .json.gz ...)."""
    kind = classify(location)
    if kind in kinds:
        return True, ""
    if kind is FileKind.OTHER:
        return False, "not a CloudTrail log file (by its name and folder)"
    return False, f"{kind.value} file"


def load_file(
    source: SourceFile,
    fetch: Callable[[SourceFile], bytes],
    writer: MySqlWriter,
    kinds: Collection[FileKind] = DEFAULT_KINDS,
    check_manifest: bool = True,
    attempts: int = ATTEMPTS,
) -> FileResult:
    """Load one file whole or not at all; a bad file is returned as failed, never raised."""
    with _no_cyclic_gc():
        return _load_file(source, lambda s: read_file(s, fetch), writer, kinds, check_manifest, attempts)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """CloudTrail events hold no reference cycles, and the cyclic collector, run again and again
    while orjson allocates a file's objects, costs more than parsing itself."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@dataclass
class ReadFile:
    """A file as read for loading: its source (with, for a local file, the MD5 of its content as
    ETag), its bytes and, when written ahead for LOAD DATA, its rows as TSV. ``close`` when done."""

    source: SourceFile
    data: bytes
    tsv: TsvRows | None = None

    def close(self) -> None:
        if self.tsv is not None:
            self.tsv.close()


def read_file(source: SourceFile, fetch: Callable[[SourceFile], bytes], builder: RowBuilder | None = None) -> ReadFile:
    """Fetch a file and, given a ``builder``, parse it and write its rows as TSV: the part of
    loading that needs no connection, so it can run ahead of the file's turn."""
    data = fetch(source)
    if source.etag is None:
        # Known by its content only once read (local files): its MD5, which is also the ETag
        # S3 gives a file uploaded whole, so a changed file of the same size is seen.
        source = replace(source, etag=hashlib.md5(data, usedforsecurity=False).hexdigest())
    read = ReadFile(source, data)
    if builder is not None:
        read.tsv = TsvRows(builder, read_records(data, source.location, builder.limits), source.location)
    return read


T = TypeVar("T")


class ReadAhead(Generic[T]):
    """A fetch function that reads the next files ahead, in threads, while earlier ones are
    parsed and written: an S3 GET waits tens of milliseconds, which file after file would
    otherwise be waited for one by one. The same serves to parse files ahead (``read_file``)
    while the server loads an earlier one.

    Files are read in the order given, at most ``files`` (and about ``max_bytes`` by their
    listed sizes) ahead of the one being loaded. A file asked for again (a retry) or out of
    turn is read directly. ``close`` stops what is still pending. What was read ahead and then
    not asked for is passed to ``discard`` (to remove temporary files).
    """

    def __init__(
        self, sources: Sequence[SourceFile], fetch: Callable[[SourceFile], T], files: int = 8,
        max_bytes: int = 64 * 1024 * 1024, discard: Callable[[T], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._files = max(1, files)
        self._max_bytes = max_bytes
        self._discard = discard
        self._upcoming: deque[SourceFile] = deque(sources)
        self._pending: dict[str, tuple[Future[T], int]] = {}
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self._files, thread_name_prefix="cloudtrail-read-ahead")
        with self._lock:
            self._top_up()

    def _top_up(self) -> None:
        while self._upcoming and len(self._pending) < self._files and (
            not self._pending or self._pending_bytes < self._max_bytes
        ):
            source = self._upcoming.popleft()
            size = source.size or 0
            self._pending[source.location] = (self._pool.submit(self._fetch, source), size)
            self._pending_bytes += size

    def __call__(self, source: SourceFile) -> T:
        with self._lock:
            ahead = self._pending.pop(source.location, None)
            if ahead is not None:
                self._pending_bytes -= ahead[1]
                self._top_up()
        if ahead is None:
            return self._fetch(source)
        return ahead[0].result()

    def done(self, location: str) -> None:
        """The file is dealt with: a read ahead that it never asked for (already loaded) goes."""
        with self._lock:
            ahead = self._pending.pop(location, None)
            if ahead is None:
                return
            self._pending_bytes -= ahead[1]
            self._top_up()
        self._drop(ahead[0])

    def _drop(self, future: Future[T]) -> None:
        if not future.cancel() and self._discard is not None:
            future.add_done_callback(self._discard_result)

    def _discard_result(self, future: Future[T]) -> None:
        if not future.cancelled() and future.exception() is None and self._discard is not None:
            self._discard(future.result())

    def close(self) -> None:
        with self._lock:
            self._upcoming.clear()
            pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            self._drop(future)
        self._pool.shutdown(wait=True, cancel_futures=True)


def load_files(
    sources: Sequence[SourceFile],
    fetch: Callable[[SourceFile], bytes],
    writers: Sequence[MySqlWriter],
    kinds: Collection[FileKind] = DEFAULT_KINDS,
    check_manifest: bool = True,
    read_ahead: int = 0,
    parse_ahead: bool = True,
) -> Iterator[FileResult]:
    """``load_file`` for each source, one thread per writer (each with its own connection).

    Parsing holds the GIL but MySQL's work does not, so the server and the parser overlap. With
    ``parse_ahead``, each file never seen is also read, parsed and written as LOAD DATA text ahead
    of its turn, one per writer, in threads (``read_file``), while the writers' connections load
    earlier files: worth a core of its own (a remote server, or fewer workers than cores), a few
    per cent of CPU lost where the server already has every core busy.
    With ``check_manifest`` the manifest is read once for all the files to load (``manifest_state``):
    a file loaded with the same ETag is reported at once and never read, a file never seen is
    loaded without a check of its own, and only the others are checked one by one (before they
    are parsed, so that a folder loaded again is not parsed again).
    With ``read_ahead``, that many files are fetched ahead (``ReadAhead``; for S3).
    A ``MySqlSetupError`` stops the rest; results come in the order of ``sources``.
    """
    loadable = [source for source in sources if wanted(source.location, kinds)[0]]
    done, seen = _manifest_state(writers[0], loadable) if check_manifest else (set(), set())
    to_read = [source for source in loadable if source.location not in done]
    fetched = ReadAhead(to_read, fetch, read_ahead) if read_ahead > 0 and to_read else None
    fetch_one = fetched or fetch
    builder = _tsv_builder(writers[0]) if to_read and parse_ahead else None
    fresh = [source for source in to_read if source.location not in seen]

    def read_ahead_of_turn(source: SourceFile) -> ReadFile:
        return read_file(source, fetch_one, builder if writers[0].method != "insert" else None)

    parsed = (
        ReadAhead(fresh, read_ahead_of_turn, len(writers), discard=ReadFile.close)
        if builder is not None and fresh else None
    )
    ahead_of_turn = {source.location for source in fresh}

    def read(source: SourceFile) -> ReadFile:
        if parsed is not None and source.location in ahead_of_turn:
            return parsed(source)
        return read_file(source, fetch_one)

    def load(source: SourceFile, writer: MySqlWriter) -> FileResult:
        if source.location in done:
            return FileResult(source.location, "already_loaded", detail="in the manifest")
        return _load_file(source, read, writer, kinds, source.location in seen, ATTEMPTS)

    try:
        with _no_cyclic_gc():
            for result in _in_threads(sources, load, writers):
                for ahead in (parsed, fetched):
                    if ahead is not None:
                        ahead.done(result.location)
                yield result
    finally:
        for ahead in (parsed, fetched):
            if ahead is not None:
                ahead.close()
        for writer in writers:
            if writer.unrecorded_failures:
                if writer.unreachable_since is not None:
                    _reconnect(writer)
                _record_unrecorded(writer)


def _manifest_state(writer: MySqlWriter, sources: Sequence[SourceFile]) -> tuple[set[str], set[str]]:
    """``writer.manifest_state``; with the server lost, no file is taken as loaded or as new:
    each is checked in its own turn, with its own retries."""
    try:
        return writer.manifest_state(sources)
    except Exception as exc:
        if mysql_error_code(exc) not in LOST_CONNECTION_ERRORS:
            raise
        log.warning("reading the manifest: %s; each file is checked in its turn", describe_mysql_error(exc))
        _wait_for_server(writer)
        return set(), {source.location for source in sources}


def _tsv_builder(writer: MySqlWriter) -> RowBuilder | None:
    """The writer's row builder, for writing files as TSV ahead of their turn (None for INSERTs,
    or if the table cannot be read now: each file then says why when its turn comes)."""
    if writer.method == "insert":
        return None
    try:
        return writer.builder  # the table's columns are read here, not in the threads
    except Exception:  # noqa: BLE001 - reported file by file by the writer itself
        return None


def _in_threads(
    sources: Sequence[SourceFile], load: Callable[[SourceFile, MySqlWriter], FileResult], writers: Sequence[MySqlWriter]
) -> Iterator[FileResult]:
    """``load`` for each source, in order, on as many threads as there are writers."""
    if len(writers) <= 1 or len(sources) <= 1:
        for source in sources:
            yield load(source, writers[0])
        return
    free: queue.SimpleQueue[MySqlWriter] = queue.SimpleQueue()
    for writer in writers:
        free.put(writer)

    def load_with_a_free_writer(source: SourceFile) -> FileResult:
        writer = free.get()
        try:
            return load(source, writer)
        finally:
            free.put(writer)

    pool = ThreadPoolExecutor(len(writers), thread_name_prefix="cloudtrail-load")
    try:
        yield from pool.map(load_with_a_free_writer, sources)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _load_file(
    source: SourceFile,
    read: Callable[[SourceFile], ReadFile],
    writer: MySqlWriter,
    kinds: Collection[FileKind],
    check_manifest: bool,
    attempts: int,
) -> FileResult:
    is_wanted, why = wanted(source.location, kinds)
    if not is_wanted:
        return FileResult(source.location, "skipped", detail=why)
    started = time.monotonic()
    file: ReadFile | None = None
    records: Iterable[dict[str, Any]] | None = None  # a list, or a re-iterable stream for large files
    reconnects = 0  # attempts to reconnect while loading this file
    lost = 0  # times the connection was lost while loading it
    if writer.unreachable_since is not None:
        # The server was lost before this file: one more try at once, no long wait if the outage goes on.
        answers, tries = _wait_for_server(writer)
        if not answers:
            return _failed(writer, source, _outage_message(source, writer, tries, None), started)
    if writer.unrecorded_failures:
        _record_unrecorded(writer)
    try:
        for attempt in itertools.count(1):
            try:
                if file is None:
                    file = read(source)
                    source = file.source
                if check_manifest and writer.loaded([source]):
                    result = FileResult(source.location, "already_loaded", detail="in the manifest")
                elif file.tsv is not None:
                    result = writer.load(
                        source, RecordsOnDemand(file.data, source.location, writer.limits), file.tsv, new=not check_manifest
                    )
                else:
                    if records is None:
                        records = read_records(file.data, source.location, writer.limits)
                    result = writer.load(source, records, new=not check_manifest)
                writer.unreachable_since = None
                return result
            except DigestFile:
                return FileResult(source.location, "skipped", detail="CloudTrail digest file")
            except CloudTrailFileError as exc:
                return _failed(writer, source, str(exc), started)
            except LoadDataUnavailable as exc:  # only when LOAD DATA was asked for, not auto
                raise MySqlSetupError(
                    f"LOAD DATA LOCAL INFILE is refused ({exc}); load with the method auto or insert"
                ) from None
            except Exception as exc:  # noqa: BLE001 - sorted below by what can be done about it
                refusal = setup_error(exc)
                if refusal is not None:
                    raise refusal from None
                code = mysql_error_code(exc)
                if code in PACKET_TOO_LARGE_ERRORS:
                    return _failed(writer, source, (
                        f"{source.location}: {describe_mysql_error(exc)}; raise max_allowed_packet on the server, "
                        f"or lower the largest record loaded ({Limits.RECORD_HINT})"
                    ), started)
                if code in LOST_CONNECTION_ERRORS:
                    log.warning("%s: %s; reconnecting to load it again", source.location, describe_mysql_error(exc))
                    lost += 1
                    if lost > attempts:  # the server answers again each time, yet drops this file's load
                        return _failed(writer, source, (
                            f"{source.location}: {describe_mysql_error(exc)} while loading, {lost} times, though "
                            "the server answered again each time: a statement it refuses can do that (its "
                            f"max_allowed_packet, or a lower {Limits.RECORD_HINT})"
                        ), started)
                    answers, tries = _wait_for_server(writer)
                    reconnects += tries
                    if answers:
                        continue
                    return _failed(writer, source, _outage_message(source, writer, reconnects, exc), started)
                if code in RETRYABLE_MYSQL_ERRORS and attempt < attempts:
                    log.warning("%s: %s; loading it again (%d/%d)", source.location, exc, attempt, attempts - 1)
                    time.sleep(min(0.2 * 2**attempt, 5.0))
                    continue
                return _failed(writer, source, f"{source.location}: {type(exc).__name__}: {exc}", started)
        raise AssertionError("unreachable")
    finally:
        if file is not None:
            file.close()


def _wait_for_server(writer: MySqlWriter) -> tuple[bool, int]:
    """Reconnect, with backoff, until the server answers or it has been unreachable for
    ``writer.retry_seconds``: whether it answers, and how many tries. A refusal (wrong password
    ...) is raised."""
    if writer.unreachable_since is None:
        writer.unreachable_since = time.monotonic()
    delay = 0.25
    tries = 0
    while True:
        tries += 1
        if _reconnect(writer):
            writer.unreachable_since = None
            return True, tries
        left = writer.unreachable_since + writer.retry_seconds - time.monotonic()
        if left <= 0:
            return False, tries
        time.sleep(min(delay, left))
        delay = min(delay * 2, 5.0)


def _outage_message(source: SourceFile, writer: MySqlWriter, reconnects: int, exc: BaseException | None) -> str:
    lasted = time.monotonic() - (writer.unreachable_since or time.monotonic())
    limit = (
        f"(waiting at most {writer.retry_seconds:g} s: --retry-seconds, the operator's retry_seconds or "
        "CLOUDTRAIL_MYSQL_RETRY_SECONDS)"
    )
    if exc is None:
        return (
            f"{source.location}: not tried: the MySQL server has not answered for {lasted:.0f} s {limit}; {LOAD_AGAIN_HINT}"
        )
    return (
        f"{source.location}: {describe_mysql_error(exc)} while loading; retried {reconnects} times over {lasted:.0f} s "
        f"{limit}; {LOAD_AGAIN_HINT}"
    )


def _reconnect(writer: MySqlWriter) -> bool:
    """A new connection for ``writer``: whether it worked."""
    try:
        writer.reconnect()
    except Exception as exc:  # noqa: BLE001 - the caller waits and tries again, or fails the file
        refusal = setup_error(exc)
        if refusal is not None:
            raise refusal from None
        log.warning("reconnecting to MySQL failed: %s", describe_mysql_error(exc))
        return False
    return True


def _record_unrecorded(writer: MySqlWriter) -> None:
    """Write the failures the lost server could not take into the manifest, now that it answers."""
    pending, writer.unrecorded_failures = writer.unrecorded_failures, []
    for index, (source, message) in enumerate(pending):
        try:
            writer.record_failure(source, message)
        except Exception as exc:  # noqa: BLE001 - still gone: kept for the next chance
            log.warning("could not record the failure of %s: %s", source.location, describe_mysql_error(exc))
            writer.unrecorded_failures.extend(pending[index:])
            return


def _failed(writer: MySqlWriter, source: SourceFile, message: str, started: float) -> FileResult:
    log.error("failed: %s", message)
    try:
        writer.record_failure(source, message)
    except Exception as exc:  # noqa: BLE001 - the database may be the thing that failed
        log.warning("could not record the failure of %s: %s", source.location, describe_mysql_error(exc))
        writer.unrecorded_failures.append((source, message))
    return FileResult(source.location, "failed", seconds=time.monotonic() - started, detail=message)
