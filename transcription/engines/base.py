"""The engine interface: audio samples and options in, segments out, whichever backend runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from transcription.options import TranscribeOptions
from transcription.transcript import Segment


@dataclass
class EngineResult:
    segments: list[Segment]
    language: str | None
    language_probability: float | None = None


class Engine(Protocol):
    """A loaded model. `transcribe` is called from one thread at a time per engine instance."""

    name: str  # "faster-whisper" or "whisperx"
    model_name: str  # what the MODEL setting said, e.g. "base"
    device: str
    compute_type: str

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineResult: ...

    def detect_language(self, samples: np.ndarray, candidates: list[str] | None = None) -> tuple[str, float]:
        """The language of the audio's first 30 s (among `candidates` when given) and its probability."""
        ...


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA/CTranslate2 out-of-memory errors surface as RuntimeError (or torch's subclass)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "cuda_error_out_of_memory" in text
