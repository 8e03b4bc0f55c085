"""The completion event for real: moto's EventBridge delivers "Session Transcript Ready" to an SQS
target through a rule, and the test reads that queue. Combines run in this process (real Redis
leases, moto's S3) and, for a worker killed mid-combine, in real `stt-router worker` processes."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.broker import ensure_queues
from tasks.combine import run_combine
from tasks.delivery import RetryLater
from tasks.enqueue import enqueue_chunk, trigger_combine
from tasks.locks import combine_name, is_held
from tests.support.services import unique, wait_for
from tests.support.worker import producer, settings_for, start_worker, worker_env
from tests.tasks.test_sessions import chunk, fail, transcribe
from transcription import events, layout, sessions

pytestmark = pytest.mark.timeout(600)


class Target:
    """A bus, a rule matching the event, and the SQS queue it delivers to."""

    def __init__(self, moto) -> None:
        self.bus = unique("bus")
        self.sqs = moto.client("sqs")
        self.url = self.sqs.create_queue(QueueName=unique("session-events"))["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        eb = moto.client("events")
        eb.create_event_bus(Name=self.bus)
        eb.put_rule(Name="ready", EventBusName=self.bus, EventPattern=json.dumps(
            {"source": [events.SOURCE], "detail-type": [events.DETAIL_TYPE]}))
        eb.put_targets(Rule="ready", EventBusName=self.bus, Targets=[{"Id": "q", "Arn": arn}])

    def received(self, wait_s: int = 2) -> list[dict]:
        """Every event on the queue now (each message deleted once read)."""
        out = []
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=wait_s).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
            wait_s = 0


@pytest.fixture
def rig(moto, bucket):
    target = Target(moto)
    env = worker_env(moto, "sqs", S3_BUCKET=bucket, EVENT_BUS_NAME=target.bus, BOUNDARY_REPAIR="false")
    s = settings_for(env)
    ensure_queues(s)
    return target, s, producer(env)


def session(moto, bucket: str, sid: str, n: int, failed: tuple[int, ...] = ()) -> None:
    s3 = moto.client("s3")
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(sid), Body=json.dumps({"total_chunks": n}).encode())
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"sessions/{sid}/chunks/{i}.wav", Body=b"RIFF")
        if i in failed:
            fail(bucket, sid, i, "not audio")
        else:
            transcribe(bucket, chunk(sid, i, f"word{i}"))


def test_one_event_per_combine_result_even_when_combined_twice_or_at_once(moto, bucket, rig) -> None:
    target, s, app = rig
    session(moto, bucket, "ev1", 3, failed=(1,))

    def combine(_: int) -> str:
        try:
            return run_combine(bucket, "ev1", settings=s, celery=app)["status"]
        except RetryLater:  # the lease holder is combining: this one would wait and find it done
            return "waits"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(combine, range(4)))
    assert outcomes.count("combined") == 1
    assert run_combine(bucket, "ev1", settings=s, celery=app)["status"] == "exists"  # the combine runs twice
    [event] = target.received()
    assert event["source"] == "stt-router" and event["detail-type"] == "Session Transcript Ready"
    d = event["detail"]
    stored = sessions.stored_session_transcript(bucket, "ev1")
    assert d["session_id"] == "ev1" and d["status"] == "partial" and d["bucket"] == bucket
    assert d["counts"] == {"chunks": 3, "transcribed": 2, "failed": 1, "missing": 0}
    assert d["failed"] == [{"index": 1, "status": "failed", "reason": "not audio"}]
    assert d["duration_s"] == stored.duration == 12.0 and d["total_chunks"] == 3
    assert d["transcript_keys"]["json"] == "transcripts/ev1/session.json"
    assert d["event_id"] == events.event_id("ev1", stored.created_at)
    events.SessionEvent.model_validate(d)  # the documented schema

    # the failed chunk is replayed and transcribed: a new combine result, so one new event
    transcribe(bucket, chunk("ev1", 1, "word1"))
    assert trigger_combine(bucket, "ev1", app=app, settings=s)
    assert run_combine(bucket, "ev1", settings=s, celery=app)["status"] == "combined"
    assert run_combine(bucket, "ev1", settings=s, celery=app)["status"] == "exists"
    [again] = target.received()
    assert again["detail"]["status"] == "combined" and again["detail"]["failed"] == []
    assert again["detail"]["event_id"] != d["event_id"]


def test_a_combine_that_died_after_writing_sends_the_event_when_redelivered(moto, bucket, rig) -> None:
    target, s, app = rig
    session(moto, bucket, "ev2", 2)
    # what a worker killed between the write and the event leaves behind: the transcript, no event
    t = sessions.build_session_transcript(bucket, "ev2", settings=s)
    assert sessions.write_session_transcript(bucket, t, settings=s)
    assert target.received(wait_s=1) == []
    out = run_combine(bucket, "ev2", settings=s, celery=app)  # the redelivered message
    assert out["status"] == "exists" and out["event_id"] == events.event_id("ev2", t.created_at)
    assert run_combine(bucket, "ev2", settings=s, celery=app)["status"] == "exists"
    assert [e["detail"]["event_id"] for e in target.received()] == [out["event_id"]]


def test_no_bus_no_event_and_a_failing_bus_retries(moto, bucket, rig) -> None:
    target, s, app = rig
    session(moto, bucket, "ev3", 1)
    missing = s.model_copy(update={"event_bus_name": unique("no-such-bus")})
    with pytest.raises(RetryLater) as r:  # PutEvents refused: the combine is retried, and sends it then
        run_combine(bucket, "ev3", settings=missing, celery=app)
    assert "PutEvents" in r.value.reason
    assert sessions.stored_session_transcript(bucket, "ev3") is not None
    assert run_combine(bucket, "ev3", settings=s, celery=app)["status"] == "exists"
    assert len(target.received()) == 1
    quiet = s.model_copy(update={"event_bus_name": None})
    session(moto, bucket, "ev4", 1)
    assert "event_id" not in run_combine(bucket, "ev4", settings=quiet, celery=app)
    assert target.received(wait_s=1) == []


def test_a_worker_killed_mid_combine(moto, bucket, speech_files) -> None:
    """A real worker combining a session (boundary repair on: seconds of engine work under the
    combine lease) is killed with SIGKILL; a second worker gets the message again after the
    visibility timeout and combines it: one event on the queue."""
    target = Target(moto)
    env = {**worker_env(moto, "sqs", S3_BUCKET=bucket, EVENT_BUS_NAME=target.bus, BOUNDARY_REPAIR="true")}
    s = settings_for(env)
    app = producer(env)
    s3 = moto.client("s3")
    sid = unique("kill")
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(sid), Body=b'{"total_chunks": 3}')
    victim = start_worker(env, "worker-victim")
    try:
        for i in range(3):
            key = f"sessions/{sid}/chunks/{i}.wav"
            s3.put_object(Bucket=bucket, Key=key, Body=speech_files[i].read_bytes())
            enqueue_chunk(bucket, key, app=app, settings=s)
        # the last chunk's completion check queues the combine: kill the worker while it runs
        wait_for(lambda: is_held(combine_name(bucket, sid), s), 300, interval=0.02, what="the combine lease")
        victim.kill()
    finally:
        victim.stop()
    assert events.sent_event_id(bucket, sid, settings=s) is None and target.received(wait_s=1) == []
    survivor = start_worker(env, "worker-survivor")
    try:
        wait_for(lambda: events.sent_event_id(bucket, sid, settings=s) is not None, 240,
                 what=f"the redelivered combine and its event ({survivor.log_path})")
        stored = sessions.stored_session_transcript(bucket, sid, settings=s)
        assert stored is not None  # (partial if a chunk hit the test's 20 s time limit on a loaded machine)
        got = target.received(wait_s=5)
        assert [e["detail"]["event_id"] for e in got] == [events.event_id(sid, stored.created_at)]
        assert "session_combined" in survivor.output()
    finally:
        survivor.stop()
