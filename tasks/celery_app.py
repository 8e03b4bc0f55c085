"""The Celery app: broker, queues and delivery guarantees, all from the settings.

Light on purpose: a producer (the router Lambda) imports this module and calls
`app.send_task("tasks.transcribe_chunk", args=[bucket, key], queue="transcribe")`; nothing here
imports the engine, numpy, torch or FastAPI, and the task modules are imported only by a worker.

Delivery guarantees (docs/concepts/queued-path.md):
- JSON only, both ways: a message can never run code (a pickle message is refused and dropped).
- `acks_late` + `task_reject_on_worker_lost`: a chunk whose worker dies comes back (at once when
  a pool process dies, after the visibility timeout when the whole worker does).
- `task_acks_on_failure_or_timeout=False`: a hard time limit requeues, so the SQS redrive policy
  (maxReceiveCount) sees a chunk that never finishes and moves it to `transcribe-dlq`.
- prefetch 1: a GPU worker holds one chunk at a time; the rest stay visible to other workers.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery

from transcription.settings import Settings, get_settings

# Modules a worker imports to register its tasks (producers never import them).
INCLUDE = ["tasks.transcribe", "tasks.combine", "tasks.drain", "tasks.capacity", "tasks.webhook"]
TRANSCRIBE_TASK = "tasks.transcribe_chunk"
COMBINE_TASK = "tasks.combine_session"
WEBHOOK_TASK = "tasks.send_webhook"
# beat's tasks: run on CONTROL_QUEUE by `stt-router beat` (always on, no GPU), never by a GPU worker
DRAIN_TASK = "tasks.drain"
SWEEP_TASK = "tasks.sweep_sessions"
SCALE_TASK = "tasks.scale_workers"
CONTROL_TASKS = (DRAIN_TASK, SWEEP_TASK, SCALE_TASK)
# what `stt-router dlq replay` may send again (a dead letter naming any other task never is)
REPLAYABLE_TASKS = frozenset({TRANSCRIBE_TASK, COMBINE_TASK, WEBHOOK_TASK})

# kombu SQS: a long poll of 10 s when idle (one request per ~10 s per idle worker), and a short
# client-side pause between polls so a worker that just finished a chunk asks for the next one at once.
SQS_WAIT_TIME_S = 10
SQS_POLLING_INTERVAL_S = 0.05


def is_sqs(settings: Settings) -> bool:
    return settings.celery_broker_url.startswith("sqs")


def predefined_queues(settings: Settings) -> dict[str, dict[str, str]]:
    """Production queue URLs (`SQS_QUEUE_URL`, `SQS_DLQ_URL`): kombu then creates and lists nothing."""
    if not settings.sqs_queue_url:
        return {}
    queues = {settings.transcribe_queue: {"url": settings.sqs_queue_url}}
    if settings.sqs_dlq_url:
        queues[settings.dead_letter_queue] = {"url": settings.sqs_dlq_url}
    if settings.sqs_control_queue_url:
        queues[settings.control_queue] = {"url": settings.sqs_control_queue_url}
    return queues


def soft_time_limit(settings: Settings) -> int:
    """The soft limit lets a task record why it stopped; the hard limit follows a little later."""
    grace = min(60, max(1, settings.task_time_limit_s // 10))
    return max(1, settings.task_time_limit_s - grace)


def celery_config(settings: Settings) -> dict[str, Any]:
    s = settings
    sqs = is_sqs(s)
    transport: dict[str, Any] = {"visibility_timeout": s.visibility_timeout_s}
    if sqs:
        transport.update(region=s.aws_region, wait_time_seconds=SQS_WAIT_TIME_S,
                         polling_interval=SQS_POLLING_INTERVAL_S)
        if queues := predefined_queues(s):
            transport["predefined_queues"] = queues
    else:
        # a live worker puts back messages whose consumer died once the visibility timeout passed;
        # sweep often enough that this happens close to the timeout (kombu's default is ~100 s)
        transport.update(socket_timeout=30, socket_connect_timeout=10, retry_on_timeout=True,
                         unacked_restore_interval=max(1, min(10, s.visibility_timeout_s // 5)),
                         unacked_restore_throttle=1)
    return {
        "broker_url": s.celery_broker_url,
        "result_backend": s.celery_result_backend,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"socket_timeout": 30, "socket_connect_timeout": 10},
        # JSON only, in both directions
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        # one queue for chunk and session tasks; the dead-letter queue is written explicitly
        "task_default_queue": s.transcribe_queue,
        "task_routes": {**{name: {"queue": s.control_queue} for name in CONTROL_TASKS},
                        "tasks.*": {"queue": s.transcribe_queue}},
        # never lose a chunk
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": False,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_time_limit": s.task_time_limit_s,
        "task_soft_time_limit": soft_time_limit(s),
        "worker_concurrency": s.worker_concurrency,
        "worker_proc_alive_timeout": s.worker_proc_alive_timeout_s,
        # keep trying through broker or Redis outages instead of exiting
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "result_expires": 7 * 24 * 3600,
        # SQS has no broadcast: remote control would declare fanout queues it cannot serve
        "worker_enable_remote_control": not sqs,
        "enable_utc": True,
        "timezone": s.timezone,
    }


def make_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured from `settings` (tests and tools that need their own)."""
    app = Celery("stt-router", include=INCLUDE, set_as_current=False)
    app.config_from_object(celery_config(settings or get_settings()))
    return app


# The process's app. Its configuration is read from the settings when first used, not at import.
app = Celery("stt-router", include=INCLUDE)
app.add_defaults(lambda: celery_config(get_settings()))


def chunk_task_id(bucket: str, key: str, etag: str | None = None) -> str:
    """A deterministic task id for one upload of a chunk (the same event twice -> the same id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket}/{key}#{etag or ''}"))
