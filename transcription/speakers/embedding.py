"""The one voice-embedding function: CAM++ (`campplus.py`) over mean-normalised 80-bin filterbanks.

The offline diarizer embeds each window-local voice with it, and speaker naming embeds each
reference clip with it (`names.py`), so a reference and a diarized speaker's centroid are points
of one space and their cosine distance means the same thing. Loaded once per process, on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from transcription.settings import Settings, get_settings
from transcription.speakers.files import CAMPPLUS, weight_path

SR = 16000


class VoiceEmbedder:
    """CAM++ on the configured device: a 192-number voice embedding per piece of 16 kHz audio."""

    dims = 192

    def __init__(self, settings: Settings) -> None:
        import torch

        from transcription.speakers.campplus import CAMPPlus

        self.settings = settings
        self.device = torch.device("cuda" if settings.resolved_device() == "cuda" and torch.cuda.is_available()
                                   else "cpu")
        model = CAMPPlus()
        model.load_state_dict(torch.load(weight_path(CAMPPLUS), map_location="cpu", weights_only=True), strict=True)
        self.model: Any = model.eval().to(self.device)
        self._lock = threading.Lock()

    def embed(self, pieces: Sequence[np.ndarray]) -> np.ndarray:
        """(len(pieces), 192) raw embeddings (not scaled to length 1); one piece at a time, since
        lengths differ and padding would change the statistics."""
        import torch
        import torchaudio.compliance.kaldi as kaldi

        out = []
        with self._lock, torch.inference_mode():
            for p in pieces:
                wave = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)).unsqueeze(0)
                feats = kaldi.fbank(wave, num_mel_bins=80, sample_frequency=SR, dither=0.0)
                feats = feats - feats.mean(0, keepdim=True)
                out.append(self.model(feats.unsqueeze(0).to(self.device))[0].cpu().numpy())
        return np.array(out).reshape(len(out), self.dims)


_embedder: VoiceEmbedder | None = None
_lock = threading.Lock()


def get_embedder(settings: Settings | None = None) -> VoiceEmbedder:
    """The process's voice embedder, loaded on first use (thread-safe); a `ModelError` when its
    weights are missing or altered (`files.py`)."""
    global _embedder
    if _embedder is None:
        with _lock:
            if _embedder is None:
                _embedder = VoiceEmbedder(settings or get_settings())
    return _embedder
