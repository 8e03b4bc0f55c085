"""`tasks.combine_session(session_id)`: the session transcript, once, in every format.

Usable alone (`combine_session(session_id)`) and as a chord callback (`combine_session(results,
session_id)`: the header's results are ignored; the state in S3 is the truth). Guarded twice: a
Redis lease so only one combine of a session runs at a time, and the conditional write so a
duplicate can never overwrite the result.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from tasks import locks
from tasks.celery_app import COMBINE_TASK, WEBHOOK_TASK, app
from tasks.delivery import Delivery, RetryLater, retried_by
from transcription import events, layout, sessions
from transcription.errors import InvalidKeyError
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)


@app.task(bind=True, name=COMBINE_TASK, max_retries=None)
def combine_session(self: Task, *args: Any, bucket: str | None = None, force: bool = False, attempt: int = 1,
                    lease_waits: int = 0) -> dict[str, Any]:
    """Combine the session named by the last positional argument (see the module docstring)."""
    session_id = args[-1] if args else None
    with retried_by(self, f"combine_retry session={session_id}"):
        return run_combine(bucket, session_id, force=force, attempt=attempt, lease_waits=lease_waits,
                           task_id=self.request.id)


def run_combine(bucket: str | None, session_id: Any, *, force: bool = False, attempt: int = 1,
                lease_waits: int = 0, task_id: str | None = None, settings: Settings | None = None,
                celery: Celery | None = None) -> dict[str, Any]:
    """The task's logic, callable without a worker; raises `RetryLater` to be queued again."""
    s = settings or get_settings()
    bucket = bucket or s.s3_bucket
    try:
        if not isinstance(session_id, str):
            raise InvalidKeyError(f"session id must be a string, got {type(session_id).__name__}")
        layout.validate_session_id(session_id)
    except InvalidKeyError as e:
        log.error("combine_refused session=%r: %s", str(session_id)[:200], e.reason)
        return {"status": "invalid", "reason": e.reason}
    delivery = Delivery(COMBINE_TASK, [session_id], {"bucket": bucket, **({"force": True} if force else {})},
                        attempt=attempt, lease_waits=lease_waits, task_id=task_id, settings=s, celery=celery or app)
    try:
        with delivery.leases([locks.combine_name(bucket, session_id)]) as claim:
            if claim.busy:
                delivery.wait_for_holders(claim, "another combine of this session is running")
                return {"status": "left_to_lease_holder", "session_id": session_id}
            return _combine(bucket, session_id, force, s, delivery.celery)
    except RetryLater:
        raise
    except Exception as e:  # bad input fails at once; S3 or Redis trouble is retried with backoff
        failure = delivery.failure(e)
    log.error("combine_failed session=%s error=%s reason=%s", session_id, failure.error, failure.reason)
    delivery.dead_letter(failure)
    return {"status": "failed", "session_id": session_id, **failure.as_dict()}


def _combine(bucket: str, session_id: str, force: bool, s: Settings, celery: Celery) -> dict[str, Any]:
    status = sessions.session_status(bucket, session_id, settings=s)
    base = {"session_id": session_id, "transcribed": len(status.transcribed), "failed": len(status.failed)}
    if not status.complete and not force:
        log.info("combine_skipped session=%s: not complete (%d of %s chunks done)", session_id,
                 len(status.done), status.expected)
        return {**base, "status": "incomplete"}
    if status.combined and not sessions.should_combine(bucket, session_id, status=status, settings=s) and not force:
        return {**base, "status": "exists", **_announced(bucket, status, s, celery)}
    transcript = sessions.build_session_transcript(bucket, session_id, settings=s)
    written = sessions.write_session_transcript(bucket, transcript, replace=status.combined, settings=s)
    log.info("session_combined session=%s written=%s partial=%s chunks=%d", session_id, written,
             transcript.partial, len(transcript.chunks))
    return {**base, "status": "combined" if written else "exists", "partial": transcript.partial,
            "key": layout.session_transcript_key(session_id, "json"), **_announced(bucket, status, s, celery)}


def _announced(bucket: str, status: sessions.SessionStatus, s: Settings, celery: Celery) -> dict[str, Any]:
    """The completion event of the stored transcript, sent here unless it was (see `transcription.events`):
    after a combine that wrote it, and after one that found it (its writer may have died before sending).
    The webhook, to the manifest's `webhook_url` or else `WEBHOOK_URL`, is queued as its own task
    (`tasks/webhook.py`). A failure to send or queue raises: the combine is retried with backoff and
    sends it then."""
    url = (status.manifest.webhook_url if status.manifest else None) or s.webhook_url

    def queue_webhook(event: events.SessionEvent) -> None:
        celery.send_task(WEBHOOK_TASK, args=[event.model_dump(mode="json")], kwargs={"url": url},
                         queue=s.transcribe_queue)

    event = events.announce(bucket, status.session_id, on_event=queue_webhook if url else None, settings=s)
    return {"event_id": event.event_id} if event else {}
