"""Where CloudTrail files come from: a file, a folder, ``s3://bucket/key`` or ``s3://bucket/prefix/``.

Plain boto3 for S3: the standard ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3`` variables point it at
MinIO or a test server; retries are botocore's own. The Airflow operator gets its client from
``S3Hook`` instead and uses the same listing and reading functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from cloudtrail_mysql.files import SourceFile

__all__ = ["S3Location", "fetch", "iter_s3_objects", "list_sources", "parse_s3_uri", "s3_client"]


class S3Location(tuple):
    """(bucket, key) of an s3:// URI."""

    @property
    def bucket(self) -> str:
        return self[0]

    @property
    def key(self) -> str:
        return self[1]


def parse_s3_uri(uri: str) -> S3Location:
    """Bucket and key of s3://bucket/key. The key is everything after the bucket, as S3 has it:
    '#', '?' or '%' in a key are characters of the key, not a URL's fragment, query or escapes."""
    scheme, sep, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme != "s3" or not sep or not bucket:
        raise ValueError(f"not an S3 URI: {uri!r} (expected s3://bucket/key or s3://bucket/prefix/)")
    return S3Location((bucket, key.lstrip("/")))


def s3_client() -> Any:
    """A boto3 S3 client with botocore's standard retries unless the environment chose others."""
    import boto3
    from botocore.config import Config

    retries: dict[str, Any] = {"mode": os.environ.get("AWS_RETRY_MODE", "standard")}
    if "AWS_MAX_ATTEMPTS" not in os.environ:
        retries["max_attempts"] = 8
    # Bounded waits: a GET that stalls fails after read_timeout and is retried by botocore.
    return boto3.client("s3", config=Config(retries=retries, connect_timeout=10, read_timeout=60))


def iter_s3_objects(client: Any, bucket: str, prefix: str) -> Iterator[SourceFile]:
    """Every object under a prefix, page by page, as (location, size, ETag): nothing else is kept."""
    from cloudtrail_mysql.layout import iter_range

    return iter_range(client, bucket, prefix, None, None)


def list_sources(source: str, client: Any = None) -> list[SourceFile]:
    """The files a SOURCE names, in a stable order. A folder is read recursively."""
    if source.startswith("s3://"):
        location = parse_s3_uri(source)
        found = list(iter_s3_objects(client or s3_client(), location.bucket, location.key))
        if location.key and not location.key.endswith("/"):
            exact = [item for item in found if item.location == source]
            if exact:
                return exact
        return found
    path = Path(source)
    if path.is_dir():
        return [
            SourceFile(str(item.resolve()), size=item.stat().st_size)
            for item in sorted(path.rglob("*"))
            if item.is_file()
        ]
    if path.is_file():
        return [SourceFile(str(path.resolve()), size=path.stat().st_size)]
    raise FileNotFoundError(f"no such file or folder: {source}")


def fetch(source: SourceFile, client: Any = None) -> bytes:
    """The bytes of a file, from S3 or from disk."""
    if source.location.startswith("s3://"):
        location = parse_s3_uri(source.location)
        response = (client or s3_client()).get_object(Bucket=location.bucket, Key=location.key)
        return response["Body"].read()
    return Path(source.location).read_bytes()
