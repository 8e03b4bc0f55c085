"""The router end to end, on the events S3 itself produces.

moto's S3 has EventBridge notifications on and an EventBridge rule (bucket, `sessions/` prefix)
delivers to an SQS queue (`router_lambda.local.setup`, what `stt-router router-local` does); each
test uploads to S3, takes the event S3 produced from that queue and calls the handler with it
unchanged. Behind the router: a real `stt-router serve` (uvicorn, real Whisper) reached through
the fault-injecting proxy of tests/support/faults.py, and a real `stt-router worker` on moto's SQS.
The API key comes from moto's Secrets Manager (`API_KEY_SECRET_ARN`), as in the deployment.

One server, one worker and one bucket serve the whole module; the last test runs the
`stt-router router-local` command itself. The only fake is the Lambda context (remaining time),
which cannot exist outside Lambda.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections import defaultdict
from types import SimpleNamespace

import pytest

from router_lambda import apikey, local
from router_lambda.handler import RouterError, handler
from tasks.celery_app import chunk_task_id
from tests.support.faults import FaultProxy
from tests.support.services import VENV_BIN, ManagedProcess, free_port, unique, wait_for
from tests.support.speech import word_error_rate
from tests.support.worker import settings_for, start_worker, worker_env
from transcription import layout, sessions, storage
from transcription.settings import get_settings
from transcription.transcript import ChunkTranscript, FailedChunk

pytestmark = pytest.mark.timeout(900)

API_KEY = "router-test-key-0123456789"


class Events:
    """The events S3 produced, read from a rule's SQS queue and kept by key until a test takes them."""

    def __init__(self, sqs, url: str) -> None:
        self.sqs, self.url = sqs, url
        self.by_key: dict[str, list[dict]] = defaultdict(list)
        self.bodies: list[str] = []

    def poll(self, wait_s: int = 1) -> None:
        for m in self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=wait_s).get("Messages", []):
            self.bodies.append(m["Body"])
            event = local.decode_body(m["Body"])
            self.by_key[event["detail"]["object"]["key"]].append(event)
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])

    def drain(self) -> None:
        before = -1
        while before != len(self.bodies):
            before = len(self.bodies)
            self.poll()

    def take(self, key: str, timeout: float = 30) -> dict:
        def ready() -> bool:
            if not self.by_key.get(key):
                self.poll()
            return bool(self.by_key.get(key))

        wait_for(ready, timeout, interval=0, what=f"S3's event for {key}")
        return self.by_key[key].pop(0)


def start_server(env: dict[str, str]) -> tuple[ManagedProcess, str]:
    port = free_port()
    proc = ManagedProcess("router-server", [str(VENV_BIN / "stt-router"), "serve", "--port", str(port)], env=env)
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: ManagedProcess, url: str) -> None:
    import urllib3

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"server exited:\n{proc.output()[-3000:]}")
        return urllib3.request("GET", f"{url}/health", timeout=2, retries=False).status == 200

    wait_for(ready, 180, interval=0.2, what="the server's /health")


def context(timeout_s: float = 150):
    return local.LocalContext(timeout_s, unique("req"))


