"""Event parsing, the decision log line (EMF) and the rule pattern: pure functions, no services.

The events S3 really produces are tested in test_routing.py (moto's S3 -> EventBridge -> SQS);
here are the shapes S3 and EventBridge document, and the malformed ones nobody should send.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router_lambda.emf import NAMESPACE, UNITS, emf_record, emit
from router_lambda.events import EVENTBRIDGE, S3_RECORD, ObjectCreated, Unusable, parse_event, rule_pattern

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"


def eventbridge(key: str, size=5, etag="b1946ac92492d2347c6235b4d2611184", bucket="stt-bucket", **over) -> dict:
    """The documented shape (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html)."""
    event = {"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
             "source": "aws.s3", "account": "111122223333", "time": "2021-11-12T00:00:00Z", "region": "us-east-1",
             "resources": [f"arn:aws:s3:::{bucket}"],
             "detail": {"version": "0", "bucket": {"name": bucket},
                        "object": {"key": key, "size": size, "etag": etag, "sequencer": "617f08299329d189"},
                        "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "reason": "PutObject"}}
    event.update(over)
    return event


def s3_record(key: str, size=5, etag="abc", bucket="stt-bucket", name="ObjectCreated:Put") -> dict:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": {"key": key, "size": size, "eTag": etag}}}


def test_eventbridge_event() -> None:
    [p] = parse_event(eventbridge("sessions/m1/chunks/0003.wav", size=1234))
    assert p == ObjectCreated("stt-bucket", "sessions/m1/chunks/0003.wav", 1234, "b1946ac92492d2347c6235b4d2611184",
                              EVENTBRIDGE)


def test_many_s3_records_are_url_decoded() -> None:
    event = {"Records": [s3_record("sessions/m1/chunks/1.wav"), s3_record("sessions/my+talk/chunks/2.wav"),
                         s3_record("sessions/a%2Bb/chunks/3.wav", etag='"quoted"')]}
    parsed = parse_event(event)
    assert [p.key for p in parsed] == ["sessions/m1/chunks/1.wav", "sessions/my talk/chunks/2.wav",
                                       "sessions/a+b/chunks/3.wav"]
    assert all(isinstance(p, ObjectCreated) and p.source == S3_RECORD for p in parsed)
    assert parsed[2].etag == "quoted"


def test_eventbridge_keys_keep_a_plus() -> None:
    [p] = parse_event(eventbridge("sessions/a+b/chunks/1.wav"))
    assert p.key == "sessions/a+b/chunks/1.wav"
    [p] = parse_event(eventbridge("sessions/a%20b/chunks/1.wav"))
    assert p.key == "sessions/a b/chunks/1.wav"


@pytest.mark.parametrize(("event", "reason"), [
    (None, "not a JSON object"),
    ("sessions/x/chunks/1.wav", "not a JSON object"),
    ([1, 2], "not a JSON object"),
    ({}, "not an EventBridge event or S3 notification"),
    ({"Records": []}, "empty or malformed Records"),
    ({"Records": "x"}, "empty or malformed Records"),
    ({"Records": [42]}, "record is not a JSON object"),
    ({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, "not an S3 notification"),
    ({"Records": [s3_record("sessions/x/chunks/1.wav", name="ObjectRemoved:Delete")]}, "not an object-created"),
    ({"Records": [{"eventName": "ObjectCreated:Put", "s3": "x"}]}, "s3 field is not a JSON object"),
    ({"Event": "s3:TestEvent", "Bucket": "b"}, "S3 test event"),
    (eventbridge("k", **{"detail-type": "Object Deleted"}), "not an Object Created event"),
    (eventbridge("k", source="aws.ec2"), "not an S3 event"),
    (eventbridge("k", detail="oops"), "without a detail object"),
    ({"detail-type": "Object Created", "source": "aws.s3", "detail": {"object": {"key": "k"}}}, "no bucket name"),
    (eventbridge(""), "no object key"),
    (eventbridge(None), "no object key"),
    (eventbridge("sessions/x/chunks/1.wav", size=-1), "size is not a whole number"),
    (eventbridge("sessions/x/chunks/1.wav", size="12"), "size is not a whole number"),
    (eventbridge("sessions/x/chunks/1.wav", size=True), "size is not a whole number"),
    (eventbridge("sessions/x/chunks/1.wav", etag=7), "etag is not a string"),
])
def test_malformed_events_become_reasons_never_exceptions(event, reason) -> None:
    [p] = parse_event(event)
    assert isinstance(p, Unusable) and reason in p.reason, p


def test_a_record_flood_is_refused_whole() -> None:
    [p] = parse_event({"Records": [s3_record(f"sessions/x/chunks/{i}.wav") for i in range(1001)]})
    assert isinstance(p, Unusable) and "more than 1000" in p.reason


def test_the_decision_line_is_valid_emf() -> None:
    import io

    buf = io.StringIO()
    line = emit(emf_record({"event": "router_decision", "decision": "queued", "key": "k"},
                           {"Records": 1, "DecisionMs": 12.5, "DirectAttempts": 3}, timestamp_ms=1700000000000), buf)
    assert buf.getvalue() == line + "\n" and "\n" not in line
    doc = json.loads(line)
    meta = doc["_aws"]
    assert meta["Timestamp"] == 1700000000000
    [directive] = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    for dims in directive["Dimensions"]:  # every dimension is a string member of the document
        assert all(isinstance(doc[d], str) for d in dims)
    for m in directive["Metrics"]:  # every metric is a number member with a CloudWatch unit
        assert isinstance(doc[m["Name"]], float) and m["Unit"] == UNITS[m["Name"]]
    assert doc["decision"] == "queued" and doc["DirectAttempts"] == 3.0
    with pytest.raises(ValueError):
        emf_record({"decision": "queued"}, {"Bogus": 1})
    with pytest.raises(ValueError):
        emf_record({}, {"Records": 1})


def test_the_local_rule_pattern_is_the_templates() -> None:
    """router-local's rule and the deployment's rule select the same events."""
    from cfnlint.decode import decode

    tpl, errors = decode(str(TEMPLATE))
    assert not errors
    pattern = tpl["Resources"]["ChunkUploadedRule"]["Properties"]["EventPattern"]
    local = rule_pattern("BUCKET")
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "TranscriptBucket"}]
    pattern = json.loads(json.dumps(pattern).replace('{"Ref": "TranscriptBucket"}', '"BUCKET"'))
    assert pattern == local
