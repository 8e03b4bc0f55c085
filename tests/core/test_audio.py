"""Audio input: every container decodes to 16 kHz mono; bad input raises AudioError with a reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.speech import speak
from transcription.audio import SAMPLE_RATE, decode_audio, sniff_container
from transcription.errors import AudioError, PermanentError

TEXT = "Please remember to bring the blue folder to the meeting this afternoon."


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "m4a", "ogg", "webm"])
def test_every_container_decodes_to_the_same_duration(fmt: str) -> None:
    reference = decode_audio(speak(TEXT, "wav"))
    audio = decode_audio(speak(TEXT, fmt))
    assert audio.container == fmt
    assert audio.samples.dtype.name == "float32"
    assert abs(audio.duration - reference.duration) < 0.15
    assert 0.01 < float(abs(audio.samples).max()) <= 1.0


def test_bytes_and_paths_give_the_same_samples() -> None:
    path = speak(TEXT, "flac")
    assert (decode_audio(path.read_bytes()).samples == decode_audio(path).samples).all()


def test_resampled_to_16k_mono(tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(speak(TEXT)), "-ac", "2", "-ar", "44100",
                    str(stereo)], check=True)
    audio = decode_audio(stereo)
    assert audio.samples.ndim == 1
    assert abs(len(audio.samples) / SAMPLE_RATE - decode_audio(speak(TEXT)).duration) < 0.05


def _bad_inputs(tmp_path: Path) -> dict[str, bytes]:
    mp3 = speak(TEXT, "mp3").read_bytes()
    wav = speak(TEXT, "wav").read_bytes()
    return {
        "zero-byte": b"",
        "random bytes": bytes(range(256)) * 20,
        "truncated mp3": mp3[: len(mp3) // 2],
        "mp3 header only": mp3[:100],
        "truncated wav": wav[: len(wav) // 3],
        "text renamed .wav": b"this is a text file, not audio\n" * 10,
        "riff header without wave data": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 20,
    }


@pytest.mark.parametrize("case", ["zero-byte", "random bytes", "truncated mp3", "mp3 header only", "truncated wav",
                                  "text renamed .wav", "riff header without wave data"])
def test_bad_input_raises_audio_error_with_reason(case: str, tmp_path: Path) -> None:
    data = _bad_inputs(tmp_path)[case]
    path = tmp_path / "bad.wav"
    path.write_bytes(data)
    with pytest.raises(AudioError) as info:
        decode_audio(path)
    assert isinstance(info.value, PermanentError) and not info.value.retryable
    assert len(info.value.reason) > 10  # a readable reason, not an empty message


def test_duration_cap_refuses_long_audio() -> None:
    with pytest.raises(AudioError, match="longer than the maximum"):
        decode_audio(speak(TEXT), max_seconds=1.0)


def test_size_cap_refuses_large_input() -> None:
    with pytest.raises(AudioError, match="over the limit"):
        decode_audio(speak(TEXT), max_bytes=1000)


def test_missing_file_is_an_audio_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="cannot read"):
        decode_audio(tmp_path / "nope.wav")


def test_sniffing_refuses_playlists_and_other_containers() -> None:
    assert sniff_container(b"#EXTM3U\n#EXT-X-VERSION:3\n") is None
    assert sniff_container(b"ffconcat version 1.0\n") is None
    assert sniff_container(b"\x89PNG\r\n\x1a\n") is None
    assert sniff_container(b"ID3\x04\x00") == "mp3"
