"""Speech coverage: no span of speech may vanish from a transcript, whatever language it is in.

Whisper detects one language from the first 30 s of its input and decodes everything in it: a
recording that switches language comes back with the second language turned into the first (a
translation or nonsense), or with nothing at all for it. `cover` compares the decode with where
voice activity detection (Silero VAD, shipped with faster-whisper) hears speech:

- a speech span of more than `MIN_SPAN_S` with no words over `MIN_SPAN_S` of it (`no words`; as
  Whisper's segment times drift by seconds without word timestamps, there the hole must be longer
  than `DRIFT_S`, and what comes back is kept only where it is not text the transcript already
  has; an attempt that brings nothing new is recorded as `no words: nothing new`), or
- speech the decode put in the transcript's language that Whisper's detection, run on that
  stretch alone, hears as another language (`language`)

is decoded again on its own, in the language detected for it, and its words replace the decode's
there. What was recovered is returned for the transcript's options (`speech_recovered`: span,
language, reason).

Where languages are checked: only when the language was detected, not fixed (a fixed language
keeps today's behaviour). After the first 30 s, in blocks of up to 30 s of speech. Inside the first
30 s, which Whisper's own detection heard as a whole, only when that detection was unsure (below
`SURE`): a window holding two languages is heard as the louder or longer one with a lower
probability (seen here: 0.51-0.94 for windows of English and German, 0.97-0.996 for either language
alone, clean or 12 dB quieter; 0.95 and 0.59 with noise, where the check only costs time). It is then
checked in blocks of up to `FIRST_BLOCK_S`, so two switches inside one window are found. A short
stretch of another language that leaves the detection sure (5 s of English before 25 s of German:
0.96) is not looked for.

Cost: the VAD runs on every input (about 1% of the engine's time on the CPU). Each detection is one
encoder pass (about a sixth of the decode of a 30 s window on this CPU): one per 30 s block after
the first 30 s, up to three in the first window when its detection was unsure, and per span only
inside a block heard as another language.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from transcription.audio import SAMPLE_RATE
from transcription.engines.base import Engine, EngineResult
from transcription.guard import guarded, in_window
from transcription.options import TranscribeOptions
from transcription.transcript import Segment

log = logging.getLogger(__name__)

MIN_SPAN_S = 2.0  # speech this long with no words is decoded again
DETECTED_S = 30.0  # Whisper's language detection hears the first 30 s of its input
BLOCK_S = 30.0  # speech after that is checked in blocks of at most this long
MIN_PROBABILITY = 0.5  # a block or span is another language only when detection is this sure
SURE = 0.95  # a first-window detection less sure than this may have heard two languages: checked in blocks
FIRST_BLOCK_S = 10.0  # the blocks the first window is then checked in
MIN_HEARD_S = 2.0  # a span shorter than this is not heard on its own (a second of speech is often misheard)
PAD_S = 0.2  # a re-decoded span is widened by this much each side (VAD cuts tight)
DRIFT_S = 6.0  # how far Whisper's segment times (without word timestamps) were seen off the speech
REPEAT_FRACTION = 0.5  # a "recovered" segment with this much of its trigrams already said is not new


@dataclass(frozen=True)
class Recovered:
    start: float
    end: float
    language: str | None
    reason: str  # "no words", "language" or "before a language change"

    def record(self) -> dict[str, object]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "language": self.language,
                "reason": self.reason}


def speech_spans(samples: np.ndarray, min_silence_s: float = 0.5) -> list[tuple[float, float]]:
    """Where Silero VAD hears speech, in seconds, spans split at pauses of `min_silence_s` or more."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=round(min_silence_s * 1000), speech_pad_ms=100)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in get_speech_timestamps(samples, options)]


def _uncovered(start: float, end: float, segments: list[Segment]) -> list[tuple[float, float]]:
    """The parts of [start, end] no segment with text overlaps."""
    holes, at = [], start
    for seg in sorted((s for s in segments if s.text.strip()), key=lambda s: s.start):
        if seg.end <= at or seg.start >= end:
            continue
        if seg.start > at:
            holes.append((at, seg.start))
        at = max(at, seg.end)
    if at < end:
        holes.append((at, end))
    return holes


def _blocks(spans: list[tuple[float, float]], after: float, until: float = float("inf"),
            block_s: float = BLOCK_S) -> list[list[tuple[float, float]]]:
    """The spans' speech between `after` and `until` (a span across either is cut there), in blocks
    of at most `block_s`."""
    blocks: list[list[tuple[float, float]]] = []
    for start, end in spans:
        span = (max(start, after), min(end, until))
        if span[1] - span[0] < 0.5:
            continue
        if blocks and span[1] - blocks[-1][0][0] <= block_s:
            blocks[-1].append(span)
        else:
            blocks.append([span])
    return blocks


def _replaced(seg: Segment, lo: float, hi: float, duration: float) -> bool:
    """Half or more of the segment (its times clamped to the audio), or more than a second of it,
    lies inside [lo, hi]: its words are the decode's of that audio (Whisper's times are rough)."""
    start, end = min(seg.start, duration), min(max(seg.end, seg.start), duration)
    if end - start <= 0:
        return lo <= start <= hi
    inside = min(end, hi) - max(start, lo)
    return inside >= min((end - start) / 2, 1.0)


