"""The router: how fast its handler module imports cold, and how long it takes to decide per event.

    python -m bench.router [--imports 15] [--direct 60] [--queued 150]

- `cold_import_ms`: `import router_lambda.handler` timed inside fresh interpreters, one per run
  (p50 over the runs; the files are in the page cache after the first run, as on a warm Lambda host).
  The handler is imported as in the Lambda package: without tornado (see AS_ON_LAMBDA) and with the
  project's bytecode compiled first (the package ships it, `stt-router build-lambda`; an environment
  with PYTHONDONTWRITEBYTECODE would otherwise compile the project's modules on every import, and
  only those, while boto3's come from site-packages' bytecode).
  `cold_import_ratio_boto3`: that p50 over `import boto3`'s, timed the same way in the same run,
  interleaved (goal <= 1.5x; Celery loads only to queue). `settings_floor_ratio_boto3`: the same for
  `import botocore.session, transcription.settings`, the part no change to the router removes while
  every unit reads the one pydantic-settings object (the S3 client's library and that object, with
  pydantic's plugin lookup off as in the handler). For scale, `celery.app` and the server's app
  (`app.main`) in the same run. `cold_import_cpu_*`: the same from the import's CPU time in its
  process, which a busy shared machine changes least.
  `first_event_setup_cpu_ms`: in the handler's interpreter, after the import, the CPU the first event
  spends before any network call (FIRST_EVENT), so that work moved out of the import shows.
  `--imports-only` measures just these and keeps the other figures of the last full run.
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

import argparse
import compileall
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import percentile, print_table, write_result

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-router-key"
IMPORT = ("{prelude}import time; t, c = time.perf_counter(), time.process_time(); import {module}; "
          "print((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000){after}")
# After the handler's import, in the same fresh interpreter: what its first event builds before any
# network call (the settings object, the S3 client, the server's connection pool), in CPU ms. A cold
# start pays import + this; a change that only moved import work to the first event would show here.
FIRST_EVENT = ("; from transcription.settings import get_settings; from transcription import storage; "
               "from router_lambda import direct; c = time.process_time(); s = get_settings(); "
               "storage.s3_client(s); direct.pool(); print((time.process_time() - c) * 1000)")
# As in the Lambda package (`stt-router build-lambda`), which has no tornado: tenacity imports it when
# it is installed (here it is, for Flower), 40 ms that the router never pays on Lambda.
AS_ON_LAMBDA = "import sys; sys.modules['tornado'] = None; "
# The floor under the one settings object: botocore (the S3 client) and the settings model, with the
# handler's PYDANTIC_DISABLE_PLUGINS (router_lambda/handler.py)
FLOOR = "botocore.session, transcription.settings"
FLOOR_PRELUDE = "import os; os.environ.setdefault('PYDANTIC_DISABLE_PLUGINS', '__all__'); "
PACKAGES = ("router_lambda", "transcription", "tasks")  # the project's part of the Lambda package


def cold_imports(module: str, runs: int, prelude: str = "", cpu: list[float] | None = None,
                 first_event: list[float] | None = None) -> list[float]:
    """Wall ms of `import module` in `runs` fresh interpreters; its CPU ms appended to `cpu`, and with
    `first_event` the CPU ms of the handler's first-event setup (FIRST_EVENT) appended to that."""
    out = []
    for _ in range(runs):
        code = IMPORT.format(module=module, prelude=prelude, after=FIRST_EVENT if first_event is not None else "")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        lines = proc.stdout.strip().splitlines()
        if first_event is not None:
            first_event.append(float(lines.pop()))
        wall, cpu_ms = lines[-1].split()
        out.append(float(wall))
        if cpu is not None:
            cpu.append(float(cpu_ms))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imports", type=int, default=15, help="fresh interpreters per module")
    parser.add_argument("--direct", type=int, default=60, help="events on the direct path")
    parser.add_argument("--queued", type=int, default=150, help="events on the queued path")
    parser.add_argument("--imports-only", action="store_true", help="only the cold imports (the rest kept)")
    args = parser.parse_args()

    os.environ.setdefault("MODEL_CACHE_DIR", str(ROOT / ".cache" / "models"))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    load_before = os.getloadavg()[0]
    # --- cold imports (before anything is imported here) ----------------------------------
    for pkg in PACKAGES:  # bytecode, as the Lambda package ships it
        compileall.compile_dir(ROOT / pkg, quiet=1)
    handler_ms, boto3_ms, celery_ms, floor_ms, handler_cpu, boto3_cpu, floor_cpu = [], [], [], [], [], [], []
    first_event_cpu: list[float] = []
    for _ in range(args.imports):  # interleaved: a change in the machine's load hits them all alike
        handler_ms += cold_imports("router_lambda.handler", 1, AS_ON_LAMBDA, handler_cpu, first_event_cpu)
        boto3_ms += cold_imports("boto3", 1, cpu=boto3_cpu)
        floor_ms += cold_imports(FLOOR, 1, FLOOR_PRELUDE, floor_cpu)
        celery_ms += cold_imports("celery.app", 1)
    app_ms = cold_imports("app.main", max(3, args.imports // 3))
    imports = {
        "cold_import_ms": round(percentile(handler_ms, 50), 1),
        "cold_import_ms_runs": [round(x, 1) for x in handler_ms],
        "boto3_cold_import_ms": round(percentile(boto3_ms, 50), 1),
        "cold_import_ratio_boto3": round(percentile(handler_ms, 50) / percentile(boto3_ms, 50), 2),
        # CPU time of the import in its own process: what a busy shared machine changes least
        "cold_import_cpu_ms": round(percentile(handler_cpu, 50), 1),
        "boto3_cold_import_cpu_ms": round(percentile(boto3_cpu, 50), 1),
        "cold_import_cpu_ratio_boto3": round(percentile(handler_cpu, 50) / percentile(boto3_cpu, 50), 2),
        # after the import, the first event's setup before any network call (settings, S3 client, pool)
        "first_event_setup_cpu_ms": round(percentile(first_event_cpu, 50), 1),
        # botocore and the one settings object, nothing of the router: what the handler cannot go below
        "settings_floor_ms": round(percentile(floor_ms, 50), 1),
        "settings_floor_ratio_boto3": round(percentile(floor_ms, 50) / percentile(boto3_ms, 50), 2),
        "settings_floor_cpu_ratio_boto3": round(percentile(floor_cpu, 50) / percentile(boto3_cpu, 50), 2),
        "celery_cold_import_ms": round(percentile(celery_ms, 50), 1),
        "app_cold_import_ms": round(percentile(app_ms, 50), 1),
        "imports": args.imports,
    }
    if args.imports_only:  # the other figures of the last full run stay as they were
        path = ROOT / "bench" / "results" / "router.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        old.pop("machine", None)
        print_table("router cold imports (ms, p50)", ["measure", "wall", "cpu"], [
            ["router_lambda.handler", imports["cold_import_ms"], imports["cold_import_cpu_ms"]],
            ["boto3 (the reference)", imports["boto3_cold_import_ms"], imports["boto3_cold_import_cpu_ms"]],
            ["handler / boto3 (goal <= 1.5)", imports["cold_import_ratio_boto3"],
             imports["cold_import_cpu_ratio_boto3"]],
            ["then the first event's setup (settings, S3 client, pool)", "", imports["first_event_setup_cpu_ms"]],
            ["botocore + settings, no router (the floor)", imports["settings_floor_ms"], ""],
            ["  floor / boto3", imports["settings_floor_ratio_boto3"], imports["settings_floor_cpu_ratio_boto3"]]])
        write_result("router", {**old, **imports, "load_average": [round(load_before, 1),
                                                                   round(os.getloadavg()[0], 1)]})
        return

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
    original = direct.call_server

    def timed_call(*a, **kw):
        t0 = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            calls.append(time.perf_counter() - t0)

    direct.call_server = timed_call

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
        **imports,
        "decision_ms_p50": round(percentile(decision, 50), 2),
        "decision_ms_p99": round(percentile(decision, 99), 2),
        "direct_total_ms_p50": round(percentile(total, 50), 1),
        "queued_ms_p50": round(percentile(queued, 50), 2),
        "queued_ms_p99": round(percentile(queued, 99), 2),
        "queued_first_ms": round(first_queued * 1000, 1),
        "events": {"direct": len(decision), "queued": len(queued)},
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # a shared machine: other jobs
    }
    print_table("router (ms)", ["measure", "p50", "p99", "n"], [
        ["cold import router_lambda.handler", result["cold_import_ms"], percentile(handler_ms, 99), len(handler_ms)],
        ["cold import boto3 (the reference)", result["boto3_cold_import_ms"], percentile(boto3_ms, 99), len(boto3_ms)],
        ["  handler / boto3 (goal <= 1.5)", result["cold_import_ratio_boto3"], "", ""],
        ["  then the first event's setup, CPU (settings, S3 client, pool)", result["first_event_setup_cpu_ms"],
         "", len(first_event_cpu)],
        ["cold import botocore + settings (the floor)", result["settings_floor_ms"], percentile(floor_ms, 99),
         len(floor_ms)],
        ["  floor / boto3", result["settings_floor_ratio_boto3"], "", ""],
        ["cold import celery.app (only when queueing)", result["celery_cold_import_ms"], percentile(celery_ms, 99),
         len(celery_ms)],
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
