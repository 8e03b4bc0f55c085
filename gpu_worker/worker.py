"""`stt-router worker`: a Celery worker suited to one GPU.

- prefork pool (time limits work: the main process can kill a stuck pool process), concurrency
  `WORKER_CONCURRENCY` (1 per GPU), prefetch 1, `acks_late`; see `tasks.celery_app`.
- The engine is loaded once per pool process in `worker_process_init`, after the fork: the main
  process never touches CUDA. It only checks the model files, so a missing model fails at once
  with a reason instead of in every pool process.
- On SQS without predefined queue URLs it creates the queue pair (with the redrive policy) first.
- Messages in a refused format (anything but JSON) are dropped, never run and never redelivered.
- Idle shutdown after `WORKER_IDLE_TIMEOUT_S`, then `WORKER_STOP_ACTION`.
- Task events and heartbeats (for Flower) go over Redis when the broker is SQS (`tasks.monitoring`);
  Prometheus metrics on `WORKER_METRICS_PORT` (`gpu_worker.metrics`).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from celery import signals
from kombu.exceptions import ContentDisallowed

from gpu_worker import metrics
from gpu_worker.idle import IdleMonitor
from gpu_worker.stop import run_stop_action
from tasks.broker import ensure_queues, sqs_client
from tasks.celery_app import app, is_sqs, predefined_queues
from tasks.monitoring import worker_event_options
from transcription.engines import get_engine, reset_engine
from transcription.model_files import resolve_model
from transcription.settings import Settings, get_settings

log = logging.getLogger("gpu_worker")


def check_settings(s: Settings) -> list[str]:
    """Timing settings that would break the delivery guarantees, as readable warnings."""
    problems = []
    if s.task_time_limit_s >= s.visibility_timeout_s:
        problems.append(f"TASK_TIME_LIMIT_S={s.task_time_limit_s} is not below VISIBILITY_TIMEOUT_S="
                        f"{s.visibility_timeout_s}: a long chunk would be delivered to a second worker while it runs")
    if s.lease_ttl_s >= s.visibility_timeout_s:
        problems.append(f"LEASE_TTL_S={s.lease_ttl_s} is not below VISIBILITY_TIMEOUT_S={s.visibility_timeout_s}: "
                        "a killed worker's chunk would come back while its lease still blocks it")
    if s.sqs_queue_url and not s.sqs_dlq_url and s.celery_broker_url.startswith("sqs"):
        problems.append("SQS_QUEUE_URL is set but SQS_DLQ_URL is not: dead letters cannot be written")
    return problems


def _load_engine(**_: Any) -> None:
    """worker_process_init: load the engine in this pool process (after the fork)."""
    reset_engine()
    started = time.perf_counter()
    engine = get_engine()
    if get_settings().worker_metrics_port:
        metrics.on_engine_loaded()
    log.info("engine_loaded engine=%s model=%s in %.1f s", engine.name, engine.model_name,
             time.perf_counter() - started)


def _discard_refused(sender: Any = None, message: Any = None, exc: Exception | None = None, **_: Any) -> None:
    """task_rejected: a message in a refused format is deleted, not left for redelivery.

    Celery rejects it without running it; on an SQS queue with a redrive policy kombu leaves a
    rejected message for redelivery, so it is deleted here (on Redis the reject already dropped it).
    """
    if not isinstance(exc, ContentDisallowed) or message is None:
        return
    info = message.delivery_info or {}
    receipt = (info.get("sqs_message") or {}).get("ReceiptHandle")
    url = info.get("sqs_queue")
    if receipt and url:
        try:
            sqs_client().delete_message(QueueUrl=url, ReceiptHandle=receipt)
        except Exception as e:
            log.error("could not delete refused message: %s", e)
            return
    log.warning("refused_message_discarded content_type=%s (only JSON is accepted; it was not run)",
                message.content_type)


def run_worker(*, concurrency: int | None = None, queues: list[str] | None = None, loglevel: str = "INFO",
               hostname: str | None = None) -> int:
    """Start the worker in this process (configured from the environment); its exit code once it stops."""
    s = get_settings()  # the tasks' app reads the same settings
    metrics_dir = None
    if s.worker_metrics_port:  # before any metric exists, so pool processes share the directory
        if problem := metrics.port_problem(s):
            log.error("worker metrics: %s", problem)
            return 2
        metrics_dir = metrics.enable()
    try:
        return _run(s, concurrency, queues, loglevel, hostname, metrics_dir)
    finally:
        if metrics_dir:
            metrics.cleanup(metrics_dir)


def _run(s: Settings, concurrency: int | None, queues: list[str] | None, loglevel: str, hostname: str | None,
         metrics_dir: str | None) -> int:
    for problem in check_settings(s):
        log.warning("settings: %s", problem)
    if is_sqs(s) and not predefined_queues(s):
        ensure_queues(s)
    resolve_model(s.model, s.model_cache_dir)  # files only (assembled and hash-checked), no engine
    queues = queues or [s.transcribe_queue]

    monitor: IdleMonitor | None = None
    if s.worker_idle_timeout_s > 0:
        monitor = IdleMonitor(s, queues)

        def _start_monitor(**_: Any) -> None:
            monitor.start()

        signals.worker_ready.connect(_start_monitor, weak=False)
    if metrics_dir:
        metrics.connect()
        endpoint: list[Any] = []
        signals.worker_ready.connect(lambda **_: endpoint.append(metrics.serve(s, queues, metrics_dir)), weak=False)
        signals.worker_shutdown.connect(lambda **_: [e.shutdown() for e in endpoint], weak=False)
    signals.worker_process_init.connect(_load_engine, weak=False)
    signals.task_rejected.connect(_discard_refused, weak=False)

    worker = app.Worker(
        hostname=hostname or f"gpu@{socket.gethostname()}",
        pool_cls="prefork",
        concurrency=concurrency or s.worker_concurrency,
        queues=queues,
        loglevel=loglevel,
        without_gossip=True,
        without_mingle=True,
        optimization="fair",
        **worker_event_options(s),  # task events over Redis on SQS (its own connection; SQS has no fanout)
    )
    worker.start()
    code = worker.exitcode or 0
    if monitor is not None and monitor.fired.is_set():
        log.warning("worker stopped after %d s idle; stop action: %s", s.worker_idle_timeout_s, s.worker_stop_action)
        try:
            run_stop_action(s.worker_stop_action, s)
        except Exception as e:
            log.error("stop action %s failed: %s", s.worker_stop_action, e)
            return 1
    return code
