"""What reaches the router, reduced to (bucket, key, size, etag) per uploaded object.

Two envelopes arrive: EventBridge events from S3 (`detail.bucket.name`, `detail.object.key`, ...),
which the deployment's rule delivers one per invocation, and S3 notification records
(`Records[].s3`), one or many per invocation. Keys in S3 notification records are URL-encoded with
`+` for a space (`unquote_plus`); EventBridge keys are decoded with `unquote` only, so a literal `+`
stays a `+`. (Valid chunk keys contain neither: they only matter for the reason a key is refused.)

Nothing here raises for bad input: an event that cannot be used becomes an `Unusable` entry with the
reason, so a poison event is reported and dropped instead of being retried forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus

OBJECT_CREATED = "Object Created"
EVENTBRIDGE = "eventbridge"
S3_RECORD = "s3"
MAX_RECORDS = 1000  # S3 sends one record per notification; anything longer is not from S3


@dataclass(frozen=True)
class ObjectCreated:
    """One uploaded object, as S3 reported it."""

    bucket: str
    key: str
    size: int | None  # None when the envelope did not say
    etag: str | None
    source: str  # EVENTBRIDGE or S3_RECORD


@dataclass(frozen=True)
class Unusable:
    """An event or record the router cannot act on, and why."""

    reason: str
    source: str = "unknown"
    bucket: str | None = None
    key: str | None = None


Parsed = ObjectCreated | Unusable


def rule_pattern(bucket: str, prefix: str = "sessions/") -> dict[str, Any]:
    """The EventBridge pattern that feeds the router (the deployment template's rule says the same)."""
    return {
        "source": ["aws.s3"],
        "detail-type": [OBJECT_CREATED],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": prefix}]}},
    }


def parse_event(event: Any) -> list[Parsed]:
    """Every object the event reports, in order; never raises."""
    if not isinstance(event, dict):
        return [Unusable(f"event is not a JSON object but {type(event).__name__}")]
    if "Records" in event:
        records = event["Records"]
        if not isinstance(records, list) or not records:
            return [Unusable("event has an empty or malformed Records list", S3_RECORD)]
        if len(records) > MAX_RECORDS:
            return [Unusable(f"event has {len(records)} records, more than {MAX_RECORDS}", S3_RECORD)]
        return [_s3_record(r) for r in records]
    if "detail-type" in event or "detail" in event:
        return [_eventbridge(event)]
    if event.get("Event") == "s3:TestEvent":
        return [Unusable("S3 test event", S3_RECORD)]
    return [Unusable("not an EventBridge event or S3 notification (no detail-type, detail or Records)")]


def _eventbridge(event: dict[str, Any]) -> Parsed:
    source = event.get("source")
    if source is not None and source != "aws.s3":
        return Unusable(f"not an S3 event (source {str(source)[:100]!r})", EVENTBRIDGE)
    if event.get("detail-type") != OBJECT_CREATED:
        return Unusable(f"not an Object Created event (detail-type {str(event.get('detail-type'))[:100]!r})",
                        EVENTBRIDGE)
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return Unusable("EventBridge event without a detail object", EVENTBRIDGE)
    obj = detail.get("object")
    return _object(_get(detail, "bucket", "name"), obj, EVENTBRIDGE, unquote)


def _s3_record(record: Any) -> Parsed:
    if not isinstance(record, dict):
        return Unusable(f"record is not a JSON object but {type(record).__name__}", S3_RECORD)
    if "s3" not in record:
        source = record.get("eventSource") or record.get("EventSource")
        return Unusable(f"record is not an S3 notification (eventSource {str(source)[:100]!r})", S3_RECORD)
    name = record.get("eventName")
    if name is not None and not (isinstance(name, str) and name.removeprefix("s3:").startswith("ObjectCreated:")):
        return Unusable(f"not an object-created record (eventName {str(name)[:100]!r})", S3_RECORD)
    s3 = record["s3"]
    if not isinstance(s3, dict):
        return Unusable("record's s3 field is not a JSON object", S3_RECORD)
    return _object(_get(s3, "bucket", "name"), s3.get("object"), S3_RECORD, unquote_plus)


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)  # type: ignore[assignment]
    return d


def _object(bucket: Any, obj: Any, source: str, decode: Any) -> Parsed:
    if not isinstance(bucket, str) or not bucket:
        return Unusable("event has no bucket name", source)
    if not isinstance(obj, dict):
        return Unusable("event has no object", source, bucket=bucket)
    raw_key = obj.get("key")
    if not isinstance(raw_key, str) or not raw_key:
        return Unusable("event has no object key", source, bucket=bucket)
    key = decode(raw_key)
    size = obj.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        return Unusable(f"object size is not a whole number of bytes ({str(size)[:50]!r})", source, bucket, key)
    etag = obj.get("etag", obj.get("eTag"))
    if etag is not None and not isinstance(etag, str):
        return Unusable("object etag is not a string", source, bucket, key)
    return ObjectCreated(bucket=bucket, key=key, size=size, etag=etag.strip('"') if etag else None, source=source)
