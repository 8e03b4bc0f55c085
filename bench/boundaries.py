"""Word errors at chunk boundaries: whole file vs naive concatenation vs boundary repair, in one run.

    python bench/boundaries.py [FILE...] [--cuts 5,10,30] [--window 3] [--chunk-words]

Generated sessions are long texts spoken by espeak-ng (the text is the reference); each FILE is a
real recording (the whole file transcribed at once is its reference). Every session is cut at fixed
lengths regardless of words, each chunk is transcribed on its own (as the server and the worker do),
the chunks are combined naively and with boundary repair, and both are compared with the reference
using the same normalised word error rate the tests use. The extra compute of repair is given as
extra audio seconds transcribed (windows) and as extra engine wall time, both in percent of the
chunks' own transcription.

Writes bench/results/boundaries.json:
    {"<cut seconds>": {"whole_wer": ..., "naive_wer": ..., "repaired_wer": ..., "extra_audio_pct": ...,
                       "extra_wall_pct": ..., "boundaries": ...},
     "recordings": {"<file>": {"<cut seconds>": {...}}}, "sessions": [...], "window_s": ..., "machine": ...}
WERs per cut length are pooled over the generated sessions (weighted by reference words).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (bench/queue.py would shadow queue)

from bench.common import print_table, write_result

# Plain prose, about 40 s each: no numbers, dates, names or British spellings Whisper writes another
# way, and only texts whose whole-file transcription is within 2% of the text (checked once, on the
# whole file only), so that what the cut lengths change is what the cuts cause.
TEXTS = [
    "The meeting began a little late because the projector would not connect to the laptop. While the "
    "technician searched for the right cable, the manager asked everyone to share a short update on their "
    "work. The design team described the new layout for the mobile application, which makes it easier for "
    "customers to find their orders. The support team reported that most questions this month were about "
    "delivery times, and they suggested adding clearer messages to the tracking page. Finally the projector "
    "came to life, and the group reviewed the plan for the next quarter. They agreed to focus on reliability "
    "first, then on new features, and to meet again after the holidays to measure their progress.",
    "Every morning the bakery on the corner opens its doors before the rest of the street wakes up. The baker "
    "arrives in the dark, switches on the ovens, and mixes flour, water and salt in a large wooden bowl. By the "
    "time the first customers come in, the shelves are full of warm loaves, sweet rolls and small cakes covered "
    "with sugar. Children stop on their way to school to buy a pastry, and older neighbors sit at the little "
    "tables by the window to read the newspaper and drink coffee. In the afternoon the shop grows quiet, and "
    "the baker cleans the kitchen, writes a list of what to buy, and goes home to sleep early.",
    "The train left the city just after lunch and followed the river toward the mountains. At first the view "
    "was full of factories and warehouses, but soon the buildings gave way to green fields and small farms. A "
    "family in the next seats shared sandwiches and played cards, while an old man across the aisle slept with "
    "his hat pulled over his eyes. As the valley narrowed, the track began to climb, and the air outside became "
    "cool and clear. When the train finally stopped at the small station in the hills, the passengers stepped "
    "onto the platform and stretched, looking up at the snow on the highest peaks.",
    "Learning to play the piano takes patience and a little practice every day. Most teachers begin with "
    "simple scales, so that the fingers learn to move evenly across the keys. After a few weeks, students play "
    "short songs with both hands, and they start to read music without counting every line. Mistakes are part "
    "of the process, and a good teacher helps a student listen carefully instead of rushing. Over time the "
    "pieces become longer and more expressive, and the student discovers that music is not only about playing "
    "the right notes, but also about telling a story with sound.",
    "The city library moved into a new building last spring. The old building was dark and crowded, and many "
    "books were stored in boxes because there was no room on the shelves. The new library has tall windows, "
    "quiet reading rooms, and a large hall for lectures and concerts. On weekends families come to borrow "
    "picture books, and students gather around the long tables to study together. The librarians also run "
    "classes for people who want to learn how to use computers, write a letter for a job, or find information "
    "about their family history.",
]


COLUMNS = [("whole_wer", "whole"), ("naive_wer", "naive"), ("repaired_wer", "repaired"),
           ("whole_wer_near_cuts", "whole_near"), ("naive_wer_near_cuts", "naive_near"),
           ("repaired_wer_near_cuts", "repaired_near"),
           ("extra_audio_pct", "extra_audio_%"), ("extra_wall_pct", "extra_wall_%"), ("boundaries", "boundaries")]


def reference_times(reference: str, timed) -> list[float]:
    """A time for each reference word: from the whole file's word timestamps, aligned by text."""
    from difflib import SequenceMatcher

    from tests.support.speech import normalize

    ref = normalize(reference).split()
    words = [w for seg in timed.segments for w in (seg.words or [])]
    norm = [normalize(w.word) for w in words]
    times: list[float | None] = [None] * len(ref)
    for block in SequenceMatcher(None, ref, norm, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            times[block.a + k] = words[block.b + k].start
    known = [(i, t) for i, t in enumerate(times) if t is not None] or [(0, 0.0)]
    out = []
    for i, t in enumerate(times):  # words the whole file got wrong: between their neighbours
        if t is None:
            before = max((k for k in known if k[0] < i), default=known[0])
            after = min((k for k in known if k[0] > i), default=known[-1])
            t = before[1] if after[0] == before[0] else \
                before[1] + (after[1] - before[1]) * (i - before[0]) / (after[0] - before[0])
        out.append(t)
    return out


def errors_near_cuts(reference: str, times: list[float], hypothesis: str, cut: float, window: float) -> int:
    """Word errors (jiwer's alignment, normalised as everywhere) within `window` s of a cut."""
    import jiwer

    from tests.support.speech import normalize

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not hyp:
        return len(ref.split())
    count = 0
    for c in jiwer.process_words(ref, hyp).alignments[0]:
        if c.type == "equal":
            continue
        t = times[min(c.ref_start_idx, len(times) - 1)]
        if abs(t - round(t / cut) * cut) <= window and round(t / cut) > 0:
            count += (c.hyp_end_idx - c.hyp_start_idx) if c.type == "insert" else (c.ref_end_idx - c.ref_start_idx)
    return count


def run_session(name, audio, reference, cuts, engine, settings, chunk_options, session_options):
    """Whole, naive and repaired transcripts of one session at each cut length, with timings."""
    from tests.support.speech import word_error_rate
    from transcription.audio import SAMPLE_RATE, Audio
    from transcription.chunk import transcribe_chunk
    from transcription.combine import combine_chunks
    from transcription.layout import parse_chunk_key
    from transcription.repair import repair_boundaries

    t0 = time.perf_counter()
    whole = transcribe_chunk(audio, session_options, engine=engine, settings=settings)
    whole_wall = time.perf_counter() - t0
    ref = reference if reference is not None else whole.text
    timed = transcribe_chunk(audio, session_options.model_copy(update={"word_timestamps": True}), engine=engine,
                             settings=settings)
    times = reference_times(ref, timed)
    words = len(times)
    window = settings.boundary_window_s
    out = {"name": name, "audio_s": round(audio.duration, 2), "reference_words": words,
           "whole_wall_s": round(whole_wall, 2), "cuts": {}}
    for cut in cuts:
        n = round(cut * SAMPLE_RATE)
        pieces = [Audio(audio.samples[i:i + n], "wav") for i in range(0, len(audio.samples), n)]
        t0 = time.perf_counter()
        chunks = [transcribe_chunk(p, chunk_options, chunk=parse_chunk_key(f"sessions/{name}/chunks/{i}.wav"),
                                   engine=engine, settings=settings) for i, p in enumerate(pieces)]
        chunk_wall = time.perf_counter() - t0
        naive = combine_chunks(name, chunks)
        t0 = time.perf_counter()
        repaired = repair_boundaries(naive, lambda e, pieces=pieces: pieces[e.index], session_options,
                                     engine=engine, settings=settings)
        repair_wall = time.perf_counter() - t0
        out["cuts"][str(cut)] = row = {
            "whole_wer": round(word_error_rate(ref, whole.text), 4),
            "naive_wer": round(word_error_rate(ref, naive.text), 4),
            "repaired_wer": round(word_error_rate(ref, repaired.text), 4),
            "extra_audio_pct": round(100 * repaired.repair["extra_audio_s"] / audio.duration, 1),
            "extra_wall_pct": round(100 * repair_wall / chunk_wall, 1),
            "whole_wer_near_cuts": round(errors_near_cuts(ref, times, whole.text, cut, window) / words, 4),
            "naive_wer_near_cuts": round(errors_near_cuts(ref, times, naive.text, cut, window) / words, 4),
            "repaired_wer_near_cuts": round(errors_near_cuts(ref, times, repaired.text, cut, window) / words, 4),
            "boundaries": repaired.repair["boundaries_repaired"],
            "chunk_wall_s": round(chunk_wall, 2),
            "repair_wall_s": round(repair_wall, 2),
            "naive_text": naive.text,
            "repaired_text": repaired.text,
        }
        print(f"  {name} cut {cut:g}s: whole {row['whole_wer']:.3f} naive {row['naive_wer']:.3f} "
              f"repaired {row['repaired_wer']:.3f} (near cuts: naive {row['naive_wer_near_cuts']:.3f} "
              f"repaired {row['repaired_wer_near_cuts']:.3f})", file=sys.stderr)
    out["whole_text"] = whole.text
    return out


def pooled(sessions: list[dict], cut: str) -> dict[str, float]:
    """WERs weighted by reference words (errors over words), the rest summed over the sessions."""
    words = sum(s["reference_words"] for s in sessions)
    audio = sum(s["audio_s"] for s in sessions)
    rows = [(s, s["cuts"][cut]) for s in sessions]

    def wer(k: str) -> float:
        return round(sum(r[k] * s["reference_words"] for s, r in rows) / words, 4)

    chunk_wall = sum(r["chunk_wall_s"] for _, r in rows)
    return {
        "whole_wer": wer("whole_wer"),
        "naive_wer": wer("naive_wer"),
        "repaired_wer": wer("repaired_wer"),
        "whole_wer_near_cuts": wer("whole_wer_near_cuts"),
        "naive_wer_near_cuts": wer("naive_wer_near_cuts"),
        "repaired_wer_near_cuts": wer("repaired_wer_near_cuts"),
        "extra_audio_pct": round(sum(r["extra_audio_pct"] * s["audio_s"] for s, r in rows) / audio, 1),
        "extra_wall_pct": round(100 * sum(r["repair_wall_s"] for _, r in rows) / chunk_wall, 1),
        "boundaries": sum(r["boundaries"] for _, r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="real recordings (any supported container)")
    parser.add_argument("--cuts", default="5,10,30", help="chunk lengths in seconds")
    parser.add_argument("--window", type=float, default=None, help="BOUNDARY_WINDOW_S (default: the setting)")
    parser.add_argument("--language", default="en", help="session language ('' to detect)")
    parser.add_argument("--chunk-words", action="store_true",
                        help="transcribe chunks with word timestamps (default: as production does, without)")
    parser.add_argument("--texts", type=int, default=len(TEXTS), help="how many generated sessions")
    args = parser.parse_args()

    from tests.support.speech import speak
    from transcription.chunk import load_audio
    from transcription.engines import load_engine
    from transcription.options import TranscribeOptions
    from transcription.settings import get_settings

    settings = get_settings()
    update: dict[str, object] = {"boundary_repair": True}
    if args.window is not None:
        update["boundary_window_s"] = args.window
    settings = settings.model_copy(update=update)
    cuts = [float(c) if "." in c else int(c) for c in args.cuts.split(",")]
    engine = load_engine(settings)
    session_options = TranscribeOptions(language=args.language or None)
    chunk_options = session_options.model_copy(update={"word_timestamps": args.chunk_words})

    generated = []
    for i, text in enumerate(TEXTS[:args.texts]):
        generated.append(run_session(f"text{i}", load_audio(speak(text), settings), text, cuts, engine, settings,
                                     chunk_options, session_options))
    recordings = {}
    for path in args.files:
        recordings[str(path)] = run_session(path.stem, load_audio(path, settings), None, cuts, engine, settings,
                                            chunk_options, session_options)

    result: dict[str, object] = {str(c): pooled(generated, str(c)) for c in cuts} if generated else {}
    header = ["cut_s", *(label for _, label in COLUMNS)]
    if generated:
        audio_s = sum(s["audio_s"] for s in generated)
        print_table(f"generated speech: {len(generated)} sessions, {audio_s:.0f} s, window "
                    f"{settings.boundary_window_s:g} s each side (near = within the window of a cut)", header,
                    [[f"{c:g}", *(result[str(c)][k] for k, _ in COLUMNS)] for c in cuts])
    if recordings:
        result["recordings"] = {}
        for path, s in recordings.items():
            result["recordings"][path] = {c: {k: v for k, v in r.items() if not k.endswith("_text")}
                                          for c, r in s["cuts"].items()}
            print_table(f"{path} ({s['audio_s']:.0f} s; reference: the whole file transcribed at once)", header,
                        [[c, *(r[k] for k, _ in COLUMNS)] for c, r in s["cuts"].items()])
    result["window_s"] = settings.boundary_window_s
    result["chunk_word_timestamps"] = args.chunk_words
    result["engine"] = {"name": engine.name, "model": engine.model_name, "compute_type": engine.compute_type}
    result["sessions"] = generated + list(recordings.values())
    write_result("boundaries", result)


if __name__ == "__main__":
    main()
