"""S3 access with the project's error tree: whole-object writes, conditional creates, typed errors.

Every transcript is written with `If-None-Match: *`, so a duplicate execution can never overwrite
one that exists: its write is refused (and counted) instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from transcription.errors import NotFoundError, PermanentError, StorageError
from transcription.settings import Settings, get_settings

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_REFUSED = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_PERMANENT = {"AccessDenied", "InvalidBucketName", "InvalidArgument", "403", "400"}


@lru_cache(maxsize=8)
def _client(region: str, endpoint: str | None, pid: int):
    # boto3 also reads AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 itself; passing it keeps .env working
    return boto3.session.Session().client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=60),
    )


def s3_client(settings: Settings | None = None):
    """A cached S3 client for this process (a new one after a fork)."""
    s = settings or get_settings()
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or s.aws_endpoint_url
    return _client(s.aws_region, endpoint, os.getpid())


def _error(e: Exception, what: str) -> Exception:
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            return NotFoundError(f"{what}: not found")
        if code in _PERMANENT:
            return PermanentError(f"{what}: {code}")
        return StorageError(f"{what}: {code or e}")
    return StorageError(f"{what}: {e}")


def get_bytes(bucket: str, key: str, *, max_bytes: int | None = None, settings: Settings | None = None) -> bytes:
    """The object's bytes; NotFoundError if absent, PermanentError if over `max_bytes`."""
    try:
        obj = s3_client(settings).get_object(Bucket=bucket, Key=key)
        if max_bytes is not None and obj["ContentLength"] > max_bytes:
            obj["Body"].close()
            raise PermanentError(f"s3://{bucket}/{key} is {obj['ContentLength']} bytes, over {max_bytes}")
        return obj["Body"].read()
    except (ClientError, BotoCoreError) as e:
        raise _error(e, f"s3://{bucket}/{key}") from e


def get_json(bucket: str, key: str, *, settings: Settings | None = None) -> Any:
    data = get_bytes(bucket, key, max_bytes=64 << 20, settings=settings)
    try:
        return json.loads(data)
    except ValueError as e:
        raise PermanentError(f"s3://{bucket}/{key} is not valid JSON: {e}") from e


def exists(bucket: str, key: str, *, settings: Settings | None = None) -> bool:
    try:
        s3_client(settings).head_object(Bucket=bucket, Key=key)
        return True
    except (ClientError, BotoCoreError) as e:
        err = _error(e, f"s3://{bucket}/{key}")
        if isinstance(err, NotFoundError):
            return False
        raise err from e


def put_bytes(bucket: str, key: str, body: bytes, *, content_type: str = "application/octet-stream",
              if_absent: bool = False, settings: Settings | None = None) -> bool:
    """Write a whole object. With `if_absent`, returns False (and writes nothing) if it exists."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body, "ContentType": content_type}
    if if_absent:
        kwargs["IfNoneMatch"] = "*"
    try:
        s3_client(settings).put_object(**kwargs)
        return True
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if if_absent and (code in _REFUSED or status in ("412", "409")):
            return False
        raise _error(e, f"s3://{bucket}/{key}") from e
    except BotoCoreError as e:
        raise _error(e, f"s3://{bucket}/{key}") from e


def put_json(bucket: str, key: str, data: Any, *, if_absent: bool = False, settings: Settings | None = None) -> bool:
    body = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
    return put_bytes(bucket, key, body, content_type="application/json", if_absent=if_absent, settings=settings)


def list_keys(bucket: str, prefix: str, *, settings: Settings | None = None) -> Iterator[str]:
    try:
        pages = s3_client(settings).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"]
    except (ClientError, BotoCoreError) as e:
        raise _error(e, f"s3://{bucket}/{prefix}*") from e


def list_prefixes(bucket: str, prefix: str, *, settings: Settings | None = None) -> Iterator[str]:
    """The "folders" directly under `prefix` (e.g. every `sessions/<id>/`)."""
    try:
        pages = s3_client(settings).get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for p in page.get("CommonPrefixes", []):
                yield p["Prefix"]
    except (ClientError, BotoCoreError) as e:
        raise _error(e, f"s3://{bucket}/{prefix}") from e
