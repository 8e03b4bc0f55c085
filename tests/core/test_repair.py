"""Boundary repair with the real model on real (espeak-ng) speech cut inside a word and a number.

The core function needs no S3: chunk audio comes from a callable. The last test goes through
`build_session_transcript` on moto's S3, where the audio is read back from the chunk keys. The
word logic alone (anchors, seams, segment rebuilding) is tested without a model in test_splice.py.
"""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest

from tests.support.real_speech import wav_bytes
from tests.support.speech import normalize, speak
from transcription.audio import SAMPLE_RATE, Audio
from transcription.chunk import load_audio, transcribe_audio
from transcription.combine import combine_chunks
from transcription.errors import AudioError
from transcription.layout import parse_chunk_key
from transcription.manifest import Manifest
from transcription.options import TranscribeOptions
from transcription.repair import repair_boundaries
from transcription.settings import get_settings
from transcription.transcript import ChunkTranscript, FailedChunk, Segment, SessionTranscript

# Whisper base writes this text back exactly when it hears it whole; the number comes back "4,217".
TEXT = ("Please remember to bring the folder to the meeting this afternoon. "
        "The invoice came to 4217 and we paid it on Monday.")
SECOND = "The weather was cold and windy, so we stayed inside and read our books."
EN = TranscribeOptions(language="en")


def words(text: str) -> list[str]:
    """Normalised words, with digit grouping removed ("4,217" and "4217" are the same number)."""
    return normalize(re.sub(r"(?<=\d),(?=\d)", "", text)).split()


def word_span(audio: Audio, engine, word: str) -> tuple[float, float]:
    """Where `word` is spoken, from the whole file's word timestamps (so a cut can land inside it)."""
    whole = transcribe_audio(audio, EN.model_copy(update={"word_timestamps": True}), engine=engine)
    spoken = [w for s in whole.segments for w in s.words]
    for i, w in enumerate(spoken):
        got = words(w.word)
        if got == [word]:
            end = spoken[i + 1].end if word.isdigit() else w.end  # "4" then ",217": the whole number
            return w.start, end
        if word.isdigit() and len(got) == 1 and got[0].isdigit() and got[0].startswith(word):
            return w.start, w.end  # the number as one word ("4217" or "4,217")
    raise AssertionError(f"{word!r} not in {whole.text!r}")


def cut(audio: Audio, at: list[float]) -> list[Audio]:
    edges = [0, *(round(t * SAMPLE_RATE) for t in at), len(audio.samples)]
    return [Audio(audio.samples[a:b], "wav") for a, b in itertools.pairwise(edges)]


def session_of(pieces: list[Audio], engine, options: TranscribeOptions, session_id: str = "rep",
               failed: set[int] = frozenset()) -> SessionTranscript:
    parts = []
    for i, p in enumerate(pieces):
        key = f"sessions/{session_id}/chunks/{i}.wav"
        if i in failed:
            parts.append(FailedChunk(session_id=session_id, chunk_index=i, source_key=key, error="bad_audio",
                                     reason="not audio", duration=round(p.duration, 3)))
        else:
            parts.append(transcribe_audio(p, options, chunk=parse_chunk_key(key), engine=engine))
    return combine_chunks(session_id, parts, Manifest(language="en", total_chunks=len(pieces)))


class Loader:
    """Chunk audio by index, remembering which chunks were asked for."""

    def __init__(self, pieces: list[Audio]) -> None:
        self.pieces, self.asked = pieces, []

    def __call__(self, entry) -> Audio:
        self.asked.append(entry.index)
        return self.pieces[entry.index]


def assert_monotonic(t: SessionTranscript) -> None:
    last = 0.0
    for seg in t.segments:
        assert last - 1e-6 <= seg.start <= seg.end, (last, seg)
        for w in seg.words or []:
            assert seg.start - 1e-6 <= w.start <= w.end <= seg.end + 1e-6, (seg, w)
            assert w.start >= last - 1e-6, (last, w)
            last = w.end
        last = seg.end
    assert last <= t.duration + 1e-6


@pytest.fixture(scope="module")
def text_audio(fw_engine) -> tuple[Audio, list[float]]:
    """TEXT, and two cuts: a third into "afternoon" and halfway through the number."""
    audio = load_audio(speak(TEXT))
    start, end = word_span(audio, fw_engine, "afternoon")
    n_start, n_end = word_span(audio, fw_engine, "4")
    return audio, [round(start + 0.3 * (end - start), 2), round((n_start + n_end) / 2, 2)]


