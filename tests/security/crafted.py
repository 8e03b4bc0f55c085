"""Inputs that try to make a decoder read something other than what it was given, and a way to see
whether it did: inotify (through libc, no package) reports every open and read of a canary file."""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
from pathlib import Path

IN_ACCESS, IN_OPEN = 0x1, 0x20
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl"}


class FileWatch:
    """Every open or read of one file, by any code in any process (C libraries included)."""

    def __init__(self, path: str) -> None:
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or self._libc.inotify_add_watch(self.fd, path.encode(), IN_OPEN | IN_ACCESS) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {path}")

    def events(self) -> list[str]:
        """What happened to the file since the last call: 'open' / 'read' per event."""
        out: list[str] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, i)
                i += 16 + length
                out.append("open" if mask & IN_OPEN else "read")

    def close(self) -> None:
        os.close(self.fd)


def hls_playlist(*uris: str) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:10"] + [f"#EXTINF:5,\n{u}" for u in uris] + ["#EXT-X-ENDLIST"]
    return ("\n".join(lines) + "\n").encode()


def concat_script(*paths: str) -> bytes:
    return ("ffconcat version 1.0\n" + "".join(f"file '{p}'\n" for p in paths)).encode()


def _boxes(data: bytes | bytearray, start: int, end: int):
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, i)
        if size < 8 or i + size > end:
            return
        yield i, size, kind
        i += size


def _alias_record(path: str) -> bytes:
    """A Macintosh alias record (what FFmpeg's mov demuxer reads from an 'alis' data reference)."""
    name = path.rsplit("/", 1)[-1].encode()[:63]
    body = bytes(10) + b"\0" + bytes(27) + bytes(12) + bytes([len(name)]) + name.ljust(63, b"\0")
    body += bytes(16) + struct.pack(">HH", 1, 1) + bytes(16)
    p = path.encode() + (b"\0" if len(path.encode()) % 2 else b"")
    return body + struct.pack(">hH", 2, len(p)) + p + struct.pack(">hH", -1, 0)  # type 2: absolute path


def m4a_with_external_track(m4a: bytes, path: str) -> bytes:
    """An m4a whose audio track's data reference points at another file (`path`) instead of itself."""
    data = bytearray(m4a)

    def find(start: int, end: int, ancestors: list[int]) -> tuple[int, list[int]] | None:
        for off, size, kind in _boxes(data, start, end):
            if kind == b"dref":
                return off, ancestors
            if kind in _CONTAINERS and (hit := find(off + 8, off + size, [*ancestors, off])):
                return hit
        return None

    found = find(0, len(data), [])
    if found is None:
        raise ValueError("no dref box in this m4a")
    dref, ancestors = found
    entry_at = dref + 16  # the dref's size, type, version/flags and entry count come first
    old = struct.unpack_from(">I", data, entry_at)[0]
    record = _alias_record(path)
    entry = struct.pack(">I4sI", 12 + len(record), b"alis", 0) + record  # flags 0: the media is elsewhere
    data[entry_at:entry_at + old] = entry
    for off in [*ancestors, dref]:
        struct.pack_into(">I", data, off, struct.unpack_from(">I", data, off)[0] + len(entry) - old)
    return bytes(data)


def flac_bomb(path, seconds: float, *, declared: bool = True) -> bytes:
    """A FLAC of digital silence with the largest frames (about 32 KB for 3.9 h at 8 kHz). With
    `declared=False` its STREAMINFO says "length unknown", so only decoding finds out how long it is."""

    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "anullsrc=r=8000:cl=mono", "-t", str(seconds), "-c:a", "flac", "-frame_size", "65535",
                    "-compression_level", "0", str(path)], check=True, timeout=300)
    data = bytearray(Path(path).read_bytes())
    if not declared:  # total samples: the low 36 bits of the 8 bytes after STREAMINFO's first 10
        packed = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
        data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)
