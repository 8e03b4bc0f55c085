"""`tasks.transcribe_chunk(bucket, key)`: one chunk from S3 to its transcript, exactly once.

Every delivery ends in one of three ways, so a chunk is never lost: transcribed (or skipped
because its transcript exists), failed with a reason (a failed record plus a dead letter), or
queued again (a retry with backoff, a wait for another worker's lease, or a redelivery after a
crash). Which way is decided here; the transcription itself is the shared chunk function.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from tasks import locks
from tasks.celery_app import TRANSCRIBE_TASK, app
from tasks.enqueue import send_dead_letter, trigger_combine
from tasks.retry import MAX_LEASE_WAITS, RetryLater, backoff_s, lease_wait_s
from transcription import layout, sessions, storage
from transcription.errors import InvalidKeyError, PermanentError, RetryableError
from transcription.settings import Settings, get_settings
from transcription.transcript import FailedChunk

log = logging.getLogger(__name__)


@app.task(bind=True, name=TRANSCRIBE_TASK, max_retries=None, Request="tasks.requests:ChunkRequest")
def transcribe_chunk(self, bucket: str, key: str, attempt: int = 1, lease_waits: int = 0,
                     force: bool = False) -> dict[str, Any]:
    """Transcribe `s3://bucket/key` once; see the module docstring for how a delivery can end."""
    try:
        return run_chunk(bucket, key, attempt=attempt, lease_waits=lease_waits, force=force,
                         task_id=self.request.id)
    except RetryLater as r:
        log.info("chunk_retry key=%s in=%.1fs reason=%s", key, r.countdown, r.reason)
        raise self.retry(kwargs={"attempt": attempt, "lease_waits": lease_waits, "force": force, **r.kwargs},
                         countdown=r.countdown) from None


def run_chunk(bucket: str, key: str, *, attempt: int = 1, lease_waits: int = 0, force: bool = False,
              task_id: str | None = None, settings: Settings | None = None,
              celery: Celery | None = None) -> dict[str, Any]:
    """The task's logic, callable without a worker; raises `RetryLater` to be queued again."""
    s = settings or get_settings()
    celery = celery or app
    started = time.time()
    try:
        chunk = layout.parse_chunk_key(key)
        layout.parse_s3_uri(f"s3://{bucket}/{key}")  # the bucket name too
    except InvalidKeyError as e:  # nothing to record under failed/: a dead letter only
        _dead_letter(bucket, key, e.kind, e.reason, attempt, task_id, s, celery)
        return {"status": "failed", "key": key, "error": e.kind, "reason": e.reason}
    result: dict[str, Any] = {"key": key, "transcript_key": chunk.transcript_key, "started_at": started}
    try:
        if storage.exists(bucket, chunk.transcript_key, settings=s):
            result["status"] = "skipped"
        elif not force and sessions.failed_record_is_current(bucket, chunk, settings=s):
            result["status"] = "already_failed"
        else:
            result.update(_transcribe_leased(bucket, chunk, attempt, lease_waits, task_id, s, celery, force))
    except RetryLater:
        raise
    except Exception as e:  # S3 or Redis trouble around the transcription: retry like any transient error
        result.update(_retry_or_fail(bucket, chunk, e, attempt, task_id, s, celery, force))
    result["finished_at"] = time.time()
    log.info("chunk_done key=%s status=%s", key, result["status"])
    if result["status"] in ("transcribed", "skipped", "failed", "duplicate"):
        _check_session(bucket, chunk.session_id, s, celery)
    return result


