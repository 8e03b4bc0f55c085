"""The full system against the raw engine, per engine, on the same chunks, in one run.

    python -m bench.system [--chunks N] [--block B] [--engines faster-whisper,whisperx]

For each engine: moto's server (S3, SQS), a real `stt-router serve` and a real `stt-router worker`
with that engine, and the same engine loaded in this process. The chunks go in blocks of B, each
block through the raw engine, the direct path, the queued path, then the raw engine again, so a
change in the machine's load hits every side alike.

- direct: the chunk is put in S3 and the router Lambda's handler is called with the EventBridge event
  S3 would send; it probes `/health` and calls `/transcribe-s3`, which reads the chunk from S3,
  transcribes it and writes the transcript. Per chunk, `added_ms` = handler wall time - raw engine time.
- queued: `tasks.transcribe_chunk` on SQS, consumed by the worker, transcript written to S3.
- `throughput_ratio` = raw engine seconds / path wall seconds over the same chunks (1.0 = free).
- `rtf_x` = audio seconds / wall seconds; `wer` of the transcripts each path stored in S3.

Each engine runs in its own interpreter with its own moto. Writes bench/results/system.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import percentile, print_table, write_result

SPEEDS = (150, 135, 170)  # espeak-ng words per minute: distinct files from the same sentences
API_KEY = "bench-system-key"


def eventbridge_event(bucket: str, key: str, size: int, etag: str) -> dict:
    """What S3 sends through EventBridge for an upload (the router's production input)."""
    return {"version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": size, "etag": etag}}}


def run_engine(name: str, files: list[Path], texts: list[str], block: int, moto) -> dict[str, object]:
    from router_lambda.handler import handler
    from tests.support.services import VENV_BIN, ManagedProcess, free_port, unique, wait_for
    from tests.support.speech import word_error_rate
    from tests.support.worker import producer, settings_for, start_worker, worker_env
    from transcription import storage
    from transcription.audio import decode_audio
    from transcription.engines import load_engine
    from transcription.layout import chunk_transcript_key
    from transcription.options import TranscribeOptions
    from transcription.settings import get_settings
    from transcription.transcript import ChunkTranscript

    # --- setup (not timed): a bucket, the server, the worker, the raw engine -----------------
    bucket = unique("bench-system")
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    port = free_port()
    env = worker_env(moto, "sqs", ENGINE=name, S3_BUCKET=bucket, API_KEY=API_KEY, VISIBILITY_TIMEOUT_S="600",
                     TASK_TIME_LIMIT_S="300", LEASE_TTL_S="60", FAST_API_SERVER_URL=f"http://127.0.0.1:{port}",
                     ROUTER_REQUEST_TIMEOUT_S="300", BOUNDARY_REPAIR="false", RUN_MAX_S="600")
    os.environ.update(env)
    get_settings.cache_clear()
    settings = settings_for(env)
    server = ManagedProcess(f"bench-api-{name}", [str(VENV_BIN / "stt-router"), "serve", "--port", str(port)], env)
    worker = start_worker(env, f"bench-worker-{name}")
    engine = load_engine(settings)
    audios = [decode_audio(f) for f in files]
    options = TranscribeOptions()
    app = producer(env)
    import urllib3

    http = urllib3.PoolManager()
    wait_for(lambda: http.request("GET", f"http://127.0.0.1:{port}/health").status == 200, 300,
             what="the server's model")

    raw_text = [""] * len(files)

    def raw_pass(idx: list[int]) -> list[float]:
        times = []
        for i in idx:
            t0 = time.perf_counter()
            result = engine.transcribe(audios[i].samples, options)
            times.append(time.perf_counter() - t0)
            raw_text[i] = " ".join(seg.text for seg in result.segments)
        return times

    def put(key: str, path: Path) -> dict:
        body = path.read_bytes()
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
        return eventbridge_event(bucket, key, len(body), etag)

    # warm-up: one chunk through each side
    engine.transcribe(audios[0].samples, options)
    handler(put("sessions/warmup-direct/chunks/0.wav", files[0]))
    app.send_task("tasks.transcribe_chunk", args=[bucket, put("sessions/warmup-queued/chunks/0.wav",
                                                              files[0])["detail"]["object"]["key"]],
                  queue=settings.transcribe_queue).get(timeout=600)

    raw = [0.0] * len(files)
    direct_wall, added_ms, routes = [0.0] * len(files), [], []
    queued_s, queued_keys, direct_keys = 0.0, [], []
    try:
        for b in range(0, len(files), block):
            idx = list(range(b, min(b + block, len(files))))
            before = raw_pass(idx)
            for i in idx:  # direct: one chunk at a time, as uploads arrive
                key = f"sessions/direct-{i:03d}/chunks/0.wav"
                event = put(key, files[i])
                t0 = time.perf_counter()
                result = handler(event)
                direct_wall[i] = time.perf_counter() - t0
                routes.append(result["decisions"][0]["decision"])
                direct_keys.append(key)
            keys = []
            for i in idx:
                keys.append(f"sessions/queued-{i:03d}/chunks/0.wav")
                put(keys[-1], files[i])
            t0 = time.perf_counter()
            pending = [app.send_task("tasks.transcribe_chunk", args=[bucket, k], queue=settings.transcribe_queue)
                       for k in keys]
            statuses = [r.get(timeout=900)["status"] for r in pending]
            queued_s += time.perf_counter() - t0
            if set(statuses) != {"transcribed"}:
                raise SystemExit(f"queued chunks not transcribed: {statuses}")
            queued_keys += keys
            for i, x, y in zip(idx, before, raw_pass(idx), strict=True):
                raw[i] = (x + y) / 2
                added_ms.append((direct_wall[i] - raw[i]) * 1000)
    finally:
        worker.stop()
        server.stop()
    if set(routes) != {"direct"}:
        raise SystemExit(f"not every chunk went direct: {routes}")

    def wer(keys: list[str]) -> float:
        errors = []
        for key, text in zip(keys, texts, strict=True):
            session = key.split("/")[1]
            stored = ChunkTranscript.model_validate(storage.get_json(bucket, chunk_transcript_key(session, 0)))
            errors.append(word_error_rate(text, stored.text))
        return round(sum(errors) / len(errors), 4)

    audio_s = sum(a.duration for a in audios)
    raw_s, direct_s = sum(raw), sum(direct_wall)
    return {
        "audio_s": round(audio_s, 1),
        "raw": {"wall_s": round(raw_s, 2), "rtf_x": round(audio_s / raw_s, 2),
                "wer": round(sum(map(word_error_rate, texts, raw_text)) / len(texts), 4)},
        "direct": {"wall_s": round(direct_s, 2), "rtf_x": round(audio_s / direct_s, 2),
                   "throughput_ratio": round(raw_s / direct_s, 3),
                   "added_ms_p50": round(percentile(added_ms, 50), 1),
                   "added_ms_p95": round(percentile(added_ms, 95), 1), "wer": wer(direct_keys)},
        "queued": {"wall_s": round(queued_s, 2), "rtf_x": round(audio_s / queued_s, 2),
                   "throughput_ratio": round(raw_s / queued_s, 3), "wer": wer(queued_keys)},
    }


