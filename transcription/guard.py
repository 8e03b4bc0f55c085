"""The hallucination guard: a transcript never says what its audio does not.

Whisper decodes 30 s windows, each conditioned on the text before it. A final window holding only
a second or two of audio (every session's last chunk, every file of 30-32 s), silence, or a noise
tail can come back as earlier sentences written out again, a phrase in a loop, or words over
silence. pyannote's `sample.wav` with 1 s of silence appended ends with its last sentence twice.

Every engine call goes through `guarded` (`transcription/pieces.py`), so the server's routes, the
worker, the CLI, regrouped pieces and repair windows all get it. After the engine returns,
`suspicious` checks each segment against the audio and the earlier text of the same call:

- repeat: at least `REPEAT_FRACTION` of its word trigrams occur in the text before it;
- loop: a compression ratio over Whisper's own 2.4, or a phrase three times in a row (a word five);
- silence: nothing above the call's speech floor (energy) from its start to the end of the audio,
  or, where it has word timestamps, less than `VOICED_MIN_S` of its own span;
- rate (with word timestamps): more than `MAX_WORDS_PER_S` words per second, which no one says.

Whisper's segment times without word timestamps drift by seconds (it places the sample's first
words 6 s before they are spoken), so only the checks that do not trust them run on such segments.

These checks are numpy over the samples and set operations over the words: a call where nothing
fires costs nothing more. Each run of flagged segments is decoded again on its own (`redecode`: the
span's audio alone, without the prompt, so no earlier text conditions it) and what comes back is
checked the same way, except that a repeat now counts only against text within a decoding window
of the span (`in_window`): without the prompt the decode cannot copy earlier text, so a line further
off is speech said again. What still fails is dropped. The transcript's options record both:
`hallucination_redecoded` and `hallucination_dropped`, each a list of spans with the reason (and
the dropped text), as `context_dropped` records the context guard's decisions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from transcription.audio import SAMPLE_RATE
from transcription.context import COMPRESSION_RATIO_MAX, compression_ratio
from transcription.engines.base import Engine, EngineResult
from transcription.options import TranscribeOptions
from transcription.transcript import Segment

log = logging.getLogger(__name__)

NGRAM = 3
REPEAT_MIN_WORDS = 4  # shorter segments ("yes, yes") repeat in real speech all the time
REPEAT_FRACTION = 0.6  # of a segment's trigrams found in the earlier text of the call
LOOP_TIMES = 3  # a phrase of 2-6 words this many times in a row is a loop ...
LOOP_TIMES_WORD = 5  # ... a single word this many times
FRAME_S = 0.02
FLOOR_BELOW_PEAK_DB = 35.0  # the speech floor: this far below the call's loud frames (95th percentile) ...
FLOOR_MIN_DB = -60.0  # ... and never below this (dBFS): digital silence and hiss are not speech
VOICED_MIN_S = 0.15  # a segment over less voiced audio than this is over silence
MAX_WORDS_PER_S = 7.0  # fast speech is 4-5 words per second
RATE_MIN_WORDS = 5
SPAN_MARGIN_S = 0.5  # a re-decoded span reaches this far beyond its segments (Whisper's times are rough)
MIN_SPAN_S = 0.3  # a span shorter than this is dropped without decoding it again
WINDOW_S = 30.0  # Whisper's decoding window: a segment's words were heard within this of its times ...
WORD_DRIFT_S = 5.0  # ... and with word timestamps, within this


@dataclass
class GuardAction:
    """One span the guard decoded again or dropped, on the call's own timeline."""

    start: float
    end: float
    reason: str
    dropped: bool
    text: str = ""

    def record(self) -> dict[str, object]:
        out: dict[str, object] = {"start": round(self.start, 3), "end": round(self.end, 3), "reason": self.reason}
        if self.dropped:
            out["text"] = self.text[:200]
        return out

    def shifted(self, offset: float) -> GuardAction:
        return GuardAction(self.start + offset, self.end + offset, self.reason, self.dropped, self.text)


@dataclass
class Guarded:
    result: EngineResult
    actions: list[GuardAction] = field(default_factory=list)


def _words(text: str) -> list[str]:
    return [w for w in (re.sub(r"[^\w']+", "", t.lower()) for t in text.split()) if w]


