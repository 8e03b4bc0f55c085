"""Pieces of a live recorder's stream (issue 21): a real ffmpeg stream written to a pipe from real
speech (pyannote's sample call), cut at clusters, pages or fragments as MediaRecorder hands them
over. Only the first piece holds the header; the others decode with it, on the stream's timeline,
and a piece whose first chunk is not uploaded yet waits (retryable) instead of failing."""

from __future__ import annotations

import itertools
import subprocess

import pytest

from tests.support.real_speech import sample_dir
from tests.support.streams import EXTENSIONS, record, timeslices
from transcription import layout
from transcription.audio import decode_audio
from transcription.chunk import load_chunk_audio
from transcription.combine import combine_chunks
from transcription.errors import AudioError, StreamHeaderPending, UnsupportedMediaError
from transcription.repair import s3_audio_loader
from transcription.session_report import session_report
from transcription.streams import continues_stream, starts_stream, stream_header
from transcription.transcript import ChunkEntry, ChunkTranscript, Segment

KINDS = ("webm", "ogg", "mp4")


@pytest.fixture(scope="module")
def streams() -> dict[str, bytes]:
    return {kind: record(sample_dir() / "sample.wav", kind) for kind in KINDS}  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_pieces_decode_with_the_first_pieces_header_on_the_streams_timeline(streams, kind) -> None:
    data = streams[kind]
    whole = decode_audio(data)
    pieces = timeslices(data, kind, 3)
    assert starts_stream(pieces[0]) == kind and [continues_stream(p) for p in pieces[1:]] == [kind, kind]
    with pytest.raises(AudioError, match=f"middle of a {kind} stream"):  # alone it is no audio file
        decode_audio(pieces[1])
    found, header = stream_header(pieces[0])
    assert found == kind and pieces[0].startswith(header[:4]) and len(header) < 4096
    decoded = [decode_audio(pieces[0]), *(decode_audio(p, header=header) for p in pieces[1:])]
    assert decoded[0].start == 0.0 and not decoded[0].continuation and decoded[1].continuation
    # each piece's start is its true place: where the pieces before it end (within a codec frame)
    for before, after in itertools.pairwise(decoded):
        assert after.start > 5.0
        assert abs(after.start - (before.start + before.duration)) < 0.03, (after.start, before.start, before.duration)
    assert abs(sum(a.duration for a in decoded) - whole.duration) < 0.1


@pytest.mark.parametrize("kind", KINDS)
def test_a_continuation_is_bounded_by_the_duration_cap_not_by_its_header(streams, kind) -> None:
    pieces = timeslices(streams[kind], kind, 3)
    _, header = stream_header(pieces[0])
    with pytest.raises(AudioError, match="longer than the maximum of 2 s"):
        decode_audio(pieces[1], header=header, max_seconds=2)


def test_a_piece_that_starts_no_stream_has_no_header() -> None:
    with pytest.raises(AudioError, match="does not start a webm, ogg or mp4 stream"):
        stream_header(b"RIFF\x00\x00\x00\x00WAVEfmt ")


def _put(moto, bucket: str, key: str, body: bytes) -> str:
    moto.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    return key


@pytest.mark.parametrize("kind", KINDS)
def test_last_piece_first_waits_for_the_header_then_decodes_with_it(moto, bucket, streams, kind) -> None:
    sid = f"rec-{kind}"
    pieces = timeslices(streams[kind], kind, 3)
    keys = [f"sessions/{sid}/chunks/{i}.{EXTENSIONS[kind]}" for i in range(3)]
    _put(moto, bucket, keys[2], pieces[2])
    with pytest.raises(StreamHeaderPending, match="waiting for stream header") as e:
        load_chunk_audio(bucket, layout.parse_chunk_key(keys[2]), pieces[2])
    assert e.value.retryable
    report = session_report(bucket, sid)
    assert report.state == "waiting for stream header" and list(report.waiting) == [2]
    assert report.waiting[2].startswith("waiting for stream header: chunk 2")
    _put(moto, bucket, keys[1], pieces[1])
    _put(moto, bucket, keys[0], pieces[0])
    assert not session_report(bucket, sid).waiting and session_report(bucket, sid).state == "open"
    first = load_chunk_audio(bucket, layout.parse_chunk_key(keys[0]), pieces[0])
    last = load_chunk_audio(bucket, layout.parse_chunk_key(keys[2]), pieces[2])
    assert first.stream_from == 0 and last.stream_from == 0  # looked back past chunk 1, a continuation
    assert last.audio.start > 15.0 and last.audio.continuation
    # boundary repair reads the audio the transcript was made from
    entry = ChunkEntry(index=2, source_key=keys[2], offset=last.audio.start, duration=last.audio.duration,
                       status="transcribed")
    repaired_from = s3_audio_loader(bucket, {i: k for i, k in enumerate(keys)})(entry)
    assert repaired_from.start == last.audio.start and len(repaired_from.samples) == len(last.audio.samples)


