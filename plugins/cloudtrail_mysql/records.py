"""CloudTrail log files (bytes) into rows of the logs table.

Plain Python, no Airflow and no database: the command-line loader and the Airflow operator both
call this, and tests can run it alone. What columns exist, and how wide they are, is read from
the table itself (see ``table.LogsTable.columns``), so the SQL schema stays the one source of truth.
"""

from __future__ import annotations

import io
import json
import os
import re
import types
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import islice
from operator import itemgetter
from typing import Any

import orjson

from cloudtrail_mysql.layout import FileKind, classify, delivery_day, file_identity

# ISA-L's inflate, about twice as fast as zlib's (docs/performance.md, Loader CPU); zlib where it has no wheel.
_inflating: types.ModuleType
try:
    from isal import isal_zlib

    _inflating = isal_zlib
except ImportError:  # pragma: no cover - the pinned wheel exists for every platform Airflow runs on
    _inflating = zlib
_GZIP_ERRORS: tuple[type[Exception], ...] = tuple({zlib.error, _inflating.error})
_STREAM_ERRORS: tuple[type[Exception], ...] = (OSError, *_GZIP_ERRORS)

__all__ = [
    "CloudTrailFileError",
    "Column",
    "DigestFile",
    "FileKind",
    "Limits",
    "RowBuilder",
    "SPECIAL_COLUMNS",
    "classify",
    "delivery_day",
    "file_identity",
    "StreamedRecords",
    "read_records",
]


