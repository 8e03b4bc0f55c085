"""Real recorded speech with human references, for judging quality (not espeak-ng's speech).

pyannote.audio (installed with whisperx) ships `sample/sample.wav`: a 30 s, 16 kHz phone call of two
people, with `sample.stm` (who said what, when: the human transcript) and `sample.rttm` (speaker
turns). `Recording` keeps audio, reference utterances and speaker turns together, so a case built by
padding, cutting, concatenating or mixing it still knows its own reference:

    call = load_sample()
    tail = call.pad(after_s=1.0)                    # Whisper's repeated-tail trigger
    two = concat([call, call.rename("B")], gap_s=2)  # a longer session with four speakers
    tail.reference_text                              # what a transcript of it should say

Times are seconds on the recording's own timeline; every operation returns a new `Recording`.
"""

from __future__ import annotations

import importlib.util
import io
import re
import unicodedata
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Utterance:
    start: float
    end: float
    speaker: str
    text: str


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class Recording:
    """Audio (16 kHz mono float32) with its human reference: utterances (STM) and speaker turns (RTTM)."""

    samples: np.ndarray
    utterances: tuple[Utterance, ...] = ()
    turns: tuple[Turn, ...] = ()
    language: str | None = "en"
    name: str = "recording"
    # spans of the timeline whose reference text is unknown (e.g. speech cut in half): excluded from scoring
    notes: tuple[str, ...] = field(default=())

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def reference_text(self) -> str:
        return " ".join(u.text for u in sorted(self.utterances, key=lambda u: u.start))

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns} | {u.speaker for u in self.utterances})

    def pad(self, before_s: float = 0.0, after_s: float = 0.0, noise_db: float | None = None,
            seed: int = 0) -> Recording:
        """Silence (or white noise at `noise_db` dBFS) before and after."""
        a = _filler(before_s, noise_db, seed)
        b = _filler(after_s, noise_db, seed + 1)
        return self._with(np.concatenate([a, self.samples, b]), shift=len(a) / SAMPLE_RATE,
                          name=f"{self.name}+pad({before_s:g},{after_s:g})")

    def cut(self, start_s: float, end_s: float) -> Recording:
        """The span [start_s, end_s). Utterances are kept when their midpoint is inside; one the cut
        splits is noted (its words are only partly in the audio, so score such a case as a whole)."""
        lo, hi = round(start_s * SAMPLE_RATE), round(min(end_s, self.duration) * SAMPLE_RATE)
        kept, notes = [], list(self.notes)
        for u in self.utterances:
            mid = (u.start + u.end) / 2
            if start_s <= mid < end_s:
                kept.append(u)
            if u.start < start_s < u.end or u.start < end_s < u.end:
                notes.append(f"utterance {u.start:.2f}-{u.end:.2f} split by the cut")
        turns = [Turn(max(t.start, start_s), min(t.end, end_s), t.speaker) for t in self.turns
                 if t.end > start_s and t.start < end_s]
        rec = replace(self, samples=self.samples[lo:hi].copy(), utterances=tuple(kept), turns=tuple(turns),
                      name=f"{self.name}[{start_s:g}:{end_s:g}]", notes=tuple(notes))
        return rec._with(rec.samples, shift=-start_s)

    def rename(self, suffix: str) -> Recording:
        """The same recording with its speakers renamed (`Diane` -> `Diane-B`): a different session's people."""
        return replace(
            self, name=f"{self.name}-{suffix}",
            utterances=tuple(replace(u, speaker=f"{u.speaker}-{suffix}") for u in self.utterances),
            turns=tuple(replace(t, speaker=f"{t.speaker}-{suffix}") for t in self.turns))

    def gain(self, db: float) -> Recording:
        return replace(self, samples=(self.samples * 10 ** (db / 20)).astype(np.float32))

    def write_wav(self, path: Path) -> Path:
        path.write_bytes(wav_bytes(self.samples))
        return path

    def _with(self, samples: np.ndarray, *, shift: float, name: str | None = None) -> Recording:
        return replace(
            self, samples=samples.astype(np.float32, copy=False), name=name or self.name,
            utterances=tuple(replace(u, start=u.start + shift, end=u.end + shift) for u in self.utterances),
            turns=tuple(replace(t, start=t.start + shift, end=t.end + shift) for t in self.turns))


