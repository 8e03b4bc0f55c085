"""A session that switches language, on the mixed path: one chunk through the server's
`/transcribe-s3` (the direct path), one through a real `stt-router worker` (the queued path), which
then combines the session.

Chunk 0 is real English (pyannote's sample call) followed by espeak-ng German in one chunk (the
worker's chunk transcript must keep the German); chunk 1 is espeak-ng German alone (no German
recording with a reference ships with what is installed).
"""

from __future__ import annotations

import json

from tests.app.conftest import AUTH, SERVER_ENV, start_server
from tests.support.languages import GERMAN, bilingual, german, text_in
from tests.support.real_speech import wer
from tests.support.services import unique
from tests.support.worker import producer, settings_for, start_worker, worker_env
from transcription import layout, sessions, storage
from transcription.transcript import ChunkTranscript

SLOW = {"TASK_TIME_LIMIT_S": "1200", "VISIBILITY_TIMEOUT_S": "1500", "LEASE_TTL_S": "30"}


def test_a_mixed_path_session_keeps_each_chunks_language(moto, redis_url, tmp_path) -> None:
    from tasks.enqueue import enqueue_chunk

    bucket = unique("lang")
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    sid = unique("bi")
    first, second = bilingual(sentences=GERMAN[:2]), german(GERMAN[2:])
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(sid), Body=json.dumps({"total_chunks": 2}).encode())
    keys = [f"sessions/{sid}/chunks/{i}.wav" for i in (0, 1)]
    for key, rec in zip(keys, (first, second), strict=True):
        s3.put_object(Bucket=bucket, Key=key, Body=rec.write_wav(tmp_path / f"{rec.name}.wav").read_bytes())
    env = worker_env(moto, "redis", S3_BUCKET=bucket, **SLOW)
    settings = settings_for(env)
    server = start_server("server-lang", {**SERVER_ENV, **moto.env(), "S3_BUCKET": bucket})
    worker = None
    try:
        with server.client(headers=AUTH) as c:  # the direct path: chunk 1
            r = c.post("/transcribe-s3", json={"s3_input_path": f"s3://{bucket}/{keys[1]}"}, timeout=900)
            assert r.status_code == 200, r.text
        worker = start_worker(env, "worker-lang")
        task = enqueue_chunk(bucket, keys[0], app=producer(env), settings=settings)  # the queued path: chunk 0
        assert producer(env).AsyncResult(task).get(timeout=1200)["status"] == "transcribed"
        chunk0 = ChunkTranscript.model_validate(
            storage.get_json(bucket, layout.chunk_transcript_key(sid, 0), settings=settings))
        assert any(x["language"] == "de" for x in chunk0.options["speech_recovered"])  # the worker's guard
        from tests.support.services import wait_for

        wait_for(lambda: storage.exists(bucket, layout.session_transcript_key(sid, "json"), settings=settings),
                 600, what="the session transcript")
        t = sessions.stored_session_transcript(bucket, sid, settings=settings)
    finally:
        if worker is not None:
            worker.stop()
        server.process.stop()
    assert [c.language for c in t.chunks] == ["en", "de"]
    german_text = " ".join(s.text for s in t.segments if s.language == "de")
    reference = text_in(first, "de") + " " + text_in(second, "de")
    assert wer(reference, german_text) <= 0.4, german_text
    assert wer(text_in(first, "en"), " ".join(s.text for s in t.segments if s.language == "en")) <= 0.4
    assert t.languages["de"] > 15
