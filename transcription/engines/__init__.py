"""Engine loading: one engine per process, built from the settings on first use.

Servers and workers call `get_engine()` when they start serving (FastAPI lifespan, Celery's
`worker_process_init`), never at import: importing this package loads nothing heavy.
"""

from __future__ import annotations

import threading

from transcription.engines.base import Engine, EngineResult
from transcription.errors import ModelError
from transcription.model_files import resolve_model
from transcription.settings import Settings, get_settings

__all__ = ["Engine", "EngineResult", "get_engine", "load_engine", "reset_engine"]

_engine: Engine | None = None
_lock = threading.Lock()


def load_engine(settings: Settings) -> Engine:
    """Build a new engine from the settings (resolving and verifying the model first)."""
    path = resolve_model(settings.model, settings.model_cache_dir)
    if settings.decode_seed >= 0:  # before the model starts its threads: each seeds its sampler once
        import ctranslate2

        ctranslate2.set_random_seed(settings.decode_seed)
    # each backend is imported only when chosen: whisperx pulls torch (seconds, gigabytes)
    if settings.engine == "faster-whisper":
        from transcription.engines.faster_whisper import FasterWhisperEngine

        return FasterWhisperEngine(path, settings)
    if settings.engine == "whisperx":
        try:
            from transcription.engines.whisperx import WhisperXEngine
        except ImportError as e:
            raise ModelError(
                f"ENGINE=whisperx but whisperx is not installed: pip install 'stt-router[gpu]' ({e})"
            ) from e
        return WhisperXEngine(path, settings)
    raise ModelError(f"unknown engine {settings.engine!r}")


def get_engine(settings: Settings | None = None) -> Engine:
    """The process's engine, loaded on first call (thread-safe)."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = load_engine(settings or get_settings())
    return _engine


def reset_engine() -> None:
    """Forget the process's engine (tests, or a worker that must reload after a fork)."""
    global _engine
    with _lock:
        _engine = None
