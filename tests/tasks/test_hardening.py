"""Issue 14's holes between the session state in S3, Redis and the queue: moto's S3 and SQS, the
shared Redis, Celery producers on real brokers (one of them down on purpose). No engine needed."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tasks import locks
from tasks.drain import run_sweep
from tasks.enqueue import trigger_combine
from tests.support.services import VENV_BIN, unique
from tests.support.worker import producer, settings_for, worker_env
from transcription import layout, sessions, storage, versions
from transcription.errors import PermanentError
from transcription.transcript import ChunkTranscript, Segment


def chunk(session: str, index: int, text: str = "hello there", duration: float = 4.0) -> ChunkTranscript:
    return ChunkTranscript(session_id=session, chunk_index=index, source_key=f"sessions/{session}/chunks/{index}.wav",
                           duration=duration, language="en", engine="faster-whisper", model="base",
                           segments=[Segment(start=0.5, end=duration - 0.5, text=text)])


@pytest.fixture
def rig(moto, redis_url):
    """A bucket, and the settings and producer of a worker environment on moto's SQS."""
    name = unique("harden")
    moto.client("s3").create_bucket(Bucket=name)
    env = worker_env(moto, "sqs", S3_BUCKET=name)
    return name, moto.client("s3"), settings_for(env), producer(env), env


def transcribed_session(s3, bucket: str, session: str, settings, manifest: bytes | None = None) -> None:
    s3.put_object(Bucket=bucket, Key=f"sessions/{session}/chunks/0.wav", Body=b"RIFF....")
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(session),
                  Body=manifest if manifest is not None else json.dumps({"total_chunks": 1}).encode())
    storage.put_json(bucket, layout.chunk_transcript_key(session, 0), chunk(session, 0).model_dump_json().encode(),
                     settings=settings)


def test_deeply_nested_json_is_a_clear_error_of_that_object(rig) -> None:
    """Hole 4: 100,000 levels of `[` raised RecursionError in every reader; the sweeper's loop
    stopped there, so sessions sorting after it were never swept."""
    bucket, s3, s, app, _ = rig
    deep, good = "a-" + unique("deep"), "b-" + unique("good")
    transcribed_session(s3, bucket, deep, s, manifest=b"[" * 100_000)
    transcribed_session(s3, bucket, good, s)
    key = layout.manifest_key(deep)
    with pytest.raises(PermanentError) as e:
        storage.get_json(bucket, key, settings=s)
    assert key in e.value.reason and "deeper than" in e.value.reason and "[[" not in e.value.reason
    out = run_sweep(bucket, settings=s, celery=app)
    assert good in out["triggered"]
    # a chunk transcript nested as deep fails its session's combine with that object's name
    storage.put_json(bucket, layout.chunk_transcript_key(good, 0), b"[" * 50_000 + b"]" * 50_000, settings=s)
    with pytest.raises(PermanentError, match=layout.chunk_transcript_key(good, 0)):
        sessions.build_session_transcript(bucket, good, settings=s.model_copy(update={"boundary_repair": False}))


def test_json_depth_bound_counts_brackets_outside_strings() -> None:
    assert storage.parse_json(b'{"a": [{"b": "[[[[[[[["}]}', "x", max_depth=3) == {"a": [{"b": "[[[[[[[["}]}
    with pytest.raises(PermanentError, match="deeper than 3"):
        storage.parse_json(b'{"a": [{"b": [1]}]}', "x", max_depth=3)
    with pytest.raises(PermanentError, match="not valid JSON at line 1"):
        storage.parse_json(b'{"a": ', "x")


