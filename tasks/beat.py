"""`stt-router beat`: beat (RedBeat, with its lock) and the small worker that runs beat's tasks.

One always-on process without a GPU: a Celery worker consuming only `CONTROL_QUEUE` (drain,
sweeper, scaler; prefork, 2 processes so a long drain never delays the scaler) with beat embedded
as a child process. Run it on two machines for a standby: RedBeat's Redis lock lets one beat send
while the other waits for the lock, and both workers share the control queue. If the beat child
dies (e.g. it lost its lock during a Redis outage), the whole process exits non-zero so its
supervisor restarts it, rather than living on as a worker without a beat.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any

from transcription.settings import Settings, get_settings

log = logging.getLogger("beat")

BEAT_WATCH_INTERVAL_S = 2.0


class BeatSettingsError(Exception):
    """Settings beat cannot run with; the message says which and why."""


def prepare(s: Settings) -> None:
    """Refuse bad settings; create the SQS queues when they are not predefined."""
    from beat_schedule import check
    from tasks.broker import _create_or_update, ensure_queues, sqs_client
    from tasks.celery_app import is_sqs, predefined_queues

    problems = check(s)
    if is_sqs(s) and predefined_queues(s) and not s.sqs_control_queue_url:
        problems.append(f"SQS_QUEUE_URL is set but SQS_CONTROL_QUEUE_URL is not: the control queue "
                        f"{s.control_queue!r} must be predefined too")
    if problems:
        raise BeatSettingsError("; ".join(problems))
    if is_sqs(s) and not predefined_queues(s):
        ensure_queues(s)  # the drain publishes to `transcribe`: give it its redrive policy first
        _create_or_update(sqs_client(s), s.control_queue, {"VisibilityTimeout": str(s.visibility_timeout_s)})


def _watch_beat(worker: Any, died: threading.Event, stopping: threading.Event) -> None:
    """Stop the worker (SIGTERM to this process: a warm shutdown) when the embedded beat has died."""
    while not stopping.wait(BEAT_WATCH_INTERVAL_S):
        beat = getattr(worker, "beat", None)
        if beat is None or getattr(beat, "pid", None) is None or beat.is_alive():
            continue
        if stopping.is_set():  # the worker is stopping and took beat with it
            return
        log.error("beat_died exitcode=%s: stopping so that a supervisor restarts beat", beat.exitcode)
        died.set()
        os.kill(os.getpid(), signal.SIGTERM)
        return


def run_beat(*, concurrency: int = 2, loglevel: str = "INFO", hostname: str | None = None) -> int:
    """Run beat and the control worker in this process until stopped; the exit code."""
    from celery import signals

    from beat_schedule import beat_config
    from tasks.celery_app import app, is_sqs

    s = get_settings()
    prepare(s)
    app.conf.update(beat_config(s))
    from gpu_worker.events import events_over_redis

    redis_events = events_over_redis(s)  # on SQS, task events for Flower go over Redis, as a GPU worker's do
    worker = app.Worker(
        consumer_cls="gpu_worker.events:RedisEventsConsumer" if redis_events else None,
        task_events=s.task_events_redis,
        hostname=hostname or f"beat@{socket.gethostname()}",
        pool_cls="prefork",
        concurrency=concurrency,
        queues=[s.control_queue],
        loglevel=loglevel,
        beat=True,
        scheduler="redbeat.RedBeatScheduler",
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=is_sqs(s) and not redis_events,
    )
    died, stopping = threading.Event(), threading.Event()

    def _stopping(**_: Any) -> None:
        stopping.set()

    def _beat_started(**_: Any) -> None:  # in the beat child: its pid, for operators (and the tests)
        log.info("beat_process pid=%d", os.getpid())

    signals.worker_shutting_down.connect(_stopping, weak=False)
    signals.beat_embedded_init.connect(_beat_started, weak=False)
    threading.Thread(target=_watch_beat, args=(worker, died, stopping), name="beat-watch", daemon=True).start()
    try:
        worker.start()
    finally:
        stopping.set()
    return 1 if died.is_set() else (worker.exitcode or 0)
