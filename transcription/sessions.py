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

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from transcription import layout, storage
from transcription.combine import combine_chunks
from transcription.errors import InvalidKeyError, NotFoundError, TranscriptionError
from transcription.formats import MEDIA_TYPES, render
from transcription.manifest import Manifest, load_manifest
from transcription.options import TranscribeOptions
from transcription.settings import Settings, get_settings
from transcription.transcript import ChunkTranscript, FailedChunk, SessionTranscript

if TYPE_CHECKING:
    from transcription.speakers.names import Reference

log = logging.getLogger(__name__)

# json last: its existence says every other format was written before it
WRITE_ORDER = ("text", "srt", "vtt", "tsv", "verbose_json", "json")


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
    uploaded_at: dict[int, datetime] = field(default_factory=dict)  # index -> when its audio was last written
    # pending pieces of a recorder's stream whose first chunk (the header) is not uploaded yet: they
    # retry, then wait for the sweeper; never failed for it (filled when asked for, like failed_reasons)
    waiting: dict[int, str] = field(default_factory=dict)
    transcript_etags: dict[int, str] = field(default_factory=dict)  # index -> its chunk transcript's ETag

    @property
    def versions(self) -> str:
        """A digest of which chunk transcripts there are: a replaced one (a re-uploaded chunk) changes it."""
        listed = ",".join(f"{i}={e}" for i, e in sorted(self.transcript_etags.items()))
        return hashlib.sha256(listed.encode()).hexdigest()[:16]

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
        if self.manifest is not None and self.manifest.invalid:
            return "manifest invalid"  # cannot complete until the recorder uploads a valid one
        if self.waiting:
            return "waiting for stream header"
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
            **({"manifest_invalid": self.manifest.invalid} if self.manifest and self.manifest.invalid else {}),
            **({"manifest_problems": self.manifest.problems} if self.manifest and self.manifest.problems else {}),
            **({"failed_reasons": {str(k): v for k, v in self.failed_reasons.items()}}
               if self.failed_reasons else {}),
            **({"waiting": {str(k): v for k, v in self.waiting.items()}} if self.waiting else {}),
        }


def session_status(bucket: str, session_id: str, *, with_reasons: bool = False,
                   settings: Settings | None = None) -> SessionStatus:
    """The session's state: three listings, the manifest, and a HEAD of the session json."""
    s = settings or get_settings()
    layout.validate_session_id(session_id)
    uploaded: dict[int, str] = {}
    times = dict(storage.list_objects(bucket, layout.chunks_prefix(session_id), settings=s))
    for chunk in layout.chunk_keys(times):
        uploaded.setdefault(chunk.index, chunk.key)  # the first key listed for an index is the chunk
    etags = dict(storage.list_etags(bucket, layout.transcripts_prefix(session_id), settings=s))
    transcript_etags = {d.index: etags[d.key] for d in layout.done_keys(etags)}
    transcribed = sorted(transcript_etags)
    failed = sorted({d.index for d in layout.done_keys(
        storage.list_keys(bucket, layout.failed_prefix(session_id), settings=s))} - set(transcribed))
    status = SessionStatus(
        session_id=session_id,
        manifest=load_manifest(bucket, session_id, settings=s),
        uploaded=uploaded,
        transcribed=transcribed,
        failed=failed,
        combined=storage.exists(bucket, layout.session_transcript_key(session_id, "json"), settings=s),
        uploaded_at={i: times[k] for i, k in uploaded.items()},
        transcript_etags=transcript_etags,
    )
    if with_reasons:
        for i in failed:
            record = read_failed_record(bucket, session_id, i, settings=s)
            status.failed_reasons[i] = f"{record.error}: {record.reason}" if record else "record vanished"
        if status.pending:
            from transcription.streams import waiting_for_header

            status.waiting = waiting_for_header(bucket, session_id, uploaded, status.pending, settings=s)
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
        modified = storage.last_modified(bucket, chunk.key, settings=settings)
    except TranscriptionError:  # gone or unreadable: whoever tries it next says which, with a reason
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
    and there is no session transcript yet, or the stored one marks a chunk failed or missing that
    has been transcribed since (a dead letter replayed after the session was combined as partial),
    or was combined from a chunk transcript replaced since (a re-uploaded chunk, `versions.py`).
    A chunk that arrives after the combine and was not in it (more chunks than `total_chunks`)
    changes nothing: the session is combined once, and `sessions status` lists the chunk.
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
    gaps = {c.index for c in stored.chunks if c.status != "transcribed"}  # failed or missing when combined
    late = set(status.transcribed) - {c.index for c in stored.chunks}
    if late:
        log.warning("late_chunks_not_combined session=%s chunks=%s (more than total_chunks=%s)", session_id,
                    sorted(late)[:20], status.expected)
    replaced = {c.index for c in stored.chunks if c.status == "transcribed" and c.transcript_etag is not None
                and status.transcript_etags.get(c.index, c.transcript_etag) != c.transcript_etag}
    if replaced:
        log.info("session_outdated session=%s replaced_chunks=%s", session_id, sorted(replaced)[:20])
    return bool(gaps & set(status.transcribed)) or bool(replaced)


