"""Task events and heartbeats over Redis, so Flower sees workers that consume from SQS (the GPU
workers and beat's control worker: both start their worker with `worker_event_options`).

SQS has no fanout, so a worker on the SQS broker cannot publish Celery's monitoring events there
(and Flower's maintainers do not support it). With `TASK_EVENTS_REDIS` the worker's `Events`
consumer step gets its dispatcher connection from Redis (`REDIS_URL`) instead of the broker: the
step calls `Consumer.connection_for_write()` for exactly that connection, so overriding that one
method moves task events and heartbeats, and nothing else, to Redis. Flower then runs with
`--broker <REDIS_URL>` (`stt-router flower`) and lists every task run from the SQS queue.
Remote control (Flower's inspect/revoke buttons) still needs a broadcast SQS lacks.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer

from tasks.celery_app import is_sqs
from transcription.settings import Settings, get_settings

# kombu's Redis transport options for the events connection (the app's own options are SQS's)
EVENTS_TRANSPORT_OPTIONS = {"socket_timeout": 10, "socket_connect_timeout": 5, "retry_on_timeout": True}


def events_over_redis(settings: Settings) -> bool:
    """Whether events take their own Redis connection: only when the broker itself cannot carry them."""
    return settings.task_events_redis and not settings.celery_broker_url.startswith(("redis", "rediss"))


def events_broker_url(settings: Settings | None = None) -> str:
    """Where task events travel, i.e. the broker Flower must read: Redis with SQS, else the broker."""
    s = settings or get_settings()
    return s.redis_url if events_over_redis(s) else s.celery_broker_url


def worker_event_options(settings: Settings) -> dict[str, Any]:
    """`app.Worker(...)` options for task events: over Redis (their own connection) on SQS, on the
    broker otherwise; without heartbeats only where nothing could carry them."""
    redis_events = events_over_redis(settings)
    return {"consumer_cls": f"{__name__}:RedisEventsConsumer" if redis_events else None,
            "task_events": settings.task_events_redis,
            "without_heartbeat": is_sqs(settings) and not redis_events}


class RedisEventsConsumer(Consumer):
    """The worker's consumer, with the event dispatcher's connection on `REDIS_URL`.

    `celery.worker.consumer.events.Events.start` is the only caller of `connection_for_write()`
    without a URL; the task consumer itself reads from the SQS broker as before.
    """

    def connection_for_write(self, url: str | None = None, heartbeat: Any = None) -> Any:
        if url is not None:
            return super().connection_for_write(url=url, heartbeat=heartbeat)
        conn = self.app.connection_for_write(url=get_settings().redis_url,
                                             transport_options=dict(EVENTS_TRANSPORT_OPTIONS))
        return self.ensure_connected(conn)
