"""Peak memory of one transcription, honest audio against decompression bombs, side by side.

    python -m bench.memory [--cases honest-30s,honest-10min,...]

Each case runs in a process of its own (so its peak RSS is its own): load the engine, then
`transcribe_audio` on the input's bytes with the default limits (`MAX_AUDIO_S`, `ENGINE_PIECE_S`),
as the server's routes and the worker call it. Reported: the RSS after loading the engine, the
peak RSS, the outcome and the wall time. The bombs are FLACs of digital silence with the largest
frames: 32 KB decodes to 3.9 h. `bomb-29min-whole` is the same input with pieces off (the engine's
features for the whole input at once, as before issue 14): what the pieces save.

Writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import print_table, write_result

CASES = {  # name: (input, settings overrides)
    "honest-30s": ("speech:1", {}),
    "honest-10min": ("speech:20", {}),
    "bomb-3.9h-declared": ("bomb:14040:declared", {}),
    "bomb-3.9h-undeclared": ("bomb:14040:undeclared", {}),
    "bomb-29min": ("bomb:1790:declared", {}),
    "bomb-29min-whole": ("bomb:1790:declared", {"engine_piece_s": 1e9}),
}


def build_input(spec: str, tmp: Path) -> bytes:
    """`speech:N`: pyannote's 30 s call N times, as WAV; `bomb:S:declared|undeclared`: a FLAC bomb."""
    kind, *args = spec.split(":")
    if kind == "speech":
        import numpy as np

        from tests.support.real_speech import load_sample, wav_bytes

        return wav_bytes(np.tile(load_sample().samples, int(args[0])))
    from tests.security.crafted import flac_bomb

    return flac_bomb(tmp / "bomb.flac", float(args[0]), declared=args[1] == "declared")


def run_one(name: str) -> dict[str, object]:
    """In the child process: one case, measured."""
    from transcription.chunk import transcribe_audio
    from transcription.engines import load_engine
    from transcription.errors import TranscriptionError
    from transcription.settings import get_settings

    spec, overrides = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        data = build_input(spec, Path(tmp))
    settings = get_settings().model_copy(update=overrides)
    engine = load_engine(settings)
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    try:
        t = transcribe_audio(data, engine=engine, settings=settings)
        outcome = f"transcribed {t.duration:.0f} s, {len(t.segments)} segments"
    except TranscriptionError as e:
        outcome = f"refused ({e.kind}): {e.reason[:80]}"
    except MemoryError:
        outcome = "MemoryError"
    return {"case": name, "input_bytes": len(data), "loaded_mb": round(loaded_mb),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "wall_s": round(time.perf_counter() - started, 1), "outcome": outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process's case
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    rows = []
    for name in args.cases.split(","):
        child = subprocess.run([sys.executable, "-m", "bench.memory", "--one", name], capture_output=True, text=True,
                               timeout=3600)
        if child.returncode != 0:
            rows.append({"case": name, "outcome": f"process died ({child.returncode}): {child.stderr[-300:]}"})
        else:
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    print_table("Peak RSS of one transcription (MiB), each case in its own process",
                ["case", "input bytes", "after load", "peak", "wall s", "outcome"],
                [[r["case"], r.get("input_bytes", "-"), r.get("loaded_mb", "-"), r.get("peak_mb", "-"),
                  r.get("wall_s", "-"), r["outcome"]] for r in rows])
    write_result("memory", {"cases": rows})


if __name__ == "__main__":
    main()
