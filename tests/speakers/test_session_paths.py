"""A diarized session end to end with real processes: `stt-router serve` (the direct path) and
`stt-router worker` on moto's SQS (the queued path), moto's S3, the Whisper model, the offline
diarizer, and pyannote's real two-person call as the recording."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import httpx
import numpy as np
import pytest

from tasks.enqueue import enqueue_chunk
from tests.app.conftest import API_KEY, AUTH, start_server
from tests.support.real_speech import concat, load_sample, wav_bytes
from tests.support.services import unique, wait_for
from tests.support.worker import producer, settings_for, start_worker, worker_env
from transcription import layout, storage
from transcription.transcript import ChunkTranscript, SessionTranscript

pytestmark = [pytest.mark.whisperx, pytest.mark.slow]
CHUNKS = 4


def test_a_session_through_both_paths_has_one_speaker_set_in_every_format(moto) -> None:
    call = replace(load_sample(), utterances=())
    recording = concat([call, call], gap_s=1.0)  # the same two people twice, 61 s
    s3 = moto.client("s3")
    bucket = unique("speakers")
    s3.create_bucket(Bucket=bucket)
    env = worker_env(moto, "sqs", S3_BUCKET=bucket, TASK_TIME_LIMIT_S="300", VISIBILITY_TIMEOUT_S="400",
                     LEASE_TTL_S="30", CPU_THREADS="1")
    session = unique("call")
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(session),
                  Body=json.dumps({"total_chunks": CHUNKS, "language": "en", "diarize": True}).encode())
    step = int(np.ceil(len(recording.samples) / CHUNKS))
    keys = []
    for i in range(CHUNKS):
        keys.append(f"sessions/{session}/chunks/{i}.wav")
        s3.put_object(Bucket=bucket, Key=keys[-1], Body=wav_bytes(recording.samples[i * step:(i + 1) * step]))
    server = start_server("speakers-server", {**env, "API_KEY": API_KEY, "SERVER_CAPACITY": "1"})
    worker = start_worker(env, "speakers-worker")
    try:
        for key in keys[:2]:  # the direct path: the router's call to the server
            r = httpx.post(f"{server.url}/transcribe-s3", json={"s3_input_path": f"s3://{bucket}/{key}"},
                           headers=AUTH, timeout=300)
            assert r.status_code == 200, r.text
        app = producer(env)
        for key in keys[2:]:  # the queued path
            enqueue_chunk(bucket, key, app=app, settings=settings_for(env))
        settings = settings_for(env)
        json_key = layout.session_transcript_key(session, "json")
        wait_for(lambda: storage.exists(bucket, json_key, settings=settings), 600,
                 what=f"the session transcript (worker log {worker.log_path})")
    finally:
        worker.stop()
        server.process.stop()

    def read(fmt: str) -> str:
        return s3.get_object(Bucket=bucket, Key=layout.session_transcript_key(session, fmt))["Body"].read().decode()

    chunks = [ChunkTranscript.model_validate_json(s3.get_object(
        Bucket=bucket, Key=layout.chunk_transcript_key(session, i))["Body"].read()) for i in range(CHUNKS)]
    assert [c.via for c in chunks] == ["direct", "direct", "queued", "queued"]
    assert all(c.speakers and c.diarizer == "local" for c in chunks)
    t = SessionTranscript.model_validate_json(read("json"))
    assert not t.partial and [s.id for s in t.speakers] == ["SPEAKER_1", "SPEAKER_2"]
    labels = {"SPEAKER_1", "SPEAKER_2"}
    spoken = [s for s in t.segments if s.text.strip()]
    assert {s.speaker for s in spoken} == labels
    # one speaker set across chunks: each person gets the same label in every chunk
    person_label: dict[str, set[str]] = {}
    for seg in spoken:
        overlap: dict[str, float] = {}
        for turn in recording.turns:
            o = min(seg.end, turn.end) - max(seg.start, turn.start)
            if o > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0) + o
        if overlap and max(overlap.values()) > 0.8 * (seg.end - seg.start):
            person_label.setdefault(max(overlap, key=overlap.__getitem__), set()).add(seg.speaker)
    assert len(person_label) == 2 and all(len(v) == 1 for v in person_label.values()), person_label
    assert len(set().union(*person_label.values())) == 2
    # every format says the same
    body = json.loads(read("verbose_json"))
    assert {s["speaker"] for s in body["segments"] if s["text"].strip()} == labels
    assert {w["speaker"] for w in body.get("words", [])} <= labels
    names = {"Speaker 1", "Speaker 2"}
    assert set(re.findall(r"<v ([^>]+)>", read("vtt"))) == names
    assert set(re.findall(r"^\[([^\]]+)\] ", read("srt"), re.M)) == names
    assert {p.split(":")[0] for p in read("text").split("\n\n") if p.strip()} == names
    rows = [line.split("\t") for line in read("tsv").splitlines()]
    assert rows[0] == ["start", "end", "text", "speaker"] and {r[3] for r in rows[1:]} == names
