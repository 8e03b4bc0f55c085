"""The S3 key layout: chunk keys parse, unsafe ids and keys are refused before any S3 call."""

from __future__ import annotations

import pytest

from transcription import layout
from transcription.errors import InvalidKeyError


@pytest.mark.parametrize(("key", "session", "index", "ext"), [
    ("sessions/abc/chunks/0.wav", "abc", 0, "wav"),
    ("sessions/meet-2024_01.a/chunks/000017.mp3", "meet-2024_01.a", 17, "mp3"),
    ("sessions/x/chunks/12.WEBM", "x", 12, "webm"),
])
def test_chunk_keys_parse(key, session, index, ext) -> None:
    c = layout.parse_chunk_key(key)
    assert (c.session_id, c.index, c.ext) == (session, index, ext)
    assert c.transcript_key == f"transcripts/{session}/chunks/{index}.json"
    assert c.failed_key == f"failed/{session}/chunks/{index}.json"


@pytest.mark.parametrize("key", [
    "sessions/abc/chunks/1.txt",
    "sessions/abc/chunks/one.wav",
    "sessions/abc/chunks/1.wav/x",
    "sessions/../chunks/1.wav",
    "sessions/a..b/chunks/1.wav",
    "sessions/.hidden/chunks/1.wav",
    "/sessions/abc/chunks/1.wav",
    "sessions/ab\x00c/chunks/1.wav",
    "sessions/ab\nc/chunks/1.wav",
    "sessions/" + "a" * 129 + "/chunks/1.wav",
    "sessions/abc/chunks/1234567890.wav",
    "transcripts/abc/chunks/1.json",
    "",
])
def test_bad_chunk_keys_are_refused(key) -> None:
    with pytest.raises(InvalidKeyError):
        layout.parse_chunk_key(key)


def test_classify() -> None:
    assert layout.classify_key("sessions/abc/chunks/3.flac") == ("chunk", "abc")
    assert layout.classify_key("sessions/abc/manifest.json") == ("manifest", "abc")
    assert layout.classify_key("transcripts/abc/chunks/3.json") == (None, "outside sessions/")
    kind, reason = layout.classify_key("sessions/abc/notes.txt")
    assert kind is None and "chunk key" in reason


def test_session_keys() -> None:
    assert layout.session_transcript_key("abc", "srt") == "transcripts/abc/session.srt"
    assert layout.session_transcript_key("abc", "verbose_json") == "transcripts/abc/session.verbose.json"
    assert layout.manifest_key("abc") == "sessions/abc/manifest.json"
    with pytest.raises(InvalidKeyError, match="control"):
        layout.manifest_key("a\tb")


def test_s3_uri() -> None:
    assert layout.parse_s3_uri("s3://my-bucket/sessions/a/chunks/1.wav") == ("my-bucket", "sessions/a/chunks/1.wav")
    for bad in ["http://x/y", "s3://", "s3://B/key", "s3://bucket/../etc", "s3://bucket/"]:
        with pytest.raises(InvalidKeyError):
            layout.parse_s3_uri(bad)
