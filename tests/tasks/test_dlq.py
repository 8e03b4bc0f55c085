"""Dead letters on both brokers without a worker: explicit ones with a reason, ones SQS's redrive
policy moved after maxReceiveCount receives, and undecodable ones; list, replay, drop.

The redrive is real (moto's SQS); only the consumer that "dies" is played by the test: it receives
the message and never deletes it, which is what SQS sees when a worker is killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from tasks.broker import ensure_queues, queue_url, redis_broker, sqs_client
from tasks.celery_app import COMBINE_TASK, TRANSCRIBE_TASK
from tasks.dlq import DeadLetterQueue, parse_envelope
from tasks.enqueue import send_dead_letter
from tests.support.services import VENV_BIN
from tests.support.worker import producer, settings_for, worker_env
from tests.tasks.messages import pickle_envelope, sqs_body

KEY = "sessions/s1/chunks/4.wav"


def _receive_all(client, url: str) -> list[dict]:
    out = []
    while msgs := client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages"):
        out += msgs
    return out


def test_sqs_queue_pair_redrive_list_replay_drop(moto, tmp_path) -> None:
    env = worker_env(moto, "sqs", MAX_RECEIVE_COUNT="1", VISIBILITY_TIMEOUT_S="1")
    s = settings_for(env)
    urls = ensure_queues(s)
    assert ensure_queues(s) == urls  # idempotent
    client = sqs_client(s)
    attrs = client.get_queue_attributes(QueueUrl=urls[s.transcribe_queue], AttributeNames=["All"])["Attributes"]
    policy = json.loads(attrs["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == 1 and policy["deadLetterTargetArn"].endswith(s.dead_letter_queue)
    assert attrs["VisibilityTimeout"] == "1"
    app = producer(env)

    # a task whose consumer "dies": received once, never deleted -> SQS moves it to the DLQ
    app.send_task(TRANSCRIBE_TASK, args=["bkt", KEY], queue=s.transcribe_queue)
    url = urls[s.transcribe_queue]
    assert client.receive_message(QueueUrl=url, WaitTimeSeconds=2).get("Messages")
    time.sleep(1.5)
    assert not client.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages")
    # an explicit dead letter and a message nobody may decode
    send_dead_letter(COMBINE_TASK, ["s9"], {"bucket": "bkt"}, error="storage", reason="S3 kept failing", attempts=3,
                     app=app, settings=s)
    client.send_message(QueueUrl=urls[s.dead_letter_queue],
                        MessageBody=sqs_body(pickle_envelope(s.dead_letter_queue, str(tmp_path / "never"))))

    dlq = DeadLetterQueue(s, app)
    letters = {x.kind: x for x in dlq.letters()}
    assert set(letters) == {"redriven", "explicit", "undecodable"}
    assert letters["redriven"].args == ["bkt", KEY] and "redrive" in letters["redriven"].reason
    assert letters["explicit"].task == COMBINE_TASK and letters["explicit"].reason == "S3 kept failing"
    assert letters["explicit"].attempts == 3 and letters["explicit"].key == "s9"
    assert letters["undecodable"].error == "refused_content" and letters["undecodable"].args is None
    assert len(dlq.letters()) == 3  # listing leaves them in place

    out = subprocess.run([str(VENV_BIN / "stt-router"), "dlq", "list"], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert KEY in out.stdout and "S3 kept failing" in out.stdout and "3 dead letter(s)" in out.stdout

    done, problems = dlq.replay(all_=True)
    assert sorted(x.kind for x in done) == ["explicit", "redriven"]
    assert len(problems) == 1 and "not replayable" in problems[0]
    back = [parse_envelope(m["Body"], m["MessageId"]) for m in _receive_all(client, url)]
    assert {(b.task, tuple(b.args)) for b in back} == {(TRANSCRIBE_TASK, ("bkt", KEY)), (COMBINE_TASK, ("s9",))}
    assert next(b for b in back if b.task == TRANSCRIBE_TASK).kwargs == {"force": True}
    assert next(b for b in back if b.task == COMBINE_TASK).kwargs == {"bucket": "bkt"}

    remaining = dlq.letters()
    assert [x.kind for x in remaining] == ["undecodable"]
    done, problems = dlq.drop([remaining[0].id])
    assert len(done) == 1 and not problems and dlq.letters() == []
    assert not (tmp_path / "never").exists()  # nothing was ever unpickled


def test_redis_dead_letters_list_replay_by_key(moto) -> None:
    env = worker_env(moto, "redis")
    s = settings_for(env)
    app = producer(env)
    dlq = DeadLetterQueue(s, app)
    try:
        send_dead_letter(TRANSCRIBE_TASK, ["bkt", KEY], error="bad_audio", reason="not a RIFF file", attempts=1,
                         task_id="t-1", app=app, settings=s)
        send_dead_letter(TRANSCRIBE_TASK, ["bkt", "sessions/s1/chunks/5.wav"], error="bad_audio", reason="empty",
                         attempts=1, task_id="t-2", app=app, settings=s)
        letters = dlq.letters()
        assert [(x.id, x.key, x.reason) for x in sorted(letters, key=lambda x: x.id)] == [
            ("t-1", KEY, "not a RIFF file"), ("t-2", "sessions/s1/chunks/5.wav", "empty")]
        done, problems = dlq.replay([KEY, "nope"])
        assert [x.id for x in done] == ["t-1"] and problems == ["nope: no such dead letter"]
        assert [x.id for x in dlq.letters()] == ["t-2"]
        queued = redis_broker(s).lrange(s.transcribe_queue, 0, -1)
        assert len(queued) == 1
        replayed = parse_envelope(queued[0], "x")
        assert replayed.args == ["bkt", KEY] and replayed.kwargs == {"force": True} and replayed.id != "t-1"
    finally:
        redis_broker(s).delete(s.transcribe_queue, s.dead_letter_queue)


def test_queue_url_uses_predefined_urls_without_calls(moto) -> None:
    s = settings_for(worker_env(moto, "sqs", SQS_QUEUE_URL="https://sqs.x/1/q", SQS_DLQ_URL="https://sqs.x/1/d"))
    assert queue_url(s.transcribe_queue, s) == "https://sqs.x/1/q"
    assert queue_url(s.dead_letter_queue, s) == "https://sqs.x/1/d"
