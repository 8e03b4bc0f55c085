"""The queued path for real, on SQS: moto's SQS and S3, the Redis at 127.0.0.1:6379, a real
`stt-router worker` subprocess with the real faster-whisper model, and espeak-ng speech.

One worker serves the whole module (the last test kills it and starts another). Engine runs are
counted from the worker's `engine_run key=...` log lines, never from a mock.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid

import pytest

from tasks.broker import sqs_client
from tasks.dlq import DeadLetterQueue
from tasks.enqueue import enqueue_chunk
from tasks.locks import Lease, chunk_name
from tests.support.services import unique, wait_for
from tests.support.speech import speak, word_error_rate
from tests.support.worker import QueuedRig, start_worker
from tests.tasks.messages import pickle_envelope, sqs_body
from transcription import layout, sessions, storage
from transcription.transcript import ChunkTranscript, FailedChunk

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def q(moto):
    rig = QueuedRig(moto, "sqs", "tasks")
    yield rig
    rig.worker.stop()


def manifest(q, session: str, **fields) -> None:
    q.s3.put_object(Bucket=q.bucket, Key=layout.manifest_key(session), Body=json.dumps(fields).encode())


def test_three_sessions_of_four_chunks(q, sentences, speech_files) -> None:
    ids = [unique("meeting") for _ in range(3)]
    expected = {}
    for n, sid in enumerate(ids):
        manifest(q, sid, total_chunks=4, language="en", title=f"meeting {n}")
        order = [(n + i) % len(speech_files) for i in range(4)]
        expected[sid] = " ".join(sentences[j] for j in order)
        for i, j in enumerate(order):
            enqueue_chunk(q.bucket, q.put(f"sessions/{sid}/chunks/{i:02d}.wav", speech_files[j]), app=q.app,
                          settings=q.settings)
    for sid in ids:
        q.wait_key(layout.session_transcript_key(sid, "json"), timeout=300)
    for sid in ids:
        st = sessions.session_status(q.bucket, sid, settings=q.settings)
        assert st.transcribed == [0, 1, 2, 3] and st.failed == [] and st.combined
        t = sessions.stored_session_transcript(q.bucket, sid, settings=q.settings)
        assert not t.partial and [c.index for c in t.chunks] == [0, 1, 2, 3]
        offsets = [c.offset for c in t.chunks]
        assert offsets == sorted(offsets) and offsets[0] == 0 and offsets[-1] > 10
        assert word_error_rate(expected[sid], t.text) < 0.2, t.text  # every sentence, in chunk order
        for fmt in layout.SESSION_FORMATS:
            assert storage.exists(q.bucket, layout.session_transcript_key(sid, fmt), settings=q.settings)
        srt = q.s3.get_object(Bucket=q.bucket, Key=layout.session_transcript_key(sid, "srt"))["Body"].read().decode()
        starts = re.findall(r"^(\d\d:\d\d:\d\d,\d\d\d) -->", srt, flags=re.M)
        assert starts == sorted(starts) and len(starts) >= 4
    assert q.worker.output().count("session_combined") >= 3


def test_same_chunk_three_times_runs_the_engine_once(q, speech_files, sentences) -> None:
    sid = unique("dup")
    key = q.put(f"sessions/{sid}/chunks/0.wav", speech_files[1])
    task_ids = [enqueue_chunk(q.bucket, key, app=q.app, settings=q.settings) for _ in range(3)]
    results = [q.app.AsyncResult(t).get(timeout=180) for t in task_ids]
    assert sorted(r["status"] for r in results) == ["skipped", "skipped", "transcribed"]
    assert q.worker.engine_runs(key) == 1
    t = ChunkTranscript.model_validate(storage.get_json(q.bucket, f"transcripts/{sid}/chunks/0.json",
                                                        settings=q.settings))
    assert word_error_rate(sentences[1], t.text) < 0.25


def test_a_chunk_uploaded_again_is_transcribed_again_and_its_session_recombined(q, speech_files,
                                                                               sentences) -> None:
    """Issue 14, hole 9 on the queued path: a chunk overwritten after it was transcribed kept its old
    transcript ("transcript exists") while the session moved on. Now the new audio's delivery
    replaces it and the session is combined again from it; two uploads 0.2 s apart end with the
    later audio's transcript."""
    sid = unique("reupload")
    manifest(q, sid, total_chunks=2, language="en")
    keys = [f"sessions/{sid}/chunks/{i}.wav" for i in (0, 1)]
    for key, j in zip(keys, (0, 1), strict=True):
        assert q.app.AsyncResult(enqueue_chunk(q.bucket, q.put(key, speech_files[j]), app=q.app,
                                               settings=q.settings)).get(timeout=180)["status"] == "transcribed"
    q.wait_key(layout.session_transcript_key(sid, "json"))
    first = sessions.stored_session_transcript(q.bucket, sid, settings=q.settings)
    assert word_error_rate(f"{sentences[0]} {sentences[1]}", first.text) < 0.25

    def put(key: str, j: int) -> str:  # the uploaded version's ETag
        return q.s3.put_object(Bucket=q.bucket, Key=key, Body=speech_files[j].read_bytes())["ETag"].strip('"')

    etag = put(keys[1], 4)  # chunk 1 uploaded again, after its transcript and the combine
    r = q.app.AsyncResult(enqueue_chunk(q.bucket, keys[1], app=q.app, settings=q.settings)).get(timeout=180)
    assert r["status"] == "transcribed" and r["replaced"] is True, r
    t = ChunkTranscript.model_validate(storage.get_json(q.bucket, f"transcripts/{sid}/chunks/1.json",
                                                        settings=q.settings))
    assert t.source_etag == etag and word_error_rate(sentences[4], t.text) < 0.25

    def recombined():
        st = sessions.stored_session_transcript(q.bucket, sid, settings=q.settings)
        return st if st.chunks[1].source_etag == etag else None

    again = wait_for(recombined, 180, what=f"the session combined again ({q.worker.log_path})")
    assert word_error_rate(f"{sentences[0]} {sentences[4]}", again.text) < 0.25, again.text
    assert again.chunks[0].source_etag == first.chunks[0].source_etag  # chunk 0 was not transcribed again
    assert q.worker.engine_runs(keys[0]) == 1
    time.sleep(2)  # a third combine would have been queued by now
    assert q.worker.output().count(f"session_combined session={sid} ") == 2

    # two uploads 0.2 s apart, each with its own delivery: the later audio's transcript stays
    key = f"sessions/{sid}/chunks/2.wav"
    put(key, 2)
    ids = [enqueue_chunk(q.bucket, key, app=q.app, settings=q.settings)]
    time.sleep(0.2)
    later = put(key, 5)
    ids.append(enqueue_chunk(q.bucket, key, app=q.app, settings=q.settings))
    outcomes = [q.app.AsyncResult(i).get(timeout=180)["status"] for i in ids]
    assert "transcribed" in outcomes, outcomes
    t = ChunkTranscript.model_validate(storage.get_json(q.bucket, f"transcripts/{sid}/chunks/2.json",
                                                        settings=q.settings))
    assert t.source_etag == later and word_error_rate(sentences[5], t.text) < 0.25, (outcomes, t.text)


