"""CloudTrail's S3 layout against a real S3 endpoint: which folders a day has, and how they are cut."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cloudtrail_mysql.layout import FileKind, TooManyBatches, day_folders, iter_batch, iter_range, plan_batches

DAY = date(2017, 4, 10)


def _put(client: Any, bucket: str, keys: list[str], size: int = 10) -> None:
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x" * size)


@pytest.fixture
def messy_bucket(s3_bucket: tuple[Any, str]) -> tuple[Any, str]:
    """Accounts that are not 12 digits, odd regions, an organization trail, a key prefix, other kinds."""
    client, bucket = s3_bucket
    day = f"{DAY:%Y/%m/%d}"
    _put(client, bucket, [
        f"trails/prod/AWSLogs/111122223333/CloudTrail/us-east-1/{day}/a.json.gz",
        f"trails/prod/AWSLogs/111122223333/CloudTrail/us-east-1/{day}/b.json.gz",
        "trails/prod/AWSLogs/111122223333/CloudTrail/us-east-1/2017/04/11/c.json.gz",
        f"trails/prod/AWSLogs/111122223333/CloudTrail/us-gov-west-1/{day}/d.json.gz",
        f"trails/prod/AWSLogs/111122223333/CloudTrail-Digest/us-east-1/{day}/digest.json.gz",
        f"trails/prod/AWSLogs/111122223333/CloudTrail-Insight/us-east-1/{day}/insight.json.gz",
        f"trails/prod/AWSLogs/legacy-account/CloudTrail/eu-west-1/{day}/e.json.gz",
        f"trails/prod/AWSLogs/o-a1b2c3d4e5/444455556666/CloudTrail/ap-south-1/{day}/f.json.gz",
        f"trails/prod/AWSLogs/o-a1b2c3d4e5/777788889999/CloudTrail/ap-south-1/{day}/g.json.gz",
        f"trails/prod/AWSLogs/o-a1b2c3d4e5/777788889999/CloudTrail-Digest/ap-south-1/{day}/h.json.gz",
        f"other/AWSLogs/999999999999/CloudTrail/us-east-1/{day}/not-this-prefix.json.gz",
    ])
    return client, bucket


def test_day_folders_find_every_account_region_and_organization_account(messy_bucket: tuple[Any, str]) -> None:
    client, bucket = messy_bucket
    found = {(f.account, f.region) for f in day_folders(client, bucket, DAY, "trails/prod/")}
    assert found == {
        ("111122223333", "us-east-1"), ("111122223333", "us-gov-west-1"), ("legacy-account", "eu-west-1"),
        ("444455556666", "ap-south-1"), ("777788889999", "ap-south-1"),
    }
    keys = {s.location.rsplit("/", 1)[1] for f in day_folders(client, bucket, DAY, "trails/prod")
            for s in iter_range(client, bucket, f.prefix, None, None)}
    assert keys == {"a.json.gz", "b.json.gz", "d.json.gz", "e.json.gz", "f.json.gz", "g.json.gz"}


def test_day_folders_filters_and_kinds(messy_bucket: tuple[Any, str]) -> None:
    client, bucket = messy_bucket
    only = day_folders(client, bucket, DAY, "trails/prod", accounts=["777788889999", "111122223333"], regions=["ap-south-1"])
    assert [(f.account, f.region) for f in only] == [("777788889999", "ap-south-1")]
    with_insight = day_folders(client, bucket, DAY, "trails/prod", kinds=[FileKind.LOG, FileKind.INSIGHT])
    assert {f.kind for f in with_insight} == {FileKind.LOG, FileKind.INSIGHT}
    assert day_folders(client, bucket, date(2016, 1, 1), "trails/prod") != []  # folders exist ...
    assert all(not list(iter_range(client, bucket, f.prefix, None, None))  # ... but hold no file that day
               for f in day_folders(client, bucket, date(2016, 1, 1), "trails/prod"))


def test_plan_batches_cuts_by_files_and_bytes_and_covers_every_key_once(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    prefix = f"AWSLogs/111122223333/CloudTrail/us-east-1/{DAY:%Y/%m/%d}/"
    keys = [f"{prefix}{i:04d}.json.gz" for i in range(23)]
    _put(client, bucket, keys, size=100)
    folders = day_folders(client, bucket, DAY)
    by_files = plan_batches(client, bucket, folders, max_files=5, max_bytes=10**9)
    assert [b.files for b in by_files] == [5, 5, 5, 5, 3]
    by_bytes = plan_batches(client, bucket, folders, max_files=100, max_bytes=250)
    assert [b.files for b in by_bytes] == [2] * 11 + [1]
    assert by_files[-1].ranges[-1].last_key is None  # the last range stays open for late files
    for batches in (by_files, by_bytes):
        covered = [s.location.split("/", 3)[3] for b in batches for s in iter_batch(client, bucket, **b.as_kwargs())]
        assert covered == keys

    with pytest.raises(TooManyBatches, match=r"needs 5 batches, more than the 4 .*raise batch_files"):
        plan_batches(client, bucket, folders, max_files=5, max_bytes=10**9, max_batches=4)


def test_plan_batches_packs_small_folders_together(s3_bucket: tuple[Any, str]) -> None:
    """An organization's many quiet account/region folders make few tasks, not one task each."""
    client, bucket = s3_bucket
    keys = []
    for account in ("111111111111", "222222222222", "333333333333"):
        for region in ("eu-west-1", "us-east-1", "us-west-2"):
            prefix = f"AWSLogs/{account}/CloudTrail/{region}/{DAY:%Y/%m/%d}/"
            keys += [f"{prefix}{i:04d}.json.gz" for i in range(3 if region == "us-east-1" else 1)]
    _put(client, bucket, keys, size=100)
    folders = day_folders(client, bucket, DAY)
    assert len(folders) == 9

    batches = plan_batches(client, bucket, folders, max_files=4, max_bytes=10**9)
    # Folders in key order hold 1, 3, 1 files per account: packed 1+3 | 1+1 | 3+1 | 1+3 | 1, never over 4.
    assert [b.files for b in batches] == [4, 2, 4, 4, 1]
    assert [len(b.ranges) for b in batches] == [2, 2, 2, 2, 1]
    covered = [s.location.split("/", 3)[3] for b in batches for s in iter_batch(client, bucket, **b.as_kwargs())]
    assert sorted(covered) == sorted(keys) and len(covered) == len(set(covered))
    assert all(r.last_key is None for b in batches for r in b.ranges)  # every folder's range stays open
    assert len(plan_batches(client, bucket, folders, max_files=500, max_bytes=10**9)) == 1