@pytest.fixture(scope="module")
def stack(moto, speech_files):
    bucket = unique("router")
    s3, sqs, events = moto.client("s3"), moto.client("sqs"), moto.client("events")
    s3.create_bucket(Bucket=bucket)
    env = worker_env(moto, "sqs", S3_BUCKET=bucket)
    server, server_url = start_server({**env, "API_KEY": API_KEY, "SERVER_CAPACITY": "1", "SLOT_WAIT_S": "0.5",
                                       "CPU_THREADS": "2"})
    worker = start_worker(env, "router-worker")
    wait_ready(server, server_url)
    proxy = FaultProxy(server_url)
    arn = moto.client("secretsmanager").create_secret(Name=unique("api-key"), SecretString=API_KEY)["ARN"]
    router_env = {**env, "FAST_API_SERVER_URL": proxy.url, "API_KEY_SECRET_ARN": arn,
                  "ROUTER_REQUEST_TIMEOUT_S": "120"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in router_env.items():
            mp.setenv(k, v)
        mp.delenv("API_KEY", raising=False)
        mp.delenv("ROUTER_RETRY_WAITS_S", raising=False)
        get_settings.cache_clear()
        apikey.forget()
        url = local.setup(bucket, get_settings(), queue=unique("router-events"), rule=unique("router-rule"))
        # a second rule without the prefix filter: every object S3 creates in the bucket, own outputs too
        everything = sqs.create_queue(QueueName=unique("all-events"))["QueueUrl"]
        all_arn = sqs.get_queue_attributes(QueueUrl=everything, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        all_rule = unique("all-rule")
        events.put_rule(Name=all_rule, EventPattern=json.dumps({"source": ["aws.s3"],
                                                                 "detail": {"bucket": {"name": [bucket]}}}))
        events.put_targets(Rule=all_rule, Targets=[{"Id": "all", "Arn": all_arn}])
        ns = SimpleNamespace(bucket=bucket, s3=s3, sqs=sqs, env=router_env, server=server, worker=worker,
                             proxy=proxy, events=Events(sqs, url), everything=Events(sqs, everything),
                             settings=settings_for(env))
        try:
            yield ns
        finally:
            get_settings.cache_clear()
            apikey.forget()
            proxy.close()
            worker.stop()
            server.stop()


@pytest.fixture
def quiet_queue(stack, env):
    """A transcribe queue no worker consumes: what the router queued stays there to be inspected."""
    name = unique("quiet")
    stack.sqs.create_queue(QueueName=name)
    env.setenv("TRANSCRIBE_QUEUE", name)
    return name


def queued(stack, name: str) -> list[dict]:
    """The Celery task messages in an SQS queue: [{"task", "id", "args"}] (kombu's base64 JSON envelope)."""
    url = stack.sqs.get_queue_url(QueueName=name)["QueueUrl"]
    out = []
    while msgs := stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                            VisibilityTimeout=60).get("Messages", []):
        for m in msgs:
            body = m["Body"]
            envelope = json.loads(body if body.startswith("{") else base64.b64decode(body))
            headers = envelope["headers"]
            out.append({"task": headers["task"], "id": headers["id"], "args": headers["argsrepr"]})
    return out


def upload(stack, key: str, body: bytes) -> dict:
    """Put the object and return the event S3 produced for it."""
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    return stack.events.take(key)


def only(result: dict) -> dict:
    [d] = result["decisions"]
    return d


def transcript(stack, session: str, index: int) -> ChunkTranscript:
    data = storage.get_json(stack.bucket, layout.chunk_transcript_key(session, index), settings=stack.settings)
    return ChunkTranscript.model_validate(data)


def wait_transcript(stack, session: str, index: int, timeout: float = 180) -> ChunkTranscript:
    key = layout.chunk_transcript_key(session, index)
    wait_for(lambda: storage.exists(stack.bucket, key, settings=stack.settings), timeout,
             what=f"{key} (worker log {stack.worker.log_path})")
    return transcript(stack, session, index)


def test_server_up_goes_direct_and_a_duplicate_event_is_skipped(stack, sentences, speech_files, capsys) -> None:
    session = unique("direct")
    key = f"sessions/{session}/chunks/0.wav"
    event = upload(stack, key, speech_files[0].read_bytes())
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"

    d = only(handler(event, context()))
    assert d["decision"] == "direct" and d["attempts"] == 1 and d["detail"]["written"] is True, d
    assert d["key"] == key and d["session_id"] == session and d["chunk_index"] == 0
    t = transcript(stack, session, 0)
    assert word_error_rate(sentences[0], t.text) < 0.35
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(x["decision"], x["key"]) for x in lines] == [("direct", key)]  # one EMF line per decision
    assert lines[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["decision"]]

    posts = len(stack.proxy.seen("POST", "/transcribe-s3"))
    d = only(handler(event, context()))  # EventBridge delivers at least once: the same event again
    assert d["decision"] == "skipped" and d["reason"] == "transcript exists", d
    assert len(stack.proxy.seen("POST", "/transcribe-s3")) == posts  # the server was not asked again
    assert stack.server.alive()


