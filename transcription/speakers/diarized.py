"""OpenAI's `diarized_json`: a diarized transcript in the shape OpenAI's diarizing transcription answers.

    {"task": "transcribe", "duration": 12.3, "text": "...",
     "segments": [{"type": "transcript.text.segment", "id": "seg_0", "start": 0.0, "end": 2.1,
                   "text": "...", "speaker": "A"}, ...],
     "usage": {"type": "duration", "seconds": 12.3}}

As OpenAI labels them: a known speaker (named by a reference clip) keeps its name; the others are
`A`, `B`, ... in order of first appearance. A segment the diarizer gave no speaker (no voice within
a second of it) takes the speaker of the segment before it (else after it).
"""

from __future__ import annotations

import re
import string
from typing import Any

from transcription.transcript import Transcript


def letters() -> list[str]:
    """A, B, ..., Z, AA, AB, ...: labels for as many unnamed speakers as there are."""
    one = list(string.ascii_uppercase)
    return one + [a + b for a in one for b in one]


def diarized_json(t: Transcript) -> dict[str, Any]:
    spoken = [s for s in t.segments if s.text.strip() and not s.gap]
    labels = [s.speaker for s in spoken]
    for i in range(len(labels)):  # fill from the segment before, then from the one after
        if labels[i] is None and i:
            labels[i] = labels[i - 1]
    for i in reversed(range(len(labels) - 1)):
        if labels[i] is None:
            labels[i] = labels[i + 1]
    local = {sp for sp in labels if sp is not None and re.fullmatch(r"SPEAKER_\d+", sp)}
    named = {sp for sp in labels if sp is not None and sp not in local}
    free = (x for x in letters() if x not in named)
    shown: dict[str | None, str] = {}
    for sp in labels:
        if sp not in shown:
            shown[sp] = sp if sp in named else next(free)
    return {
        "task": "transcribe",
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": [
            {"type": "transcript.text.segment", "id": f"seg_{i}", "start": round(s.start, 3), "end": round(s.end, 3),
             "text": s.text.strip(), "speaker": shown[sp]}
            for i, (s, sp) in enumerate(zip(spoken, labels, strict=True))
        ],
        "usage": {"type": "duration", "seconds": round(t.duration, 3)},
    }
