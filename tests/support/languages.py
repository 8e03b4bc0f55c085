"""A recording that switches language: real English (pyannote's sample call) then German.

The German is espeak-ng's (`-v de`): no German recording with a reference ships with what is
installed. Whisper base transcribes it nearly word for word when it hears it as German, and turns
it into English (a translation, or nonsense) when it is decoded as English, which is the failure
these cases catch. No quality claim rests on the German half alone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.real_speech import Recording, concat, from_speech, load_sample, read_wav
from tests.support.speech import speak

GERMAN = [
    "Guten Morgen, meine Damen und Herren. Heute sprechen wir über das Wetter in Berlin.",
    "Am Wochenende wird es kalt und windig, und am Montag soll es regnen.",
    "Bitte vergessen Sie nicht, Ihre Regenschirme mitzunehmen.",
    "Die Besprechung beginnt um zehn Uhr im großen Saal im dritten Stock.",
]


def german(sentences: list[str] | None = None, pause_s: float = 0.6) -> Recording:
    """espeak-ng's German (about 5 s a sentence, 16 kHz), one utterance per sentence."""
    return _espeak(sentences or GERMAN, "de", pause_s)


def english_speech(sentences: list[str], pause_s: float = 0.6) -> Recording:
    """espeak-ng's English of `sentences` (a single-language case of known text)."""
    return _espeak(sentences, "en-us", pause_s)


def _espeak(sentences: list[str], voice: str, pause_s: float) -> Recording:
    parts = []
    language = voice.split("-")[0]
    for i, text in enumerate(sentences):
        wav = speak(text, voice=voice, speed=140)
        resampled = wav.with_name(wav.stem + ".16k.wav")
        if not resampled.exists():
            tmp = resampled.with_suffix(".tmp.wav")
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-ar", "16000", "-ac", "1",
                            str(tmp)], check=True)
            tmp.replace(resampled)
        parts.append(from_speech(read_wav(Path(resampled)), text, speaker=f"espeak-{language}", language=language,
                                 name=f"{language}{i}"))
    return concat(parts, gap_s=pause_s, name=f"espeak-{language}")


def bilingual(gap_s: float = 0.5, sentences: list[str] | None = None) -> Recording:
    """The 30 s English call, then about 20 s of German (or the German `sentences`)."""
    return concat([load_sample(), german(sentences)], gap_s=gap_s, name="sample+german")


def switching(case: str) -> Recording:
    """A switch inside Whisper's first 30 s window: `en-de-en` (the call cut at 12 s with two
    German sentences between, two switches in one window) or `de-en` (German first, then the call)."""
    call, de = load_sample(), german(GERMAN[1:3])
    if case == "en-de-en":
        return concat([call.cut(0, 12), de, call.cut(12, 30)], gap_s=0.5, name=case)
    if case == "de-en":
        return concat([de, call], gap_s=0.5, name=case)
    raise ValueError(f"unknown case {case!r}")


def language_at(rec: Recording, t: float) -> str:
    """The language of the reference utterance nearest to time `t` (to score words by time)."""
    nearest = min(rec.utterances, key=lambda u: 0.0 if u.start <= t <= u.end else min(abs(t - u.start),
                                                                                       abs(t - u.end)))
    return "de" if nearest.speaker == "espeak-de" else "en"


def text_in(rec: Recording, language: str) -> str:
    """The reference words of one language of a recording built with `concat`."""
    return " ".join(u.text for u in sorted(rec.utterances, key=lambda u: u.start)
                    if (u.speaker == "espeak-de") == (language == "de"))
