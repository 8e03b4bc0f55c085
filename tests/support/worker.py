"""A real `stt-router worker` for tests: its environment, start-up, and what its log says.

Other components' tests use it too (the router's queued path, beat's drain, the chaos run):

    env = worker_env(moto, broker="sqs")          # unique queues, short timeouts
    with start_worker(env) as w:                  # waits for "ready" and the engine load
        ...                                        # enqueue with producer(env)
        w.engine_runs(key)                         # `engine_run` log lines for a chunk key
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tests.support.services import VENV_BIN, ManagedProcess, unique, wait_for
from transcription.settings import Settings

# Short enough that redelivery tests finish, long enough for a chunk on a busy 2-core machine.
TEST_TIMINGS = {
    "VISIBILITY_TIMEOUT_S": "25",
    "TASK_TIME_LIMIT_S": "20",
    "LEASE_TTL_S": "6",
    "TASK_RETRY_BACKOFF_S": "1",
    "TASK_MAX_RETRIES": "2",
    "MAX_RECEIVE_COUNT": "3",
}
REDIS_BROKER_DB = 13  # its own database: kombu's `unacked` bookkeeping is per database


def worker_env(moto, broker: str = "sqs", **extra: str) -> dict[str, str]:
    """Environment for a worker and its producers: moto's endpoint, unique queues, test timings."""
    redis_url = "redis://127.0.0.1:6379/0"
    env = {
        **moto.env(),
        **TEST_TIMINGS,
        "CELERY_BROKER_URL": "sqs://" if broker == "sqs" else f"redis://127.0.0.1:6379/{REDIS_BROKER_DB}",
        "CELERY_RESULT_BACKEND": redis_url,
        "REDIS_URL": redis_url,
        "TRANSCRIBE_QUEUE": unique("transcribe"),
        "DEAD_LETTER_QUEUE": unique("transcribe-dlq"),
        "WORKER_CONCURRENCY": "1",
        "WORKER_IDLE_TIMEOUT_S": "0",
        "ENGINE": "faster-whisper",
        # each chunk alone, as the per-chunk guarantees these tests check were written for; the tests
        # of session runs (tests/tasks/test_runs.py) turn runs on with RUN_MAX_S
        "RUN_MAX_S": "0",
    }
    env.update(extra)
    return env


def settings_for(env: Mapping[str, str]) -> Settings:
    """The settings a process started with `env` sees (for producers in the test process)."""
    fields = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
    return Settings(**fields)


class Worker(ManagedProcess):
    def wait_ready(self, timeout: float = 180) -> Worker:
        wait_for(lambda: (not self.alive() and self._died()) or
                 ("engine_loaded" in (out := self.output()) and " ready." in out),
                 timeout, what=f"worker ready ({self.log_path})")
        return self

    def _died(self) -> bool:
        raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()[-4000:]}")

    def engine_runs(self, key: str) -> int:
        """How many times the engine ran on `key` (the chunk function logs one line per run)."""
        return len(re.findall(rf"engine_run .*key={re.escape(key)}\s", self.output()))


def start_worker(env: Mapping[str, str], name: str = "worker", wait: bool = True,
                 args: tuple[str, ...] = ()) -> Worker:
    """`stt-router worker [args]` with `env`; by default waits until it consumes with the engine loaded."""
    w = Worker(name, [str(VENV_BIN / "stt-router"), "worker", *args], env=dict(env))
    if wait:
        w.wait_ready()
    return w


def producer(env: Mapping[str, str]):
    """A Celery app configured like the worker, for publishing from the test process."""
    from tasks.celery_app import make_app

    return make_app(settings_for(env))


class QueuedRig:
    """A bucket on moto and a real worker on `broker`: what the queued-path tests of each broker share."""

    def __init__(self, moto, broker: str, name: str, **extra: str) -> None:
        self.bucket = unique(name)
        self.s3 = moto.client("s3")
        self.s3.create_bucket(Bucket=self.bucket)
        self.env = worker_env(moto, broker, S3_BUCKET=self.bucket, **extra)
        self.app = producer(self.env)
        self.settings = settings_for(self.env)
        self.worker = start_worker(self.env, f"worker-{broker}")

    def put(self, key: str, body: bytes | Path) -> str:
        """Upload a chunk (bytes or a file) the way a recorder would."""
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body if isinstance(body, bytes) else body.read_bytes())
        return key

    def wait_key(self, key: str, timeout: float = 180) -> None:
        from transcription import storage

        wait_for(lambda: storage.exists(self.bucket, key, settings=self.settings), timeout,
                 what=f"s3://{self.bucket}/{key} ({self.worker.log_path})")

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """`stt-router ARGS` with the rig's environment."""
        return subprocess.run([str(VENV_BIN / "stt-router"), *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=120)
