"""Inference slots: at most `capacity` transcriptions at once, a bounded wait, then 503.

A request that finds every slot taken waits up to `wait_s` for one; after that it is refused with
503 and a Retry-After (the router's signal to queue the chunk instead of piling on). Inference runs
in its own thread so the event loop, and with it `/health`, keeps answering in milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from app.errors import Unavailable

T = TypeVar("T")

_POLL_S = 0.02


class Slots:
    """A counter of running inferences and one worker thread per slot.

    A slot is given back by the inference thread itself when it ends, so a request that is
    cancelled (the client went away, shutdown) can never free a slot whose inference still runs.
    """

    def __init__(self, capacity: int, wait_s: float) -> None:
        if capacity < 1:
            raise ValueError("SERVER_CAPACITY must be at least 1")
        self.capacity = capacity
        self.wait_s = max(0.0, wait_s)
        self.inflight = 0
        self._mean_s: float | None = None  # moving average of how long a slot is held
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="inference")

    @property
    def full(self) -> bool:
        return self.inflight >= self.capacity

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the typical inference time, 1 to 60."""
        return min(60, max(1, math.ceil(self._mean_s if self._mean_s is not None else 5.0)))

    def _take(self) -> bool:
        with self._lock:
            if self.inflight >= self.capacity:
                return False
            self.inflight += 1
            return True

    def _give_back(self, held_s: float | None) -> None:
        with self._lock:
            self.inflight -= 1
            if held_s is not None:
                self._mean_s = held_s if self._mean_s is None else 0.8 * self._mean_s + 0.2 * held_s

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` in an inference thread once a slot is free; `Unavailable("busy")` after `wait_s`."""
        # Polling keeps this free of event-loop-bound primitives and of wait_for's lost-wakeup
        # races; 20 ms is nothing next to an inference.
        deadline = time.monotonic() + self.wait_s
        while not self._take():
            if time.monotonic() >= deadline:
                raise Unavailable("busy", f"all {self.capacity} inference slots are busy; retry later",
                                  self.retry_after())
            await asyncio.sleep(_POLL_S)
        started = time.monotonic()

        def work() -> T:
            try:
                return fn()
            finally:
                self._give_back(time.monotonic() - started)

        try:
            job = self._executor.submit(work)
        except BaseException:
            self._give_back(None)
            raise
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if job.cancel():  # it never started, so `work` will not give the slot back
                self._give_back(None)
            raise

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