def test_a_second_delivery_waits_for_the_lease_holder(q, speech_files) -> None:
    """Another worker (played by the test) holds the chunk's lease: the delivery waits, then runs."""
    sid = unique("lease")
    key = q.put(f"sessions/{sid}/chunks/0.wav", speech_files[2])
    lease = Lease(chunk_name(q.bucket, key), 4, q.settings)
    assert lease.acquire()
    try:
        tid = enqueue_chunk(q.bucket, key, app=q.app, settings=q.settings)
        wait_for(lambda: re.search(rf"chunk_retry key={re.escape(key)} .*lease", q.worker.output()), 60,
                 what="a lease wait")
        assert not storage.exists(q.bucket, f"transcripts/{sid}/chunks/0.json", settings=q.settings)
    finally:
        lease.release()
    assert q.app.AsyncResult(tid).get(timeout=120)["status"] == "transcribed"
    assert q.worker.engine_runs(key) == 1


def test_corrupt_chunk_fails_once_then_replay_after_fix(q, speech_files, sentences) -> None:
    sid = unique("bad")
    manifest(q, sid, total_chunks=2)
    good = q.put(f"sessions/{sid}/chunks/0.wav", speech_files[0])
    bad = q.put(f"sessions/{sid}/chunks/1.wav", b"RIFF\x00\x10\x00\x00WAVEfmt " + os.urandom(3000))
    enqueue_chunk(q.bucket, good, app=q.app, settings=q.settings)
    tid = enqueue_chunk(q.bucket, bad, app=q.app, settings=q.settings)
    assert q.app.AsyncResult(tid).get(timeout=120)["status"] == "failed"
    record = FailedChunk.model_validate(storage.get_json(q.bucket, layout.failed_key(sid, 1), settings=q.settings))
    assert record.error == "bad_audio" and record.attempts == 1 and record.reason
    assert f"chunk_retry key={bad}" not in q.worker.output()  # bad input is never retried
    assert q.worker.engine_runs(bad) == 0
    # the session is still combined, as partial, with the gap marked
    q.wait_key(layout.session_transcript_key(sid, "json"))
    partial = sessions.stored_session_transcript(q.bucket, sid, settings=q.settings)
    assert partial.partial and partial.chunks[1].status == "failed" and any(s.gap for s in partial.segments)
    # the dead letter, with its reason
    letters = [x for x in DeadLetterQueue(q.settings, q.app).letters() if x.key == bad]
    assert len(letters) == 1 and letters[0].id == tid and letters[0].error == "bad_audio"
    assert letters[0].reason == record.reason
    listed = q.cli("dlq", "list")
    assert bad in listed.stdout and "bad_audio" in listed.stdout
    # a duplicate delivery of the same bad upload changes nothing: no second dead letter
    again = enqueue_chunk(q.bucket, bad, app=q.app, settings=q.settings)
    assert q.app.AsyncResult(again).get(timeout=120)["status"] == "already_failed"
    # fix the object, replay: transcribed, and the session transcript brought up to date
    q.put(bad, speech_files[3])
    replay = q.cli("dlq", "replay", tid)
    assert replay.returncode == 0 and "1 replayed" in replay.stdout, replay.stderr
    q.wait_key(f"transcripts/{sid}/chunks/1.json")
    assert [x for x in DeadLetterQueue(q.settings, q.app).letters() if x.key == bad] == []
    wait_for(lambda: not sessions.stored_session_transcript(q.bucket, sid, settings=q.settings).partial, 120,
             what="the session transcript without its gap")
    fixed = sessions.stored_session_transcript(q.bucket, sid, settings=q.settings)
    assert word_error_rate(f"{sentences[0]} {sentences[3]}", fixed.text) < 0.2
    status = q.cli("sessions", "status", sid)
    assert status.returncode == 0
    assert re.search(r"transcribed:\s+2", status.stdout) and re.search(r"failed:\s+0", status.stdout)
    assert "session transcript: yes" in status.stdout


