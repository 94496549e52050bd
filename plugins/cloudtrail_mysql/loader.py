"""Load CloudTrail files into MySQL: a two-stage pipeline, *prepare* then *commit*.

- Which files: a file not of the kinds asked for is skipped; the manifest is read once for all the
  files (``ManifestSnapshot``): a file loaded with the same ETag is reported at once and never
  fetched, a file it has no row for is *new* (its row is simply inserted).
- *prepare* (no connection; a bounded pool of threads, ahead of each file's turn): fetch the bytes,
  know a local file by its MD5, and parse it into LOAD DATA text (``prepare_file``). At most
  ``read_ahead`` files (and about 64 MB) are fetched ahead, and at most one file per connection is
  parsed at a time: an S3 GET waits tens of milliseconds, parsing holds the GIL.
- *commit* (one thread per connection): the file's transaction (``MySqlWriter.load``), whose claim
  of the file's manifest row is the authority on whether it is loaded, with retries.

Results come in the order of the files. Errors come in three kinds:
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
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from cloudtrail_mysql.files import FileResult, SourceFile
from cloudtrail_mysql.front import DEFAULT_KINDS
from cloudtrail_mysql.layout import FileKind, classify
from cloudtrail_mysql.manifest import ManifestSnapshot
from cloudtrail_mysql.mysql_errors import (
    ConnectionLost,
    LoadDataUnavailable,
    MySqlError,
    MySqlSetupError,
    StatementTooLarge,
    TransientMySqlError,
    at_mysql,
    describe_mysql_error,
    setup_error,
)
from cloudtrail_mysql.records import CloudTrailFileError, DigestFile, Limits, RecordsOnDemand, RowBuilder, read_records
from cloudtrail_mysql.table import TsvRows
from cloudtrail_mysql.writer import MySqlWriter

__all__ = [
    "ATTEMPTS", "DEFAULT_KINDS", "LOAD_AGAIN_HINT", "MySqlSetupError", "PreparedFile", "load_file", "load_files",
    "prepare_file", "setup_error", "wanted",
]

log = logging.getLogger(__name__)

ATTEMPTS = 5
# Bytes (by their listed sizes) that may be fetched ahead of the file being committed.
PREPARE_AHEAD_BYTES = 64 * 1024 * 1024
# What a failed file's message says when the MySQL server could not be reached in time.
LOAD_AGAIN_HINT = "the file was not loaded; load again once the MySQL server is back (files already loaded are skipped)"


def wanted(location: str, kinds: Collection[FileKind] = DEFAULT_KINDS) -> tuple[bool, str]:
    """Whether a file is one to load, and if not, why (digest, Insight, not a .json.gz ...)."""
    kind = classify(location)
    if kind in kinds:
        return True, ""
    if kind is FileKind.OTHER:
        return False, "not a CloudTrail log file (by its name and folder)"
    return False, f"{kind.value} file"


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


# -- prepare ---------------------------------------------------------------------------------------
@dataclass
class PreparedFile:
    """A file ready for its transaction: its source (with, for a local file, the MD5 of its content as
    ETag), its bytes and, when parsed ahead for LOAD DATA, its rows as TSV. ``close`` when done."""

    source: SourceFile
    data: bytes
    tsv: TsvRows | None = None

    def close(self) -> None:
        if self.tsv is not None:
            self.tsv.close()


def prepare_file(source: SourceFile, fetch: Callable[[SourceFile], bytes], builder: RowBuilder | None = None) -> PreparedFile:
    """Fetch a file and, given a ``builder``, parse it and write its rows as LOAD DATA text: the part
    of loading that needs no connection, so it can run ahead of the file's turn."""
    data = fetch(source)
    if source.etag is None:
        # Known by its content only once fetched (local files): its MD5, which is also the ETag
        # S3 gives a file uploaded whole, so a changed file of the same size is seen.
        source = replace(source, etag=hashlib.md5(data, usedforsecurity=False).hexdigest())
    prepared = PreparedFile(source, data)
    if builder is not None:
        prepared.tsv = TsvRows(builder, read_records(data, source.location, builder.limits), source.location)
    return prepared


