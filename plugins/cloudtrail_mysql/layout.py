"""CloudTrail's S3 layout: find a day's files without scanning the bucket, and cut them into batches.

Keys look like ``[prefix/]AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/YYYY/MM/DD/<file>``;
the YYYY/MM/DD folder is the day CloudTrail *delivered* the file, so it also holds events from
just before midnight of the previous day. Accounts and regions are discovered with delimiter
listings (a handful of small calls), never with a full-bucket scan, and a day's keys are read
page by page, keeping only counters: a batch is described by key ranges, not a key list, so
even an organization trail's several hundred thousand keys a day make a small plan. Small
folders share a batch (an organization's quiet accounts and regions), so the number of mapped
tasks follows the day's size, not the number of folders.

Plain boto3 (any S3 client: ``S3Hook().get_conn()`` or ``boto3.client("s3")``); no Airflow import.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudtrail_mysql.files import SourceFile

__all__ = [
    "Batch", "CLOUDTRAIL_BEGAN", "DayFolder", "FileKind", "KeyRange", "NoCloudTrailLayout", "TooManyBatches",
    "check_bucket_name", "check_day", "classify", "day_folders", "day_prefix", "delivery_day", "file_identity",
    "file_name", "iter_batch", "iter_range", "plan_batches",
]


# -- the key layout ------------------------------------------------------------------------------
class FileKind(str, Enum):
    """What a key under AWSLogs/ holds, from its path; only LOG is loaded unless asked."""

    LOG = "CloudTrail"
    DIGEST = "CloudTrail-Digest"
    INSIGHT = "CloudTrail-Insight"
    NETWORK_ACTIVITY = "CloudTrail-NetworkActivity"
    # 5-minute summaries of data events (timeWindow, summary), not events: never loaded.
    AGGREGATED = "CloudTrail-Aggregated"
    OTHER = "other"


_KIND_BY_FOLDER = {kind.value.lower(): kind for kind in FileKind if kind is not FileKind.OTHER}
# <account>_CloudTrail[-Kind]_<region>_<YYYYMMDDTHHMMZ>_<unique>.json.gz, as CloudTrail names its files.
_CLOUDTRAIL_NAME = re.compile(r"^[^_/]+_(CloudTrail(?:-[A-Za-z]+)?)_[^/]+\.json(?:\.gz)?$", re.IGNORECASE)


def classify(name: str) -> FileKind:
    """Tell log files from digest, Insight, network-activity, aggregated and unrelated files, by
    path alone.

    CloudTrail's file name decides, else the nearest CloudTrail folder. Under ``AWSLogs/`` a
    file in no CloudTrail folder belongs to another service sharing the bucket (AWS Config,
    ...) or is a ``CloudTrail-*`` kind this loader does not know; a file named as CloudTrail
    names an unknown kind is one too. All are OTHER: skipped, not failed.
    """
    lowered = name.lower()
    if not (lowered.endswith(".json.gz") or lowered.endswith(".json")):
        return FileKind.OTHER
    parts = name.replace("\\", "/").split("/")
    match = _CLOUDTRAIL_NAME.match(parts[-1])
    if match:
        return _KIND_BY_FOLDER.get(match.group(1).lower(), FileKind.OTHER)
    for folder in reversed(parts[:-1]):
        folder = folder.lower()
        if folder in _KIND_BY_FOLDER:
            return _KIND_BY_FOLDER[folder]
        if folder == "awslogs":
            return FileKind.OTHER
    # A .json(.gz) file outside CloudTrail's layout (e.g. a hand-made sample): its content decides.
    return FileKind.LOG


_DAY_IN_KEY = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/[^/]*$")


def delivery_day(key: str) -> date | None:
    """The YYYY/MM/DD folder of a CloudTrail key: the day CloudTrail delivered the file."""
    match = _DAY_IN_KEY.search(key.replace("\\", "/"))
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def file_identity(location: str) -> str:
    """The name under which a file is remembered as loaded.

    CloudTrail's file names carry account, region, time and a random id, so the same file
    downloaded to a folder and read again from S3 is recognised as one; other files are known
    by their full location.
    """
    base = location.replace("\\", "/").rsplit("/", 1)[-1]
    return base if _CLOUDTRAIL_NAME.match(base) else location


def day_prefix(
    account: str,
    region: str,
    day: str | date | datetime,
    key_prefix: str = "",
    organization_id: str | None = None,
    kind: str = "CloudTrail",
) -> str:
    """The S3 key prefix under which CloudTrail delivers one account's region's files of a kind for a day."""
    if isinstance(day, str):
        day = date.fromisoformat(day[:10])
    base = f"{key_prefix.strip('/')}/" if key_prefix.strip("/") else ""
    org = f"{organization_id}/" if organization_id else ""
    return f"{base}AWSLogs/{org}{account}/{kind}/{region}/{day:%Y/%m/%d}/"


def file_name(account: str, region: str, tail: str, kind: str = "CloudTrail") -> str:
    """CloudTrail's name for a file: ``<account>_<kind>_<region>_<tail>.json.gz``, the tail being
    ``<YYYYMMDDTHHMMZ>_<unique id>`` for log files (what ``file_identity`` recognises)."""
    return f"{account}_{kind}_{region}_{tail}.json.gz"


# -- listing S3 ----------------------------------------------------------------------------------

# CloudTrail was launched on 13 November 2013; no trail delivered anything before November 2013.
CLOUDTRAIL_BEGAN = date(2013, 11, 1)
# S3's bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with
# a letter or digit, no two dots in a row, not an IP address, none of the reserved prefixes and suffixes.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Buckets made in us-east-1 before March 2018 may also hold capitals and underscores, up to 255 characters.
_LEGACY_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def check_bucket_name(name: str) -> str:
    """Refuse what cannot be an S3 bucket's name (``../etc``, ``s3://b``, a key), before any call to S3."""
    legacy = bool(_LEGACY_BUCKET.fullmatch(name)) and not _BUCKET.fullmatch(name)
    if (
        not (_BUCKET.fullmatch(name) or legacy) or ".." in name or ".-" in name or "-." in name
        or name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES) or _is_ip_address(name)
    ):
        raise ValueError(
            f"invalid S3 bucket name {name!r}: a bucket name has 3 to 63 lowercase letters, digits, dots and "
            "hyphens, begins and ends with a letter or digit, and is not an IP address (give the bucket alone, "
            "without s3:// or a key; the key prefix is a param of its own)"
        )
    return name


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def check_day(day: date, today: date) -> date:
    """Refuse a delivery day no trail can have delivered: before CloudTrail began, or after tomorrow
    (``today`` in UTC; tomorrow allows for clocks and time zones)."""
    if day < CLOUDTRAIL_BEGAN:
        raise ValueError(f"day {day} is before CloudTrail began ({CLOUDTRAIL_BEGAN}): no trail has files for it")
    if day > today + timedelta(days=1):
        raise ValueError(f"day {day} is in the future (today is {today} UTC): CloudTrail has delivered nothing for it yet")
    return day


