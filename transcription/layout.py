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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

from transcription.errors import AccessRefused, InvalidKeyError

# OpenAI's transcription formats plus opus and oga; the container is sniffed from the bytes, so an
# extension only says "audio" (mp4/m4a, mpeg/mpga/mp3, ogg/oga/opus are the same containers)
AUDIO_EXTENSIONS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "oga", "opus", "wav", "webm")
SESSION_FORMATS = ("json", "verbose_json", "text", "srt", "vtt", "tsv")
FORMAT_EXTENSIONS = {"json": "json", "verbose_json": "verbose.json", "text": "txt", "srt": "srt",
                     "vtt": "vtt", "tsv": "tsv"}

MAX_SESSION_ID = 128
MAX_INDEX_DIGITS = 9
_SESSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CHUNK_RE = re.compile(r"sessions/(?P<session>[^/]+)/chunks/(?P<index>[0-9]+)\.(?P<ext>[A-Za-z0-9]+)")
_MANIFEST_RE = re.compile(r"sessions/(?P<session>[^/]+)/manifest\.json")
K = TypeVar("K")
_DONE_RE = re.compile(r"(?P<folder>transcripts|failed)/(?P<session>[^/]+)/chunks/(?P<index>[0-9]+)\.json")


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


def check_session_file_key(session_id: str, key: str) -> str:
    """A key of a recorder's own file inside its session's prefix (`sessions/<id>/...`, not a chunk
    and not the manifest), e.g. a speaker's reference clip; `InvalidKeyError` with the reason."""
    _check_key(key)
    prefix = f"sessions/{validate_session_id(session_id)}/"
    if not key.startswith(prefix) or len(key) == len(prefix) or key.endswith("/"):
        raise InvalidKeyError(f"not a file inside this session's prefix {prefix}: {key[:200]!r}")
    if key == manifest_key(session_id) or key.startswith(chunks_prefix(session_id)):
        raise InvalidKeyError(f"the manifest or an audio chunk, not a file of its own: {key[:200]!r}")
    return key


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


@dataclass(frozen=True)
class DoneKey:
    """A parsed `transcripts/<id>/chunks/<index>.json` or `failed/<id>/chunks/<index>.json` key:
    a chunk that is done, transcribed or failed."""

    key: str
    session_id: str
    index: int
    failed: bool


def parse_done_key(key: str) -> DoneKey:
    """Parse a chunk transcript or failed record key, or raise InvalidKeyError with the reason."""
    _check_key(key)
    m = _DONE_RE.fullmatch(key)
    if not m:
        raise InvalidKeyError(f"not a chunk transcript or failed record key: {key[:200]!r}")
    if len(m["index"]) > MAX_INDEX_DIGITS:
        raise InvalidKeyError(f"chunk index has more than {MAX_INDEX_DIGITS} digits")
    return DoneKey(key=key, session_id=validate_session_id(m["session"]), index=int(m["index"]),
                   failed=m["folder"] == "failed")


def chunk_keys(keys: Iterable[str]) -> Iterator[ChunkKey]:
    """The audio chunk keys among `keys` (e.g. a listing of `sessions/`), parsed; other keys are skipped."""
    return _parsed(keys, parse_chunk_key)


def done_keys(keys: Iterable[str]) -> Iterator[DoneKey]:
    """The chunk transcript and failed record keys among `keys` (a listing), parsed; others are skipped."""
    return _parsed(keys, parse_done_key)


def _parsed(keys: Iterable[str], parse: Callable[[str], K]) -> Iterator[K]:
    for key in keys:
        try:
            yield parse(key)
        except InvalidKeyError:
            continue


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


# --- what a caller of the server's S3 route may read and write -----------------------------------
LAYOUT_FOLDERS = ("sessions/", "transcripts/", "failed/")


def _in_layout(prefix: str) -> bool:
    """A prefix inside (or above) the layout's own folders, in any letter case."""
    p = prefix.lower()
    return not p or any(p.startswith(f) or f.startswith(p) for f in LAYOUT_FOLDERS)


def check_s3_access(source: tuple[str, str], output: tuple[str, str] | None, *, bucket: str,
                    input_prefixes: Iterable[str], output_prefix: str) -> None:
    """The rule for `/transcribe-s3` (one API key serves every caller), or `AccessRefused`:

    - both objects are in `bucket` (the configured one);
    - the input is a chunk key (`sessions/<id>/chunks/<n>.<ext>`) or under one of `input_prefixes`;
    - the output is the input chunk's own transcript key, or under `output_prefix`; never elsewhere
      in the layout's folders (another session's chunk, session transcript or failed record).
    Prefixes overlapping the layout's folders are ignored (a configuration that would reopen the hole).
    """
    for what, (b, _) in (("input", source), *((("output", output),) if output else ())):
        if b != bucket:
            raise AccessRefused(f"the {what} must be in the bucket {bucket!r}, not {b[:70]!r}")
    key = source[1]
    chunk = parse_chunk_key(key) if key.startswith("sessions/") else None  # a bad one: InvalidKeyError
    if output is not None and output[1].startswith("sessions/"):  # the router would take it for an upload
        raise InvalidKeyError("a transcript may not be written under sessions/ (the recorders' folder)")
    readable = [p for p in input_prefixes if not _in_layout(p)]
    if chunk is None and not any(key.startswith(p) for p in readable):
        raise AccessRefused("s3_input_path must be a chunk key (sessions/<id>/chunks/<index>.<ext>)"
                            + (f" or a key under {', '.join(readable)}" if readable else ""))
    if output is None or (chunk is not None and output[1] == chunk.transcript_key):
        return
    if _in_layout(output_prefix) or not output[1].startswith(output_prefix):
        places = ([] if _in_layout(output_prefix) else [f"under {output_prefix!r}"]) + (
            ["the chunk's own transcript key"] if chunk else [])
        raise AccessRefused(f"s3_output_path must be {' or '.join(places)}" if places else
                            "s3_output_path is not allowed here (no usable S3_OUTPUT_PREFIX)")
