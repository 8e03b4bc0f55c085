"""The drain and the sweeper for real: moto's SQS and S3, the Redis at 127.0.0.1:6379 (broker
results and chords), one real `stt-router worker` with the real faster-whisper model, espeak-ng
speech. Engine runs are counted from the worker's `engine_run key=...` lines, combines from its
`session_combined ... written=True` lines: nothing is mocked."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from types import SimpleNamespace

import pytest

from tasks import locks
from tasks.broker import queue_url, sqs_client
from tasks.drain import run_drain, run_sweep
from tasks.enqueue import enqueue_chunk
from tests.support.services import VENV_BIN, unique, wait_for
from tests.support.speech import word_error_rate
from tests.support.worker import producer, settings_for, start_worker, worker_env
from transcription import layout, sessions, storage
from transcription.transcript import ChunkTranscript, Segment

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def d(moto):
    bucket = unique("drain")
    moto.client("s3").create_bucket(Bucket=bucket)
    env = worker_env(moto, "sqs", S3_BUCKET=bucket, CONTROL_QUEUE=unique("control"))
    ns = SimpleNamespace(env=env, bucket=bucket, s3=moto.client("s3"), app=producer(env), settings=settings_for(env))
    ns.worker = start_worker(env, "worker-drain")
    yield ns
    ns.worker.stop()


def put(d, key: str, body) -> str:
    d.s3.put_object(Bucket=d.bucket, Key=key, Body=body if isinstance(body, bytes) else body.read_bytes())
    return key


def manifest(d, session: str, **fields) -> None:
    d.s3.put_object(Bucket=d.bucket, Key=layout.manifest_key(session), Body=json.dumps(fields).encode())


def combines(d, session: str) -> int:
    """How many times a session transcript was actually written (not refused as existing)."""
    return len(re.findall(rf"session_combined session={re.escape(session)} written=True", d.worker.output()))


def test_drain_transcribes_every_missing_chunk_once_and_combines_each_session_once(d, speech_files,
                                                                                 sentences) -> None:
    a, b, c = unique("a"), unique("b"), unique("c")
    # a: three chunks, the first transcribed during the day; the second queued by the router just now
    manifest(d, a, total_chunks=3, language="en")
    a_keys = [put(d, f"sessions/{a}/chunks/{i:02d}.wav", speech_files[i]) for i in range(3)]
    first = enqueue_chunk(d.bucket, a_keys[0], app=d.app, settings=d.settings)
    assert d.app.AsyncResult(first).get(timeout=180)["status"] == "transcribed"
    # b: a good chunk and a corrupt one: the chord must still complete and combine b as partial
    manifest(d, b, total_chunks=2)
    b_keys = [put(d, f"sessions/{b}/chunks/0.wav", speech_files[3]),
              put(d, f"sessions/{b}/chunks/1.wav", b"RIFF\x00\x10\x00\x00WAVEfmt " + os.urandom(2000))]
    # c: still open (no total_chunks): transcribed, not combined
    c_key = put(d, f"sessions/{c}/chunks/0.wav", speech_files[4])

    router_task = enqueue_chunk(d.bucket, a_keys[1], app=d.app, settings=d.settings)
    out = run_drain(d.bucket, settings=d.settings, celery=d.app)

    assert out["status"] == "drained"
    mine = {sid: n for sid, n in out["backlog"].items() if sid in (a, b, c)}
    assert mine == {a: 2, b: 2, c: 1}  # a's first chunk is done; a's second is queued but not done yet
    results = {sid: d.app.AsyncResult(out["chords"][sid]).get(timeout=300) for sid in (a, b, c)}
    assert d.app.AsyncResult(router_task).get(timeout=120)["status"] in ("transcribed", "skipped")
    assert results[a]["status"] in ("combined", "exists") and results[b]["status"] in ("combined", "exists")
    assert results[c]["status"] == "incomplete"

    # every chunk ran through the engine exactly once, the bad one never
    for key in [*a_keys, b_keys[0], c_key]:
        assert d.worker.engine_runs(key) == 1, key
    assert d.worker.engine_runs(b_keys[1]) == 0
    # each ended session combined exactly once (the chord callback and the last chunk's trigger race)
    wait_for(lambda: combines(d, a) and combines(d, b), 60, what="both combines logged")
    assert combines(d, a) == 1 and combines(d, b) == 1 and combines(d, c) == 0

    ta = sessions.stored_session_transcript(d.bucket, a, settings=d.settings)
    assert not ta.partial and [ch.index for ch in ta.chunks] == [0, 1, 2]
    assert word_error_rate(" ".join(sentences[:3]), ta.text) < 0.25, ta.text
    tb = sessions.stored_session_transcript(d.bucket, b, settings=d.settings)
    assert tb.partial and [ch.status for ch in tb.chunks] == ["transcribed", "failed"]
    assert sessions.stored_session_transcript(d.bucket, c, settings=d.settings) is None
    assert storage.exists(d.bucket, layout.chunk_transcript_key(c, 0), settings=d.settings)

    # nothing left: a second drain queues nothing (the failed chunk waits for a replay, not a drain)
    again = run_drain(d.bucket, settings=d.settings, celery=d.app)
    assert again["chunks"] == 0 and again["sessions"] == 0 and again["chords"] == {}


def test_sweeper_combines_a_session_whose_trigger_was_lost(d) -> None:
    """A session whose chunks are all transcribed but whose combine never came (its trigger lost)."""
    lost = unique("lost")
    manifest(d, lost, total_chunks=1)
    put(d, f"sessions/{lost}/chunks/0.wav", b"RIFF....")
    moved = ChunkTranscript(session_id=lost, chunk_index=0, source_key=f"sessions/{lost}/chunks/0.wav", duration=2.0,
                            language="en", engine="faster-whisper", model="base",
                            segments=[Segment(start=0.0, end=2.0, text="the trigger was lost")])
    put(d, layout.chunk_transcript_key(lost, 0), moved.model_dump_json().encode())
    still_open = unique("open")
    put(d, f"sessions/{still_open}/chunks/0.wav", b"RIFF....")
    put(d, layout.chunk_transcript_key(still_open, 0), moved.model_copy(update={"session_id": still_open})
        .model_dump_json().encode())

    out = run_sweep(d.bucket, settings=d.settings, celery=d.app)
    assert out["triggered"] == [lost] and not out["errors"]
    wait_for(lambda: storage.exists(d.bucket, layout.session_transcript_key(lost, "json"), settings=d.settings),
             120, what=f"{lost} combined by the sweep ({d.worker.log_path})")
    assert combines(d, lost) == 1
    assert run_sweep(d.bucket, settings=d.settings, celery=d.app)["triggered"] == []  # healed: nothing more
    assert not storage.exists(d.bucket, layout.session_transcript_key(still_open, "json"), settings=d.settings)
    # from now on the sweeps remember: combined and open sessions cost no S3 request per sweep
    third = run_sweep(d.bucket, settings=d.settings, celery=d.app)
    assert third["skipped"] == len(sessions.list_sessions(d.bucket, settings=d.settings))
    assert third["ended_uncombined"] == 0 and third["triggered"] == []


def test_a_second_drain_while_one_runs_sends_nothing(d) -> None:
    lease = locks.Lease(locks.drain_name(d.bucket), 10, d.settings)
    assert lease.acquire()
    try:
        assert run_drain(d.bucket, settings=d.settings, celery=d.app)["status"] == "already_running"
    finally:
        lease.release()


def test_drain_command(d, speech_files) -> None:
    """`stt-router drain --dry-run` shows, `--now --json` drains here, plain `drain` queues the task."""
    sid = unique("cli")
    key = put(d, f"sessions/{sid}/chunks/0.wav", speech_files[0])
    env = {**os.environ, **d.env}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "stt-router"), "drain", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    dry = cli("--dry-run")
    assert dry.returncode == 0 and f"{sid}: 1 chunk(s)" in dry.stdout and "would queue" in dry.stdout, dry.stderr
    assert d.worker.engine_runs(key) == 0
    now = cli("--now", "--json")
    assert now.returncode == 0, now.stderr
    summary = json.loads(now.stdout)
    assert summary["status"] == "drained" and summary["backlog"] == {sid: 1} and summary["chunks"] == 1
    wait_for(lambda: storage.exists(d.bucket, layout.chunk_transcript_key(sid, 0), settings=d.settings), 180,
             what="the chunk drained by the command")
    assert d.worker.engine_runs(key) == 1
    queued = cli()  # to CONTROL_QUEUE for `stt-router beat` (not running in this module): it waits there
    assert queued.returncode == 0 and d.env["CONTROL_QUEUE"] in queued.stdout
    task_id = queued.stdout.split()[2]
    client = sqs_client(d.settings)
    msgs = client.receive_message(QueueUrl=queue_url(d.env["CONTROL_QUEUE"], d.settings, client),
                                  WaitTimeSeconds=5, MessageAttributeNames=["All"]).get("Messages", [])
    envelope = json.loads(base64.b64decode(msgs[0]["Body"]))
    assert envelope["headers"]["task"] == "tasks.drain" and envelope["headers"]["id"] == task_id
