"""Sessions in S3: what state a session is in, whether to combine it, and the combine itself.

Celery-free on purpose: the server, the router, the worker and beat all call it. Everything is
derived from the key layout (listing three prefixes), so a session's state needs no database and
survives any process dying:

    sessions/<id>/chunks/<n>.<ext>      uploaded         -> `uploaded`
    transcripts/<id>/chunks/<n>.json    transcribed      -> `transcribed`
    failed/<id>/chunks/<n>.json         failed (reason)  -> `failed` (unless also transcribed)
    transcripts/<id>/session.json       combined         -> `combined`

A session transcript is written in every format with `If-None-Match: *`, json last, so "the json
exists" means every format exists: it is the one signal readers and the completion check use.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from transcription import layout, storage
from transcription.combine import combine_chunks
from transcription.errors import InvalidKeyError, NotFoundError
from transcription.formats import MEDIA_TYPES, render
from transcription.manifest import Manifest, load_manifest
from transcription.settings import Settings, get_settings
from transcription.transcript import ChunkTranscript, FailedChunk, SessionTranscript

log = logging.getLogger(__name__)

_INDEX_RE = re.compile(r"([0-9]{1,9})\.[A-Za-z0-9.]+")
# json last: its existence says every other format was written before it
WRITE_ORDER = ("text", "srt", "vtt", "tsv", "verbose_json", "json")


def _indices(keys: Iterable[str], prefix: str) -> dict[int, str]:
    """index -> key for keys directly under `prefix` named `<n>.<ext>` (other keys are ignored)."""
    out: dict[int, str] = {}
    for key in keys:
        m = _INDEX_RE.fullmatch(key[len(prefix):])
        if m:
            out.setdefault(int(m[1]), key)
    return out


@dataclass
class SessionStatus:
    """One session's state, from S3 listings (and the manifest)."""

    session_id: str
    manifest: Manifest | None
    uploaded: dict[int, str] = field(default_factory=dict)  # index -> audio key
    transcribed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # failed and not transcribed since
    combined: bool = False  # the session transcript (json, so every format) exists
    failed_reasons: dict[int, str] = field(default_factory=dict)  # filled when asked for

    @property
    def expected(self) -> int | None:
        """`total_chunks` from the manifest, once the recorder says the session has ended."""
        return self.manifest.total_chunks if self.manifest else None

    @property
    def done(self) -> list[int]:
        return sorted(set(self.transcribed) | set(self.failed))

    @property
    def pending(self) -> list[int]:
        """Uploaded, neither transcribed nor failed: queued, running, or not routed yet."""
        done = set(self.done)
        return sorted(i for i in self.uploaded if i not in done)

    @property
    def complete(self) -> bool:
        """The manifest says how many chunks there are, and that many are transcribed or failed."""
        return self.expected is not None and len(self.done) >= self.expected

    @property
    def state(self) -> str:
        if self.combined:
            return "combined"
        if self.complete:
            return "complete"
        return "open" if self.expected is None else "in progress"

    def as_dict(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "state": self.state,
            "expected": self.expected,
            "uploaded": sorted(self.uploaded),
            "transcribed": self.transcribed,
            "failed": self.failed,
            "pending": self.pending,
            "combined": self.combined,
            "complete": self.complete,
            **({"failed_reasons": {str(k): v for k, v in self.failed_reasons.items()}}
               if self.failed_reasons else {}),
        }


def session_status(bucket: str, session_id: str, *, with_reasons: bool = False,
                   settings: Settings | None = None) -> SessionStatus:
    """The session's state: three listings, the manifest, and a HEAD of the session json."""
    s = settings or get_settings()
    layout.validate_session_id(session_id)
    chunks_prefix = layout.chunks_prefix(session_id)
    uploaded = {i: k for i, k in _indices(storage.list_keys(bucket, chunks_prefix, settings=s), chunks_prefix).items()
                if k.rsplit(".", 1)[-1].lower() in layout.AUDIO_EXTENSIONS}
    tprefix = layout.transcripts_prefix(session_id)
    transcribed = sorted(_indices(storage.list_keys(bucket, tprefix, settings=s), tprefix))
    fprefix = layout.failed_prefix(session_id)
    failed = sorted(set(_indices(storage.list_keys(bucket, fprefix, settings=s), fprefix)) - set(transcribed))
    status = SessionStatus(
        session_id=session_id,
        manifest=load_manifest(bucket, session_id, settings=s),
        uploaded=uploaded,
        transcribed=transcribed,
        failed=failed,
        combined=storage.exists(bucket, layout.session_transcript_key(session_id, "json"), settings=s),
    )
    if with_reasons:
        for i in failed:
            record = read_failed_record(bucket, session_id, i, settings=s)
            status.failed_reasons[i] = f"{record.error}: {record.reason}" if record else "record vanished"
    return status


def list_sessions(bucket: str, *, settings: Settings | None = None) -> list[str]:
    """Every session id with anything uploaded under `sessions/`."""
    ids = []
    for prefix in storage.list_prefixes(bucket, "sessions/", settings=settings):
        session_id = prefix[len("sessions/"):].rstrip("/")
        try:
            ids.append(layout.validate_session_id(session_id))
        except InvalidKeyError:
            log.warning("ignoring an invalid session folder %r", prefix[:200])
    return sorted(ids)


