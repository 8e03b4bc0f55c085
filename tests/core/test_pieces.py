"""Long audio in bounded pieces (issue 14, hole 1): where the cuts go, and what a cut costs on real
speech (pyannote's two-person call against its human transcript)."""

from __future__ import annotations

import numpy as np

from tests.support.real_speech import load_sample, wer
from transcription.audio import SAMPLE_RATE
from transcription.options import TranscribeOptions
from transcription.pieces import cut_points, transcribe_in_pieces


def test_cuts_keep_pieces_bounded_and_land_in_the_quiet() -> None:
    rng = np.random.default_rng(0)
    loud = (rng.standard_normal(SAMPLE_RATE * 100) * 0.3).astype(np.float32)
    loud[SAMPLE_RATE * 52:SAMPLE_RATE * 53] = 0.0  # a pause in the last fifth of the first 60 s piece
    starts = cut_points(loud, 60)
    assert starts[0] == 0 and len(starts) == 2
    assert 52 * SAMPLE_RATE <= starts[1] <= 53 * SAMPLE_RATE
    flat = np.zeros(SAMPLE_RATE * 3600, np.float32)  # an hour: pieces of at most 600 s, none empty
    starts = cut_points(flat, 600)
    ends = [*starts[1:], len(flat)]
    assert all(0 < e - s <= 600 * SAMPLE_RATE for s, e in zip(starts, ends, strict=True))
    assert cut_points(flat[: SAMPLE_RATE * 600], 600) == [0]


def test_pieces_of_real_speech_keep_its_words_and_times(fw_engine) -> None:
    two = load_sample()  # 30 s: cut twice with pieces of 12 s
    options = TranscribeOptions(language="en")
    whole = transcribe_in_pieces(fw_engine, two.samples, options, piece_s=3600).result
    pieces = transcribe_in_pieces(fw_engine, two.samples, options, piece_s=12).result
    text = lambda r: " ".join(s.text for s in r.segments)  # noqa: E731
    assert len(cut_points(two.samples, 12)) == 3
    assert wer(two.reference_text, text(pieces)) <= wer(two.reference_text, text(whole)) + 0.1
    starts = [s.start for s in pieces.segments]
    assert starts == sorted(starts) and pieces.segments[-1].end > 25 and pieces.language == "en"
