"""Inference slots: at most `capacity` transcriptions at once, a bounded wait, then 503.

A request that finds every slot taken waits up to `wait_s` for one; after that it is refused with
503 and a Retry-After (the router's signal to queue the chunk instead of piling on). Inference runs
in a worker thread so the event loop, and with it `/health`, keeps answering in milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio.to_thread

from app.errors import Unavailable

T = TypeVar("T")

_POLL_S = 0.02


class Slots:
    """A counter of running inferences; only the event loop's thread changes it."""

    def __init__(self, capacity: int, wait_s: float) -> None:
        if capacity < 1:
            raise ValueError("SERVER_CAPACITY must be at least 1")
        self.capacity = capacity
        self.wait_s = max(0.0, wait_s)
        self.inflight = 0
        self._mean_s: float | None = None  # moving average of how long a slot is held

    @property
    def full(self) -> bool:
        return self.inflight >= self.capacity

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the typical inference time, 1 to 60."""
        return min(60, max(1, math.ceil(self._mean_s if self._mean_s is not None else 5.0)))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        # Polling keeps this free of any event-loop-bound primitive and of wait_for's lost-wakeup
        # races; 20 ms is nothing next to an inference.
        deadline = time.monotonic() + self.wait_s
        while self.full:
            if time.monotonic() >= deadline:
                raise Unavailable("busy", f"all {self.capacity} inference slots are busy; retry later",
                                  self.retry_after())
            await asyncio.sleep(_POLL_S)
        self.inflight += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.inflight -= 1
            held = time.monotonic() - started
            self._mean_s = held if self._mean_s is None else 0.8 * self._mean_s + 0.2 * held

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a worker thread inside a slot. The slot stays taken until the thread ends,
        even if the client goes away (anyio waits for the thread before it lets cancellation in)."""
        async with self.slot():
            return await anyio.to_thread.run_sync(fn)