def _near(seg: Segment, lo: float, hi: float) -> bool:
    """The segment lies within Whisper's timing drift of [lo, hi]."""
    return seg.end > lo - DRIFT_S and seg.start < hi + DRIFT_S


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = [w for w in re.sub(r"[^\w' ]+", " ", text.lower()).split() if w]
    return set(zip(words, words[1:], words[2:], strict=False))


def _repeats(text: str, said: set[tuple[str, ...]]) -> bool:
    """Most of the segment's word trigrams are already in the transcript: not missing speech."""
    own = _trigrams(text)
    return bool(own) and len(own & said) >= REPEAT_FRACTION * len(own)


def _said_by(seg: Segment, kept: list[Segment]) -> Segment | None:
    """The kept segment within the timing drift that shares the most word trigrams with `seg`."""
    own = _trigrams(seg.text)
    best = max((k for k in kept if _near(k, seg.start, seg.end)), key=lambda k: len(_trigrams(k.text) & own),
               default=None)
    return best if best is not None and _trigrams(best.text) & own else None


def _not_said(new: list[Segment], kept: list[Segment]) -> list[Segment]:
    """The re-decoded segments that are not speech the transcript already has.

    A segment repeating text from within one decoding window of it is not new (further off, it is
    speech said again: a prompt-free decode cannot copy it). And where some do, they say how far the
    first decode's times drifted here (the median offset to the segments they repeat): moved by that,
    a segment landing on words the transcript has is the same speech heard differently (seen: "so
    what kind of thing" for the first decode's "so we'll come back there", both "so what can I
    say", with the line after it timed 4 s early), so it is not new either.
    """
    repeated = [_repeats(s.text, _trigrams(" ".join(k.text for k in kept if in_window(k, s.start, s.end))))
                for s in new]
    offsets = [m.start - s.start for s, r in zip(new, repeated, strict=True)
               if r and (m := _said_by(s, kept)) is not None]
    fresh = [s for s, r in zip(new, repeated, strict=True) if not r]
    if not offsets:
        return fresh
    shift = float(np.median(offsets))
    texts = [k for k in kept if k.text.strip()]
    return [s for s in fresh
            if not any(_replaced(s.model_copy(update={"start": s.start + shift, "end": s.end + shift}),
                                 k.start, k.end, float("inf")) for k in texts)]


