"""Speaker labels without audio: clustering with cannot-link groups, session linking, labels on
words and segments, the formats, the manifest. Voices here are vectors with known directions."""

from __future__ import annotations

import json

import numpy as np

from transcription.combine import combine_chunks
from transcription.formats import render
from transcription.manifest import parse_manifest
from transcription.options import TranscribeOptions
from transcription.settings import Settings
from transcription.speakers import wanted
from transcription.speakers.cluster import agglomerate, attach_unanchored
from transcription.speakers.label import label_segments
from transcription.transcript import ChunkTranscript, LocalSpeaker, Segment, SpeakerTurn, Word

RNG = np.random.default_rng(7)
VOICES = {name: RNG.standard_normal(192) for name in ("diane", "sheila", "omar")}


def voice(name: str, noise: float = 0.3) -> list[float]:
    v = VOICES[name] + RNG.standard_normal(192) * noise * np.linalg.norm(VOICES[name]) / np.sqrt(192)
    return list(v / np.linalg.norm(v))


def chunk(index: int, who: list[str], duration: float = 10.0) -> ChunkTranscript:
    """A diarized chunk: local speakers SPEAKER_00.. in the order given, each talking in turn."""
    span = duration / len(who)
    turns = [SpeakerTurn(start=i * span, end=(i + 1) * span, speaker=f"SPEAKER_{i:02d}") for i in range(len(who))]
    segments = [Segment(start=t.start, end=t.end, text=f"{name} talks in chunk {index}", speaker=t.speaker,
                        words=[Word(start=t.start, end=t.end, word=f" {name}", speaker=t.speaker)])
                for t, name in zip(turns, who, strict=True)]
    speakers = [LocalSpeaker(id=f"SPEAKER_{i:02d}", duration=span, embedding=voice(name)) for i, name in enumerate(who)]
    return ChunkTranscript(session_id="s", chunk_index=index, duration=duration, engine="e", model="m",
                           segments=segments, turns=turns, speakers=speakers, diarizer="local")


def test_two_voices_of_one_group_are_never_joined() -> None:
    same = np.array([voice("diane", 0.0)] * 3)
    assert agglomerate(same, 0.5) == [0, 0, 0]
    assert agglomerate(same, 0.5, groups=[1, 1, 2]) in ([0, 1, 0], [0, 1, 1])
    assert len(set(agglomerate(same, 0.5, groups=[1, 1, 1]))) == 3
    apart = np.array([voice("diane"), voice("sheila"), voice("omar")])
    assert agglomerate(apart, 0.5) == [0, 1, 2]
    assert len(set(agglomerate(apart, 0.5, max_clusters=2))) == 2
    assert agglomerate(np.array([voice("diane"), voice("diane")]), 0.5, min_clusters=2) == [0, 1]


def test_a_speaker_made_only_of_short_voices_is_linked_voice_by_voice() -> None:
    """Short voices (under the anchor duration) join the nearest anchored speaker within the threshold,
    even one their own group already has; one far from every anchored speaker stays its own; with no
    anchored speaker at all nothing moves."""
    base = {name: np.array(voice(name, 0.0)) for name in VOICES}
    near_diane = base["diane"] * 0.8 + base["omar"] * 0.35  # about 0.1-0.3 from Diane, not Diane
    vectors = np.array([base["diane"], base["sheila"], near_diane, near_diane, base["omar"]])
    weights = [10.0, 10.0, 1.8, 2.2, 2.0]
    labels = [0, 1, 2, 2, 3]  # the two short copies of one sentence clustered together; Omar alone
    d = 1 - float(near_diane @ base["diane"]) / float(np.linalg.norm(near_diane))
    assert 0.05 < d < 0.45
    assert attach_unanchored(vectors, weights, labels, 3.0, 0.45) == [0, 1, 0, 0, 3]
    assert attach_unanchored(vectors, weights, labels, 3.0, d / 2) == labels
    assert attach_unanchored(vectors, [2.0] * 5, labels, 3.0, 0.45) == labels
    # through the linking: chunk 1's short voice joins Diane although chunk 1's other voice is Diane
    short = chunk(1, ["diane", "sheila"])
    short.speakers[1] = short.speakers[1].model_copy(update={"duration": 1.9, "embedding": list(
        near_diane / np.linalg.norm(near_diane))})
    chunks = [chunk(0, ["diane", "sheila"]), short]
    assert len(combine_chunks("s", chunks, settings=Settings(speaker_anchor_s=0)).speakers) == 3
    linked = combine_chunks("s", chunks, settings=Settings())
    assert len(linked.speakers) == 2 and linked.speakers[0].members == ["0:SPEAKER_00", "1:SPEAKER_00",
                                                                          "1:SPEAKER_01"]


