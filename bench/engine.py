"""Each engine's real-time factor and word error rate, and what the hallucination guard costs, in one run.

    python -m bench.engine [FILE...] [--reference REF]... [--sample-pad S] [--repeat N]
                           [--engines faster-whisper,whisperx] [--out NAME]

Generated speech (espeak-ng, the text is its reference) measures speed and WER. Each FILE is a
real recording, scored against its human reference when one is given (`--reference`, in the order
of the files: plain text or NIST `.stm`), and reported as "no reference" otherwise (never against
the engine's own output). `--sample-pad S` adds pyannote's real call (`sample.wav`) with S s of
silence appended and its `sample.stm` (0 and 1 are both useful: the repeated tail appears in both).

The guard's cost is measured apart from the engine's: every input is transcribed by the raw engine
(timed), then the guard checks that result (`transcription.guard.check`, timed: its checks, plus
the span decoded again where it fires), so `guard_extra_pct` is the guard's extra engine time in
percent of the raw engine's, over inputs where it fired and where it did not.

Writes bench/results/engine.json: {"engines": {"<engine>": {"rtf_x": ..., "wer": ..., "guard_extra_pct": ...,
"recordings": {"<file>": {"reference": "human" | "no reference", "wer_raw": ..., "wer_guarded": ...}}}}}
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import print_table, write_result

NO_REFERENCE = "no reference"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="real recordings (any supported container)")
    parser.add_argument("--reference", action="append", type=Path, default=[],
                        help="the human reference of each FILE in order (text, or .stm)")
    parser.add_argument("--sample-pad", action="append", type=float, default=[], metavar="S",
                        help="add pyannote's sample call with S s of silence appended (repeatable)")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the generated files per engine")
    parser.add_argument("--engines", default="faster-whisper,whisperx")
    parser.add_argument("--out", default="engine", help="result file name in bench/results (without .json)")
    args = parser.parse_args()
    if len(args.reference) > len(args.files):
        parser.error("more --reference than files")

    from bench.boundaries import read_reference
    from tests.support.real_speech import load_sample, wer
    from tests.support.speech import SENTENCES, speak, word_error_rate
    from transcription.audio import decode_audio
    from transcription.engines import load_engine
    from transcription.guard import check
    from transcription.options import TranscribeOptions
    from transcription.settings import get_settings

    files = [speak(s) for s in SENTENCES] + [speak(" ".join(SENTENCES))]
    texts = [*SENTENCES, " ".join(SENTENCES)]
    audios = [decode_audio(f) for f in files]  # decoding is outside the timed part: engines only
    audio_s = sum(a.duration for a in audios)
    real: list[tuple[str, object, str | None]] = []
    for i, path in enumerate(args.files):
        real.append((str(path), decode_audio(path).samples,
                     read_reference(args.reference[i]) if i < len(args.reference) else None))
    for pad in args.sample_pad:
        call = load_sample().pad(after_s=pad)
        real.append((f"sample.wav+{pad:g}s", call.samples, call.reference_text))
    options = TranscribeOptions(language="en")
    results: dict[str, dict[str, object]] = {}
    for name in args.engines.split(","):
        t0 = time.perf_counter()
        engine = load_engine(get_settings().model_copy(update={"engine": name}))
        load_s = time.perf_counter() - t0
        engine.transcribe(audios[0].samples, options)  # warm-up
        wall = guard_wall = 0.0
        fired = 0
        errors: list[float] = []
        for _ in range(args.repeat):
            for audio, text in zip(audios, texts, strict=True):
                t0 = time.perf_counter()
                result = engine.transcribe(audio.samples, options)
                wall += time.perf_counter() - t0
                errors.append(word_error_rate(text, " ".join(s.text for s in result.segments)))
                t0 = time.perf_counter()
                fired += bool(check(engine, audio.samples, options, result).actions)
                guard_wall += time.perf_counter() - t0
        recordings: dict[str, dict[str, object]] = {}
        for label, samples, reference in real:
            t0 = time.perf_counter()
            raw = engine.transcribe(samples, options)
            raw_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            guarded = check(engine, samples, options, raw)
            extra_s = time.perf_counter() - t0
            raw_text = " ".join(s.text for s in raw.segments)
            text = " ".join(s.text for s in guarded.result.segments)
            recordings[label] = {
                "reference": "human" if reference is not None else NO_REFERENCE,
                "wer_raw": round(wer(reference, raw_text), 4) if reference is not None else None,
                "wer_guarded": round(wer(reference, text), 4) if reference is not None else None,
                "engine_s": round(raw_s, 2),
                "guard_extra_s": round(extra_s, 3),
                "guard_extra_pct": round(100 * extra_s / raw_s, 1),
                "guard_actions": [{**a.record(), "dropped": a.dropped} for a in guarded.actions],
            }
        results[name] = {
            "rtf_x": round(audio_s * args.repeat / wall, 2),
            "wer": round(sum(errors) / len(errors), 4),
            "load_s": round(load_s, 2),
            "audio_s": round(audio_s * args.repeat, 1),
            "wall_s": round(wall, 2),
            "guard_extra_pct": round(100 * guard_wall / wall, 2),  # generated speech: where it rarely fires
            "guard_fired": fired,
            "recordings": recordings,
        }
    print_table("engines (real-time factor: audio seconds per wall second; guard: its extra time, % of the engine's)",
                ["engine", "rtf_x", "wer", "load_s", "audio_s", "wall_s", "guard_%", "guard_fired"],
                [[k, *(v[c] for c in ("rtf_x", "wer", "load_s", "audio_s", "wall_s", "guard_extra_pct",
                                      "guard_fired"))] for k, v in results.items()])
    for name, r in results.items():
        rows = [[label, *(NO_REFERENCE if x[c] is None else x[c] for c in ("wer_raw", "wer_guarded")),
                 x["engine_s"], x["guard_extra_s"], x["guard_extra_pct"], len(x["guard_actions"])]
                for label, x in r["recordings"].items()]  # type: ignore[union-attr]
        if rows:
            print_table(f"{name}: real recordings (WER against the human reference)",
                        ["recording", "wer_raw", "wer_guarded", "engine_s", "guard_s", "guard_%", "actions"], rows)
    write_result(args.out, {"engines": results, "files": len(files), "repeat": args.repeat,
                            "recordings": [label for label, _, _ in real]})


if __name__ == "__main__":
    main()
