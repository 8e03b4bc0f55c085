"""Renderers: srt and vtt parse back with well-formed monotonic times; tsv and verbose_json fields."""

from __future__ import annotations

import json
import re

import pytest

from transcription.chunk import transcribe_audio
from transcription.formats import FORMATS, render, timestamp
from transcription.options import TranscribeOptions
from transcription.transcript import ChunkTranscript, Segment, Word

SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def _seconds(m: tuple[str, ...]) -> float:
    h, mi, s, ms = map(int, m)
    assert mi < 60 and s < 60
    return h * 3600 + mi * 60 + s + ms / 1000


@pytest.fixture(scope="module")
def transcript(fw_engine, speech_files) -> ChunkTranscript:
    return transcribe_audio(speech_files[1], TranscribeOptions(word_timestamps=True), engine=fw_engine)


def _long_transcript() -> ChunkTranscript:
    """Times past an hour, a speaker, and a newline and a tab inside the text."""
    segs = [Segment(start=3599.9996, end=3725.25, text="first\tline", speaker="SPEAKER_00"),
            Segment(start=3725.5, end=3730.0, text="second\nline", words=[Word(start=3725.5, end=3726, word="second")])]
    return ChunkTranscript(engine="faster-whisper", model="base", duration=3730, language="en", segments=segs)


def _cues(text: str, time_re: str) -> list[tuple[float, float, str]]:
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        idx = next(i for i, line in enumerate(lines) if "-->" in line)
        m = re.fullmatch(f"{time_re} --> {time_re}", lines[idx])
        assert m, lines[idx]
        cues.append((_seconds(m.groups()[:4]), _seconds(m.groups()[4:]), "\n".join(lines[idx + 1:])))
    return cues


@pytest.mark.parametrize("make", ["real", "long"])
def test_srt_parses_back(make, transcript) -> None:
    t = transcript if make == "real" else _long_transcript()
    text = render(t, "srt")
    blocks = text.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [str(i) for i in range(1, len(blocks) + 1)]
    cues = _cues(text, SRT_TIME)
    assert len(cues) == len(t.segments)
    assert all(start <= end for start, end, _ in cues)
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)
    assert all("\n" not in body and body for *_, body in cues)


@pytest.mark.parametrize("make", ["real", "long"])
def test_vtt_parses_back(make, transcript) -> None:
    t = transcript if make == "real" else _long_transcript()
    text = render(t, "vtt")
    assert text.startswith("WEBVTT\n\n")
    cues = _cues(text[len("WEBVTT\n\n"):], VTT_TIME)
    assert len(cues) == len(t.segments)
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)


def test_times_round_to_milliseconds_and_carry() -> None:
    assert timestamp(3599.9996) == "01:00:00,000"
    assert timestamp(61.5, ".") == "00:01:01.500"
    assert timestamp(-0.2) == "00:00:00,000"


def test_tsv_columns(transcript) -> None:
    lines = render(_long_transcript(), "tsv").splitlines()
    assert lines[0] == "start\tend\ttext\tspeaker"  # a transcript with speakers has their column
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == 4 for r in rows)
    assert rows[0] == ["3600000", "3725250", "first line", "Speaker 00"] and rows[1][3] == ""
    lines = render(transcript, "tsv").splitlines()
    assert lines[0] == "start\tend\ttext"
    real = [line.split("\t") for line in lines[1:]]
    assert [int(r[0]) for r in real] == [round(s.start * 1000) for s in transcript.segments]


def test_verbose_json_fields(transcript) -> None:
    body = json.loads(render(transcript, "verbose_json"))
    assert body["task"] == "transcribe" and body["language"] == "en"
    assert body["duration"] == transcript.duration and body["text"] == transcript.text
    for i, seg in enumerate(body["segments"]):
        assert seg["id"] == i
        assert {"start", "end", "text", "avg_logprob", "no_speech_prob", "tokens", "seek"} <= set(seg)
    assert body["words"] and all({"word", "start", "end"} == set(w) for w in body["words"])


def test_json_round_trips_the_model(transcript) -> None:
    again = ChunkTranscript.model_validate_json(render(transcript, "json"))
    assert again == transcript


def test_text_is_one_line_per_segment(transcript) -> None:
    assert render(transcript, "text").splitlines() == [s.text for s in transcript.segments]
    assert set(FORMATS) == {"json", "verbose_json", "text", "srt", "vtt", "tsv"}
    with pytest.raises(ValueError, match="unknown format"):
        render(transcript, "docx")
