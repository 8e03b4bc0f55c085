"""Monitoring for real: a `stt-router worker` on the SQS broker (moto) sends its task events over
Redis (127.0.0.1:6379), `stt-router flower` reads them there and lists the task in its HTTP API
behind basic auth, and the worker's Prometheus endpoint counts the task, the audio and the queues.
One worker and one Flower serve the module; the model is the real faster-whisper base.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from types import SimpleNamespace

import httpx
import pytest

from tasks.enqueue import enqueue_chunk
from tests.support.services import ROOT, VENV_BIN, ManagedProcess, free_port, unique, wait_for
from tests.support.worker import producer, settings_for, start_worker, worker_env

pytestmark = pytest.mark.timeout(300)

USER = "ops"


@pytest.fixture(scope="module")
def stack(moto, speech_files):
    bucket = unique("monitor")
    moto.client("s3").create_bucket(Bucket=bucket)
    password = uuid.uuid4().hex
    env = worker_env(moto, "sqs", S3_BUCKET=bucket, TASK_EVENTS_REDIS="true",
                     WORKER_METRICS_PORT=str(free_port()), FLOWER_BASIC_AUTH=f"{USER}:{password}")
    ns = SimpleNamespace(env=env, bucket=bucket, password=password, app=producer(env), settings=settings_for(env),
                         hostname=f"{unique('gpu')}@test", flower_port=free_port())
    ns.flower = ManagedProcess("flower", [str(VENV_BIN / "stt-router"), "flower", "--port", str(ns.flower_port)],
                               env=env)
    ns.url = f"http://127.0.0.1:{ns.flower_port}"
    # Flower must be listening before the task's events are sent (events are not stored)
    wait_for(lambda: httpx.get(f"{ns.url}/healthcheck", timeout=2).status_code == 200, 60,
             what=f"flower up ({ns.flower.log_path})")
    ns.worker = start_worker(env, "worker-monitor", args=("--hostname", ns.hostname))
    key = f"sessions/{unique('mon')}/chunks/0.wav"
    moto.client("s3").put_object(Bucket=bucket, Key=key, Body=speech_files[0].read_bytes())
    ns.task_id = enqueue_chunk(bucket, key, app=ns.app, settings=ns.settings)
    ns.result = ns.app.AsyncResult(ns.task_id).get(timeout=180)
    ns.bad_task_id = enqueue_chunk(bucket, "sessions/x/chunks/0.exe", app=ns.app, settings=ns.settings)
    ns.bad_result = ns.app.AsyncResult(ns.bad_task_id).get(timeout=60)
    yield ns
    ns.worker.stop()
    ns.flower.stop()


def auth(ns) -> tuple[str, str]:
    return (USER, ns.password)


def test_a_task_run_on_sqs_shows_up_in_flower(stack) -> None:
    assert stack.result["status"] == "transcribed"

    def listed():
        r = httpx.get(f"{stack.url}/api/tasks", auth=auth(stack), timeout=5)
        r.raise_for_status()
        task = r.json().get(stack.task_id)
        return task if task and task["state"] == "SUCCESS" else None

    task = wait_for(listed, 30, what=f"the task in Flower's /api/tasks ({stack.flower.log_path})")
    assert task["name"] == "tasks.transcribe_chunk"
    assert task["worker"] == stack.hostname
    assert task["runtime"] > 0 and stack.bucket in task["args"]
    info = httpx.get(f"{stack.url}/api/task/info/{stack.task_id}", auth=auth(stack), timeout=5).json()
    assert info["state"] == "SUCCESS" and "transcribed" in info["result"]
    # the worker's heartbeats travel over Redis too: Flower's dashboard knows it is online
    page = httpx.get(f"{stack.url}/workers", auth=auth(stack), timeout=5)
    assert page.status_code == 200 and stack.hostname in page.text


def test_flower_refuses_requests_without_the_password(stack) -> None:
    for path in ("/", "/api/tasks", f"/api/task/info/{stack.task_id}", "/workers", "/tasks"):
        assert httpx.get(f"{stack.url}{path}", timeout=5).status_code == 401, path
        assert httpx.get(f"{stack.url}{path}", auth=(USER, "wrong"), timeout=5).status_code == 401, path
    assert httpx.get(f"{stack.url}/api/tasks", auth=auth(stack), timeout=5).status_code == 200


def test_flower_will_not_start_without_basic_auth(stack) -> None:
    env = {k: v for k, v in stack.env.items() if k != "FLOWER_BASIC_AUTH"}
    for extra in ({}, {"FLOWER_BASIC_AUTH": "nopassword"}, {"FLOWER_BASIC_AUTH": "user:"}):
        out = subprocess.run([str(VENV_BIN / "stt-router"), "flower", "--port", str(free_port())],
                             env={**_base_env(), **env, **extra}, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "FLOWER_BASIC_AUTH" in out.stderr, (extra, out.stderr)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_worker_metrics(stack) -> None:
    url = f"http://127.0.0.1:{stack.env['WORKER_METRICS_PORT']}/metrics"
    s = stack.settings
    task = "tasks.transcribe_chunk"

    def scraped():
        text = httpx.get(url, timeout=10).text
        # the bad key's dead letter waits in the dead-letter queue (queue depth is cached for 5 s)
        return text if sample(text, "stt_queue_messages", queue=s.dead_letter_queue, state="waiting") else None

    text = wait_for(scraped, 30, interval=1, what=f"worker metrics at {url}")
    assert sample(text, "stt_worker_tasks_total", task=task, state="received") == 2
    assert sample(text, "stt_worker_tasks_total", task=task, state="started") == 2
    assert sample(text, "stt_worker_tasks_total", task=task, state="succeeded") == 2
    assert sample(text, "stt_worker_chunks_total", status="transcribed") == 1
    assert sample(text, "stt_worker_chunks_total", status="failed") == 1
    assert stack.result["audio_s"] > 2 and sample(text, "stt_worker_audio_seconds_total") == pytest.approx(
        stack.result["audio_s"], rel=1e-3)
    assert sample(text, "stt_worker_task_seconds_count", task=task) == 2
    assert 0 < sample(text, "stt_worker_task_seconds_sum", task=task) < 180
    assert sample(text, "stt_worker_engine_seconds_count") == 1
    assert sample(text, "stt_worker_engines_loaded") == 1
    assert sample(text, "stt_worker_tasks_active") == 0
    assert sample(text, "stt_queue_messages", queue=s.transcribe_queue, state="waiting") == 0
    assert sample(text, "stt_queue_messages", queue=s.transcribe_queue, state="in_flight") == 0
    assert sample(text, "stt_queue_messages", queue=s.dead_letter_queue, state="waiting") == 1
    # every metric family the worker serves is documented in the monitoring page
    page = (ROOT / "docs" / "operating" / "monitoring.md").read_text()
    families = set(re.findall(r"^# TYPE (\w+) ", text, flags=re.M))
    assert {"stt_worker_tasks_total", "stt_queue_messages", "stt_worker_audio_seconds_total"} <= families
    for family in families:
        assert re.search(rf"`{family}[{{`]", page), f"{family} is not in docs/operating/monitoring.md"


def test_a_taken_metrics_port_stops_the_worker_with_the_reason(stack) -> None:
    """The port of the module's worker is taken: a second worker on it exits at once, saying why."""
    env = {**stack.env, "TRANSCRIBE_QUEUE": unique("transcribe")}
    out = subprocess.run([str(VENV_BIN / "stt-router"), "worker"], env={**_base_env(), **env}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{env['WORKER_METRICS_PORT']}" in out.stderr + out.stdout


def test_beats_control_worker_reports_to_flower_too(stack) -> None:
    """`stt-router beat`'s worker (control queue, on SQS) sends its task events over Redis as well."""
    env = {**stack.env, "CONTROL_QUEUE": unique("control"), "BEAT_KEY_PREFIX": unique("stt:beat") + ":"}
    beat = ManagedProcess("beat-monitor", [str(VENV_BIN / "stt-router"), "beat", "--hostname",
                                           f"{unique('beat')}@test"], env=env)
    try:
        wait_for(lambda: " ready." in beat.output(), 90, what=f"beat's worker ready ({beat.log_path})")
        run = subprocess.run([str(VENV_BIN / "stt-router"), "drain"], env={**_base_env(), **env}, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        task_id = run.stdout.split()[2]

        def listed():
            r = httpx.get(f"{stack.url}/api/task/info/{task_id}", auth=auth(stack), timeout=5)
            return r.json() if r.status_code == 200 and r.json().get("state") == "SUCCESS" else None

        info = wait_for(listed, 60, what=f"the drain task in Flower ({beat.log_path})")
        assert info["name"] == "tasks.drain" and info["worker"].startswith("beat-")
    finally:
        beat.stop()