class CloudTrailFileError(ValueError):
    """A file that cannot be read as a CloudTrail log file; the message names the file."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class DigestFile(CloudTrailFileError):
    """A CloudTrail digest file (integrity hashes, no events): skipped, never loaded."""


MiB = 1024 * 1024
GiB = 1024 * MiB


def parse_size(text: str | int) -> int:
    """A size in bytes from '1048576', '512K', '1M', '1GiB' (binary multiples); > 0."""
    if isinstance(text, int):
        size = text
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
        if not match:
            raise ValueError(f"not a size: {text!r} (give bytes, or a number with K, M or G)")
        size = int(match.group(1)) * {"": 1, "K": 1024, "M": MiB, "G": GiB}[match.group(2).upper()]
    if size < 1:
        raise ValueError(f"a size must be at least 1 byte, not {text!r}")
    return size


@dataclass(frozen=True)
class Limits:
    """What one file may cost, checked while it is read: a file over a limit fails, named, saying
    which limit and how to raise it. CloudTrail's own files are far below both (its events are at
    most 256 KB; its files a few MB of JSON).

    ``max_file_bytes``: JSON bytes a file may inflate to (a gzip bomb stops there, in bounded memory).
    ``max_record_bytes``: bytes of one record, as JSON and as the row sent to MySQL.
    """

    max_file_bytes: int = GiB
    max_record_bytes: int = MiB

    FILE_HINT = "--max-file-bytes, the operator's max_file_bytes or CLOUDTRAIL_MYSQL_MAX_FILE_BYTES"
    RECORD_HINT = "--max-record-bytes, the operator's max_record_bytes or CLOUDTRAIL_MYSQL_MAX_RECORD_BYTES"

    @classmethod
    def from_env(cls, max_file_bytes: int | str | None = None, max_record_bytes: int | str | None = None) -> Limits:
        """The limits given, else from CLOUDTRAIL_MYSQL_MAX_FILE_BYTES / _MAX_RECORD_BYTES, else the defaults."""
        file_bytes = max_file_bytes or os.environ.get("CLOUDTRAIL_MYSQL_MAX_FILE_BYTES") or cls.max_file_bytes
        record_bytes = max_record_bytes or os.environ.get("CLOUDTRAIL_MYSQL_MAX_RECORD_BYTES") or cls.max_record_bytes
        return cls(parse_size(file_bytes), parse_size(record_bytes))


def _size(n: int) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n} bytes"


# Arrays and objects nested deeper than this within a record cannot be written back as JSON
# (orjson's encoder stops there), so such a record fails its file.
MAX_DEPTH = 254
_TOO_DEEP = f"JSON nested too deep (more than {MAX_DEPTH} levels of arrays and objects)"
_NOT_JSON_CONSTANT = "not valid JSON: NaN, Infinity and -Infinity are not JSON numbers"

# Above this many bytes of JSON a file is streamed record by record (ijson) instead of parsed
# whole (orjson), so that memory stays flat: CloudTrail allows files of 50 MB compressed.
STREAM_ABOVE_BYTES = 64 * 1024 * 1024
_RECORDS_START = re.compile(rb'^\s*\{\s*"Records"\s*:\s*\[')
_GZIP_MAGIC = b"\x1f\x8b"
# Inflated in steps of this much, so that a bomb is stopped within a step of its limit.
_STEP = 8 * 1024 * 1024
_HEAD = 64 * 1024


def _json_size(data: bytes) -> int:
    """Bytes of JSON in a file: gzip's trailer tells it without decompressing (modulo 4 GiB; a
    hint only, a hostile file may lie)."""
    if data[:2] == _GZIP_MAGIC and len(data) >= 18:
        return int.from_bytes(data[-4:], "little")
    return len(data)


def _not_an_object(head: bytes) -> str | None:
    """Why JSON beginning with ``head`` cannot be a CloudTrail log file, if it clearly cannot."""
    first = head.lstrip()[:1]
    if first == b"{" or not first:
        return None
    kinds = {b"[": "a list", b'"': "a string", b"t": "a boolean", b"f": "a boolean", b"n": "null"}
    if first in kinds:
        return f"not a CloudTrail log file (top-level JSON is {kinds[first]}, not an object)"
    if first in b"-0123456789":
        return "not a CloudTrail log file (top-level JSON is a number, not an object)"
    return f"not JSON (it begins with {bytes(head.lstrip()[:16])!r})"


class _Gunzip:
    """gzip inflated step by step, never more than ``limit`` bytes, saying in words what is wrong
    with a broken stream (truncated, corrupt, trailing data)."""

    def __init__(self, data: bytes, source: str) -> None:
        self._source = source
        self._inflater = _inflating.decompressobj(31)
        self._pending: bytes = data
        self.done = False

    def read(self, room: int) -> bytes:
        """Up to ``room`` more bytes (b'' at the end)."""
        while not self.done:
            try:
                chunk = self._inflater.decompress(self._pending, room)
            except _GZIP_ERRORS as exc:
                raise CloudTrailFileError(self._source, f"corrupt gzip ({exc})") from None
            self._pending = self._inflater.unconsumed_tail
            if self._inflater.eof:
                rest = self._inflater.unused_data
                if rest[:2] == _GZIP_MAGIC:  # another gzip member: concatenated gzip is still gzip
                    self._inflater, self._pending = _inflating.decompressobj(31), rest
                elif rest:
                    raise CloudTrailFileError(
                        self._source, f"gzip followed by {len(rest)} bytes of trailing data that are not gzip"
                    )
                else:
                    self.done = True
            elif not chunk and not self._pending:
                raise CloudTrailFileError(self._source, "truncated gzip (the compressed data ends early)")
            if chunk:
                return chunk
        return b""


def _inflate(data: bytes, source: str, limit: int) -> bytearray | None:
    """The JSON of a gzip file, or None when it is more than ``limit`` bytes (read it as a stream).

    A file that clearly is no CloudTrail log file (zeros, a list, whitespace) fails within its
    first 64 KiB, whatever it inflates to.
    """
    gunzip = _Gunzip(data, source)
    hint = _json_size(data)
    out = bytearray()
    size = 0
    checked = False
    while True:
        chunk = gunzip.read(min(_STEP, limit + 1 - size) if checked else _HEAD)
        if not chunk:
            del out[size:]
            return out
        if size + len(chunk) > limit:
            return None  # too large to hold whole: read it as a stream
        if size + len(chunk) <= len(out):
            out[size : size + len(chunk)] = chunk
        else:
            del out[size:]
            out += chunk
        size += len(chunk)
        if not checked and (size >= _HEAD or gunzip.done):
            checked = True
            head = bytes(out[: min(size, _HEAD)])
            if size >= _HEAD and not head.strip():
                raise CloudTrailFileError(source, "not a CloudTrail log file (64 KiB of whitespace and no JSON)")
            if size >= _HEAD and (why := _not_an_object(head)):
                raise CloudTrailFileError(source, why)
            if size < hint <= limit:
                # The size gzip's trailer gives, allocated once now that the head is fine (no copy as it grows).
                whole = bytearray(hint)
                whole[:size] = out
                out = whole


def read_records(data: bytes, source: str, limits: Limits | None = None) -> Iterable[dict[str, Any]]:
    """The events of one CloudTrail log file (gzip or plain JSON), a list or, for a large file,
    a stream that can be iterated again (on a retry).

    Raises ``DigestFile`` for a digest file and ``CloudTrailFileError`` for anything that is
    not a readable CloudTrail log file or is over a limit (``Limits``), in both cases naming
    ``source``; a streamed file may raise ``CloudTrailFileError`` while it is iterated.
    """
    limits = limits or Limits.from_env()
    whole_limit = min(STREAM_ABOVE_BYTES, limits.max_file_bytes)
    if data[:2] == _GZIP_MAGIC:
        # gzip's trailer says how large the JSON is, but a hostile or broken file may lie: only the inflating tells.
        text = _inflate(data, source, whole_limit if _json_size(data) <= whole_limit else _HEAD)
        if text is not None and len(text) >= _HEAD and _json_size(data) > whole_limit:
            text = None  # its first 64 KiB are fine, and it is large: read it record by record
        if text is None:
            if limits.max_file_bytes <= STREAM_ABOVE_BYTES:
                raise _too_big(source, limits)
            head = _Gunzip(data, source).read(4096)
            if not _RECORDS_START.match(head):
                raise CloudTrailFileError(
                    source, _not_an_object(head) or "not a CloudTrail log file (more than 64 MiB of JSON that "
                    'does not begin with {"Records": [, so it cannot be read record by record)'
                )
            return StreamedRecords(data, source, limits)
        data = text  # type: ignore[assignment]  # a bytearray, not copied: every reader below takes it as bytes
    else:
        if data[:_HEAD].lstrip()[:1] not in (b"{", b"[", b"") and source.lower().endswith(".gz"):
            raise CloudTrailFileError(source, f"not a gzip file, and not valid JSON either (it begins with {bytes(data[:8])!r}, not gzip's 1f 8b)")
        if len(data) > limits.max_file_bytes:
            raise _too_big(source, limits)
        if len(data) > STREAM_ABOVE_BYTES and _RECORDS_START.match(data[:4096]):
            return StreamedRecords(data, source, limits)
    if not data[:_HEAD].strip() and not data.strip():
        raise CloudTrailFileError(source, "empty file")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise CloudTrailFileError(source, _TOO_DEEP) from None
        try:
            document = _loads_leniently(data, source, exc)
        except CloudTrailFileError as error:
            if data[:2] == _GZIP_MAGIC or not source.lower().endswith(".gz"):
                raise
            # Named .gz, not gzip, and not JSON either, though it begins like JSON: say both.
            raise CloudTrailFileError(source, f"not a gzip file, and {error.reason}") from None
    else:
        try:
            possible = _duplicate_keys_possible(data, document)
        except orjson.JSONEncodeError as exc:  # deeper than orjson writes (it reads deeper than it writes)
            if "Recursion" in str(exc):
                raise CloudTrailFileError(source, _TOO_DEEP) from None
            possible = True  # e.g. a lone surrogate escape: the exact check decides
        if possible:
            _refuse_duplicate_keys(json.loads(data, object_pairs_hook=_KeyPairs()), source)
    if not isinstance(document, dict):
        raise CloudTrailFileError(
            source, f"not a CloudTrail log file (top-level JSON is {_json_type(document)}, not an object)"
        )
    records = document.get("Records")
    if records is None:
        if "digestEndTime" in document or "logFiles" in document:
            raise DigestFile(source, "CloudTrail digest file, skipped")
        raise CloudTrailFileError(source, "not a CloudTrail log file (no 'Records' key)")
    if not isinstance(records, list):
        raise CloudTrailFileError(source, f"'Records' is {_json_type(records)}, not a list")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise CloudTrailFileError(
                source, f"record {index} is {_json_type(record)}, not an object"
            )
    return records


def _too_big(source: str, limits: Limits) -> CloudTrailFileError:
    return CloudTrailFileError(
        source, f"inflates to more than {_size(limits.max_file_bytes)} of JSON, the limit per file "
        f"(raise it with {Limits.FILE_HINT})",
    )


def _too_big_record(source: str, index: int, limit: int, reason: str = "") -> CloudTrailFileError:
    return CloudTrailFileError(
        source, f"record {index} is larger than {_size(limit)}, the limit per record "
        f"({reason or 'raise it with ' + Limits.RECORD_HINT})",
    )


class _StreamReader:
    """The file's JSON for ijson, read by read(n), stopping at the file's and the record's limit."""

    def __init__(self, data: bytes, source: str, limits: Limits) -> None:
        self._gunzip = _Gunzip(data, source) if data[:2] == _GZIP_MAGIC else None
        self._plain = io.BytesIO(data)
        self._source = source
        self._limits = limits
        self.total = 0
        self.mark = 0  # bytes read when the last record was complete
        self.index = 0  # the record being read

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        size = 64 * 1024 if size < 0 else size
        chunk = self._gunzip.read(size) if self._gunzip is not None else self._plain.read(size)
        self.total += len(chunk)
        if self.total > self._limits.max_file_bytes:
            raise _too_big(self._source, self._limits)
        # ijson reads ahead by at most a buffer of 64 KiB: a record that has not ended by then is too large.
        if self.total - self.mark > self._limits.max_record_bytes + 2 * size:
            raise _too_big_record(self._source, self.index, self._limits.max_record_bytes)
        return chunk


