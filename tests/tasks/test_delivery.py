"""The delivery object on its own, as the coming tasks will use it: any task name retried with backoff
and dead-lettered after its last attempt, several leases claimed at once (each its own), starts
counted against maxReceiveCount. Real Redis (leases, the Redis broker's dead-letter queue) and
Celery's own eager `apply`, which runs a task's retries in this process without a worker."""

from __future__ import annotations

from typing import Any

import pytest

from tasks import locks
from tasks.broker import redis_broker
from tasks.celery_app import make_app
from tasks.delivery import Delivery, Failure, RetryLater, retried_by
from tasks.dlq import DeadLetterQueue
from tasks.retry import MAX_LEASE_WAITS
from tests.support.services import unique
from tests.support.worker import REDIS_BROKER_DB
from transcription.errors import AudioError, NetworkError
from transcription.settings import Settings

WEBHOOK = "tests.send_webhook"


def redis_settings(redis_url: str, **extra: Any) -> Settings:
    """Leases on the shared Redis; the broker (for dead letters) in its own database there."""
    return Settings(redis_url=redis_url, celery_broker_url=f"{redis_url.rsplit('/', 1)[0]}/{REDIS_BROKER_DB}",
                    transcribe_queue=unique("transcribe"), dead_letter_queue=unique("transcribe-dlq"),
                    task_retry_backoff_s=1, task_max_retries=2, lease_ttl_s=5, **extra)


def test_failure_permanent_at_once_transient_with_backoff_then_given_up() -> None:
    s = Settings(task_retry_backoff_s=2, task_max_retries=2, visibility_timeout_s=60)
    first = Delivery(WEBHOOK, ["evt-1"], settings=s)
    assert first.failure(AudioError("not audio")) == Failure("bad_audio", "not audio", 1)
    with pytest.raises(RetryLater) as later:
        first.failure(NetworkError("connection refused"))
    assert later.value.kwargs == {"attempt": 2} and 0.5 <= later.value.countdown <= 2
    assert later.value.reason == "network: connection refused" and later.value.delivery is first
    with pytest.raises(RetryLater) as later:
        Delivery(WEBHOOK, ["evt-1"], attempt=2, settings=s).failure(ValueError("a bug"))
    assert later.value.reason == "internal: ValueError: a bug"
    last = Delivery(WEBHOOK, ["evt-1"], attempt=3, settings=s).failure(NetworkError("connection refused"))
    assert last == Failure("network", "connection refused (gave up after 3 attempts)", 3)


def test_next_delivery_keeps_the_task_arguments_and_counters() -> None:
    d = Delivery(WEBHOOK, ["evt-1"], {"url": "https://example.org/hook"}, attempt=2, lease_waits=3,
                 settings=Settings())
    assert d.retry_kwargs({"attempt": 3}) == {"url": "https://example.org/hook", "attempt": 3, "lease_waits": 3}


def test_any_task_retries_with_backoff_then_dead_letters_itself(redis_url: str) -> None:
    """A webhook-like task: every attempt fails on the network; after TASK_MAX_RETRIES retries (run by
    Celery's eager apply with the kwargs `retried_by` gives each retry) it is on the dead-letter queue
    under its own name and arguments, with the reason, and `dlq replay` may send it again."""
    s = redis_settings(redis_url)
    app = make_app(s)
    attempts: list[int] = []

    @app.task(bind=True, name=WEBHOOK, max_retries=None)
    def send_webhook(self: Any, event_id: str, attempt: int = 1, lease_waits: int = 0) -> dict[str, Any]:
        attempts.append(attempt)
        delivery = Delivery(WEBHOOK, [event_id], attempt=attempt, task_id=self.request.id, settings=s, celery=app)
        with retried_by(self, f"webhook_retry event={event_id}"):
            try:
                raise NetworkError("receiver refused the connection")
            except NetworkError as e:
                failure = delivery.failure(e)
                delivery.dead_letter(failure)
                return {"status": "failed", **failure.as_dict()}

    try:
        out = send_webhook.apply(args=["evt-7"], task_id="hook-1").get()
        assert attempts == [1, 2, 3]
        assert out == {"status": "failed", "error": "network",
                       "reason": "receiver refused the connection (gave up after 3 attempts)"}
        [letter] = DeadLetterQueue(s, app).letters()
        assert (letter.task, letter.args, letter.kwargs, letter.error, letter.attempts) == (
            WEBHOOK, ["evt-7"], {}, "network", 3)
        assert letter.id == "hook-1"
    finally:
        redis_broker(s).delete(s.transcribe_queue, s.dead_letter_queue)


def test_several_leases_each_its_own_and_waiting_for_their_holders(redis_url: str) -> None:
    s = redis_settings(redis_url)
    names = [unique("chunk-a"), unique("chunk-b")]
    other = locks.Lease(names[1], 5, s)
    assert other.acquire()
    try:
        d = Delivery("tests.transcribe_run", ["bkt", names], settings=s)
        with d.leases(names) as claim:
            assert list(claim.held) == [names[0]] and [lease.key for lease in claim.busy] == [other.key]
            with pytest.raises(RetryLater) as later:
                d.wait_for_holders(claim, "another worker holds a chunk of this run")
            assert later.value.kwargs == {"lease_waits": 1} and 1 <= later.value.countdown <= 5.5
            patient = Delivery("tests.transcribe_run", ["bkt", names], lease_waits=MAX_LEASE_WAITS, settings=s)
            assert patient.wait_for_holders(claim, "still busy") is None  # waited enough: leave it to the holder
            assert not locks.Lease(names[0], 5, s).acquire()  # held by this delivery for the block
        mine = locks.Lease(names[0], 5, s)
        assert mine.acquire()  # released after the block
        mine.release()
        assert locks.is_held(names[1], s)  # the other holder's lease is not touched
    finally:
        other.release()


def test_starts_counted_until_the_earlier_deliveries_all_died(redis_url: str) -> None:
    s = redis_settings(redis_url, max_receive_count=3)
    name = unique("chunk")
    d = Delivery("tests.transcribe_run", ["bkt", name], settings=s)
    try:
        assert d.count_start(name) == (1, None)
        locks.note_death(name, "worker process lost: SIGKILL")
        assert d.count_start(name) == (2, None)
        starts, died = d.count_start(name)
        assert starts == 3 and died == Failure(
            "worker_lost", "2 earlier deliveries died without finishing (last: worker process lost: SIGKILL)", 3)
    finally:
        locks.clear_starts(name, s)
