"""The direct path: probe the server's `/health`, then `POST /transcribe-s3` with tenacity retries.

urllib3 (already there with botocore) and one pool per container, kept warm across invocations.
The server's contract (docs/server-api.md, "The router's contract"):
- `/health` 200 `{"status": "ready"}` means send; anything else (503 loading/busy, no answer) means queue.
- `/transcribe-s3` 200 is the stored transcript. A 4xx is final: the chunk is bad (recorded as
  failed, not queued), except 401/403 (our key is wrong: queue, the worker needs no key) and
  408/429 (retried). Connection errors, timeouts and 5xx (503 busy or loading too) are retried:
  `ROUTER_ATTEMPTS` attempts with the waits of `ROUTER_RETRY_WAITS_S` between them, then queued.
- Every attempt and wait fits the Lambda's remaining time, keeping `QUEUE_RESERVE_S` to queue the
  chunk afterwards: a chunk is queued rather than lost to a function timeout.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_chain,
    wait_fixed,
)
from tenacity.stop import stop_base

from transcription.settings import Settings

log = logging.getLogger(__name__)

QUEUE_RESERVE_S = 10.0  # kept back from the Lambda's remaining time to queue the chunk after a failed direct path
MIN_ATTEMPT_S = 2.0  # an attempt with less time than this is not started
USER_AGENT = "stt-router-lambda"

_pool: urllib3.PoolManager | None = None
_pool_lock = threading.Lock()


def pool() -> urllib3.PoolManager:
    """One connection pool per container: a warm Lambda reuses the server's keep-alive connection."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = urllib3.PoolManager(num_pools=4, maxsize=8, retries=False, headers={"User-Agent": USER_AGENT})
        return _pool


class Deadline:
    """The time left in this invocation: the Lambda context's, or unbounded without one."""

    def __init__(self, context: Any = None) -> None:
        self._remaining_ms = getattr(context, "get_remaining_time_in_millis", None)

    def remaining_s(self) -> float:
        if self._remaining_ms is None:
            return math.inf
        try:
            return float(self._remaining_ms()) / 1000.0
        except Exception:
            return math.inf

    def budget_s(self) -> float:
        """Time a direct attempt may use, keeping the reserve to queue the chunk afterwards."""
        return self.remaining_s() - QUEUE_RESERVE_S


def base_url(settings: Settings) -> str:
    return (settings.fast_api_server_url or "").strip().rstrip("/")


def probe(settings: Settings, deadline: Deadline | None = None) -> tuple[bool, str]:
    """(ready, why): one GET /health with `ROUTER_HEALTH_TIMEOUT_S`, no retries."""
    url = base_url(settings)
    if not url:
        return False, "no server configured (FAST_API_SERVER_URL is empty)"
    timeout = min(settings.router_health_timeout_s, max(0.1, (deadline or Deadline()).budget_s()))
    try:
        r = pool().request("GET", f"{url}/health", timeout=urllib3.Timeout(total=timeout), retries=False,
                           redirect=False)
    except urllib3.exceptions.HTTPError as e:
        return False, f"server unreachable: {_describe(e)}"
    status = _json(r.data).get("status") if r.data else None
    if r.status == 200 and status == "ready":
        return True, "ready"
    return False, f"server not ready (health {r.status}, status {str(status)[:40]!r})"


class _Transient(Exception):
    """Worth another attempt: connection error, timeout, 5xx, 408, 429."""


class _Final(Exception):
    """Not worth another attempt: the chunk is bad (4xx), or the server refused our key."""

    def __init__(self, status: int, detail: str, kind: str | None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.kind = status, detail, kind


@dataclass
class DirectResult:
    """How the direct path ended: `transcribed` (stored by the server), `rejected` (a final 4xx: the
    chunk is bad), or `unavailable` (queue it: not ready, unreachable, refused our key, retries spent)."""

    outcome: Literal["transcribed", "rejected", "unavailable"]
    reason: str
    attempts: int = 0
    status: int | None = None
    error_kind: str | None = None  # the server's `kind` label for a rejected chunk
    transcript: dict[str, Any] = field(default_factory=dict)
    written: bool | None = None  # the server's X-Transcript-Written


def call_server(bucket: str, key: str, settings: Settings, api_key: str | None,
                  deadline: Deadline | None = None) -> DirectResult:
    """POST /transcribe-s3 for s3://bucket/key, retried as the module docstring says."""
    deadline = deadline or Deadline()
    url = f"{base_url(settings)}/transcribe-s3"
    body = json.dumps({"s3_input_path": f"s3://{bucket}/{key}"}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    waits = [max(0.0, float(w)) for w in settings.router_retry_waits_s] or [0.0]
    attempts = 0

    def attempt() -> DirectResult:
        nonlocal attempts
        attempts += 1
        timeout = min(settings.router_request_timeout_s, deadline.budget_s())
        try:
            r = pool().request("POST", url, body=body, headers=headers, retries=False, redirect=False,
                               timeout=urllib3.Timeout(connect=min(5.0, timeout), read=timeout))
        except urllib3.exceptions.HTTPError as e:
            raise _Transient(_describe(e)) from e
        data = _json(r.data)
        if 200 <= r.status < 300:
            if not data:
                raise _Transient(f"HTTP {r.status} without a JSON transcript")
            written = r.headers.get("X-Transcript-Written")
            return DirectResult("transcribed", "transcribed by the server", attempts, r.status, transcript=data,
                                written=None if written is None else written.lower() == "true")
        detail = str(data.get("detail") or r.data[:200].decode(errors="replace")).strip()[:500]
        if r.status >= 500 or r.status in (408, 425, 429):
            raise _Transient(f"HTTP {r.status}: {detail}")
        raise _Final(r.status, detail, data.get("kind"))

    budget_s = deadline.budget_s

    class OutOfTime(stop_base):
        """Stop when the next wait would leave this invocation no time for another attempt."""

        def __call__(self, state: RetryCallState) -> bool:
            next_wait = waits[min(state.attempt_number - 1, len(waits) - 1)]
            return budget_s() - next_wait < MIN_ATTEMPT_S

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.info("direct_retry key=%s attempt=%d wait=%.1fs error=%s", key, state.attempt_number,
                 state.next_action.sleep if state.next_action else 0, error)

    if deadline.budget_s() < MIN_ATTEMPT_S:
        return DirectResult("unavailable", "no time left in this invocation for a direct attempt")
    retrying = Retrying(stop=stop_after_attempt(settings.router_attempts) | OutOfTime(),
                        wait=wait_chain(*[wait_fixed(w) for w in waits]),
                        retry=retry_if_exception_type(_Transient), before_sleep=before_sleep, reraise=True,
                        sleep=time.sleep)
    try:
        return retrying(attempt)
    except _Transient as e:
        return DirectResult("unavailable", f"{attempts} direct attempt(s) failed, last: {e}", attempts)
    except _Final as e:
        if e.status in (401, 403, 407):
            return DirectResult("unavailable", f"the server refused the router's API key (HTTP {e.status})",
                                attempts, e.status)
        if 400 <= e.status < 500:
            return DirectResult("rejected", e.detail or f"HTTP {e.status}", attempts, e.status,
                                error_kind=e.kind or f"http_{e.status}")
        return DirectResult("unavailable", f"unexpected answer HTTP {e.status}: {e.detail}", attempts, e.status)


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _describe(e: Exception) -> str:
    """A short reason: urllib3 wraps the cause (refused, timed out, reset) in MaxRetryError."""
    cause = getattr(e, "reason", None) or e
    return f"{type(cause).__name__}: {cause}"[:300]
