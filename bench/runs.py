"""A session's backlog on the queued path, in runs, against the whole file and chunk by chunk, in one run.

    python -m bench.runs [--copies 4] [--cuts 5,10,30] [--out runs]

Real speech: pyannote's sample call (30 s, two people on the phone, with its human transcript)
concatenated `--copies` times (2 min by default), cut every 5, 10 and 30 s regardless of words, as a
recorder does. For each cut length, side by side, interleaved (whole, queued, whole again: a change in
the shared machine's load hits both sides alike):

- `whole_engine_s`: the whole file (the samples the worker decodes from the chunks' WAVs: Whisper
  turns on one 16-bit step here) transcribed in this process as the worker transcribes a run
  (`transcribe_audio` with the worker's settings, the guards included; mean of the two passes), so
  the ratio compares the same work (the raw engine alone does less: the guards decode again where
  they fire);
- `chunked_engine_s`: every chunk transcribed alone the same way (what the queued path cost before
  runs, before boundary repair re-transcribed the cuts on top);
- the queued backlog, two ways, through a real `stt-router worker` on moto's SQS and S3 (the chunks
  uploaded first, the server down): `router` (one `transcribe_chunk` message per chunk, as the
  router queues them: the first takes the backlog as a run, the others find their transcripts and
  skip) and `drain` (the drain's one run task per session). For each: `engine_s` (the worker's own
  engine time), `engine_ratio` = engine_s / whole_engine_s (goal <= 1.1), `wall_s` (first message
  sent to the last task finished) and `throughput_ratio` = whole_engine_s / wall_s (goal >= 0.95);
- WER against the call's human transcript: whole file, chunks combined naively, and the session
  transcript the queued path produced (combined as shipped: no repair inside a run).

Writes bench/results/runs.json (`--out`: another name; `--copies 1 --cuts 5,10 --out runs_call`
is the call once, speech that never repeats, where a backlog's run is the whole file).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench.common import print_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4, help="copies of the 30 s call (4: 2 min)")
    parser.add_argument("--cuts", default="5,10,30", help="chunk lengths in seconds")
    parser.add_argument("--out", default="runs", help="result name: bench/results/<out>.json")
    args = parser.parse_args()
    cuts = [float(c) for c in args.cuts.split(",")]

    os.environ.setdefault("MODEL_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "models"))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    import numpy as np

    from tasks.drain import run_drain
    from tests.support.real_speech import concat, load_sample, wav_bytes, wer
    from tests.support.services import MotoServer, unique
    from tests.support.worker import producer, settings_for, start_worker, worker_env
    from transcription import layout, sessions
    from transcription.audio import Audio
    from transcription.chunk import load_audio, transcribe_audio
    from transcription.combine import combine_chunks
    from transcription.options import TranscribeOptions
    from transcription.transcript import ChunkTranscript

    # --- setup: speech, moto, a worker (none of it timed) -----------------------------------
    call = load_sample()
    rec = concat([call] * args.copies)
    reference = rec.reference_text
    moto = MotoServer()
    os.environ.update(moto.env())
    env = worker_env(moto, "sqs", VISIBILITY_TIMEOUT_S="900", TASK_TIME_LIMIT_S="600", LEASE_TTL_S="60",
                     RUN_MAX_S="600", BOUNDARY_REPAIR="true")
    bucket = unique("bench-runs")
    env["S3_BUCKET"] = bucket
    settings = settings_for(env)
    from transcription.engines import load_engine

    engine = load_engine(settings)
    options = TranscribeOptions(language="en")
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    app = producer(env)

    def transcribed(samples: np.ndarray) -> tuple[float, str]:
        """The shipped transcription of one piece in this process (`transcribe_audio`, with the worker's
        settings: the hallucination and speech-coverage guards included, as in the worker's run)."""
        t0 = time.perf_counter()
        result = transcribe_audio(Audio(samples, "wav"), options, engine=engine, settings=settings)
        return time.perf_counter() - t0, result.text

    def upload(sid: str, pieces: list[np.ndarray]) -> list[str]:
        keys = []
        for i, p in enumerate(pieces):
            keys.append(f"sessions/{sid}/chunks/{i}.wav")
            s3.put_object(Bucket=bucket, Key=keys[-1], Body=wav_bytes(p))
        s3.put_object(Bucket=bucket, Key=layout.manifest_key(sid),
                      Body=json.dumps({"total_chunks": len(pieces), "language": "en"}).encode())
        return keys

    def worker_engine_s(sid: str, n: int) -> float:
        from transcription import storage

        return sum(ChunkTranscript.model_validate(storage.get_json(
            bucket, layout.chunk_transcript_key(sid, i), settings=settings)).processing_s or 0.0 for i in range(n))

    def wait_combined(sid: str) -> None:
        from tests.support.services import wait_for
        from transcription import storage

        wait_for(lambda: storage.exists(bucket, layout.session_transcript_key(sid, "json"), settings=settings), 900,
                 what=f"session {sid}")

    transcribed(rec.samples[:16000 * 5])  # warm-up
    worker = start_worker(env, "bench-runs-worker")
    out: dict[str, dict[str, object]] = {}
    try:
        warm = upload(unique("warm"), [rec.samples[:16000 * 5]])
        app.send_task("tasks.transcribe_chunk", args=[bucket, warm[0]], queue=settings.transcribe_queue).get(
            timeout=300)
        for cut in cuts:
            n = int(-(-rec.duration // cut))
            pieces = [rec.samples[round(i * cut * 16000):round((i + 1) * cut * 16000)] for i in range(n)]
            # the samples the worker decodes from the uploaded WAVs: Whisper on this call turns on a
            # single 16-bit step (0.136 or 0.296 for the same speech), so both sides get the same input
            decoded = [load_audio(wav_bytes(p), settings).samples for p in pieces]
            heard = np.concatenate(decoded)
            whole_a, whole_text = transcribed(heard)
            # the router's way: one message per chunk, in order
            sid_r = unique(f"router-{cut:g}")
            keys = upload(sid_r, pieces)
            t0 = time.time()
            pending = [app.send_task("tasks.transcribe_chunk", args=[bucket, k], queue=settings.transcribe_queue)
                       for k in keys]
            results = [r.get(timeout=900) for r in pending]
            router_wall = max(r["finished_at"] for r in results) - t0
            router_engine = worker_engine_s(sid_r, n)
            # the drain's way: one run task for the session
            sid_d = unique(f"drain-{cut:g}")
            upload(sid_d, pieces)
            t0 = time.time()
            chord = run_drain(bucket, settings=settings, celery=app)["chords"][sid_d]
            app.AsyncResult(chord).get(timeout=900)  # the chord's combine: after the run task returned
            drain_wall = time.time() - t0
            drain_engine = worker_engine_s(sid_d, n)
            whole_b, _ = transcribed(heard)
            whole = (whole_a + whole_b) / 2
            # before runs: each chunk transcribed alone
            chunk_times, texts = zip(*(transcribed(p) for p in decoded), strict=True)
            wait_combined(sid_r)
            session = sessions.stored_session_transcript(bucket, sid_r, settings=settings)
            naive = combine_chunks("naive", [ChunkTranscript(
                session_id="naive", chunk_index=i, duration=len(p) / 16000, engine="x", model="x",
                segments=[{"start": 0.0, "end": len(p) / 16000, "text": t}]) for i, (p, t) in
                enumerate(zip(pieces, texts, strict=True))])
            out[f"{cut:g}"] = {
                "chunks": n,
                "whole_engine_s": round(whole, 2),
                "chunked_engine_s": round(sum(chunk_times), 2),
                "chunked_ratio": round(sum(chunk_times) / whole, 3),
                "router": {"engine_s": round(router_engine, 2), "engine_ratio": round(router_engine / whole, 3),
                           "wall_s": round(router_wall, 2), "throughput_ratio": round(whole / router_wall, 3),
                           "runs": sorted({tuple(r["run"]) for r in results if r.get("run")})},
                "drain": {"engine_s": round(drain_engine, 2), "engine_ratio": round(drain_engine / whole, 3),
                          "wall_s": round(drain_wall, 2), "throughput_ratio": round(whole / drain_wall, 3)},
                "whole_wer": round(wer(reference, whole_text), 3),
                "naive_wer": round(wer(reference, naive.text), 3),
                "session_wer": round(wer(reference, session.text if session else ""), 3),
            }
            print(f"cut {cut:g} s: {json.dumps(out[f'{cut:g}'])}", flush=True)
    finally:
        worker.stop()
        moto.stop()

    rows = []
    for cut, r in out.items():
        router, drain = r["router"], r["drain"]
        assert isinstance(router, dict) and isinstance(drain, dict)
        rows.append([cut, r["chunks"], r["whole_engine_s"], r["chunked_ratio"], router["engine_ratio"],
                     router["throughput_ratio"], drain["engine_ratio"], drain["throughput_ratio"], r["whole_wer"],
                     r["naive_wer"], r["session_wer"]])
    print_table(f"a session backlog in runs: {rec.duration:.0f} s of real speech, engine {engine.name}",
                ["cut_s", "chunks", "whole_s", "chunked/whole", "router: engine/whole", "router: whole/wall",
                 "drain: engine/whole", "drain: whole/wall", "whole_wer", "naive_wer", "session_wer"], rows)
    write_result(args.out, {"audio_s": round(rec.duration, 1), "recording": f"pyannote sample.wav x{args.copies}",
                            "engine": f"{engine.name} {engine.model_name}", "run_max_s": settings.run_max_s,
                            "cuts": out, "worker": "stt-router worker, prefork, concurrency 1, SQS and S3 on moto"})


if __name__ == "__main__":
    main()
