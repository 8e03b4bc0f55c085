"""`tasks.combine_session(session_id)`: the session transcript, once, in every format.

Usable alone (`combine_session(session_id)`) and as a chord callback (`combine_session(results,
session_id)`: the header's results are ignored; the state in S3 is the truth). Guarded twice: a
Redis lease so only one combine of a session runs at a time, and the conditional write so a
duplicate can never overwrite the result.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from tasks import locks
from tasks.celery_app import COMBINE_TASK, app
from tasks.enqueue import send_dead_letter
from tasks.retry import MAX_LEASE_WAITS, RetryLater, backoff_s, lease_wait_s
from transcription import layout, sessions
from transcription.errors import InvalidKeyError, PermanentError
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)


@app.task(bind=True, name=COMBINE_TASK, max_retries=None)
def combine_session(self, *args: Any, bucket: str | None = None, force: bool = False, attempt: int = 1,
                    lease_waits: int = 0) -> dict[str, Any]:
    """Combine the session named by the last positional argument (see the module docstring)."""
    session_id = args[-1] if args else None
    try:
        return run_combine(bucket, session_id, force=force, attempt=attempt, lease_waits=lease_waits,
                           task_id=self.request.id)
    except RetryLater as r:
        log.info("combine_retry session=%s in=%.1fs reason=%s", session_id, r.countdown, r.reason)
        raise self.retry(args=[session_id], kwargs={"bucket": bucket, "force": force, "attempt": attempt,
                                                    "lease_waits": lease_waits, **r.kwargs},
                         countdown=r.countdown) from None


def run_combine(bucket: str | None, session_id: Any, *, force: bool = False, attempt: int = 1,
                lease_waits: int = 0, task_id: str | None = None, settings: Settings | None = None,
                celery: Celery | None = None) -> dict[str, Any]:
    """The task's logic, callable without a worker; raises `RetryLater` to be queued again."""
    s = settings or get_settings()
    celery = celery or app
    bucket = bucket or s.s3_bucket
    try:
        if not isinstance(session_id, str):
            raise InvalidKeyError(f"session id must be a string, got {type(session_id).__name__}")
        layout.validate_session_id(session_id)
    except InvalidKeyError as e:
        log.error("combine_refused session=%r: %s", str(session_id)[:200], e.reason)
        return {"status": "invalid", "reason": e.reason}
    lease = locks.Lease(f"combine:{bucket}/{session_id}", s.lease_ttl_s, s)
    try:
        if not lease.acquire():
            if lease_waits >= MAX_LEASE_WAITS:
                return {"status": "left_to_lease_holder", "session_id": session_id}
            raise RetryLater(lease_wait_s(lease.remaining_s(), s), {"lease_waits": lease_waits + 1},
                             "another combine of this session is running")
        try:
            return _combine(bucket, session_id, force, s)
        finally:
            lease.release()
    except RetryLater:
        raise
    except PermanentError as e:
        return _fail(bucket, session_id, e.kind, e.reason, attempt, task_id, s, celery)
    except Exception as e:  # S3 or Redis trouble: retry with backoff, then dead-letter
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
        if attempt <= s.task_max_retries:
            raise RetryLater(backoff_s(attempt, s), {"attempt": attempt + 1}, reason) from e
        return _fail(bucket, session_id, getattr(e, "kind", "internal"), f"{reason} (gave up after {attempt} attempts)",
                     attempt, task_id, s, celery)


def _combine(bucket: str, session_id: str, force: bool, s: Settings) -> dict[str, Any]:
    status = sessions.session_status(bucket, session_id, settings=s)
    base = {"session_id": session_id, "transcribed": len(status.transcribed), "failed": len(status.failed)}
    if not status.complete and not force:
        log.info("combine_skipped session=%s: not complete (%d of %s chunks done)", session_id,
                 len(status.done), status.expected)
        return {**base, "status": "incomplete"}
    if status.combined and not sessions.should_combine(bucket, session_id, status=status, settings=s) and not force:
        return {**base, "status": "exists"}
    transcript = sessions.build_session_transcript(bucket, session_id, settings=s)
    written = sessions.write_session_transcript(bucket, transcript, replace=status.combined, settings=s)
    log.info("session_combined session=%s written=%s partial=%s chunks=%d", session_id, written,
             transcript.partial, len(transcript.chunks))
    return {**base, "status": "combined" if written else "exists", "partial": transcript.partial,
            "key": layout.session_transcript_key(session_id, "json")}


def _fail(bucket: str, session_id: str, error: str, reason: str, attempts: int, task_id: str | None,
          s: Settings, celery: Celery) -> dict[str, Any]:
    log.error("combine_failed session=%s error=%s reason=%s", session_id, error, reason)
    send_dead_letter(COMBINE_TASK, [session_id], {"bucket": bucket}, error=error, reason=reason, attempts=attempts,
                     task_id=task_id, app=celery, settings=s)
    return {"status": "failed", "session_id": session_id, "error": error, "reason": reason}
