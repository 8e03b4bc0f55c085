"""The completion webhook for real: a local HTTP receiver (a real server in this process) gets
signed POSTs from `tasks.send_webhook`, run here and by a real `stt-router worker`; moto's S3 and
SQS, the Redis at 127.0.0.1:6379. The receiver checks the signature the way the docs show,
independently of the sender's code. Private addresses are allowed in a test only through
WEBHOOK_ALLOWLIST, as the fetch tests allow 127.0.0.1 through URL_FETCH_ALLOWLIST."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.broker import ensure_queues
from tasks.delivery import RetryLater
from tasks.dlq import DeadLetterQueue
from tasks.enqueue import trigger_combine
from tasks.webhook import run_webhook
from tests.app.conftest import Canary
from tests.support.services import VENV_BIN, unique, wait_for
from tests.support.worker import producer, settings_for, start_worker, worker_env
from tests.tasks.test_sessions import chunk, transcribe
from transcription import events, layout, sessions, storage

pytestmark = pytest.mark.timeout(600)
SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes long!!").decode()


class Receiver:
    """Answers POSTs with the next status of `statuses` (then 200), recording each request."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/stt"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def verified(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """Standard Webhooks verification, as a receiver writes it (the docs' snippet)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
    return fresh and any(hmac.compare_digest(expected, sig.split(",", 1)[1])
                         for sig in headers["webhook-signature"].split() if sig.startswith("v1,"))


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def combined_event(moto, bucket: str, sid: str) -> dict:
    s3 = moto.client("s3")
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(sid), Body=b'{"total_chunks": 2}')
    for i in range(2):
        s3.put_object(Bucket=bucket, Key=f"sessions/{sid}/chunks/{i}.wav", Body=b"RIFF")
        transcribe(bucket, chunk(sid, i, f"word{i}"))
    sessions.write_session_transcript(bucket, sessions.build_session_transcript(bucket, sid))
    return events.session_event(bucket, sessions.stored_session_transcript(bucket, sid)).model_dump(mode="json")


def setup(moto, bucket: str, url: str, **extra: str):
    env = worker_env(moto, "sqs", S3_BUCKET=bucket, WEBHOOK_URL=url, WEBHOOK_SECRET=SECRET,
                     BOUNDARY_REPAIR="false", **extra)
    plain = {k: v for k, v in env.items() if k != "WEBHOOK_ALLOWLIST"}
    s = settings_for(plain)
    if "WEBHOOK_ALLOWLIST" in env:  # a JSON list in the environment, as a worker reads it
        s = s.model_copy(update={"webhook_allowlist": json.loads(env["WEBHOOK_ALLOWLIST"])})
    ensure_queues(s)
    return env, s, producer(plain)


def test_signed_retried_after_a_500_and_sent_once(moto, bucket, receiver) -> None:
    _, s, app = setup(moto, bucket, receiver.url, WEBHOOK_ALLOWLIST='["127.0.0.1/32"]')
    event = combined_event(moto, bucket, "wh1")
    receiver.statuses = [500]
    with pytest.raises(RetryLater) as r:
        run_webhook(event, settings=s, celery=app)
    assert r.value.kwargs == {"attempt": 2} and "HTTP 500" in r.value.reason and r.value.countdown > 0
    assert run_webhook(event, attempt=2, settings=s, celery=app)["status"] == "sent"
    assert run_webhook(event, attempt=1, settings=s, celery=app)["status"] == "already_sent"  # idempotent by id
    assert len(receiver.requests) == 2
    for headers, body in receiver.requests:
        assert headers["webhook-id"] == event["event_id"] and headers["content-type"] == "application/json"
        assert verified(headers, body)
        assert not verified(headers, body + b" ")  # a changed body does not verify
        assert not verified(headers, body, secret="whsec_" + base64.b64encode(b"another secret, 32 bytes long!!!")
                            .decode())
        assert json.loads(body) == event
    assert storage.exists(bucket, events.webhook_record_key("wh1", event["event_id"]))


def test_the_manifest_names_the_sessions_webhook(moto, bucket, receiver) -> None:
    """No WEBHOOK_URL: the manifest's webhook_url gets it; the combine queues the task with it."""
    from tasks.broker import sqs_client
    from tasks.combine import run_combine
    from tasks.dlq import parse_envelope

    _, s, app = setup(moto, bucket, "", WEBHOOK_ALLOWLIST='["127.0.0.1/32"]')
    s = s.model_copy(update={"webhook_url": None})
    s3 = moto.client("s3")
    s3.put_object(Bucket=bucket, Key=layout.manifest_key("wh5"), Body=json.dumps(
        {"total_chunks": 1, "webhook_url": receiver.url}).encode())
    s3.put_object(Bucket=bucket, Key=layout.manifest_key("wh6"), Body=json.dumps(
        {"total_chunks": 1, "webhook_url": "file:///etc/passwd"}).encode())
    for sid in ("wh5", "wh6"):
        s3.put_object(Bucket=bucket, Key=f"sessions/{sid}/chunks/0.wav", Body=b"RIFF")
        transcribe(bucket, chunk(sid, 0, "hello"))
        assert run_combine(bucket, sid, settings=s, celery=app)["status"] == "combined"
    assert any("webhook_url" in p for p in sessions.load_manifest(bucket, "wh6").problems)  # dropped, said why
    sqs = sqs_client(s)
    url = sqs.get_queue_url(QueueName=s.transcribe_queue)["QueueUrl"]
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
    [task] = [parse_envelope(m["Body"], m["MessageId"]) for m in msgs]  # one webhook: wh6 has none
    assert task.task == "tasks.send_webhook" and task.kwargs == {"url": receiver.url}
    assert run_webhook(*task.args, **task.kwargs, settings=s, celery=app)["status"] == "sent"
    [(headers, body)] = receiver.requests
    assert verified(headers, body) and json.loads(body)["session_id"] == "wh5"


def test_never_posted_to_a_private_address(moto, bucket) -> None:
    canary = Canary()
    try:
        for url in (f"http://{canary.host}:{canary.port}/hook", f"http://localhost:{canary.port}/hook",
                    "http://169.254.169.254/latest/meta-data/", f"http://[::1]:{canary.port}/",
                    f"http://{int.from_bytes(bytes([127, 0, 0, 2]), 'big')}:{canary.port}/"):
            env, s, app = setup(moto, bucket, url)  # no WEBHOOK_ALLOWLIST
            out = run_webhook(combined_event(moto, bucket, unique("priv")), settings=s, celery=app)
            assert out["status"] == "failed" and out["error"] == "url_refused", (url, out)
        assert canary.connections == 0
        letters = [x for x in DeadLetterQueue(s, app).letters() if x.task == "tasks.send_webhook"]
        assert letters and all(x.error == "url_refused" for x in letters)
        listed = subprocess.run([str(VENV_BIN / "stt-router"), "dlq", "list"], env={**os.environ, **env},
                                capture_output=True, text=True, timeout=120)
        assert "tasks.send_webhook" in listed.stdout and "url_refused" in listed.stdout, listed.stdout + listed.stderr
    finally:
        canary.close()


def test_dead_lettered_after_the_last_attempt(moto, bucket, receiver) -> None:
    _, s, app = setup(moto, bucket, receiver.url, WEBHOOK_ALLOWLIST='["127.0.0.1/32"]', TASK_MAX_RETRIES="2")
    event = combined_event(moto, bucket, "wh3")
    receiver.statuses = [500, 503, 502]
    for attempt in (1, 2):
        with pytest.raises(RetryLater):
            run_webhook(event, attempt=attempt, settings=s, celery=app)
    out = run_webhook(event, attempt=3, settings=s, celery=app)
    assert out["status"] == "failed" and "gave up after 3 attempts" in out["reason"]
    [letter] = [x for x in DeadLetterQueue(s, app).letters() if x.task == "tasks.send_webhook"]
    assert letter.error == "webhook" and "HTTP 502" in letter.reason
    assert not storage.exists(bucket, events.webhook_record_key("wh3", event["event_id"]))


def test_a_worker_combines_then_posts_the_webhook_with_backoff(moto, bucket, receiver) -> None:
    env, s, app = setup(moto, bucket, receiver.url, WEBHOOK_ALLOWLIST='["127.0.0.1/32"]')
    sid = unique("whw")
    s3 = moto.client("s3")
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(sid), Body=b'{"total_chunks": 2}')
    for i in range(2):
        s3.put_object(Bucket=bucket, Key=f"sessions/{sid}/chunks/{i}.wav", Body=b"RIFF")
        transcribe(bucket, chunk(sid, i, f"word{i}"))
    receiver.statuses = [500]
    worker = start_worker(env, "worker-webhook")
    try:
        assert trigger_combine(bucket, sid, app=app, settings=s)
        wait_for(lambda: len(receiver.requests) >= 2, 120, what=f"the webhook and its retry ({worker.log_path})")
        time.sleep(2)  # nothing more comes
        assert len(receiver.requests) == 2
        stored = sessions.stored_session_transcript(bucket, sid, settings=s)
        ids = {h["webhook-id"] for h, _ in receiver.requests}
        assert ids == {events.event_id(sid, stored.created_at)}
        assert all(verified(h, b) for h, b in receiver.requests)
        assert json.loads(receiver.requests[1][1])["status"] == "combined"
        assert "webhook_retry" in worker.output() and "webhook_sent" in worker.output()
    finally:
        worker.stop()