@pytest.mark.parametrize(("chunk_words", "mode"), [(False, "windows"), (True, "windows"), (False, "regrouped"),
                                                   (True, "joint")],
                         ids=["segment-times-windows", "word-times-windows", "regrouped", "word-times-joint"])
def test_cuts_inside_a_word_and_a_number_are_repaired(fw_engine, settings, text_audio, chunk_words, mode) -> None:
    """Chunk transcripts with segment times only (what the server and worker store) and with words.

    `windows`: a window at each cut. `regrouped`: the short chunks transcribed again as one piece.
    `joint`: a piece too short for the whole run (a long session), so the cut after it gets a window.
    """
    audio, cuts = text_audio
    pieces = cut(audio, cuts)
    settings = settings.model_copy(update={
        "windows": {"boundary_regroup_below_s": 0.0},
        "regrouped": {"boundary_regroup_below_s": 15.0},
        "joint": {"boundary_regroup_below_s": 15.0, "boundary_regroup_span_s": cuts[1] + 0.05},
    }[mode])
    naive = session_of(pieces, fw_engine, EN.model_copy(update={"word_timestamps": chunk_words}))
    before = naive.model_copy(deep=True)
    assert words(naive.text) != words(TEXT)  # the cuts do damage: something to repair
    loader = Loader(pieces)
    repaired = repair_boundaries(naive, loader, EN, engine=fw_engine, settings=settings)
    assert words(repaired.text) == words(TEXT)  # every word once, in order
    assert_monotonic(repaired)
    assert (repaired.segments[0].words is not None) == chunk_words  # no invented word times
    record = repaired.repair
    assert record["boundaries_repaired"] == 2 and record["boundaries_skipped"] == []
    assert record["window_s"] == settings.boundary_window_s
    window = 2 * settings.boundary_window_s
    if mode == "windows":  # each window: up to W seconds of each side of its cut
        assert record["regrouped"] == [] and 0 < record["extra_audio_s"] <= 2 * window + 0.01
    elif mode == "regrouped":  # the whole run once, no windows
        assert record["regrouped"] == [[0, 2]] and record["extra_audio_s"] == pytest.approx(audio.duration, abs=0.01)
        # the piece's words come back a sentence per segment, whatever segments Whisper gave the piece
        assert [words(seg.text) for seg in repaired.segments] == [words(x + ".") for x in TEXT.split(". ")]
    else:  # chunks 0-1 as one piece, then a window at the cut into chunk 2
        assert record["regrouped"] == [[0, 1]]
        assert cuts[1] < record["extra_audio_s"] <= cuts[1] + window + 0.01
    assert sorted(set(loader.asked)) == [0, 1, 2]
    assert naive == before  # the input (and so the chunk transcripts) untouched
    assert repaired.chunks == naive.chunks and repaired.duration == naive.duration
    # idempotent: a repaired transcript is returned as it is, without reading audio again
    again = repair_boundaries(repaired, Loader([]), EN, engine=fw_engine, settings=settings)
    assert again == repaired


def test_repair_off_gives_the_naive_result(fw_engine, settings, text_audio) -> None:
    audio, cuts = text_audio
    pieces = cut(audio, cuts)
    naive = session_of(pieces, fw_engine, EN)
    loader = Loader(pieces)
    off = settings.model_copy(update={"boundary_repair": False})
    result = repair_boundaries(naive, loader, EN, engine=fw_engine, settings=off)
    assert result == naive and result.repair is None and loader.asked == []