def test_a_failed_send_leaves_no_once_flag(rig) -> None:
    """Hole 5: the once-only flag was set before `send_task` and kept when the send failed, so the
    retried event reported success without queuing anything."""
    bucket, s3, s, app, env = rig
    session = unique("send")
    transcribed_session(s3, bucket, session, s)
    down = producer({**env, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"})  # a broker that is down
    down.conf.broker_connection_retry = False
    down.conf.broker_connection_max_retries = 0
    down.conf.task_publish_retry = False
    with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises
        trigger_combine(bucket, session, app=down, settings=s)
    assert trigger_combine(bucket, session, app=app, settings=s) is True  # the retry sends it
    assert trigger_combine(bucket, session, app=app, settings=s) is False  # and only once
    assert locks.redis_client(s).keys(f"{locks.PREFIX}once:combine:{bucket}/{session}:1:0:*")


def test_a_manifest_mistake_is_visible_and_a_hint_never_strands_the_session(rig) -> None:
    """Hole 6: a manifest with one invalid field was ignored whole (only a log line): the session
    stayed open for ever. Hints (language, prompt, title) are dropped alone; an unusable
    `total_chunks` or an unreadable manifest is `manifest invalid` where operators look."""
    bucket, s3, s, app, env = rig
    hinted = {"english": {"language": "english", "total_chunks": 1},
              "long-prompt": {"prompt": "x" * 3000, "title": "standup", "total_chunks": 1}}
    for name, manifest in hinted.items():
        session = unique(name)
        transcribed_session(s3, bucket, session, s, manifest=json.dumps(manifest).encode())
        status = sessions.session_status(bucket, session, settings=s)
        assert status.complete and status.as_dict()["manifest_problems"], status.as_dict()
        assert trigger_combine(bucket, session, app=app, settings=s) is True
    broken = {"negative": b'{"total_chunks": -1}', "not-json": b'{"total_chunks": 1', "list": b"[1]",
              "huge": b'{"total_chunks": 1, "title": "' + b"x" * (70 << 10) + b'"}'}
    ids = {}
    for name, body in broken.items():
        ids[name] = session = unique(name)
        transcribed_session(s3, bucket, session, s, manifest=body)
        status = sessions.session_status(bucket, session, settings=s)
        assert status.state == "manifest invalid" and status.as_dict()["manifest_invalid"], name
        assert "x" * 20 not in status.as_dict()["manifest_invalid"]  # the content is never echoed
        assert trigger_combine(bucket, session, app=app, settings=s) is False
    out = run_sweep(bucket, settings=s, celery=app)
    assert {ids[n] for n in broken} <= {k for k, v in out["errors"].items() if v.startswith("manifest invalid")}
    cli = subprocess.run([str(VENV_BIN / "stt-router"), "sessions", "status", ids["negative"]],
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert "manifest invalid" in cli.stdout and "total_chunks" in cli.stdout, cli.stdout + cli.stderr
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(ids["negative"]), Body=b'{"total_chunks": 1}')
    assert trigger_combine(bucket, ids["negative"], app=app, settings=s) is True  # a corrected manifest heals it


def test_a_session_is_combined_exactly_once_whatever_total_chunks_says(rig) -> None:
    """Hole 7 (bucket versioning on, so every write of session.json counts): `total_chunks: 0`
    wrote it three times, `total_chunks: 1` with two chunks uploaded twice. Now 0 is an invalid
    manifest (never combined, said why) and a chunk beyond the declared count is not combined in."""
    from tasks.combine import run_combine

    bucket, s3, s, app, _ = rig
    s = s.model_copy(update={"boundary_repair": False})  # synthetic transcripts: no audio to repair
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def writes(session: str) -> int:
        key = layout.session_transcript_key(session, "json")
        return len([v for v in s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
                    if v["Key"] == key])

    def chunk_lands(session: str, index: int) -> None:
        s3.put_object(Bucket=bucket, Key=f"sessions/{session}/chunks/{index}.wav", Body=b"RIFF....")
        storage.put_json(bucket, layout.chunk_transcript_key(session, index),
                         chunk(session, index).model_dump_json().encode(), settings=s)
        run_combine(bucket, session, settings=s, celery=app)  # what each chunk's trigger may lead to

    zero, one = unique("zero"), unique("one")
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(zero), Body=b'{"total_chunks": 0}')
    s3.put_object(Bucket=bucket, Key=layout.manifest_key(one), Body=b'{"total_chunks": 1}')
    for i in range(3):
        chunk_lands(zero, i)
        chunk_lands(one, i)
    assert writes(zero) == 0 and sessions.session_status(bucket, zero, settings=s).state == "manifest invalid"
    assert writes(one) == 1 and not sessions.should_combine(bucket, one, settings=s)
    stored = sessions.stored_session_transcript(bucket, one, settings=s)
    assert stored is not None and [c.index for c in stored.chunks] == [0]


def test_a_reuploaded_chunk_is_not_current_and_an_older_audios_transcript_never_wins(rig) -> None:
    """Hole 9, the storage rule (`transcription/versions.py`): the chunk transcript records the audio
    version it was made from; a transcript of superseded audio is never written, one of the current
    audio replaces an older one conditionally, and racing writers end with the current audio's."""
    from concurrent.futures import ThreadPoolExecutor

    bucket, s3, s, _, _ = rig
    session = unique("reupload")
    key = f"sessions/{session}/chunks/0.wav"
    ck = layout.parse_chunk_key(key)
    out, audio = (bucket, ck.transcript_key), (bucket, key)

    def upload(body: bytes) -> storage.Version:
        return storage.Version.of(s3.put_object(Bucket=bucket, Key=key, Body=body))

    def body(text: str, v: storage.Version) -> bytes:
        return chunk(session, 0, text).model_copy(update={"source_etag": v.etag}).model_dump_json().encode()

    def stored_text() -> str:
        return ChunkTranscript.model_validate(storage.get_json(bucket, ck.transcript_key, settings=s)).text

    v1 = upload(b"RIFF first")
    assert versions.store_transcript(out, body("first", v1), v1, audio, settings=s) == "written"
    assert versions.chunk_is_transcribed(bucket, ck, settings=s)
    assert versions.store_transcript(out, body("first", v1), v1, audio, settings=s) == "duplicate"
    v2 = upload(b"RIFF second")
    assert not versions.chunk_is_transcribed(bucket, ck, settings=s)  # the skip no longer applies
    assert versions.store_transcript(out, body("late first", v1), v1, audio, settings=s) == "superseded"
    assert stored_text() == "first"
    assert versions.store_transcript(out, body("second", v2), v2, audio, settings=s) == "replaced"
    assert versions.chunk_is_transcribed(bucket, ck, settings=s) and stored_text() == "second"
    assert versions.stored_transcript(*out, settings=s).source == storage.Version(v2.etag)
    # writers of the older and of the newest audio racing: the newest audio's transcript stays
    v3 = upload(b"RIFF third")
    jobs = [(f"stale {n}", v2) for n in range(4)] + [(f"third {n}", v3) for n in range(4)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda j: versions.store_transcript(out, body(j[0], j[1]), j[1], audio,
                                                                     settings=s), jobs))
    assert outcomes[:4] == ["superseded"] * 4 and sorted(outcomes[4:]) == ["duplicate"] * 3 + ["replaced"]
    assert stored_text().startswith("third") and versions.chunk_is_transcribed(bucket, ck, settings=s)


