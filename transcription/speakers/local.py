"""The offline diarizer: pyannote segmentation-3.0 + CAM++ voice embeddings + agglomerative clustering.

1. Segmentation: 10 s windows every 5 s; the model gives each frame (about 17 ms) the activity of up
   to 3 window-local speakers, overlap included.
2. Embeddings: each window-local speaker talking at least `MIN_EMBED_S` gets a CAM++ embedding of the
   audio where it talks alone (where it always overlaps, of all its audio): `embedding.py`.
3. Clustering: the embeddings are clustered (`cluster.py`, cosine distance `DIARIZE_THRESHOLD`, the
   speakers of one window never joined, clusters shorter than `SPEAKER_MIN_S` folded into the nearest).
4. Turns: a speaker is active on a frame where its clusters' activity, averaged over the windows that
   cover the frame, reaches one half. Each speaker's voice centroid is the duration-weighted mean of
   its unit-length embeddings.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from transcription.errors import ModelError
from transcription.settings import Settings
from transcription.speakers.cluster import agglomerate, fold_short, unit
from transcription.speakers.embedding import get_embedder
from transcription.speakers.files import SEGMENTATION, weight_path
from transcription.speakers.result import Diarization
from transcription.transcript import LocalSpeaker, SpeakerTurn

SR = 16000
WINDOW_S = 10.0
STEP_S = 5.0
MIN_EMBED_S = 0.4
MIN_TURN_S = 0.1
EMBED_BATCH = 16


class LocalDiarizer:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        import torch
        from pyannote.audio import Model
        from pyannote.audio.utils.powerset import Powerset

        self.settings = settings
        self.device = torch.device("cuda" if settings.resolved_device() == "cuda" and torch.cuda.is_available()
                                   else "cpu")
        path = weight_path(SEGMENTATION)  # a ModelError of its own when missing or altered
        try:
            seg = Model.from_pretrained(str(path))
        except Exception as e:
            raise ModelError(f"the segmentation model could not be loaded ({type(e).__name__}: {e})") from e
        if seg is None:
            raise ModelError("the segmentation model could not be loaded")
        self.segmentation = seg.eval().to(self.device)
        spec: Any = self.segmentation.specifications
        self.powerset = Powerset(len(spec.classes), spec.powerset_max_classes) if spec.powerset else None
        self.embedder = get_embedder(settings)  # the one voice embedding (CAM++), shared with speaker naming
        self._lock = threading.Lock()

    def diarize(self, samples: np.ndarray, *, min_speakers: int | None = None,
                max_speakers: int | None = None) -> Diarization:
        import torch

        with self._lock:
            threads = torch.get_num_threads()
            if self.device.type == "cpu":
                torch.set_num_threads(self.settings.diarize_threads)
            try:
                return self._diarize(np.asarray(samples, dtype=np.float32), min_speakers, max_speakers)
            finally:
                torch.set_num_threads(threads)

    def _segment(self, windows: np.ndarray) -> np.ndarray:
        """(windows, frames, local speakers) activity, 0 or 1."""
        import torch

        with torch.inference_mode():
            out = self.segmentation(torch.from_numpy(windows[:, None, :]).to(self.device))
            if self.powerset is not None:
                out = self.powerset.to_multilabel(out)
        return out.cpu().numpy() > 0.5

    def _diarize(self, samples: np.ndarray, min_speakers: int | None, max_speakers: int | None) -> Diarization:
        total = len(samples)
        if total < SR // 10:
            return Diarization()
        win, step = int(WINDOW_S * SR), int(STEP_S * SR)
        starts = list(range(0, max(total - win, 0) + 1, step))
        if starts[-1] + win < total:
            starts.append(total - win)
        padded = np.zeros(max(total, win), np.float32)
        padded[:total] = samples
        windows = np.stack([padded[s:s + win] for s in starts])
        activity = self._segment(windows)  # (W, F, K)
        frames = activity.shape[1]
        frame_s = WINDOW_S / frames
        # one item per (window, local speaker) that talks long enough to be recognised by its voice
        items: list[tuple[int, int]] = []
        pieces: list[np.ndarray] = []
        weights: list[float] = []
        for w, s in enumerate(starts):
            valid = min(frames, int(np.ceil((total - s) / SR / frame_s)))
            act = activity[w, :valid]
            alone = act & (act.sum(axis=1, keepdims=True) == 1)
            for k in range(act.shape[1]):
                mask = alone[:, k] if alone[:, k].sum() * frame_s >= MIN_EMBED_S else act[:, k]
                if mask.sum() * frame_s < MIN_EMBED_S:
                    continue
                idx = np.repeat(mask, int(np.ceil(frame_s * SR)))[: win]
                piece = windows[w][: len(idx)][idx[: win]]
                items.append((w, k))
                pieces.append(piece)
                weights.append(float(mask.sum() * frame_s))
        if not items:
            return Diarization()
        embeddings = unit(self.embedder.embed(pieces))
        groups = [w for w, _ in items]
        labels = agglomerate(embeddings, self.settings.diarize_threshold, weights=weights, groups=groups,
                             min_clusters=min_speakers, max_clusters=max_speakers)
        labels = fold_short(embeddings, weights, groups, labels, self.settings.speaker_min_s, min_speakers)
        # reconstruction on a global frame grid
        n = int(np.ceil(total / SR / frame_s))
        clusters = sorted(set(labels))
        score = np.zeros((len(clusters), n))
        cover = np.zeros(n)
        for w, s in enumerate(starts):
            off = round(s / SR / frame_s)
            span = min(frames, n - off)
            if span <= 0:
                continue
            cover[off:off + span] += 1
            for (iw, k), lab in zip(items, labels, strict=True):
                if iw == w:
                    score[clusters.index(lab), off:off + span] = np.maximum(
                        score[clusters.index(lab), off:off + span], 0) + activity[w, :span, k]
        active = score / np.maximum(cover, 1) >= 0.5
        runs: list[tuple[float, float, int]] = []
        for c in range(len(clusters)):
            a = np.concatenate([[False], active[c], [False]])
            edges = np.flatnonzero(a[1:] != a[:-1])
            for lo, hi in zip(edges[::2], edges[1::2], strict=True):
                if (hi - lo) * frame_s >= MIN_TURN_S:
                    runs.append((lo * frame_s, min(hi * frame_s, total / SR), c))
        runs.sort()
        order: dict[int, str] = {}
        for _, _, c in runs:
            order.setdefault(c, f"SPEAKER_{len(order):02d}")
        turns = [SpeakerTurn(start=round(a, 3), end=round(b, 3), speaker=order[c]) for a, b, c in runs]
        speakers = []
        for c, name in order.items():
            members = [i for i, lab in enumerate(labels) if lab == clusters[c]]
            centroid = unit((embeddings[members] * np.array(weights)[members, None]).sum(axis=0, keepdims=True))[0]
            speakers.append(LocalSpeaker(
                id=name, duration=round(sum(t.end - t.start for t in turns if t.speaker == name), 3),
                embedding=[round(float(v), 5) for v in centroid]))
        return Diarization(turns=turns, speakers=speakers)
