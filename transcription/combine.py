"""Combine chunk transcripts into one session transcript.

Chunks are concatenated in index order; each chunk's times are shifted by the durations of the
chunks before it and clamped to its own span, so times never run backwards across a boundary.
Each segment keeps the language its chunk was transcribed in, and each chunk's entry records it.
A failed chunk becomes a gap marker (its duration still counts when known), and a hole in the
index sequence is listed as missing: either makes the session `partial`.

A piece of a recorder's stream (`stream_from`, `stream_start`: see `streams.py`) is placed by its
stream's timestamps instead: at the offset of the chunk that starts its stream plus its own start on
that stream, so a lost or late piece does not shift the rest (never earlier than the running offset,
so times still never run backwards).

Diarized chunks carry chunk-local speakers; their voice centroids link them into session speakers
(`transcription/speakers/link.py`), and every segment, word and turn gets its session speaker.
With `references` (the manifest's known speakers, embedded), a session speaker whose voice matches
one is named after it (`transcription/speakers/names.py`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from transcription.manifest import Manifest
from transcription.settings import Settings, get_settings
from transcription.transcript import (
    ChunkEntry,
    ChunkTranscript,
    FailedChunk,
    Segment,
    SessionSpeaker,
    SessionTranscript,
    SpeakerTurn,
)

if TYPE_CHECKING:
    from transcription.speakers.names import Reference


def gap_segment(index: int, start: float, duration: float, reason: str) -> Segment:
    return Segment(start=start, end=start + duration, text=f"[chunk {index} missing: {reason}]", gap=True)


def combine_chunks(
    session_id: str,
    chunks: Sequence[ChunkTranscript | FailedChunk],
    manifest: Manifest | None = None,
    *,
    settings: Settings | None = None,
    references: Sequence[Reference] = (),
) -> SessionTranscript:
    """One session transcript from its chunk transcripts and failed records (any order); session
    speakers named after the `references` their voices match."""
    by_index: dict[int, ChunkTranscript | FailedChunk] = {}
    for c in chunks:
        idx = c.chunk_index if c.chunk_index is not None else len(by_index)
        # a transcript beats a failed record for the same index (e.g. a replayed dead letter)
        if idx not in by_index or isinstance(c, ChunkTranscript):
            by_index[idx] = c
    entries: list[ChunkEntry] = []
    segments: list[Segment] = []
    owners: list[int | None] = []  # the chunk each segment came from
    diarized: list[tuple[int, float, ChunkTranscript]] = []
    offset = 0.0
    previous: int | None = None
    stream_zero: dict[int, float] = {}  # chunk that starts a stream -> session time of that stream's 0
    for idx in sorted(by_index):
        if previous is not None:
            for hole in range(previous + 1, idx):
                entries.append(ChunkEntry(index=hole, offset=offset, duration=0.0, status="missing",
                                          reason="no chunk uploaded with this index"))
                segments.append(gap_segment(hole, offset, 0.0, "not uploaded"))
                owners.append(None)
        previous = idx
        c = by_index[idx]
        if isinstance(c, FailedChunk):
            duration = c.duration or 0.0
            entries.append(ChunkEntry(index=idx, source_key=c.source_key, offset=offset, duration=duration,
                                      status="failed", reason=c.reason))
            segments.append(gap_segment(idx, offset, duration, c.error))
            owners.append(None)
        else:
            duration = c.duration
            if c.stream_from is not None and c.stream_start is not None:
                if c.stream_from == idx:
                    stream_zero[idx] = offset - c.stream_start
                elif c.stream_from in stream_zero:
                    offset = round(max(offset, stream_zero[c.stream_from] + c.stream_start), 3)
            entries.append(ChunkEntry(index=idx, source_key=c.source_key, offset=offset, duration=duration,
                                      status="transcribed", language=c.language, run=c.run))
            segments.extend(s.shifted(offset).clamped(offset, offset + duration).model_copy(
                update={"language": s.language or c.language}) for s in c.segments)
            owners.extend(idx for _ in c.segments)
            if c.turns is not None:
                diarized.append((idx, offset, c))
        offset = round(offset + duration, 3)
    transcripts = [c for c in by_index.values() if isinstance(c, ChunkTranscript)]
    languages = Counter(c.language for c in transcripts if c.language)
    expected = manifest.total_chunks if manifest else None
    partial = any(e.status != "transcribed" for e in entries) or (expected is not None and len(by_index) < expected)
    turns: list[SpeakerTurn] | None = None
    speakers: list[SessionSpeaker] | None = None
    problems: list[str] = []
    if diarized:
        segments, turns, speakers, problems = _link(diarized, segments, owners, manifest, references,
                                                    settings or get_settings())
    elif references:
        problems.append("no chunk of this session has speakers (the manifest's diarize is false?): no names given")
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
        turns=turns,
        speakers=speakers,
        speaker_problems=problems or None,
    )


def _link(diarized: list[tuple[int, float, ChunkTranscript]], segments: list[Segment], owners: list[int | None],
          manifest: Manifest | None, references: Sequence[Reference],
          s: Settings) -> tuple[list[Segment], list[SpeakerTurn], list[SessionSpeaker], list[str]]:
    """Session speakers for the chunk-local ones (named where a reference matches); segments, words
    and turns relabelled with them; and why references could not be used, if so."""
    # imported here: linking uses numpy, and the router imports this module (through sessions)
    from transcription.speakers.link import link_speakers, session_centroids

    mapping, speakers = link_speakers(
        diarized, threshold=s.speaker_link_threshold, min_speaker_s=s.speaker_min_s,
        anchor_s=s.speaker_anchor_s,
        min_speakers=manifest.min_speakers if manifest else None,
        max_speakers=manifest.max_speakers if manifest else None,
    )
    problems: list[str] = []
    if references:
        from transcription.speakers.names import DIARIZER, name_speakers

        centroids = session_centroids(diarized, mapping, DIARIZER)
        if not centroids:
            others = sorted({c.diarizer or "unknown" for _, _, c in diarized})
            problems.append(f"speakers are named only among the offline diarizer's voices (DIARIZE=local or off); "
                            f"this session's chunks were diarized by {', '.join(others)}: no names given")
        else:
            relabel, speakers = name_speakers(speakers, centroids, references, s.speaker_name_threshold)
            mapping = {k: relabel.get(v, v) for k, v in mapping.items()}

    def name(idx: int | None, local: str | None) -> str | None:
        return None if idx is None or local is None else mapping.get((idx, local), local)

    out = []
    for seg, idx in zip(segments, owners, strict=True):
        words = None if seg.words is None else [
            w.model_copy(update={"speaker": name(idx, w.speaker)}) for w in seg.words]
        out.append(seg.model_copy(update={"speaker": name(idx, seg.speaker), "words": words}))
    turns = []
    for idx, offset, c in diarized:
        end = offset + c.duration
        for t in c.turns or []:
            start, stop = round(min(t.start + offset, end), 3), round(min(t.end + offset, end), 3)
            if stop > start:
                turns.append(SpeakerTurn(start=start, end=stop, speaker=mapping.get((idx, t.speaker), t.speaker)))
    return out, _merge_turns(turns), speakers, problems


def _merge_turns(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    """Turns in time order, one speaker's overlapping turns joined (two local voices of a chunk may be
    linked into one session speaker)."""
    out: list[SpeakerTurn] = []
    last: dict[str, int] = {}
    for t in sorted(turns, key=lambda t: (t.start, t.end)):
        i = last.get(t.speaker)
        if i is not None and t.start <= out[i].end:
            out[i] = out[i].model_copy(update={"end": max(out[i].end, t.end)})
            continue
        last[t.speaker] = len(out)
        out.append(t)
    return out