def _merge_runs(spans: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Neighbouring spans heard as the same language joined into one stretch."""
    out: list[tuple[float, float, str]] = []
    for start, end, language in spans:
        if out and out[-1][2] == language:
            out[-1] = (out[-1][0], end, language)
        else:
            out.append((start, end, language))
    return out


class _Coverage:
    def __init__(self, engine: Engine, samples: np.ndarray, options: TranscribeOptions, result: EngineResult,
                 guard: bool) -> None:
        self.engine, self.samples, self.options, self.result, self.guard = engine, samples, options, result, guard
        self.duration = len(samples) / SAMPLE_RATE
        self.segments = list(result.segments)
        self.recovered: list[Recovered] = []

    def _cut(self, start: float, end: float) -> np.ndarray:
        return self.samples[max(0, round(start * SAMPLE_RATE)):round(end * SAMPLE_RATE)]

    def detect(self, start: float, end: float, among: list[str] | None = None) -> tuple[str, float]:
        """The language of [start, end] and its probability, among `among` (default: the caller's languages)."""
        return self.engine.detect_language(self._cut(start, end), among or self.options.languages)

    def other_languages(self, spans: list[tuple[float, float]]) -> list[tuple[float, float, str]]:
        """Stretches of speech that detection hears as another language than the transcript's: after
        the first 30 s, and inside it when Whisper's detection of it was unsure."""
        language = self.result.language
        blocks = _blocks(spans, DETECTED_S)
        sure = self.result.language_probability
        if sure is None or sure < SURE:
            first = _blocks(spans, 0.0, DETECTED_S, FIRST_BLOCK_S)
            if len(first) > 1:  # one block is what Whisper's detection heard already
                blocks = first + blocks
        heard: list[tuple[float, float, str, bool]] = []  # per span: language, heard on its own (or by its block)
        for block in blocks:
            block_language, p = self.detect(block[0][0], block[-1][1])
            if p < MIN_PROBABILITY and len(block) > 1:  # heard as no language: it may straddle a switch
                heard += [self._on_its_own(start, end, language or block_language) for start, end in block]
                continue
            if block_language == language or p < MIN_PROBABILITY:
                heard += [(start, end, language or block_language, False) for start, end in block]
                continue
            pair = [block_language, language] if language else None
            for start, end in block:  # where in the block it switches: each span, the two languages only
                own = self.detect(start, end, pair)[0] if len(block) > 1 else block_language
                heard.append((start, end, own, len(block) > 1))
        if language is not None:
            self._widen(heard, language)
        return [run for run in _merge_runs([(a, b, lang) for a, b, lang, _ in heard]) if run[2] != language]

    def _on_its_own(self, start: float, end: float, fallback: str) -> tuple[float, float, str, bool]:
        """A span's language heard on its own, or `fallback` (the transcript's) when it is too short or
        detection unsure."""
        if end - start >= MIN_HEARD_S:
            own, p = self.detect(start, end)
            if p >= MIN_PROBABILITY:
                return start, end, own, True
        return start, end, fallback, False

    def _widen(self, heard: list[tuple[float, float, str, bool]], language: str) -> None:
        """A stretch of another language grows over the neighbouring spans that only their block's
        detection placed, while each, heard on its own among the two languages, is in it (a block
        that straddles a switch is heard as its larger part)."""
        for i in range(len(heard)):
            other = heard[i][2]
            if other == language:
                continue
            for step in (1, -1):
                j = i + step
                while 0 <= j < len(heard) and not heard[j][3] and heard[j][2] == language:
                    start, end, _, _ = heard[j]
                    if end - start < MIN_HEARD_S:  # too short to tell a language by
                        break
                    own = self.detect(start, end, [other, language])[0]
                    heard[j] = (start, end, own, True)
                    if own != other:
                        break
                    j += step

    def redecode(self, start: float, end: float, language: str | None, reason: str) -> None:
        """Decode [start, end] alone; its words replace the decode's there (segments whose middle is inside)."""
        lo, hi = max(0.0, start - PAD_S), min(self.duration, end + PAD_S)
        options = self.options.model_copy(update={"language": language, "prompt": None})
        audio = self._cut(lo, hi)  # through the hallucination guard, as every engine call
        part = guarded(self.engine, audio, options).result if self.guard else self.engine.transcribe(audio, options)
        new = [s.shifted(lo).clamped(lo, hi) for s in part.segments if s.text.strip()]
        kept = [s for s in self.segments if not _replaced(s, lo, hi, self.duration)]
        if reason == "no words":  # Whisper's segment times drift: speech "without words" may have them elsewhere
            new = _not_said(new, kept)
        elif new:  # the first decode's words for this speech, timed seconds early or late, are not kept twice
            heard = _trigrams(" ".join(s.text for s in new))
            kept = [s for s in kept if not (_near(s, lo, hi) and _repeats(s.text, heard))]
        if not new:
            self.recovered.append(Recovered(lo, hi, part.language, f"{reason}: nothing new"))  # its cost, seen
            return
        self.segments = sorted(kept + new, key=lambda s: s.start)
        self.recovered.append(Recovered(lo, hi, part.language, reason))

    def redecode_before(self, switch: float, spans: list[tuple[float, float]], since: float) -> None:
        """The audio before a language switch decoded again on its own, from the first pause at least
        one Whisper window (`BLOCK_S`) before it, never before `since` (the end of a stretch already
        decoded in its own language): the window that ran into the other language was decoded as one
        piece, and when it failed Whisper's checks the temperature fallback sampled it, the speech
        before the switch included (seen: a clean English call at WER 0.20 coming back at 0.21-0.68
        as the seed varied)."""
        floor = max(switch - BLOCK_S, since)
        first = next((i for i, (start, _) in enumerate(spans) if start >= floor), None)
        if first is None or spans[first][0] >= switch - MIN_SPAN_S:
            return
        pause = max(spans[first - 1][1] if first > 0 else 0.0, since)  # from the pause before it (or the start)
        self.redecode(pause + PAD_S, switch - PAD_S, self.result.language, "before a language change")

    def run(self) -> tuple[EngineResult, list[Recovered]]:
        spans = speech_spans(self.samples)
        if not spans:
            return self.result, []
        if self.options.language is None:
            since = 0.0
            for start, end, language in self.other_languages(spans):
                self.redecode_before(start, spans, since)
                self.redecode(start, end, language, "language")
                since = end
        # Whisper's segment times drift by seconds without word timestamps: only a longer hole is missing speech
        timed = all(s.words for s in self.segments if s.text.strip())
        min_hole = MIN_SPAN_S if timed else DRIFT_S
        for start, end in spans:
            for hole_start, hole_end in _uncovered(start, end, self.segments):
                if hole_end - hole_start > min_hole:
                    heard = None if self.options.language else self.detect(hole_start, hole_end)[0]
                    self.redecode(hole_start, hole_end, self.options.language or heard, "no words")
        if not self.recovered:
            return self.result, []
        log.warning("speech_recovered spans=%s", [r.record() for r in self.recovered])
        return EngineResult(self.segments, self.result.language, self.result.language_probability), self.recovered


def cover(engine: Engine, samples: np.ndarray, options: TranscribeOptions, result: EngineResult, *,
          guard: bool = True) -> tuple[EngineResult, list[Recovered]]:
    """The decode with every speech span it missed or put in the wrong language decoded again on its
    own (through the hallucination guard unless `guard` is off)."""
    if options.task != "transcribe" or len(samples) < MIN_SPAN_S * SAMPLE_RATE:
        return result, []
    return _Coverage(engine, samples, options, result, guard).run()
