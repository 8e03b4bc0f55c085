"""Renderers: a transcript as json, verbose_json, text, srt, vtt or tsv.

`json` is the project's own transcript model (what is stored in S3); `verbose_json` is the
OpenAI-compatible shape (task, language, duration, text, segments, words).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from transcription.transcript import Segment, Transcript

FORMATS = ("json", "verbose_json", "text", "srt", "vtt", "tsv")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
}


def timestamp(seconds: float, sep: str = ",") -> str:
    """`HH:MM:SS,mmm` (srt) or `HH:MM:SS.mmm` (vtt); rounds to the millisecond, never negative."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_text(seg: Segment) -> str:
    text = " ".join(seg.text.split())  # one line: a newline inside a cue could end it early
    return f"[{seg.speaker}] {text}" if seg.speaker else text


def _cues(t: Transcript) -> list[Segment]:
    return [s for s in t.segments if s.text.strip()]


def to_json(t: Transcript) -> str:
    return t.model_dump_json(indent=2)


def to_verbose_json(t: Transcript) -> str:
    words = [w.model_dump(include={"word", "start", "end"}) for s in t.segments for w in (s.words or [])]
    body: dict[str, object] = {
        "task": "transcribe",
        "language": t.language,
        "duration": t.duration,
        "text": t.text,
        "segments": [
            {
                "id": i,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": s.avg_logprob if s.avg_logprob is not None else 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": s.no_speech_prob if s.no_speech_prob is not None else 0.0,
                **({"speaker": s.speaker} if s.speaker else {}),
            }
            for i, s in enumerate(t.segments)
        ],
    }
    if words:
        body["words"] = words
    return json.dumps(body, ensure_ascii=False, indent=2)


def to_text(t: Transcript) -> str:
    return "".join(_cue_text(s) + "\n" for s in _cues(t))


def to_srt(t: Transcript) -> str:
    return "".join(
        f"{i}\n{timestamp(s.start)} --> {timestamp(max(s.end, s.start))}\n{_cue_text(s)}\n\n"
        for i, s in enumerate(_cues(t), start=1)
    )


def to_vtt(t: Transcript) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{timestamp(s.start, '.')} --> {timestamp(max(s.end, s.start), '.')}\n{_cue_text(s)}\n\n" for s in _cues(t)
    )


def to_tsv(t: Transcript) -> str:
    """Whisper's tsv: integer milliseconds, a header row, tabs inside text replaced."""
    rows = ["start\tend\ttext"]
    rows += [
        f"{round(s.start * 1000)}\t{round(max(s.end, s.start) * 1000)}\t{_cue_text(s).replace(chr(9), ' ')}"
        for s in _cues(t)
    ]
    return "\n".join(rows) + "\n"


RENDERERS: dict[str, Callable[[Transcript], str]] = {
    "json": to_json,
    "verbose_json": to_verbose_json,
    "text": to_text,
    "srt": to_srt,
    "vtt": to_vtt,
    "tsv": to_tsv,
}


def render(t: Transcript, fmt: str) -> str:
    try:
        return RENDERERS[fmt](t)
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}") from None
