"""The app in this process (Starlette's TestClient, the real model): health states, auth on every
route, bad input answered with a 4xx and its reason, body limits, metrics, inference slots."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.auth import InsecureConfig
from app.capacity import Slots
from app.errors import Unavailable
from app.main import create_app
from tests.app.conftest import API_KEY, AUTH
from tests.support.speech import word_error_rate
from transcription.errors import ModelError
from transcription.settings import Settings

PUBLIC = {"/health", "/metrics", "/docs", "/redoc", "/openapi.json"}


def make_settings(**kw: object) -> Settings:
    return Settings(api_key=API_KEY, **kw)


@pytest.fixture(scope="module")
def client(fw_engine) -> TestClient:
    with TestClient(create_app(make_settings(max_audio_s=30, max_json_kb=4, max_upload_mb=1),
                               engine=fw_engine)) as c:
        yield c


def upload(client: TestClient, data: bytes, path: str = "/transcribe", **fields: str):
    return client.post(path, files={"file": ("a.wav", data, "audio/wav")}, data=fields, headers=AUTH)


def test_health_says_loading_until_the_engine_is_ready(fw_engine, speech_files) -> None:
    loaded = threading.Event()

    def slow_loader(settings: Settings):
        loaded.wait(30)
        return fw_engine

    with TestClient(create_app(make_settings(), engine_loader=slow_loader)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading" and r.headers["Retry-After"]
        r = upload(c, speech_files[0].read_bytes())
        assert r.status_code == 503 and r.json()["kind"] == "loading" and r.headers["Retry-After"]
        loaded.set()
        c.app.state.server.engines.wait(30)
        r = c.get("/health")
        assert r.status_code == 200
        body = r.json()
        assert body == {"status": "ready", "engine": "faster-whisper", "model": "base", "device": "cpu",
                        "inflight": 0, "capacity": 1, "reason": None}
        assert API_KEY not in r.text


def test_a_model_that_fails_to_load_shows_in_health(speech_files) -> None:
    def broken(settings: Settings):
        raise ModelError("model.bin sha256 mismatch")

    with TestClient(create_app(make_settings(), engine_loader=broken)) as c:
        c.app.state.server.engines.wait(10)
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "failed" and "sha256" in r.json()["reason"]
        r = upload(c, speech_files[0].read_bytes())
        assert r.status_code == 503 and "sha256 mismatch" in r.json()["detail"]


def test_every_route_but_health_metrics_and_docs_needs_the_key(client: TestClient) -> None:
    operations = [(path, method) for path, item in client.get("/openapi.json").json()["paths"].items()
                  for method in item]
    protected = [(p, m) for p, m in operations if p not in PUBLIC]
    assert {p for p, _ in protected} == {"/transcribe", "/transcribe-s3", "/transcribe-url",
                                         "/v1/audio/transcriptions", "/sessions", "/sessions/{session_id}",
                                         "/sessions/{session_id}/transcript"}
    wrong = [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}, {"Authorization": API_KEY},
             {"Authorization": f"Basic {API_KEY}"}, {"X-API-Key": API_KEY[:-1]}]
    for path, method in protected:
        for headers in wrong:
            r = client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (path, headers)
            assert r.headers["WWW-Authenticate"].startswith("Bearer") and "API key" in r.json()["detail"]
        # either header passes the check (the empty body, or the literal "{session_id}", then fails
        # validation, a 422, not a 401; GET /sessions lists the bucket)
        for good in (AUTH, {"X-API-Key": API_KEY}):
            status = client.request(method, path, headers=good, json={}).status_code
            assert status == 422 if path != "/sessions" else status not in (401, 422), (path, status)
    for path in PUBLIC:
        assert client.get(path).status_code == 200, path
    assert client.get("/no-such-route").status_code == 401  # unknown paths reveal nothing either


def test_private_metrics_need_the_key(fw_engine) -> None:
    with TestClient(create_app(make_settings(public_metrics=False), engine=fw_engine)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=AUTH).status_code == 200
        assert c.get("/health").status_code == 200


def test_refuses_to_start_without_an_api_key(fw_engine) -> None:
    with pytest.raises(InsecureConfig, match="API_KEY is not set"):
        create_app(Settings(api_key=None))
    with pytest.raises(InsecureConfig):
        create_app(Settings(api_key=""))
    with TestClient(create_app(Settings(api_key=None, allow_insecure_no_api_key=True), engine=fw_engine)) as c:
        assert c.post("/transcribe-s3", json={}).status_code == 422  # open on purpose


def test_upload_formats(client: TestClient, speech_files, sentences) -> None:
    r = upload(client, speech_files[1].read_bytes(), word_timestamps="true", language="en")
    assert r.status_code == 200
    t = r.json()
    assert t["kind"] == "chunk" and t["language"] == "en" and t["segments"][0]["words"]
    assert word_error_rate(sentences[1], " ".join(s["text"] for s in t["segments"])) < 0.25
    r = upload(client, speech_files[1].read_bytes(), response_format="vtt")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt") and r.text.startswith("WEBVTT")


def test_bad_input_is_a_4xx_with_the_reason(client: TestClient, speech_files, tmp_path: Path) -> None:
    wav = speech_files[0].read_bytes()
    cases = [
        (upload(client, b"<html>not audio</html>"), 415, "not a supported audio file"),
        (upload(client, b""), 422, "empty"),
        (upload(client, wav[: len(wav) // 2]), 422, "truncated"),
        (upload(client, b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk"), 422, "wav"),
        (upload(client, wav, language="klingon"), 422, "language"),
        (upload(client, wav, language="xx"), 422, "unsupported language"),
        (upload(client, wav, response_format="docx"), 422, "response_format"),
        (upload(client, wav, word_timestamps="maybe"), 422, "word_timestamps"),
        (client.post("/transcribe", data={"language": "en"}, headers=AUTH), 422, "file"),
        (upload(client, wav, "/v1/audio/transcriptions", temperature="3"), 422, "temperature"),
        (upload(client, wav, "/v1/audio/transcriptions", **{"timestamp_granularities[]": "char"}), 422,
         "timestamp_granularities"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (words, response.text)
        assert words in response.json()["detail"], (words, response.json())
    # OpenAI's error shape on /v1, so the openai client shows the reason
    assert "temperature" in cases[9][0].json()["error"]["message"]


def test_too_long_audio_is_refused(fw_engine, sentences) -> None:
    from tests.support.speech import speak

    long_wav = speak(" ".join(sentences[:3])).read_bytes()  # ~12 s
    with TestClient(create_app(make_settings(max_audio_s=5), engine=fw_engine)) as c:
        r = upload(c, long_wav)
        assert r.status_code == 422 and "longer than the maximum of 5 s" in r.json()["detail"]


@pytest.mark.parametrize(("body", "words"), [
    (b"{not json", "JSON"),
    (b"[1, 2]", "dict"),
    (b'{"s3_input_path": "http://bucket/key.wav"}', "must start with s3://"),
    (b'{"s3_input_path": "s3://Bad_Bucket/sessions/a/chunks/1.wav"}', "invalid bucket name"),
    (b'{"s3_input_path": "s3://bucket/sessions/../../etc/passwd"}', "'..'"),
    (b'{"s3_input_path": "s3://bucket//etc/passwd"}', "absolute"),
    (b'{"s3_input_path": "s3://bucket/"}', "empty"),
    (b'{"s3_input_path": "s3://bucket/a\\u0000b"}', "control"),
    (b'{"s3_input_path": "s3://bucket/k.wav", "s3_output_path": "s3://bucket/../x"}', "'..'"),
    (b'{"s3_input_path": "s3://bucket/k.wav", "colour": "blue"}', "colour"),
    (b'{"s3_input_path": "s3://bucket/k.wav", "temperature": 5}', "temperature"),
    (b'{"s3_input_path": "s3://bucket/k.wav", "task": "summarise"}', "task"),
])
def test_bad_json_and_s3_paths_are_422(client: TestClient, body: bytes, words: str) -> None:
    r = client.post("/transcribe-s3", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert words in r.json()["detail"], r.json()


def test_s3_trouble_is_a_503_the_router_retries(fw_engine) -> None:
    """An S3 endpoint that refuses connections: retryable, so 503 with Retry-After, not a 4xx."""
    from tests.support.services import free_port

    dead = make_settings(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    with TestClient(create_app(dead, engine=fw_engine)) as c:
        r = c.post("/transcribe-s3", json={"s3_input_path": "s3://stt-router/sessions/s1/chunks/0.wav"},
                   headers=AUTH)
        assert r.status_code == 503 and r.json()["kind"] == "storage" and r.headers["Retry-After"]


def test_body_limits(client: TestClient) -> None:
    big_json = b'{"url": "http://example.com/' + b"a" * 5000 + b'"}'
    r = client.post("/transcribe-url", content=big_json, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    r = upload(client, b"\0" * (1 << 20) + b"\0" * (80 << 10))
    assert r.status_code == 413 and r.json()["kind"] == "too_large"

    def stream(n: int):  # no Content-Length: counted as it arrives
        for _ in range(n):
            yield b"x" * 1024

    r = client.post("/transcribe-url", content=stream(64), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    r = client.post("/transcribe-url", content=stream(1), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422  # under the limit: read, then refused as bad JSON


def test_metrics_count_requests_errors_and_audio(client: TestClient, speech_files) -> None:
    assert upload(client, speech_files[2].read_bytes()).status_code == 200
    upload(client, b"nope")
    text = client.get("/metrics").text
    assert 'stt_server_requests_total{method="POST",route="/transcribe",status="200"}' in text
    assert 'stt_server_errors_total{kind="bad_audio"}' in text
    audio = float(next(line.split()[-1] for line in text.splitlines()
                        if line.startswith("stt_server_audio_seconds_total")))
    assert audio > 3
    assert "stt_server_inflight 0.0" in text and "stt_server_capacity 1.0" in text
    assert "stt_server_engine_ready 1.0" in text


def test_capacity_two_serves_two_requests_at_once(fw_engine, speech_files) -> None:
    """Two slots: both requests are taken (no 503) while the engine itself runs them one by one."""
    with TestClient(create_app(make_settings(server_capacity=2, slot_wait_s=0), engine=fw_engine)) as c:
        results: list[int] = []
        seen: list[tuple[int, str]] = []

        def post(i: int) -> None:
            results.append(upload(c, speech_files[i].read_bytes(), language="en").status_code)

        jobs = [threading.Thread(target=post, args=(i,)) for i in (0, 1)]
        for job in jobs:
            job.start()
        while any(job.is_alive() for job in jobs):
            h = c.get("/health").json()
            seen.append((h["inflight"], h["status"]))
            time.sleep(0.02)
        assert results == [200, 200]
        assert (2, "busy") in seen and all(n <= 2 for n, _ in seen)


def test_slots_bound_concurrency_and_refuse_after_the_wait() -> None:
    async def scenario() -> None:
        slots = Slots(capacity=1, wait_s=0.2)
        release = threading.Event()
        first = asyncio.create_task(slots.run(lambda: release.wait(10)))
        await asyncio.sleep(0.05)
        assert slots.full and slots.inflight == 1
        started = time.monotonic()
        with pytest.raises(Unavailable) as busy:
            await slots.run(lambda: None)
        assert busy.value.kind == "busy" and 1 <= busy.value.retry_after <= 60
        assert 0.15 <= time.monotonic() - started < 2
        # a waiter that gets a slot within the wait is served
        waiter = asyncio.create_task(slots.run(lambda: "second"))
        await asyncio.sleep(0.05)
        release.set()
        assert await first is True and await waiter == "second"
        assert slots.inflight == 0

    asyncio.run(scenario())


def test_a_cancelled_request_keeps_its_slot_until_the_inference_ends() -> None:
    async def scenario() -> None:
        slots = Slots(capacity=1, wait_s=0)
        release = threading.Event()
        task = asyncio.create_task(slots.run(lambda: release.wait(10)))
        await asyncio.sleep(0.05)
        task.cancel()  # the client went away
        await asyncio.sleep(0.05)
        assert slots.inflight == 1  # the thread still runs, so the slot is still taken
        with pytest.raises(asyncio.CancelledError):
            await task
        assert slots.inflight == 1
        release.set()  # the inference ends: now its thread gives the slot back
        for _ in range(100):
            if slots.inflight == 0:
                break
            await asyncio.sleep(0.02)
        assert slots.inflight == 0

    asyncio.run(scenario())
