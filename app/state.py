"""What one running server holds: its settings, the engine (loading in the background), the
inference slots and the metrics. Route handlers reach it as `request.app.state.server`."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from app.capacity import Slots
from app.errors import Unavailable
from app.metrics import Metrics
from app.schemas import Health
from transcription.engines import Engine, EngineResult, get_engine
from transcription.errors import TranscriptionError
from transcription.options import TranscribeOptions
from transcription.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

EngineLoader = Callable[[Settings], Engine]
FETCH_WORKERS = 4


class SerializedEngine:
    """The engine contract allows one `transcribe` at a time per engine: with `SERVER_CAPACITY` > 1,
    requests overlap their download, decoding and writing while the model itself runs one by one."""

    def __init__(self, engine: Engine) -> None:
        self.inner = engine
        self.name, self.model_name = engine.name, engine.model_name
        self.device, self.compute_type = engine.device, engine.compute_type
        self._lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineResult:
        with self._lock:
            return self.inner.transcribe(samples, options)

    def detect_language(self, samples: np.ndarray, candidates: list[str] | None = None) -> tuple[str, float]:
        with self._lock:
            return self.inner.detect_language(samples, candidates)


class EngineState:
    """The engine, loaded once in a background thread so the server answers `/health` meanwhile."""

    def __init__(self, settings: Settings, engine: Engine | None = None,
                 loader: EngineLoader = get_engine) -> None:
        self.settings = settings
        self.engine = engine
        self.error: str | None = None
        self._loader = loader
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def status(self) -> str:
        if self.engine is not None:
            return "ready"
        return "failed" if self.error is not None else "loading"

    def start_loading(self) -> None:
        if self.engine is not None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._load, name="engine-loader", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        s = self.settings
        log.info("loading engine %s, model %s ...", s.engine, s.model)
        try:
            self.engine = engine = self._loader(s)
        except TranscriptionError as e:
            self.error = e.reason
        except Exception as e:  # a broken install or model must show in /health, not kill the loader silently
            self.error = f"{type(e).__name__}: {e}"
        if self.error is not None:
            log.error("engine failed to load: %s", self.error)
            return
        log.info("engine ready: %s %s on %s (%s)", engine.name, engine.model_name, engine.device, engine.compute_type)
        # Measured here: a CTranslate2 model whose loading thread has exited runs about 2x slower
        # (its CPU thread pool goes with that thread), so this thread lives as long as the server.
        self._stop.wait()

    def close(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading ended (tests, benchmarks); True when the engine is ready."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread is not None and self.status == "loading" and self._thread.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return self.engine is not None

    def require(self) -> Engine:
        if self.engine is not None:
            return self.engine
        if self.error is not None:
            raise Unavailable("engine_failed", f"the engine failed to load: {self.error}")
        raise Unavailable("loading", "the model is still loading; retry shortly", 5)


class Server:
    def __init__(self, settings: Settings, api_key: bytes | None, engine: Engine | None = None,
                 loader: EngineLoader = get_engine) -> None:
        self.settings = settings
        self.api_key = api_key
        self.engines = EngineState(settings, engine, loader)
        self.slots = Slots(settings.server_capacity, settings.slot_wait_s)
        self._serialized: SerializedEngine | None = None
        # URL downloads run here: a few at once, so concurrent requests cannot pile up downloads in memory
        self.fetch_pool = ThreadPoolExecutor(max_workers=FETCH_WORKERS, thread_name_prefix="fetch")
        self.metrics = Metrics()
        self.metrics.capacity.set(self.slots.capacity)
        self.metrics.inflight.set_function(lambda: self.slots.inflight)
        self.metrics.engine_ready.set_function(lambda: 1.0 if self.engines.engine is not None else 0.0)

    def health(self) -> Health:
        engine = self.engines.engine
        status = self.engines.status
        if status == "ready" and self.slots.full:
            status = "busy"
        return Health(
            status=status,
            engine=engine.name if engine else self.settings.engine,
            model=engine.model_name if engine else self.settings.model,
            device=engine.device if engine else None,
            inflight=self.slots.inflight,
            capacity=self.slots.capacity,
            reason=self.engines.error,
        )

    async def fetch(self, fn: Callable[[], T]) -> T:
        """Run a download off the event loop, at most `FETCH_WORKERS` at once (the rest queue)."""
        return await asyncio.wrap_future(self.fetch_pool.submit(fn))

    def close(self) -> None:
        self.engines.close()
        self.slots.shutdown()
        self.fetch_pool.shutdown(wait=False, cancel_futures=True)

    async def infer(self, fn: Callable[[Engine], T]) -> T:
        """Run `fn(engine)` off the event loop within a slot; 503 while loading or when busy."""
        engine = self.engines.require()
        if self._serialized is None or self._serialized.inner is not engine:
            self._serialized = SerializedEngine(engine)
        serialized = self._serialized

        def timed() -> T:
            with self.metrics.inference.time():
                return fn(serialized)

        return await self.slots.run(timed)
