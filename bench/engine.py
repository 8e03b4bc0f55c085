"""Each engine's real-time factor and word error rate on the same generated speech, in one run.

    python bench/engine.py [--repeat N] [--engines faster-whisper,whisperx]

Writes bench/results/engine.json: {"engines": {"<engine>": {"rtf_x": ..., "wer": ...}}, "machine": ...}
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (bench/queue.py would shadow queue)

from bench.common import print_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="passes over the files per engine")
    parser.add_argument("--engines", default="faster-whisper,whisperx")
    args = parser.parse_args()

    from tests.support.speech import SENTENCES, speak, word_error_rate
    from transcription.audio import decode_audio
    from transcription.engines import load_engine
    from transcription.options import TranscribeOptions
    from transcription.settings import get_settings

    files = [speak(s) for s in SENTENCES] + [speak(" ".join(SENTENCES))]
    texts = [*SENTENCES, " ".join(SENTENCES)]
    audios = [decode_audio(f) for f in files]  # decoding is outside the timed part: engines only
    audio_s = sum(a.duration for a in audios)
    options = TranscribeOptions(language="en")
    results: dict[str, dict[str, float]] = {}
    for name in args.engines.split(","):
        t0 = time.perf_counter()
        engine = load_engine(get_settings().model_copy(update={"engine": name}))
        load_s = time.perf_counter() - t0
        engine.transcribe(audios[0].samples, options)  # warm-up
        wall = 0.0
        errors: list[float] = []
        for _ in range(args.repeat):
            for audio, text in zip(audios, texts, strict=True):
                t0 = time.perf_counter()
                result = engine.transcribe(audio.samples, options)
                wall += time.perf_counter() - t0
                errors.append(word_error_rate(text, " ".join(s.text for s in result.segments)))
        results[name] = {
            "rtf_x": round(audio_s * args.repeat / wall, 2),
            "wer": round(sum(errors) / len(errors), 4),
            "load_s": round(load_s, 2),
            "audio_s": round(audio_s * args.repeat, 1),
            "wall_s": round(wall, 2),
        }
    print_table("engines (real-time factor: audio seconds per wall second)",
                ["engine", "rtf_x", "wer", "load_s", "audio_s", "wall_s"],
                [[k, *v.values()] for k, v in results.items()])
    write_result("engine", {"engines": results, "files": len(files), "repeat": args.repeat})


if __name__ == "__main__":
    main()