def test_own_outputs_never_reach_the_router_and_are_ignored_if_they_do(stack, speech_files) -> None:
    """S3 emits events for the transcript the server writes (the catch-all rule sees them); the
    sessions/ rule does not deliver them, and the handler skips them if they come anyway."""
    session = unique("outputs")
    d = only(handler(upload(stack, f"sessions/{session}/chunks/0.wav", speech_files[2].read_bytes()), context()))
    assert d["decision"] == "direct", d
    output = layout.chunk_transcript_key(session, 0)

    def emitted() -> bool:
        stack.everything.poll()
        return bool(stack.everything.by_key.get(output))

    wait_for(emitted, 30, interval=0, what=f"S3's event for {output}")
    stack.events.drain()
    assert not [k for k in stack.events.by_key if not k.startswith("sessions/")]
    before = len(stack.proxy.seen())
    d = only(handler(stack.everything.take(output), context()))
    assert d["decision"] == "skipped" and d["reason"] == "outside sessions/", d
    assert len(stack.proxy.seen()) == before  # no probe, no call


def test_503_twice_then_200_is_direct_after_two_retries_on_the_default_schedule(stack, sentences,
                                                                                speech_files) -> None:
    assert get_settings().router_retry_waits_s == [1.0, 2.0, 4.0] and get_settings().router_attempts == 3
    session = unique("retry")
    key = f"sessions/{session}/chunks/0.wav"
    event = upload(stack, key, speech_files[1].read_bytes())
    stack.proxy.reset_log()
    stack.proxy.fail("/transcribe-s3", [503, 503])

    d = only(handler(event, context()))
    assert d["decision"] == "direct" and d["attempts"] == 3, d
    posts = stack.proxy.seen("POST", "/transcribe-s3")
    assert [(p.status, p.injected) for p in posts] == [(503, True), (503, True), (200, False)]
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert 0.95 <= gaps[0] < 1.9 and 1.95 <= gaps[1] < 3.2, gaps  # waited 1 s, then 2 s
    assert word_error_rate(sentences[1], transcript(stack, session, 0).text) < 0.35