class StreamedRecords:
    """The records of a large file, parsed one at a time as they are iterated (bounded memory)."""

    def __init__(self, data: bytes, source: str, limits: Limits | None = None) -> None:
        self.data = data
        self.source = source
        self.limits = limits or Limits.from_env()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import ijson

        reader = _StreamReader(self.data, self.source, self.limits)
        stream = _ColonCounter(reader)
        kept = 1  # the colons of what was parsed: the "Records" key's, then each record's (see _duplicate_keys_possible)
        try:
            for index, record in enumerate(ijson.items(stream, "Records.item", use_float=True)):
                reader.mark, reader.index = reader.total, index + 1
                if not isinstance(record, dict):
                    raise CloudTrailFileError(self.source, f"record {index} is {_json_type(record)}, not an object")
                try:
                    kept += orjson.dumps(record).count(b":")
                except orjson.JSONEncodeError as exc:
                    if "Recursion" in str(exc):
                        raise CloudTrailFileError(self.source, f"record {index}: {_TOO_DEEP}") from None
                    # a lone surrogate escape (\ud800): as the whole-file path reads it
                    record = _replace_surrogates(record)
                    stream.unsure = True  # its colons are not counted: checked exactly below
                yield record
            if stream.unsure or stream.colons != kept:
                _refuse_duplicate_keys_streamed(_StreamReader(self.data, self.source, self.limits), self.source)
        except EOFError as exc:
            raise CloudTrailFileError(self.source, f"truncated gzip ({exc})") from exc
        except _STREAM_ERRORS as exc:
            raise CloudTrailFileError(self.source, f"corrupt gzip ({exc})") from exc
        except ijson.JSONError as exc:
            raise CloudTrailFileError(self.source, f"not valid JSON ({exc})") from exc


