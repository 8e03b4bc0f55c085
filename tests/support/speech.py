"""Test speech: espeak-ng speaks known text, ffmpeg converts it; and a word error rate to judge it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from tests.support.real_speech import normalize_text, wer

SENTENCES = [
    "Please remember to bring the blue folder to the meeting this afternoon.",
    "The weather was cold and windy, so we stayed inside and read our books.",
    "Our team will finish the report before the end of the week.",
    "She opened the window and listened to the birds singing in the garden.",
    "We should call the hotel and ask whether they have a room for Friday.",
    "The library closes early on Sunday, so please return your books today.",
]


def _cache_dir() -> Path:
    d = Path(__file__).resolve().parents[2] / ".cache" / "speech"
    d.mkdir(parents=True, exist_ok=True)
    return d


def speak(text: str, fmt: str = "wav", *, speed: int = 150, voice: str = "en-us", out: Path | None = None) -> Path:
    """A file of espeak-ng saying `text` in `fmt` (wav, mp3, flac, m4a, ogg, webm); cached by content."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (make setup installs it)")
    key = hashlib.sha256(f"{text}|{speed}|{voice}".encode()).hexdigest()[:16]
    wav = _cache_dir() / f"{key}.wav"
    if not wav.exists():
        tmp = wav.with_suffix(".tmp.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(tmp), text], check=True)
        tmp.replace(wav)
    target = wav if fmt == "wav" else _cache_dir() / f"{key}.{fmt}"
    if not target.exists():
        tmp = target.with_suffix(f".tmp.{fmt}")
        quality = {"mp3": ["-b:a", "128k"], "ogg": ["-q:a", "6"], "m4a": ["-b:a", "128k"], "webm": ["-b:a", "96k"]}
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), *quality.get(fmt, []), str(tmp)],
                       check=True)
        tmp.replace(target)
    if out is not None:
        shutil.copyfile(target, out)
        return out
    return target


def normalize(text: str) -> str:
    """Lowercase words without punctuation: what a word error rate should compare (any script)."""
    return normalize_text(text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """jiwer's word error rate after `normalize` on both sides."""
    return wer(reference, hypothesis)
