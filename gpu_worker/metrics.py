"""Prometheus metrics of a worker (`WORKER_METRICS_PORT`): tasks by state, durations, audio seconds,
and the depth of its queues.

Tasks run in prefork pool processes, so the counts are kept in prometheus_client's multiprocess
mode: each process writes its own memory-mapped file under a private directory, and the main
process's HTTP endpoint merges them at scrape time. The directory must be chosen before the first
metric exists, which is why `enable()` runs first thing in `run_worker`, and why the metrics are
built lazily (`metrics()`), never at import. Queue depth is read from the broker at scrape time
(cached a few seconds), by the main process only.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import cache
from typing import Any

import prometheus_client.values as values
from celery import signals
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily

from tasks.broker import queue_depth
from transcription.settings import Settings

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
QUEUE_CACHE_S = 5.0
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)


def port_problem(settings: Settings) -> str | None:
    """Why the metrics endpoint could not listen (checked before the worker starts), or None."""
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((settings.worker_metrics_host, settings.worker_metrics_port))
    except OSError as e:
        return (f"cannot listen on {settings.worker_metrics_host}:{settings.worker_metrics_port} "
                f"(WORKER_METRICS_HOST/WORKER_METRICS_PORT): {e.strerror or e}")
    return None


def enable() -> str:
    """Switch this process (and the pool processes it forks) to multiprocess metrics; the directory."""
    path = tempfile.mkdtemp(prefix="stt-worker-metrics-")
    os.environ[ENV] = path

    values.ValueClass = values.get_value_class()  # it chose single-process values when it was imported
    return path


def cleanup(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class WorkerMetrics:
    def __init__(self) -> None:
        # Metrics live in the multiprocess files, not in a registry of their own.
        self.tasks = Counter("stt_worker_tasks", "tasks by name and state (received, started, succeeded, failed, "
                             "retried, rejected, revoked)", ["task", "state"], registry=None)
        self.task_seconds = Histogram("stt_worker_task_seconds", "wall time of a task run, by task", ["task"],
                                      buckets=_DURATION_BUCKETS, registry=None)
        self.chunks = Counter("stt_worker_chunks", "chunk deliveries by outcome (transcribed, skipped, failed, "
                              "duplicate, superseded, already_failed, left_to_lease_holder)", ["status"], registry=None)
        self.audio_seconds = Counter("stt_worker_audio_seconds", "seconds of audio transcribed", registry=None)
        self.engine_seconds = Histogram("stt_worker_engine_seconds", "engine time per transcribed chunk",
                                        buckets=_DURATION_BUCKETS, registry=None)
        self.active = Gauge("stt_worker_tasks_active", "tasks running now", registry=None,
                            multiprocess_mode="livesum")
        self.engines = Gauge("stt_worker_engines_loaded", "pool processes with the engine loaded", registry=None,
                             multiprocess_mode="livesum")


@cache
def metrics() -> WorkerMetrics:
    return WorkerMetrics()


# --- Celery signal handlers (connected by `connect()`; they run in whichever process fires them) ---

_started: dict[str, float] = {}


def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", sender) or "unknown")


def on_received(request: Any = None, **_: Any) -> None:  # main process
    metrics().tasks.labels(getattr(request, "name", "unknown"), "received").inc()


def on_prerun(task_id: str = "", task: Any = None, **_: Any) -> None:  # pool process
    _started[task_id] = time.monotonic()
    m = metrics()
    m.tasks.labels(_task_name(task), "started").inc()
    m.active.inc()


_STATES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried", "REJECTED": "rejected",
           "IGNORED": "ignored"}


def on_postrun(task_id: str = "", task: Any = None, retval: Any = None, state: str | None = None, **_: Any) -> None:
    m = metrics()
    name = _task_name(task)
    started = _started.pop(task_id, None)
    if started is not None:
        m.active.dec()
        m.task_seconds.labels(name).observe(time.monotonic() - started)
    m.tasks.labels(name, _STATES.get(state or "", "other")).inc()
    if isinstance(retval, dict) and "status" in retval and name.endswith("transcribe_chunk"):
        m.chunks.labels(str(retval["status"])).inc()
        if retval.get("audio_s"):
            m.audio_seconds.inc(float(retval["audio_s"]))
        if retval.get("engine_s") and retval["status"] == "transcribed":
            m.engine_seconds.observe(float(retval["engine_s"]))


def on_rejected(message: Any = None, **_: Any) -> None:  # main process: a refused message format
    metrics().tasks.labels("unknown", "rejected").inc()


def on_revoked(request: Any = None, **_: Any) -> None:
    metrics().tasks.labels(getattr(request, "name", "unknown"), "revoked").inc()


def on_engine_loaded() -> None:
    metrics().engines.inc()


def on_process_shutdown(**_: Any) -> None:
    with contextlib.suppress(Exception):
        multiprocess.mark_process_dead(os.getpid())


def connect() -> None:
    """Hook the handlers to Celery's signals (before the pool forks, so pool processes have them)."""
    metrics()  # created in the main process first: fork-safe, and errors show at start
    signals.task_received.connect(on_received, weak=False)
    signals.task_prerun.connect(on_prerun, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    signals.task_rejected.connect(on_rejected, weak=False)
    signals.task_revoked.connect(on_revoked, weak=False)
    signals.worker_process_shutdown.connect(on_process_shutdown, weak=False)


# --- the endpoint -------------------------------------------------------------------------------

_PID_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db$")


def forget_dead_processes(path: str) -> None:
    """Drop live gauges of pool processes that died without a clean shutdown (e.g. killed)."""
    for f in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        if (m := _PID_FILE.search(f)) and not os.path.exists(f"/proc/{m.group(1)}"):
            multiprocess.mark_process_dead(int(m.group(1)), path)


class QueueDepthCollector:
    """`stt_queue_messages{queue,state}`: messages waiting and in flight, read from the broker."""

    def __init__(self, settings: Settings, queues: list[str]) -> None:
        self.settings = settings
        self.queues = list(dict.fromkeys([*queues, settings.dead_letter_queue]))
        self._cache: tuple[float, dict[tuple[str, str], int]] | None = None
        self._lock = threading.Lock()

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            if self._cache and time.monotonic() - self._cache[0] < QUEUE_CACHE_S:
                return self._cache[1]
            out: dict[tuple[str, str], int] = {}
            for q in self.queues:
                try:
                    depth = queue_depth(q, self.settings)
                    out.update({(q, "waiting"): depth.waiting, (q, "in_flight"): depth.in_flight})
                except Exception as e:  # the broker is down: no sample, not a wrong one
                    log.info("queue depth of %s unavailable: %s", q, e)
            self._cache = (time.monotonic(), out)
            return out

    def collect(self) -> Iterator[Any]:
        g = GaugeMetricFamily("stt_queue_messages", "messages in a queue: waiting (visible or delayed) or in flight "
                              "(received, not yet deleted)", labels=["queue", "state"])
        for (q, state), n in sorted(self.counts().items()):
            g.add_metric([q, state], n)
        yield g


class _MergedCollector:
    """The pool processes' files, after forgetting the dead ones."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.inner = multiprocess.MultiProcessCollector(None, path)

    def collect(self) -> Iterator[Any]:
        forget_dead_processes(self.path)
        return self.inner.collect()


def serve(settings: Settings, queues: list[str], path: str) -> Any:
    """Start the HTTP endpoint in this (main) process; returns the server (call `.shutdown()`)."""
    registry = CollectorRegistry()
    registry.register(_MergedCollector(path))
    registry.register(QueueDepthCollector(settings, queues))
    server, _thread = start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host,
                                        registry=registry)
    log.info("worker metrics on http://%s:%d/metrics", settings.worker_metrics_host, settings.worker_metrics_port)
    return server
