"""Real processes for tests: moto's server (S3, SQS, EventBridge), and any command run as a
managed subprocess in its own process group, with its output kept for failure messages."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import boto3

from devstack.procs import Proc

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.2, what: str = "condition") -> T:
    """Poll until `predicate()` is truthy; return its value, or fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the service may not be up yet
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_exc})"
                                                                                 if last_exc else ""))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class ManagedProcess(Proc):
    """The stack's process runner with test defaults: this process's environment plus `env`, and a
    log file of its own under .cache/test-logs. `stop()` ends the whole group; `kill()` crashes it."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None,
                 log_dir: Path | None = None, cwd: Path = ROOT) -> None:
        log_dir = log_dir or (ROOT / ".cache" / "test-logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(f"{name}-{uuid.uuid4().hex[:8]}", args, {**os.environ, **(env or {})}, log_dir, cwd)
        self.name = name


class MotoServer(ManagedProcess):
    """moto's server mode: a real HTTP endpoint for S3, SQS, EventBridge, EC2 and Auto Scaling."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__("moto", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)])
        wait_for(lambda: port_open(self.port), 30, what="moto server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What a process needs to talk to this moto (boto3 and kombu read these)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")


def unique(prefix: str) -> str:
    """A name no other test (or test run sharing this Redis) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
