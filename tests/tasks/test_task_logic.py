"""The tasks' decisions, run in this process against real services (moto's S3 and SQS, Redis):
retry with backoff then fail, concurrent combine triggers and combines giving one result.
A Redis outage is a real refused connection (a port nothing listens on), not a mock."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.broker import ensure_queues, sqs_client
from tasks.combine import run_combine
from tasks.delivery import RetryLater
from tasks.dlq import DeadLetterQueue, parse_envelope
from tasks.enqueue import trigger_combine
from tasks.transcribe import run_chunk
from tests.support.worker import producer, settings_for, worker_env
from tests.tasks.test_sessions import chunk, transcribe
from transcription import layout, sessions, storage
from transcription.transcript import FailedChunk


def test_redis_outage_retries_with_backoff_then_fails_with_the_reason(moto, bucket, speech_files) -> None:
    env = worker_env(moto, "sqs", REDIS_URL="redis://127.0.0.1:1/0", TASK_MAX_RETRIES="2")
    s = settings_for(env)
    ensure_queues(s)
    app = producer(env)
    key = "sessions/flaky/chunks/0.wav"
    moto.client("s3").put_object(Bucket=bucket, Key=key, Body=speech_files[0].read_bytes())
    for attempt in (1, 2):
        with pytest.raises(RetryLater) as r:
            run_chunk(bucket, key, attempt=attempt, settings=s, celery=app)
        assert r.value.kwargs == {"attempt": attempt + 1}
        assert 0.5 <= r.value.countdown <= s.task_retry_backoff_s * 2 ** (attempt - 1)
        assert r.value.reason.startswith("network: redis")
    out = run_chunk(bucket, key, attempt=3, settings=s, celery=app, task_id="flaky-1")
    assert out["status"] == "failed" and out["error"] == "network"
    record = FailedChunk.model_validate(storage.get_json(bucket, layout.failed_key("flaky", 0)))
    assert record.attempts == 3 and "gave up after 3 attempts" in record.reason
    [letter] = DeadLetterQueue(s, app).letters()
    assert (letter.id, letter.key, letter.error) == ("flaky-1", key, "network")


def test_bad_keys_fail_fast_with_a_dead_letter_and_nothing_written(moto, bucket) -> None:
    env = worker_env(moto, "sqs")
    s = settings_for(env)
    ensure_queues(s)
    app = producer(env)
    for key in ("sessions/../etc/chunks/1.wav", "transcripts/x/chunks/1.json", "sessions/a/chunks/1.exe"):
        out = run_chunk(bucket, key, settings=s, celery=app)
        assert out["status"] == "failed" and out["error"] == "bad_key"
    assert list(storage.list_keys(bucket, "")) == []
    assert {x.error for x in DeadLetterQueue(s, app).letters()} == {"bad_key"}


def test_concurrent_triggers_and_combines_give_one_result(moto, bucket) -> None:
    env = worker_env(moto, "sqs")
    s = settings_for(env)
    urls = ensure_queues(s)
    app = producer(env)
    s3 = moto.client("s3")
    s3.put_object(Bucket=bucket, Key="sessions/race/manifest.json", Body=json.dumps({"total_chunks": 2}).encode())
    for i, word in enumerate(["left", "right"]):
        s3.put_object(Bucket=bucket, Key=f"sessions/race/chunks/{i}.wav", Body=b"RIFF")
        transcribe(bucket, chunk("race", i, word))
    with ThreadPoolExecutor(8) as pool:
        triggered = list(pool.map(lambda _: trigger_combine(bucket, "race", app=app, settings=s), range(8)))
    assert triggered.count(True) == 1
    msgs = sqs_client(s).receive_message(QueueUrl=urls[s.transcribe_queue], MaxNumberOfMessages=10,
                                         WaitTimeSeconds=1).get("Messages", [])
    assert [parse_envelope(m["Body"], "m").task for m in msgs] == ["tasks.combine_session"]

    def combine(_: int) -> str:
        try:
            return run_combine(bucket, "race", settings=s, celery=app)["status"]
        except RetryLater:  # the lease holder is combining: this one would wait and find it done
            return "waits"

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(combine, range(6)))
    assert outcomes.count("combined") == 1 and set(outcomes) <= {"combined", "exists", "waits"}
    assert sessions.stored_session_transcript(bucket, "race").text == "left right"
    assert run_combine(bucket, "race", settings=s, celery=app)["status"] == "exists"
    # as a chord callback: the header's results come first and are ignored
    from tasks.combine import combine_session

    assert combine_session.run([{"status": "transcribed"}], "race", bucket=bucket)["status"] == "exists"


def test_duplicate_deliveries_of_a_bad_chunk_racing_give_one_dead_letter(moto, bucket) -> None:
    """Eight deliveries of one corrupt upload at once (its event came twice, SQS delivered again):
    one failed record and one dead letter. A forced replay that fails again gets its own."""
    env = worker_env(moto, "sqs")
    s = settings_for(env)
    ensure_queues(s)
    app = producer(env)
    key = "sessions/dup-bad/chunks/0.wav"
    moto.client("s3").put_object(Bucket=bucket, Key=key, Body=b"RIFF\x00\x10\x00\x00WAVEfmt not audio at all")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: _settled(bucket, key, s, app), range(8)))
    assert statuses.count("failed") == 1, statuses
    assert set(statuses) <= {"failed", "already_failed", "left_to_lease_holder"}, statuses
    [letter] = DeadLetterQueue(s, app).letters()
    assert letter.key == key and letter.error == "bad_audio"
    assert run_chunk(bucket, key, force=True, settings=s, celery=app)["status"] == "failed"  # a replay
    assert len(DeadLetterQueue(s, app).letters()) == 2


def _settled(bucket: str, key: str, s, app) -> str:
    """One delivery run to its end, its lease waits included (what the worker's retries would do)."""
    waits = 0
    while True:
        try:
            return run_chunk(bucket, key, lease_waits=waits, settings=s, celery=app)["status"]
        except RetryLater as r:
            waits = r.kwargs.get("lease_waits", waits)
            time.sleep(0.05)


def test_record_failure_is_first_once_per_upload(moto, bucket) -> None:
    s3 = moto.client("s3")
    key = "sessions/rec/chunks/0.wav"
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    c = layout.parse_chunk_key(key)
    record = FailedChunk(session_id="rec", chunk_index=0, source_key=key, error="bad_audio", reason="no")
    assert sessions.record_failure(bucket, c, record) is True
    assert sessions.record_failure(bucket, c, record) is False  # the same upload: already recorded
    assert sessions.record_failure(bucket, c, record, replace=True) is True  # a forced replay
    time.sleep(1.1)  # S3's LastModified has whole seconds
    s3.put_object(Bucket=bucket, Key=key, Body=b"y")  # uploaded again: newer than its record
    assert sessions.record_failure(bucket, c, record) is True
