"""The decoder reads only the bytes it was given, and stops at its time cap.

Playlists (HLS), concat scripts and an m4a whose track points at another file are the inputs that
make FFmpeg open other files or URLs. A canary file watched with inotify (it sees opens and reads
by C code, not only Python's) and a canary TCP listener prove nothing was opened or connected to;
the first test shows the same watchers do see it when FFmpeg is asked to follow those references,
so their silence in the other tests means something.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import API_KEY, AUTH, Canary
from tests.security.crafted import FileWatch, concat_script, hls_playlist, m4a_with_external_track
from tests.support.speech import SENTENCES, speak
from transcription.audio import decode_audio
from transcription.chunk import load_audio
from transcription.errors import AudioError
from transcription.settings import Settings


@pytest.fixture
def target(tmp_path: Path):
    """A real audio file some crafted input points at, watched for any open or read."""
    path = tmp_path / "secret.m4a"
    shutil.copyfile(speak(SENTENCES[1], "m4a"), path)
    watch = FileWatch(str(path))
    yield path, watch
    watch.close()


@pytest.fixture(scope="module")
def listener():
    c = Canary("127.0.0.1")
    yield c
    c.close()


def crafted_inputs(path: Path, port: int) -> dict[str, bytes]:
    url = f"http://127.0.0.1:{port}/segment.wav"
    m4a = speak(SENTENCES[1], "m4a").read_bytes()
    return {
        "hls playlist -> file": hls_playlist(str(path)),
        "hls playlist -> file:// url": hls_playlist(f"file://{path}"),
        "hls playlist -> http url": hls_playlist(url),
        "concat script -> file": concat_script(str(path)),
        "hls behind an ID3 (mp3) signature": b"ID3\x04\x00\x00\x00\x00\x00\x00" + hls_playlist(str(path), url),
        "hls behind an ftyp (m4a) signature": b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00" + hls_playlist(str(path)),
        "concat behind a RIFF/WAVE signature": b"RIFF\x24\x00\x00\x00WAVE" + concat_script(str(path)),
        "m4a whose track is another file": m4a_with_external_track(m4a, str(path)),
    }


def test_the_watchers_see_ffmpeg_follow_references_when_allowed(tmp_path: Path, target, listener) -> None:
    """Control: FFmpeg's own hls and concat demuxers, and the mov demuxer with data references on,
    do open the target file and connect to the listener."""
    path, watch = target
    (tmp_path / "list.txt").write_bytes(concat_script(str(path)))
    with av.open(str(tmp_path / "list.txt"), format="concat", options={"safe": "0"}) as c:
        assert next(c.demux()).size > 0
    assert "open" in watch.events()
    (tmp_path / "ext.m4a").write_bytes(m4a_with_external_track(speak(SENTENCES[1], "m4a").read_bytes(), str(path)))
    with av.open(str(tmp_path / "ext.m4a"), options={"enable_drefs": "1", "use_absolute_path": "1"}) as c:
        assert sum(1 for _ in c.decode(audio=0)) > 0
    assert "open" in watch.events()
    (tmp_path / "net.m3u8").write_bytes(hls_playlist(f"http://127.0.0.1:{listener.port}/segment.wav"))
    before = listener.connections
    with pytest.raises(av.FFmpegError), av.open(str(tmp_path / "net.m3u8"), format="hls", timeout=3,
                                                options={"protocol_whitelist": "file,http,tcp"}) as c:
        list(c.decode(audio=0))
    assert listener.connections > before


def test_crafted_inputs_are_refused_without_touching_what_they_name(tmp_path: Path, target, listener) -> None:
    path, watch = target
    before = listener.connections
    for name, data in crafted_inputs(path, listener.port).items():
        as_file = tmp_path / f"upload-{abs(hash(name))}.m4a"
        as_file.write_bytes(data)
        for source in (data, as_file):  # bytes (server, worker) and a path (the CLI)
            with pytest.raises(AudioError) as refused:
                decode_audio(source)
            assert refused.value.reason, name
        assert watch.events() == [], f"{name}: the decoder opened {path}"
    assert listener.connections == before, "the decoder connected to a URL named in its input"


def test_the_server_refuses_them_too(fw_engine, target, listener) -> None:
    from app.main import create_app

    path, watch = target
    before = listener.connections
    with TestClient(create_app(Settings(api_key=API_KEY), engine=fw_engine)) as client:
        for name, data in crafted_inputs(path, listener.port).items():
            r = client.post("/transcribe", files={"file": ("chunk.m4a", data, "audio/mp4")}, headers=AUTH)
            assert r.status_code in (415, 422), (name, r.status_code, r.text)
            assert r.json()["detail"], name
    assert watch.events() == []
    assert listener.connections == before


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory) -> bytes:
    """Ten minutes of tone as a 32 kb/s mp3 (2.4 MB): seconds of decoding on this machine."""
    out = tmp_path_factory.mktemp("long") / "long.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=600",
                    "-ac", "1", "-ar", "16000", "-b:a", "32k", str(out)], check=True, timeout=120)
    return out.read_bytes()


def test_decoding_stops_at_the_time_cap(long_audio: bytes) -> None:
    started = time.perf_counter()
    assert decode_audio(long_audio).duration == pytest.approx(600, abs=1)
    whole = time.perf_counter() - started
    cap = round(whole / 10, 3)  # a tenth of what the whole file takes on this machine, now
    started = time.perf_counter()
    with pytest.raises(AudioError, match=r"decoding took longer than [\d.]+ s"):
        decode_audio(long_audio, timeout_s=cap)
    capped = time.perf_counter() - started
    assert capped < cap + whole / 2, (capped, cap, whole)  # stopped, not decoded and then refused


def test_decode_timeout_applies_to_every_caller(fw_engine, long_audio: bytes) -> None:
    """DECODE_TIMEOUT_S reaches the chunk function (worker, CLI) and the server alike."""
    from app.main import create_app

    with pytest.raises(AudioError, match="decoding took longer"):
        load_audio(long_audio, Settings(decode_timeout_s=0.1))
    settings = Settings(api_key=API_KEY, decode_timeout_s=0.1)
    with TestClient(create_app(settings, engine=fw_engine)) as client:
        r = client.post("/transcribe", files={"file": ("long.mp3", long_audio, "audio/mpeg")}, headers=AUTH)
    assert r.status_code == 422 and "decoding took longer" in r.json()["detail"], r.text
