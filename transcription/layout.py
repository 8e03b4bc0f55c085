"""The S3 key layout, in one place (see DESIGN.md "The job" and "Transcripts").

    sessions/<session_id>/chunks/<index>.<ext>      audio uploaded by recorders
    sessions/<session_id>/manifest.json             optional manifest
    transcripts/<session_id>/chunks/<index>.json    one chunk transcript
    transcripts/<session_id>/session.<fmt>          the combined session transcript
    failed/<session_id>/chunks/<index>.json         a chunk that could not be transcribed

Keys are validated before any S3 call: a session id is 1-128 characters of letters, digits,
`.`, `_` and `-`, starting with a letter or digit, never containing `..`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from transcription.errors import InvalidKeyError

AUDIO_EXTENSIONS = ("wav", "mp3", "flac", "m4a", "ogg", "webm")
SESSION_FORMATS = ("json", "verbose_json", "text", "srt", "vtt", "tsv")
FORMAT_EXTENSIONS = {"json": "json", "verbose_json": "verbose.json", "text": "txt", "srt": "srt",
                     "vtt": "vtt", "tsv": "tsv"}

MAX_SESSION_ID = 128
MAX_INDEX_DIGITS = 9
_SESSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CHUNK_RE = re.compile(r"sessions/(?P<session>[^/]+)/chunks/(?P<index>[0-9]+)\.(?P<ext>[A-Za-z0-9]+)")
_MANIFEST_RE = re.compile(r"sessions/(?P<session>[^/]+)/manifest\.json")


def validate_session_id(session_id: str) -> str:
    """Return the id unchanged, or raise InvalidKeyError saying what is wrong with it."""
    if not isinstance(session_id, str) or not session_id:
        raise InvalidKeyError("session id is empty")
    if len(session_id) > MAX_SESSION_ID:
        raise InvalidKeyError(f"session id is longer than {MAX_SESSION_ID} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in session_id):
        raise InvalidKeyError("session id contains control characters")
    if ".." in session_id or "/" in session_id or "\\" in session_id:
        raise InvalidKeyError("session id contains a path separator or '..'")
    if not _SESSION_RE.fullmatch(session_id):
        raise InvalidKeyError(
            "session id must start with a letter or digit and hold only letters, digits, '.', '_', '-'"
        )
    return session_id


def manifest_key(session_id: str) -> str:
    return f"sessions/{validate_session_id(session_id)}/manifest.json"


def chunks_prefix(session_id: str) -> str:
    return f"sessions/{validate_session_id(session_id)}/chunks/"


def transcripts_prefix(session_id: str) -> str:
    return f"transcripts/{validate_session_id(session_id)}/chunks/"


def failed_prefix(session_id: str) -> str:
    return f"failed/{validate_session_id(session_id)}/chunks/"


def chunk_transcript_key(session_id: str, index: int) -> str:
    return f"{transcripts_prefix(session_id)}{int(index)}.json"


def failed_key(session_id: str, index: int) -> str:
    return f"{failed_prefix(session_id)}{int(index)}.json"


def session_transcript_key(session_id: str, fmt: str = "json") -> str:
    if fmt not in FORMAT_EXTENSIONS:
        raise InvalidKeyError(f"unknown session transcript format {fmt!r}")
    return f"transcripts/{validate_session_id(session_id)}/session.{FORMAT_EXTENSIONS[fmt]}"


@dataclass(frozen=True)
class ChunkKey:
    """A parsed `sessions/<id>/chunks/<index>.<ext>` key."""

    key: str
    session_id: str
    index: int
    ext: str

    @property
    def transcript_key(self) -> str:
        return chunk_transcript_key(self.session_id, self.index)

    @property
    def failed_key(self) -> str:
        return failed_key(self.session_id, self.index)


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("key is empty")
    if len(key) > 1024:
        raise InvalidKeyError("key is longer than 1024 characters")
    if key.startswith("/") or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidKeyError("key is absolute or contains control characters")
    if any(part in ("..", ".") for part in key.split("/")):
        raise InvalidKeyError("key contains a '.' or '..' path segment")


def parse_chunk_key(key: str) -> ChunkKey:
    """Parse an audio chunk key, or raise InvalidKeyError with the reason."""
    _check_key(key)
    m = _CHUNK_RE.fullmatch(key)
    if not m:
        raise InvalidKeyError(f"not a chunk key (sessions/<id>/chunks/<index>.<ext>): {key[:200]!r}")
    ext = m["ext"].lower()
    if ext not in AUDIO_EXTENSIONS:
        raise InvalidKeyError(f"unsupported audio extension .{ext} (expected one of {', '.join(AUDIO_EXTENSIONS)})")
    if len(m["index"]) > MAX_INDEX_DIGITS:
        raise InvalidKeyError(f"chunk index has more than {MAX_INDEX_DIGITS} digits")
    return ChunkKey(key=key, session_id=validate_session_id(m["session"]), index=int(m["index"]), ext=ext)


KeyKind = Literal["chunk", "manifest"]


def classify_key(key: str) -> tuple[KeyKind, str] | tuple[None, str]:
    """What an uploaded key is: ("chunk", session), ("manifest", session) or (None, reason)."""
    try:
        _check_key(key)
    except InvalidKeyError as e:
        return None, e.reason
    if not key.startswith("sessions/"):
        return None, "outside sessions/"
    m = _MANIFEST_RE.fullmatch(key)
    if m:
        try:
            return "manifest", validate_session_id(m["session"])
        except InvalidKeyError as e:
            return None, e.reason
    try:
        return "chunk", parse_chunk_key(key).session_id
    except InvalidKeyError as e:
        return None, e.reason


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key), or InvalidKeyError."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InvalidKeyError("S3 path must start with s3://")
    bucket, _, key = uri[5:].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise InvalidKeyError(f"invalid bucket name {bucket[:70]!r}")
    _check_key(key)
    return bucket, key
