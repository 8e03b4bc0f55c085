"""pyannote's own diarization pipeline (`DIARIZE=pyannote`), where its model is reachable.

`DIARIZE_MODEL` names a local pipeline directory or a hub name (gated ones need `HF_TOKEN`). The
pipeline's per-speaker embeddings become the voice centroids the session linking needs; a model
that cannot be loaded is a `ModelError` naming it, raised before any audio is transcribed.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from transcription.errors import ModelError
from transcription.settings import Settings
from transcription.speakers.cluster import unit
from transcription.speakers.result import Diarization
from transcription.transcript import LocalSpeaker, SpeakerTurn

DEFAULT_DIARIZE_MODEL = "pyannote/speaker-diarization-community-1"
SR = 16000


class PyannoteDiarizer:
    def __init__(self, settings: Settings) -> None:
        from pyannote.audio import Pipeline

        model = settings.diarize_model or DEFAULT_DIARIZE_MODEL
        self.name = f"pyannote:{model}"
        token = settings.hf_token.get_secret_value() if settings.hf_token else None
        try:
            pipeline = Pipeline.from_pretrained(model, token=token)
        except Exception as e:
            raise ModelError(
                f"diarization model {model} could not be loaded ({type(e).__name__}: {e}); set DIARIZE_MODEL to a "
                "local pyannote pipeline directory (and HF_TOKEN if gated), or use DIARIZE=local (offline)"
            ) from e
        if pipeline is None:
            raise ModelError(f"diarization model {model} could not be loaded (gated: set HF_TOKEN)")
        self.pipeline = pipeline
        self._lock = threading.Lock()

    def diarize(self, samples: np.ndarray, *, min_speakers: int | None = None,
                max_speakers: int | None = None) -> Diarization:
        import torch

        with self._lock:
            out = self.pipeline({"waveform": torch.from_numpy(np.asarray(samples, np.float32))[None],
                                 "sample_rate": SR}, min_speakers=min_speakers, max_speakers=max_speakers)
        annotation: Any = getattr(out, "speaker_diarization", out)
        embeddings = getattr(out, "speaker_embeddings", None)
        labels = list(annotation.labels())
        names: dict[str, str] = {}
        turns = []
        for segment, _, label in annotation.itertracks(yield_label=True):
            name = names.setdefault(label, f"SPEAKER_{len(names):02d}")
            turns.append(SpeakerTurn(start=round(segment.start, 3), end=round(segment.end, 3), speaker=name))
        speakers = []
        for label, name in names.items():
            vector: list[float] = []
            if embeddings is not None and labels.index(label) < len(embeddings):
                row = np.asarray(embeddings[labels.index(label)], dtype=np.float64)[None]
                if np.all(np.isfinite(row)):
                    vector = [round(float(v), 5) for v in unit(row)[0]]
            duration = sum(t.end - t.start for t in turns if t.speaker == name)
            speakers.append(LocalSpeaker(id=name, duration=round(duration, 3), embedding=vector))
        return Diarization(turns=sorted(turns, key=lambda t: t.start), speakers=speakers)
