"""How one delivery of a task message ends, for every task that must not lose its work.

A delivery ends in one of three ways, whatever the task:
- done: the task returns its result;
- again later: `RetryLater`, raised here and turned into Celery's retry by `retried_by`: with
  backoff after a transient error (`failure`), or to wait for another delivery's lease
  (`wait_for_holders`); either wait stays under the visibility timeout (`tasks.retry`);
- failed for good: `dead_letter` puts the task (name, args, kwargs) on the dead-letter queue with
  the reason, where `stt-router dlq list` shows it and `dlq replay` sends it again.

The delivery's own counters (`attempt`, `lease_waits`) travel as keyword arguments of the task, so a
retried message carries them, and a message queued before a deploy (without them) still runs.

Leases: `leases(names)` claims each name (a chunk, a session) for a `with` block and lists what it
could not claim as `busy`. `count_start` counts a start on a claimed name and says when earlier
deliveries all died with their worker (a chunk that kills its worker must not loop); a task whose
worker process may die holding leases names them for `tasks.requests.LeaseRequest`.

A task that retries with backoff and dead-letters itself after its last attempt:

    @app.task(bind=True, name="tasks.send_webhook", max_retries=None)
    def send_webhook(self, event_id: str, attempt: int = 1) -> dict[str, Any]:
        delivery = Delivery("tasks.send_webhook", [event_id], attempt=attempt, task_id=self.request.id)
        with retried_by(self, f"webhook_retry event={event_id}"):
            try:
                post_event(event_id)
            except Exception as e:
                failure = delivery.failure(e)  # raises RetryLater while attempts remain
                delivery.dead_letter(failure)
                return {"status": "failed", **failure.as_dict()}
        return {"status": "sent"}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task

from tasks import broker, locks
from tasks.celery_app import app
from tasks.enqueue import send_dead_letter
from tasks.retry import MAX_LEASE_WAITS, backoff_s, lease_wait_s
from transcription.errors import PermanentError, RetryableError
from transcription.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """Why a delivery gives up: an error kind (as in `transcription.errors`) and a reason for operators."""

    error: str
    reason: str
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.error, "reason": self.reason}


@dataclass
class RetryLater(Exception):
    """Queue this delivery again in `countdown` s with the counters in `kwargs` changed (see `retried_by`)."""

    countdown: float
    kwargs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    delivery: Delivery | None = field(default=None, repr=False, compare=False)


@dataclass
class Claim:
    """The leases a delivery holds (`held`, by name) and the ones another delivery holds (`busy`)."""

    held: dict[str, locks.Lease] = field(default_factory=dict)
    busy: list[locks.Lease] = field(default_factory=list)


@dataclass
class Delivery:
    """One delivery of `task(*args, **kwargs)`: its attempt, its lease waits, and how it ends.

    `args` and `kwargs` are the task's own arguments as sent on the wire (what a retry sends again
    and a dead letter replays); `attempt` and `lease_waits` are added to them on a retry.
    """

    task: str
    args: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    lease_waits: int = 0
    task_id: str | None = None
    settings: Settings = field(default_factory=get_settings)
    celery: Celery = field(default_factory=lambda: app)

    # --- again later ----------------------------------------------------------------------
    def failure(self, exc: BaseException) -> Failure:
        """What `exc` means for this delivery: a `PermanentError` (bad input) fails at once; anything
        else raises `RetryLater` with backoff while attempts remain (TASK_MAX_RETRIES), then fails."""
        if isinstance(exc, PermanentError):
            return Failure(exc.kind, exc.reason, self.attempt)
        kind = exc.kind if isinstance(exc, RetryableError) else "internal"
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        if self.attempt <= self.settings.task_max_retries:
            if kind == "internal":  # not an error we raise on purpose: keep its traceback
                log.error("task_error task=%s args=%s (retrying)", self.task, self.args, exc_info=exc)
            raise self._later(backoff_s(self.attempt, self.settings), {"attempt": self.attempt + 1},
                              f"{kind}: {reason}") from exc
        return Failure(kind, f"{reason} (gave up after {self.attempt} attempts)", self.attempt)

    @contextmanager
    def leases(self, names: Iterable[str]) -> Iterator[Claim]:
        """Claim each name's lease for the block (renewed while it runs, released after it)."""
        claim = Claim()
        try:
            for name in names:
                lease = locks.Lease(name, self.settings.lease_ttl_s, self.settings)
                if lease.acquire():
                    claim.held[name] = lease
                else:
                    claim.busy.append(lease)
            yield claim
        finally:
            for name, lease in claim.held.items():
                locks.clear_starts(name, self.settings)  # this run ended, one way or another
                lease.release()

    def wait_for_holders(self, claim: Claim, why: str) -> None:
        """Raise `RetryLater` to wait until the busy leases could lapse (re-checking at least every
        30 s). Returns only once this delivery has waited MAX_LEASE_WAITS times: the holders are
        alive and busy, and their own messages cover that work, so leave it to them."""
        if not claim.busy or self.lease_waits >= MAX_LEASE_WAITS:
            return
        remaining = max(lease.remaining_s() for lease in claim.busy)
        raise self._later(lease_wait_s(remaining, self.settings), {"lease_waits": self.lease_waits + 1}, why)

    def count_start(self, name: str) -> tuple[int, Failure | None]:
        """Count a start on the held `name`: (starts so far, a "worker_lost" failure when the deliveries
        before this one all died without finishing, maxReceiveCount starts in all). So a chunk that
        kills its worker (killed, out of memory, a hard time limit) ends instead of looping."""
        starts = locks.count_start(name, self.settings)
        if starts < max_receive_count(self.settings):
            return starts, None
        death = locks.last_death(name, self.settings) or "the worker was killed"
        return starts, Failure("worker_lost", f"{starts - 1} earlier deliveries died without finishing "
                               f"(last: {death})", starts)

    # --- failed for good --------------------------------------------------------------------
    def dead_letter(self, failure: Failure) -> None:
        """Put the task on the dead-letter queue with why it is there (for `dlq list` and `dlq replay`)."""
        send_dead_letter(self.task, self.args, self.kwargs, error=failure.error, reason=failure.reason,
                         attempts=failure.attempts, task_id=self.task_id, app=self.celery, settings=self.settings)

    # --- Celery ---------------------------------------------------------------------------
    def retry_kwargs(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of the next delivery: the task's own, the counters, `changes`."""
        return {**self.kwargs, "attempt": self.attempt, "lease_waits": self.lease_waits, **changes}

    def _later(self, countdown: float, changes: dict[str, Any], reason: str) -> RetryLater:
        return RetryLater(countdown, changes, reason, self)


@contextmanager
def retried_by(task: Task, log_as: str | None = None) -> Iterator[None]:
    """Turn a `RetryLater` raised in the block into `task.retry(...)`: the delivery's task arguments
    (so a chord callback's extra leading argument is dropped), its counters changed, after the
    countdown. Logged as `<log_as> in=<countdown>s reason=<why>` (e.g. `chunk_retry key=...`)."""
    try:
        yield
    except RetryLater as later:
        if later.delivery is None:
            raise
        d = later.delivery
        log.info("%s in=%.1fs reason=%s", log_as or f"task_retry task={d.task}", later.countdown, later.reason)
        raise task.retry(args=tuple(d.args), kwargs=d.retry_kwargs(later.kwargs), countdown=later.countdown) from None


_redrive_limit: dict[str, int | None] = {}


def max_receive_count(s: Settings) -> int:
    """Starts before a dying delivery is given up: the SQS queue's own maxReceiveCount when it can be
    read (so both agree), else MAX_RECEIVE_COUNT; at least 2 (one death may be bad luck)."""
    if s.transcribe_queue not in _redrive_limit:
        _redrive_limit[s.transcribe_queue] = broker.redrive_max_receive_count(s)
    return max(2, _redrive_limit[s.transcribe_queue] or s.max_receive_count)