class NoCloudTrailLayout(LookupError):
    """Nothing at all under the prefix where CloudTrail writes (``[prefix/]AWSLogs/``): the bucket or the
    key prefix is not a trail's, which no quiet day explains."""


def _children(client: Any, bucket: str, prefix: str) -> list[str]:
    """Names of the 'folders' directly under prefix (one delimiter listing, paginated)."""
    names = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", ()):
            names.append(common["Prefix"][len(prefix):].rstrip("/"))
    return names


@dataclass(frozen=True)
class DayFolder:
    """One account's one region's folder for a day, e.g. AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/31/."""

    account: str
    kind: FileKind
    region: str
    prefix: str


def day_folders(
    client: Any,
    bucket: str,
    day: date,
    key_prefix: str = "",
    accounts: Collection[str] | None = None,
    regions: Collection[str] | None = None,
    kinds: Collection[FileKind] = (FileKind.LOG,),
    threads: int = 8,
) -> list[DayFolder]:
    """Every (account, kind, region) day folder under AWSLogs/, organization trails included.

    Accounts are listed ``threads`` at a time: an organization has hundreds, each a few small
    listings, and each listing waits for S3.
    """
    root = f"{key_prefix.strip('/')}/AWSLogs/" if key_prefix.strip("/") else "AWSLogs/"
    wanted_accounts = set(accounts) if accounts else None
    wanted_regions = set(regions) if regions else None

    def visit_account(account: str, base: str, subfolders: Iterable[str] | None = None) -> list[DayFolder]:
        if wanted_accounts is not None and account not in wanted_accounts:
            return []
        if subfolders is None:
            subfolders = _children(client, bucket, base)
        found = []
        for kind in (k for k in FileKind if k in kinds):  # in a stable order, whatever collection ``kinds`` is
            if kind.value not in subfolders:
                continue
            for region in sorted(_children(client, bucket, f"{base}{kind.value}/")):
                if wanted_regions is None or region in wanted_regions:
                    found.append(DayFolder(account, kind, region, f"{base}{kind.value}/{region}/{day:%Y/%m/%d}/"))
        return found

    def visit_top(top: str) -> list[DayFolder]:
        base = f"{root}{top}/"
        below = _children(client, bucket, base)
        if any(name.startswith("CloudTrail") for name in below):
            return visit_account(top, base, below)
        # An organization trail (AWSLogs/<org-id>/<account>/...): one level more.
        accounts_below = [a for a in sorted(below) if wanted_accounts is None or a in wanted_accounts]
        return [folder for found in pool.map(lambda a: visit_account(a, f"{base}{a}/"), accounts_below) for folder in found]

    tops = sorted(_children(client, bucket, root))
    if not tops and not client.list_objects_v2(Bucket=bucket, Prefix=root, MaxKeys=1).get("KeyCount"):
        raise NoCloudTrailLayout(
            f"no CloudTrail files at all in s3://{bucket}/{root}: looked for {root}[<organization id>/]<account>/"
            f"CloudTrail/<region>/YYYY/MM/DD/ and found nothing under {root}; check the bucket and the key prefix"
        )
    # Two pools: the organization folders' accounts are visited while the top level is.
    with ThreadPoolExecutor(max(1, threads)) as pool, ThreadPoolExecutor(max(1, min(threads, len(tops) or 1))) as top_pool:
        return [folder for found in top_pool.map(visit_top, tops) for folder in found]


