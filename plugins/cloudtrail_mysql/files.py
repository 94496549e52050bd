"""A file to load and what became of it: the vocabulary shared by the listing, the loader and the summary.

Plain data, no MySQL and no S3: the S3 listing (layout.py, sources.py) makes ``SourceFile``s without
importing the writer, and the command and the operator tally ``FileResult``s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from cloudtrail_mysql.layout import delivery_day, file_identity

__all__ = ["FileResult", "SourceFile", "replaced_note", "replaced_rows"]


@dataclass(frozen=True)
class SourceFile:
    """A file to load: where it is (``s3://bucket/key`` or a path) and what the listing said of it."""

    location: str
    size: int | None = None
    etag: str | None = None

    @property
    def name(self) -> str:
        """How the manifest knows the file (CloudTrail's file name, or the full location)."""
        return file_identity(self.location)

    @property
    def delivery_day(self) -> date | None:
        return delivery_day(self.location)

    @property
    def name_hash(self) -> str:
        return hashlib.sha256(self.name.encode("utf-8")).hexdigest()

    @property
    def location_hash(self) -> str:
        """The manifest key of a file refused because another file has its name (``Manifest.refuse_namesake``)."""
        return hashlib.sha256(self.location.encode("utf-8")).hexdigest()

    @property
    def manifest_values(self) -> tuple[Any, ...]:
        """Its manifest row's values, in the order of loader.sql's add_file, claim_file and record_failure."""
        return (self.name_hash, self.name, self.location, self.etag, self.size, self.delivery_day)


@dataclass(frozen=True)
class FileResult:
    """What happened to one file: loaded, already_loaded, skipped or failed."""

    location: str
    status: str
    rows: int = 0
    seconds: float = 0.0
    detail: str = ""


_REPLACED = "replaced "


def replaced_note(rows: int) -> str:
    """What a file that replaced its earlier version says, in its FileResult and its manifest row."""
    return f"{_REPLACED}{rows} rows of an earlier version of this file (same location, changed content)"


def replaced_rows(detail: str | None) -> int | None:
    """The rows a loaded file replaced, from its ``replaced_note``; None if it replaced nothing."""
    if not detail or not detail.startswith(_REPLACED):
        return None
    return int(detail[len(_REPLACED):].split(" ", 1)[0])
