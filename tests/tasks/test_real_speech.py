"""Real recorded speech through a real `stt-router worker` (Redis broker, moto's S3, the real model):
pyannote's sample call with a second of silence after it, on which faster-whisper base says its last
sentence twice (tests/core/test_guard.py checks that the trigger fires on this machine).

One session uploads the call as a single 31 s chunk (the chunk transcript must say the tail once);
another as chunks of 10 s with a 1 s final chunk, which the combine regroups into one 31 s piece
(the session transcript must say it once, and be no worse than its chunks concatenated).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.broker import redis_broker
from tasks.enqueue import enqueue_chunk
from tests.support.real_speech import SAMPLE_RATE, load_sample, normalize_text, wer
from tests.support.services import unique
from tests.support.worker import QueuedRig
from transcription import layout, sessions, storage
from transcription.transcript import ChunkTranscript

pytestmark = pytest.mark.timeout(900)

TAIL = "hear that"  # the last sentence, "Oh, I don't hear that in New Jersey now." (chunks may drop the "in")


@pytest.fixture(scope="module")
def q(moto):
    # a 31 s chunk and a 31 s regrouped piece take longer than the short test limits on a busy machine
    rig = QueuedRig(moto, "redis", "real-speech", TASK_TIME_LIMIT_S="400", VISIBILITY_TIMEOUT_S="500")
    yield rig
    rig.worker.stop()
    redis_broker(rig.settings).delete(rig.settings.transcribe_queue, rig.settings.dead_letter_queue)


def upload_session(q, sid: str, parts: list, tmp: Path) -> list[str]:
    q.s3.put_object(Bucket=q.bucket, Key=layout.manifest_key(sid),
                    Body=json.dumps({"total_chunks": len(parts), "language": "en"}).encode())
    return [q.put(f"sessions/{sid}/chunks/{i}.wav", part.write_wav(tmp / f"{sid}-{i}.wav"))
            for i, part in enumerate(parts)]


def test_the_repeated_tail_is_gone_from_chunk_and_session_transcripts(q, tmp_path) -> None:
    padded = load_sample().pad(after_s=1.0)
    whole, cut = unique("whole"), unique("cut")
    ten = 10 * SAMPLE_RATE
    parts = [padded.cut(i / SAMPLE_RATE, min(i + ten, len(padded.samples)) / SAMPLE_RATE)
             for i in range(0, len(padded.samples), ten)]
    assert len(parts) == 4 and parts[-1].duration == pytest.approx(1.0)
    keys = upload_session(q, whole, [padded], tmp_path) + upload_session(q, cut, parts, tmp_path)
    ids = [enqueue_chunk(q.bucket, k, app=q.app, settings=q.settings) for k in keys]
    assert [q.app.AsyncResult(t).get(timeout=600)["status"] for t in ids] == ["transcribed"] * 5
    chunk = ChunkTranscript.model_validate(
        storage.get_json(q.bucket, layout.chunk_transcript_key(whole, 0), settings=q.settings))
    assert normalize_text(chunk.text).count(TAIL) == 1, chunk.text
    assert "hallucination_dropped" in chunk.options or "hallucination_redecoded" in chunk.options, chunk.options
    chunks = [ChunkTranscript.model_validate(
        storage.get_json(q.bucket, layout.chunk_transcript_key(cut, i), settings=q.settings)) for i in range(4)]
    naive = " ".join(c.text for c in chunks)
    for sid in (whole, cut):
        q.wait_key(layout.session_transcript_key(sid, "json"), timeout=600)
    session = sessions.stored_session_transcript(q.bucket, cut, settings=q.settings)
    assert normalize_text(session.text).count(TAIL) == 1, session.text
    assert session.repair is not None and "rejected" in session.repair
    assert wer(padded.reference_text, session.text) <= wer(padded.reference_text, naive) + 0.01, (session.text, naive)
    one = sessions.stored_session_transcript(q.bucket, whole, settings=q.settings)
    assert normalize_text(one.text).count(TAIL) == 1, one.text
