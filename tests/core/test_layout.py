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


def test_done_keys_parse_and_listings_skip_what_is_not_theirs() -> None:
    d = layout.parse_done_key("failed/abc/chunks/7.json")
    assert (d.session_id, d.index, d.failed) == ("abc", 7, True)
    assert not layout.parse_done_key(layout.chunk_transcript_key("abc", 12)).failed
    for bad in ["transcripts/abc/session.json", "transcripts/abc/chunks/1.txt", "failed/../chunks/1.json",
                "transcripts/abc/chunks/1234567890.json", "sessions/abc/chunks/1.wav"]:
        with pytest.raises(InvalidKeyError):
            layout.parse_done_key(bad)
    listing = ["sessions/a/chunks/1.txt", "sessions/a/chunks/1.wav", "sessions/a/manifest.json",
               "sessions/a/chunks/x.wav", "sessions/b/chunks/02.mp3"]
    assert [(c.session_id, c.index) for c in layout.chunk_keys(listing)] == [("a", 1), ("b", 2)]
    done = ["transcripts/a/chunks/1.json", "transcripts/a/session.json", "failed/b/chunks/3.json", "x"]
    assert [(d.session_id, d.index, d.failed) for d in layout.done_keys(done)] == [("a", 1, False), ("b", 3, True)]


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


def test_s3_access_rule() -> None:
    """Issue 14, hole 3 (the rule alone; tests/app/test_server.py holds it against the server)."""
    from transcription.errors import AccessRefused

    def check(src: str, out: str | None = None, bucket: str = "b", prefixes=("uploads/",), output="outputs/"):
        layout.check_s3_access(("b", src), ("b", out) if out else None, bucket=bucket, input_prefixes=prefixes,
                               output_prefix=output)

    check("sessions/s1/chunks/3.wav")
    check("sessions/s1/chunks/3.wav", "transcripts/s1/chunks/3.json")
    check("uploads/a.mp3", "outputs/a.json")
    refused = [("other/a.wav", None), ("transcripts/s1/chunks/3.json", None),
               ("sessions/s1/chunks/3.wav", "transcripts/s2/chunks/3.json"),
               ("sessions/s1/chunks/3.wav", "transcripts/s1/session.json"),
               ("sessions/s1/chunks/3.wav", "failed/s1/chunks/3.json"),
               ("sessions/s1/chunks/3.wav", "Sessions/s1/manifest.json"),
               ("uploads/a.mp3", "transcripts/s1/chunks/3.json")]
    for src, out in refused:
        with pytest.raises(AccessRefused):
            check(src, out)
    with pytest.raises(AccessRefused, match="bucket"):
        check("sessions/s1/chunks/3.wav", bucket="c")
    with pytest.raises(AccessRefused):  # prefixes inside the layout's folders are ignored
        check("sessions/s1/chunks/3.wav", "transcripts/s2/x.json", prefixes=("transcripts/",), output="Transcripts/")
    with pytest.raises(AccessRefused):
        check("transcripts/s2/chunks/0.json", prefixes=("transcripts/",))