class _ColonCounter:
    """A file object that counts the colons read through it, and notes a \\u003a escape, for the
    duplicate-key test of a streamed file (``_duplicate_keys_possible`` explains it)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.colons = 0
        self.unsure = False
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.colons += chunk.count(b":")
        if not self.unsure:
            self.unsure = b"\\u003" in self._tail + chunk
            self._tail = chunk[-5:]
        return chunk


def _refuse_duplicate_keys_streamed(stream: Any, source: str) -> None:
    """``_refuse_duplicate_keys`` for a file too large to parse whole: the keys of each open object
    are followed through ijson's events, in memory bounded by the file's nesting."""
    import ijson

    open_objects: list[set[str]] = []
    record = -1
    for prefix, event, value in ijson.parse(stream, use_float=True):
        if event == "start_map":
            if prefix == "Records.item":
                record += 1
            open_objects.append(set())
        elif event == "end_map":
            open_objects.pop()
        elif event == "map_key":
            if value in open_objects[-1]:
                if len(open_objects) == 1:
                    where = f"the file has the key {value!r} twice"
                else:
                    nested = "" if prefix == "Records.item" else " in a nested object"
                    where = f"record {record} has the key {value!r} twice{nested}"
                raise CloudTrailFileError(
                    source, f"duplicate JSON key: {where}; JSON would keep only the last value, so the file is "
                    "refused rather than drop one (fix or replace the file, then load it again)",
                )
            open_objects[-1].add(value)


class RecordsOnDemand:
    """A file's records, parsed only when iterated: for a file whose rows were already written
    as TSV, which needs them again only if the server then refuses LOAD DATA."""

    def __init__(self, data: bytes, source: str, limits: Limits | None = None) -> None:
        self.data = data
        self.source = source
        self.limits = limits

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(read_records(self.data, self.source, self.limits))


def _loads_leniently(data: bytes, source: str, error: Exception) -> Any:
    """Valid JSON that orjson refuses: invalid UTF-8 bytes or lone surrogate escapes (\\ud800).

    Python's json reads it; what is not Unicode becomes U+FFFD, so every event is kept.
    """
    pairs = _KeyPairs()
    try:
        document = json.loads(
            data.decode("utf-8", errors="replace"), parse_float=_finite_float, parse_constant=_no_constant,
            object_pairs_hook=pairs,
        )
    except _NumberOutOfRange as exc:
        raise CloudTrailFileError(source, f"a number too large to store: {exc}") from None
    except _NotJsonConstant:
        raise CloudTrailFileError(source, _NOT_JSON_CONSTANT) from None
    except RecursionError:
        raise CloudTrailFileError(source, _TOO_DEEP) from None
    except ValueError:
        raise CloudTrailFileError(source, f"not valid JSON ({error})") from error
    if pairs.duplicated:
        _refuse_duplicate_keys(document, source)
    return _replace_surrogates(document)


def _duplicate_keys_possible(data: bytes, document: Any) -> bool:
    """Whether the JSON text may hold a key twice in one object (orjson keeps the last value only).

    Cheap, for every file. orjson's compact re-serialisation of the parsed document is the text
    itself for compact JSON such as CloudTrail writes: then nothing was dropped. Otherwise every key
    ends with a colon, and colons inside strings come back as they were (but for a \\u003a escape),
    while whitespace, number forms and other escapes hold none: the text has more colons exactly
    when a key was dropped.
    """
    again = orjson.dumps(document)
    if again == data or (len(again) < len(data) and again == data.strip()):
        return False
    return b"\\u003" in data or data.count(b":") != again.count(b":")


class _KeyPairs:
    """``object_pairs_hook`` for json.loads: builds dicts, marking one that had a key twice."""

    def __init__(self) -> None:
        self.duplicated = False

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        built = dict(pairs)
        if len(built) == len(pairs):
            return built
        self.duplicated = True
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        return _Duplicated(built, key)


class _Duplicated(dict):  # type: ignore[type-arg]
    """A JSON object that held ``key`` more than once."""

    def __init__(self, built: dict[str, Any], key: str) -> None:
        super().__init__(built)
        self.key = key


def _first_duplicate(value: Any) -> str | None:
    if isinstance(value, _Duplicated):
        return value.key
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        found = _first_duplicate(child)
        if found is not None:
            return found
    return None


def _refuse_duplicate_keys(document: Any, source: str) -> None:
    """Fail the file, saying where, if any of its JSON objects has a key twice (parsed with ``_KeyPairs``)."""
    where = ""
    if isinstance(document, _Duplicated):
        where = f"the file has the key {document.key!r} twice"
    elif isinstance(document, dict) and isinstance(document.get("Records"), list):
        for index, record in enumerate(document["Records"]):
            key = _first_duplicate(record)
            if key is not None:
                nested = "" if isinstance(record, _Duplicated) else " in a nested object"
                where = f"record {index} has the key {key!r} twice{nested}"
                break
    if not where:
        key = _first_duplicate(document)
        if key is None:
            return
        where = f"the key {key!r} appears twice in one object"
    raise CloudTrailFileError(
        source, f"duplicate JSON key: {where}; JSON would keep only the last value, so the file is refused rather "
        "than drop one (fix or replace the file, then load it again)",
    )


class _NumberOutOfRange(ValueError):
    pass


class _NotJsonConstant(ValueError):
    pass


def _no_constant(text: str) -> Any:
    """NaN and Infinity, which Python's json reads but JSON does not have."""
    raise _NotJsonConstant(text)


