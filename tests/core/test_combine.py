"""Combining chunk transcripts: index order, shifted times, gaps for failed or missing chunks."""

from __future__ import annotations

import random

from tests.support.speech import normalize
from transcription.chunk import transcribe_audio
from transcription.combine import combine_chunks
from transcription.layout import parse_chunk_key
from transcription.manifest import Manifest
from transcription.options import TranscribeOptions
from transcription.transcript import FailedChunk


def test_three_real_chunks_combine_in_order_with_increasing_times(fw_engine, sentences, speech_files) -> None:
    chunks = [
        transcribe_audio(path, TranscribeOptions(word_timestamps=True),
                         chunk=parse_chunk_key(f"sessions/s1/chunks/{i:03d}.wav"), engine=fw_engine)
        for i, path in enumerate(speech_files[:3])
    ]
    shuffled = chunks[:]
    random.Random(4).shuffle(shuffled)
    session = combine_chunks("s1", shuffled, Manifest(title="Standup", total_chunks=3))
    assert session.title == "Standup" and not session.partial
    assert [c.index for c in session.chunks] == [0, 1, 2]
    assert session.duration == round(sum(c.duration for c in chunks), 3)
    # offsets are the durations of the chunks before
    assert session.chunks[1].offset == chunks[0].duration
    assert session.chunks[2].offset == round(chunks[0].duration + chunks[1].duration, 3)
    starts = [s.start for s in session.segments]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    word_starts = [w.start for s in session.segments for w in s.words]
    assert word_starts == sorted(word_starts)
    # every segment lies inside its own chunk's span
    for entry, chunk in zip(session.chunks, chunks, strict=True):
        own = [s for s in session.segments if entry.offset <= s.start < entry.offset + entry.duration - 1e-6]
        assert len(own) == len(chunk.segments)
    assert normalize(session.text) == normalize(" ".join(c.text for c in chunks))


def test_failed_chunk_leaves_a_marked_gap(fw_engine, speech_files) -> None:
    a = transcribe_audio(speech_files[0], chunk=parse_chunk_key("sessions/s2/chunks/1.wav"), engine=fw_engine)
    c = transcribe_audio(speech_files[2], chunk=parse_chunk_key("sessions/s2/chunks/3.wav"), engine=fw_engine)
    failed = FailedChunk(session_id="s2", chunk_index=2, source_key="sessions/s2/chunks/2.wav",
                         error="bad_audio", reason="not audio", duration=2.5)
    session = combine_chunks("s2", [c, failed, a], Manifest(total_chunks=3))
    assert session.partial
    assert [(e.index, e.status) for e in session.chunks] == [(1, "transcribed"), (2, "failed"), (3, "transcribed")]
    gap = [s for s in session.segments if s.gap]
    assert len(gap) == 1 and "chunk 2" in gap[0].text and gap[0].end - gap[0].start == 2.5
    assert session.chunks[2].offset == round(a.duration + 2.5, 3)


def test_a_hole_in_the_indices_is_listed_missing(fw_engine, speech_files) -> None:
    a = transcribe_audio(speech_files[0], chunk=parse_chunk_key("sessions/s3/chunks/0.wav"), engine=fw_engine)
    b = transcribe_audio(speech_files[1], chunk=parse_chunk_key("sessions/s3/chunks/2.wav"), engine=fw_engine)
    session = combine_chunks("s3", [a, b])
    assert session.partial
    assert [(e.index, e.status) for e in session.chunks] == [(0, "transcribed"), (1, "missing"), (2, "transcribed")]