def build_session_transcript(bucket: str, session_id: str, *,
                             settings: Settings | None = None) -> SessionTranscript:
    """The session transcript from the manifest, the chunk transcripts and the failed records.

    A failed chunk becomes a marked gap and makes the session `partial` (see `combine_chunks`).
    """
    s = settings or get_settings()
    status = session_status(bucket, session_id, settings=s)
    parts: list[ChunkTranscript | FailedChunk] = []
    read: dict[int, tuple[ChunkTranscript, str | None]] = {}  # index -> the transcript and its ETag, as read
    for i in status.transcribed:
        key = layout.chunk_transcript_key(session_id, i)
        data, version = storage.get_version(bucket, key, max_bytes=storage.MAX_JSON_BYTES, settings=s)
        chunk = ChunkTranscript.model_validate(storage.parse_json(data, f"s3://{bucket}/{key}"))
        read[i] = chunk, version.etag
        parts.append(chunk)
    for i in status.failed:
        record = read_failed_record(bucket, session_id, i, settings=s)
        if record is not None:
            parts.append(record)
    references: list[Reference] = []
    problems: list[str] = []
    if status.manifest and status.manifest.speakers:  # known speakers: each clip read once, here
        # imported here: embedding a clip needs torch and numpy, and the router imports this module
        from transcription.speakers.names import session_references

        references, problems = session_references(bucket, session_id, status.manifest.speakers, settings=s)
    transcript = combine_chunks(session_id, parts, status.manifest, settings=s, references=references)
    if problems:  # a clip that cannot be used is named, never a reason to fail the session
        transcript.speaker_problems = problems + (transcript.speaker_problems or [])
    for entry in transcript.chunks:  # which versions it was made from (issue 14, hole 9)
        if entry.status == "transcribed" and entry.index in read:
            chunk, etag = read[entry.index]
            entry.source_etag, entry.source_version = chunk.source_etag, chunk.source_version
            entry.transcript_etag = etag
    # The one place for steps on the combined transcript (e.g. boundary repair, which reads the
    # chunk audio from `status.uploaded`): each takes and returns a SessionTranscript.
    if s.boundary_repair:  # BOUNDARY_REPAIR: re-transcribe a window around each cut (transcription/repair.py)
        # imported here: repair loads numpy and the engine, and the router imports this module
        from transcription.repair import repair_from_s3

        options = status.manifest.apply(TranscribeOptions()) if status.manifest else TranscribeOptions()
        # windows are never diarized on their own: the session's turns label the words they bring
        options = options.model_copy(update={"diarize": False})
        transcript = repair_from_s3(bucket, transcript, options, keys=status.uploaded, settings=s)
        if transcript.turns:  # words a repair transcribed again have no speaker yet: the session's turns say
            from transcription.speakers.label import label_segments

            transcript.segments = label_segments(transcript.segments, transcript.turns, only_missing=True)
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
