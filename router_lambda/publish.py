"""Queueing from the router: a light Celery producer (JSON only, no result backend, short timeouts).

Celery is imported only when the router has to queue (the first call of a function here): the direct
path, the common one, decides and calls the server without it, so a cold start that takes the direct
path pays for boto3 and urllib3 only (`bench/router.py` measures it; `tests/router/test_import.py`
holds it).

The app is the task system's configuration (`tasks.celery_app.celery_config`) with three changes
for a producer that must decide within a Lambda's time: no result backend (a send never touches
Redis), SQS calls that give up in seconds instead of botocore's minute, and few publish retries. A
send that fails raises, so the router fails the invocation and EventBridge delivers the event again.
With `SQS_QUEUE_URL` set (the deployment) kombu sends to that URL and creates or lists nothing:
`sqs:SendMessage` is the only SQS permission the router has.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from transcription.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

SQS_CLIENT_CONFIG = {"connect_timeout": 3, "read_timeout": 10, "retries": {"mode": "standard", "max_attempts": 3}}
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}

_apps: dict[tuple[Any, ...], Celery] = {}
_lock = threading.Lock()


def producer_config(settings: Settings) -> dict[str, Any]:
    from tasks.celery_app import celery_config, is_sqs  # Celery: only once the router queues

    conf = celery_config(settings)
    conf["result_backend"] = None  # DisabledBackend: publishing never connects to Redis
    transport = dict(conf["broker_transport_options"])
    if is_sqs(settings):
        transport["client-config"] = SQS_CLIENT_CONFIG
    conf["broker_transport_options"] = transport
    conf["task_publish_retry_policy"] = PUBLISH_RETRY_POLICY
    conf["broker_connection_timeout"] = 5
    return conf


def producer(settings: Settings) -> Celery:
    """The container's producer for these settings (its connection pool stays warm between events)."""
    from celery import Celery

    key = (settings.celery_broker_url, settings.transcribe_queue, settings.dead_letter_queue, settings.sqs_queue_url,
           settings.sqs_dlq_url, settings.aws_region, settings.aws_endpoint_url)
    with _lock:
        if key not in _apps:
            app = Celery("stt-router-lambda", set_as_current=False)
            app.config_from_object(producer_config(settings))
            _apps[key] = app
        return _apps[key]


def enqueue(bucket: str, key: str, etag: str | None, settings: Settings) -> str:
    """Queue `tasks.transcribe_chunk` with the upload's deterministic task id; raises if it cannot."""
    from tasks.celery_app import chunk_task_id
    from tasks.enqueue import enqueue_chunk

    return enqueue_chunk(bucket, key, task_id=chunk_task_id(bucket, key, etag), app=producer(settings),
                         settings=settings)


def dead_letter(bucket: str, key: str, etag: str | None, *, error: str, reason: str, attempts: int,
                settings: Settings) -> str:
    """Dead-letter a chunk the server refused as bad input, as the worker does for a queued one, so that
    `stt-router dlq list` shows every failed chunk and `dlq replay` can retry it once it is fixed."""
    from tasks.celery_app import TRANSCRIBE_TASK, chunk_task_id
    from tasks.enqueue import send_dead_letter

    task_id = chunk_task_id(bucket, key, etag)
    send_dead_letter(TRANSCRIBE_TASK, [bucket, key], error=error, reason=reason, attempts=attempts, task_id=task_id,
                     app=producer(settings), settings=settings)
    return task_id


def check_session(bucket: str, session_id: str, settings: Settings) -> bool:
    """The session-completion check (queues `combine_session` once when the session is complete)."""
    from tasks.enqueue import trigger_combine

    return trigger_combine(bucket, session_id, app=producer(settings), settings=settings)