def test_an_organization_is_listed_several_listings_at_a_time(s3_bucket: tuple[Any, str]) -> None:
    """Each S3 listing waits for the network: accounts, and a batch's key ranges, are listed
    several at a time, with the same result as one at a time."""
    import threading
    import time

    client, bucket = s3_bucket
    accounts = [f"{n:012d}" for n in range(100000000001, 100000000013)]
    _put(client, bucket, [
        f"AWSLogs/o-a1b2c3d4e5/{account}/CloudTrail/{region}/{DAY:%Y/%m/%d}/{account}-{region}-{i}.json.gz"
        for account in accounts for region in ("us-east-1", "eu-west-1") for i in range(2)
    ])
    lock = threading.Lock()
    listing = {"now": 0, "most": 0}

    def slow_listing(**_: Any) -> None:  # before each ListObjectsV2 call is sent
        with lock:
            listing["now"] += 1
            listing["most"] = max(listing["most"], listing["now"])
        time.sleep(0.02)
        with lock:
            listing["now"] -= 1

    client.meta.events.register("before-send.s3.ListObjectsV2", slow_listing)
    try:
        folders = day_folders(client, bucket, DAY)
        assert listing["most"] >= 2
        assert folders == day_folders(client, bucket, DAY, threads=1)
        assert {(f.account, f.region) for f in folders} == {(a, r) for a in accounts for r in ("us-east-1", "eu-west-1")}

        batch, = plan_batches(client, bucket, folders, max_files=500)
        assert len(batch.ranges) == len(folders)
        listing["most"] = 0
        keys = [s.location for s in iter_batch(client, bucket, **batch.as_kwargs())]
        assert listing["most"] >= 2
        assert keys == [s.location for s in iter_batch(client, bucket, **batch.as_kwargs(), threads=1)]
        assert len(keys) == len(set(keys)) == len(accounts) * 2 * 2
    finally:
        client.meta.events.unregister("before-send.s3.ListObjectsV2", slow_listing)