def test_pickle_message_is_discarded_without_running(q, tmp_path) -> None:
    marker = tmp_path / "pwned"
    client = sqs_client(q.settings)
    url = client.get_queue_url(QueueName=q.settings.transcribe_queue)["QueueUrl"]
    before = q.worker.output().count("refused_message_discarded")
    client.send_message(QueueUrl=url, MessageBody=sqs_body(pickle_envelope(q.settings.transcribe_queue, str(marker))))
    wait_for(lambda: q.worker.output().count("refused_message_discarded") > before, 60, what="the refusal")

    def gone() -> bool:
        attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"

    wait_for(gone, 30, what="the message deleted")
    assert not marker.exists()
    assert "ContentDisallowed" in q.worker.output() or "Refusing to deserialize" in q.worker.output()
    assert q.worker.alive()


def _pool_children(pid: int) -> list[int]:
    return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def test_chunk_that_keeps_killing_its_worker_is_dead_lettered(q, sentences) -> None:
    """The pool process dies under the chunk each time (SIGKILL, as the OOM killer would): the main
    process requeues it (`task_reject_on_worker_lost`), and on delivery MAX_RECEIVE_COUNT (3) it is
    dead-lettered with the reason instead of looping."""
    sid = unique("poison")
    key = q.put(f"sessions/{sid}/chunks/0.wav", speak(" ".join(sentences[1:5])))
    tid = enqueue_chunk(q.bucket, key, app=q.app, settings=q.settings)
    for delivery in (1, 2):
        wait_for(lambda d=delivery: f"chunk_start key={key} attempt=1 delivery={d}" in q.worker.output(), 120,
                 what=f"delivery {delivery}")
        for child in _pool_children(q.worker.pid):
            os.kill(child, 9)
    q.wait_key(layout.failed_key(sid, 0), timeout=120)
    record = FailedChunk.model_validate(storage.get_json(q.bucket, layout.failed_key(sid, 0), settings=q.settings))
    assert record.error == "worker_lost" and record.attempts == 3
    assert "2 earlier deliveries died" in record.reason and "worker process lost" in record.reason
    assert q.worker.engine_runs(key) == 0 and q.worker.alive()
    letters = [x for x in DeadLetterQueue(q.settings, q.app).letters() if x.key == key]
    assert [(x.id, x.error) for x in letters] == [(tid, "worker_lost")]
    DeadLetterQueue(q.settings, q.app).drop([tid])


