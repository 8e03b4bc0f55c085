"""Word errors at chunk boundaries: whole file vs chunks combined naively vs repaired, in one run.

    python -m bench.boundaries [FILE...] [--reference REF]... [--sample-pad S] [--cuts 5,10,30]
                               [--window 3] [--texts N] [--shuffled] [--out NAME]

Generated sessions are long texts spoken by espeak-ng (the text is the reference); each FILE is a
real recording, scored against its human reference when one is given (`--reference`, in the order
of the files: plain text, or NIST `.stm` whose utterance texts are joined in time order). Without
one its WER columns say "no reference" (None in the JSON) instead of scoring against the engine's own
whole-file output; the agreement with that output is kept apart as `*_vs_whole`. `--sample-pad S`
adds pyannote's real two-person call (`sample.wav`, 30 s) with S s of silence appended and its
human transcript (`sample.stm`): Whisper's repeated-tail trigger, with a short final chunk at every
cut length. `whole_raw_wer` is the whole file through the raw engine (no hallucination guard).
Every session is cut at fixed lengths regardless of words and each chunk is transcribed on its own,
as the server and the worker
do: once with context carry-over (`CHUNK_CONTEXT`: each chunk prompted with the previous chunk's
transcript, as on the direct path where chunks arrive in order) and once without (a queued chunk
whose predecessor is not transcribed yet; `--shuffled` adds chunks arriving in a random order, each
with the nearest earlier transcript that exists by then). The chunks are combined naively and with
repair as shipped (runs of chunks shorter than `BOUNDARY_REGROUP_BELOW_S` transcribed again as one
piece, a window at every other boundary), with windows only (regrouping off), and regrouped in short
pieces (`--short-span`, to show the joints a session longer than `BOUNDARY_REGROUP_SPAN_S` gets).
Every result is compared with the reference by the tests' normalised word error rate. The extra
compute of repair is given as extra audio seconds transcribed and as extra engine wall time, both
in percent of the chunks' own transcription.

Writes bench/results/boundaries.json:
    {"<cut seconds>": {"whole_wer": ..., "naive_wer": ..., "repaired_wer": ..., "extra_audio_pct": ...,
                       (the shipped defaults: chunks with context, repair with regrouping)
                       "naive_nocontext_wer": ..., "repaired_nocontext_wer": ..., "repaired_windows_wer": ...,
                       "windows_extra_audio_pct": ..., "windows_extra_wall_pct": ..., ...},
     "recordings": {"<file>": {"<cut seconds>": {...}}}, "sessions": [...], "window_s": ..., "machine": ...}
WERs per cut length are pooled over the generated sessions (weighted by reference words).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

from bench.common import print_table, write_result

# Plain prose, 30-40 s each: no numbers, dates, names or British spellings Whisper writes another
# way. The first five were kept for a whole-file transcription within 2% of the text (checked once, on
# the whole file only), so that what the cut lengths change is what the cuts cause; the last two were
# added for more words per run (whole-file WER 2.2% and 4.3%: Whisper's own errors, which every
# column shares).
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
    "The museum in the old part of the city reopened after a long renovation. Visitors can now walk through "
    "bright galleries that show paintings, sculptures and photographs from many different periods. A new room on "
    "the top floor explains how the building itself was made, with drawings and models of the original design. "
    "On the first Sunday of every month the entrance is free, and guides lead small groups through the "
    "collection. The museum also has a quiet garden with benches, where people can rest and talk about what they "
    "have seen.",
    "The new bus line connects the university with the main train station. Buses leave every ten minutes during "
    "the day and every half hour in the evening. Students no longer have to walk through the rain to reach their "
    "classes, and many of them say that the trip is faster and more comfortable than before. The city plans to "
    "add more stops next year, so that people who live in the northern neighborhoods can also use the line. "
    "Tickets can be bought on a mobile phone or from machines at each stop.",
]


# (key, label): the printed table; every WER key is pooled over the sessions by reference words
COLUMNS = [("whole_wer", "whole"), ("whole_raw_wer", "whole_raw"), ("naive_wer", "naive"), ("repaired_wer", "repaired"),
           ("repaired_wer_near_cuts", "rep_near"),
           ("naive_nocontext_wer", "naive_noctx"), ("repaired_nocontext_wer", "rep_noctx"),
           ("repaired_windows_wer", "rep_windows"), ("repaired_short_span_wer", "rep_short_span"),
           ("extra_audio_pct", "extra_audio_%"), ("extra_wall_pct", "extra_wall_%"),
           ("windows_extra_audio_pct", "win_audio_%"), ("windows_extra_wall_pct", "win_wall_%"),
           ("context_dropped", "ctx_dropped")]
WER_KEYS = ["whole_wer", "whole_raw_wer", "naive_wer", "repaired_wer", "whole_wer_near_cuts", "naive_wer_near_cuts",
            "repaired_wer_near_cuts", "naive_nocontext_wer", "repaired_nocontext_wer", "repaired_windows_wer",
            "repaired_short_span_wer", "naive_shuffled_wer", "repaired_shuffled_wer"]
PCT_KEYS = [("extra_audio_pct", "extra_audio_s", "audio_s"), ("extra_wall_pct", "repair_wall_s", "chunk_wall_s"),
            ("windows_extra_audio_pct", "windows_extra_audio_s", "audio_s"),
            ("windows_extra_wall_pct", "windows_wall_s", "chunk_wall_s")]
SHUFFLE_SEED = 7


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


def cell(key: str, value: object) -> object:
    """Percentages as whole numbers, WERs with three decimals, a WER without a reference as "no reference"."""
    if value is None and key.endswith(("_wer", "_near_cuts")):
        return NO_REFERENCE
    if isinstance(value, float):
        return f"{value:.0f}" if key.endswith("_pct") else f"{value:.3f}"
    return value


def transcribe_chunks(name, pieces, options, engine, settings, order=None):
    """Each chunk on its own; with `order`, in that order, each with the nearest earlier transcript
    that exists by then as its context (None: no context at all). Returns transcripts and wall time."""
    from transcription.chunk import transcribe_audio
    from transcription.context import Context
    from transcription.layout import parse_chunk_key

    done: dict[int, object] = {}
    t0 = time.perf_counter()
    for i in order if order is not None else range(len(pieces)):
        earlier = [j for j in done if j < i] if order is not None else []
        context = Context(done[max(earlier)].text, max(earlier)) if earlier else None
        done[i] = transcribe_audio(pieces[i], options, chunk=parse_chunk_key(f"sessions/{name}/chunks/{i}.wav"),
                                   engine=engine, settings=settings, context=context)
    return [done[i] for i in range(len(pieces))], time.perf_counter() - t0


def repaired(naive, pieces, options, engine, settings):
    from transcription.repair import repair_boundaries

    t0 = time.perf_counter()
    out = repair_boundaries(naive, lambda e: pieces[e.index], options, engine=engine, settings=settings)
    return out, time.perf_counter() - t0


def read_reference(path: Path) -> str:
    """A reference transcript: NIST STM (utterance texts in time order) or plain text."""
    from tests.support.real_speech import read_stm

    if path.suffix.lower() == ".stm":
        return " ".join(u.text for u in sorted(read_stm(path), key=lambda u: u.start))
    return " ".join(path.read_text().split())


NO_REFERENCE = "no reference"


def scored(row: dict, reference: str | None, whole_text: str, texts: dict[str, str]) -> None:
    """WERs against the human reference only: without one the WER keys say `None` and each text's
    agreement with the whole-file output goes to `<key>_vs_whole` instead (both kept when there is one)."""
    from tests.support.speech import word_error_rate

    for key, text in texts.items():
        if reference is None:
            row[key] = None
        row[key.replace("_wer", "_vs_whole")] = round(word_error_rate(whole_text, text), 4)


def run_session(name, audio, reference, cuts, engine, settings, chunk_options, session_options, *,
                short_span, shuffled):
    """Whole, naive and repaired transcripts of one session at each cut length, with timings."""
    from tests.support.speech import word_error_rate
    from transcription.audio import SAMPLE_RATE, Audio
    from transcription.chunk import transcribe_audio
    from transcription.combine import combine_chunks

    t0 = time.perf_counter()
    whole = transcribe_audio(audio, session_options, engine=engine, settings=settings)
    whole_wall = time.perf_counter() - t0
    raw = transcribe_audio(audio, session_options, engine=engine,
                           settings=settings.model_copy(update={"hallucination_guard": False}))
    ref = reference if reference is not None else whole.text
    timed = transcribe_audio(audio, session_options.model_copy(update={"word_timestamps": True}), engine=engine,
                             settings=settings)
    times = reference_times(ref, timed)
    words = len(times)
    window = settings.boundary_window_s
    windows_only = settings.model_copy(update={"boundary_regroup_below_s": 0.0})
    short = settings.model_copy(update={"boundary_regroup_span_s": short_span})
    out = {"name": name, "audio_s": round(audio.duration, 2), "reference_words": words,
           "reference": "human" if reference is not None else NO_REFERENCE,
           "whole_wall_s": round(whole_wall, 2), "cuts": {}}
    for cut in cuts:
        n = round(cut * SAMPLE_RATE)
        pieces = [Audio(audio.samples[i:i + n], "wav") for i in range(0, len(audio.samples), n)]
        with_context, chunk_wall = transcribe_chunks(name, pieces, chunk_options, engine, settings,
                                                     order=list(range(len(pieces))))
        without, _ = transcribe_chunks(name, pieces, chunk_options, engine, settings)
        naive = combine_chunks(name, with_context)
        naive_nc = combine_chunks(name, without)
        rep, repair_wall = repaired(naive, pieces, session_options, engine, settings)
        if rep.repair["regrouped"] == [[0, len(pieces) - 1]]:
            rep_nc = rep  # one piece replaced every chunk's words: the chunk transcripts no longer matter
        else:
            rep_nc, _ = repaired(naive_nc, pieces, session_options, engine, settings)
        regrouping = cut < settings.boundary_regroup_below_s and len(pieces) > 1
        rep_win, windows_wall = repaired(naive, pieces, session_options, engine, windows_only) \
            if regrouping else (rep, repair_wall)
        rep_short = repaired(naive, pieces, session_options, engine, short)[0] if regrouping else rep
        dropped = sum(1 for c in with_context if "context_dropped" in c.options)
        out["cuts"][str(cut)] = row = {
            "whole_wer": round(word_error_rate(ref, whole.text), 4),
            "whole_raw_wer": round(word_error_rate(ref, raw.text), 4),
            "naive_wer": round(word_error_rate(ref, naive.text), 4),
            "repaired_wer": round(word_error_rate(ref, rep.text), 4),
            "naive_nocontext_wer": round(word_error_rate(ref, naive_nc.text), 4),
            "repaired_nocontext_wer": round(word_error_rate(ref, rep_nc.text), 4),
            "repaired_windows_wer": round(word_error_rate(ref, rep_win.text), 4),
            "repaired_short_span_wer": round(word_error_rate(ref, rep_short.text), 4),
            "whole_wer_near_cuts": round(errors_near_cuts(ref, times, whole.text, cut, window) / words, 4),
            "naive_wer_near_cuts": round(errors_near_cuts(ref, times, naive.text, cut, window) / words, 4),
            "repaired_wer_near_cuts": round(errors_near_cuts(ref, times, rep.text, cut, window) / words, 4),
            "extra_audio_s": rep.repair["extra_audio_s"],
            "windows_extra_audio_s": rep_win.repair["extra_audio_s"],
            "boundaries": rep.repair["boundaries_repaired"],
            "regrouped": rep.repair["regrouped"],
            "chunks": len(pieces),
            "context_dropped": dropped,
            "context_dropped_reasons": [c.options["context_dropped"] for c in with_context
                                        if "context_dropped" in c.options],
            "chunk_wall_s": round(chunk_wall, 2),
            "repair_wall_s": round(repair_wall, 2),
            "windows_wall_s": round(windows_wall, 2),
            "naive_text": naive.text,
            "repaired_text": rep.text,
            "naive_nocontext_text": naive_nc.text,
            "repaired_nocontext_text": rep_nc.text,
            "repaired_windows_text": rep_win.text,
            "hallucination_guard": {k: v for c in with_context for k, v in c.options.items()
                                    if k.startswith("hallucination")},
            "repair_rejected": rep.repair.get("rejected", []),
        }
        scored(row, reference, whole.text, {"whole_raw_wer": raw.text, "naive_wer": naive.text,
                                             "repaired_wer": rep.text, "naive_nocontext_wer": naive_nc.text,
                                             "repaired_nocontext_wer": rep_nc.text,
                                             "repaired_windows_wer": rep_win.text,
                                             "repaired_short_span_wer": rep_short.text})
        if reference is None:
            for k in ("whole_wer", "whole_wer_near_cuts", "naive_wer_near_cuts", "repaired_wer_near_cuts"):
                row[k] = None
        for k, num, den in PCT_KEYS:  # this session's own (the pooled ones are computed from the seconds)
            row[k] = round(100 * row[num] / (row[den] if den in row else out[den]), 1)
        if shuffled:
            order = list(range(len(pieces)))
            random.Random(f"{SHUFFLE_SEED}/{name}/{cut}").shuffle(order)
            arrived, _ = transcribe_chunks(name, pieces, chunk_options, engine, settings, order=order)
            naive_sh = combine_chunks(name, arrived)
            row["naive_shuffled_wer"] = round(word_error_rate(ref, naive_sh.text), 4)
            row["repaired_shuffled_wer"] = round(
                word_error_rate(ref, repaired(naive_sh, pieces, session_options, engine, settings)[0].text), 4)
        print(f"  {name} cut {cut:g}s: " + " ".join(
            f"{k.removesuffix('_wer')} {cell(k, row[k])}" for k in
            ("whole_wer", "whole_raw_wer", "naive_wer", "repaired_wer", "naive_nocontext_wer",
             "repaired_nocontext_wer", "repaired_windows_wer")), file=sys.stderr)
    out["whole_text"] = whole.text
    return out


def pooled(sessions: list[dict], cut: str) -> dict[str, float]:
    """WERs weighted by reference words (errors over words), percentages of summed seconds, counts summed."""
    words = sum(s["reference_words"] for s in sessions)
    rows = [(s, s["cuts"][cut]) for s in sessions]
    out: dict[str, float] = {}
    for k in WER_KEYS:
        if all(k in r for _, r in rows):
            out[k] = round(sum(r[k] * s["reference_words"] for s, r in rows) / words, 4)
    for k, num, den in PCT_KEYS:
        total = sum((s if den in s else r)[den] for s, r in rows)
        out[k] = round(100 * sum(r[num] for _, r in rows) / total, 1)
    for k in ("boundaries", "chunks", "context_dropped"):
        out[k] = sum(r[k] for _, r in rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="real recordings (any supported container)")
    parser.add_argument("--reference", action="append", type=Path, default=[],
                        help="the human reference of each FILE in order (text, or .stm)")
    parser.add_argument("--sample-pad", type=float, default=None, metavar="S",
                        help="add pyannote's sample call with S s of silence appended, scored against sample.stm")
    parser.add_argument("--out", default="boundaries", help="result file name in bench/results (without .json)")
    parser.add_argument("--cuts", default="5,10,30", help="chunk lengths in seconds")
    parser.add_argument("--window", type=float, default=None, help="BOUNDARY_WINDOW_S (default: the setting)")
    parser.add_argument("--short-span", type=float, default=20.0,
                        help="BOUNDARY_REGROUP_SPAN_S of the short-span column (pieces with joints)")
    parser.add_argument("--language", default="en", help="session language ('' to detect)")
    parser.add_argument("--chunk-words", action="store_true",
                        help="transcribe chunks with word timestamps (default: as production does, without)")
    parser.add_argument("--shuffled", action="store_true",
                        help="also chunks arriving in a random order, each with the nearest earlier context")
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
    kw = {"short_span": args.short_span, "shuffled": args.shuffled}

    started = time.perf_counter()
    generated = []
    for i, text in enumerate(TEXTS[:args.texts]):
        generated.append(run_session(f"text{i}", load_audio(speak(text), settings), text, cuts, engine, settings,
                                     chunk_options, session_options, **kw))
    if len(args.reference) > len(args.files):
        parser.error("more --reference than files")
    recordings = {}
    for i, path in enumerate(args.files):
        reference = read_reference(args.reference[i]) if i < len(args.reference) else None
        # a session id that is valid and unique whatever the file is called ("a+b" and "a-b", "..", long names)
        name = f"file{i}-{re.sub(r'[^A-Za-z0-9_-]', '-', path.stem)[:100]}"
        recordings[str(path)] = run_session(name, load_audio(path, settings), reference, cuts, engine,
                                            settings, chunk_options, session_options, **kw)
    if args.sample_pad is not None:
        from tests.support.real_speech import load_sample
        from transcription.audio import Audio

        call = load_sample().pad(after_s=args.sample_pad)
        label = f"sample.wav+{args.sample_pad:g}s"
        recordings[label] = run_session(f"sample-pad{args.sample_pad:g}", Audio(call.samples, "wav"),
                                        call.reference_text, cuts, engine, settings, chunk_options,
                                        session_options, **kw)

    result: dict[str, object] = {str(c): pooled(generated, str(c)) for c in cuts} if generated else {}
    header = ["cut_s", *(label for _, label in COLUMNS)]
    if generated:
        audio_s = sum(s["audio_s"] for s in generated)
        print_table(f"generated speech: {len(generated)} sessions, {audio_s:.0f} s, window "
                    f"{settings.boundary_window_s:g} s each side, regrouped below "
                    f"{settings.boundary_regroup_below_s:g} s (near = within the window of a cut)", header,
                    [[f"{c:g}", *(cell(k, result[str(c)].get(k, "-")) for k, _ in COLUMNS)] for c in cuts])
        if args.shuffled:
            print_table("chunks arriving in a random order (nearest earlier context)",
                        ["cut_s", "naive_shuffled", "rep_shuffled"],
                        [[f"{c:g}", result[str(c)]["naive_shuffled_wer"], result[str(c)]["repaired_shuffled_wer"]]
                         for c in cuts])
    if recordings:
        result["recordings"] = {}
        for path, s in recordings.items():
            result["recordings"][path] = {c: {k: v for k, v in r.items() if not k.endswith("_text")}
                                          for c, r in s["cuts"].items()}
            result["recordings"][path]["reference"] = s["reference"]
            print_table(f"{path} ({s['audio_s']:.0f} s; reference: {s['reference']})", header,
                        [[c, *(cell(k, r.get(k, "-")) for k, _ in COLUMNS)] for c, r in s["cuts"].items()])
    result["window_s"] = settings.boundary_window_s
    result["regroup_below_s"] = settings.boundary_regroup_below_s
    result["regroup_span_s"] = settings.boundary_regroup_span_s
    result["short_span_s"] = args.short_span
    result["chunk_context"] = settings.chunk_context
    result["chunk_word_timestamps"] = args.chunk_words
    result["shuffled"] = args.shuffled
    result["engine"] = {"name": engine.name, "model": engine.model_name, "compute_type": engine.compute_type}
    result["bench_wall_s"] = round(time.perf_counter() - started, 1)
    result["sessions"] = generated + list(recordings.values())
    write_result(args.out, result)


if __name__ == "__main__":
    main()
