"""The midnight drain and the session sweeper: beat's two jobs on the bucket.

`tasks.drain` finds every chunk with neither a transcript nor a failed record (three listings of
the bucket by the key layout), asks for GPU capacity for that backlog, then sends one chord per
session: `chord(group(one run task for the session's backlog), combine_session)` (the run task is
`transcribe_chunk` of its first waiting chunk with `run_to`, see `tasks/transcribe.py`; with
`RUN_MAX_S=0` one task per missing chunk). Safe to run while
some of those chunks are already queued (by the router, or by an earlier drain): a chunk task skips
a chunk whose transcript exists and waits out another delivery's lease, so no chunk is transcribed
twice, and every chunk task returns normally (a bad chunk returns "failed" after writing its failed
record), so the chord always completes and the session is combined, as `partial` if need be.
The callback is immutable (`.si`): the header's results never travel through SQS (256 KiB limit);
`combine_session` reads the session's state from S3. A session without `total_chunks` in its
manifest is still open: its chunks are transcribed and the combine answers "incomplete".

`tasks.sweep_sessions` heals lost triggers: a session whose manifest says it has ended, whose
chunks are all transcribed or failed, and which has no session transcript gets its combine queued
(`trigger_combine`, the same once-only check the chunk tasks use).

Both run on `CONTROL_QUEUE`, consumed by `stt-router beat`, never by a GPU worker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery, chord

from tasks import locks
from tasks.broker import queue_depth
from tasks.capacity import apply_capacity, wanted_workers
from tasks.celery_app import COMBINE_TASK, DRAIN_TASK, SWEEP_TASK, TRANSCRIBE_TASK, app
from tasks.enqueue import trigger_combine
from transcription import layout, storage
from transcription.errors import RetryableError, TranscriptionError
from transcription.manifest import load_manifest
from transcription.sessions import list_sessions
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)

DRAIN_RETRIES = 5
DRAIN_RETRY_S = 60


def find_backlog(bucket: str, settings: Settings | None = None) -> dict[str, list[str]]:
    """session id -> audio keys of chunks with neither a transcript nor a failed record.

    Three paginated listings (`sessions/`, `transcripts/`, `failed/`) instead of three per session.
    As in `sessions.session_status`, the first key listed for an index is the chunk.
    """
    s = settings or get_settings()
    uploaded: dict[tuple[str, int], str] = {}
    for chunk in layout.chunk_keys(storage.list_keys(bucket, "sessions/", settings=s)):
        uploaded.setdefault((chunk.session_id, chunk.index), chunk.key)
    done = {(d.session_id, d.index) for prefix in ("transcripts/", "failed/")
            for d in layout.done_keys(storage.list_keys(bucket, prefix, settings=s))}
    backlog: dict[str, list[str]] = {}
    for (session_id, index), key in sorted(uploaded.items()):
        if (session_id, index) not in done:
            backlog.setdefault(session_id, []).append(key)
    return backlog


def session_chord(bucket: str, session_id: str, keys: list[str], celery: Celery, s: Settings) -> Any:
    """chord(group(one run task for the backlog), combine_session.si(session_id)), not yet sent.

    The run task is `transcribe_chunk` of the first waiting chunk with `run_to` the last one's index:
    it transcribes the backlog in runs of at most RUN_MAX_S (`transcription/runs.py`). With
    RUN_MAX_S=0, one `transcribe_chunk` per chunk."""
    if s.run_max_s > 0 and keys:
        last = max(layout.parse_chunk_key(k).index for k in keys)
        header = [celery.signature(TRANSCRIBE_TASK, args=[bucket, keys[0]], kwargs={"run_to": last},
                                   queue=s.transcribe_queue)]
    else:
        header = [celery.signature(TRANSCRIBE_TASK, args=[bucket, key], queue=s.transcribe_queue) for key in keys]
    body = celery.signature(COMBINE_TASK, args=[session_id], kwargs={"bucket": bucket}, queue=s.transcribe_queue,
                            immutable=True)
    return chord(header, body, app=celery)


def run_drain(bucket: str | None = None, *, dry_run: bool = False, settings: Settings | None = None,
              celery: Celery | None = None) -> dict[str, Any]:
    """The drain's logic, callable without a worker (`stt-router drain --now`); returns its summary."""
    s = settings or get_settings()
    celery = celery or app
    bucket = bucket or s.s3_bucket
    started = time.monotonic()
    lease = locks.Lease(locks.drain_name(bucket), s.lease_ttl_s, s)
    if not dry_run and not lease.acquire():
        log.info("drain_skipped bucket=%s: another drain is running", bucket)
        return {"status": "already_running", "bucket": bucket}
    try:
        backlog = find_backlog(bucket, s)
        chunks = sum(len(keys) for keys in backlog.values())
        try:
            depth = queue_depth(s.transcribe_queue, s)
            visible, in_flight = depth.waiting, depth.in_flight
        except TranscriptionError as e:  # the listing alone still sizes the fleet
            log.warning("drain: queue depth unknown (%s); sizing from the listing", e.reason)
            visible, in_flight = 0, 0
        wanted = wanted_workers(max(chunks, visible), in_flight, s)
        capacity: dict[str, Any]
        if dry_run:
            capacity = {"mode": s.capacity_mode, "wanted": wanted, "dry_run": True}
        else:
            try:
                capacity = apply_capacity(wanted, allow_down=False, settings=s)
            except TranscriptionError as e:  # queue the chunks anyway: they wait for capacity, never lost
                log.error("drain_capacity_failed mode=%s reason=%s", s.capacity_mode, e.reason)
                capacity = {"mode": s.capacity_mode, "wanted": wanted, "error": e.reason}
        chords: dict[str, str] = {}
        if not dry_run:
            for session_id, keys in backlog.items():
                chords[session_id] = session_chord(bucket, session_id, keys, celery, s).apply_async().id
                log.info("drain_session session=%s chunks=%d chord=%s", session_id, len(keys), chords[session_id])
        summary = {
            "status": "dry_run" if dry_run else "drained", "bucket": bucket, "sessions": len(backlog),
            "chunks": chunks, "queue": {"visible": visible, "in_flight": in_flight}, "capacity": capacity,
            "chords": chords, "backlog": {sid: len(keys) for sid, keys in backlog.items()},
            "took_s": round(time.monotonic() - started, 3),
        }
        log.info("drain_done bucket=%s sessions=%d chunks=%d wanted=%d capacity=%s took=%.1fs%s", bucket,
                 len(backlog), chunks, wanted, capacity, summary["took_s"], " (dry run)" if dry_run else "")
        return summary
    finally:
        if not dry_run:
            lease.release()