@dataclass(eq=False)
class _Job:
    """A file to commit: ``new`` if the manifest had no row for it; ``compare`` if it had rows but
    the file has no ETag yet (a local file): then its MD5, once fetched, is compared with them."""

    source: SourceFile
    new: bool
    compare: bool
    parse_ahead: bool
    snapshot: ManifestSnapshot
    result: Future[FileResult]


class _PrepareStage:
    """``prepare_file`` for the jobs, in order, on a bounded pool ahead of the commit stage: at most
    ``files`` ahead (and about PREPARE_AHEAD_BYTES by listed sizes), at most ``parsers`` parsing at
    once. A job not prepared ahead (``files`` 0) is prepared when the commit stage takes it."""

    def __init__(
        self, jobs: Sequence[_Job], fetch: Callable[[SourceFile], bytes], builder: RowBuilder | None, files: int,
        parsers: int, use_tsv: Callable[[], bool] = lambda: True,
    ) -> None:
        self._fetch = fetch
        self._builder = builder
        self._use_tsv = use_tsv
        self._files = files
        self._parse_slots = threading.BoundedSemaphore(max(1, parsers))
        self._upcoming: deque[_Job] = deque(jobs if files > 0 else ())
        self._pending: dict[int, tuple[Future[PreparedFile], int]] = {}
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(files, thread_name_prefix="cloudtrail-prepare") if files > 0 else None
        with self._lock:
            self._top_up()

    def _top_up(self) -> None:
        while self._pool is not None and self._upcoming and len(self._pending) < self._files and (
            not self._pending or self._pending_bytes < PREPARE_AHEAD_BYTES
        ):
            job = self._upcoming.popleft()
            size = job.source.size or 0
            self._pending[id(job)] = (self._pool.submit(self._prepare, job), size)
            self._pending_bytes += size

    def _prepare(self, job: _Job) -> PreparedFile:
        if self._builder is None or not job.parse_ahead or not self._use_tsv():
            return prepare_file(job.source, self._fetch)
        data = self._fetch(job.source)  # many fetches at once: each waits for S3, not for the GIL
        with self._parse_slots:
            return prepare_file(job.source, lambda _: data, self._builder)

    def take(self, job: _Job) -> PreparedFile:
        """The job's prepared file: prepared ahead, else now (fetched only: parsed in its transaction)."""
        with self._lock:
            ahead = self._pending.pop(id(job), None)
            if ahead is not None:
                self._pending_bytes -= ahead[1]
                self._top_up()
            elif self._upcoming:
                try:  # more connections than files ahead: its turn came first, prepared here, not twice
                    self._upcoming.remove(job)
                except ValueError:
                    pass
        if ahead is None:
            return prepare_file(job.source, self._fetch)
        return ahead[0].result()

    def close(self) -> None:
        """Stop what is still pending; what was prepared and never taken is closed."""
        with self._lock:
            self._upcoming.clear()
            pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.cancel():
                future.add_done_callback(_close_prepared)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _close_prepared(future: Future[PreparedFile]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


# -- the pipeline ----------------------------------------------------------------------------------
def load_files(
    sources: Sequence[SourceFile],
    fetch: Callable[[SourceFile], bytes],
    writers: Sequence[MySqlWriter],
    kinds: Collection[FileKind] = DEFAULT_KINDS,
    check_manifest: bool = True,
    read_ahead: int = 0,
    parse_ahead: bool = True,
) -> Iterator[FileResult]:
    """Each file's result, in the order of ``sources``: prepared ahead, committed one thread per writer
    (each with its own connection).

    Parsing holds the GIL but MySQL's work does not, so the server and the parser overlap. With
    ``parse_ahead``, each file to load is parsed and written as LOAD DATA text ahead of its turn,
    one per writer, while the writers' connections load earlier files: worth a core of its own (a
    remote server, or fewer workers than cores), a few per cent of CPU lost where the server
    already has every core busy; off, each file is parsed in its transaction. ``read_ahead``: files
    fetched ahead of their turn (for S3). Without ``check_manifest`` every file is taken as new.
    A ``MySqlSetupError`` stops the rest.
    """
    with _no_cyclic_gc():
        loadable = [source for source in sources if wanted(source.location, kinds)[0]]
        snapshot = _snapshot(writers[0], loadable) if check_manifest and loadable else ManifestSnapshot()
        planned = _plan(sources, kinds, snapshot, parse_ahead)
        jobs = [entry for entry in planned if isinstance(entry, _Job)]
        builder = _tsv_builder(writers[0]) if parse_ahead and jobs else None
        parsers = len(writers) if builder is not None else 0
        prepare = _PrepareStage(
            jobs, fetch, builder, max(read_ahead, parsers) if jobs else 0, parsers,
            use_tsv=lambda: writers[0].method != "insert",  # not once auto has fallen back to INSERTs
        )

        def commit(job: _Job, writer: MySqlWriter) -> FileResult:
            return _commit(job, writer, prepare.take, ATTEMPTS)

        try:
            committing = _commit_stage(jobs, writers, commit)
            try:
                for entry in planned:
                    if isinstance(entry, _Job):
                        next(committing)  # committed in order: this job's result is set
                        yield entry.result.result()
                    else:
                        yield entry
            finally:
                committing.close()
        finally:
            prepare.close()
            for writer in writers:
                if writer.unrecorded_failures:
                    if writer.unreachable_since is not None:
                        _reconnect(writer)
                    _record_unrecorded(writer)


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
        snapshot = _snapshot(writer, [source]) if check_manifest and wanted(source.location, kinds)[0] else ManifestSnapshot()
        (entry,) = _plan([source], kinds, snapshot, parse_ahead=False)
        if not isinstance(entry, _Job):
            return entry
        return _commit(entry, writer, lambda job: prepare_file(job.source, fetch), attempts)


def _plan(
    sources: Sequence[SourceFile], kinds: Collection[FileKind], snapshot: ManifestSnapshot, parse_ahead: bool
) -> list[_Job | FileResult]:
    """Each source's result known before it is fetched (skipped, already loaded), or its job."""
    planned: list[_Job | FileResult] = []
    for source in sources:
        is_wanted, why = wanted(source.location, kinds)
        if not is_wanted:
            planned.append(FileResult(source.location, "skipped", detail=why))
        elif snapshot.is_loaded(source):
            planned.append(FileResult(source.location, "already_loaded", detail="in the manifest"))
        else:
            compare = source.etag is None and not snapshot.is_new(source)
            # A file that may turn out loaded once its MD5 is known is not parsed before it is.
            planned.append(_Job(source, snapshot.is_new(source), compare, parse_ahead and not compare, snapshot, Future()))
    return planned


def _snapshot(writer: MySqlWriter, sources: Sequence[SourceFile]) -> ManifestSnapshot:
    """The manifest's rows for ``sources``; with the server lost, once more after reconnecting, else
    nothing known (each file's claim then decides, with its own retries)."""
    for attempt in (1, 2):
        try:
            with at_mysql():
                return writer.manifest.snapshot(writer.conn, sources)
        except ConnectionLost as exc:
            log.warning("reading the manifest: %s", describe_mysql_error(exc))
            answers, _ = _wait_for_server(writer)
            if not answers or attempt == 2:
                log.warning("the manifest could not be read; each file's claim decides whether it is loaded")
                return ManifestSnapshot(complete=False)
    raise AssertionError("unreachable")


def _tsv_builder(writer: MySqlWriter) -> RowBuilder | None:
    """The table's row builder, for writing files as TSV ahead of their turn (None for INSERTs,
    or if the table cannot be read now: each file then says why when its turn comes)."""
    if writer.method == "insert":
        return None
    try:
        return writer.builder  # the table's columns are read here, not in the threads
    except Exception:  # noqa: BLE001 - reported file by file by the writer itself
        return None


def _commit_stage(
    jobs: Sequence[_Job], writers: Sequence[MySqlWriter], commit: Callable[[_Job, MySqlWriter], FileResult]
) -> Generator[None, None, None]:
    """Commit the jobs in order, one thread per writer, setting each job's result; yields once per job,
    when the next job in order has its result. After an exception no new job is started."""
    if len(writers) <= 1 or len(jobs) <= 1:
        for job in jobs:
            try:
                job.result.set_result(commit(job, writers[0]))
            except BaseException as exc:
                job.result.set_exception(exc)
            yield
        return
    upcoming = deque(jobs)
    stop = threading.Event()

    def committer(writer: MySqlWriter) -> None:
        while not stop.is_set():
            try:
                job = upcoming.popleft()
            except IndexError:
                return
            try:
                job.result.set_result(commit(job, writer))
            except BaseException as exc:  # noqa: BLE001 - raised to the caller in the job's turn
                stop.set()
                job.result.set_exception(exc)

    threads = [
        threading.Thread(target=committer, args=(writer,), name=f"cloudtrail-commit-{n}", daemon=True)
        for n, writer in enumerate(writers[: len(jobs)])
    ]
    for thread in threads:
        thread.start()
    try:
        for job in jobs:
            job.result.exception()  # waits for it
            yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()


# -- commit one file -------------------------------------------------------------------------------
def _commit(job: _Job, writer: MySqlWriter, take: Callable[[_Job], PreparedFile], attempts: int) -> FileResult:
    """One file's transaction with its retries; a bad file is returned as failed, a refusal raised."""
    source = job.source
    started = time.monotonic()
    prepared: PreparedFile | None = None
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
                if prepared is None:
                    prepared = take(job)
                    source = prepared.source
                if job.compare and _same_as_snapshot(job, source, writer):
                    result = FileResult(source.location, "already_loaded", detail="in the manifest")
                elif prepared.tsv is not None:
                    result = writer.load(
                        source, RecordsOnDemand(prepared.data, source.location, writer.limits), prepared.tsv, new=job.new
                    )
                else:
                    if records is None:
                        records = read_records(prepared.data, source.location, writer.limits)
                    result = writer.load(source, records, new=job.new)
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
            except MySqlSetupError:
                raise
            except StatementTooLarge as exc:
                return _failed(writer, source, (
                    f"{source.location}: {describe_mysql_error(exc)}; raise max_allowed_packet on the server, "
                    f"or lower the largest record loaded ({Limits.RECORD_HINT})"
                ), started)
            except ConnectionLost as exc:
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
            except TransientMySqlError as exc:
                if attempt < attempts:
                    log.warning("%s: %s; loading it again (%d/%d)", source.location, exc, attempt, attempts - 1)
                    time.sleep(min(0.2 * 2**attempt, 5.0))
                    continue
                return _failed(writer, source, _unexpected(source, exc), started)
            except Exception as exc:  # noqa: BLE001 - fetching (S3, disk) or anything unforeseen: the file fails
                refusal = setup_error(exc)
                if refusal is not None:
                    raise refusal from None
                return _failed(writer, source, _unexpected(source, exc), started)
        raise AssertionError("unreachable")
    finally:
        if prepared is not None:
            prepared.close()


def _same_as_snapshot(job: _Job, source: SourceFile, writer: MySqlWriter) -> bool:
    """Whether a local file, now known by its MD5, is loaded with this content: by the manifest's rows
    as read at the start, or, if they could not be read, by asking the manifest now."""
    if job.snapshot.complete:
        return job.snapshot.is_loaded(source)
    with at_mysql():
        return bool(writer.loaded([source]))


def _unexpected(source: SourceFile, exc: BaseException) -> str:
    """A failure no branch above explains: the driver's or the fetch's own words."""
    cause = exc.cause if isinstance(exc, MySqlError) else exc
    return f"{source.location}: {type(cause).__name__}: {cause}"


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
