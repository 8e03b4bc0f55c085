"""Combine chunk transcripts into one session transcript.

Chunks are concatenated in index order; each chunk's times are shifted by the durations of the
chunks before it and clamped to its own span, so times never run backwards across a boundary.
A failed chunk becomes a gap marker (its duration still counts when known), and a hole in the
index sequence is listed as missing: either makes the session `partial`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from transcription.manifest import Manifest
from transcription.transcript import ChunkEntry, ChunkTranscript, FailedChunk, Segment, SessionTranscript


def _clamp(seg: Segment, lo: float, hi: float) -> Segment:
    def c(x: float) -> float:
        return round(min(max(x, lo), hi), 3)

    words = None if seg.words is None else [
        w.model_copy(update={"start": c(w.start), "end": c(max(w.end, w.start))}) for w in seg.words
    ]
    return seg.model_copy(update={"start": c(seg.start), "end": c(max(seg.end, seg.start)), "words": words})


def gap_segment(index: int, start: float, duration: float, reason: str) -> Segment:
    return Segment(start=start, end=start + duration, text=f"[chunk {index} missing: {reason}]", gap=True)


def combine_chunks(
    session_id: str,
    chunks: Sequence[ChunkTranscript | FailedChunk],
    manifest: Manifest | None = None,
) -> SessionTranscript:
    """One session transcript from its chunk transcripts and failed records (any order)."""
    by_index: dict[int, ChunkTranscript | FailedChunk] = {}
    for c in chunks:
        idx = c.chunk_index if c.chunk_index is not None else len(by_index)
        # a transcript beats a failed record for the same index (e.g. a replayed dead letter)
        if idx not in by_index or isinstance(c, ChunkTranscript):
            by_index[idx] = c
    entries: list[ChunkEntry] = []
    segments: list[Segment] = []
    offset = 0.0
    previous: int | None = None
    for idx in sorted(by_index):
        if previous is not None:
            for hole in range(previous + 1, idx):
                entries.append(ChunkEntry(index=hole, offset=offset, duration=0.0, status="missing",
                                          reason="no chunk uploaded with this index"))
                segments.append(gap_segment(hole, offset, 0.0, "not uploaded"))
        previous = idx
        c = by_index[idx]
        if isinstance(c, FailedChunk):
            duration = c.duration or 0.0
            entries.append(ChunkEntry(index=idx, source_key=c.source_key, offset=offset, duration=duration,
                                      status="failed", reason=c.reason))
            segments.append(gap_segment(idx, offset, duration, c.error))
        else:
            duration = c.duration
            entries.append(ChunkEntry(index=idx, source_key=c.source_key, offset=offset, duration=duration,
                                      status="transcribed"))
            segments.extend(_clamp(s.shifted(offset), offset, offset + duration) for s in c.segments)
        offset = round(offset + duration, 3)
    transcripts = [c for c in by_index.values() if isinstance(c, ChunkTranscript)]
    languages = Counter(c.language for c in transcripts if c.language)
    expected = manifest.total_chunks if manifest else None
    partial = any(e.status != "transcribed" for e in entries) or (expected is not None and len(by_index) < expected)
    return SessionTranscript(
        session_id=session_id,
        title=manifest.title if manifest else None,
        language=languages.most_common(1)[0][0] if languages else None,
        duration=offset,
        segments=segments,
        chunks=entries,
        partial=partial,
        engine=transcripts[0].engine if transcripts else None,
        model=transcripts[0].model if transcripts else None,
    )

