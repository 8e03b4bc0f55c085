"""`tasks.transcribe_chunk(bucket, key)`: one chunk from S3 to its transcript, exactly once.

Every delivery ends in one of three ways (`tasks.delivery`), so a chunk is never lost: transcribed
(or skipped because its transcript exists), failed with a reason (a failed record plus a dead
letter), or queued again (a retry with backoff, a wait for another worker's lease, or a redelivery
after a crash). Which way is decided here; the transcription itself is the shared chunk function.

Runs (`transcription/runs.py`): a delivery that holds its chunk's lease and finds the chunks after it
waiting too (a session's backlog: the server was down, or the drain sent it) leases them as well, one
by one, and transcribes them with its chunk in one engine call; their own messages then find the
transcripts and skip. Not on a replay (`force`), nor on a delivery after one that died (that chunk is
transcribed alone, so a chunk that kills its worker cannot take its neighbours down with it again).
`run_to` (the drain's one task per session backlog) goes on after the first run: run after run over
the session's chunks up to that index that are still waiting, skipping any another worker holds,
for at most half of TASK_TIME_LIMIT_S, then hands the rest to a new message.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from tasks import locks
from tasks.celery_app import TRANSCRIBE_TASK, app
from tasks.delivery import Delivery, Failure, RetryLater, retried_by
from tasks.enqueue import trigger_combine
from transcription import layout, runs, sessions, versions
from transcription.chunk import transcribe_s3_chunk
from transcription.engines import get_engine
from transcription.errors import InvalidKeyError, StreamHeaderPending
from transcription.settings import Settings, get_settings
from transcription.transcript import FailedChunk

log = logging.getLogger(__name__)


def _lease_names(bucket: str, key: str, *_: Any, **__: Any) -> list[str]:
    """What a delivery of `transcribe_chunk(bucket, key)` leases (for `tasks.requests.LeaseRequest`)."""
    return [locks.chunk_name(str(bucket), str(key))]


@app.task(bind=True, name=TRANSCRIBE_TASK, max_retries=None, Request="tasks.requests:LeaseRequest",
          lease_names=staticmethod(_lease_names))
def transcribe_chunk(self: Task, bucket: str, key: str, *, attempt: int = 1, lease_waits: int = 0,
                     force: bool = False, run_to: int | None = None) -> dict[str, Any]:
    """Transcribe `s3://bucket/key` once; see the module docstring for how a delivery can end.

    On the wire: args [bucket, key], kwargs `force` (a replay), `run_to` (the drain's session backlog)
    and the delivery's counters."""
    with retried_by(self, f"chunk_retry key={key}"):
        return run_chunk(bucket, key, attempt=attempt, lease_waits=lease_waits, force=force, run_to=run_to,
                         task_id=self.request.id)


def run_chunk(bucket: str, key: str, *, attempt: int = 1, lease_waits: int = 0, force: bool = False,
              run_to: int | None = None, task_id: str | None = None, settings: Settings | None = None,
              celery: Celery | None = None) -> dict[str, Any]:
    """The task's logic, callable without a worker; raises `RetryLater` to be queued again.

    `force` (a replay) transcribes a chunk even when this upload already has a failed record.
    """
    kwargs: dict[str, Any] = {"force": True} if force else {}
    if run_to is not None:
        kwargs["run_to"] = run_to
    delivery = Delivery(TRANSCRIBE_TASK, [bucket, key], kwargs, attempt=attempt,
                        lease_waits=lease_waits, task_id=task_id, settings=settings or get_settings(),
                        celery=celery or app)
    started_mono = time.monotonic()
    started = time.time()
    try:
        chunk = layout.parse_chunk_key(key)
        layout.parse_s3_uri(f"s3://{bucket}/{key}")  # the bucket name too
    except InvalidKeyError as e:  # nothing to record under failed/: a dead letter only
        delivery.dead_letter(Failure(e.kind, e.reason, attempt))
        return {"status": "failed", "key": key, "error": e.kind, "reason": e.reason}
    result: dict[str, Any] = {"key": key, "transcript_key": chunk.transcript_key, "started_at": started}
    try:
        result.update(_deliver(bucket, chunk, delivery, force, run_to))
    except RetryLater:
        raise
    except Exception as e:  # S3 or Redis trouble around the transcription: retried like any transient error
        result.update(_fail(bucket, chunk, delivery.failure(e), delivery, force))
    if run_to is not None and not force and result.pop("after_death", False):
        result["backlog"] = _hand_on_alone(bucket, chunk, chunk.index, run_to, delivery=delivery)
    elif run_to is not None and not force:
        try:
            result["backlog"] = _rest_of_backlog(bucket, chunk, max(chunk.index, result.get("run", [0, -1])[1]),
                                                 run_to, delivery=delivery, started=started_mono)
        except RetryLater:  # a chunk of the backlog retries, with `run_to`: its delivery goes on from there
            raise
        except Exception as e:  # S3 or Redis trouble between runs: the rest waits for its messages or the drain
            log.warning("backlog_stopped key=%s: %s", key, e)
            result["backlog"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    result["finished_at"] = time.time()
    log.info("chunk_done key=%s status=%s", key, result["status"])
    if result["status"] in ("transcribed", "skipped", "failed", "duplicate", "superseded"):
        _check_session(bucket, chunk.session_id, delivery.settings, delivery.celery)
    return result


def _deliver(bucket: str, chunk: layout.ChunkKey, delivery: Delivery, force: bool,
             run_to: int | None = None) -> dict[str, Any]:
    s = delivery.settings
    if done := _already_done(bucket, chunk, s, force):
        return done
    name = locks.chunk_name(bucket, chunk.key)
    with delivery.leases([name]) as claim:
        if claim.busy:
            delivery.wait_for_holders(claim, "another worker holds the lease")
            return {"status": "left_to_lease_holder"}
        # again under the lease: a duplicate delivery may have waited for the one that just finished
        if done := _already_done(bucket, chunk, s, force):
            return done
        starts, died = delivery.count_start(name)
        after_death = {"after_death": True} if starts > 1 else {}  # the backlog's rest goes on alone
        if died is not None:
            return {**_fail(bucket, chunk, died, delivery, force), **after_death}
        log.info("chunk_start key=%s attempt=%d delivery=%d", chunk.key, delivery.attempt, starts)
        try:
            if starts == 1 and not force and s.run_max_s > 0:
                return _transcribe_run(bucket, chunk, delivery, run_to)
            return {**_transcribe(bucket, chunk, s), **after_death}
        except SoftTimeLimitExceeded:
            failure = Failure("time_limit", f"took longer than TASK_TIME_LIMIT_S={s.task_time_limit_s} s",
                              delivery.attempt)
        except StreamHeaderPending as e:  # retried like any transient error, then left to the sweeper
            failure = delivery.failure(e)
            log.warning("chunk_waiting key=%s reason=%s", chunk.key, e.reason)
            return {"status": "waiting_for_header", **failure.as_dict()}  # pending: never failed for it
        except Exception as e:
            failure = delivery.failure(e)  # bad audio fails at once; a transient error is retried
        return _fail(bucket, chunk, failure, delivery, force)


def _already_done(bucket: str, chunk: layout.ChunkKey, s: Settings, force: bool) -> dict[str, Any] | None:
    if versions.chunk_is_transcribed(bucket, chunk, settings=s):  # of the audio uploaded last (hole 9)
        return {"status": "skipped"}
    if not force and sessions.failed_record_is_current(bucket, chunk, settings=s):
        return {"status": "already_failed"}
    return None


def _transcribe(bucket: str, chunk: layout.ChunkKey, s: Settings) -> dict[str, Any]:
    out = transcribe_s3_chunk(bucket, chunk.key, engine=get_engine(s), settings=s, via="queued")
    if out.skipped:
        return {"status": "skipped"}
    if out.superseded:  # uploaded again while this ran: that upload's own delivery transcribes it
        return {"status": "superseded", "engine_s": out.transcript.processing_s}
    if not out.written:  # another execution wrote first; ours was refused, not overwritten
        return {"status": "duplicate", "engine_s": out.transcript.processing_s}
    return {"status": "transcribed", "engine_s": out.transcript.processing_s, "audio_s": out.transcript.duration,
            **({"replaced": True} if out.replaced else {})}


def _transcribe_run(bucket: str, chunk: layout.ChunkKey, delivery: Delivery, run_to: int | None) -> dict[str, Any]:
    """The chunk with the session's backlog after it, in one engine call (`transcription/runs.py`),
    each following chunk leased here first; alone when nothing waits after it."""
    s = delivery.settings
    following = runs.backlog_after(bucket, chunk, last=run_to, settings=s)
    if not following:
        return _transcribe(bucket, chunk, s)
    with ExitStack() as held:
        def claim(c: layout.ChunkKey) -> bool:
            lease = locks.Lease(locks.chunk_name(bucket, c.key), s.lease_ttl_s, s)
            if not lease.acquire():
                return False  # another worker has it: the run ends before it
            held.callback(lease.release)
            return _already_done(bucket, c, s, False) is None  # done meanwhile: the run ends before it

        try:
            out = runs.transcribe_run(bucket, chunk, following, claim=claim, engine=get_engine(s), settings=s)
        except runs.StreamNotRun:  # a piece of a recorder's stream: the chunk function's way
            held.close()
            return _transcribe(bucket, chunk, s)
        for bad, error in out.failed:  # each bad chunk fails alone, with its own dead letter
            own = delivery if bad.key == chunk.key else Delivery(
                TRANSCRIBE_TASK, [bucket, bad.key], settings=s, celery=delivery.celery)
            _fail(bucket, bad, Failure(error.kind, error.reason, delivery.attempt), own, False)
    mine = next((r for r in out.runs if r[0] <= chunk.index <= r[1]), None)
    if chunk.index in out.transcribed:
        status = "transcribed"
    elif chunk.index in out.duplicates:
        status = "duplicate"
    else:
        status = "failed"
    log.info("run_delivered key=%s runs=%s transcribed=%d failed=%d", chunk.key, out.runs, len(out.transcribed),
             len(out.failed))
    return {"status": status, "run": [chunk.index, out.covered], **({"in_run": mine} if mine else {}),
            "chunks": len(out.transcribed), "failed_chunks": [c.index for c, _ in out.failed],
            "engine_s": round(out.engine_s, 3), "audio_s": round(out.audio_s, 3)}


def _rest_of_backlog(bucket: str, chunk: layout.ChunkKey, covered: int, run_to: int, *, delivery: Delivery,
                     started: float) -> dict[str, Any]:
    """The drain's session task goes on over the chunks up to `run_to` still waiting, run after run,
    skipping those another worker holds; after half the task's time limit a new message takes the rest."""
    s = delivery.settings
    budget = started + s.task_time_limit_s / 2
    done: list[str] = []
    while (nxt := runs.next_pending(bucket, chunk.session_id, after=covered, last=run_to, settings=s)) is not None:
        if time.monotonic() > budget:
            delivery.celery.send_task(TRANSCRIBE_TASK, args=[bucket, nxt.key], kwargs={"run_to": run_to},
                                      queue=s.transcribe_queue)
            return {"handed_on": nxt.key, "delivered": done}
        sub = Delivery(TRANSCRIBE_TASK, [bucket, nxt.key], {"run_to": run_to}, settings=s, celery=delivery.celery)
        with sub.leases([locks.chunk_name(bucket, nxt.key)]) as claim:
            if claim.busy:  # its holder transcribes it
                covered = nxt.index
                continue
            if _already_done(bucket, nxt, s, False) is None:
                starts, died = sub.count_start(locks.chunk_name(bucket, nxt.key))
                try:
                    if died is not None:  # earlier deliveries died on it: it fails as `worker_lost`
                        out = _fail(bucket, nxt, died, sub, False)
                    elif starts > 1:  # a run died on it before: alone this time
                        out = _transcribe(bucket, nxt, s)
                    else:
                        out = _transcribe_run(bucket, nxt, sub, run_to)
                except Exception as e:  # bad input fails at once; anything else retries that chunk's delivery
                    out = _fail(bucket, nxt, sub.failure(e), sub, False)
                done.append(f"{nxt.key}: {out['status']}")
                covered = max(nxt.index, out.get("run", [0, nxt.index])[1])
                if starts > 1:  # a delivery of this backlog died on it: the rest goes on alone
                    return {"delivered": done, **_hand_on_alone(bucket, nxt, covered, run_to, delivery=delivery)}
            else:
                covered = nxt.index
    return {"delivered": done}


def _hand_on_alone(bucket: str, chunk: layout.ChunkKey, covered: int, run_to: int, *,
                   delivery: Delivery) -> dict[str, Any]:
    """After a delivery of the drain's backlog task died, each chunk of the backlog still waiting gets a
    message of its own (`run_to` its own index: transcribed alone). A chunk that kills its worker then
    uses up its own deliveries and ends as `worker_lost`, instead of using up the one backlog message's
    (SQS's maxReceiveCount) while the chunks before it are done and it never gets a failed record."""
    s = delivery.settings
    sent: list[str] = []
    while (nxt := runs.next_pending(bucket, chunk.session_id, after=covered, last=run_to, settings=s)) is not None:
        delivery.celery.send_task(TRANSCRIBE_TASK, args=[bucket, nxt.key], kwargs={"run_to": nxt.index},
                                  queue=s.transcribe_queue)
        sent.append(nxt.key)
        covered = nxt.index
    if sent:
        log.info("backlog_handed_on_alone key=%s chunks=%d", chunk.key, len(sent))
    return {"handed_on_alone": sent}


def _fail(bucket: str, chunk: layout.ChunkKey, failure: Failure, delivery: Delivery, force: bool) -> dict[str, Any]:
    """Record why the chunk has no transcript, and dead-letter it for a replay (once per failed upload:
    a duplicate delivery that failed too finds the record and sends no second dead letter)."""
    record = FailedChunk(session_id=chunk.session_id, chunk_index=chunk.index, source_key=chunk.key,
                         error=failure.error, reason=failure.reason, attempts=failure.attempts)
    outcome = {"failed_key": chunk.failed_key, **failure.as_dict()}
    if not sessions.record_failure(bucket, chunk, record, replace=force, settings=delivery.settings):
        return {"status": "already_failed", **outcome}
    delivery.dead_letter(failure)
    return {"status": "failed", **outcome}


def _check_session(bucket: str, session_id: str, s: Settings, celery: Celery) -> None:
    try:
        trigger_combine(bucket, session_id, app=celery, settings=s)
    except Exception as e:  # the beat sweeper combines sessions whose trigger was lost
        log.warning("completion_check_failed session=%s: %s", session_id, e)
