"""The router: how fast its handler module imports cold, and how long it takes to decide per event.

    python bench/router.py [--imports 15] [--direct 60] [--queued 150]

- `cold_import_ms`: `import router_lambda.handler` timed inside fresh interpreters, one per run
  (p50 over the runs; the files are in the page cache after the first run, as on a warm Lambda host).
  For scale, the same for the server's app (`app.main`) in the same run.
- `decision_ms_p50` / `_p99`: the healthy direct path minus the transcription: per event the
  handler's wall time (parsing the event S3 produced, the transcript HEAD on S3, the `/health`
  probe, the EMF log line) minus the `POST /transcribe-s3` round trip, against a real
  `stt-router serve` and moto's S3. Each event is a new chunk (a short spoken word; the server
  still runs Whisper's full 30 s window on it, about 3 s here, which is why there are fewer).
- `queued_ms_p50` / `_p99`: the whole decision when the server is down: the refused probe and the
  Celery publish to moto's SQS, after a first publish (`queued_first_ms`: kombu's SQS transport
  loads and looks the queue up once per container).

Writes bench/results/router.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import contextlib
import io
import json
import os
import subprocess
import time

from bench.common import percentile, print_table, write_result

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-router-key"
IMPORT = "import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"


def cold_imports(module: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", IMPORT.format(module=module)], capture_output=True, text=True,
                              cwd=ROOT, check=True)
        out.append(float(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imports", type=int, default=15, help="fresh interpreters per module")
    parser.add_argument("--direct", type=int, default=60, help="events on the direct path")
    parser.add_argument("--queued", type=int, default=150, help="events on the queued path")
    args = parser.parse_args()

    os.environ.setdefault("MODEL_CACHE_DIR", str(ROOT / ".cache" / "models"))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    load_before = os.getloadavg()[0]
    # --- cold imports (before anything is imported here) ----------------------------------
    handler_ms = cold_imports("router_lambda.handler", args.imports)
    app_ms = cold_imports("app.main", max(3, args.imports // 3))

    from tests.support.services import VENV_BIN, ManagedProcess, MotoServer, free_port, unique, wait_for
    from tests.support.speech import speak

    # --- setup: moto, a bucket with S3 -> EventBridge -> SQS, a real server (none of it timed) ---
    moto = MotoServer()
    os.environ.update(moto.env())
    bucket = unique("bench-router")
    s3, sqs = moto.client("s3"), moto.client("sqs")
    s3.create_bucket(Bucket=bucket)
    port = free_port()
    env = {"S3_BUCKET": bucket, "API_KEY": API_KEY, "CELERY_BROKER_URL": "sqs://",
           "TRANSCRIBE_QUEUE": unique("bench-transcribe"), "FAST_API_SERVER_URL": f"http://127.0.0.1:{port}",
           "CPU_THREADS": "2"}
    os.environ.update(env)
    server = ManagedProcess("bench-router-server", [str(VENV_BIN / "stt-router"), "serve", "--port", str(port)])
    from router_lambda import direct, local
    from router_lambda.handler import handler
    from transcription.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    queue_url = local.setup(bucket, settings, queue=unique("bench-events"), rule=unique("bench-rule"))
    word = speak("Yes.").read_bytes()

    def events_for(prefix: str, n: int) -> list[dict]:
        for i in range(n):
            s3.put_object(Bucket=bucket, Key=f"sessions/{prefix}-{i:04d}/chunks/0.wav", Body=word)
        got: list[dict] = []

        def collect() -> bool:
            for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                         ).get("Messages", []):
                got.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            return len(got) >= n

        wait_for(collect, 120, interval=0, what=f"{n} S3 events")
        return got

    import urllib3

    wait_for(lambda: urllib3.request("GET", f"{env['FAST_API_SERVER_URL']}/health", timeout=2,
                                     retries=False).status == 200, 180, what="the server")
    calls: list[float] = []
    original = direct.transcribe_s3

    def timed_call(*a, **kw):
        t0 = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            calls.append(time.perf_counter() - t0)

    direct.transcribe_s3 = timed_call

    def run(event: dict) -> tuple[float, str]:
        with contextlib.redirect_stdout(io.StringIO()):  # the EMF line is still written, just not shown
            t0 = time.perf_counter()
            out = handler(event, local.LocalContext(150, "bench"))  # a fresh invocation's 150 s
            wall = time.perf_counter() - t0
        d = out["decisions"][0]
        return wall, f"{d['decision']}: {d['reason']}"

    try:
        for e in events_for("warm", 3):  # first connections, first S3 client, first import paths
            run(e)
        decision, total = [], []
        for e in events_for("direct", args.direct):
            calls.clear()
            wall, what = run(e)
            assert what.startswith("direct"), what
            total.append(wall * 1000)
            decision.append((wall - sum(calls)) * 1000)
        server.stop()
        get_settings.cache_clear()
        queued = []
        first_queued, _ = run(events_for("queued-first", 1)[0])
        for e in events_for("queued", args.queued):
            wall, what = run(e)
            assert what.startswith("queued"), what
            queued.append(wall * 1000)
    finally:
        server.stop()
        moto.stop()

    result = {
        "cold_import_ms": round(percentile(handler_ms, 50), 1),
        "cold_import_ms_runs": [round(x, 1) for x in handler_ms],
        "app_cold_import_ms": round(percentile(app_ms, 50), 1),
        "decision_ms_p50": round(percentile(decision, 50), 2),
        "decision_ms_p99": round(percentile(decision, 99), 2),
        "direct_total_ms_p50": round(percentile(total, 50), 1),
        "queued_ms_p50": round(percentile(queued, 50), 2),
        "queued_ms_p99": round(percentile(queued, 99), 2),
        "queued_first_ms": round(first_queued * 1000, 1),
        "events": {"direct": len(decision), "queued": len(queued)},
        "imports": args.imports,
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # a shared machine: other jobs
    }
    print_table("router (ms)", ["measure", "p50", "p99", "n"], [
        ["cold import router_lambda.handler", result["cold_import_ms"], percentile(handler_ms, 99), len(handler_ms)],
        ["cold import app.main (server, for scale)", result["app_cold_import_ms"], percentile(app_ms, 99),
         len(app_ms)],
        ["decision, healthy direct path (without the call)", result["decision_ms_p50"], result["decision_ms_p99"],
         len(decision)],
        ["direct path with the call (1 short word)", result["direct_total_ms_p50"], percentile(total, 99), len(total)],
        ["decision, server down -> queued on SQS", result["queued_ms_p50"], result["queued_ms_p99"], len(queued)],
        ["  the container's first queued decision", result["queued_first_ms"], "", 1],
    ])
    write_result("router", result)


if __name__ == "__main__":
    main()