def test_boundary_repair_reads_the_audio_version_the_transcript_was_made_from(rig, speech_files) -> None:
    """Hole 9: repair read the new audio of a re-uploaded chunk against the old one's transcript.
    Now it reads the recorded version: by VersionId where the bucket keeps versions, else only while
    the ETag matches (a chunk uploaded again since has its boundaries skipped)."""
    from transcription.chunk import load_audio
    from transcription.errors import ChangedError
    from transcription.repair import s3_audio_loader
    from transcription.transcript import ChunkEntry

    bucket, s3, s, _, _ = rig
    key = f"sessions/{unique('repair')}/chunks/0.wav"
    first, second = speech_files[0].read_bytes(), speech_files[1].read_bytes()
    v1 = storage.Version.of(s3.put_object(Bucket=bucket, Key=key, Body=first))
    entry = ChunkEntry(index=0, source_key=key, offset=0, duration=3, status="transcribed", source_etag=v1.etag)
    load = s3_audio_loader(bucket, {0: key}, s)
    assert load(entry).duration > 1
    s3.put_object(Bucket=bucket, Key=key, Body=second)
    with pytest.raises(ChangedError, match="changed since"):
        load(entry)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v3 = storage.Version.of(s3.put_object(Bucket=bucket, Key=key, Body=first))
    assert v3.version_id
    s3.put_object(Bucket=bucket, Key=key, Body=second)
    old = entry.model_copy(update={"source_etag": v3.etag, "source_version": v3.version_id})
    want, now = load_audio(first, s).duration, load_audio(second, s).duration
    assert abs(want - now) > 0.1 and load(old).duration == pytest.approx(want)  # the old audio, not the current


def test_a_replaced_chunk_transcript_recombines_its_session_once(rig) -> None:
    """Hole 9: a combined session stays combined from the chunk transcripts it read; a chunk
    transcript replaced since (its audio uploaded again) makes it outdated, combined again once."""
    from tasks.combine import run_combine

    bucket, s3, s, app, _ = rig
    s = s.model_copy(update={"boundary_repair": False})
    session = unique("recombine")
    transcribed_session(s3, bucket, session, s)
    assert trigger_combine(bucket, session, app=app, settings=s) is True
    assert run_combine(bucket, session, settings=s, celery=app)["status"] == "combined"
    stored = sessions.stored_session_transcript(bucket, session, settings=s)
    assert stored is not None and stored.chunks[0].transcript_etag and stored.text == "hello there"
    assert not sessions.should_combine(bucket, session, settings=s)
    storage.put_json(bucket, layout.chunk_transcript_key(session, 0),
                     chunk(session, 0, "a new take").model_dump_json().encode(), settings=s)
    assert sessions.should_combine(bucket, session, settings=s)
    assert trigger_combine(bucket, session, app=app, settings=s) is True
    assert trigger_combine(bucket, session, app=app, settings=s) is False  # once per set of versions
    assert run_combine(bucket, session, settings=s, celery=app)["status"] == "combined"
    assert sessions.stored_session_transcript(bucket, session, settings=s).text == "a new take"
    assert not sessions.should_combine(bucket, session, settings=s)
    assert run_combine(bucket, session, settings=s, celery=app)["status"] == "exists"