def _ngrams(words: Sequence[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def in_window(seg: Segment, lo: float, hi: float) -> bool:
    """The segment's words may be the speech of [lo, hi].

    Whisper writes a segment's times from inside the 30 s window it decoded, so however far they are
    off (without word timestamps the sample's last lines came 10 s early), its speech lies within
    `WINDOW_S` of them; word timestamps are aligned on the audio, off by a second or two. Text
    further away is other speech."""
    drift = WINDOW_S if not seg.words else WORD_DRIFT_S
    return seg.end > lo - drift and seg.start < hi + drift


def looped(words: Sequence[str]) -> bool:
    """A phrase of 2-6 words `LOOP_TIMES` times in a row, or one word `LOOP_TIMES_WORD` times
    ("Hello? Hello? Oh, hello." is a phone call's start; a phrase three times over is a decoder loop)."""
    for n in range(1, 7):
        times = LOOP_TIMES_WORD if n == 1 else LOOP_TIMES
        for i in range(len(words) - n * times + 1):
            phrase = words[i:i + n]
            if all(words[i + k * n:i + (k + 1) * n] == phrase for k in range(1, times)):
                return True
    return False


class Energy:
    """Voiced seconds of any span of a call: frames above the call's speech floor."""

    def __init__(self, samples: np.ndarray) -> None:
        n = int(FRAME_S * SAMPLE_RATE)
        frames = samples[: len(samples) // n * n].reshape(-1, n) if len(samples) >= n else np.zeros((0, n))
        db = 10 * np.log10(np.square(frames, dtype=np.float32).mean(axis=1) + 1e-10) if len(frames) else np.zeros(0)
        peak = float(np.percentile(db, 95)) if len(db) else FLOOR_MIN_DB
        self.floor = max(peak - FLOOR_BELOW_PEAK_DB, FLOOR_MIN_DB)
        self.voiced = np.concatenate([[0], np.cumsum(db > self.floor)])
        self.duration = len(samples) / SAMPLE_RATE

    def voiced_s(self, start: float, end: float) -> float:
        lo = int(np.clip(start / FRAME_S, 0, len(self.voiced) - 1))
        hi = int(np.clip(np.ceil(end / FRAME_S), lo, len(self.voiced) - 1))
        return float(self.voiced[hi] - self.voiced[lo]) * FRAME_S


def suspicious(segment: Segment, before: Sequence[str], energy: Energy, offset: float = 0.0) -> str | None:
    """Why the audio does not support `segment` (its times `offset` into the call), or None.

    `before` is the call's earlier text as normalised words."""
    words = _words(segment.text)
    if not words:
        return None
    if len(words) >= REPEAT_MIN_WORDS and before:
        grams = _ngrams(words)
        shared = len(grams & _ngrams(before)) / len(grams) if grams else 0.0
        if shared >= REPEAT_FRACTION:
            return f"repeats earlier text ({shared:.0%} of its trigrams)"
    ratio = compression_ratio(segment.text)
    if ratio > COMPRESSION_RATIO_MAX or looped(words):
        return f"a loop (compression ratio {ratio:.1f})"
    start, end = offset + segment.start, offset + segment.end
    if energy.voiced_s(start, energy.duration) < VOICED_MIN_S:
        return "over silence (nothing voiced from its start to the end of the audio)"
    if not segment.words:
        # Whisper's segment times drift by seconds (the sample's first words are placed 6 s early):
        # the span and the rate are judged only on word timestamps
        return None
    voiced = energy.voiced_s(start, end)
    if voiced < VOICED_MIN_S:
        return f"over silence ({voiced:.2f} s voiced)"
    duration = max(segment.end - segment.start, 1e-3)
    if len(words) >= RATE_MIN_WORDS and len(words) / duration > MAX_WORDS_PER_S:
        return f"implausible rate ({len(words) / duration:.1f} words/s)"
    return None


def redecode(engine: Engine, samples: np.ndarray, start: float, end: float,
             options: TranscribeOptions) -> EngineResult:
    """The span [start, end) of `samples` decoded on its own with `options`, its times on the samples' timeline.

    Nothing before the span conditions it (it is a call of its own); the options are the caller's
    (the guard passes them without the prompt)."""
    lo, hi = max(0, round(start * SAMPLE_RATE)), min(len(samples), round(end * SAMPLE_RATE))
    part = engine.transcribe(samples[lo:hi], options)
    offset = lo / SAMPLE_RATE
    top = hi / SAMPLE_RATE
    segments = [_clamped(s.shifted(offset), offset, top) for s in part.segments]
    return EngineResult(segments, part.language, part.language_probability)


def _clamped(seg: Segment, lo: float, hi: float) -> Segment:
    def c(x: float) -> float:
        return round(min(max(x, lo), hi), 3)

    words = None if seg.words is None else [
        w.model_copy(update={"start": c(w.start), "end": c(max(w.end, w.start))}) for w in seg.words]
    return seg.model_copy(update={"start": c(seg.start), "end": c(max(seg.end, seg.start)), "words": words})


def guarded(engine: Engine, samples: np.ndarray, options: TranscribeOptions) -> Guarded:
    """`engine.transcribe` with the segments the audio does not support decoded again or dropped."""
    result = engine.transcribe(samples, options)
    return check(engine, samples, options, result)


def check(engine: Engine, samples: np.ndarray, options: TranscribeOptions, result: EngineResult) -> Guarded:
    """The guard over an engine result of `samples` (see the module's docstring)."""
    energy = Energy(samples)
    duration = len(samples) / SAMPLE_RATE
    segments = result.segments
    reasons: list[str | None] = []
    before: list[str] = []
    for seg in segments:
        reason = suspicious(seg, before, energy)
        reasons.append(reason)
        if reason is None:
            before.extend(_words(seg.text))
    if not any(reasons):
        return Guarded(result)
    # runs of flagged segments, each decoded again as one span
    out: list[Segment] = []
    actions: list[GuardAction] = []
    again = options.model_copy(update={"prompt": None})
    if options.language is None and result.language:
        again = again.model_copy(update={"language": result.language})
    i = 0
    while i < len(segments):
        if reasons[i] is None:
            out.append(segments[i])
            i += 1
            continue
        j = i
        while j + 1 < len(segments) and reasons[j + 1] is not None:
            j += 1
        run = segments[i:j + 1]
        prev_end = out[-1].end if out else 0.0
        next_start = segments[j + 1].start if j + 1 < len(segments) else duration
        start = max(prev_end, run[0].start - SPAN_MARGIN_S, 0.0)
        end = min(max(next_start, run[-1].end), run[-1].end + SPAN_MARGIN_S, duration)
        reason = "; ".join(dict.fromkeys(r for r in reasons[i:j + 1] if r))
        text = " ".join(s.text for s in run)
        log.warning("hallucination_suspected span=%.2f-%.2f reason=%s text=%r", start, end, reason, text[:120])
        kept: list[Segment] = []
        if end - start >= MIN_SPAN_S:
            # Decoded without the prompt, the span cannot copy the call's earlier text: a repeat now is
            # speech said again, unless it repeats text from within a window of it (the same audio,
            # its words already in the transcript at times that are off)
            unflagged = out + [s for s, r in zip(segments[j + 1:], reasons[j + 1:], strict=True) if r is None]
            heard = [w for s in unflagged if in_window(s, start, end) for w in _words(s.text)]
            for seg in redecode(engine, samples, start, end, again).segments:
                if suspicious(seg, heard, energy) is None:
                    kept.append(seg)
                    heard.extend(_words(seg.text))
        if kept:
            actions.append(GuardAction(start, end, reason, dropped=False))
            out.extend(kept)
        else:
            actions.append(GuardAction(start, end, reason, dropped=True, text=text))
        i = j + 1
    return Guarded(EngineResult(out, result.language, result.language_probability), actions)


def records(actions: Sequence[GuardAction]) -> dict[str, list[dict[str, object]]]:
    """The transcript's options entries for the guard's actions (none when it did nothing)."""
    out: dict[str, list[dict[str, object]]] = {}
    redecoded = [a.record() for a in actions if not a.dropped]
    dropped = [a.record() for a in actions if a.dropped]
    if redecoded:
        out["hallucination_redecoded"] = redecoded
    if dropped:
        out["hallucination_dropped"] = dropped
    return out