def test_sigkill_mid_chunk_comes_back_after_the_visibility_timeout(q, sentences, speech_files) -> None:
    """SIGKILL of the worker's whole process group while it transcribes: nothing acks the message,
    so SQS delivers it again after VISIBILITY_TIMEOUT_S (25 s here) to the next worker."""
    sid = unique("kill")
    text = " ".join(sentences[:4])
    long_key = q.put(f"sessions/{sid}/chunks/0.wav", speak(text))
    next_key = q.put(f"sessions/{sid}/chunks/1.wav", speech_files[4])
    manifest(q, sid, total_chunks=2)
    enqueue_chunk(q.bucket, long_key, app=q.app, settings=q.settings, task_id=str(uuid.uuid4()))
    enqueue_chunk(q.bucket, next_key, app=q.app, settings=q.settings)
    wait_for(lambda: f"chunk_start key={long_key}" in q.worker.output(), 120, what="the long chunk to start")
    q.worker.kill()
    killed_at = time.monotonic()
    assert not storage.exists(q.bucket, f"transcripts/{sid}/chunks/0.json", settings=q.settings)
    q.worker = start_worker(q.env, "worker-sqs-2")
    q.wait_key(layout.session_transcript_key(sid, "json"), timeout=180)
    assert time.monotonic() - killed_at >= 20  # it came back with the visibility timeout, not before
    assert q.worker.engine_runs(long_key) == 1 and q.worker.engine_runs(next_key) == 1
    assert f"chunk_start key={long_key} attempt=1 delivery=2" in q.worker.output()
    t = ChunkTranscript.model_validate(storage.get_json(q.bucket, f"transcripts/{sid}/chunks/0.json",
                                                        settings=q.settings))
    assert word_error_rate(text, t.text) < 0.2
    assert not sessions.stored_session_transcript(q.bucket, sid, settings=q.settings).partial
