"""Load one CloudTrail file: decide whether to load it, read it, parse it, write it, note failures.

The command-line loader and the Airflow operator both call ``load_file``; only how bytes are
fetched (local disk, S3 through boto3 or S3Hook) differs between them.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Collection

from cloudtrail_mysql.records import CloudTrailFileError, DigestFile, FileKind, classify, read_records
from cloudtrail_mysql.writer import FileResult, MySqlWriter, SourceFile

__all__ = ["DEFAULT_KINDS", "load_file", "wanted"]

log = logging.getLogger(__name__)

DEFAULT_KINDS: frozenset[FileKind] = frozenset({FileKind.LOG})


def wanted(location: str, kinds: Collection[FileKind] = DEFAULT_KINDS) -> tuple[bool, str]:
    """Whether a file is one to load, and if not, why (digest, Insight, not a .json.gz ...)."""
    kind = classify(location)
    if kind in kinds:
        return True, ""
    if kind is FileKind.OTHER:
        return False, "not a CloudTrail .json.gz file"
    return False, f"{kind.value} file"


# Deadlock and lock-wait timeout: the transaction was rolled back whole, so loading again is safe.
TRANSIENT_MYSQL_ERRORS = frozenset({1205, 1213})
ATTEMPTS = 4


def _mysql_error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _load_with_retries(writer: MySqlWriter, source: SourceFile, records: list) -> FileResult:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return writer.load(source, records)
        except Exception as exc:
            if attempt == ATTEMPTS or _mysql_error_code(exc) not in TRANSIENT_MYSQL_ERRORS:
                raise
            log.warning("%s: %s, trying again (%d/%d)", source.location, exc, attempt, ATTEMPTS - 1)
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


def load_file(
    source: SourceFile,
    fetch: Callable[[SourceFile], bytes],
    writer: MySqlWriter,
    kinds: Collection[FileKind] = DEFAULT_KINDS,
    check_manifest: bool = True,
) -> FileResult:
    """Load one file whole or not at all; never raises for a bad file, returns its failure instead."""
    is_wanted, why = wanted(source.location, kinds)
    if not is_wanted:
        return FileResult(source.location, "skipped", detail=why)
    if check_manifest and writer.loaded([source]):
        return FileResult(source.location, "already_loaded", detail="in the manifest")
    started = time.monotonic()
    try:
        data = fetch(source)
        records = read_records(data, source.location)
        del data
        return _load_with_retries(writer, source, records)
    except DigestFile:
        return FileResult(source.location, "skipped", detail="CloudTrail digest file")
    except Exception as exc:  # noqa: BLE001 - every failure is reported with the file's name
        message = str(exc) if isinstance(exc, CloudTrailFileError) else f"{source.location}: {type(exc).__name__}: {exc}"
        log.error("failed: %s", message)
        try:
            writer.record_failure(source, message)
        except Exception as note_exc:  # noqa: BLE001 - the database may be the thing that failed
            log.warning("could not record the failure of %s: %s", source.location, note_exc)
        return FileResult(
            source.location, "failed", seconds=time.monotonic() - started, detail=message
        )