def test_server_stopped_the_chunk_is_queued_and_the_worker_transcribes_it(stack, env, sentences,
                                                                          speech_files) -> None:
    env.setenv("FAST_API_SERVER_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    session = unique("stopped")
    key = f"sessions/{session}/chunks/0.wav"
    event = upload(stack, key, speech_files[2].read_bytes())
    d = only(handler(event, context()))
    assert d["decision"] == "queued" and "server unreachable" in d["reason"] and d["attempts"] == 0, d
    assert d["task_id"] == chunk_task_id(stack.bucket, key, event["detail"]["object"]["eTag"])
    t = wait_transcript(stack, session, 0)
    assert word_error_rate(sentences[2], t.text) < 0.35
    assert stack.worker.engine_runs(key) == 1


def test_busy_server_queues_without_calling_it(stack, speech_files) -> None:
    session = unique("busy")
    key = f"sessions/{session}/chunks/0.wav"
    event = upload(stack, key, speech_files[3].read_bytes())
    stack.proxy.reset_log()
    stack.proxy.inject("GET", "/health", status=503, body={"status": "busy", "inflight": 1, "capacity": 1})
    d = only(handler(event, context()))
    assert d["decision"] == "queued" and "busy" in d["reason"], d
    assert stack.proxy.seen("POST", "/transcribe-s3") == []
    wait_transcript(stack, session, 0)
    assert stack.worker.engine_runs(key) == 1


def test_failing_every_attempt_queues_after_three(stack, env, speech_files) -> None:
    env.setenv("ROUTER_RETRY_WAITS_S", "[0.2, 0.2]")
    session = unique("flaky")
    key = f"sessions/{session}/chunks/0.wav"
    event = upload(stack, key, speech_files[4].read_bytes())
    stack.proxy.reset_log()
    stack.proxy.inject("POST", "/transcribe-s3", status=500)
    stack.proxy.inject("POST", "/transcribe-s3", action="drop")
    stack.proxy.inject("POST", "/transcribe-s3", action="reset")
    stack.proxy.inject("POST", "/transcribe-s3", status=502)  # never reached: three attempts only
    d = only(handler(event, context()))
    assert d["decision"] == "queued" and d["attempts"] == 3 and "3 direct attempt(s) failed" in d["reason"], d
    assert len(stack.proxy.seen("POST", "/transcribe-s3")) == 3
    stack.proxy.clear()
    wait_transcript(stack, session, 0)
    assert stack.worker.engine_runs(key) == 1


def test_bad_audio_is_recorded_failed_not_queued_and_completes_the_session(stack, quiet_queue) -> None:
    session = unique("bad")
    stack.s3.put_object(Bucket=stack.bucket, Key=layout.manifest_key(session), Body=b'{"total_chunks": 1}')
    key = f"sessions/{session}/chunks/0.wav"
    event = upload(stack, key, b"this is a text file, not audio " * 20)
    d = only(handler(event, context()))
    assert d["decision"] == "failed" and d["detail"]["status"] in (415, 422), d
    record = FailedChunk.model_validate(storage.get_json(stack.bucket, layout.failed_key(session, 0),
                                                         settings=stack.settings))
    assert record.source_key == key and record.error == "bad_audio" and record.reason
    # nothing to transcribe was queued; the failed chunk completed the session, so its combine was
    assert d["detail"]["combine_queued"] is True
    assert [m["task"] for m in queued(stack, quiet_queue)] == ["tasks.combine_session"]


def test_a_wrong_api_key_queues_and_a_rotated_secret_is_read_again(stack, moto, quiet_queue, speech_files) -> None:
    """A 401 is the router's configuration, not the chunk's fault: queue it (the worker needs no key), and
    forget the cached key so the next event reads the secret again."""
    sm, arn = moto.client("secretsmanager"), stack.env["API_KEY_SECRET_ARN"]
    sm.put_secret_value(SecretId=arn, SecretString="not-the-key")
    apikey.forget()
    try:
        session = unique("badkey")
        key = f"sessions/{session}/chunks/0.wav"
        event = upload(stack, key, speech_files[0].read_bytes())
        d = only(handler(event, context()))
        assert d["decision"] == "queued" and "HTTP 401" in d["reason"] and d["attempts"] == 1, d
        assert [(m["task"], m["id"]) for m in queued(stack, quiet_queue)] == [
            ("tasks.transcribe_chunk", chunk_task_id(stack.bucket, key, event["detail"]["object"]["eTag"]))]
        assert not storage.exists(stack.bucket, layout.failed_key(session, 0), settings=stack.settings)
        sm.put_secret_value(SecretId=arn, SecretString=API_KEY)  # the key fixed; the router reads it again
        d = only(handler(event, context()))
        assert d["decision"] == "direct", d
    finally:
        sm.put_secret_value(SecretId=arn, SecretString=API_KEY)
        apikey.forget()


def test_no_time_left_in_the_invocation_queues_at_once(stack, quiet_queue, speech_files) -> None:
    """A Lambda context with 8 s left (fake: the Lambda runtime does not exist here)."""
    session = unique("late")
    key = f"sessions/{session}/chunks/0.wav"
    event = upload(stack, key, speech_files[0].read_bytes())
    stack.proxy.reset_log()
    d = only(handler(event, SimpleNamespace(get_remaining_time_in_millis=lambda: 8000, aws_request_id="r")))
    assert d["decision"] == "queued" and "no time left" in d["reason"], d
    assert stack.proxy.seen() == []
    assert len(queued(stack, quiet_queue)) == 1


def test_manifest_last_combines_the_session_once(stack, sentences, speech_files) -> None:
    session = unique("meeting")
    for i in (0, 1):
        key = f"sessions/{session}/chunks/{i}.wav"
        d = only(handler(upload(stack, key, speech_files[i].read_bytes()), context()))
        assert d["decision"] == "direct", d
    assert not storage.exists(stack.bucket, layout.session_transcript_key(session), settings=stack.settings)
    time.sleep(1)  # the server's own completion check runs just after its answer: let it see no manifest yet
    manifest = {"total_chunks": 2, "language": "en", "title": "weekly"}
    event = upload(stack, layout.manifest_key(session), json.dumps(manifest).encode())
    d = only(handler(event, context()))
    assert d["decision"] == "manifest" and d["detail"]["combine_queued"] is True, d
    d = only(handler(event, context()))  # the same event again: no second combine
    assert d["decision"] == "manifest" and d["detail"]["combine_queued"] is False, d
    wait_for(lambda: storage.exists(stack.bucket, layout.session_transcript_key(session), settings=stack.settings),
             120, what="the session transcript")
    t = sessions.stored_session_transcript(stack.bucket, session, settings=stack.settings)
    assert t is not None and t.title == "weekly" and not t.partial and [c.index for c in t.chunks] == [0, 1]
    assert word_error_rate(f"{sentences[0]} {sentences[1]}", t.text) < 0.35
    time.sleep(2)  # a second combine would have been queued by now
    assert stack.worker.output().count(f"session_combined session={session} ") == 1


def test_an_invalid_manifest_is_a_failed_decision_with_the_reason(stack, quiet_queue) -> None:
    """Issue 14, hole 6: the router's answer to a manifest it cannot use (tests/tasks/test_hardening.py
    holds the rest of the rule)."""
    session = unique("badmanifest")
    d = only(handler(upload(stack, layout.manifest_key(session), b'{"total_chunks": -1, "language": "english"}'),
                     context()))
    assert d["decision"] == "failed" and "total_chunks" in d["reason"] and d["detail"]["problems"], d
    d = only(handler(upload(stack, layout.manifest_key(session), b'{"total_chunks": 3, "language": "english"}'),
                     context()))
    assert d["decision"] == "manifest" and "language" in d["detail"]["problems"][0], d
    assert queued(stack, quiet_queue) == []


def test_a_zero_byte_chunk_is_recorded_failed_and_completes_its_session(stack, quiet_queue) -> None:
    """Issue 14, hole 8: the router skipped a zero-byte chunk without a failed record; `sessions
    status` called it queued and the session waited for the midnight drain."""
    session = unique("empty")
    stack.s3.put_object(Bucket=stack.bucket, Key=layout.manifest_key(session), Body=b'{"total_chunks": 1}')
    stack.proxy.reset_log()
    d = only(handler(upload(stack, f"sessions/{session}/chunks/0.wav", b""), context()))
    assert d["decision"] == "failed" and "0 bytes" in d["reason"], d
    assert stack.proxy.seen() == []  # nothing to ask the server
    status = sessions.session_status(stack.bucket, session, with_reasons=True, settings=stack.settings)
    assert status.failed == [0] and status.pending == [] and "0 bytes" in status.failed_reasons[0]
    assert d["detail"]["combine_queued"] is True and d["detail"]["dead_letter"]
    assert [m["task"] for m in queued(stack, quiet_queue)] == ["tasks.combine_session"]


def test_a_chunk_uploaded_again_is_transcribed_again_and_its_session_recombined(stack, sentences,
                                                                               speech_files) -> None:
    """Issue 14, hole 9 on the direct path: the router skipped a re-uploaded chunk as "transcript
    exists", so the chunk and session kept the old audio's text. Now the skip compares the audio
    the transcript was made from with the chunk's current ETag."""
    session = unique("reupload")
    stack.s3.put_object(Bucket=stack.bucket, Key=layout.manifest_key(session),
                        Body=b'{"total_chunks": 1, "language": "en"}')
    key = f"sessions/{session}/chunks/0.wav"
    first = upload(stack, key, speech_files[0].read_bytes())
    assert only(handler(first, context()))["decision"] == "direct"
    json_key = layout.session_transcript_key(session)
    wait_for(lambda: storage.exists(stack.bucket, json_key, settings=stack.settings), 120, what="the first combine")

    event = upload(stack, key, speech_files[3].read_bytes())
    etag = event["detail"]["object"]["eTag"].strip('"')
    d = only(handler(event, context()))
    assert d["decision"] == "direct" and d["detail"]["written"] is True, d
    t = transcript(stack, session, 0)
    assert t.source_etag == etag and word_error_rate(sentences[3], t.text) < 0.35, t.text

    def recombined():
        st = sessions.stored_session_transcript(stack.bucket, session, settings=stack.settings)
        return st if st is not None and st.chunks[0].source_etag == etag else None

    st = wait_for(recombined, 120, what=f"the session combined again ({stack.worker.log_path})")
    assert word_error_rate(sentences[3], st.text) < 0.35, st.text
    d = only(handler(first, context()))  # the first upload's event again: its audio is gone, nothing to redo
    assert d["decision"] == "skipped" and d["reason"] == "transcript exists", d
    time.sleep(2)
    assert stack.worker.output().count(f"session_combined session={session} ") == 2


def test_two_uploads_of_a_chunk_in_quick_succession_end_with_the_later_audio(stack, moto, sentences,
                                                                            speech_files) -> None:
    """Issue 14, hole 9: the chunk uploaded again 0.2 s after the server read its first audio (seen
    in moto's request log), while the server transcribes it. Before, the first audio's transcript was
    written and the second upload's event skipped as "transcript exists". Now the server does not
    write the superseded audio's transcript, and the second event has the later audio transcribed."""
    import threading

    session = unique("quick")
    key = f"sessions/{session}/chunks/0.wav"
    decisions: list[dict] = []
    first = upload(stack, key, speech_files[1].read_bytes())
    early = threading.Thread(target=lambda: decisions.append(only(handler(first, context()))))
    early.start()
    wait_for(lambda: f"GET /{stack.bucket}/{key} " in moto.output(), 60, interval=0.05, what="the server's read")
    time.sleep(0.2)
    later = upload(stack, key, speech_files[5].read_bytes())
    etag = later["detail"]["object"]["eTag"].strip('"')
    early.join(timeout=300)
    [d] = decisions
    assert d["decision"] == "direct" and d["detail"]["written"] is False, d  # superseded: not written
    d = only(handler(later, context()))
    assert d["decision"] == "direct" and d["detail"]["written"] is True, d
    t = transcript(stack, session, 0)
    assert t.source_etag == etag and word_error_rate(sentences[5], t.text) < 0.35, t.text
    assert only(handler(first, context()))["reason"] == "transcript exists"  # the first event again: nothing to do


def test_poison_and_non_chunk_events_are_skipped_with_a_reason(stack, capsys) -> None:
    session = unique("junk")
    cases = {
        f"sessions/{session}/notes.txt": (b"hello", "not a chunk key"),
        f"sessions/{session}/chunks/2.txt": (b"hello", "unsupported audio extension .txt"),
        f"sessions/{session}/chunks/x.wav": (b"RIFF", "not a chunk key"),
        "sessions/-bad-id/chunks/1.wav": (b"RIFF", "session id must start with a letter or digit"),
    }
    stack.proxy.reset_log()
    for key, (body, reason) in cases.items():
        d = only(handler(upload(stack, key, body), context()))
        assert d["decision"] == "skipped" and reason in d["reason"], d
    malformed = [None, "text", {}, {"Records": []}, {"Records": [{"s3": {"bucket": {"name": stack.bucket}}}]},
                 {"detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": {"name": stack.bucket},
                                                                               "object": {"size": 3}}}]
    for event in malformed:
        d = only(handler(event, context()))  # never raises: Lambda would retry a poison event forever
        assert d["decision"] == "skipped" and d["reason"], d
    assert stack.proxy.seen() == []
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == len(cases) + len(malformed) and {x["decision"] for x in lines} == {"skipped"}