def _finite_float(text: str) -> float:
    """A JSON number as a float, refusing one beyond a double's range (1e400) rather than
    storing it as infinity, which JSON cannot write."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NumberOutOfRange(text[:40])
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(value: Any) -> Any:
    """The value with each lone surrogate (a code point JSON escapes allow but Unicode text cannot
    hold) replaced by one U+FFFD."""
    return orjson.loads(_SURROGATE.sub("\ufffd", json.dumps(value, ensure_ascii=False)))


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null"


@dataclass(frozen=True)
class Column:
    """A column of the logs table as the database describes it.

    kind is 'text', 'bool', 'datetime', 'date' or 'int'; max_chars bounds VARCHAR columns (characters),
    max_bytes bounds TEXT columns (bytes of UTF-8).
    """

    name: str
    kind: str
    max_chars: int | None = None
    max_bytes: int | None = None


# Columns the loader fills itself; every other column is the CloudTrail field of the same name.
SPECIAL_COLUMNS = frozenset(
    {"eventTimestamp", "principal", "sourceKey", "sourceFileId", "recordIndex", "deliveryDay", "extraFields"}
)
# Files outside CloudTrail's dated layout are stored with this deliveryDay (the p_undated partition).
UNDATED_DAY = date(1970, 1, 1)
_MISSING = object()


def _principal(identity: Any, limit: int | None) -> str | None:
    """Who made the call, for summaries and findings: userIdentity.arn, else .invokedBy (an AWS
    service), else .type; a userIdentity that is not an object, as text. Cut to the column."""
    if identity is None:
        return None
    if type(identity) is dict:
        value = identity.get("arn")
        if value is None:
            value = identity.get("invokedBy")
            if value is None:
                value = identity.get("type")
                if value is None:
                    return None
    else:
        value = identity
    text = value if type(value) is str else orjson.dumps(value).decode() if isinstance(value, (dict, list)) else (
        ("true" if value else "false") if isinstance(value, bool) else str(value)
    )
    return text if limit is None or len(text) <= limit else text[:limit]


def _event_timestamp(value: Any) -> datetime | None:
    """eventTime as a naive UTC datetime for the typed column, or None when it is not a time."""
    if type(value) is not str or len(value) < 19:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None
    if moment.year < 1000:
        return None
    return moment.replace(microsecond=0)


_fromisoformat = datetime.fromisoformat


def _event_time_text(value: Any) -> str | None:
    """eventTimestamp as LOAD DATA text: CloudTrail's own form (2017-04-10T12:34:56Z) checked and
    rewritten without building a datetime; anything else through ``_event_timestamp``."""
    if (
        type(value) is str and len(value) == 20 and value[19] == "Z" and value[10] == "T"
        and value[4] == "-" and value[7] == "-" and value[13] == ":" and value[16] == ":" and value[0] != "0"
    ):
        try:
            _fromisoformat(value[:19])
        except ValueError:
            return None
        return f"{value[:10]} {value[11:19]}"
    moment = _event_timestamp(value)
    return None if moment is None else str(moment)


class RowBuilder:
    """Turns CloudTrail records into tuples for the table's columns, in the table's order.

    Nothing is dropped silently: a top-level field without a column, a value that does not fit
    its column's type, and the whole of a value too long for its column (which keeps a
    truncated copy) go into ``extraFields`` as JSON, under the field's name.
    """

    def __init__(self, columns: Sequence[Column], max_row_bytes: int = MiB, row_limit_reason: str = "") -> None:
        # A row over max_row_bytes fails its file (row_limit_reason: what sets the limit, if not the option).
        self.max_row_bytes = max_row_bytes
        self.row_limit_reason = row_limit_reason
        # The limits its files are read with (set by the table; prepare_file parses ahead with them).
        self.limits: Limits | None = None
        self.columns = tuple(columns)
        self.column_names = tuple(column.name for column in self.columns)
        self._fields = frozenset(c.name for c in self.columns if c.name not in SPECIAL_COLUMNS)
        names = set(self.column_names)
        for required in ("sourceFileId", "recordIndex"):
            if required not in names:
                raise ValueError(f"the logs table has no column {required!r}")
        self._key_column = next((c for c in self.columns if c.name == "sourceKey"), None)
        self._row = _compile_row(self.columns, self._fields)
        self._tsv_row = _compile_row(self.columns, self._fields, tsv=True)
        # A row's size, cheaply: the values of its unbounded text columns (TEXT types, extraFields),
        # plus at most 4 bytes per character of every bounded (VARCHAR) one.
        large = [i for i, c in enumerate(self.columns) if c.kind == "text" and c.max_chars is None]
        self._large_values = lambda row: [row[i] for i in large]
        if len(large) > 1:
            self._large_values = itemgetter(*large)
        self._bounded_bytes = sum(4 * c.max_chars for c in self.columns if c.max_chars is not None) + 64

    def rows(
        self, records: Iterable[dict[str, Any]], source_key: str, file_id: int, delivery_day: date | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Rows for one file's records, lazily, so a caller can stream them in batches."""
        location = source_key
        source_key, key_extra = self.fit_source_key(source_key)
        day = delivery_day or UNDATED_DAY
        build = self._row
        limit = self.max_row_bytes
        large_values, bounded = self._large_values, self._bounded_bytes
        for index, record in enumerate(records):
            try:
                row = build(record, index, file_id, source_key, key_extra, day)
            except (orjson.JSONEncodeError, _ValueTooLarge) as exc:
                raise self._unwritable(location, index, exc) from None
            if sum(map(len, filter(None, large_values(row)))) * 4 + bounded > limit:
                self._check_size(location, index, "\t".join(v for v in row if type(v) is str))
            yield row

    def _unwritable(self, source: str, index: int, exc: Exception) -> CloudTrailFileError:
        if isinstance(exc, _ValueTooLarge):
            if exc.size > self.max_row_bytes:
                return _too_big_record(source, index, self.max_row_bytes, self.row_limit_reason)
            return CloudTrailFileError(source, f"record {index}: {exc}")
        if "Recursion" in str(exc):
            return CloudTrailFileError(source, f"record {index}: {_TOO_DEEP}")
        return CloudTrailFileError(source, f"record {index} cannot be written as JSON ({exc})")

    def _check_size(self, source: str, index: int, line: str) -> None:
        """Fail the file if this row, in bytes of UTF-8, is over the limit (only called for long rows)."""
        if len(line.encode("utf-8", errors="surrogatepass")) > self.max_row_bytes:
            raise _too_big_record(source, index, self.max_row_bytes, self.row_limit_reason)

    @property
    def tsv_column_names(self) -> tuple[str, ...]:
        """The columns of a TSV line, in order: all but the per-file constants (``TSV_CONSTANTS``),
        which LOAD DATA sets once per file instead of the server parsing them on every row."""
        return tuple(name for name in self.column_names if name not in TSV_CONSTANTS)

    @property
    def has_source_key(self) -> bool:
        """Whether the table has the sourceKey column (tables this loader creates do)."""
        return self._key_column is not None

    @property
    def has_delivery_day(self) -> bool:
        """Whether the table has the deliveryDay column (its partitioning column)."""
        return "deliveryDay" in self.column_names

    def tsv_constants(self, file_id: int, source_key: str, delivery_day: date | None = None) -> tuple[Any, ...]:
        """The values LOAD DATA sets once for a file, in the order of its SET clause."""
        constants: tuple[Any, ...] = (file_id,)
        if self.has_source_key:
            constants += (self.fit_source_key(source_key)[0],)
        if self.has_delivery_day:
            constants += (delivery_day or UNDATED_DAY,)
        return constants

    def fit_source_key(self, source_key: str) -> tuple[str, dict[str, Any]]:
        """The file's location as its column takes it, and what goes to extraFields if it was cut."""
        key_extra: dict[str, Any] = {}
        if self._key_column is not None:
            source_key = _fit(self._key_column, source_key, key_extra)
        return source_key, key_extra

    def tsv_chunks(
        self, records: Iterable[dict[str, Any]], source_key: str, rows_per_chunk: int = 500
    ) -> Iterator[tuple[str, int]]:
        """The rows of ``records`` without the per-file constants, as LOAD DATA text (tab-separated,
        escaped, \\N for NULL), ``rows_per_chunk`` lines at a time: (text, number of lines)."""
        _, key_extra = self.fit_source_key(source_key)
        build = self._tsv_row
        iterator = iter(enumerate(records))
        limit_chars = self.max_row_bytes // 4  # a line of fewer characters cannot be over the limit in bytes
        while True:
            chunk = list(islice(iterator, rows_per_chunk))
            try:
                lines = [build(record, index, key_extra) for index, record in chunk]
            except (orjson.JSONEncodeError, _ValueTooLarge):
                for index, record in chunk:  # which record: the rare case, built again one by one
                    try:
                        build(record, index, key_extra)
                    except (orjson.JSONEncodeError, _ValueTooLarge) as exc:
                        raise self._unwritable(source_key, index, exc) from None
                raise
            if not lines:
                return
            if max(map(len, lines)) > limit_chars:
                for (index, _), line in zip(chunk, lines, strict=True):
                    if len(line) > limit_chars:
                        self._check_size(source_key, index, line)
            lines.append("")
            yield "\n".join(lines), len(lines) - 1

    def write_tsv(self, records: Iterable[dict[str, Any]], source_key: str, handle: Any) -> int:
        """Write the LOAD DATA text of ``records`` (``tsv_chunks``) to a text file; the number of rows."""
        count = 0
        for text, lines in self.tsv_chunks(records, source_key):
            handle.write(text)
            count += lines
        return count


