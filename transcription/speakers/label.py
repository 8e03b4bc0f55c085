"""Speaker labels on words and segments from speaker turns (pure Python: the combine step uses it).

A word gets the speaker whose turns overlap it most, or, when none overlaps, the speaker of the
nearest turn within `NEAREST_S`. A segment with words is split where its words' speaker changes
(Whisper's segments follow pauses, not voices); a segment without words gets the speaker that
overlaps it most.
"""

from __future__ import annotations

from collections.abc import Sequence

from transcription.transcript import Segment, SpeakerTurn, Word

NEAREST_S = 1.0


def speaker_at(turns: Sequence[SpeakerTurn], start: float, end: float) -> str | None:
    """The speaker who talks most in [start, end], else the nearest one within NEAREST_S."""
    overlap: dict[str, float] = {}
    nearest: tuple[float, str] | None = None
    for t in turns:
        o = min(end, t.end) - max(start, t.start)
        if o > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + o
        else:
            gap = max(t.start - end, start - t.end, 0.0)
            if gap <= NEAREST_S and (nearest is None or gap < nearest[0]):
                nearest = (gap, t.speaker)
    if overlap:
        return max(overlap.items(), key=lambda kv: kv[1])[0]
    return nearest[1] if nearest else None


def label_segments(segments: Sequence[Segment], turns: Sequence[SpeakerTurn], *, keep_words: bool = True,
                   only_missing: bool = False) -> list[Segment]:
    """Segments (split at speaker changes where they have words) with `speaker` on them and their words.

    `only_missing` keeps every label already there (e.g. after boundary repair, only the words it
    transcribed again lack one). Gap markers are left as they are.
    """
    out: list[Segment] = []
    for seg in segments:
        if seg.gap or not turns:
            out.append(seg)
            continue
        if not seg.words:
            speaker = seg.speaker if only_missing and seg.speaker else speaker_at(turns, seg.start, seg.end)
            out.append(seg.model_copy(update={"speaker": speaker}))
            continue
        words = [w if only_missing and w.speaker
                 else w.model_copy(update={"speaker": speaker_at(turns, w.start, w.end)}) for w in seg.words]
        out.extend(_split(seg, words, keep_words))
    return out


def _split(seg: Segment, words: list[Word], keep_words: bool) -> list[Segment]:
    runs: list[list[Word]] = []
    for w in words:
        if runs and (w.speaker == runs[-1][-1].speaker or w.speaker is None):
            runs[-1].append(w)
        elif runs and runs[-1][-1].speaker is None:
            for x in runs[-1]:  # words without a speaker before the first labelled one join it
                x.speaker = w.speaker
            runs[-1].append(w)
        else:
            runs.append([w])
    if len(runs) == 1:
        return [seg.model_copy(update={"speaker": runs[0][0].speaker, "words": words if keep_words else None})]
    return [
        seg.model_copy(update={
            "start": run[0].start if i else seg.start,
            "end": run[-1].end if i < len(runs) - 1 else seg.end,
            "text": "".join(w.word for w in run).strip(),
            "speaker": run[0].speaker,
            "words": run if keep_words else None,
        })
        for i, run in enumerate(runs)
    ]
