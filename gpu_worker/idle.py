"""Idle shutdown: a worker with nothing to do for `WORKER_IDLE_TIMEOUT_S` and an empty queue stops.

A thread in the worker's main process watches Celery's own request sets (running, reserved and
waiting-for-ETA tasks) and, once they have been empty long enough, the queue depth; then it asks
the worker for a warm shutdown (SIGTERM), and `stt-router worker` runs the stop action after the
worker has exited cleanly. So a GPU is paid for only while there is work.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from celery.worker import state

from tasks.broker import queue_depth
from transcription.settings import Settings

log = logging.getLogger(__name__)


def worker_busy() -> bool:
    scheduled = state.scheduled_requests  # type: ignore[attr-defined]  # Celery has it; celery-types 0.26 lacks it
    return bool(state.active_requests or state.reserved_requests or scheduled)


class IdleMonitor(threading.Thread):
    def __init__(self, settings: Settings, queues: list[str],
                 on_idle: Callable[[], None] | None = None, busy: Callable[[], bool] = worker_busy) -> None:
        super().__init__(name="idle-monitor", daemon=True)
        self.timeout_s = settings.worker_idle_timeout_s
        self.settings = settings
        self.queues = queues
        self.busy = busy
        self.on_idle = on_idle or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self.fired = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def queue_empty(self) -> bool:
        try:
            return all(queue_depth(q, self.settings).waiting == 0 for q in self.queues)
        except Exception as e:  # cannot tell: not idle
            log.info("idle check: queue depth unknown (%s)", e)
            return False

    def run(self) -> None:
        interval = max(0.5, min(5.0, self.timeout_s / 4))
        last_busy = time.monotonic()
        while not self._stop.wait(interval):
            if self.busy():
                last_busy = time.monotonic()
                continue
            idle_for = time.monotonic() - last_busy
            if idle_for < self.timeout_s:
                continue
            if not self.queue_empty():
                last_busy = time.monotonic()
                continue
            log.warning("idle_shutdown idle_s=%.0f queues=%s: nothing to do, stopping", idle_for, ",".join(self.queues))
            self.fired.set()
            self.on_idle()
            return
