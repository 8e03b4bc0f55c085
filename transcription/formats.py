"""Renderers: a transcript as json, verbose_json, text, srt, vtt or tsv.

`json` is the project's own transcript model (what is stored in S3); `verbose_json` is the
OpenAI-compatible shape (task, language, duration, text, segments, words).

Speakers, when a transcript has them: `speaker` on segments and words in both JSON shapes, `<v
Speaker 1>` voice spans in VTT, a `[Speaker 1]` prefix in SRT, speaker turns (`Speaker 1: ...`, one
paragraph per turn) in text, and a `speaker` column in TSV. `SPEAKER_1` is shown as `Speaker 1`;
a name (e.g. from a reference clip) as it is.
"""

from __future__ import annotations

import json
import re
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


def speaker_name(label: str) -> str:
    """How a speaker is shown to people: `SPEAKER_1` -> `Speaker 1`; names as they are."""
    m = re.fullmatch(r"SPEAKER_(\d+)", label)
    return f"Speaker {m.group(1)}" if m else label


def _one_line(seg: Segment) -> str:
    return " ".join(seg.text.split())  # one line: a newline inside a cue could end it early


def _cue_text(seg: Segment) -> str:
    text = _one_line(seg)
    return f"[{speaker_name(seg.speaker)}] {text}" if seg.speaker else text


def _has_speakers(t: Transcript) -> bool:
    return any(s.speaker for s in t.segments)


def _cues(t: Transcript) -> list[Segment]:
    return [s for s in t.segments if s.text.strip()]


def to_json(t: Transcript) -> str:
    return t.model_dump_json(indent=2)


def to_verbose_json(t: Transcript) -> str:
    words = [w.model_dump(include={"word", "start", "end", *(("speaker",) if w.speaker else ())})
             for s in t.segments for w in (s.words or [])]
    body: dict[str, object] = {
        "task": "transcribe",
        "language": t.language,
        "languages": t.languages,  # each language with its seconds of speech (a recording may switch)
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
                "language": s.language or t.language,
                **({"speaker": s.speaker} if s.speaker else {}),
            }
            for i, s in enumerate(t.segments)
        ],
    }
    if words:
        body["words"] = words
    return json.dumps(body, ensure_ascii=False, indent=2)


def to_text(t: Transcript) -> str:
    """One line per segment; with speakers, one paragraph per speaker turn."""
    if not _has_speakers(t):
        return "".join(_one_line(s) + "\n" for s in _cues(t))
    turns: list[tuple[str | None, list[str]]] = []
    for s in _cues(t):
        if turns and turns[-1][0] == s.speaker:
            turns[-1][1].append(_one_line(s))
        else:
            turns.append((s.speaker, [_one_line(s)]))
    return "\n".join(f"{speaker_name(who) + ': ' if who else ''}{' '.join(texts)}\n" for who, texts in turns)


def to_srt(t: Transcript) -> str:
    return "".join(
        f"{i}\n{timestamp(s.start)} --> {timestamp(max(s.end, s.start))}\n{_cue_text(s)}\n\n"
        for i, s in enumerate(_cues(t), start=1)
    )


def _vtt_text(seg: Segment) -> str:
    text = _one_line(seg).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<v {speaker_name(seg.speaker)}>{text}" if seg.speaker else text


def to_vtt(t: Transcript) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{timestamp(s.start, '.')} --> {timestamp(max(s.end, s.start), '.')}\n{_vtt_text(s)}\n\n" for s in _cues(t)
    )


def to_tsv(t: Transcript) -> str:
    """Whisper's tsv: integer milliseconds, a header row, tabs inside text replaced; with speakers, a
    `speaker` column after the text."""
    if not _has_speakers(t):
        rows = ["start\tend\ttext"]
        rows += [f"{round(s.start * 1000)}\t{round(max(s.end, s.start) * 1000)}\t{_one_line(s).replace(chr(9), ' ')}"
                 for s in _cues(t)]
    else:
        rows = ["start\tend\ttext\tspeaker"]
        rows += [f"{round(s.start * 1000)}\t{round(max(s.end, s.start) * 1000)}\t{_one_line(s).replace(chr(9), ' ')}"
                 f"\t{speaker_name(s.speaker).replace(chr(9), ' ') if s.speaker else ''}" for s in _cues(t)]
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
