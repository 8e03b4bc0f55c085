"""Long audio goes to the engine in bounded pieces, so its memory is bounded whatever the input.

faster-whisper computes the log-mel features of the whole input before it decodes (about 62 MB per
minute of audio on the CPU): a 14 KB FLAC that decodes to an hour of silence asked for 3.6 GB, and
one decoding to 3.9 h for 13 GB. Audio longer than `ENGINE_PIECE_S` is cut at the quietest tenth of
a second near each piece's end, each piece transcribed alone (in the language the first one
detected, so pieces do not switch language), and the segments shifted back to the input's time.
"""

from __future__ import annotations

import numpy as np

from transcription.audio import SAMPLE_RATE
from transcription.engines.base import Engine, EngineResult
from transcription.guard import GuardAction, Guarded, guarded
from transcription.options import TranscribeOptions

FRAME = SAMPLE_RATE // 10  # 0.1 s: the resolution a cut is placed with
SEARCH_S = 30.0  # a cut is looked for in the last 30 s of a piece (at most a fifth of it)


def cut_points(samples: np.ndarray, piece_s: float) -> list[int]:
    """Sample offsets where pieces of at most `piece_s` start (0 first), each cut at the quietest
    0.1 s frame of the end of the piece before it."""
    limit = max(FRAME, int(piece_s * SAMPLE_RATE))
    starts = [0]
    while len(samples) - starts[-1] > limit:
        end = starts[-1] + limit
        search = max(FRAME, min(int(SEARCH_S * SAMPLE_RATE), limit // 5)) // FRAME * FRAME
        window = samples[end - search:end].reshape(-1, FRAME)
        quietest = int(np.argmin(np.square(window, dtype=np.float32).mean(axis=1)))
        starts.append(end - search + quietest * FRAME + FRAME // 2)
    return starts


def transcribe_in_pieces(engine: Engine, samples: np.ndarray, options: TranscribeOptions,
                         piece_s: float, *, guard: bool = True) -> Guarded:
    """`engine.transcribe` over pieces of at most `piece_s` seconds (one call for shorter audio), each
    call through the hallucination guard (`transcription/guard.py`) unless `guard` is off."""

    def call(part: np.ndarray, opts: TranscribeOptions) -> Guarded:
        return guarded(engine, part, opts) if guard else Guarded(engine.transcribe(part, opts))

    starts = cut_points(samples, piece_s)
    if len(starts) == 1:
        return call(samples, options)
    result: EngineResult | None = None
    actions: list[GuardAction] = []
    for start, end in zip(starts, [*starts[1:], len(samples)], strict=True):
        part = call(samples[start:end], options)
        offset = start / SAMPLE_RATE
        shifted = [s.shifted(offset) for s in part.result.segments]
        actions.extend(a.shifted(offset) for a in part.actions)
        if result is None:
            result = EngineResult(shifted, part.result.language, part.result.language_probability)
            if options.language is None and part.result.language:
                options = options.model_copy(update={"language": part.result.language})
        else:
            result.segments.extend(shifted)
    assert result is not None
    return Guarded(result, actions)
