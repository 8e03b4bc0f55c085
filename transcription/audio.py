"""Audio input: bytes or a file in, 16 kHz mono float32 out, or one `AudioError` with the reason.

Safety: the container format is sniffed from the first bytes and the matching demuxer is forced,
so playlist, concat or image-sequence demuxers (which open other files or URLs) are never used;
the decoder only ever sees an in-memory buffer. Decoding stops at a duration cap and a time cap.

A piece from the middle of a stream (a recorder's timeslice: `transcription/streams.py`) is decoded
with its stream's `header` put before it; its `start` is then its place on the stream's timeline,
and the caps still hold (the header's duration is the stream's, so it is not the piece's limit).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transcription.errors import AudioError, UnsupportedMediaError
from transcription.layout import AUDIO_EXTENSIONS
from transcription.streams import continues_stream

SAMPLE_RATE = 16000

# container -> the FFmpeg demuxer forced for it
DEMUXERS = {"wav": "wav", "mp3": "mp3", "flac": "flac", "m4a": "mov", "ogg": "ogg", "webm": "matroska",
            "aac": "aac"}
# containers without a magic number at byte 0, read only when the upload's name or Content-Type says so:
# ADTS AAC (Android's AAC_ADTS recorder, often saved as .m4a) and MP3 that starts with something else
HINTS = {"audio/aac": "aac", "audio/x-aac": "aac", "audio/aacp": "aac", "audio/mpeg": "mp3", "audio/mp3": "mp3",
         "audio/mpga": "mp3", "mp3": "mp3", "mpeg": "mp3", "mpga": "mp3"}
MAX_STREAM_START_S = 7 * 24 * 3600.0  # a week: a recorder's stream is never longer


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32 mono at SAMPLE_RATE
    container: str
    start: float = 0.0  # the stream's time of the first sample (a continuation's place on its stream)
    continuation: bool = False  # decoded with the header of an earlier piece of its stream

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def sniff_container(head: bytes) -> str | None:
    """The container of an audio file from its magic bytes, or None if it is none we accept."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0:
        return "mp3"  # an MPEG audio frame sync with a valid layer
    return None


def _read_input(source: bytes | bytearray | memoryview | str | Path, max_bytes: int | None) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
            if max_bytes is not None and size > max_bytes:
                raise AudioError(f"file is {size} bytes, over the limit of {max_bytes}")
            data = path.read_bytes()
        except OSError as e:
            raise AudioError(f"cannot read {path.name}: {e.strerror or e}") from e
    if max_bytes is not None and len(data) > max_bytes:
        raise AudioError(f"audio is {len(data)} bytes, over the limit of {max_bytes}")
    return data


def decode_audio(
    source: bytes | bytearray | memoryview | str | Path,
    *,
    max_seconds: float | None = None,
    timeout_s: float | None = None,
    max_bytes: int | None = None,
    header: bytes | None = None,
    hints: tuple[str | None, ...] = (),
) -> Audio:
    """Decode any supported container to 16 kHz mono float32; refuse anything else with a reason.

    `header`: the stream's header, for a piece that continues a stream (see `streams.py`).
    `hints`: the upload's extension and Content-Type, used only when the bytes name no container."""
    data = _read_input(source, max_bytes)
    if not data:
        raise AudioError("audio is empty (0 bytes)")
    piece = continues_stream(data[:16])
    if piece is not None and header is None:
        raise AudioError(f"a piece from the middle of a {piece} stream (no header): upload it as a session "
                         "chunk after the stream's first piece, which holds the header")
    if header is not None:
        data = header + data
    container = sniff_container(data[:16]) or next((HINTS[h] for h in hints if h in HINTS), None)
    if container is None:
        raise UnsupportedMediaError(  # the input's bytes are never echoed: it may be any object
            "not a supported audio file (expected " + ", ".join(AUDIO_EXTENSIONS) + ")")
    import av  # heavy (FFmpeg): imported when audio is first decoded, not at module import

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    n = 0
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    start: float | None = None
    try:
        with av.open(io.BytesIO(data), mode="r", format=DEMUXERS[container], metadata_errors="ignore") as c:
            if not c.streams.audio:
                raise AudioError(f"{container} file has no audio stream")
            stream = c.streams.audio[0]
            declared = None if header is not None else _declared_seconds(c, stream)  # a header's is the stream's
            if declared is not None and max_seconds is not None and declared > max_seconds:  # before allocating
                raise AudioError(f"audio is longer than the maximum of {max_seconds:.0f} s "
                                 f"(its header says {declared:.0f} s)")
            for frame in c.decode(stream):
                if start is None and frame.time is not None:
                    start = float(frame.time)
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().reshape(-1)
                    pieces.append(arr)
                    n += len(arr)
                if limit is not None and n > limit:
                    raise AudioError(f"audio is longer than the maximum of {max_seconds:.0f} s")
                if deadline is not None and time.monotonic() > deadline:
                    raise AudioError(f"decoding took longer than {timeout_s:g} s")
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, EOFError, OSError, IndexError) as e:
        raise AudioError(f"cannot decode {container} audio: {e}") from e
    samples = (np.concatenate(pieces) if pieces else np.zeros(0, np.int16)).astype(np.float32) / 32768.0
    decoded = len(samples) / SAMPLE_RATE
    if decoded < 0.05:
        raise AudioError(f"{container} file holds no decodable audio")
    if container == "wav":
        _check_wav_length(data)
    if declared is not None and decoded < declared * 0.9 - 0.25:
        raise AudioError(f"{container} file is truncated: header says {declared:.2f} s, decoded {decoded:.2f} s")
    start = 0.0 if start is None or not np.isfinite(start) else round(start, 3)
    if not 0.0 <= start <= MAX_STREAM_START_S:
        start = 0.0  # a timestamp that places the piece nowhere sensible says nothing about its place
    return Audio(samples=samples, container=container, start=start, continuation=header is not None)


def _declared_seconds(container, stream) -> float | None:
    """The duration the header promises, when it states one (not estimated from the bitrate)."""
    if container.format.name == "aac":  # raw ADTS frames state no duration: FFmpeg's is a bitrate guess
        return None
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.format.name == "wav" and container.duration:
        return container.duration / 1_000_000
    return None


def _check_wav_length(data: bytes) -> None:
    """A WAV header states its data size; FFmpeg quietly decodes what is there, so compare."""
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if chunk_id == b"data":
            available = len(data) - pos - 8
            if 0 < size < 0x7FFF0000 and available < size * 0.98:  # streamed WAVs state 0 or ~2^31
                raise AudioError(f"wav file is truncated: header says {size} data bytes, file holds {available}")
            return
        pos += 8 + size + (size & 1)