def read_failed_record(bucket: str, session_id: str, index: int, *,
                       settings: Settings | None = None) -> FailedChunk | None:
    try:
        return FailedChunk.model_validate(
            storage.get_json(bucket, layout.failed_key(session_id, index), settings=settings))
    except NotFoundError:
        return None


def failed_record_is_current(bucket: str, chunk: layout.ChunkKey, *, settings: Settings | None = None) -> bool:
    """A failed record newer than the chunk's audio: this exact upload already failed.

    Tells a duplicate delivery or event of a bad upload (nothing to do: no second dead letter) from
    a re-uploaded chunk, which is newer than its failed record and is tried again.
    """
    record = read_failed_record(bucket, chunk.session_id, chunk.index, settings=settings)
    if record is None:
        return False
    try:
        modified = storage.s3_client(settings).head_object(Bucket=bucket, Key=chunk.key)["LastModified"]
    except Exception:  # gone or unreadable: whoever tries it next says which, with a reason
        return False
    return record.created_at >= modified


def record_failure(bucket: str, chunk: layout.ChunkKey, record: FailedChunk, *, replace: bool = False,
                   settings: Settings | None = None) -> bool:
    """Write the chunk's failed record; True when this call recorded this upload's failure first.

    Duplicate deliveries and events of one bad upload race here: the first write wins, and only its
    writer sends the dead letter. A stale record (the chunk was uploaded again since) is replaced, and
    so is any record with `replace` (a forced replay that failed again needs its new dead letter).
    """
    body = record.model_dump_json().encode()
    if not replace:
        if storage.put_json(bucket, chunk.failed_key, body, if_absent=True, settings=settings):
            return True
        if failed_record_is_current(bucket, chunk, settings=settings):
            return False
    storage.put_json(bucket, chunk.failed_key, body, settings=settings)
    return True


def stored_session_transcript(bucket: str, session_id: str, *,
                              settings: Settings | None = None) -> SessionTranscript | None:
    try:
        data = storage.get_json(bucket, layout.session_transcript_key(session_id, "json"), settings=settings)
    except NotFoundError:
        return None
    return SessionTranscript.model_validate(data)


def should_combine(bucket: str, session_id: str, *, status: SessionStatus | None = None,
                   settings: Settings | None = None) -> bool:
    """The session-completion check: True when the session should be combined now.

    That is when the manifest gives `total_chunks`, that many chunks are transcribed or failed,
    and there is no session transcript yet, or the stored one is missing a chunk that has been
    transcribed since (a dead letter replayed after the session was combined as partial).
    Cheap to call after every chunk: without a manifest it stops after one GET.
    """
    s = settings or get_settings()
    if status is None:
        if load_manifest(bucket, session_id, settings=s) is None:
            return False
        status = session_status(bucket, session_id, settings=s)
    if not status.complete:
        return False
    if not status.combined:
        return True
    return _outdated(bucket, session_id, status, settings=s)


def _outdated(bucket: str, session_id: str, status: SessionStatus, *, settings: Settings) -> bool:
    stored = stored_session_transcript(bucket, session_id, settings=settings)
    if stored is None:
        return True
    have = {c.index for c in stored.chunks if c.status == "transcribed"}
    return not set(status.transcribed) <= have


def build_session_transcript(bucket: str, session_id: str, *,
                             settings: Settings | None = None) -> SessionTranscript:
    """The session transcript from the manifest, the chunk transcripts and the failed records.

    A failed chunk becomes a marked gap and makes the session `partial` (see `combine_chunks`).
    """
    s = settings or get_settings()
    status = session_status(bucket, session_id, settings=s)
    parts: list[ChunkTranscript | FailedChunk] = []
    for i in status.transcribed:
        data = storage.get_json(bucket, layout.chunk_transcript_key(session_id, i), settings=s)
        parts.append(ChunkTranscript.model_validate(data))
    for i in status.failed:
        record = read_failed_record(bucket, session_id, i, settings=s)
        if record is not None:
            parts.append(record)
    transcript = combine_chunks(session_id, parts, status.manifest)
    # The one place for steps on the combined transcript (e.g. boundary repair, which reads the
    # chunk audio from `status.uploaded`): each takes and returns a SessionTranscript.
    if s.boundary_repair:  # BOUNDARY_REPAIR: re-transcribe a window around each cut (transcription/repair.py)
        from transcription.options import TranscribeOptions
        from transcription.repair import repair_from_s3

        options = status.manifest.apply(TranscribeOptions()) if status.manifest else None
        transcript = repair_from_s3(bucket, transcript, options, keys=status.uploaded, settings=s)
    return transcript


def write_session_transcript(bucket: str, transcript: SessionTranscript, *, replace: bool = False,
                             settings: Settings | None = None) -> bool:
    """Write every format; True if this call wrote the json (the "it exists" signal).

    Each object is written with `If-None-Match: *`, json last, so a duplicate combine can never
    overwrite a session transcript and a crash half-way leaves no json. `replace=True` (only under
    the combine lock) overwrites, to bring a partial transcript up to date after a replay.
    """
    s = settings or get_settings()
    written = False
    for fmt in WRITE_ORDER:
        key = layout.session_transcript_key(transcript.session_id, fmt)
        written = storage.put_bytes(bucket, key, render(transcript, fmt).encode(), content_type=MEDIA_TYPES[fmt],
                                    if_absent=not replace, settings=s)
    if not written:
        log.info("session_write_refused session=%s (a session transcript exists)", transcript.session_id)
    return written
