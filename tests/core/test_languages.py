"""Languages: per segment, per transcript (with durations), per chunk of a session; a list of
candidate languages restricts detection.

The German here is espeak-ng's (`tests/support/languages.py`): no German recording with a reference
ships with what is installed.
"""

from __future__ import annotations

import itertools
import json

import pytest

from tests.support.languages import GERMAN, german
from transcription.audio import Audio
from transcription.chunk import transcribe_audio
from transcription.combine import combine_chunks
from transcription.formats import render
from transcription.manifest import Manifest, parse_manifest
from transcription.options import TranscribeOptions
from transcription.transcript import ChunkTranscript, Segment


def test_a_list_of_languages_means_detect_among_them() -> None:
    assert TranscribeOptions(language="en").languages is None
    o = TranscribeOptions(language="EN, de")
    assert (o.language, o.languages) == (None, ["en", "de"])
    o = TranscribeOptions.model_validate({"language": ["de", "en", "de"]})
    assert (o.language, o.languages) == (None, ["de", "en"])
    assert TranscribeOptions.model_validate({"language": ["fr"]}).language == "fr"  # one is fixed
    with pytest.raises(ValueError, match="ISO 639-1"):
        TranscribeOptions(language="en,english")
    # a manifest's list reaches the chunk's options; a caller's own language still wins
    manifest = parse_manifest({"language": ["en", "de"], "total_chunks": 2})
    assert manifest.language == ["en", "de"] and not manifest.problems
    assert manifest.apply(TranscribeOptions()).languages == ["en", "de"]
    assert manifest.apply(TranscribeOptions(language="fr")).model_dump(exclude_defaults=True) == {"language": "fr"}
    assert Manifest(language="de").apply(TranscribeOptions(language="en,fr")).languages == ["en", "fr"]


def _bilingual_chunk(index: int = 0) -> ChunkTranscript:
    return ChunkTranscript(
        engine="faster-whisper", model="base", duration=10.0, language="en", chunk_index=index,
        segments=[Segment(start=0.0, end=4.0, text="Good morning."),  # no language: the transcript's
                  Segment(start=4.5, end=9.5, text="Guten Morgen.", language="de")])


def test_a_transcript_carries_its_languages_and_verbose_json_shows_them() -> None:
    t = _bilingual_chunk()
    assert t.languages == {"de": 5.0, "en": 4.0}
    assert ChunkTranscript.model_validate_json(t.model_dump_json()).languages == t.languages  # stored and read back
    body = json.loads(render(t, "verbose_json"))
    assert body["languages"] == {"de": 5.0, "en": 4.0}
    assert [s["language"] for s in body["segments"]] == ["en", "de"]
    # text, srt and vtt say the same as they did before segments carried a language
    plain = t.model_copy(update={"segments": [s.model_copy(update={"language": None}) for s in t.segments]})
    for fmt in ("text", "srt", "vtt", "tsv"):
        assert render(t, fmt) == render(plain, fmt)


def test_a_session_records_each_chunks_language() -> None:
    de = ChunkTranscript(engine="faster-whisper", model="base", duration=5.0, language="de", chunk_index=1,
                         segments=[Segment(start=0.0, end=4.0, text="Bitte vergessen Sie nicht.")])
    session = combine_chunks("s", [_bilingual_chunk(0), de])
    assert [c.language for c in session.chunks] == ["en", "de"]
    assert [s.language for s in session.segments] == ["en", "de", "de"]
    assert session.languages == {"de": 9.0, "en": 4.0}


@pytest.fixture(scope="module")
def german_audio() -> Audio:
    return Audio(german(GERMAN[:2]).samples, "wav")


def test_segments_carry_the_detected_language_and_candidates_restrict_it(fw_engine, german_audio) -> None:
    among = transcribe_audio(german_audio, TranscribeOptions(language="en,de"), engine=fw_engine)
    assert among.language == "de" and {s.language for s in among.segments} == {"de"}
    assert list(among.languages) == ["de"] and among.languages["de"] > 5
    assert among.options == {"languages": ["en", "de"]}
    assert "wetter" in among.text.lower() or "morgen" in among.text.lower()
    # German is not among the candidates: detection may not choose it
    restricted = transcribe_audio(german_audio, TranscribeOptions(language="en,fr"), engine=fw_engine)
    assert restricted.language in ("en", "fr")
    assert {s.language for s in restricted.segments} == {restricted.language}


# --- sessions ---------------------------------------------------------------------------------------

CUTS = [10.0, 20.0, 30.25, 41.0]  # 10 s chunks; 30.25 lies in the pause between the English and the German