class _SweepMemo:
    """What earlier sweeps learnt, in Redis, so a sweep costs S3 requests only for live sessions.

    Without it every sweep would GET every session's manifest ever uploaded (a year of sessions
    every 5 minutes soon costs more in S3 requests than the GPUs). A combined session is never
    looked at again (a replayed chunk re-combines through its own trigger); a session without
    `total_chunks` is looked at again after `OPEN_RECHECK_S` (a lost manifest trigger heals then).
    Without Redis every session is checked, as before.
    """

    OPEN_RECHECK_S = 3600

    def __init__(self, bucket: str, s: Settings) -> None:
        self.combined_key = f"{locks.PREFIX}swept:combined:{bucket}"
        self.open_prefix = f"{locks.PREFIX}swept:open:{bucket}/"
        self.s = s
        try:
            self.combined: set[str] = set(locks.redis_client(s).smembers(self.combined_key))
            self.redis = True
        except Exception as e:
            log.warning("sweep without its Redis memo (%s): checking every session", e)
            self.combined, self.redis = set(), False

    def skip(self, session_id: str) -> bool:
        if session_id in self.combined:
            return True
        if not self.redis:
            return False
        try:
            return bool(locks.redis_client(self.s).exists(self.open_prefix + session_id))
        except Exception:
            return False

    def remember(self, session_id: str, combined: bool) -> None:
        if not self.redis:
            return
        try:
            r = locks.redis_client(self.s)
            if combined:
                r.sadd(self.combined_key, session_id)
            else:
                r.set(self.open_prefix + session_id, "1", ex=self.OPEN_RECHECK_S)
        except Exception as e:  # only the next sweep's cost depends on it
            log.info("sweep memo not written (%s)", e)


def run_sweep(bucket: str | None = None, *, settings: Settings | None = None,
              celery: Celery | None = None) -> dict[str, Any]:
    """Queue the combine of every ended, fully done, uncombined session; returns a summary."""
    s = settings or get_settings()
    celery = celery or app
    bucket = bucket or s.s3_bucket
    memo = _SweepMemo(bucket, s)
    checked, skipped, triggered, errors = 0, 0, [], {}
    for session_id in list_sessions(bucket, settings=s):
        if memo.skip(session_id):
            skipped += 1
            continue
        try:
            manifest = load_manifest(bucket, session_id, settings=s)
            if manifest is None or manifest.total_chunks is None:
                memo.remember(session_id, combined=False)
                if manifest is not None and manifest.invalid:  # the recorder's to fix: say so every hour
                    errors[session_id] = f"manifest invalid: {manifest.invalid}"
                    log.warning("sweep_manifest_invalid session=%s reason=%s", session_id, manifest.invalid)
                continue  # still open: nothing to combine yet
            if storage.exists(bucket, layout.session_transcript_key(session_id, "json"), settings=s):
                memo.remember(session_id, combined=True)
                continue
            checked += 1
            if trigger_combine(bucket, session_id, app=celery, settings=s):
                triggered.append(session_id)
        except TranscriptionError as e:  # one session's trouble must not stop the sweep
            errors[session_id] = e.reason
            log.warning("sweep_error session=%s reason=%s", session_id, e.reason)
    summary = {"bucket": bucket, "ended_uncombined": checked, "skipped": skipped, "triggered": triggered,
               "errors": errors}
    log.info("sweep_done bucket=%s ended_uncombined=%d skipped=%d triggered=%d errors=%d", bucket, checked,
             skipped, len(triggered), len(errors))
    return summary


@app.task(bind=True, name=DRAIN_TASK, max_retries=DRAIN_RETRIES, acks_on_failure_or_timeout=True,
          soft_time_limit=2 * 3600 - 60, time_limit=2 * 3600)
def drain(self, bucket: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """At DRAIN_HOUR:DRAIN_MINUTE in TIMEZONE (and by `stt-router drain`): see the module docstring."""
    try:
        return run_drain(bucket, dry_run=bool(dry_run))
    except RetryableError as e:  # S3 or Redis trouble while listing: try again in a minute
        log.warning("drain_retry reason=%s", e.reason)
        raise self.retry(countdown=DRAIN_RETRY_S, exc=e) from None


@app.task(name=SWEEP_TASK, ignore_result=True, acks_on_failure_or_timeout=True)
def sweep_sessions(bucket: str | None = None) -> dict[str, Any]:
    """Every SWEEP_INTERVAL_S: combine sessions whose completion trigger was lost."""
    try:
        return run_sweep(bucket)
    except TranscriptionError as e:  # the listing failed: the next sweep tries again
        log.error("sweep_failed reason=%s", e.reason)
        return {"status": "error", "reason": e.reason}
