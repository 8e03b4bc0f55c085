"""Publishing: chunks to `transcribe`, dead letters to `transcribe-dlq`, and the combine trigger.

Light (no engine, no task modules): the router, beat and the CLI import it. Everything is sent by
task name with JSON, the only serializer the app accepts.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from celery import Celery

from tasks import locks
from tasks.celery_app import COMBINE_TASK, TRANSCRIBE_TASK
from tasks.celery_app import app as default_app
from transcription import sessions
from transcription.errors import NetworkError
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)

DEAD_LETTER_HEADER = "dead_letter"


def _app(app: Celery | None) -> Celery:
    return app if app is not None else default_app


def enqueue_chunk(bucket: str, key: str, *, task_id: str | None = None, force: bool = False,
                  app: Celery | None = None, settings: Settings | None = None) -> str:
    """Queue `tasks.transcribe_chunk(bucket, key)`; returns the task id.

    `force` transcribes even a chunk with a failed record (a replay); a transcribed chunk is
    never transcribed again.
    """
    s = settings or get_settings()
    task_id = task_id or str(uuid.uuid4())
    _app(app).send_task(TRANSCRIBE_TASK, args=[bucket, key], kwargs={"force": True} if force else {},
                        task_id=task_id, queue=s.transcribe_queue)
    return task_id


def send_dead_letter(task: str, args: list[Any], kwargs: dict[str, Any] | None = None, *, error: str,
                     reason: str, attempts: int, task_id: str | None = None, app: Celery | None = None,
                     settings: Settings | None = None) -> None:
    """Put a task on the dead-letter queue with why it is there (`stt-router dlq list` shows it)."""
    s = settings or get_settings()
    letter = {"error": error, "reason": reason[:2000], "attempts": attempts,
              "at": datetime.now(UTC).isoformat(timespec="seconds")}
    _app(app).send_task(task, args=args, kwargs=kwargs or {}, task_id=task_id or str(uuid.uuid4()),
                        queue=s.dead_letter_queue, headers={DEAD_LETTER_HEADER: letter})
    log.warning("dead_letter task=%s args=%s error=%s reason=%s", task, args, error, reason[:300])


def trigger_combine(bucket: str, session_id: str, *, app: Celery | None = None,
                    settings: Settings | None = None) -> bool:
    """The session-completion check, and `combine_session` queued once if it says so.

    Called after every chunk (either path) and on a manifest upload. A Redis `SET NX` flag per
    (session, chunks done, chunk transcript versions) sends one task however many callers race;
    `combine_session` is guarded again by its own lock and the conditional write, so a duplicate
    would still give one result.
    """
    s = settings or get_settings()
    if sessions.load_manifest(bucket, session_id, settings=s) is None:
        return False
    status = sessions.session_status(bucket, session_id, settings=s)
    if not sessions.should_combine(bucket, session_id, status=status, settings=s):
        return False
    # per set of chunk transcripts: a re-uploaded chunk's new transcript is a new combine (hole 9)
    fingerprint = f"combine:{bucket}/{session_id}:{len(status.transcribed)}:{len(status.failed)}:{status.versions}"
    flagged = False
    try:
        if not locks.set_once(fingerprint, max(60, s.visibility_timeout_s), settings=s):
            log.info("combine_already_triggered session=%s", session_id)
            return False
        flagged = True
    except (ImportError, NetworkError) as e:  # no Redis here (on the router, no redis package):
        # the combine's own guard suffices
        log.info("combine trigger without a Redis flag (%s)", e)
    try:
        _app(app).send_task(COMBINE_TASK, args=[session_id], kwargs={"bucket": bucket}, queue=s.transcribe_queue)
    except Exception:  # not sent: the flag must not claim it was, or the caller's retry sends nothing
        if flagged:
            locks.clear_once(fingerprint, settings=s)
        raise
    log.info("combine_triggered session=%s transcribed=%d failed=%d", session_id, len(status.transcribed),
             len(status.failed))
    return True

