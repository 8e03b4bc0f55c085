"""The completion event: "Session Transcript Ready", once per combine result, on an EventBridge bus.

    source       stt-router
    detail-type  Session Transcript Ready
    detail       SessionEvent below: event_id, session_id, status (combined | partial), bucket,
                 total_chunks, counts, failed chunks with reasons, duration_s, transcript_keys,
                 combined_at

Exactly once per combine result: a result is one write of `transcripts/<id>/session.json`, named by
its `created_at`, and `event_id` is derived from the session id and that time. After the event is
put, `transcripts/<id>/session.event.json` records its id. Every combine of a session (under the
session's combine lease, so one at a time) sends the event when that record does not name the
stored transcript's event yet: a combine that ran twice finds it and sends nothing; a worker that
died after writing the transcript but before the event leaves no record, and the redelivered combine
sends it. (Only a death between the put and the record's write, milliseconds, sends it twice; the
detail's `event_id` is the same then, for a consumer to drop the second.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field

from transcription import layout, storage
from transcription.errors import InvalidKeyError, NotFoundError, StorageError
from transcription.sessions import stored_session_transcript
from transcription.settings import Settings, get_settings
from transcription.transcript import SessionTranscript, utcnow

log = logging.getLogger(__name__)

SOURCE = "stt-router"
DETAIL_TYPE = "Session Transcript Ready"


class EventCounts(BaseModel):
    chunks: int = Field(description="chunks in the session transcript")
    transcribed: int
    failed: int
    missing: int


class EventFailedChunk(BaseModel):
    index: int
    status: Literal["failed", "missing"]
    reason: str | None = None


class SessionEvent(BaseModel):
    """The `detail` of a "Session Transcript Ready" event (and the body of a webhook)."""

    event_id: str = Field(description="the same for every delivery of this combine result")
    type: Literal["session.transcript.ready"] = "session.transcript.ready"
    session_id: str
    status: Literal["combined", "partial"]
    bucket: str
    title: str | None = None
    total_chunks: int
    counts: EventCounts
    failed: list[EventFailedChunk]
    duration_s: float = Field(description="seconds of audio in the session transcript")
    language: str | None = None
    transcript_keys: dict[str, str] = Field(description="format -> S3 key in `bucket`")
    combined_at: datetime


def event_id(session_id: str, combined_at: datetime) -> str:
    return "evt_" + hashlib.sha256(f"{session_id}|{combined_at.isoformat()}".encode()).hexdigest()[:32]


def session_event(bucket: str, t: SessionTranscript) -> SessionEvent:
    counts = {status: sum(1 for c in t.chunks if c.status == status) for status in ("transcribed", "failed", "missing")}
    return SessionEvent(
        event_id=event_id(t.session_id, t.created_at), session_id=t.session_id,
        status="partial" if t.partial else "combined", bucket=bucket, title=t.title, total_chunks=len(t.chunks),
        counts=EventCounts(chunks=len(t.chunks), **counts),
        failed=[EventFailedChunk(index=c.index, status=c.status, reason=c.reason) for c in t.chunks
                if c.status != "transcribed"],
        duration_s=t.duration, language=t.language,
        transcript_keys={fmt: layout.session_transcript_key(t.session_id, fmt) for fmt in layout.SESSION_FORMATS},
        combined_at=t.created_at,
    )


def record_key(session_id: str) -> str:
    """Where the id of the last event sent for the session is recorded."""
    return f"transcripts/{layout.validate_session_id(session_id)}/session.event.json"


@lru_cache(maxsize=8)
def _client(region: str, endpoint: str | None, pid: int) -> Any:
    return boto3.session.Session().client(
        "events", region_name=region, endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=30))


def events_client(settings: Settings | None = None) -> Any:
    s = settings or get_settings()
    endpoint = os.environ.get("AWS_ENDPOINT_URL_EVENTS") or s.aws_endpoint_url
    return _client(s.aws_region, endpoint, os.getpid())


def put_event(event: SessionEvent, *, settings: Settings | None = None) -> None:
    """PutEvents on EVENT_BUS_NAME; `StorageError` (retryable) when EventBridge refuses or fails."""
    s = settings or get_settings()
    entry = {"Source": SOURCE, "DetailType": DETAIL_TYPE, "Detail": event.model_dump_json(),
             "EventBusName": s.event_bus_name}
    try:
        out = events_client(s).put_events(Entries=[entry])
    except (ClientError, BotoCoreError) as e:
        raise StorageError(f"PutEvents on {s.event_bus_name}: {e}") from e
    if out.get("FailedEntryCount"):
        failed = out["Entries"][0]
        raise StorageError(f"PutEvents on {s.event_bus_name}: {failed.get('ErrorCode')} {failed.get('ErrorMessage')}")


def webhook_record_key(session_id: str, event_id: str) -> str:
    """Written once the event's webhook got a 2xx: later deliveries of it send nothing."""
    if not event_id.replace("_", "").isalnum():
        raise InvalidKeyError("an event id holds only letters, digits and '_'")
    return f"transcripts/{layout.validate_session_id(session_id)}/webhooks/{event_id}.json"


def sent_event_id(bucket: str, session_id: str, *, settings: Settings | None = None) -> str | None:
    try:
        return str(storage.get_json(bucket, record_key(session_id), settings=settings).get("event_id"))
    except NotFoundError:
        return None


def announce(bucket: str, session_id: str, *, on_event: Callable[[SessionEvent], None] | None = None,
             settings: Settings | None = None) -> SessionEvent | None:
    """Send the event for the stored session transcript unless it was sent; the event sent, or None.

    Puts it on `EVENT_BUS_NAME` (when set), then calls `on_event` (the combine queues the webhook
    there, when the manifest's `webhook_url` or `WEBHOOK_URL` names one), then records it. Call it
    under the session's combine lease, after every combine (written or not)."""
    s = settings or get_settings()
    if not s.event_bus_name and on_event is None:
        return None
    stored = stored_session_transcript(bucket, session_id, settings=s)
    if stored is None:
        return None
    event = session_event(bucket, stored)
    if sent_event_id(bucket, session_id, settings=s) == event.event_id:
        return None
    if s.event_bus_name:
        put_event(event, settings=s)
    if on_event is not None:
        on_event(event)
    storage.put_json(bucket, record_key(session_id), json.dumps(
        {"event_id": event.event_id, "sent_at": utcnow().isoformat(), "status": event.status}).encode(), settings=s)
    log.info("session_event_sent session=%s event_id=%s status=%s bus=%s webhook=%s", session_id, event.event_id,
             event.status, s.event_bus_name, on_event is not None)
    return event