@dataclass(frozen=True)
class KeyRange:
    """The keys of one folder after ``start_after`` up to and including ``last_key``.

    ``last_key`` None means "to the end of the folder", so files that arrive after planning are
    still picked up by the folder's last range.
    """

    prefix: str
    start_after: str | None = None
    last_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "start_after": self.start_after, "last_key": self.last_key}


@dataclass(frozen=True)
class Batch:
    """The files of one mapped task: key ranges, of one or several folders."""

    ranges: tuple[KeyRange, ...]
    files: int
    bytes: int

    def as_kwargs(self) -> dict[str, Any]:
        return {"ranges": [key_range.as_dict() for key_range in self.ranges]}


class TooManyBatches(ValueError):
    """The day would need more mapped tasks than allowed: raise the batch size."""


def _objects(client: Any, bucket: str, prefix: str, start_after: str | None = None) -> Iterator[dict[str, Any]]:
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        kwargs["StartAfter"] = start_after
    for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
        yield from page.get("Contents", ())


def plan_batches(
    client: Any,
    bucket: str,
    folders: Iterable[DayFolder],
    max_files: int = 500,
    max_bytes: int = 256 * 1024 * 1024,
    max_batches: int = 512,
    threads: int = 8,
) -> list[Batch]:
    """Cut the day's folders into batches of at most max_files files and about max_bytes bytes.

    A large folder is cut into several ranges; ranges smaller than a batch are packed together,
    in key order, so a day of many small folders makes few tasks.
    """
    folders = list(folders)

    def cut(folder: DayFolder) -> list[tuple[KeyRange, int, int]]:
        pieces: list[tuple[KeyRange, int, int]] = []
        start_after: str | None = None
        files = size = 0
        last: str | None = None
        for item in _objects(client, bucket, folder.prefix):
            if files and (files >= max_files or size + item["Size"] > max_bytes):
                pieces.append((KeyRange(folder.prefix, start_after, last), files, size))
                start_after, files, size = last, 0, 0
            files += 1
            size += int(item["Size"])
            last = item["Key"]
        if files:
            pieces.append((KeyRange(folder.prefix, start_after, None), files, size))
        return pieces

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(folders) or 1))) as pool:
        pieces = [piece for found in pool.map(cut, folders) for piece in found]
    planned: list[Batch] = []
    ranges: list[KeyRange] = []
    files = size = 0
    for key_range, piece_files, piece_size in pieces:
        if ranges and (files + piece_files > max_files or size + piece_size > max_bytes):
            planned.append(Batch(tuple(ranges), files, size))
            ranges, files, size = [], 0, 0
        ranges.append(key_range)
        files += piece_files
        size += piece_size
    if ranges:
        planned.append(Batch(tuple(ranges), files, size))
    if len(planned) > max_batches:
        raise TooManyBatches(
            f"the day needs {len(planned)} batches, more than the {max_batches} mapped tasks allowed; "
            f"raise batch_files (now {max_files}) or batch_megabytes (now {max_bytes // 2**20})"
        )
    return planned


