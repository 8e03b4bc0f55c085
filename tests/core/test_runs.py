"""Splitting a run's transcript back into chunk transcripts (transcription/runs.py), table by table.

The worker tests (tests/tasks/test_runs.py) run whole backlogs through a real worker; here the split
itself, where every rule can fail on its own: a word goes to the chunk holding its midpoint, times
become chunk-relative and stay inside the chunk, a segment without word times is split by its
time spread over its words, and each chunk transcript records its run and its share of engine time.
"""

from __future__ import annotations

import pytest

from transcription import layout
from transcription.runs import split_run
from transcription.transcript import ChunkTranscript, Segment, Word

SPANS = [(layout.parse_chunk_key(f"sessions/s1/chunks/{i}.wav"), 5.0) for i in (3, 4, 5)]


def run_transcript(segments: list[Segment]) -> ChunkTranscript:
    return ChunkTranscript(session_id="s1", chunk_index=3, source_key="sessions/s1/chunks/3.wav", duration=15.0,
                           language="en", engine="faster-whisper", model="base", segments=segments,
                           processing_s=3.0)


def words(*items: tuple[str, float, float]) -> list[Word]:
    return [Word(word=w, start=a, end=b) for w, a, b in items]


def test_words_go_to_the_chunk_holding_their_midpoint_with_chunk_relative_times() -> None:
    seg = Segment(start=3.0, end=7.0, text="one two three four", words=words(
        (" one", 3.0, 3.5), (" two", 4.0, 4.9), (" three", 4.8, 5.4), (" four", 6.0, 7.0)))
    out = split_run(run_transcript([seg]), SPANS)
    assert [t.chunk_index for t in out] == [3, 4, 5]
    assert [s.text for s in out[0].segments] == ["one two"]  # "three" (4.8-5.4, midpoint 5.1) is chunk 4's
    assert [s.text for s in out[1].segments] == ["three four"]
    assert out[1].segments[0].start == 0.0  # clamped at the chunk's start (it began 0.2 s before the cut)
    assert [(w.start, w.end) for w in out[1].segments[0].words] == [(0.0, 0.4), (1.0, 2.0)]
    assert out[2].segments == []


@pytest.mark.parametrize(("start", "end", "text", "expected"), [
    (1.0, 4.0, "inside the first chunk", {3: ["inside the first chunk"]}),  # kept whole, own times
    (4.0, 6.0, "aa bb cc dd", {3: ["aa bb"], 4: ["cc dd"]}),  # split at the cut by spread times
    (8.0, 11.0, "", {4: [""]}),  # no text: by its midpoint (9.5 is in chunk 4, 5-10 s), clamped to it
])
def test_segments_without_word_times(start, end, text, expected) -> None:
    out = split_run(run_transcript([Segment(start=start, end=end, text=text)]), SPANS)
    got = {t.chunk_index: [s.text for s in t.segments] for t in out if t.segments}
    assert got == expected
    for t in out:
        for s in t.segments:
            assert 0.0 <= s.start <= s.end <= t.duration and s.words is None


def test_each_chunk_records_its_run_and_its_share_of_engine_time() -> None:
    out = split_run(run_transcript([Segment(start=0.0, end=2.0, text="hello")]), SPANS)
    assert [t.run for t in out] == [[3, 5]] * 3
    assert [t.processing_s for t in out] == [1.0, 1.0, 1.0]
    assert [t.source_key for t in out] == [c.key for c, _ in SPANS]
    assert all(t.duration == 5.0 and t.language == "en" for t in out)