def _transcribe_leased(bucket: str, chunk: layout.ChunkKey, attempt: int, lease_waits: int, task_id: str | None,
                       s: Settings, celery: Celery, force: bool) -> dict[str, Any]:
    name = locks.chunk_name(bucket, chunk.key)
    lease = locks.Lease(name, s.lease_ttl_s, s)
    if not lease.acquire():
        if lease_waits >= MAX_LEASE_WAITS:  # its holder is alive and busy; its own message covers it
            return {"status": "left_to_lease_holder"}
        raise RetryLater(lease_wait_s(lease.remaining_s(), s), {"lease_waits": lease_waits + 1},
                         "another worker holds the lease")
    try:
        # again under the lease: a duplicate delivery may have waited for the one that just finished
        if storage.exists(bucket, chunk.transcript_key, settings=s):
            return {"status": "skipped"}
        if not force and sessions.failed_record_is_current(bucket, chunk, settings=s):
            return {"status": "already_failed"}
        starts = locks.count_start(name, s)
        limit = _max_receive_count(s)
        if starts >= limit:  # the previous deliveries all died mid-run (killed, out of memory, hard limit)
            death = locks.last_death(name, s) or "the worker was killed"
            reason = f"{starts - 1} earlier deliveries died without finishing (last: {death})"
            return _fail(bucket, chunk, "worker_lost", reason, starts, task_id, s, celery, force)
        log.info("chunk_start key=%s attempt=%d delivery=%d", chunk.key, attempt, starts)
        try:
            return _transcribe(bucket, chunk, s)
        except PermanentError as e:  # bad audio, missing object, bad option: never retried
            return _fail(bucket, chunk, e.kind, e.reason, attempt, task_id, s, celery, force)
        except SoftTimeLimitExceeded:
            return _fail(bucket, chunk, "time_limit", f"took longer than TASK_TIME_LIMIT_S={s.task_time_limit_s} s",
                         attempt, task_id, s, celery, force)
        except RetryLater:
            raise
        except Exception as e:
            return _retry_or_fail(bucket, chunk, e, attempt, task_id, s, celery, force)
    finally:
        locks.clear_starts(name, s)
        lease.release()


def _transcribe(bucket: str, chunk: layout.ChunkKey, s: Settings) -> dict[str, Any]:
    from transcription.chunk import transcribe_s3_chunk
    from transcription.engines import get_engine

    out = transcribe_s3_chunk(bucket, chunk.key, engine=get_engine(s), settings=s)
    if out.skipped:
        return {"status": "skipped"}
    if not out.written:  # another execution wrote first; ours was refused, not overwritten
        return {"status": "duplicate", "engine_s": out.transcript.processing_s}
    return {"status": "transcribed", "engine_s": out.transcript.processing_s, "audio_s": out.transcript.duration}


def _retry_or_fail(bucket: str, chunk: layout.ChunkKey, e: Exception, attempt: int, task_id: str | None,
                   s: Settings, celery: Celery, force: bool) -> dict[str, Any]:
    kind = e.kind if isinstance(e, RetryableError) else "internal"
    reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
    if attempt <= s.task_max_retries:
        if not isinstance(e, RetryableError):
            log.exception("chunk_error key=%s (retrying)", chunk.key)
        raise RetryLater(backoff_s(attempt, s), {"attempt": attempt + 1}, f"{kind}: {reason}")
    return _fail(bucket, chunk, kind, f"{reason} (gave up after {attempt} attempts)", attempt, task_id, s, celery,
                 force)


def _fail(bucket: str, chunk: layout.ChunkKey, error: str, reason: str, attempts: int, task_id: str | None,
          s: Settings, celery: Celery, force: bool) -> dict[str, Any]:
    """Record why the chunk has no transcript, and dead-letter it for a replay (once per failed upload:
    a duplicate delivery that failed too finds the record and sends no second dead letter)."""
    record = FailedChunk(session_id=chunk.session_id, chunk_index=chunk.index, source_key=chunk.key, error=error,
                         reason=reason, attempts=attempts)
    if not sessions.record_failure(bucket, chunk, record, replace=force, settings=s):
        return {"status": "already_failed", "failed_key": chunk.failed_key, "error": error, "reason": reason}
    _dead_letter(bucket, chunk.key, error, reason, attempts, task_id, s, celery)
    return {"status": "failed", "failed_key": chunk.failed_key, "error": error, "reason": reason}


def _dead_letter(bucket: str, key: str, error: str, reason: str, attempts: int, task_id: str | None,
                 s: Settings, celery: Celery) -> None:
    send_dead_letter(TRANSCRIBE_TASK, [bucket, key], error=error, reason=reason, attempts=attempts,
                     task_id=task_id, app=celery, settings=s)


_redrive_limit: dict[str, int | None] = {}


def _max_receive_count(s: Settings) -> int:
    """The SQS queue's own maxReceiveCount when it can be read (so both agree), else the setting."""
    if s.transcribe_queue not in _redrive_limit:
        from tasks.broker import redrive_max_receive_count

        _redrive_limit[s.transcribe_queue] = redrive_max_receive_count(s)
    return max(2, _redrive_limit[s.transcribe_queue] or s.max_receive_count)


def _check_session(bucket: str, session_id: str, s: Settings, celery: Celery) -> None:
    try:
        trigger_combine(bucket, session_id, app=celery, settings=s)
    except Exception as e:  # the beat sweeper combines sessions whose trigger was lost
        log.warning("completion_check_failed session=%s: %s", session_id, e)
