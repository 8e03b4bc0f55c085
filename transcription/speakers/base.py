"""The diarizer interface, which diarizer a transcription gets, and the per-process diarizer cache."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from transcription.errors import ModelError
from transcription.options import TranscribeOptions
from transcription.settings import Settings, get_settings
from transcription.speakers.result import Diarization

if TYPE_CHECKING:
    import numpy as np


class Diarizer(Protocol):
    """A loaded diarizer. `diarize` is called from one thread at a time per instance."""

    name: str  # recorded with the chunk transcript: voices of different diarizers are never linked

    def diarize(self, samples: np.ndarray, *, min_speakers: int | None = None,
                max_speakers: int | None = None) -> Diarization: ...


def wanted(options: TranscribeOptions, settings: Settings) -> str | None:
    """The diarizer a transcription gets: None (no speakers), `local` or `pyannote`.

    `DIARIZE` chooses the deployment's diarizer and whether chunks get speakers by default; a
    request's or a manifest's `diarize` overrides that default (true with `DIARIZE=off` means the
    offline diarizer).
    """
    if options.diarize is False:
        return None
    if options.diarize is None and settings.diarize == "off":
        return None
    return "local" if settings.diarize == "off" else settings.diarize


_diarizers: dict[str, Diarizer] = {}
_lock = threading.Lock()


def load_diarizer(kind: str, settings: Settings) -> Diarizer:
    # each diarizer is imported only when chosen: both pull torch
    if kind == "local":
        from transcription.speakers.local import LocalDiarizer

        return LocalDiarizer(settings)
    if kind == "pyannote":
        from transcription.speakers.pipeline import PyannoteDiarizer

        return PyannoteDiarizer(settings)
    raise ModelError(f"unknown diarizer {kind!r}; expected local or pyannote")


def get_diarizer(kind: str, settings: Settings | None = None) -> Diarizer:
    """The process's diarizer of this kind, loaded on first use (thread-safe)."""
    if kind not in _diarizers:
        with _lock:
            if kind not in _diarizers:
                _diarizers[kind] = load_diarizer(kind, settings or get_settings())
    return _diarizers[kind]


def reset_diarizer() -> None:
    """Forget the loaded diarizers (tests)."""
    with _lock:
        _diarizers.clear()
