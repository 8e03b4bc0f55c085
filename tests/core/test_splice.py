"""The splice of boundary repair on synthetic words: no model, no audio, no S3 (the fast tier).

Words are written `text@start` (0.4 s long) or `text@start-end`. Unless a case says otherwise two
chunks meet at 10.0 s (the first spans 0-10 s, the second 10-20 s) and the window spans 7-13 s, so
its trusted span (a third of each side away from its edges) is 8-12 s. What the real model makes of
real cuts is tests/core/test_repair.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from transcription.splice import (
    MAX_SEGMENT_S,
    Anchor,
    Seam,
    Token,
    left_anchor,
    monotonic,
    normalize_word,
    quiet_point,
    rebuild_segments,
    replace_piece,
    right_anchor,
    segments_from_tokens,
    splice_window,
    text_before,
    tokens_from_segments,
)
from transcription.transcript import Segment, Word

SEAM = Seam(start=7.0, cut=10.0, end=13.0, chunks_start=0.0, chunks_end=20.0)


def toks(spec: str, segment: int | None = None, timed: bool = True) -> list[Token]:
    """Tokens from `word@start` / `word@start-end` items; `segment` None: a window's words."""
    out = []
    for item in spec.split():
        text, _, when = item.rpartition("@")
        start, _, end = when.partition("-")
        out.append(Token(float(start), float(end) if end else float(start) + 0.4, " " + text, segment, timed))
    return out


def chunks(first: str, second: str, timed: bool = True) -> list[Token]:
    """The session's tokens: the first chunk's words in segment 0, the second's in segment 1."""
    return toks(first, 0, timed) + toks(second, 1, timed)


def text(tokens: list[Token]) -> str:
    return "".join(t.text for t in tokens).strip()


@pytest.mark.parametrize(("first", "second", "window", "expected", "anchored"), [
    pytest.param(  # the cut split "afternoon": the window heard it whole, both seams on agreed words
        "to@7.5 the@8 meeting@8.5 this@9 after@9.5", "noon@10 the@10.5 invoice@11 came@11.5 to@12",
        "to@7.5 the@8 meeting@8.5 this@9 afternoon@9.5-10.3 the@10.4 invoice@10.9 came@11.4 to@11.9",
        "to the meeting this afternoon the invoice came to", 2, id="word-cut-in-two"),
    pytest.param(  # both chunks kept "this" (one of them a half-heard copy): once in the result
        "to@7.5 the@8 meeting@8.5 this@9.2", "this@10 afternoon@10.5 we@11.2 paid@11.7",
        "to@7.5 the@8 meeting@8.5 this@9.4 afternoon@10.3 we@11.1 paid@11.6",
        "to the meeting this afternoon we paid", 2, id="boundary-word-duplicated"),
    pytest.param(  # the first chunk dropped the word at its edge: the window brings it back
        "bring@7.6 the@8.1 folder@8.6 to@9.1", "meeting@10.5 this@11 afternoon@11.5",
        "bring@7.6 the@8.1 folder@8.6 to@9.1 the@9.7 meeting@10.5 this@11 afternoon@11.5",
        "bring the folder to the meeting this afternoon", 2, id="boundary-word-dropped"),
    pytest.param(  # a window that agrees on nothing: cut by time, its words used only inside its trusted span
        "one@8 two@8.5 three@9 four@9.5", "five@10 six@10.5 seven@11 eight@11.5 nine@12.6 ten@13.1",
        "uno@8 dos@8.5 tres@9 cuatro@9.5 cinco@10 seis@10.5 siete@11 ocho@11.5 nueve@12.6",
        "one dos tres cuatro cinco seis siete ocho nine ten", 0, id="window-disagrees"),
    pytest.param(  # a run of two agreeing words beats a lone one: the chunk's "cat" stands, not the window's "dog"
        "the@8 cat@8.5 sat@9 on@9.5", "a@10 mat@10.5 today@11 again@11.5",
        "the@8 dog@8.5 sat@9 on@9.5 a@10 mat@10.5 today@11 again@11.5",
        "the cat sat on a mat today again", 2, id="run-beats-lone-word"),
    pytest.param(  # agreement only in the margin (7-8 s) before the cut: the agreeing word closest to the trust
        "hello@7.2 there@7.6 xx@8.5 yy@9", "zz@10 and@10.5 more@11 words@11.5",
        "hello@7.2 there@7.6 aa@8.5 bb@9 cc@10 and@10.5 more@11 words@11.5",
        "hello there aa bb cc and more words", 2, id="anchor-in-margin"),
    pytest.param(  # the chunks heard nothing around the cut, the window a word: inserted between them
        "hello@2 there@2.5", "world@16", "again@9.8", "hello there again world", 0, id="insertion-into-silence"),
])
def test_splice_puts_the_windows_words_in_place_of_the_chunks_words(first, second, window, expected,
                                                                    anchored) -> None:
    tokens = chunks(first, second)
    spliced = splice_window(tokens, toks(window), SEAM)
    assert spliced is not None
    assert text(spliced.tokens) == expected
    assert spliced.anchored == anchored
    assert spliced.touched == {0, 1}  # both chunks' segments lost or gained words: both rebuilt
    assert [t.start for t in spliced.tokens] == sorted(t.start for t in spliced.tokens)
    assert tokens == chunks(first, second)  # the session's tokens are not changed in place