def concat(parts: Sequence[Recording], gap_s: float = 0.0, name: str | None = None) -> Recording:
    """The recordings one after another, `gap_s` of silence between them; references follow."""
    samples, utterances, turns, t = [], [], [], 0.0
    gap = np.zeros(round(gap_s * SAMPLE_RATE), np.float32)
    for i, p in enumerate(parts):
        if i and len(gap):
            samples.append(gap)
            t += gap_s
        shifted = p._with(p.samples, shift=t)
        samples.append(shifted.samples)
        utterances += shifted.utterances
        turns += shifted.turns
        t += p.duration
    languages = {p.language for p in parts}
    return Recording(np.concatenate(samples), tuple(utterances), tuple(turns),
                     language=languages.pop() if len(languages) == 1 else None,
                     name=name or "+".join(p.name for p in parts),
                     notes=tuple(n for p in parts for n in p.notes))


def mix(base: Recording, other: Recording, at_s: float = 0.0, other_gain_db: float = 0.0) -> Recording:
    """`other` added on top of `base` from `at_s` (overlapping speech, or noise): both references kept."""
    out = base.samples.copy()
    start = round(at_s * SAMPLE_RATE)
    add = other.gain(other_gain_db)._with(other.gain(other_gain_db).samples, shift=at_s)
    end = start + len(add.samples)
    if end > len(out):
        out = np.concatenate([out, np.zeros(end - len(out), np.float32)])
    out[start:end] += add.samples
    return replace(base, samples=out, name=f"{base.name}*{other.name}",
                   utterances=tuple(sorted(base.utterances + add.utterances, key=lambda u: u.start)),
                   turns=tuple(sorted(base.turns + add.turns, key=lambda t: t.start)),
                   notes=base.notes + other.notes)


def from_speech(samples: np.ndarray, text: str, *, speaker: str = "synthetic", language: str = "en",
                name: str = "speech") -> Recording:
    """A recording of known text (e.g. espeak-ng's, for a second language) as one utterance."""
    duration = len(samples) / SAMPLE_RATE
    return Recording(samples.astype(np.float32, copy=False), (Utterance(0.0, duration, speaker, text),),
                     (Turn(0.0, duration, speaker),), language=language, name=name)


# --- the shipped sample -------------------------------------------------------------------------

def sample_dir() -> Path:
    """pyannote.audio's `sample/` folder, found without importing pyannote.audio (torch)."""
    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyannote.audio is not installed (it comes with whisperx: make setup)")
    return Path(next(iter(spec.submodule_search_locations))) / "sample"


