"""Linking chunk-local speakers into session speakers, from the voice centroids stored with each
chunk transcript (no audio is read again).

Every local speaker of every chunk is one item: its unit-length centroid, weighted by how long it
talks. They are clustered (see `cluster.py`) with the speakers of one chunk as a cannot-link
group, so two people the diarizer told apart are never merged. A cluster that talks less than
`min_speaker_s` in the whole session joins the nearest cluster it may join (a voice heard for half
a second has an unreliable centroid). Session speakers are named `SPEAKER_1..N` in order of first
appearance. Chunks diarized by different diarizers (embeddings of different models) are linked
separately and never joined.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from transcription.speakers.cluster import agglomerate, attach_unanchored, fold_short
from transcription.transcript import ChunkTranscript, SessionSpeaker


@dataclass(frozen=True)
class _Item:
    chunk: int
    local: str
    first: float  # session time of its first turn
    duration: float
    embedding: tuple[float, ...]
    diarizer: str


def link_speakers(
    chunks: Sequence[tuple[int, float, ChunkTranscript]],
    *,
    threshold: float,
    min_speaker_s: float = 1.0,
    anchor_s: float = 0.0,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> tuple[dict[tuple[int, str], str], list[SessionSpeaker]]:
    """(chunk index, local id) -> session speaker, and the session speakers in order of appearance.

    `chunks` are (index, offset in the session, transcript) of the diarized chunks.
    """
    items: list[_Item] = []
    for index, offset, t in chunks:
        firsts: dict[str, float] = {}
        for turn in t.turns or []:
            firsts[turn.speaker] = min(firsts.get(turn.speaker, turn.start), turn.start)
        for sp in t.speakers or []:
            items.append(_Item(index, sp.id, offset + firsts.get(sp.id, 0.0), sp.duration, tuple(sp.embedding),
                               t.diarizer or ""))
    by_kind: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_kind[(it.diarizer, len(it.embedding))].append(i)
    cluster_of: dict[int, tuple[tuple[str, int], int]] = {}
    for kind, members in by_kind.items():
        if kind[1] == 0:  # no voice centroid: each local speaker stays its own
            for n, i in enumerate(members):
                cluster_of[i] = (kind, n)
            continue
        vectors = np.array([items[i].embedding for i in members])
        weights = [items[i].duration for i in members]
        groups = [items[i].chunk for i in members]
        labels = agglomerate(vectors, threshold, weights=weights, groups=groups,
                             min_clusters=min_speakers, max_clusters=max_speakers)
        if anchor_s > 0:
            attached = attach_unanchored(vectors, weights, labels, anchor_s, threshold)
            if min_speakers is None or len(set(attached)) >= min_speakers:
                labels = attached
        labels = fold_short(vectors, weights, groups, labels, min_speaker_s, min_speakers)
        for i, label in zip(members, labels, strict=True):
            cluster_of[i] = (kind, label)
    first_seen: dict[tuple[tuple[str, int], int], float] = {}
    for i, c in cluster_of.items():
        first_seen[c] = min(first_seen.get(c, items[i].first), items[i].first)
    order = sorted(first_seen, key=lambda c: first_seen[c])
    names = {c: f"SPEAKER_{n}" for n, c in enumerate(order, start=1)}
    mapping = {(items[i].chunk, items[i].local): names[c] for i, c in cluster_of.items()}
    speakers = [
        SessionSpeaker(
            id=names[c],
            duration=round(sum(items[i].duration for i, ci in cluster_of.items() if ci == c), 3),
            members=[f"{items[i].chunk}:{items[i].local}" for i, ci in sorted(cluster_of.items()) if ci == c],
        )
        for c in order
    ]
    return mapping, speakers


def session_centroids(chunks: Sequence[tuple[int, float, ChunkTranscript]], mapping: dict[tuple[int, str], str],
                      diarizer: str) -> dict[str, list[float]]:
    """Each session speaker's voice centroid from `diarizer`'s chunk-local speakers linked into it: the
    duration-weighted sum of their unit-length centroids, scaled to length 1 (what naming compares)."""
    from transcription.speakers.cluster import unit

    sums: dict[str, np.ndarray] = {}
    for index, _, t in chunks:
        if (t.diarizer or "") != diarizer:
            continue
        for sp in t.speakers or []:
            label = mapping.get((index, sp.id))
            if label is None or not sp.embedding:
                continue
            v = unit(np.array([sp.embedding], dtype=np.float64))[0] * max(sp.duration, 1e-3)
            sums[label] = sums[label] + v if label in sums and len(sums[label]) == len(v) else v
    return {k: [float(x) for x in unit(v[None])[0]] for k, v in sums.items()}
