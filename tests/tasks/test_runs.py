"""Session runs on the queued path, for real: a real `stt-router worker` on moto's SQS and S3, the
Redis at 127.0.0.1:6379, the real model, and real recorded speech (pyannote's sample call, whose
human transcript is the reference) cut into 5 s chunks as a recorder would.

Engine runs are counted from the worker's `engine_run key=...` log lines (one per engine call, keyed
by the first chunk of a run), never from a mock.
"""

from __future__ import annotations

import json

import pytest

from tasks.dlq import DeadLetterQueue
from tasks.drain import run_drain
from tasks.enqueue import enqueue_chunk
from tests.support.real_speech import Recording, concat, load_sample, wav_bytes, wer
from tests.support.services import unique, wait_for
from tests.support.worker import QueuedRig
from transcription import layout, sessions, storage
from transcription.chunk import transcribe_s3_chunk
from transcription.transcript import ChunkTranscript, FailedChunk

pytestmark = pytest.mark.timeout(600)
CUT_S = 5.0


@pytest.fixture(scope="module")
def q(moto):
    # a run of a minute of audio takes longer than a 5 s chunk: room for it on a busy 2-core machine
    rig = QueuedRig(moto, "sqs", "runs", RUN_MAX_S="600", TASK_TIME_LIMIT_S="240", VISIBILITY_TIMEOUT_S="300")
    yield rig
    rig.worker.stop()


def upload_session(q, sid: str, rec: Recording, bad: set[int] = frozenset()) -> list[str]:
    """The recording cut every CUT_S s regardless of words, each piece a chunk (`bad`: not audio)."""
    keys = []
    n = int(-(-rec.duration // CUT_S))
    for i in range(n):
        body = b"RIFF-not-really-a-wav " * 50 if i in bad else wav_bytes(rec.cut(i * CUT_S, (i + 1) * CUT_S).samples)
        keys.append(q.put(f"sessions/{sid}/chunks/{i}.wav", body))
    q.s3.put_object(Bucket=q.bucket, Key=layout.manifest_key(sid),
                    Body=json.dumps({"total_chunks": n, "language": "en"}).encode())
    return keys


def chunk_transcript(q, sid: str, i: int) -> ChunkTranscript:
    return ChunkTranscript.model_validate(
        storage.get_json(q.bucket, layout.chunk_transcript_key(sid, i), settings=q.settings))


def test_a_backlog_is_transcribed_in_one_run_once_with_direct_chunks_and_duplicates(q, fw_engine) -> None:
    call = load_sample()
    rec = concat([call, call])  # 60 s: twelve 5 s chunks
    sid = unique("backlog")
    keys = upload_session(q, sid, rec)
    # the last two chunks went the direct path (the server's own chunk function) once it was back
    last = len(keys) - 1
    for key in keys[-2:]:
        assert transcribe_s3_chunk(q.bucket, key, engine=fw_engine, settings=q.settings).written
    # the others were queued while it was down, and some events came twice (a retried EventBridge delivery)
    ids = [enqueue_chunk(q.bucket, k, app=q.app, settings=q.settings) for k in keys[:-2]]
    ids += [enqueue_chunk(q.bucket, k, app=q.app, settings=q.settings) for k in keys[:4]]
    results = [q.app.AsyncResult(t).get(timeout=300) for t in ids]
    by_status = [r["status"] for r in results]
    assert by_status[0] == "transcribed" and results[0]["run"] == [0, last - 2], results[0]
    assert by_status[1:] == ["skipped"] * (len(ids) - 1), by_status  # the others found their transcripts
    # one engine call for the whole backlog, none for its other chunks
    assert q.worker.engine_runs(keys[0]) == 1
    assert [q.worker.engine_runs(k) for k in keys[1:]] == [0] * last
    assert "duplicate_write_refused" not in q.worker.output()
    for i in range(len(keys)):
        t = chunk_transcript(q, sid, i)
        assert t.run == ([0, last - 2] if i < last - 1 else None)
        assert all(0 <= s.start <= s.end <= t.duration for s in t.segments)  # chunk-relative
    # the session: repaired only at the cuts that exist (9|10 and 10|11), none inside the run
    q.wait_key(layout.session_transcript_key(sid, "json"), timeout=300)
    session = sessions.stored_session_transcript(q.bucket, sid, settings=q.settings)
    assert not session.partial and [c.run for c in session.chunks][:-2] == [[0, last - 2]] * (last - 1)
    assert session.repair is not None and session.repair["boundaries"] == 2, session.repair
    # what came by the direct path keeps repair: its two short chunks were regrouped, the run was not
    assert session.repair["regrouped"] == [[last - 1, last]], session.repair
    # Whisper base's own errors on this phone call are about 0.2 (DESIGN.md); chunked without runs or
    # repair, 5 s cuts lose much more (bench/runs.py compares them side by side). Whisper's temperature
    # fallback samples, so the figure moves by a few points between runs (0.25-0.36 seen): the bound
    # leaves room for that, and a run split back with a chunk's words lost or doubled still fails it
    assert wer(rec.reference_text, session.text) < 0.42, session.text


def test_a_poison_chunk_inside_a_run_fails_alone_and_the_drain_sends_one_task(q) -> None:
    rec = load_sample()  # 30 s: six 5 s chunks, the fourth not audio at all
    sid = unique("poison")
    keys = upload_session(q, sid, rec, bad={3})
    summary = run_drain(q.bucket, settings=q.settings, celery=q.app)
    assert summary["backlog"][sid] == len(keys)
    q.wait_key(layout.session_transcript_key(sid, "json"), timeout=300)
    # the bad chunk failed alone; the run was split around it: 0-2 and 4-5, one engine call each
    record = FailedChunk.model_validate(storage.get_json(q.bucket, layout.failed_key(sid, 3), settings=q.settings))
    assert record.error == "bad_audio" and record.source_key == keys[3], record
    assert [chunk_transcript(q, sid, i).run for i in (0, 1, 2, 4, 5)] == [[0, 2]] * 3 + [[4, 5]] * 2
    assert [q.worker.engine_runs(k) for k in keys] == [1, 0, 0, 0, 1, 0]
    # one dead letter, naming the bad chunk (for `dlq replay` once it is uploaded again)
    wait_for(lambda: [x.key for x in DeadLetterQueue(q.settings, q.app).letters()].count(keys[3]) == 1, 30,
             what="the bad chunk's dead letter")
    assert all(x.key not in keys or x.key == keys[3] for x in DeadLetterQueue(q.settings, q.app).letters())
    session = sessions.stored_session_transcript(q.bucket, sid, settings=q.settings)
    assert session.partial and [c.status for c in session.chunks].count("failed") == 1
    # a drain with nothing waiting sends nothing for this session
    assert sid not in run_drain(q.bucket, settings=q.settings, celery=q.app)["backlog"]
