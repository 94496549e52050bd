"""One-shot seeding of the local stack's S3 (MinIO): sample CloudTrail days, uploaded in CloudTrail's layout.

Run by the ``minio-seed`` service of docker-compose.yaml, in the Airflow image with this repository's
``plugins/`` on PYTHONPATH. For each day of ``SEED_DAYS`` it runs the project's own
``cloudtrail-mysql generate`` (``cloudtrail_mysql.cli``) into a temporary folder, then puts every file
into ``CLOUDTRAIL_BUCKET`` under the same key (``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/...``).

Environment:

* ``S3_ENDPOINT_URL``     -- the MinIO endpoint, e.g. http://minio:9000 (required)
* ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` -- MinIO credentials (required)
* ``AWS_DEFAULT_REGION``  -- default us-east-1
* ``CLOUDTRAIL_BUCKET``   -- bucket to create (if missing) and fill (required)
* ``SEED_DAYS``           -- comma-separated delivery days, default 2017-04-10
* ``SEED_RECORDS``        -- events per day, default 20000

Idempotent: the generator is deterministic (fixed seed, gzip without timestamps), so a second run
puts byte-identical objects with the same ETags, which the loader then skips as already loaded.
Exits non-zero on any failure, so ``docker compose up`` shows the seeding as failed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date
from pathlib import Path


def _client(endpoint: str):  # noqa: ANN202 - boto3 client
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 10}),
    )


def ensure_bucket(client, bucket: str) -> None:  # noqa: ANN001
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    print(f"created bucket {bucket}")


def seed_day(client, bucket: str, day: str, records: int) -> int:  # noqa: ANN001
    """Generate one delivery day with ``cloudtrail-mysql generate`` and upload it; returns the file count."""
    from cloudtrail_mysql.cli import main as cloudtrail_mysql

    with tempfile.TemporaryDirectory(prefix=f"cloudtrail-{day}-") as out:
        status = cloudtrail_mysql(["generate", out, "--day", day, "--records", str(records)])
        if status != 0:
            raise RuntimeError(f"cloudtrail-mysql generate exited {status} for {day}")
        root = Path(out)
        files = sorted(path for path in root.rglob("*") if path.is_file())
        for path in files:
            client.upload_file(str(path), bucket, path.relative_to(root).as_posix())
    print(f"uploaded {len(files)} objects for {day} to s3://{bucket}/")
    return len(files)


def main() -> int:
    endpoint = os.environ["S3_ENDPOINT_URL"]
    bucket = os.environ["CLOUDTRAIL_BUCKET"]
    days = [d.strip() for d in os.environ.get("SEED_DAYS", "2017-04-10").split(",") if d.strip()]
    records = int(os.environ.get("SEED_RECORDS", "20000"))
    for day in days:
        date.fromisoformat(day)  # a clear error for a malformed day, before anything is written
    client = _client(endpoint)
    ensure_bucket(client, bucket)
    total = sum(seed_day(client, bucket, day, records) for day in days)
    print(f"seeded {len(days)} day(s), {total} objects, into s3://{bucket}/ at {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
