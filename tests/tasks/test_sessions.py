"""The core session API (`transcription.sessions`) against moto's S3: state, the completion check,
combining, and the write-once session transcript. Synthetic chunk transcripts: no engine needed."""

from __future__ import annotations

import json

import pytest

from transcription import layout, sessions, storage
from transcription.errors import InvalidKeyError
from transcription.transcript import ChunkTranscript, FailedChunk, Segment


def chunk(session: str, index: int, text: str, duration: float = 4.0) -> ChunkTranscript:
    return ChunkTranscript(session_id=session, chunk_index=index, source_key=f"sessions/{session}/chunks/{index}.wav",
                           duration=duration, language="en", engine="faster-whisper", model="base",
                           segments=[Segment(start=0.5, end=duration - 0.5, text=text)])


def upload(s3, bucket: str, session: str, indices, manifest: dict | None = None) -> None:
    for i in indices:
        s3.put_object(Bucket=bucket, Key=f"sessions/{session}/chunks/{i:03d}.wav", Body=b"RIFF")
    if manifest is not None:
        s3.put_object(Bucket=bucket, Key=f"sessions/{session}/manifest.json", Body=json.dumps(manifest).encode())


def transcribe(bucket: str, t: ChunkTranscript) -> None:
    storage.put_json(bucket, layout.chunk_transcript_key(t.session_id, t.chunk_index), t.model_dump_json().encode())


def fail(bucket: str, session: str, index: int, reason: str = "not audio") -> None:
    record = FailedChunk(session_id=session, chunk_index=index, source_key=f"sessions/{session}/chunks/{index}.wav",
                         error="bad_audio", reason=reason, duration=4.0)
    storage.put_json(bucket, layout.failed_key(session, index), record.model_dump_json().encode())


def test_status_follows_the_key_layout(moto, bucket) -> None:
    s3 = moto.client("s3")
    upload(s3, bucket, "m1", range(4), {"total_chunks": 4})
    s3.put_object(Bucket=bucket, Key="sessions/m1/chunks/notes.txt", Body=b"x")  # not a chunk
    s3.put_object(Bucket=bucket, Key="sessions/m1/chunks/001.txt", Body=b"x")  # listed before 001.wav, not audio
    transcribe(bucket, chunk("m1", 0, "one"))
    transcribe(bucket, chunk("m1", 2, "three"))
    fail(bucket, "m1", 3)
    st = sessions.session_status(bucket, "m1", with_reasons=True)
    assert sorted(st.uploaded) == [0, 1, 2, 3] and st.uploaded[0] == "sessions/m1/chunks/000.wav"
    assert st.transcribed == [0, 2] and st.failed == [3] and st.pending == [1]
    assert st.expected == 4 and not st.complete and st.state == "in progress" and not st.combined
    assert st.failed_reasons == {3: "bad_audio: not audio"}
    assert not sessions.should_combine(bucket, "m1")
    transcribe(bucket, chunk("m1", 3, "four"))  # a replayed failure: transcribed wins
    assert sessions.session_status(bucket, "m1").failed == []


def test_no_manifest_or_no_total_is_never_complete(moto, bucket) -> None:
    s3 = moto.client("s3")
    upload(s3, bucket, "open", range(2))
    upload(s3, bucket, "titled", range(1), {"title": "standup"})
    for sid in ("open", "titled"):
        for i in sessions.session_status(bucket, sid).uploaded:
            transcribe(bucket, chunk(sid, i, "x"))
        st = sessions.session_status(bucket, sid)
        assert not st.complete and st.state == "open"
        assert not sessions.should_combine(bucket, sid)
    assert sessions.list_sessions(bucket) == ["open", "titled"]


def test_combine_once_in_every_format_json_last(moto, bucket) -> None:
    s3 = moto.client("s3")
    upload(s3, bucket, "m2", range(3), {"total_chunks": 3, "title": "Weekly"})
    for i, word in enumerate(["alpha", "bravo", "charlie"]):
        transcribe(bucket, chunk("m2", i, word))
    assert sessions.should_combine(bucket, "m2")
    t = sessions.build_session_transcript(bucket, "m2")
    assert t.text == "alpha bravo charlie" and t.title == "Weekly" and not t.partial
    assert [c.offset for c in t.chunks] == [0.0, 4.0, 8.0]
    assert sessions.write_session_transcript(bucket, t)
    keys = set(storage.list_keys(bucket, "transcripts/m2/session."))
    assert keys == {layout.session_transcript_key("m2", f) for f in layout.SESSION_FORMATS}
    assert sessions.session_status(bucket, "m2").combined and not sessions.should_combine(bucket, "m2")
    # a duplicate combine is refused and changes nothing
    before = s3.get_object(Bucket=bucket, Key="transcripts/m2/session.srt")["Body"].read()
    other = t.model_copy(update={"title": "changed"})
    assert not sessions.write_session_transcript(bucket, other)
    assert s3.get_object(Bucket=bucket, Key="transcripts/m2/session.srt")["Body"].read() == before
    assert sessions.stored_session_transcript(bucket, "m2").title == "Weekly"


def test_json_last_means_a_crash_half_way_is_not_taken_for_done(moto, bucket) -> None:
    """If a combine died after some formats, the json is missing, so the session is still to combine."""
    s3 = moto.client("s3")
    upload(s3, bucket, "m3", range(1), {"total_chunks": 1})
    transcribe(bucket, chunk("m3", 0, "hello"))
    s3.put_object(Bucket=bucket, Key="transcripts/m3/session.txt", Body=b"hello\n")  # the crashed writer's part
    assert not sessions.session_status(bucket, "m3").combined
    assert sessions.should_combine(bucket, "m3")
    assert sessions.write_session_transcript(bucket, sessions.build_session_transcript(bucket, "m3"))


def test_partial_session_marks_the_gap_and_a_replay_brings_it_up_to_date(moto, bucket) -> None:
    s3 = moto.client("s3")
    upload(s3, bucket, "m4", range(3), {"total_chunks": 3})
    transcribe(bucket, chunk("m4", 0, "first"))
    fail(bucket, "m4", 1, "truncated wav")
    transcribe(bucket, chunk("m4", 2, "third"))
    assert sessions.should_combine(bucket, "m4")
    t = sessions.build_session_transcript(bucket, "m4")
    assert t.partial and [c.status for c in t.chunks] == ["transcribed", "failed", "transcribed"]
    assert any(s.gap and "chunk 1" in s.text for s in t.segments)
    assert sessions.write_session_transcript(bucket, t)
    assert not sessions.should_combine(bucket, "m4")
    transcribe(bucket, chunk("m4", 1, "second"))  # the dead letter was replayed after a fix
    assert sessions.should_combine(bucket, "m4")
    fixed = sessions.build_session_transcript(bucket, "m4")
    assert not fixed.partial and fixed.text == "first second third"
    assert sessions.write_session_transcript(bucket, fixed, replace=True)
    assert not sessions.stored_session_transcript(bucket, "m4").partial
    assert not sessions.should_combine(bucket, "m4")


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "x" * 200, "a\x00b"])
def test_bad_session_ids_are_refused_before_s3(moto, bucket, bad) -> None:
    with pytest.raises(InvalidKeyError):
        sessions.session_status(bucket, bad)
