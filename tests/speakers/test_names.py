"""Named speakers: the rules for names and reference clips, the matching, OpenAI's diarized_json
labels, the manifest's `speakers`, and naming on real speech (pyannote's two-person call, each
person's reference clip cut out of the audio it names, and a changed voice that must name no one)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from bench.speakers import faster
from tests.support.real_speech import data_url, load_sample, named_call, person_at, wav_bytes
from transcription.combine import combine_chunks
from transcription.errors import SpeakerReferenceError
from transcription.formats import render
from transcription.manifest import parse_manifest
from transcription.options import TranscribeOptions
from transcription.settings import Settings
from transcription.speakers.diarized import diarized_json
from transcription.speakers.names import Reference, match_names, request_clips
from transcription.speakers.rules import check_name, decode_data_url
from transcription.transcript import ChunkTranscript, Segment

WAV = wav_bytes(np.zeros(16000, np.float32))


def ref(name: str, *v: float) -> Reference:
    x = np.array(v, dtype=np.float64)
    return Reference(name, x / np.linalg.norm(x), 3.0)


# --- rules, no audio -----------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "why"), [
    ("https://example.com/diane.wav", "only data URLs"),
    ("file:///etc/passwd", "only data URLs"),
    ("data:audio/wav,notbase64", "base64 audio"),
    ("data:text/html;base64," + base64.b64encode(b"<html>").decode(), "not audio"),
    ("data:audio/wav;base64,@@@@", "not valid base64"),
    ("data:audio/wav;base64,", "empty"),
    ("data:audio/wav;base64," + "A" * (2 << 20), "over the limit"),
])
def test_a_reference_is_a_bounded_data_url_of_audio(url: str, why: str) -> None:
    with pytest.raises(SpeakerReferenceError, match=why) as e:
        decode_data_url(url, "known_speaker_references[0]")
    assert e.value.reason.startswith("known_speaker_references[0]: ")


def test_a_data_url_decodes_to_its_bytes() -> None:
    assert decode_data_url("data:audio/wav;base64," + base64.b64encode(WAV).decode(), "x") == WAV
    assert decode_data_url("data:;base64," + base64.b64encode(WAV).decode(), "x") == WAV


@pytest.mark.parametrize(("names", "urls", "why"), [
    (["Diane"], [], "one reference clip per name"),
    (["A", "B", "C", "D", "E"], ["data:audio/wav;base64,AA=="] * 5, "at most 4"),
    (["Diane", "diane"], ["data:audio/wav;base64,AA=="] * 2, "named twice"),
    (["SPEAKER_2"], ["data:audio/wav;base64,AA=="], "label of an unnamed speaker"),
    (["B"], ["data:audio/wav;base64,AA=="], "label of an unnamed speaker"),
    (["<v Bob>"], ["data:audio/wav;base64,AA=="], "a name is 1 to 64"),
    (["x" * 65], ["data:audio/wav;base64,AA=="], "a name is 1 to 64"),
])
def test_known_speakers_of_a_request_are_checked_before_any_audio(names, urls, why) -> None:
    with pytest.raises(SpeakerReferenceError, match=why):
        request_clips(names, urls)


def test_names_keep_letters_of_any_script() -> None:
    assert check_name(" Zoë O'Brien-Åsa ", "n") == "Zoë O'Brien-Åsa"


def test_matching_names_each_voice_once_and_only_under_the_threshold() -> None:
    centroids = {"SPEAKER_1": [1.0, 0.0, 0.0], "SPEAKER_2": [0.0, 1.0, 0.0], "SPEAKER_3": [0.0, 0.0, 1.0]}
    refs = [ref("Diane", 1.0, 0.1, 0.0), ref("Sheila", 0.9, 1.0, 0.0), ref("Omar", -1.0, 0.0, 0.0)]
    got = match_names(centroids, refs, threshold=0.3)
    # Sheila's clip is near SPEAKER_1 too, but Diane's is nearer: one name per voice, one voice per name
    assert {k: v[0] for k, v in got.items()} == {"SPEAKER_1": "Diane", "SPEAKER_2": "Sheila"}
    assert "SPEAKER_3" not in got  # Omar is nobody here
    assert match_names(centroids, refs, threshold=0.001) == {}
    # a voice of another embedding (another diarizer's, other dimensions) is never named
    assert match_names({"SPEAKER_1": [1.0, 0.0]}, refs, threshold=1.9) == {}


def test_diarized_json_labels_unknown_speakers_as_openai_does() -> None:
    t = ChunkTranscript(duration=9.0, engine="e", model="m", segments=[
        Segment(start=0, end=1, text=" Hi.", speaker="SPEAKER_01"),
        Segment(start=1, end=2, text="Hello.", speaker="Diane"),
        Segment(start=2, end=3, text="Who?", speaker=None),
        Segment(start=3, end=4, text="Me.", speaker="SPEAKER_00"),
        Segment(start=4, end=5, text="  ", speaker="SPEAKER_00"),
    ])
    body = diarized_json(t)
    assert body["task"] == "transcribe" and body["duration"] == 9.0 and body["usage"] == {"type": "duration",
                                                                                          "seconds": 9.0}
    assert [(s["id"], s["type"], s["speaker"], s["text"]) for s in body["segments"]] == [
        ("seg_0", "transcript.text.segment", "A", "Hi."), ("seg_1", "transcript.text.segment", "Diane", "Hello."),
        ("seg_2", "transcript.text.segment", "Diane", "Who?"), ("seg_3", "transcript.text.segment", "B", "Me.")]
    assert body["text"] == "Hi. Hello. Who? Me."


def test_a_manifest_keeps_its_good_speakers_and_names_the_bad_ones() -> None:
    m = parse_manifest({"total_chunks": 2, "speakers": [
        {"name": "Diane", "reference_key": "sessions/s1/speakers/diane.wav"},
        {"name": "Sheila", "reference_key": "sessions/other/speakers/sheila.wav"},
        {"name": "Mallory", "reference_key": "sessions/s1/chunks/0.wav"},
        {"name": "SPEAKER_1", "reference_key": "sessions/s1/speakers/x.wav"},
        {"name": "Eve"},
        "Bob",
        {"name": "Omar", "reference_key": "sessions/s1/../s2/omar.wav"},
    ]}, "s1")
    assert m.invalid is None and m.total_chunks == 2
    assert [(s.name, s.reference_key) for s in m.speakers] == [("Diane", "sessions/s1/speakers/diane.wav")]
    assert [p.split(":")[0] for p in m.problems] == [f"speakers[{i}]{f}" for i, f in
                                                     [(1, ".reference_key"), (2, ".reference_key"), (3, ".name"),
                                                      (4, ".reference_key"), (5, ""), (6, ".reference_key")]]
    assert all(p.endswith("(ignored)") for p in m.problems)
    # known speakers need speakers: a manifest naming people diarizes its chunks unless it says not to
    assert m.apply(TranscribeOptions()).diarize is True
    assert parse_manifest({"diarize": False, "speakers": m.model_dump()["speakers"]}, "s1").apply(
        TranscribeOptions()).diarize is False
    assert parse_manifest({"speakers": "Diane"}, "s1").problems


# --- real speech ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def diarizer():
    from transcription.speakers.local import LocalDiarizer

    return LocalDiarizer(Settings())


def session_of(diarizer, rec, chunk_s: float) -> list[ChunkTranscript]:
    step = int(chunk_s * 16000)
    out = []
    for i, lo in enumerate(range(0, len(rec.samples), step)):
        samples = rec.samples[lo:lo + step]
        d = diarizer.diarize(samples)
        segments = [Segment(start=t.start, end=t.end, text=f"words {i}-{n}", speaker=t.speaker)
                    for n, t in enumerate(d.turns)]
        out.append(ChunkTranscript(session_id="s", chunk_index=i, duration=round(len(samples) / 16000, 3),
                                   engine="e", model="m", segments=segments, turns=d.turns, speakers=d.speakers,
                                   diarizer=diarizer.name))
    return out




@pytest.mark.whisperx
def test_a_session_names_the_people_whose_clips_match_and_no_one_else(diarizer) -> None:
    """The call in 10 s chunks, linked, then named from clips cut out of it (so never heard in it)."""
    from transcription.speakers.names import embed_clips

    rest, clips = named_call()
    refs = embed_clips([(n, wav_bytes(c.samples), n) for n, c in clips.items()], max_s=30.0)
    chunks = session_of(diarizer, rest, 10.0)
    t = combine_chunks("s", chunks, settings=Settings(), references=refs)
    assert sorted(s.id for s in t.speakers) == ["Diane", "Sheila"], t.speakers
    assert all(s.name_distance is not None and s.name_distance <= Settings().speaker_name_threshold
               for s in t.speakers)
    checked = 0
    for turn in t.turns:
        truth = person_at(rest, turn.start, turn.end)
        if truth and turn.end - turn.start > 1.0:
            assert turn.speaker == truth, (turn, truth)
            checked += 1
    assert checked >= 4
    vtt, srt, text = render(t, "vtt"), render(t, "srt"), render(t, "text")
    assert "<v Diane>" in vtt and "<v Sheila>" in vtt and "[Diane] " in srt and "Sheila: " in text
    assert t.speaker_problems is None
    # the same voices played 25% faster are other people: their clips name nobody
    other = faster(load_sample(), 1.25)
    fakes = embed_clips([(n, wav_bytes(other.cut(a / 1.25, b / 1.25).samples), n) for n, (a, b) in
                         {"Diane": (11.03, 14.49), "Sheila": (21.78, 27.85)}.items()], max_s=30.0)
    unnamed = combine_chunks("s", chunks, settings=Settings(), references=fakes)
    assert [s.id for s in unnamed.speakers] == ["SPEAKER_1", "SPEAKER_2"]


@pytest.mark.whisperx
def test_a_clip_out_of_bounds_is_refused_with_its_reason() -> None:
    from transcription.speakers.names import embed_clips

    call = load_sample()
    for samples, why in [(call.samples[:16000], "1.0 s long"),
                         (call.samples[:16000 * 12], "longer than the maximum of 10 s"),
                         (np.zeros(16000 * 3, np.float32), "silent")]:
        with pytest.raises(SpeakerReferenceError, match=why):
            embed_clips([("Diane", wav_bytes(samples), "known_speaker_references[0] (Diane)")])
    with pytest.raises(SpeakerReferenceError, match=r"^known_speaker_references\[0\] \(Diane\): not a supported"):
        embed_clips([("Diane", b"this is not audio at all", "known_speaker_references[0] (Diane)")])
    assert len(embed_clips([("Diane", wav_bytes(call.samples[:16000 * 12]), "x")], max_s=30.0)[0].embedding) == 192
    assert data_url(call.samples[:10]).startswith("data:audio/wav;base64,")


class Recorded:
    """The real engine, recording the options of each call (what repair asked it for)."""

    def __init__(self, engine) -> None:
        self.inner, self.calls = engine, []
        self.name, self.model_name = engine.name, engine.model_name
        self.device, self.compute_type = engine.device, engine.compute_type

    def transcribe(self, samples, options):
        self.calls.append((len(samples) / 16000, options))
        return self.inner.transcribe(samples, options)

    def detect_language(self, samples, candidates=None):
        return self.inner.detect_language(samples, candidates)


@pytest.mark.whisperx
def test_a_diarized_session_regrouped_by_repair_keeps_word_times_and_speakers(fw_engine) -> None:
    """Chunks of 10 s are transcribed again as one piece when combined. A diarized chunk keeps no
    words (unless asked), so the piece would ask for segment times only: on this call those came back
    made up (0-1 s, 1-2 s, ... for 20 s of speech) and no speaker fitted them. It asks for word times."""
    from transcription.audio import Audio
    from transcription.chunk import transcribe_audio
    from transcription.layout import parse_chunk_key
    from transcription.repair import repair_boundaries
    from transcription.speakers.label import label_segments

    rest, _ = named_call()
    half = int(np.ceil(len(rest.samples) / 2))
    pieces = [rest.samples[:half], rest.samples[half:]]
    options = TranscribeOptions(language="en", diarize=True)
    chunks = [transcribe_audio(wav_bytes(p), options, engine=fw_engine, settings=Settings(),
                               chunk=parse_chunk_key(f"sessions/s/chunks/{i}.wav")) for i, p in enumerate(pieces)]
    assert all(seg.words is None for c in chunks for seg in c.segments)
    session = combine_chunks("s", chunks, settings=Settings())
    engine = Recorded(fw_engine)
    settings = Settings(boundary_regroup_below_s=15.0)
    repaired = repair_boundaries(session, lambda e: Audio(pieces[e.index], "wav"),
                                 options.model_copy(update={"diarize": False}), engine=engine, settings=settings)
    whole = [o for seconds, o in engine.calls if seconds > 15]
    assert whole and all(o.word_timestamps for o in whole), engine.calls
    if repaired.repair["regrouped"]:  # (a piece that disagrees with its chunks is not used)
        spoken = [s for s in repaired.segments if s.text.strip()]
        assert spoken[-1].end > 15.0, [(s.start, s.end) for s in spoken]  # times on the session's timeline
        labelled = label_segments(repaired.segments, repaired.turns, only_missing=True)
        assert all(s.speaker for s in labelled if s.text.strip()), labelled
