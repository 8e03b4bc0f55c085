"""The same flow on the Redis broker (for on-premise users): a real `stt-router worker` on
`redis://` (its own database), moto's S3, the real model. The dead-letter queue is a Redis list
the tasks write explicitly; a killed worker's message is restored after the visibility timeout.
"""

from __future__ import annotations

import json
import time

import pytest

from tasks.broker import redis_broker
from tasks.dlq import DeadLetterQueue
from tasks.enqueue import enqueue_chunk
from tests.support.services import unique, wait_for
from tests.support.speech import speak, word_error_rate
from tests.support.worker import QueuedRig, start_worker
from tests.tasks.messages import pickle_envelope
from transcription import layout, sessions, storage
from transcription.transcript import FailedChunk

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def q(moto):
    rig = QueuedRig(moto, "redis", "tasks-redis")
    yield rig
    rig.worker.stop()
    redis_broker(rig.settings).delete(rig.settings.transcribe_queue, rig.settings.dead_letter_queue)


def test_session_with_a_corrupt_chunk_dead_letter_and_replay(q, sentences, speech_files) -> None:
    sid = unique("onprem")
    q.s3.put_object(Bucket=q.bucket, Key=layout.manifest_key(sid), Body=json.dumps({"total_chunks": 3}).encode())
    keys = [q.put(f"sessions/{sid}/chunks/{i}.wav", speech_files[i]) for i in (0, 1)]
    bad = q.put(f"sessions/{sid}/chunks/2.wav", b"this is not audio at all")
    ids = [enqueue_chunk(q.bucket, k, app=q.app, settings=q.settings) for k in [*keys, bad]]
    results = [q.app.AsyncResult(t).get(timeout=180) for t in ids]
    assert [r["status"] for r in results] == ["transcribed", "transcribed", "failed"]
    record = FailedChunk.model_validate(storage.get_json(q.bucket, layout.failed_key(sid, 2), settings=q.settings))
    assert record.error == "bad_audio" and record.attempts == 1
    assert q.worker.engine_runs(bad) == 0 and f"chunk_retry key={bad}" not in q.worker.output()
    q.wait_key(layout.session_transcript_key(sid, "json"))
    assert sessions.stored_session_transcript(q.bucket, sid, settings=q.settings).partial
    # the dead letter sits in a Redis list, with its reason
    assert redis_broker(q.settings).llen(q.settings.dead_letter_queue) == 1
    listed = q.cli("dlq", "list")
    assert listed.returncode == 0 and bad in listed.stdout and record.reason[:40] in listed.stdout
    q.put(bad, speech_files[2])
    replay = q.cli("dlq", "replay", bad)  # by chunk key this time
    assert replay.returncode == 0 and "1 replayed" in replay.stdout, replay.stderr
    q.wait_key(f"transcripts/{sid}/chunks/2.json")
    assert DeadLetterQueue(q.settings, q.app).letters() == []
    wait_for(lambda: not sessions.stored_session_transcript(q.bucket, sid, settings=q.settings).partial, 120,
             what="the session without its gap")
    t = sessions.stored_session_transcript(q.bucket, sid, settings=q.settings)
    assert word_error_rate(" ".join(sentences[:3]), t.text) < 0.2


def test_pickle_message_is_discarded_without_running(q, tmp_path) -> None:
    marker = tmp_path / "pwned"
    r = redis_broker(q.settings)
    before = q.worker.output().count("refused_message_discarded")
    r.lpush(q.settings.transcribe_queue, json.dumps(pickle_envelope(q.settings.transcribe_queue, str(marker))))
    wait_for(lambda: q.worker.output().count("refused_message_discarded") > before, 60, what="the refusal")
    assert r.llen(q.settings.transcribe_queue) == 0 and r.llen(q.settings.dead_letter_queue) == 0
    assert not marker.exists() and q.worker.alive()


def test_sigkill_mid_chunk_is_restored_after_the_visibility_timeout(q, sentences) -> None:
    sid = unique("kill")
    text = " ".join(sentences[2:6])
    key = q.put(f"sessions/{sid}/chunks/0.wav", speak(text))
    enqueue_chunk(q.bucket, key, app=q.app, settings=q.settings)
    wait_for(lambda: f"chunk_start key={key}" in q.worker.output(), 120, what="the chunk to start")
    q.worker.kill()
    killed_at = time.monotonic()
    q.worker = start_worker(q.env, "worker-redis-2")
    q.wait_key(f"transcripts/{sid}/chunks/0.json", timeout=180)
    assert time.monotonic() - killed_at >= 20
    assert q.worker.engine_runs(key) == 1 and f"chunk_start key={key} attempt=1 delivery=2" in q.worker.output()
    body = storage.get_json(q.bucket, f"transcripts/{sid}/chunks/0.json", settings=q.settings)
    assert word_error_rate(text, " ".join(s["text"] for s in body["segments"])) < 0.2
