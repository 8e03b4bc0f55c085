"""The hallucination guard and the regroup/window agreement check, on real recorded speech.

The trigger is pyannote's `sample.wav` (a 30 s phone call with its human transcript): transcribed
whole, faster-whisper base ends it with its last sentence twice ("Oh, I don't hear that in New
Jersey now." at 20-22 s and again at 22-24 s), padded with a second of silence or not.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.real_speech import concat, load_sample, normalize_text, wer
from transcription.agreement import disagreement
from transcription.audio import SAMPLE_RATE, Audio
from transcription.chunk import transcribe_audio
from transcription.combine import combine_chunks
from transcription.guard import Energy, looped, redecode, suspicious
from transcription.layout import parse_chunk_key
from transcription.options import TranscribeOptions
from transcription.repair import repair_boundaries
from transcription.transcript import Segment, Word

EN = TranscribeOptions(language="en")
TAIL = "i don't hear that in new jersey now"


def tails(text: str) -> int:
    return normalize_text(text).count(TAIL)


class Counting:
    """The real engine, counting its calls."""

    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, 0

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def transcribe(self, samples, options):
        self.calls += 1
        return self.engine.transcribe(samples, options)


@pytest.fixture(scope="module")
def padded():
    return load_sample().pad(after_s=1.0)


def test_the_repeated_tail_is_gone_and_recorded(fw_engine, settings, padded) -> None:
    off = transcribe_audio(Audio(padded.samples, "wav"), EN, engine=fw_engine,
                           settings=settings.model_copy(update={"hallucination_guard": False}))
    assert tails(off.text) == 2, f"the trigger no longer fires on this machine: {off.text!r}"
    on = transcribe_audio(Audio(padded.samples, "wav"), EN, engine=fw_engine, settings=settings)
    assert tails(on.text) == 1, on.text
    actions = on.options.get("hallucination_dropped", []) + on.options.get("hallucination_redecoded", [])
    assert any("repeats earlier text" in a["reason"] for a in actions), on.options
    assert all(0 <= a["start"] < a["end"] <= padded.duration for a in actions)
    assert wer(padded.reference_text, on.text) < wer(padded.reference_text, off.text)


def test_the_coverage_guard_adds_no_second_rendering_of_drifted_speech(fw_engine, settings, padded) -> None:
    """The guard drops the repeated tail (22-24.5 s), which leaves 8 s of speech without words for the
    coverage guard. Decoded again, that stretch brings the call's last line (timed 4 s early in the
    first decode) and a second rendering of "so what can I say" ("so what kind of thing" beside the
    first decode's "so we'll come back there"). Re-anchored on the repeated line, it is the same
    speech: the transcript with coverage on scores no worse than with it off (it scored 0.198
    against 0.136 before)."""
    without = settings.model_copy(update={"speech_coverage": False})
    off = transcribe_audio(Audio(padded.samples, "wav"), EN, engine=fw_engine, settings=without)
    on = transcribe_audio(Audio(padded.samples, "wav"), EN, engine=fw_engine, settings=settings)
    assert on.options.get("speech_recovered"), "the coverage guard no longer looks at this stretch"
    assert wer(padded.reference_text, on.text) <= wer(padded.reference_text, off.text), on.text
    assert tails(on.text) == 1, on.text


def test_speech_said_again_a_window_later_is_kept(fw_engine, settings) -> None:
    """The call twice over (60 s; a long session or a run repeats lines too): the second copy's lines
    repeat the first's word for word, so the guard flags them and decodes them again without the
    prompt. What comes back is more than a decoding window (30 s) from the text it repeats, by word
    timestamps: speech said again, not a copied line. The transcript keeps both copies, each where it
    was said (before, the second copy was dropped: 0.54 of errors)."""
    twice = concat([load_sample()] * 2)
    t = transcribe_audio(Audio(twice.samples, "wav"), EN.model_copy(update={"word_timestamps": True}),
                         engine=fw_engine, settings=settings)
    flagged = t.options.get("hallucination_redecoded", []) + t.options.get("hallucination_dropped", [])
    assert any("repeats earlier text" in a["reason"] and a["start"] >= 30 for a in flagged), t.options
    said = [s.start for s in t.segments if "diane in new jersey" in normalize_text(s.text)]
    assert len(said) == 2 and abs(said[0] - 12.5) < 2 and abs(said[1] - 42.5) < 2, t.text
    assert normalize_text(t.text).count("chicago") == normalize_text(twice.reference_text).count("chicago"), t.text
    assert wer(twice.reference_text, t.text) < 0.3, t.text


def test_the_guard_costs_one_engine_call_where_nothing_fires(fw_engine, settings) -> None:
    clean = load_sample().cut(6.0, 21.9)  # the call's first 15 s of speech: nothing repeated, no tail
    counting = Counting(fw_engine)
    t = transcribe_audio(Audio(clean.samples, "wav"), EN, engine=counting, settings=settings)
    assert counting.calls == 1, t.options
    assert not any(k.startswith("hallucination") for k in t.options)
    assert wer(clean.reference_text, t.text) < 0.35


def test_words_over_silence_are_dropped_and_a_span_decodes_alone(fw_engine) -> None:
    call = load_sample()
    energy = Energy(call.samples)
    # a segment with word times over the call's silence before its first words (a beep at 2-3 s),
    # and one past its last voiced frame
    quiet = Segment(start=4.0, end=5.9, text="Thank you for watching.",
                    words=[Word(start=4.0 + i * 0.45, end=4.4 + i * 0.45, word=w) for i, w in
                           enumerate(["Thank", " you", " for", " watching."])])
    assert suspicious(quiet, [], energy).startswith("over silence")
    late = Segment(start=30.5, end=31.0, text="Thank you.")
    assert suspicious(late, [], Energy(np.concatenate([call.samples, np.zeros(SAMPLE_RATE)]))).startswith("over")
    # the same words without word times: Whisper's segment times drift, so no verdict on them
    assert suspicious(quiet.model_copy(update={"words": None}), [], energy) is None
    spoken = Segment(start=12.5, end=14.2, text="This is Diane in New Jersey.")
    assert suspicious(spoken, [], energy) is None
    assert suspicious(spoken, normalize_text("hello this is diane in new jersey ok").split(), energy).startswith(
        "repeats")
    assert suspicious(Segment(start=12, end=14, text="the following, the following, the following"), [],
                      energy).startswith("a loop")
    assert looped(["so", "so", "so"]) is False and looped(["and", "i"] * 3) is True
    assert looped(["hello"] * 3 + ["i", "didn't", "know"]) is False  # the call's start
    assert looped(["following"] * 5) is True
    # a span decoded on its own: times on the call's timeline, inside the span
    span = redecode(fw_engine, call.samples, 12.4, 14.3, EN)
    assert "new jersey" in normalize_text(" ".join(s.text for s in span.segments))
    assert all(12.4 <= s.start <= s.end <= 14.3 for s in span.segments)


@pytest.mark.parametrize(("chunks", "new", "verdict"), [
    ("so i came back there oh i don't", "so we came back there oh i don't", None),  # a word at a cut
    ("well there's not much", "well there's not much difference at least", None),  # words the chunks lost
    ("oh i don't hear that in new jersey now", "oh i don't hear that in new jersey now oh i don't hear that "
     "in new jersey now", "repeating its own text"),
    # a repair window at the end of the call: its words appended after the chunk's own, shortened
    ("oh i don't hear that in new jersey now", "oh i don't hear that in new jersey now don't hear that new "
     "jersey now", "repeating its own text"),
    ("well there's not much difference so we'll come back there oh i don't hear that in new jersey now",
     "well there's not much difference so we'll come back there oh i don't hear that in new jersey now well "
     "there's men well there is not much difference so we'll come", "repeating its own text"),
    ("one two three four five six seven eight nine", "one nine", "leaves out 7"),
    ("a b c d e f g h", "z y x w v u t s", "replaces 8"),
])
def test_agreement_allows_what_cuts_explain_and_nothing_more(chunks: str, new: str, verdict: str | None) -> None:
    reason = disagreement(chunks.split(), new.split())
    assert (reason is None) if verdict is None else (reason is not None and verdict in reason), reason


@pytest.mark.parametrize(("chunks", "new", "verdict"), [
    # a regrouped piece's tail over the end of its audio: the last sentence heard again, reworded
    ("so what can i say i don't hear that new jersey now", "so what comes next i don't hear that new jersey now "
     "so we'll come back there", "after the chunks' last word"),
    ("hello hello oh hello", "thank you all hello hello oh hello", "before the chunks' first word"),
    ("hello hello oh hello i didn't know", "hello hello oh hello i didn't know you", None),  # a split word
    ("i heard a beep this is", "i heard of deep this is", None),  # a word inside: the piece may differ
    ("well there's not much", "well there's not much difference at least", "after the chunks' last word"),
])
def test_a_regrouped_piece_adds_no_words_at_its_edges(chunks: str, new: str, verdict: str | None) -> None:
    """A piece has its chunks' edges: what it adds beyond their first or last word no cut explains
    (the same words added inside a piece are what a cut lost, test above)."""
    reason = disagreement(chunks.split(), new.split(), same_edges=True)
    assert (reason is None) if verdict is None else (reason is not None and verdict in reason), reason


def test_a_regrouped_piece_that_repeats_a_sentence_is_rejected_for_its_span(fw_engine, settings, padded) -> None:
    """Chunks of 10 s and a 1 s final chunk (each right on its own): regrouped without the guard, the
    31 s piece says its last sentence twice; the chunks' words stay and the record says why."""
    n = 10 * SAMPLE_RATE
    pieces = [Audio(padded.samples[i:i + n], "wav") for i in range(0, len(padded.samples), n)]
    chunks = [transcribe_audio(p, EN, chunk=parse_chunk_key(f"sessions/tail/chunks/{i}.wav"), engine=fw_engine,
                               settings=settings) for i, p in enumerate(pieces)]
    naive = combine_chunks("tail", chunks)
    assert tails(naive.text) <= 1, naive.text
    unguarded = settings.model_copy(update={"hallucination_guard": False, "boundary_repair": True})
    out = repair_boundaries(naive, lambda e: pieces[e.index], EN, engine=fw_engine, settings=unguarded)
    assert tails(out.text) <= 1, out.text
    assert out.repair["rejected"] and out.repair["rejected"][0]["chunks"] == [0, 3], out.repair
    assert "repeating" in out.repair["rejected"][0]["reason"]
    assert wer(padded.reference_text, out.text) <= wer(padded.reference_text, naive.text) + 0.01
    guarded = repair_boundaries(naive, lambda e: pieces[e.index], EN, engine=fw_engine,
                                settings=settings.model_copy(update={"boundary_repair": True}))
    assert tails(guarded.text) <= 1 and wer(padded.reference_text, guarded.text) <= wer(
        padded.reference_text, naive.text) + 0.01, guarded.text