def test_an_unreachable_queue_fails_the_invocation_and_the_retry_places_the_chunk(stack, env, quiet_queue,
                                                                                  speech_files) -> None:
    session = unique("noqueue")
    key = f"sessions/{session}/chunks/0.wav"
    event = upload(stack, key, speech_files[1].read_bytes())
    poison = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": stack.bucket},
                                                                    "object": {"key": "sessions/x/y.txt"}}}]}
    env.setenv("FAST_API_SERVER_URL", f"http://127.0.0.1:{free_port()}")
    env.setenv("CELERY_BROKER_URL", f"sqs://a:b@127.0.0.1:{free_port()}")  # SQS unreachable
    started = time.monotonic()
    with pytest.raises(RouterError, match="could not queue the chunk"):
        handler(event, context())
    assert time.monotonic() - started < 30  # gives up in seconds, well inside the function's timeout
    assert only(handler(poison, context()))["decision"] == "skipped"  # a poison event still does not raise
    env.setenv("CELERY_BROKER_URL", "sqs://")  # SQS is back: EventBridge's retry of the same event
    get_settings.cache_clear()
    d = only(handler(event, context()))
    assert d["decision"] == "queued", d
    assert [m["id"] for m in queued(stack, quiet_queue)] == [d["task_id"]]


