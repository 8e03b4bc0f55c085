"""Agglomerative clustering of voice embeddings with cannot-link groups.

One routine serves both steps: the diarizer clusters the (window, local speaker) embeddings of a
chunk, and the session linking clusters the chunk-local speakers of a session. Items of one group
(the speakers of one window, or of one chunk) are never put in one cluster: two voices heard at
the same time by the same model are two people.

Clusters are joined by centroid linkage on cosine distance (a cluster is the duration-weighted sum
of its unit-length embeddings) until the closest allowed pair is further apart than `threshold`;
`min_clusters`/`max_clusters` move that stopping point along the same merge order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def agglomerate(
    vectors: np.ndarray,
    threshold: float,
    *,
    weights: Sequence[float] | None = None,
    groups: Sequence[object] | None = None,
    min_clusters: int | None = None,
    max_clusters: int | None = None,
) -> list[int]:
    """A cluster number per row of `vectors`, numbered in the order the rows first use them."""
    n = len(vectors)
    if n == 0:
        return []
    x = unit(np.asarray(vectors, dtype=np.float64))
    w = np.ones(n) if weights is None else np.maximum(np.asarray(weights, dtype=np.float64), 1e-3)
    sums = x * w[:, None]  # a cluster's centroid direction
    alive = np.ones(n, dtype=bool)
    if groups is None:
        forbidden = np.zeros((n, n), dtype=bool)
    else:
        g = list(groups)
        forbidden = np.array([[a == b for b in g] for a in g], dtype=bool)
    np.fill_diagonal(forbidden, True)
    dist = 1.0 - unit(sums) @ unit(sums).T
    merges: list[tuple[int, int, float]] = []
    while True:
        masked = np.where(forbidden | ~alive[:, None] | ~alive[None, :], np.inf, dist)
        flat = int(np.argmin(masked))
        a, b = divmod(flat, n)
        d = float(masked[a, b])
        if not np.isfinite(d):
            break
        a, b = min(a, b), max(a, b)
        merges.append((a, b, d))
        sums[a] += sums[b]
        alive[b] = False
        forbidden[a] |= forbidden[b]
        forbidden[:, a] = forbidden[a]
        dist[a] = 1.0 - unit(sums) @ unit(sums[a:a + 1])[0]
        dist[:, a] = dist[a]
    keep = next((i for i, (_, _, d) in enumerate(merges) if d > threshold), len(merges))
    if max_clusters is not None and n - keep > max_clusters:
        keep = min(len(merges), n - max(max_clusters, 1))
    if min_clusters is not None and n - keep < min_clusters:
        keep = max(0, n - min_clusters)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, _ in merges[:keep]:
        parent[root(b)] = root(a)
    numbers: dict[int, int] = {}
    return [numbers.setdefault(root(i), len(numbers)) for i in range(n)]


def attach_unanchored(vectors: np.ndarray, weights: Sequence[float], labels: list[int], anchor_s: float,
                      threshold: float) -> list[int]:
    """Clusters with no item talking `anchor_s` or more are not trusted as people of their own: each of
    their items moves to the nearest anchored cluster when within `threshold` of its centroid.

    Why: a short voice's embedding is a noisy estimate (on the tuning call a 2 s piece of one person
    lands up to 0.25 from that person's voice, a 3 s piece up to 0.12), and two short pieces of the
    same words (a sentence heard again, at another level) are closer to each other than to their
    speaker. The cannot-link of the item's group is not applied here: the split of a short voice from
    a long one of its chunk was made on the same unreliable evidence. Without any anchored cluster
    (every voice short, e.g. 5 s chunks) nothing moves.
    """
    x = unit(np.asarray(vectors, dtype=np.float64))
    w = np.asarray(weights, dtype=np.float64)
    members: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        members.setdefault(lab, []).append(i)
    anchored = [c for c in sorted(members) if w[members[c]].max() >= anchor_s]
    if not anchored:
        return list(labels)
    centroids = unit(np.stack([(x[members[c]] * w[members[c], None]).sum(axis=0) for c in anchored]))
    out = list(labels)
    for i, lab in enumerate(labels):
        if lab in anchored:
            continue
        d = 1.0 - centroids @ x[i]
        best = int(np.argmin(d))
        if d[best] <= threshold:
            out[i] = anchored[best]
    return out


def fold_short(vectors: np.ndarray, weights: list[float], groups: list[int], labels: list[int],
                min_speaker_s: float, min_speakers: int | None) -> list[int]:
    """Clusters shorter than `min_speaker_s` in total join the nearest cluster they may join."""
    labels = list(labels)
    x = unit(vectors) * np.asarray(weights, dtype=np.float64)[:, None]
    while True:
        clusters = sorted(set(labels))
        if min_speakers is not None and len(clusters) <= min_speakers:
            return labels
        total = {c: sum(w for w, lab in zip(weights, labels, strict=True) if lab == c) for c in clusters}
        short = [c for c in clusters if total[c] < min_speaker_s]
        if not short:
            return labels
        c = min(short, key=lambda k: total[k])
        mine = [i for i, lab in enumerate(labels) if lab == c]
        mine_groups = {groups[i] for i in mine}
        centroid = unit(x[mine].sum(axis=0, keepdims=True))[0]
        best: tuple[float, int] | None = None
        for other in clusters:
            theirs = [i for i, lab in enumerate(labels) if lab == other]
            if other == c or total[other] < min_speaker_s or mine_groups & {groups[i] for i in theirs}:
                continue
            d = 1.0 - float(unit(x[theirs].sum(axis=0, keepdims=True))[0] @ centroid)
            if best is None or d < best[0]:
                best = (d, other)
        if best is None:  # nowhere to go: it stays a speaker of its own
            weights = [w if lab != c else max(w, min_speaker_s) for w, lab in zip(weights, labels, strict=True)]
            continue
        labels = [best[1] if lab == c else lab for lab in labels]
