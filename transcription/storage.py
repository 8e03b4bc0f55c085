"""S3 access with the project's error tree: whole-object writes, conditional creates, typed errors.

Every transcript is written with `If-None-Match: *`, so a duplicate execution can never overwrite
one that exists: its write is refused (and counted) instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from transcription.errors import ChangedError, NotFoundError, PermanentError, StorageError
from transcription.settings import Settings, get_settings

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_REFUSED = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_PERMANENT = {"AccessDenied", "InvalidBucketName", "InvalidArgument", "403", "400"}


def aws_client(service: str, **kwargs: Any) -> Any:
    """A botocore client, as `boto3.session.Session().client(service, ...)` makes it (the same credential,
    region and `AWS_ENDPOINT_URL*` resolution), without importing boto3: boto3 adds s3transfer and its
    resource layer, which nothing here uses, to every cold start (the router's, issue 17)."""
    return botocore.session.get_session().create_client(service, **kwargs)


@lru_cache(maxsize=8)
def _client(region: str, endpoint: str | None, pid: int):
    # botocore also reads AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 itself; passing it keeps .env working
    return aws_client(
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


@dataclass(frozen=True)
class Version:
    """Which bytes of an object: its ETag (without quotes) and, in a bucket with versioning, its VersionId."""

    etag: str | None
    version_id: str | None = None

    @classmethod
    def of(cls, response: Any) -> Version:
        """From a GET, HEAD or PUT response (S3 says VersionId "null" where versioning is off)."""
        etag = str(response.get("ETag") or "").strip('"') or None
        version_id = response.get("VersionId")
        return cls(etag, None if version_id in (None, "", "null") else str(version_id))


def get_bytes(bucket: str, key: str, *, max_bytes: int | None = None, settings: Settings | None = None) -> bytes:
    """The object's bytes; NotFoundError if absent, PermanentError if over `max_bytes`."""
    return get_version(bucket, key, max_bytes=max_bytes, settings=settings)[0]


def get_version(bucket: str, key: str, *, max_bytes: int | None = None, version: Version | None = None,
                settings: Settings | None = None) -> tuple[bytes, Version]:
    """The object's bytes and which version they are. With `version`, exactly that one: by its
    VersionId where it has one, else only while the object still has that ETag (`ChangedError`)."""
    what = f"s3://{bucket}/{key}"
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version is not None and version.version_id:
        kwargs["VersionId"] = version.version_id
    elif version is not None and version.etag:
        kwargs["IfMatch"] = f'"{version.etag}"'
    try:
        obj = s3_client(settings).get_object(**kwargs)
        if max_bytes is not None and obj["ContentLength"] > max_bytes:
            obj["Body"].close()
            raise PermanentError(f"{what} is {obj['ContentLength']} bytes, over {max_bytes}")
        return obj["Body"].read(), Version.of(obj)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if version is not None and (code in _REFUSED or code in ("NoSuchVersion", "InvalidArgument")):
            raise ChangedError(f"{what}: changed since version {version.etag or version.version_id}") from e
        raise _error(e, what) from e
    except BotoCoreError as e:
        raise _error(e, what) from e


def get_range(bucket: str, key: str, start: int, length: int, *, settings: Settings | None = None) -> bytes:
    """Up to `length` bytes of the object from `start` (a ranged GET); NotFoundError if absent."""
    try:
        obj = s3_client(settings).get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
        return obj["Body"].read(length)
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code", "")) == "InvalidRange":  # an empty object
            return b""
        raise _error(e, f"s3://{bucket}/{key}") from e
    except BotoCoreError as e:
        raise _error(e, f"s3://{bucket}/{key}") from e


MAX_JSON_BYTES = 64 << 20  # a chunk transcript with words is a few MiB at most
MAX_JSON_DEPTH = 32  # transcripts nest 5 levels deep (segments, words); a manifest 1


def get_json(bucket: str, key: str, *, max_bytes: int = MAX_JSON_BYTES, settings: Settings | None = None) -> Any:
    """The object parsed as JSON, bounded in size and nesting depth: anything else in S3 is a
    `PermanentError` naming the object (a `RecursionError` is no error any caller expects)."""
    data = get_bytes(bucket, key, max_bytes=max_bytes, settings=settings)
    return parse_json(data, f"s3://{bucket}/{key}")


def parse_json(data: bytes | str, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` for untrusted bytes: nesting deeper than `max_depth` is refused before parsing,
    invalid JSON is a `PermanentError`; neither echoes the content."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else data
    if nests_deeper(text, max_depth):
        raise PermanentError(f"{what} nests JSON deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise PermanentError(f"{what} is not valid JSON{where}") from None


_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_EMPTY_PAIR = re.compile(r"\[\]|\{\}")


def nests_deeper(text: str, max_depth: int) -> bool:
    """True if `text`'s brackets (outside strings) nest deeper than `max_depth`. Each pass deletes
    every innermost pair, one nesting level, in C: no Python loop per byte."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    for _ in range(max_depth):
        inner = _EMPTY_PAIR.sub("", brackets)
        if inner == brackets:  # nothing left, or unbalanced (json.loads says so)
            break
        brackets = inner
    else:
        if _EMPTY_PAIR.search(brackets):
            return True
    return brackets.count("[") + brackets.count("{") > max_depth  # more left open than allowed


def content_type(bucket: str, key: str, *, settings: Settings | None = None) -> str | None:
    """The object's Content-Type as uploaded (None when it has none or cannot be read)."""
    try:
        value = s3_client(settings).head_object(Bucket=bucket, Key=key).get("ContentType")
    except (ClientError, BotoCoreError):
        return None
    return str(value).split(";")[0].strip().lower() if value else None


def exists(bucket: str, key: str, *, settings: Settings | None = None) -> bool:
    try:
        s3_client(settings).head_object(Bucket=bucket, Key=key)
        return True
    except (ClientError, BotoCoreError) as e:
        err = _error(e, f"s3://{bucket}/{key}")
        if isinstance(err, NotFoundError):
            return False
        raise err from e


def head(bucket: str, key: str, *, settings: Settings | None = None) -> tuple[Version, dict[str, str]]:
    """The object's current version and its user metadata; NotFoundError if absent."""
    try:
        r = s3_client(settings).head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as e:
        raise _error(e, f"s3://{bucket}/{key}") from e
    return Version.of(r), dict(r.get("Metadata") or {})


def last_modified(bucket: str, key: str, *, settings: Settings | None = None) -> datetime:
    """When the object was last written (S3 keeps whole seconds); NotFoundError if absent."""
    try:
        return s3_client(settings).head_object(Bucket=bucket, Key=key)["LastModified"]
    except (ClientError, BotoCoreError) as e:
        raise _error(e, f"s3://{bucket}/{key}") from e


def put_bytes(bucket: str, key: str, body: bytes, *, content_type: str = "application/octet-stream",
              if_absent: bool = False, if_match: str | None = None, metadata: dict[str, str] | None = None,
              settings: Settings | None = None) -> bool:
    """Write a whole object. With `if_absent`, returns False (and writes nothing) if it exists;
    with `if_match` (an ETag), False unless the object is still that version."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body, "ContentType": content_type}
    if if_absent:
        kwargs["IfNoneMatch"] = "*"
    if if_match is not None:
        kwargs["IfMatch"] = f'"{if_match.strip(chr(34))}"'
    if metadata:
        kwargs["Metadata"] = metadata
    try:
        s3_client(settings).put_object(**kwargs)
        return True
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        conditional = if_absent or if_match is not None
        if conditional and (code in _REFUSED or code == "NoSuchKey" or status in ("412", "409")):
            return False
        raise _error(e, f"s3://{bucket}/{key}") from e
    except BotoCoreError as e:
        raise _error(e, f"s3://{bucket}/{key}") from e


def put_json(bucket: str, key: str, data: Any, *, if_absent: bool = False, if_match: str | None = None,
             metadata: dict[str, str] | None = None, settings: Settings | None = None) -> bool:
    body = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
    return put_bytes(bucket, key, body, content_type="application/json", if_absent=if_absent, if_match=if_match,
                     metadata=metadata, settings=settings)


def _listing(bucket: str, prefix: str, settings: Settings | None) -> Iterator[dict[str, Any]]:
    """Every object entry under `prefix`, page after page; an S3 failure names the prefix."""
    try:
        pages = s3_client(settings).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            yield from page.get("Contents", [])
    except (ClientError, BotoCoreError) as e:
        raise _error(e, f"s3://{bucket}/{prefix}*") from e


def list_keys(bucket: str, prefix: str, *, settings: Settings | None = None) -> Iterator[str]:
    return (obj["Key"] for obj in _listing(bucket, prefix, settings))


def list_objects(bucket: str, prefix: str, *, settings: Settings | None = None) -> Iterator[tuple[str, datetime]]:
    """Every key under `prefix` with when it was last written."""
    return ((obj["Key"], obj["LastModified"]) for obj in _listing(bucket, prefix, settings))


def list_etags(bucket: str, prefix: str, *, settings: Settings | None = None) -> Iterator[tuple[str, str]]:
    """(key, ETag without quotes) of every object under `prefix`: one listing tells which version each is."""
    return ((obj["Key"], str(obj.get("ETag") or "").strip('"')) for obj in _listing(bucket, prefix, settings))


def list_prefixes(bucket: str, prefix: str, *, start_after: str | None = None,
                  settings: Settings | None = None) -> Iterator[str]:
    """The "folders" directly under `prefix` (e.g. every `sessions/<id>/`), in key order, those
    after the key `start_after` only when it is given."""
    try:
        pages = s3_client(settings).get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/", **({"StartAfter": start_after} if start_after else {})
        )
        for page in pages:
            for p in page.get("CommonPrefixes", []):
                yield p["Prefix"]
    except (ClientError, BotoCoreError) as e:
        raise _error(e, f"s3://{bucket}/{prefix}") from e
