"""The sessions routes for real: a `stt-router serve` and a `stt-router worker` on one bucket (moto's
S3 and SQS, the Redis at 127.0.0.1:6379), the real faster-whisper model on espeak-ng speech.

One session goes through every state: a chunk transcribed directly (the router's call to the server),
one queued (the worker), one that is not audio (failed, with its reason), then the manifest ends it;
a combine lease makes it `combining`, and the worker's combine makes it `partial`.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tasks.enqueue import enqueue_chunk, trigger_combine
from tasks.locks import Lease, combine_name
from tests.app.conftest import AUTH, SERVER_ENV, start_server
from tests.support.services import unique, wait_for
from tests.support.speech import word_error_rate
from tests.support.worker import QueuedRig
from transcription import layout

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def rig(moto):
    q = QueuedRig(moto, "sqs", "sessions-api")
    yield q
    q.worker.stop()


@pytest.fixture(scope="module")
def api(rig):
    env = {**SERVER_ENV, **rig.env, "S3_BUCKET": rig.bucket}
    running = start_server("sessions-server", env)
    yield running
    running.process.stop()


def report(client: httpx.Client, sid: str, **params: str) -> dict:
    r = client.get(f"/sessions/{sid}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_session_through_every_state_on_both_paths(rig, api, speech_files, sentences) -> None:
    sid = unique("meet")
    c = api.client(headers=AUTH)
    assert c.get(f"/sessions/{sid}").status_code == 404

    # chunk 0 on the direct path: the router's call to the server
    k0 = rig.put(f"sessions/{sid}/chunks/0.wav", speech_files[0])
    r = c.post("/transcribe-s3", json={"s3_input_path": f"s3://{rig.bucket}/{k0}"})
    assert r.status_code == 200, r.text
    st = report(c, sid)
    assert st["state"] == "open" and st["total_chunks"] is None and st["progress"] is None
    assert st["transcribed"] == [0] and st["counts"]["uploaded"] == 1
    assert st["first_upload_at"] and st["transcript_keys"] == {}

    # chunk 1 queued for the worker, chunk 2 not audio (the worker records it failed)
    k1 = rig.put(f"sessions/{sid}/chunks/1.wav", speech_files[1])
    k2 = rig.put(f"sessions/{sid}/chunks/2.wav", b"RIFF....WAVEnot really audio" * 10)
    tasks = [enqueue_chunk(rig.bucket, k, app=rig.app, settings=rig.settings) for k in (k1, k2)]
    outcomes = [rig.app.AsyncResult(t).get(timeout=180) for t in tasks]  # each task's completion check ran too
    assert [o["status"] for o in outcomes] == ["transcribed", "failed"]
    st = report(c, sid, chunks="true")
    assert st["state"] == "open" and st["transcribed"] == [0, 1]
    assert [f["index"] for f in st["failed"]] == [2] and st["failed"][0]["error"] == "bad_audio"
    paths = {d["index"]: (d["status"], d["via"]) for d in st["chunks"]}
    assert paths == {0: ("transcribed", "direct"), 1: ("transcribed", "queued"), 2: ("failed", None)}
    assert st["chunks"][2]["reason"] and st["chunks"][0]["transcribed_at"] and st["chunks"][0]["audio_key"] == k0
    assert c.get(f"/sessions/{sid}/transcript").status_code == 409

    # the recorder says 4 chunks: one never came
    rig.s3.put_object(Bucket=rig.bucket, Key=layout.manifest_key(sid), Body=json.dumps({"total_chunks": 4}).encode())
    st = report(c, sid)
    assert st["state"] == "in progress" and st["missing"] == [3] and st["progress"] == 0.75
    # the recorder corrects it to 3: every chunk is in, the combine is due (no router runs here to trigger it)
    rig.s3.put_object(Bucket=rig.bucket, Key=layout.manifest_key(sid), Body=json.dumps({"total_chunks": 3}).encode())
    st = report(c, sid)
    assert st["state"] == "complete" and st["progress"] == 1.0 and st["missing"] == []
    not_yet = c.get(f"/sessions/{sid}/transcript", params={"format": "srt"})
    assert not_yet.status_code == 409 and not_yet.json()["kind"] == "not_ready"
    assert "complete" in not_yet.json()["detail"]

    # a combine holds the session's lease: combining
    lease = Lease(combine_name(rig.bucket, sid), 30, rig.settings)
    assert lease.acquire()
    try:
        assert report(c, sid)["state"] == "combining"
        combining = c.get("/sessions", params={"state": "combining", "limit": 200}).json()["sessions"]
        assert [x["session_id"] for x in combining] == [sid]
    finally:
        lease.release()

    # the worker combines it: partial (chunk 2 is a marked gap)
    assert trigger_combine(rig.bucket, sid, app=rig.app, settings=rig.settings)
    wait_for(lambda: report(c, sid)["state"] == "partial", 180, what="the combine")
    st = report(c, sid)
    assert st["partial"] is True and st["combined_at"]
    assert st["transcript_keys"]["json"] == layout.session_transcript_key(sid, "json")
    txt = c.get(f"/sessions/{sid}/transcript", params={"format": "txt"})
    assert txt.status_code == 200 and txt.headers["content-type"].startswith("text/plain")
    gap = "[chunk 2 missing: bad_audio]"
    assert gap in txt.text
    assert word_error_rate(f"{sentences[0]} {sentences[1]}", txt.text.replace(gap, "")) < 0.25
    body = c.get(f"/sessions/{sid}/transcript").json()
    assert body["session_id"] == sid and [x["status"] for x in body["chunks"]] == ["transcribed", "transcribed",
                                                                                    "failed"]
    vtt = c.get(f"/sessions/{sid}/transcript", params={"format": "vtt"})
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")

    # the CLI prints the same report
    cli = rig.cli("sessions", "status", sid, "--json")
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    assert printed["state"] == "partial" and printed["failed"] == st["failed"], cli.stdout
    assert [d["via"] for d in printed["chunks"]] == ["direct", "queued", None]
    text = rig.cli("sessions", "status", sid)
    assert "partial" in text.stdout and "chunk 2: bad_audio" in text.stdout, text.stdout


def test_listing_pages_and_filters(rig, api) -> None:
    c = api.client(headers=AUTH)
    prefix = unique("page")
    ids = [f"{prefix}-{i}" for i in range(5)]
    for i, sid in enumerate(ids):
        rig.s3.put_object(Bucket=rig.bucket, Key=f"sessions/{sid}/chunks/0.wav", Body=b"x")
        if i % 2:
            rig.s3.put_object(Bucket=rig.bucket, Key=layout.manifest_key(sid), Body=b'{"total_chunks": 2}')
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", "state": "in progress", **({"cursor": cursor} if cursor else {})}
        r = c.get("/sessions", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["sessions"]) <= 2
        assert all(s["state"] == "in progress" for s in page["sessions"])
        seen += [s["session_id"] for s in page["sessions"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert [s for s in seen if s.startswith(prefix)] == [ids[1], ids[3]]
    assert len(seen) == len(set(seen))  # no session on two pages


@pytest.mark.parametrize(("path", "status"), [
    ("/sessions/a..b", 422), ("/sessions/-x", 422), ("/sessions/" + "a" * 129, 422),
    ("/sessions/nope-never", 404), ("/sessions/nope-never/transcript", 404),
    ("/sessions/x/transcript?format=docx", 422), ("/sessions?limit=0", 422), ("/sessions?cursor=..", 422),
    ("/sessions?state=done", 422),
])
def test_bad_requests_are_clear_4xx(api, path: str, status: int) -> None:
    r = api.client(headers=AUTH).get(path)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_the_routes_need_the_api_key(api) -> None:
    for path in ("/sessions", "/sessions/x", "/sessions/x/transcript"):
        assert httpx.get(api.url + path, timeout=10).status_code == 401