# The per-file values a LOAD DATA statement sets once (SET column = value), not on every line.
TSV_CONSTANTS = frozenset({"sourceKey", "sourceFileId", "deliveryDay"})
# LOAD DATA's default format: fields end with a tab, lines with a newline, \N is NULL, and a
# backslash, tab, newline, CR or NUL inside a value is escaped.
_NULL = "\\N"
_TSV_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ("\x00", "\\0"))


def _escaped_line(values: tuple[str | None, ...]) -> str:
    """A TSV line whose values need escaping (the rare case: see ``_compile_row``)."""
    fields = []
    for value in values:
        if value is None:
            fields.append(_NULL)
            continue
        for char, escaped in _TSV_ESCAPES:
            if char in value:
                value = value.replace(char, escaped)
        fields.append(value)
    return "\t".join(fields)


def _compile_row(
    columns: Sequence[Column], fields: frozenset[str], tsv: bool = False
) -> Callable[..., Any]:
    """A function building one row, written out column by column for this table.

    Rows are built millions of times a day: unrolled, the common case (a string that fits, a
    boolean, a missing field) costs one type check, and only the rest goes through ``_convert``.

    With ``tsv`` it returns the row as one LOAD DATA line instead (without the per-file
    constants). Values are joined as they are, and the line is then checked to hold exactly one
    backslash per NULL, one tab per field boundary and no newline, CR or NUL: a few scans in C.
    Only a line that fails the check (a value holding one of those, which CloudTrail's JSON
    allows but rarely has) is built again with its values escaped.
    """
    if tsv:
        lines = ["def build_row(record, index, key_extra):"]
    else:
        lines = ["def build_row(record, index, file_id, source_key, key_extra, delivery_day):"]
    lines += ["    get = record.get", "    extra = {}"]
    values: list[str] = []
    nullable: list[str] = []  # TSV: the variables that may hold None
    extra_var = ""

    for i, column in enumerate(columns):
        name = column.name
        var = f"v{i}"
        if tsv and name in TSV_CONSTANTS:
            continue
        values.append(var)
        if name in fields:
            nullable.append(var)
            lines.append(f"    {var} = get({name!r})")
            if column.kind == "text":
                if column.max_chars is not None:
                    fits = f"len({var}) <= {column.max_chars}"
                elif column.max_bytes is not None:
                    fits = f"len({var}) * 4 <= {column.max_bytes}"
                else:
                    fits = "True"
                lines.append(f"    if {var} is not None and not (type({var}) is str and {fits}):")
                if column.max_bytes is not None:
                    # JSON objects and lists (userIdentity, requestParameters ...) as compact JSON text.
                    json_fits = f"len(j := dumps({var}).decode()) * 4 <= {column.max_bytes}"
                    lines.append(f"        if (type({var}) is dict or type({var}) is list) and {json_fits}:")
                    lines.append(f"            {var} = j")
                    lines.append("        else:")
                    lines.append(f"            {var} = convert(COLUMNS[{i}], {var}, extra)")
                else:
                    lines.append(f"        {var} = convert(COLUMNS[{i}], {var}, extra)")
            elif column.kind == "bool":
                if tsv:
                    lines.append(
                        f"    {var} = None if {var} is None else '1' if {var} is True else '0' if {var} is False "
                        f"else text(convert(COLUMNS[{i}], {var}, extra))"
                    )
                else:
                    lines.append(f"    if {var} is not None:")
                    lines.append(
                        f"        {var} = 1 if {var} is True else 0 if {var} is False else convert(COLUMNS[{i}], {var}, extra)"
                    )
            else:
                lines.append(f"    if {var} is not None:")
                lines.append(f"        {var} = {'text(' if tsv else '('}convert(COLUMNS[{i}], {var}, extra))")
        elif name == "eventTimestamp":
            nullable.append(var)
            lines.append(f"    {var} = {'event_time_text' if tsv else 'event_timestamp'}(get('eventTime'))")
        elif name == "principal":
            nullable.append(var)
            lines.append(f"    {var} = principal(get('userIdentity'), {column.max_chars})")
        elif name == "deliveryDay":
            lines.append(f"    {var} = delivery_day")
        elif name == "sourceKey":
            lines.append(f"    {var} = source_key")
        elif name == "sourceFileId":
            lines.append(f"    {var} = file_id")
        elif name == "recordIndex":
            lines.append(f"    {var} = {'str(index)' if tsv else 'index'}")
        else:  # extraFields, once every other value is known
            nullable.append(var)
            extra_var = var
    lines += [
        "    if key_extra:",
        "        extra.update(key_extra)",
        "    if not FIELDS.issuperset(record):",
        "        for key in record:",
        "            if key not in FIELDS:",
        "                extra[key] = record[key]",
    ]
    if extra_var:
        lines.append(f"    {extra_var} = dumps(extra).decode() if extra else None")
        extra_column = columns[int(extra_var[1:])]
        limit = extra_column.max_bytes or extra_column.max_chars
        if limit is not None:
            # What was cut must fit whole here, or the server would cut it silently (LOAD DATA warns only).
            lines.append(f"    if {extra_var} is not None and len({extra_var}) * 4 > {limit}:")
            lines.append(f"        check_extra(COLUMNS[{int(extra_var[1:])}], {extra_var})")
    if tsv:
        marked = ", ".join(f"NULL if {v} is None else {v}" if v in nullable else v for v in values)
        nulls = " + ".join(f"({v} is None)" for v in nullable) or "0"
        lines += [
            f"    line = '\\t'.join(({marked},))",
            f"    if line.count('\\\\') == {nulls} and line.count('\\t') == {len(values) - 1} "
            "and '\\n' not in line and '\\r' not in line and '\\x00' not in line:",
            "        return line",
            f"    return escaped_line(({', '.join(values)},))",
        ]
    else:
        lines.append(f"    return ({', '.join(values)},)")
    namespace: dict[str, Any] = {
        "COLUMNS": tuple(columns),
        "FIELDS": fields,
        "NULL": _NULL,
        "convert": _convert,
        "event_timestamp": _event_timestamp,
        "event_time_text": _event_time_text,
        "principal": _principal,
        "escaped_line": _escaped_line,
        "check_extra": _check_extra,
        "text": lambda value: None if value is None else str(value),
        "dumps": orjson.dumps,
    }
    exec(compile("\n".join(lines), "<cloudtrail_mysql row builder>", "exec"), namespace)  # noqa: S102
    return namespace["build_row"]


