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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Collection, Iterable, Iterator

from cloudtrail_mysql.records import FileKind
from cloudtrail_mysql.writer import SourceFile

__all__ = [
    "Batch", "CLOUDTRAIL_BEGAN", "DayFolder", "KeyRange", "NoCloudTrailLayout", "check_bucket_name", "check_day",
    "day_folders", "iter_batch", "iter_range", "plan_batches", "TooManyBatches",
]

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
        for kind in kinds:
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