def test_router_local_routes_what_s3_emits(stack, sentences, speech_files) -> None:
    """`stt-router router-local` sets up the notification, rule and queue itself, then runs the loop."""
    proc = ManagedProcess("router-local", [str(VENV_BIN / "stt-router"), "router-local", "--bucket", stack.bucket,
                                           "--queue", unique("local-events"), "--rule", unique("local-rule"),
                                           "--wait", "1"], env=stack.env)
    try:
        wait_for(lambda: "router-local: ready" in proc.output() or not proc.alive(), 60, what="router-local ready")
        assert proc.alive(), proc.output()
        session = unique("local")
        stack.s3.put_object(Bucket=stack.bucket, Key=layout.manifest_key(session), Body=b'{"total_chunks": 1}')
        key = f"sessions/{session}/chunks/0.wav"
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=speech_files[3].read_bytes())
        wait_for(lambda: storage.exists(stack.bucket, layout.session_transcript_key(session), settings=stack.settings),
                 180, what=f"the session transcript ({proc.log_path})")
        decisions = {d["key"]: d for d in (json.loads(x) for x in proc.output().splitlines() if x.startswith("{"))}
        assert decisions[key]["decision"] == "direct", decisions
        # the manifest came first (session not complete yet): the server's own completion check combined it
        assert decisions[layout.manifest_key(session)]["decision"] == "manifest"
        assert decisions[layout.manifest_key(session)]["detail"]["combine_queued"] is False
        t = sessions.stored_session_transcript(stack.bucket, session, settings=stack.settings)
        assert word_error_rate(sentences[3], t.text) < 0.35
    finally:
        code = proc.stop()
    log = proc.log_path.read_text()
    assert code == 0 and "router-local: stopped after" in log, log[-2000:]
