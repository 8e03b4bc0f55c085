"""The queued path against the raw engine, on the same chunks, in one run.

    python -m bench.queued [--chunks N] [--block B]

Queued: chunks in S3 (moto's server), `tasks.transcribe_chunk` on SQS (moto), one real
`stt-router worker` (prefork, concurrency 1, the same model), transcripts written to S3. Raw: the
same engine settings called in this process on the same decoded audio. The chunks go in blocks of
B, each block through the raw engine, then the queue, then the raw engine again, so a change in
the machine's load (other jobs on a shared machine) hits both sides alike.

- `throughput_ratio`: raw engine time / queued wall time, summed over the blocks (1.0 = free).
- `engine_share`: the worker's own engine time / queued wall time: the same ratio measured inside
  the worker, immune to load drift between the two sides.
- `overhead_ms_p50` / `_p95`: per chunk, the wall time it added to the busy worker beyond its
  engine run (S3 reads and writes, decoding, the lease, the completion check, acknowledging, and
  fetching the next message; for a block's first chunk also publishing and delivery).

Writes bench/results/queued.json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.common import percentile, print_table, write_result

SPEEDS = (150, 135, 170)  # espeak-ng words per minute: distinct files from the same sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=12, help="chunks through each path")
    parser.add_argument("--block", type=int, default=4, help="chunks per raw/queued/raw block")
    args = parser.parse_args()

    os.environ.setdefault("MODEL_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "models"))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    from tests.support.services import MotoServer, unique
    from tests.support.speech import SENTENCES, speak
    from tests.support.worker import producer, settings_for, start_worker, worker_env
    from transcription.audio import decode_audio
    from transcription.engines import load_engine
    from transcription.options import TranscribeOptions

    # --- setup: files, moto, queues, a worker (none of it timed) ---------------------------
    files = [speak(SENTENCES[i % len(SENTENCES)], speed=SPEEDS[(i // len(SENTENCES)) % len(SPEEDS)])
             for i in range(args.chunks)]
    audios = [decode_audio(f) for f in files]
    audio_s = sum(a.duration for a in audios)
    moto = MotoServer()
    os.environ.update(moto.env())
    env = worker_env(moto, "sqs", VISIBILITY_TIMEOUT_S="300", TASK_TIME_LIMIT_S="240", LEASE_TTL_S="60",
                     RUN_MAX_S="600")  # as shipped: each delivery looks for a backlog after its chunk
    settings = settings_for(env)
    engine = load_engine(settings)
    options = TranscribeOptions()
    bucket = unique("bench")
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    keys = []
    for i, f in enumerate(files):
        keys.append(f"sessions/bench-{i:03d}/chunks/0.wav")
        s3.put_object(Bucket=bucket, Key=keys[-1], Body=f.read_bytes())
    s3.put_object(Bucket=bucket, Key="sessions/warmup/chunks/0.wav", Body=files[0].read_bytes())
    app = producer(env)

    def raw_pass(block: list[int]) -> list[float]:
        times = []
        for i in block:
            t0 = time.perf_counter()
            engine.transcribe(audios[i].samples, options)
            times.append(time.perf_counter() - t0)
        return times

    engine.transcribe(audios[0].samples, options)  # warm-up
    worker = start_worker(env, "bench-worker")
    raw = [0.0] * len(keys)
    results, queued_s, overheads = [], 0.0, []
    try:
        app.send_task("tasks.transcribe_chunk", args=[bucket, "sessions/warmup/chunks/0.wav"],
                      queue=settings.transcribe_queue).get(timeout=300)  # the worker's first inference
        for b in range(0, len(keys), args.block):
            block = list(range(b, min(b + args.block, len(keys))))
            before = raw_pass(block)
            t0 = time.time()
            pending = [app.send_task("tasks.transcribe_chunk", args=[bucket, keys[i]],
                                     queue=settings.transcribe_queue) for i in block]
            done = sorted((r.get(timeout=600) for r in pending), key=lambda r: r["finished_at"])
            queued_s += done[-1]["finished_at"] - t0
            previous = t0
            for r in done:
                overheads.append((r["finished_at"] - previous - r.get("engine_s", 0.0)) * 1000)
                previous = r["finished_at"]
            results += done
            for i, x, y in zip(block, before, raw_pass(block), strict=True):
                raw[i] = (x + y) / 2
    finally:
        worker.stop()
        moto.stop()
    if any(r["status"] != "transcribed" for r in results):
        raise SystemExit(f"not every chunk was transcribed: {[r['status'] for r in results]}")

    raw_s = sum(raw)
    worker_engine_s = sum(r["engine_s"] for r in results)
    data = {
        "chunks": args.chunks,
        "block": args.block,
        "audio_s": round(audio_s, 1),
        "raw_engine_s": round(raw_s, 2),
        "queued_s": round(queued_s, 2),
        "worker_engine_s": round(worker_engine_s, 2),
        "throughput_ratio": round(raw_s / queued_s, 3),
        "engine_share": round(worker_engine_s / queued_s, 3),
        "overhead_ms_p50": round(percentile(overheads, 50), 1),
        "overhead_ms_p95": round(percentile(overheads, 95), 1),
        "broker": "SQS (moto server), result backend Redis, S3 (moto server)",
        "worker": "stt-router worker, prefork, concurrency 1, prefetch 1",
        "engine": f"{engine.name} {engine.model_name}",
    }
    print_table(f"queued path vs raw engine, {args.chunks} chunks, {audio_s:.0f} s of audio",
                ["path", "wall_s", "audio_x", "throughput_ratio", "engine_share", "overhead_ms_p50",
                 "overhead_ms_p95"],
                [["raw engine", data["raw_engine_s"], round(audio_s / raw_s, 2), 1.0, 1.0, 0.0, 0.0],
                 ["queued (SQS)", data["queued_s"], round(audio_s / queued_s, 2), data["throughput_ratio"],
                  data["engine_share"], data["overhead_ms_p50"], data["overhead_ms_p95"]]])
    write_result("queued", data)


if __name__ == "__main__":
    main()