def test_a_continuation_after_a_chunk_of_another_kind_fails_with_the_reason(moto, bucket, streams) -> None:
    sid = "rec-mixed"
    pieces = timeslices(streams["webm"], "webm", 3)
    _put(moto, bucket, f"sessions/{sid}/chunks/0.ogg", streams["ogg"])
    key = _put(moto, bucket, f"sessions/{sid}/chunks/1.webm", pieces[1])
    with pytest.raises(AudioError, match="no chunk before it starts one") as e:
        load_chunk_audio(bucket, layout.parse_chunk_key(key), pieces[1])
    assert not e.value.retryable


def _piece(index: int, start: float | None, duration: float, text: str) -> ChunkTranscript:
    return ChunkTranscript(session_id="s", chunk_index=index, duration=duration, engine="e", model="m",
                           segments=[Segment(start=0.5, end=duration - 0.5, text=text)],
                           stream_from=None if start is None else 0, stream_start=start)


def test_a_lost_piece_does_not_shift_the_rest_of_its_stream() -> None:
    pieces = [_piece(0, 0.0, 10.0, "one"), _piece(2, 20.0, 10.0, "three"), _piece(3, 30.0, 10.0, "four")]
    session = combine_chunks("s", pieces)
    assert [c.offset for c in session.chunks] == [0.0, 10.0, 20.0, 30.0]  # chunk 1 missing, 2 at its place
    assert [c.status for c in session.chunks] == ["transcribed", "missing", "transcribed", "transcribed"]
    assert session.segments[-1].start == 30.5
    # without timestamps, durations are summed as before
    plain = combine_chunks("s", [_piece(0, None, 10.0, "a"), _piece(2, None, 10.0, "b")])
    assert [c.offset for c in plain.chunks] == [0.0, 10.0, 10.0]


def test_the_manifest_and_chunk_keys_take_the_recorder_extensions() -> None:
    for ext in ("mp4", "mpeg", "mpga", "oga", "opus", "webm", "m4a"):
        assert layout.parse_chunk_key(f"sessions/s/chunks/1.{ext}").ext == ext
        assert layout.classify_key(f"sessions/s/chunks/1.{ext}") == ("chunk", "s")
    with pytest.raises(layout.InvalidKeyError, match="unsupported audio extension"):
        layout.parse_chunk_key("sessions/s/chunks/1.txt")


def test_content_type_is_the_hint_for_a_container_its_bytes_do_not_name(moto, bucket) -> None:
    # Android's ADTS AAC recorder output: raw ADTS frames, no magic number, often saved as .m4a
    adts = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(sample_dir() / "sample.wav"),
                           "-c:a", "aac", "-b:a", "64k", "-f", "adts", "pipe:1"],
                          capture_output=True, check=True).stdout
    s3 = moto.client("s3")
    s3.put_object(Bucket=bucket, Key="sessions/android/chunks/0.m4a", Body=adts, ContentType="audio/aac")
    s3.put_object(Bucket=bucket, Key="sessions/android/chunks/1.m4a", Body=adts)  # no type: nothing says aac
    audio = load_chunk_audio(bucket, layout.parse_chunk_key("sessions/android/chunks/0.m4a"), adts).audio
    assert abs(audio.duration - 30.0) < 0.2 and audio.container == "aac"
    with pytest.raises(UnsupportedMediaError, match="not a supported audio file"):
        load_chunk_audio(bucket, layout.parse_chunk_key("sessions/android/chunks/1.m4a"), adts)
    with pytest.raises(UnsupportedMediaError):  # the bytes alone (an upload route has no Content-Type)
        decode_audio(adts)
