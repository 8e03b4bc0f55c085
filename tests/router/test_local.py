"""The local EventBridge loop's own behaviour on moto: setup keeps what the bucket had, a failed
invocation comes back (like EventBridge's retry), a handled one is deleted. The handler here is a
small real function standing in for the router, to make an invocation fail on purpose."""

from __future__ import annotations

import json
import threading
import time

from router_lambda import local
from router_lambda.events import ObjectCreated, parse_event
from tests.support.services import unique, wait_for
from transcription.settings import Settings


def test_setup_is_idempotent_and_keeps_other_notifications(moto) -> None:
    s3, sqs = moto.client("s3"), moto.client("sqs")
    bucket = unique("local")
    s3.create_bucket(Bucket=bucket)
    other = sqs.create_queue(QueueName=unique("other"))["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": other_arn, "Events": ["s3:ObjectCreated:*"]}]})
    settings = Settings(s3_bucket=bucket)
    queue, rule = unique("events"), unique("rule")
    url = local.setup(bucket, settings, queue=queue, rule=rule)
    assert local.setup(bucket, settings, queue=queue, rule=rule) == url
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] in (local.MAX_RECEIVES, str(local.MAX_RECEIVES))
    targets = moto.client("events").list_targets_by_rule(Rule=rule)["Targets"]
    assert [t["Arn"] for t in targets] == [attrs["QueueArn"]]

    # one upload: the EventBridge event reaches the rule's queue, and the bucket's own S3 notification
    # (kept by setup) still reaches the other queue, as `Records` the router parses too
    key = "sessions/s 1+x/chunks/0.wav"  # URL-encoded in the S3 notification, not in EventBridge's event
    s3.put_object(Bucket=bucket, Key=key, Body=b"RIFF")
    bodies: dict[str, list[dict]] = {"eventbridge": [], "s3": []}

    def arrived() -> bool:
        for name, q in (("eventbridge", url), ("s3", other)):
            for m in sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                bodies[name].append(json.loads(m["Body"]))
        return all(any("Records" in b or "detail" in b for b in v) for v in bodies.values())

    wait_for(arrived, 30, interval=0, what="both notifications")
    for name, events in bodies.items():
        parsed = [p for e in events for p in parse_event(e)]
        created = [p for p in parsed if isinstance(p, ObjectCreated)]
        assert [(p.key, p.size, p.source, p.bucket) for p in created] == [(key, 4, name, bucket)], parsed
        # anything else is S3's test event sent when the queue was configured: skipped, with the reason
        assert all(p.reason == "S3 test event" for p in parsed if not isinstance(p, ObjectCreated))
    raw = next(b for b in bodies["s3"] if "Records" in b)["Records"][0]["s3"]["object"]["key"]
    assert raw != key  # S3 notifications URL-encode the key; the router decoded it


def test_a_failed_invocation_comes_back_and_a_handled_one_is_deleted(moto) -> None:
    s3, sqs = moto.client("s3"), moto.client("sqs")
    bucket = unique("local")
    s3.create_bucket(Bucket=bucket)
    settings = Settings(s3_bucket=bucket)
    url = local.setup(bucket, settings, queue=unique("events"), rule=unique("rule"))
    calls: list[tuple[float, dict, float]] = []

    def flaky(event, context):
        calls.append((time.monotonic(), event, context.get_remaining_time_in_millis()))
        if len(calls) == 1:
            raise RuntimeError("SQS is down (on purpose)")
        return {"decisions": []}

    loop = local.Loop(url, settings, concurrency=2, wait_s=1, timeout_s=30, handler=flaky)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        s3.put_object(Bucket=bucket, Key="sessions/s1/chunks/0.wav", Body=b"RIFF")
        wait_for(lambda: len(calls) >= 2, 40, what="the event delivered a second time")
    finally:
        loop.stop.set()
        thread.join(15)
    (t1, e1, left1), (t2, e2, _) = calls[:2]
    assert e1 == e2 and e1["detail"]["object"]["key"] == "sessions/s1/chunks/0.wav"  # unchanged, as S3 sent it
    assert 25_000 < left1 <= 30_000  # the function's timeout, as a Lambda context says it
    assert t2 - t1 >= local.RETRY_DELAY_S[0] - 0.5
    assert loop.invocations == 2 and loop.failures == 1
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                   "ApproximateNumberOfMessagesNotVisible"])
    assert attrs["Attributes"] == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