class _ValueTooLarge(ValueError):
    """A row that its table cannot hold whole (its extraFields is longer than that column)."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


def _check_extra(column: Column, text: str) -> None:
    if column.max_chars is not None:
        size, limit, unit = len(text), column.max_chars, "characters"
    else:
        size, limit, unit = len(text.encode("utf-8", errors="surrogatepass")), column.max_bytes or 0, "bytes"
    if size > limit:
        raise _ValueTooLarge(
            f"its values cut to their columns, kept whole in {column.name}, take {size} {unit}, "
            f"more than {column.name} holds ({limit})", size,
        )


def _convert(column: Column, value: Any, extra: dict[str, Any]) -> Any:
    kind = column.kind
    if kind == "text":
        if type(value) is str:
            text = value
        elif value is True or value is False:
            text = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            text = orjson.dumps(value).decode()
        else:
            text = str(value)
        return _fit(column, text, extra, original=value)
    if kind == "bool":
        if value is True or value is False:
            return int(value)
        extra[column.name] = value  # not exactly a JSON boolean: the original is kept as it was
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return int(value.strip().lower() == "true")
        return None
    if kind == "datetime":
        moment = _event_timestamp(value)
        if moment is None:
            extra[column.name] = value
        return moment
    if kind == "int" and type(value) is int:
        return value
    extra[column.name] = value
    return None


def _fit(column: Column, text: str, extra: dict[str, Any], original: Any = _MISSING) -> str:
    """The text, cut to the column's size if needed; a cut value is kept whole in extraFields."""
    limit = column.max_chars
    if limit is not None and len(text) > limit:
        extra[column.name] = text if original is _MISSING else original
        return text[:limit]
    limit = column.max_bytes
    if limit is not None and len(text) * 4 > limit:
        encoded = text.encode("utf-8", errors="surrogatepass")
        if len(encoded) > limit:
            extra[column.name] = text if original is _MISSING else original
            return encoded[:limit].decode("utf-8", errors="ignore")
    return text