def test_no_repair_across_a_failed_chunk(fw_engine, settings) -> None:
    """Chunks 0 and 1 hold one sentence (cut inside a word), chunk 2 failed, chunk 3 is another sentence."""
    first = load_audio(speak(TEXT))
    start, end = word_span(first, fw_engine, "afternoon")
    second = load_audio(speak(SECOND))
    pieces = [*cut(first, [round(start + 0.3 * (end - start), 2)]), Audio(second.samples[:SAMPLE_RATE], "wav"),
              Audio(second.samples[SAMPLE_RATE:], "wav")]
    naive = session_of(pieces, fw_engine, EN, session_id="gap", failed={2})
    loader = Loader(pieces)
    repaired = repair_boundaries(naive, loader, EN, engine=fw_engine, settings=settings)
    assert repaired.partial and [c.status for c in repaired.chunks] == ["transcribed"] * 2 + ["failed", "transcribed"]
    assert repaired.repair["boundaries"] == 1 and repaired.repair["boundaries_repaired"] == 1
    assert repaired.repair["regrouped"] == [[0, 1]]  # a run of short chunks ends at the gap
    assert sorted(set(loader.asked)) == [0, 1]  # the chunks beside the gap were never reopened
    gaps = [s for s in repaired.segments if s.gap]
    assert gaps == [s for s in naive.segments if s.gap] and len(gaps) == 1 and "chunk 2" in gaps[0].text
    # the chunk after the gap is exactly as naive combining left it
    after = [s for s in naive.segments if s.start >= gaps[0].end]
    assert after and repaired.segments[-len(after):] == after
    assert words(" ".join(s.text for s in repaired.segments if s.end <= gaps[0].start)) == words(TEXT)
    assert_monotonic(repaired)


class NoEngine:
    """Stands in for the engine where none may be used (every chunk's audio is missing or alone)."""

    name, model_name = "none", "none"

    def transcribe(self, samples, options):
        raise AssertionError("nothing should have been transcribed")


def test_a_chunk_without_audio_splits_a_run_and_skips_only_its_boundaries(settings) -> None:
    """Three short chunks, the middle one's audio gone: no piece of two, both boundaries skipped, reasons kept."""
    parts = [ChunkTranscript(session_id="gone", chunk_index=i, source_key=f"sessions/gone/chunks/{i}.wav",
                             duration=5.0, engine="faster-whisper", model="base",
                             segments=[Segment(start=0.5, end=4.5, text=f"Sentence number {i}.")]) for i in range(3)]
    naive = combine_chunks("gone", parts)

    def load(entry) -> Audio:
        if entry.index == 1:
            raise AudioError("not audio")
        return Audio(np.zeros(5 * SAMPLE_RATE, np.float32), "wav")

    repaired = repair_boundaries(naive, load, EN, engine=NoEngine(), settings=settings)
    assert repaired.repair["regrouped"] == [] and repaired.repair["boundaries_repaired"] == 0
    assert repaired.repair["boundaries_skipped"] == [{"after_chunk": 0, "reason": "not audio"},
                                                     {"after_chunk": 1, "reason": "not audio"}]
    assert repaired.segments == naive.segments


def test_build_session_transcript_repairs_from_s3(moto, bucket, fw_engine, text_audio, env) -> None:
    """The session combine reads the chunk audio back from S3 by the layout and repairs the boundary."""
    import transcription.engines
    from transcription import sessions

    audio, cuts = text_audio
    s3 = moto.client("s3")
    s3.put_object(Bucket=bucket, Key="sessions/s3rep/manifest.json",
                  Body=json.dumps({"language": "en", "total_chunks": 2}).encode())
    for i, piece in enumerate(cut(audio, cuts[:1])):
        key = f"sessions/s3rep/chunks/{i:03d}.wav"
        s3.put_object(Bucket=bucket, Key=key, Body=wav_bytes(piece.samples))
        t = transcribe_audio(wav_bytes(piece.samples), EN, chunk=parse_chunk_key(key), engine=fw_engine)
        s3.put_object(Bucket=bucket, Key=f"transcripts/s3rep/chunks/{i}.json", Body=t.model_dump_json().encode())
    env.setattr(transcription.engines, "_engine", fw_engine)  # the process's engine, loaded as a worker has it
    env.setenv("BOUNDARY_REPAIR", "false")
    get_settings.cache_clear()
    plain = sessions.build_session_transcript(bucket, "s3rep")
    assert plain.repair is None and words(plain.text) != words(TEXT)
    env.setenv("BOUNDARY_REPAIR", "true")
    get_settings.cache_clear()
    repaired = sessions.build_session_transcript(bucket, "s3rep")
    assert repaired.repair["boundaries_repaired"] == 1 and words(repaired.text) == words(TEXT)
    assert [c.status for c in repaired.chunks] == ["transcribed", "transcribed"]
    assert_monotonic(repaired)


