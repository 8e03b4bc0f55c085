"""Recordings that switch language: per-language WER against reference texts, and the speech-coverage guard's cost.

Audio: pyannote's real `sample.wav` (English, 30 s, with its human transcript `sample.stm`), then
espeak-ng German of known text (about 20 s; no German recording with a reference ships with what
is installed, so the German figures say how much German survives, not how well Whisper hears
German). Two switches inside Whisper's first 30 s window: `en-de-en` (the call cut at 12 s, two
German sentences between) and `de-en` (German first, then the call). Single-language audio:
the sample followed by espeak-ng English of known text (about 50 s of English; the sample twice
would be real speech repeated, which the hallucination guard rightly takes for repeated text).

For each case:
- whole file: `transcribe_audio` with the guard (`SPEECH_COVERAGE`) off and on;
- sessions: the audio cut into 10 s and 30 s chunks, each transcribed alone (detecting its own
  language), combined and repaired as `combine_session` does (regrouping, windows).

WER per language: the reference of each language against the words of the segments whose middle
lies nearest that language's reference speech (by time, so a German stretch written in English
counts as German errors). Engine time: wall and CPU seconds of the transcription with the guard
on minus off (CPU seconds are steadier on a shared machine).

    python -m bench.languages [--out bench/results/languages.json]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, print_table, write_result

CUTS = (10.0, 30.0)


def _by_language(segments, rec) -> dict[str, str]:
    """The segments' text per language of the reference at each segment's middle."""
    from tests.support.languages import language_at

    parts: dict[str, list[str]] = {"en": [], "de": []}
    for s in segments:
        if s.gap or not s.text.strip():
            continue
        parts[language_at(rec, (s.start + s.end) / 2)].append(s.text)
    return {k: " ".join(v) for k, v in parts.items()}


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "languages.json")
    args = parser.parse_args()

    from tests.support.languages import bilingual, english_speech, switching, text_in
    from tests.support.real_speech import concat, load_sample, wer
    from tests.support.speech import SENTENCES
    from transcription.audio import SAMPLE_RATE, Audio
    from transcription.chunk import transcribe_audio
    from transcription.combine import combine_chunks
    from transcription.engines import get_engine
    from transcription.manifest import Manifest
    from transcription.options import TranscribeOptions
    from transcription.repair import repair_boundaries
    from transcription.settings import get_settings

    settings = get_settings()
    on = settings.model_copy(update={"speech_coverage": True})
    off = settings.model_copy(update={"speech_coverage": False})
    engine = get_engine(settings)
    bi = bilingual()
    switch = next(u.start for u in sorted(bi.utterances, key=lambda u: u.start) if u.speaker == "espeak-de") - 0.25
    english = concat([load_sample(), english_speech(SENTENCES[:4])], gap_s=0.5, name="sample+espeak-en")
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []

    def whole(rec, s, guard: str) -> dict[str, object]:
        t, wall, cpu = _timed(lambda: transcribe_audio(Audio(rec.samples, "wav"), TranscribeOptions(),
                                                       engine=engine, settings=s))
        return {"transcript": t, "wall_s": wall, "cpu_s": cpu, "guard": guard}

    # whole files, guard off and on
    cases = ((bi, "bilingual"), (switching("en-de-en"), "en-de-en"), (switching("de-en"), "de-en"),
             (english, "english"))
    for rec, name in cases:
        runs = {g: whole(rec, s, g) for g, s in (("off", off), ("on", on))}
        for g, r in runs.items():
            t = r["transcript"]
            if name != "english":
                hyp = _by_language(t.segments, rec)
                w = {k: round(wer(text_in(rec, k), hyp[k]), 3) for k in ("en", "de")}
            else:
                w = {"en": round(wer(rec.reference_text, t.text), 3)}
            fired = t.options.get("speech_recovered", [])
            rows.append([name, "whole", g, w.get("en", ""), w.get("de", ""), round(r["wall_s"], 1),
                         round(r["cpu_s"], 1), len(fired)])
            results.append({"case": name, "mode": "whole", "guard": g, "wer": w, "wall_s": round(r["wall_s"], 2),
                            "cpu_s": round(r["cpu_s"], 2), "audio_s": round(rec.duration, 2),
                            "speech_recovered": fired, "languages": t.languages})
        extra_wall = runs["on"]["wall_s"] - runs["off"]["wall_s"]
        extra_cpu = runs["on"]["cpu_s"] - runs["off"]["cpu_s"]
        results.append({"case": name, "mode": "guard extra", "extra_wall_s": round(extra_wall, 2),
                        "extra_cpu_s": round(extra_cpu, 2),
                        "extra_cpu_fraction": round(extra_cpu / max(runs["off"]["cpu_s"], 1e-9), 3)})

    # sessions of the bilingual recording cut at 10 s and 30 s (guard on, as deployed)
    for cut in CUTS:
        edges = [*range(0, len(bi.samples), round(cut * SAMPLE_RATE)), len(bi.samples)]
        pieces = [Audio(bi.samples[a:b], "wav") for a, b in itertools.pairwise(edges) if b - a > SAMPLE_RATE // 2]

        def session(pieces=pieces):
            chunks = []
            for i, audio in enumerate(pieces):
                t = transcribe_audio(audio, TranscribeOptions(), engine=engine, settings=on)
                chunks.append(t.model_copy(update={"chunk_index": i, "session_id": "bench"}))
            naive = combine_chunks("bench", chunks, Manifest(total_chunks=len(pieces)))
            return naive, repair_boundaries(naive, lambda e: pieces[e.index], engine=engine, settings=on)

        (naive, repaired), wall, cpu = _timed(session)
        for label, t in (("chunks", naive), ("session", repaired)):
            hyp = _by_language(t.segments, bi)
            w = {k: round(wer(text_in(bi, k), hyp[k]), 3) for k in ("en", "de")}
            rows.append(["bilingual", f"{cut:g} s {label}", "on", w["en"], w["de"], round(wall, 1), round(cpu, 1),
                         ""])
            results.append({"case": "bilingual", "mode": f"session {cut:g} s", "transcript": label, "wer": w,
                            "chunk_languages": [c.language for c in t.chunks],
                            "repair": t.repair, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)})

    print_table("Per-language WER (by time) and engine time, guard off/on",
                ["case", "mode", "guard", "WER en", "WER de", "wall s", "cpu s", "recovered"], rows)
    extra = [[r["case"], r["extra_wall_s"], r["extra_cpu_s"], r["extra_cpu_fraction"]]
             for r in results if r["mode"] == "guard extra"]
    print_table("The guard's extra engine time", ["case", "wall s", "cpu s", "cpu fraction"], extra)
    refs = {k: text_in(bi, k) for k in ("en", "de")}
    write_result(args.out.stem, {"switch_s": round(switch, 2), "references": refs,
                                 "cases": [{k: v for k, v in r.items()} for r in results],
                                 "samples": int(np.size(bi.samples))})


if __name__ == "__main__":
    main()
