"""Session ids and chunk keys are refused before any S3 call, at every entry point: the server's
`/transcribe-s3`, the router's events, the chunk and session tasks, and `stt-router sessions`.

"Before any S3 call" is measured, not assumed: S3 (and every other AWS endpoint, and the server the
router would call) points at a TCP listener that counts connections; a refused key must leave it
at 0. The tasks' dead letters go to the real Redis (a queue of their own), which is not S3.
"""

from __future__ import annotations

import json
import os
import subprocess
from urllib.parse import quote_plus

import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import API_KEY, AUTH, Canary
from tests.support.services import VENV_BIN, unique

BUCKET = "stt-router"
BAD_SESSION_IDS = [
    "..", "../etc", "a/../../b", "/abs", "a/b", "a\\b", "a\x00b", "a\nb", "a\x1bb", "x" * 129, "", ".hidden",
    "-dash-first", "with space",
]
BAD_CHUNK_KEYS = [
    "sessions/../etc/chunks/1.wav",
    "sessions/a/../../transcripts/x/chunks/1.wav",
    "/sessions/a/chunks/1.wav",
    "sessions//chunks/1.wav",
    "sessions/a\x00b/chunks/1.wav",
    "sessions/a\r\nb/chunks/1.wav",
    "sessions/" + "x" * 129 + "/chunks/1.wav",
    "sessions/.hidden/chunks/1.wav",
    "sessions/a/chunks/1.wav/../../../../etc/passwd",
    "sessions/a/chunks/1234567890.wav",
    "sessions/a/chunks/1.exe",
]


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch):
    """Every AWS endpoint of this process points at a listener that counts connections."""
    from transcription.settings import get_settings

    canary = Canary("127.0.0.1")
    url = f"http://127.0.0.1:{canary.port}"
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "FAST_API_SERVER_URL"):
        monkeypatch.setenv(name, url)
    monkeypatch.setenv("CELERY_BROKER_URL", "sqs://")
    monkeypatch.setenv("API_KEY", API_KEY)
    monkeypatch.setenv("S3_BUCKET", BUCKET)
    get_settings.cache_clear()
    canary.url = url
    yield canary
    get_settings.cache_clear()
    canary.close()


def test_server_transcribe_s3(fw_engine, tripwire) -> None:
    from app.main import create_app
    from transcription.settings import Settings

    settings = Settings(api_key=API_KEY, aws_endpoint_url=tripwire.url)
    with TestClient(create_app(settings, engine=fw_engine)) as client:
        for key in BAD_CHUNK_KEYS:
            for body in ({"s3_input_path": f"s3://{BUCKET}/{key}"},
                         {"s3_input_path": f"s3://{BUCKET}/sessions/ok/chunks/1.wav",
                          "s3_output_path": f"s3://{BUCKET}/{key}"}):
                r = client.post("/transcribe-s3", json=body, headers=AUTH)
                assert r.status_code == 422, (key, r.status_code, r.text)
                assert r.json()["kind"] in ("bad_key", "invalid"), r.text
        for bucket in ("..", "a", "UPPER", "bucket/../x"):
            r = client.post("/transcribe-s3", json={"s3_input_path": f"s3://{bucket}/sessions/a/chunks/1.wav"},
                            headers=AUTH)
            assert r.status_code == 422, (bucket, r.text)
    assert tripwire.connections == 0


def _eventbridge(key: str, bucket: str = BUCKET) -> dict:
    return {"version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1000, "etag": "abc"}}}


def _s3_record(key: str) -> dict:
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": BUCKET}, "object": {"key": quote_plus(key), "size": 1000}}}]}


def test_router_events(tripwire) -> None:
    from router_lambda.handler import handler

    keys = [*BAD_CHUNK_KEYS, *(f"sessions/{sid}/manifest.json" for sid in BAD_SESSION_IDS)]
    for key in keys:
        for event in (_eventbridge(key), _s3_record(key)):
            out = handler(event)
            assert [d["decision"] for d in out["decisions"]] == ["skipped"], (key, out)
            assert out["decisions"][0]["reason"], key
    out = handler(_eventbridge("sessions/a/chunks/1.wav", bucket="../evil"))
    assert out["decisions"][0]["decision"] == "skipped"
    assert tripwire.connections == 0


def test_chunk_and_session_tasks(tripwire, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    from tasks.broker import redis_broker
    from tasks.celery_app import make_app
    from tasks.combine import run_combine
    from tasks.dlq import DeadLetterQueue
    from tasks.transcribe import run_chunk
    from transcription.settings import Settings

    broker = "redis://127.0.0.1:6379/13"
    monkeypatch.setenv("CELERY_BROKER_URL", broker)  # Celery reads this variable before its configuration
    s = Settings(aws_endpoint_url=tripwire.url, celery_broker_url=broker, transcribe_queue=unique("sec-transcribe"),
                 dead_letter_queue=unique("sec-dlq"))
    app = make_app(s)
    try:
        for key in BAD_CHUNK_KEYS:
            out = run_chunk(BUCKET, key, settings=s, celery=app)
            assert out["status"] == "failed" and out["error"] == "bad_key" and out["reason"], (key, out)
        out = run_chunk("../evil", "sessions/a/chunks/1.wav", settings=s, celery=app)
        assert out["error"] == "bad_key"
        for sid in [*BAD_SESSION_IDS, 42, None]:
            out = run_combine(BUCKET, sid, settings=s, celery=app)
            assert out["status"] == "invalid" and out["reason"], (sid, out)
        letters = DeadLetterQueue(s, app).letters()
        assert len(letters) == len(BAD_CHUNK_KEYS) + 1 and {x.error for x in letters} == {"bad_key"}
    finally:
        redis_broker(s).delete(s.transcribe_queue, s.dead_letter_queue)
    assert tripwire.connections == 0


@pytest.mark.parametrize("command", ["status", "combine"])
def test_sessions_commands(tripwire, command: str) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": tripwire.url, "AWS_ENDPOINT_URL_S3": tripwire.url}
    for sid in ("../etc", "a/b", "x" * 129, "a\x1bb", ".hidden"):
        out = subprocess.run([str(VENV_BIN / "stt-router"), "sessions", command, sid, "--bucket", BUCKET],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0, (sid, out.stdout, out.stderr)
        said = out.stderr + out.stdout
        assert "session id" in said, said
        if command == "combine":
            assert json.loads(out.stdout)["status"] == "invalid"
    assert tripwire.connections == 0