def read_stm(path: Path) -> list[Utterance]:
    """NIST STM: `file channel speaker start end [<label>] text` per line; `;;` lines are comments."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith(";;"):
            continue
        _, _, speaker, start, end, rest = line.split(maxsplit=5)
        text = re.sub(r"^<[^>]*>\s*", "", rest).strip()
        out.append(Utterance(float(start), float(end), speaker, text))
    return out


def read_rttm(path: Path) -> list[Turn]:
    """NIST RTTM `SPEAKER file channel start duration <NA> <NA> speaker <NA> <NA>` lines."""
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            start, duration = float(f[3]), float(f[4])
            out.append(Turn(start, start + duration, f[7]))
    return out


def read_wav(path: Path) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV as float32 (the sample is exactly that)."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path.name}: expected 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def load_sample() -> Recording:
    """The 30 s two-person call with its STM transcript and RTTM turns.

    The STM and RTTM name the two speakers differently (Diane/Sheila vs speaker90/speaker91); the
    turns are renamed to the STM's names by which of them speaks the most in each turn.
    """
    d = sample_dir()
    utterances = read_stm(d / "sample.stm")
    turns = read_rttm(d / "sample.rttm")
    names = _match_speakers(turns, utterances)
    turns = [replace(t, speaker=names.get(t.speaker, t.speaker)) for t in turns]
    return Recording(read_wav(d / "sample.wav"), tuple(utterances), tuple(turns), language="en", name="sample")


def _match_speakers(turns: list[Turn], utterances: list[Utterance]) -> dict[str, str]:
    overlap: dict[tuple[str, str], float] = {}
    for t in turns:
        for u in utterances:
            o = min(t.end, u.end) - max(t.start, u.start)
            if o > 0:
                overlap[(t.speaker, u.speaker)] = overlap.get((t.speaker, u.speaker), 0.0) + o
    names: dict[str, str] = {}
    for (turn_speaker, name), _ in sorted(overlap.items(), key=lambda kv: -kv[1]):
        if turn_speaker not in names and name not in names.values():
            names[turn_speaker] = name
    return names


def _filler(seconds: float, noise_db: float | None, seed: int) -> np.ndarray:
    n = round(seconds * SAMPLE_RATE)
    if noise_db is None:
        return np.zeros(n, np.float32)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 10 ** (noise_db / 20)).astype(np.float32)


# --- scoring --------------------------------------------------------------------------------------

def normalize_text(text: str) -> str:
    """Lowercase words without punctuation, in any script (umlauts and accents kept, as in the reference)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ")
    return " ".join(re.sub(r"[^\w' ]+", " ", text).replace("_", " ").split())


def wer(reference: str, hypothesis: str) -> float:
    """jiwer's word error rate after `normalize_text` on both sides."""
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return float(bool(hyp))
    return float(jiwer.wer(ref, hyp)) if hyp else 1.0


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """Mono 16-bit PCM WAV bytes of float samples in [-1, 1] (clipped): what a recorder uploads."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


# --- known speakers ---------------------------------------------------------------------------------

# one turn of each person talking alone in `sample.wav`: Diane's longest solo stretch before Sheila
# cuts in, and Sheila's longest turn (the pieces `bench.speaker_names` calls x1.0 clips)
REFERENCE_TURNS = {"Diane": (11.03, 14.49), "Sheila": (21.78, 27.85)}


def without(rec: Recording, start_s: float, end_s: float) -> Recording:
    """The recording with [start_s, end_s) cut out (what follows moves up)."""
    return concat([rec.cut(0, start_s), rec.cut(end_s, rec.duration)], name=f"{rec.name}-[{start_s:g}:{end_s:g}]")


def named_call() -> tuple[Recording, dict[str, Recording]]:
    """(the call with each person's reference turn cut out, each person's reference clip): the clips
    are never part of the audio they name (20.5 s left: Diane about 8 s, Sheila about 5 s)."""
    call = replace(load_sample(), utterances=())
    rest = call
    for a, b in sorted(REFERENCE_TURNS.values(), reverse=True):  # the later cut first: times still hold
        rest = without(rest, a, b)
    return rest, {name: call.cut(a, b) for name, (a, b) in REFERENCE_TURNS.items()}


def data_url(samples: np.ndarray) -> str:
    """A WAV data URL, as OpenAI's `known_speaker_references[]` takes a clip."""
    import base64

    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(samples)).decode()


def person_at(rec: Recording, start: float, end: float, min_share: float = 0.0) -> str | None:
    """Who of the recording's reference turns speaks most over [start, end] (None when no one, or
    when that person covers no more than `min_share` of it)."""
    overlap: dict[str, float] = {}
    for t in rec.turns:
        o = min(end, t.end) - max(start, t.start)
        if o > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + o
    if not overlap or max(overlap.values()) <= min_share * (end - start):
        return None
    return max(overlap, key=overlap.__getitem__)
