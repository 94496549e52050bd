"""The manifest (``<table>_files``): one row per file, what the loader remembers of each.

Read once before a load (``Manifest.snapshot``) to tell the files already loaded from the others
without reading them; written inside each file's transaction (``claim``, ``add``, ``finish``), where
the claimed row is the authority on whether the file is loaded, whatever the snapshot said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudtrail_mysql import sql
from cloudtrail_mysql.files import SourceFile
from cloudtrail_mysql.mysql_errors import DUPLICATE_KEY, mysql_error_code
from cloudtrail_mysql.records import UNDATED_DAY
from cloudtrail_mysql.table import LOADER_SQL

__all__ = ["Manifest", "ManifestSnapshot", "same_content"]


def same_content(status: str, etag: Any, size: Any, source: SourceFile) -> bool:
    """Whether a manifest row (status, etag, size) says ``source`` is loaded with the same content."""
    if status != "loaded":
        return False
    if source.etag and etag:
        mine, known = source.etag.strip('"'), str(etag).strip('"')
        # A multipart upload's ETag (<hash>-<parts>) is not the MD5 of the content: then sizes decide.
        if mine != known and ("-" in mine) == ("-" in known):
            return False
    if source.size is not None and size is not None and int(size) != source.size:
        return False
    return True


@dataclass
class ManifestSnapshot:
    """What the manifest said of a load's files when it began. ``rows``: (status, etag, size) by file
    name hash; ``complete``: False if it could not be read (the server was lost), so nothing is known."""

    rows: dict[str, list[tuple[Any, Any, Any]]] = field(default_factory=dict)
    complete: bool = True

    def is_new(self, source: SourceFile) -> bool:
        """No row for the file: it is loaded by a plain insert of its row (``Manifest.add``)."""
        return self.complete and source.name_hash not in self.rows

    def is_loaded(self, source: SourceFile) -> bool:
        """A row says the file is loaded with the same content. A file without an ETag (a local file,
        known by its MD5 once read) is never loaded by this test until it has one."""
        return source.etag is not None and any(
            same_content(status, etag, size, source) for status, etag, size in self.rows.get(source.name_hash, ())
        )


class Manifest:
    """The manifest rows of a logs table, read and written on the connection each call is given."""

    def __init__(self, table: str) -> None:
        self.table = sql.validate_table_name(table)

    def snapshot(self, conn: Any, sources: Sequence[SourceFile], per_query: int = 500) -> ManifestSnapshot:
        """The rows of ``sources``, one query per ``per_query`` files."""
        hashes = list(dict.fromkeys(source.name_hash for source in sources))
        snapshot = ManifestSnapshot()
        if not hashes:
            return snapshot
        cursor = conn.cursor()
        try:
            for start in range(0, len(hashes), per_query):
                part = tuple(hashes[start : start + per_query])
                cursor.execute(sql.macro(LOADER_SQL, "find_files", self.table, len(part)), part)
                for name_hash, status, etag, size in cursor.fetchall():
                    snapshot.rows.setdefault(name_hash, []).append((status, etag, size))
        finally:
            cursor.close()
        conn.commit()
        return snapshot

    def loaded(self, conn: Any, sources: Sequence[SourceFile]) -> set[str]:
        """Locations among ``sources`` that are already loaded with the same content."""
        snapshot = self.snapshot(conn, sources)
        return {
            source.location
            for source in sources
            if any(same_content(status, etag, size, source) for status, etag, size in snapshot.rows.get(source.name_hash, ()))
        }

    def record_failure(self, conn: Any, source: SourceFile, error: str) -> None:
        """Note a file that could not be loaded, so that it can be seen and retried."""
        conn.rollback()
        cursor = conn.cursor()
        cursor.execute(sql.macro(LOADER_SQL, "record_failure", self.table), (*source.manifest_values, error[:60000]))
        cursor.close()
        conn.commit()

    def record_namesake(self, conn: Any, source: SourceFile, error: str) -> None:
        """Note a file refused because another file of its name is loaded: in a row of its own (by location)."""
        cursor = conn.cursor()
        try:
            cursor.execute(
                sql.macro(LOADER_SQL, "record_failure", self.table), (source.location_hash, *source.manifest_values[1:], error)
            )
            conn.commit()
        finally:
            cursor.close()

    # -- inside a file's transaction --------------------------------------------------------------
    def add(self, cursor: Any, source: SourceFile) -> int | None:
        """The id of the row inserted for a file new to the manifest (0: its day was dropped), or None
        if another loader has added it since (then ``claim`` it)."""
        try:
            cursor.execute(sql.macro(LOADER_SQL, "add_file", self.table), (*source.manifest_values, source.delivery_day))
        except Exception as exc:
            if mysql_error_code(exc) == DUPLICATE_KEY:
                return None
            raise
        return int(cursor.lastrowid) if cursor.rowcount else 0

    def claim(self, cursor: Any, source: SourceFile) -> int:
        """Insert or lock the file's row; its id (0: its day was dropped)."""
        cursor.execute(sql.macro(LOADER_SQL, "claim_file", self.table), (*source.manifest_values, source.delivery_day))
        return int(cursor.lastrowid or 0)

    def state(self, cursor: Any, file_id: int) -> tuple[Any, Any, Any, Any]:
        """(status, etag, size, location) of a claimed row."""
        cursor.execute(sql.macro(LOADER_SQL, "file_state", self.table), (file_id,))
        status, etag, size, known_at = cursor.fetchone()
        return status, etag, size, known_at

    def dropped_at(self, cursor: Any, source: SourceFile) -> Any:
        """When retention dropped the file's delivery day, if it says."""
        cursor.execute(sql.macro(LOADER_SQL, "dropped_day", self.table), (source.delivery_day,))
        found = cursor.fetchone()
        return found[0] if found else None

    def finish(
        self, cursor: Any, file_id: int, source: SourceFile, rows: int, note: str | None, seconds: float,
        rows_table: str | None = None,
    ) -> None:
        """Mark the row loaded, with its count, note, timing and the file's first and last event
        (read from ``rows_table``, the day's stage, or the logs table)."""
        cursor.execute(
            sql.macro(LOADER_SQL, "finish_file", self.table, rows_table or self.table),
            (file_id, source.delivery_day or UNDATED_DAY, rows, note, seconds, source.location, source.etag,
             source.size, source.delivery_day, file_id),
        )