def engine_in_child(name: str, args: argparse.Namespace) -> dict[str, object]:
    """One engine's run in a fresh interpreter with its own moto: a second engine's run in the same
    process measured its paths 10-20% slower than a first (state left in kombu, moto and the
    engines' thread pools), whichever engine went first."""
    with tempfile.TemporaryDirectory() as tmp:
        part = Path(tmp) / "part.json"
        # as a module from the project's root: run as a file, its own folder would be the import root
        subprocess.run([sys.executable, "-m", "bench.system", "--engines", name, "--chunks", str(args.chunks),
                        "--block", str(args.block), "--part", str(part)],
                       check=True, cwd=Path(__file__).resolve().parents[1])
        return json.loads(part.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=12, help="chunks through each path, per engine")
    parser.add_argument("--block", type=int, default=4, help="chunks per raw/direct/queued/raw block")
    parser.add_argument("--engines", default="faster-whisper,whisperx")
    parser.add_argument("--part", type=Path, help=argparse.SUPPRESS)  # a child's one-engine result goes here
    args = parser.parse_args()

    root = Path(__file__).resolve().parents[1]
    os.environ.setdefault("MODEL_CACHE_DIR", str(root / ".cache" / "models"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tests.support.services import MotoServer
    from tests.support.speech import SENTENCES, speak

    texts = [SENTENCES[i % len(SENTENCES)] for i in range(args.chunks)]
    files = [speak(t, speed=SPEEDS[(i // len(SENTENCES)) % len(SPEEDS)]) for i, t in enumerate(texts)]
    engines = args.engines.split(",")
    results: dict[str, object] = {}
    if args.part or len(engines) == 1:
        moto = MotoServer()
        os.environ.update(moto.env())
        try:
            print(f"running {engines[0]} ...", flush=True)
            results[engines[0]] = run_engine(engines[0], files, texts, args.block, moto)
        finally:
            moto.stop()
        if args.part:
            args.part.write_text(json.dumps(results[engines[0]]))
            return
    else:
        results = {name: engine_in_child(name, args) for name in engines}
    rows = []
    for name, r in results.items():
        rows.append([name, "raw engine", r["raw"]["rtf_x"], 1.0, "-", "-", r["raw"]["wer"]])
        rows.append([name, "direct (router -> server)", r["direct"]["rtf_x"], r["direct"]["throughput_ratio"],
                     r["direct"]["added_ms_p50"], r["direct"]["added_ms_p95"], r["direct"]["wer"]])
        rows.append([name, "queued (SQS -> worker)", r["queued"]["rtf_x"], r["queued"]["throughput_ratio"],
                     "-", "-", r["queued"]["wer"]])
    print_table(f"full system vs raw engine, {args.chunks} chunks per path",
                ["engine", "path", "rtf_x", "throughput_ratio", "added_ms_p50", "added_ms_p95", "wer"], rows)
    write_result("system", {"chunks": args.chunks, "block": args.block, "engines": results})


if __name__ == "__main__":
    main()