def test_session_speakers_follow_the_voice_not_the_chunk_label() -> None:
    """Chunk 1 hears Sheila first, so its SPEAKER_00 is Sheila: per-chunk labels would be wrong."""
    chunks = [chunk(0, ["diane", "sheila"]), chunk(1, ["sheila", "diane"]), chunk(2, ["omar", "diane"])]
    session = combine_chunks("s", chunks, settings=Settings())
    assert [s.id for s in session.speakers] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_3"]
    by_name: dict[str, set[str]] = {}
    for seg in session.segments:
        by_name.setdefault(seg.text.split()[0], set()).add(seg.speaker)
        assert all(w.speaker == seg.speaker for w in seg.words)
    assert by_name == {"diane": {"SPEAKER_1"}, "sheila": {"SPEAKER_2"}, "omar": {"SPEAKER_3"}}
    assert {t.speaker for t in session.turns} == {"SPEAKER_1", "SPEAKER_2", "SPEAKER_3"}
    assert session.speakers[0].members == ["0:SPEAKER_00", "1:SPEAKER_01", "2:SPEAKER_01"]


def test_two_speakers_of_one_chunk_stay_two_even_with_one_voice() -> None:
    a, b = chunk(0, ["diane", "diane"]), chunk(1, ["diane"])
    session = combine_chunks("s", [a, b], settings=Settings())
    assert len(session.speakers) == 2
    assert session.segments[0].speaker != session.segments[1].speaker


def test_manifest_bounds_the_speaker_count() -> None:
    chunks = [chunk(0, ["diane", "sheila"]), chunk(1, ["omar"])]
    m = parse_manifest({"total_chunks": 2, "diarize": True, "max_speakers": 2})
    assert m.diarize is True and m.max_speakers == 2
    assert len(combine_chunks("s", chunks, m, settings=Settings()).speakers) == 2
    bad = parse_manifest({"total_chunks": 2, "min_speakers": 0, "diarize": "sometimes"})
    assert bad.min_speakers is None and bad.diarize is None and len(bad.problems) == 2 and bad.invalid is None


def test_which_diarizer_a_chunk_gets() -> None:
    off, local = Settings(diarize="off"), Settings(diarize="local")
    assert wanted(TranscribeOptions(), off) is None
    assert wanted(TranscribeOptions(diarize=True), off) == "local"
    assert wanted(TranscribeOptions(), local) == "local"
    assert wanted(TranscribeOptions(diarize=False), local) is None
    m = parse_manifest({"diarize": True, "min_speakers": 2})
    assert m.apply(TranscribeOptions()).diarize is True and m.apply(TranscribeOptions()).min_speakers == 2
    assert m.apply(TranscribeOptions(diarize=False)).diarize is False  # the request wins


def test_a_segment_is_split_where_its_words_change_speaker() -> None:
    turns = [SpeakerTurn(start=0, end=1.0, speaker="A"), SpeakerTurn(start=1.1, end=2.0, speaker="B")]
    words = [Word(start=0.1, end=0.4, word=" Hello"), Word(start=0.5, end=0.9, word=" there."),
             Word(start=1.2, end=1.6, word=" Hi"), Word(start=1.7, end=1.9, word=" back.")]
    seg = Segment(start=0.0, end=2.0, text="Hello there. Hi back.", words=words)
    out = label_segments([seg], turns, keep_words=False)
    assert [(s.speaker, s.text, s.words) for s in out] == [("A", "Hello there.", None), ("B", "Hi back.", None)]
    assert out[0].start == 0.0 and out[1].end == 2.0 and out[0].end <= out[1].start
    no_words = label_segments([Segment(start=0.9, end=1.9, text="x")], turns)
    assert no_words[0].speaker == "B"


def test_every_format_carries_the_session_speakers() -> None:
    session = combine_chunks("s", [chunk(0, ["diane", "sheila"]), chunk(1, ["sheila", "diane"])], settings=Settings())
    vtt = render(session, "vtt")
    assert vtt.count("<v Speaker 1>") == 2 and vtt.count("<v Speaker 2>") == 2
    srt = render(session, "srt")
    assert "[Speaker 1] diane talks in chunk 0" in srt and "[Speaker 2] sheila talks in chunk 1" in srt
    text = render(session, "text").split("\n\n")
    assert text[0].startswith("Speaker 1: diane talks in chunk 0")
    assert text[1].startswith("Speaker 2: sheila talks in chunk 0 sheila talks in chunk 1")  # one turn
    tsv = [line.split("\t") for line in render(session, "tsv").splitlines()]
    assert tsv[0] == ["start", "end", "text", "speaker"] and [r[3] for r in tsv[1:]] == [
        "Speaker 1", "Speaker 2", "Speaker 2", "Speaker 1"]
    body = json.loads(render(session, "verbose_json"))
    assert [s["speaker"] for s in body["segments"]] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_2", "SPEAKER_1"]
    assert [w["speaker"] for w in body["words"]] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_2", "SPEAKER_1"]
    stored = json.loads(render(session, "json"))
    assert [s["id"] for s in stored["speakers"]] == ["SPEAKER_1", "SPEAKER_2"] and stored["turns"]