@pytest.fixture(scope="module")
def bilingual_session(fw_engine):
    """Real English (pyannote's sample call) then espeak-ng German, cut into five ~10 s chunks,
    each transcribed alone (detecting its own language) and combined naively."""
    from tests.support.languages import bilingual

    rec = bilingual()
    edges = [0, *(round(t * 16000) for t in CUTS), len(rec.samples)]
    pieces = [Audio(rec.samples[a:b], "wav") for a, b in itertools.pairwise(edges)]
    chunks = []
    for i, audio in enumerate(pieces):
        t = transcribe_audio(audio, TranscribeOptions(), engine=fw_engine)
        chunks.append(t.model_copy(update={"chunk_index": i, "session_id": "bi"}))
    return rec, pieces, combine_chunks("bi", chunks, Manifest(total_chunks=len(pieces)))


def test_a_session_is_never_regrouped_or_repaired_across_a_language_change(fw_engine, settings,
                                                                          bilingual_session) -> None:
    """Fails on a combine that regroups the five chunks into one piece decoded in one language:
    the German comes back as English (a translation), WER near 1 against the German text."""
    from tests.support.languages import text_in
    from tests.support.real_speech import wer
    from transcription.repair import repair_boundaries

    rec, pieces, naive = bilingual_session
    assert [c.language for c in naive.chunks] == ["en", "en", "en", "de", "de"]
    repaired = repair_boundaries(naive, lambda entry: pieces[entry.index], engine=fw_engine,
                                 settings=settings.model_copy(update={"boundary_regroup_below_s": 15.0}))
    assert repaired.repair is not None
    # each language's run is a piece of its own (the hallucination guard may reject the English one
    # for leaving out the chunks' words: then the chunks' words stand); none spans the change
    rejected = [r["chunks"] for r in repaired.repair.get("rejected", []) if "chunks" in r]
    assert [3, 4] in repaired.repair["regrouped"] + rejected
    assert sorted(repaired.repair["regrouped"] + rejected) in ([[0, 2], [3, 4]], [[3, 4]]), repaired.repair
    assert {"after_chunk": 2, "reason": "language changes (en to de)"} in repaired.repair["boundaries_skipped"]
    assert [c.language for c in repaired.chunks] == ["en", "en", "en", "de", "de"]
    german_text = " ".join(s.text for s in repaired.segments if s.start >= CUTS[2])
    english_text = " ".join(s.text for s in repaired.segments if s.end <= CUTS[2])
    assert {s.language for s in repaired.segments if s.start >= CUTS[2]} == {"de"}
    assert wer(text_in(rec, "de"), german_text) <= 0.4, german_text
    assert wer(text_in(rec, "en"), english_text) <= 0.3, english_text
    assert repaired.languages["en"] > 15 and repaired.languages["de"] > 12


# --- the speech-coverage guard ----------------------------------------------------------------------

def test_speech_in_another_language_after_the_first_30_s_is_decoded_again_in_its_own(fw_engine) -> None:
    """Real English (the sample call) then espeak-ng German in one file: Whisper detects English
    from the first 30 s and writes the German as English; the guard hears German there and decodes
    that stretch again on its own, recorded as `speech_recovered`."""
    from tests.support.languages import bilingual, text_in
    from tests.support.real_speech import wer

    rec = bilingual(sentences=GERMAN[:2])
    t = transcribe_audio(Audio(rec.samples, "wav"), TranscribeOptions(), engine=fw_engine)
    recovered = t.options["speech_recovered"]
    assert any(r["language"] == "de" and r["reason"] == "language" and r["start"] < 31.5 for r in recovered), recovered
    german_text = " ".join(s.text for s in t.segments if s.language == "de")
    assert wer(text_in(rec, "de"), german_text) <= 0.4, german_text
    assert t.languages["de"] > 6 and t.languages["en"] > 15
    english_text = " ".join(s.text for s in t.segments if s.language == "en")
    assert wer(text_in(rec, "en"), english_text) <= 0.4, english_text



@pytest.mark.parametrize("case", ["en-de-en", "de-en"])
def test_a_switch_inside_the_first_30_s_is_found_when_detection_was_unsure(fw_engine, case) -> None:
    """Real English (the sample call) and espeak-ng German inside one 30 s window, which Whisper's
    detection hears as a whole and less surely (0.51-0.94 here against 0.97+ for one language): the
    window is checked in blocks, the stretch in the other language grows span by span to where it
    switches back, and is decoded on its own. Before this, the German came back as English (WER 1.0)
    and the English around it at 0.41."""
    from tests.support.languages import switching, text_in
    from tests.support.real_speech import wer

    rec = switching(case)
    t = transcribe_audio(Audio(rec.samples, "wav"), TranscribeOptions(), engine=fw_engine)
    recovered = t.options.get("speech_recovered", [])
    assert any(r["reason"] == "language" and r["start"] < 25 for r in recovered), recovered
    by_language = {lang: " ".join(s.text for s in t.segments if (s.language or t.language) == lang)
                   for lang in ("en", "de")}
    assert wer(text_in(rec, "de"), by_language["de"]) <= 0.4, by_language
    assert wer(text_in(rec, "en"), by_language["en"]) <= 0.3, by_language