def iter_range(client: Any, bucket: str, prefix: str, start_after: str | None, last_key: str | None) -> Iterator[SourceFile]:
    """The files of one key range, read from S3 page by page."""
    from cloudtrail_mysql.files import SourceFile

    for item in _objects(client, bucket, prefix, start_after):
        if last_key is not None and item["Key"] > last_key:
            return
        yield SourceFile(
            f"s3://{bucket}/{item['Key']}", size=int(item["Size"]), etag=str(item.get("ETag", "")).strip('"') or None
        )


def iter_batch(
    client: Any, bucket: str, ranges: Iterable[KeyRange | dict[str, Any]], threads: int = 8
) -> Iterator[SourceFile]:
    """The files of a batch's key ranges (as planned, or as the dicts a mapped task receives), in
    order; ``threads`` ranges are listed at a time (a batch may pack hundreds of small folders)."""
    key_ranges = [
        KeyRange(r["prefix"], r.get("start_after") or None, r.get("last_key") or None) if isinstance(r, dict) else r
        for r in ranges
    ]

    def listed(key_range: KeyRange) -> list[SourceFile]:
        return list(iter_range(client, bucket, key_range.prefix, key_range.start_after, key_range.last_key))

    if len(key_ranges) <= 1:
        for key_range in key_ranges:
            yield from listed(key_range)
        return
    with ThreadPoolExecutor(max(1, min(threads, len(key_ranges)))) as pool:
        for found in pool.map(listed, key_ranges):
            yield from found


def day_sources(
    client: Any,
    bucket: str,
    days: Iterable[date],
    key_prefix: str = "",
    accounts: Collection[str] | None = None,
    regions: Collection[str] | None = None,
    kinds: Collection[FileKind] = (FileKind.LOG,),
) -> list[SourceFile]:
    """The files CloudTrail delivered on ``days``, found exactly as the DAG's ``plan_batches`` finds
    them (``day_folders``, then key ranges), for the command's ``--day``/``--from``/``--to``."""
    sources: list[SourceFile] = []
    for day in days:
        folders = day_folders(client, bucket, day, key_prefix, accounts=accounts, regions=regions, kinds=kinds)
        for batch in plan_batches(client, bucket, folders, max_batches=2**31):
            sources.extend(iter_batch(client, bucket, batch.ranges))
    return sources
