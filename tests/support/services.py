"""Real processes for tests: moto's server (S3, SQS, EventBridge), and any command run as a
managed subprocess in its own process group, with its output kept for failure messages."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import boto3

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


class ManagedProcess:
    """A subprocess in its own process group; `stop()` ends the whole group; `output()` reads its log."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None,
                 log_dir: Path | None = None, cwd: Path = ROOT) -> None:
        self.name = name
        self.args = list(args)
        log_dir = log_dir or (ROOT / ".cache" / "test-logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:8]}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.args, env={**os.environ, **(env or {})}, cwd=cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the group, then SIGKILL whatever is left after `timeout`."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait(5)
        self.signal_group(signal.SIGKILL)  # stragglers (e.g. pool children) in the group
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would."""
        self.signal_group(signal.SIGKILL)
        self.proc.wait(10)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
