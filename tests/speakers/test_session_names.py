"""A session whose manifest names its speakers by reference clips, end to end with real processes:
a `stt-router worker` on moto's SQS transcribes and diarizes the chunks (`DIARIZE` off: the
manifest's `speakers` asks), combines the session, reads each clip once and names the voices that
match. A clip that is missing and a key outside the session are named in the report, and the
session is combined all the same. Audio: pyannote's two-person call with each person's reference
turn cut out of it, in two chunks of 10.2 s: below `BOUNDARY_REGROUP_BELOW_S`, so the combine
transcribes them again as one piece, whose words must get the session's speakers too (with segment
times only, this recording's piece came back with made-up times and no speakers: a diarized
session's pieces ask for word times). `test_session_paths.py` has chunks repaired window by window."""

from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import pytest

from tasks.enqueue import enqueue_chunk
from tests.support.real_speech import named_call, wav_bytes
from tests.support.services import VENV_BIN, unique, wait_for
from tests.support.worker import producer, settings_for, start_worker, worker_env
from transcription import layout, storage
from transcription.session_report import session_report
from transcription.transcript import SessionTranscript

pytestmark = [pytest.mark.whisperx, pytest.mark.slow]
CHUNKS = 2


def test_a_manifest_names_its_speakers_in_every_format_and_reports_a_bad_clip(moto) -> None:
    rest, clips = named_call()
    s3 = moto.client("s3")
    bucket = unique("names")
    s3.create_bucket(Bucket=bucket)
    env = worker_env(moto, "sqs", S3_BUCKET=bucket, TASK_TIME_LIMIT_S="300", VISIBILITY_TIMEOUT_S="400",
                     LEASE_TTL_S="30", CPU_THREADS="1")
    session = unique("named")
    prefix = f"sessions/{session}/speakers"
    for name, clip in clips.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{name.lower()}.wav", Body=wav_bytes(clip.samples))
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(session), Body=json.dumps({
        "total_chunks": CHUNKS, "language": "en",
        "speakers": [{"name": "Diane", "reference_key": f"{prefix}/diane.wav"},
                     {"name": "Sheila", "reference_key": f"{prefix}/sheila.wav"},
                     {"name": "Omar", "reference_key": f"{prefix}/omar.wav"},  # never uploaded
                     {"name": "Eve", "reference_key": "sessions/another/speakers/eve.wav"}],  # not this session's
    }).encode())
    step = int(np.ceil(len(rest.samples) / CHUNKS))
    keys = [f"sessions/{session}/chunks/{i}.wav" for i in range(CHUNKS)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=wav_bytes(rest.samples[i * step:(i + 1) * step]))
    settings = settings_for(env)
    worker = start_worker(env, "names-worker")
    try:
        app = producer(env)
        for key in keys:
            enqueue_chunk(bucket, key, app=app, settings=settings)
        wait_for(lambda: storage.exists(bucket, layout.session_transcript_key(session, "json"), settings=settings),
                 600, what=f"the session transcript (worker log {worker.log_path})")
    finally:
        worker.stop()

    def read(fmt: str) -> str:
        return s3.get_object(Bucket=bucket, Key=layout.session_transcript_key(session, fmt))["Body"].read().decode()

    t = SessionTranscript.model_validate_json(read("json"))
    # the piece was transcribed again (and used, or rejected for disagreeing with its chunks)
    assert [[0, 1]] in (t.repair["regrouped"], [r["chunks"] for r in t.repair["rejected"]]), json.dumps(t.repair)
    assert not t.partial and sorted(s.id for s in t.speakers) == ["Diane", "Sheila"], t.speakers
    # each name is on its person: the speaker named Diane talks mostly where Diane does (the turns
    # themselves are the diarizer's, which may be off by a word at the cut between the two chunks)
    for name in ("Diane", "Sheila"):
        overlap: dict[str, float] = {}
        for turn in (x for x in t.turns if x.speaker == name):
            for truth in rest.turns:
                o = min(turn.end, truth.end) - max(turn.start, truth.start)
                if o > 0:
                    overlap[truth.speaker] = overlap.get(truth.speaker, 0) + o
        assert max(overlap, key=overlap.__getitem__) == name, (name, overlap)
        assert overlap[name] > 2 * sum(v for k, v in overlap.items() if k != name), (name, overlap)
    names = {"Diane", "Sheila"}
    spoken = [s for s in json.loads(read("verbose_json"))["segments"] if s["text"].strip()]
    # a segment with no voice within a second of it (Whisper's words over silence) has no speaker
    assert {s["speaker"] for s in spoken if "speaker" in s} == names
    assert sum("speaker" in s for s in spoken) >= len(spoken) - 1, spoken
    assert set(re.findall(r"<v ([^>]+)>", read("vtt"))) == names
    assert set(re.findall(r"^\[([^\]]+)\] ", read("srt"), re.M)) == names
    assert {p.split(":")[0] for p in read("text").split("\n\n") if p.strip()} == names
    assert {r.split("\t")[3] for r in read("tsv").splitlines()[1:]} == names
    # the missing clip is named where the operator looks, and did not stop the session
    assert t.speaker_problems and len(t.speaker_problems) == 1 and "omar.wav): no such object" in t.speaker_problems[0]
    report = session_report(bucket, session, settings=settings)
    assert report.state == "combined" and report.speaker_problems == t.speaker_problems
    assert any(p.startswith("speakers[3].reference_key: not a file inside this session's prefix")
               for p in report.manifest_problems), report.manifest_problems
    out = subprocess.run([str(VENV_BIN / "stt-router"), "sessions", "status", session], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "known speaker:" in out.stdout and "omar.wav): no such object" in out.stdout, out.stdout
    assert "manifest:          speakers[3].reference_key: not a file inside" in out.stdout, out.stdout