@pytest.mark.parametrize("cut", [5.0, 9.95, 10.1, 10.25, 14.7])
@pytest.mark.parametrize("timed", [True, False])
def test_a_window_that_agrees_changes_no_word_wherever_the_cut_falls(cut, timed) -> None:
    """Forty words, one every 0.5 s, cut anywhere (inside a word too): a window hearing the same
    words (0.1 s later) leaves exactly the same words, each once and in order."""
    spoken = [(f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(40)]
    tokens = [Token(a, b, " " + w, 0 if (a + b) / 2 < cut else 1, timed) for w, a, b in spoken]
    seam = Seam(cut - 3, cut, cut + 3, 0.0, 20.0)
    window = [Token(a + 0.1, b + 0.1, " " + w, None, True) for w, a, b in spoken
              if seam.start <= a + 0.1 and b + 0.1 <= seam.end]
    spliced = splice_window(tokens, window, seam)
    assert spliced is not None and spliced.anchored == 2
    assert text(spliced.tokens) == " ".join(w for w, _, _ in spoken)


@pytest.mark.parametrize(("tokens", "window", "seam"), [
    pytest.param(chunks("a@9", "b@10"), [], SEAM, id="no-window-words"),
    pytest.param(chunks("a@9", "b@10"), toks("a@9 b@10"), Seam(10.0, 10.0, 10.0, 0.0, 20.0), id="no-trusted-span"),
    pytest.param([*toks("a@8 b@9", 0), Token(9.5, 9.9, "[chunk 1 missing]", 1, True, fixed=True),
                  *toks("c@10.5 d@11", 2)], toks("a@8 b@9 c@10.5 d@11"), SEAM, id="gap-marker-in-between"),
])
def test_splice_refuses_a_window_that_gives_nothing(tokens, window, seam) -> None:
    assert splice_window(tokens, window, seam) is None


def test_a_word_inserted_inside_one_segment_touches_it() -> None:
    """Nothing removed, one word added between two words of the same segment: that segment is rebuilt."""
    tokens = toks("hello@2 there@2.5 world@16", 0)
    spliced = splice_window(tokens, toks("again@9.8"), SEAM)
    assert spliced is not None and text(spliced.tokens) == "hello there again world"
    assert spliced.touched == {0}


@pytest.mark.parametrize(("timed", "window_shift", "found"), [
    (True, 0.5, True),  # word timestamps: 0.5 s apart is the same word ...
    (True, 1.0, False),  # ... 1 s apart is another one
    (False, 1.0, True),  # times spread over a segment are rougher: 1 s apart still agrees
    (False, 2.5, False),
])
def test_anchors_need_the_same_word_at_about_the_same_time(timed, window_shift, found) -> None:
    tokens = chunks("red@8 green@8.5 blue@9", "black@10.5 white@11 grey@11.5", timed)
    window = [Token(t.start + window_shift, t.end + window_shift, t.text, None, True) for t in tokens]
    near = list(range(len(tokens)))
    seam = Seam(6.0, 10.0, 14.0, 0.0, 20.0)
    left = left_anchor(tokens, near, window, seam)
    right = right_anchor(tokens, near, window, seam, left)
    assert (left is not None) == found and (right is not None) == found
    if found:
        assert left is not None and right is not None
        assert tokens[left.token].norm == window[left.window].norm  # the same word in both
        assert left.token < right.token and left.window < right.window  # the right seam after the left


def test_left_anchor_is_the_earliest_trusted_run_and_right_the_last() -> None:
    tokens = chunks("a@7.2 b@8.1 c@8.6 d@9.1", "e@10.1 f@10.6 g@11.1 h@12.6")
    window = toks("a@7.2 b@8.1 c@8.6 d@9.1 e@10.1 f@10.6 g@11.1 h@12.6")
    near = list(range(len(tokens)))
    left = left_anchor(tokens, near, window, SEAM)
    assert left == Anchor(1, 1)  # "a" agrees but lies in the margin; "b" is the first trusted word
    assert right_anchor(tokens, near, window, SEAM, left) == Anchor(6, 6)  # "g"; "h" lies in the margin


@pytest.mark.parametrize(("spec", "lo", "hi", "expected"), [
    ("a@8-9 b@9.5-10.5", 8.0, 10.0, 9.25),  # the middle of the pause between the two words
    ("a@8-10", 8.0, 10.0, 8.0),  # no pause: an edge of the range, outside the word
    ("a@8-9", 9.5, 9.0, 9.5),  # an empty range: its start
])
def test_quiet_point_is_in_a_pause(spec, lo, hi, expected) -> None:
    assert quiet_point(toks(spec, 0), [], lo, hi) == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize(("word", "same_as"), [
    ("4,217", "4217"), (" Hello,", "hello"), ("well-known", "wellknown"), (" don't", "don't"), ("3.5", "35"),
    ("...", ""),
])
def test_normalized_words(word, same_as) -> None:
    assert normalize_word(word) == same_as


def test_segments_are_laid_out_as_tokens() -> None:
    segments = [
        Segment(start=0.0, end=3.0, text="ab cdef", speaker="S1"),  # no word times: spread by length
        Segment(start=3.0, end=4.0, text="[chunk 1 missing: bad_audio]", gap=True),
        Segment(start=4.0, end=5.0, text="x,y", words=[Word(start=4.0, end=4.5, word="x"),
                                                       Word(start=4.5, end=4.6, word=" "),
                                                       Word(start=4.6, end=5.0, word=",y")]),
    ]
    tokens = tokens_from_segments(segments, "en", first_index=5)
    assert [(t.text, t.segment, t.timed, t.fixed) for t in tokens] == [
        (" ab", 5, False, False), (" cdef", 5, False, False),
        ("[chunk 1 missing: bad_audio]", 6, True, True),
        (" x", 7, True, False), (" ,y", 7, True, False)]  # aligned words without spaces: each a word
    assert (tokens[0].start, tokens[0].end, tokens[1].end) == (0.0, pytest.approx(3.0 * 3 / 8), 3.0)
    assert tokens[0].speaker == "S1"
    # a language written without spaces: no space added
    assert [t.text for t in tokens_from_segments(segments[:1], "zh")] == ["ab", "cdef"]
    spaced = [Word(start=0, end=1, word=" 4"), Word(start=1, end=2, word=",217")]
    assert [t.text for t in tokens_from_segments([Segment(start=0, end=2, text=" 4,217", words=spaced)], "en")] \
        == [" 4", ",217"]  # Whisper's own spacing kept: ",217" goes on the number


def test_replace_piece_swaps_the_covered_chunks_words() -> None:
    segments = [Segment(start=0, end=2, text="a b"), Segment(start=2, end=4, text="c d"),
                Segment(start=4, end=6, text="e f")]
    tokens = tokens_from_segments(segments, "en")
    # the piece covers 2-4 s; its own times run from 0 and one word spills past its end
    piece = [Segment(start=0.1, end=2.5, text="c", words=[Word(start=0.1, end=0.9, word=" see"),
                                                         Word(start=1.0, end=2.5, word=" dee.")])]
    replaced = replace_piece(tokens, segments, piece, 2.0, 4.0, "en")
    assert text(replaced.tokens) == "a b see dee. e f"
    assert replaced.segments[:3] == segments and len(replaced.segments) == 4
    assert replaced.segments[3].start == 2.1 and replaced.segments[3].end == 4.0  # shifted, then clamped
    assert replaced.touched == {1, 3}
    assert len(segments) == 3  # the caller's list is not changed


def test_text_before_is_the_last_words_without_gap_markers() -> None:
    tokens = [*toks("one@1 two@2", 0), Token(3, 4, "[chunk 1 missing]", 1, True, fixed=True), *toks("three@5", 2)]
    assert text_before(tokens, 5.1, 150) == "one two"  # "three" (mid 5.2) is not before 5.1
    assert text_before(tokens, 9.0, 2) == "two three"


def test_rebuild_keeps_untouched_segments_and_rebuilds_the_rest() -> None:
    segments = [Segment(start=0, end=2, text="Kept as it is.", avg_logprob=-0.2),
                Segment(start=2, end=3, text=""),  # no words at all: keeps its place
                Segment(start=3, end=6, text="Old words here")]
    tokens = tokens_from_segments(segments, "en")[:3] + toks("New@3.5 words.@4 More@5", None)
    tokens[-1].speaker = tokens[-2].speaker = "S2"
    out = rebuild_segments(segments, tokens, {2}, with_words=False)
    assert out[0] is segments[0] and out[1] is segments[1]  # untouched: the very same segments
    assert [s.text for s in out[2:]] == ["New words.", "More"]  # rebuilt, split at the sentence end
    assert out[2].words is None and out[2].speaker == "S2"  # no word times invented; the words' speaker


def test_monotonic_never_runs_backwards() -> None:
    segments = [Segment(start=0, end=2.2, text="a", words=[Word(start=0, end=2.2, word=" a")]),
                Segment(start=2.0, end=3.0, text="b", words=[Word(start=1.9, end=2.5, word=" b")]),
                Segment(start=2.8, end=2.9, text="[gap]", gap=True),
                Segment(start=2.5, end=2.4, text="c")]
    out = monotonic(segments)
    assert out[0] is segments[0]
    assert (out[1].start, out[1].words[0].start, out[1].words[0].end) == (2.2, 2.2, 2.5)
    assert out[2] is segments[2]  # a gap marker never moves
    assert (out[3].start, out[3].end) == (3.0, 3.0)  # after the last end, and no end before its start


@pytest.mark.parametrize(("spec", "expected"), [
    # a sentence end closes a segment
    ("Hello@0 there.@0.5 Next@1 one@1.5", ["Hello there.", "Next one"]),
    # no punctuation: a pause closes it once the segment holds a second of speech ...
    ("good@0-0.6 morning@0.7-1.3 first@2 item@2.5", ["good morning", "first item"]),
    # ... but a short pause inside the first second does not
    ("so@0-0.3 then@0.9 we@1.4", ["so then we"]),
    # a long line without a pause closes at its last comma once it would exceed two subtitle lines
    (" ".join(f"{w}@{i * 0.3:.1f}-{i * 0.3 + 0.25:.2f}" for i, w in enumerate((
        "first", "of", "all", "the", "new", "release", "of", "our", "product", "is", "ready,",
        "and", "the", "documentation", "team", "needs", "a", "week"))),
     ["first of all the new release of our product is ready,", "and the documentation team needs a week"]),
    # an unbroken run is capped at MAX_SEGMENT_S
    (" ".join(f"w{i}@{i * 0.45:.2f}-{i * 0.45 + 0.4:.2f}" for i in range(50)), None),
])
def test_rebuilt_segments_end_at_sentences_pauses_and_a_length_cap(spec, expected) -> None:
    """Whisper leaves punctuation out of some regrouped pieces: the rebuilt segments still read a
    phrase at a time."""
    segments = segments_from_tokens(toks(spec), with_words=True)
    if expected is not None:
        assert [s.text for s in segments] == expected
    else:
        assert len(segments) >= 3
        assert all(s.end - s.start <= MAX_SEGMENT_S for s in segments)
        assert " ".join(s.text for s in segments).split() == [f"w{i}" for i in range(50)]
    assert all(s.words is not None and s.text == "".join(w.word for w in s.words).strip() for s in segments)


def test_clamped_keeps_a_segment_inside_its_span() -> None:
    seg = Segment(start=-0.5, end=0.8, text="a b", words=[Word(start=-0.5, end=0.3, word=" a"),
                                                          Word(start=0.9, end=0.7, word=" b")])
    out = seg.clamped(0.0, 0.8)
    assert (out.start, out.end) == (0.0, 0.8)
    assert [(w.start, w.end) for w in out.words] == [(0.0, 0.3), (0.8, 0.8)]
    assert seg.start == -0.5  # a copy


def test_the_splice_module_needs_no_engine_audio_or_storage() -> None:
    """Importing it in a fresh interpreter loads none of them (so its tests stay in the fast tier)."""
    heavy = ["numpy", "faster_whisper", "ctranslate2", "torch", "av", "boto3", "transcription.engines",
             "transcription.audio", "transcription.storage"]
    code = f"import sys, transcription.splice; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
