"""A live recorder's stream, for tests: ffmpeg encoding to a pipe (so its header states no total
duration, as MediaRecorder's and a phone's do not), then cut into timeslices at clusters, pages or
fragments the way a recorder hands them over (only the first piece holds the header).

    data = record(sample_wav, "webm")       # WebM/Opus, Ogg/Opus or fragmented MP4/AAC
    pieces = timeslices(data, "webm", 3)    # ~equal pieces, each but the first a continuation
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from transcription.streams import StreamKind, fragment_starts

# what each recorder writes: Chrome/Firefox WebM/Opus, Firefox/Android Ogg/Opus, Safari fragmented MP4/AAC
ENCODERS: dict[str, list[str]] = {
    "webm": ["-c:a", "libopus", "-b:a", "32k", "-f", "webm", "-cluster_time_limit", "1000"],
    "ogg": ["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
    "mp4": ["-c:a", "aac", "-b:a", "64k", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
            "-frag_duration", "1000000"],
}
EXTENSIONS = {"webm": "webm", "ogg": "opus", "mp4": "mp4"}  # what a recorder names its pieces
# how a continuation begins, checked apart from the code under test: a Cluster id, a page that does
# not begin the stream, a movie fragment
CONTINUATION_MAGIC = {"webm": lambda b: b[:4] == b"\x1f\x43\xb6\x75",
                      "ogg": lambda b: b[:4] == b"OggS" and not b[5] & 2,
                      "mp4": lambda b: b[4:8] == b"moof"}


def record(wav: Path, kind: StreamKind) -> bytes:
    """`wav` encoded by ffmpeg writing to a pipe (its output is never seekable, so never finalised)."""
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "wav", "-i", "pipe:0",
                           *ENCODERS[kind], "pipe:1"], input=wav.read_bytes(), capture_output=True, check=True,
                          timeout=120)
    return proc.stdout


def timeslices(data: bytes, kind: StreamKind, n: int) -> list[bytes]:
    """`n` pieces of about equal size, each cut where a cluster, page or fragment starts."""
    starts = fragment_starts(data, kind)
    cuts = sorted({min(starts, key=lambda s: abs(s - len(data) * k / n)) for k in range(1, n)})
    assert len(cuts) == n - 1, f"too few {kind} fragments to cut into {n} pieces"
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert all(CONTINUATION_MAGIC[kind](p) for p in pieces[1:]), "a piece does not start at a fragment"
    return pieces
