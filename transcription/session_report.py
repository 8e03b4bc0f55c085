"""One report of a session, for every reader: the server's `/sessions` routes and `stt-router sessions`.

Built from `sessions.session_status` (three listings, the manifest, a HEAD of the session json),
plus the stored session transcript once it exists (is it partial, when was it written) and, when
asked for, each chunk transcript (which path wrote it and when). Whether a combine is running is
the task system's knowledge (a Redis lease): the caller says so with `combining`.

States, in the order a session goes through them:

    open              no `total_chunks` in a manifest yet: the recorder may send more
    in progress       `total_chunks` known, some chunks neither transcribed nor failed
    manifest invalid  the manifest cannot complete the session until the recorder fixes it
    waiting for stream header
                      a queued chunk continues a recorder's stream whose first chunk (holding the
                      header) is not uploaded yet (`transcription/streams.py`): it waits, never fails
    complete          every chunk transcribed or failed: the combine is due
    combining         a combine of the session is running now
    combined          the session transcript exists, every chunk in it
    partial           the session transcript exists, with failed or missing chunks marked as gaps
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import islice
from typing import Literal

from pydantic import BaseModel, Field

from transcription import layout, sessions, storage
from transcription.errors import NotFoundError
from transcription.settings import Settings, get_settings
from transcription.streams import waiting_for_header
from transcription.transcript import ChunkTranscript, FailedChunk

State = Literal["open", "in progress", "manifest invalid", "waiting for stream header", "complete", "combining",
                "combined", "partial"]
STATES: tuple[str, ...] = State.__args__  # type: ignore[attr-defined]
ChunkState = Literal["transcribed", "failed", "queued", "missing"]
PARALLEL = 8  # S3 requests in flight at once for one page or one chunk listing


class FailedChunkInfo(BaseModel):
    index: int
    error: str = Field(description="the error kind, e.g. bad_audio")
    reason: str


class ChunkDetail(BaseModel):
    """One chunk of the session (with `chunks=true`)."""

    index: int
    status: ChunkState
    audio_key: str | None = Field(None, description="the uploaded audio, if any")
    uploaded_at: datetime | None = None
    via: Literal["direct", "queued"] | None = Field(None, description=(
        "the path that transcribed it: `direct` (the server, called by the router) or `queued` (a GPU worker)"))
    transcribed_at: datetime | None = None
    processing_s: float | None = None
    reason: str | None = Field(None, description="why it failed")


class ChunkCounts(BaseModel):
    uploaded: int
    transcribed: int
    failed: int
    queued: int = Field(description="uploaded, neither transcribed nor failed yet: queued or running")
    missing: int = Field(description="below `total_chunks`, never uploaded")


class SessionReport(BaseModel):
    """A session's state, progress and results."""

    session_id: str
    state: State
    total_chunks: int | None = Field(description="from the manifest; null until the recorder says the session ended")
    progress: float | None = Field(description="chunks transcribed or failed / total_chunks (null while open)")
    counts: ChunkCounts
    transcribed: list[int]
    failed: list[FailedChunkInfo]
    queued: list[int]
    waiting: dict[int, str] = Field(default_factory=dict, description=(
        "queued chunks that wait for their stream's first chunk (a recorder's timeslices), with the reason"))
    missing: list[int]
    manifest: bool = Field(description="a manifest.json exists")
    manifest_invalid: str | None = None
    manifest_problems: list[str] = Field(default_factory=list)
    speaker_problems: list[str] = Field(default_factory=list, description=(
        "known speakers (the manifest's `speakers`) whose reference clip could not be used, with the reason "
        "(found when the session is combined; the session is combined without their names)"))
    first_upload_at: datetime | None = None
    last_upload_at: datetime | None = None
    combined_at: datetime | None = Field(None, description="when the session transcript was written")
    partial: bool | None = Field(None, description="the session transcript marks failed or missing chunks")
    transcript_keys: dict[str, str] = Field(default_factory=dict, description=(
        "format -> S3 key of the session transcript, once combined"))
    chunks: list[ChunkDetail] | None = Field(None, description="each chunk (only when asked for)")


class SessionPage(BaseModel):
    """One page of `GET /sessions`."""

    sessions: list[SessionReport]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


def session_exists(status: sessions.SessionStatus) -> bool:
    """Anything of the session in S3: a chunk, a manifest, a transcript or failed record."""
    return bool(status.uploaded or status.manifest is not None or status.transcribed or status.failed
                or status.combined)


def session_report(bucket: str, session_id: str, *, combining: bool = False, chunks: bool = False,
                   streams: bool = True, settings: Settings | None = None) -> SessionReport:
    """The report of one session; `NotFoundError` when nothing of it is in S3, `InvalidKeyError`
    for an id outside the key layout's rules. `streams`: look at the queued chunks' first bytes for
    pieces waiting for their stream's header (a ranged GET each)."""
    s = settings or get_settings()
    status = sessions.session_status(bucket, session_id, with_reasons=False, settings=s)
    if not session_exists(status):
        raise NotFoundError(f"no session {session_id!r}")
    if streams and status.pending and not status.combined:
        status.waiting = waiting_for_header(bucket, session_id, status.uploaded, status.pending, settings=s)
    records = {i: sessions.read_failed_record(bucket, session_id, i, settings=s) for i in status.failed}
    stored = sessions.stored_session_transcript(bucket, session_id, settings=s) if status.combined else None
    expected = status.expected
    done = set(status.done)
    missing = [i for i in range(expected or 0) if i not in status.uploaded and i not in done]
    state: str = status.state
    if combining:
        state = "combining"
    elif stored is not None:
        state = "partial" if stored.partial else "combined"
    elif state not in STATES:
        state = "in progress"
    times = sorted(status.uploaded_at.values())
    details = _chunk_details(bucket, session_id, status, records, missing, s) if chunks else None
    return SessionReport(
        session_id=session_id,
        state=state,
        total_chunks=expected,
        progress=None if not expected else round(min(1.0, len(done) / expected), 4),
        counts=ChunkCounts(uploaded=len(status.uploaded), transcribed=len(status.transcribed),
                           failed=len(status.failed), queued=len(status.pending), missing=len(missing)),
        transcribed=status.transcribed,
        failed=[FailedChunkInfo(index=i, error=r.error if r else "unknown", reason=r.reason if r else "record vanished")
                for i, r in records.items()],
        queued=status.pending,
        waiting=status.waiting,
        missing=missing,
        manifest=status.manifest is not None,
        manifest_invalid=status.manifest.invalid if status.manifest else None,
        manifest_problems=list(status.manifest.problems) if status.manifest else [],
        speaker_problems=list(stored.speaker_problems or []) if stored else [],
        first_upload_at=times[0] if times else None,
        last_upload_at=times[-1] if times else None,
        combined_at=stored.created_at if stored else None,
        partial=stored.partial if stored else None,
        transcript_keys={fmt: layout.session_transcript_key(session_id, fmt) for fmt in layout.SESSION_FORMATS}
        if stored else {},
        chunks=details,
    )


def _chunk_details(bucket: str, session_id: str, status: sessions.SessionStatus,
                   records: dict[int, FailedChunk | None], missing: list[int], s: Settings) -> list[ChunkDetail]:
    def transcribed(i: int) -> ChunkDetail:
        try:
            t = ChunkTranscript.model_validate(
                storage.get_json(bucket, layout.chunk_transcript_key(session_id, i), settings=s))
        except NotFoundError:
            return ChunkDetail(index=i, status="transcribed")
        return ChunkDetail(index=i, status="transcribed", via=t.via, transcribed_at=t.created_at,
                           processing_s=t.processing_s)

    with ThreadPoolExecutor(PARALLEL) as pool:
        out: dict[int, ChunkDetail] = {d.index: d for d in pool.map(transcribed, status.transcribed)}
    for i, r in records.items():
        out[i] = ChunkDetail(index=i, status="failed", reason=f"{r.error}: {r.reason}" if r else "record vanished")
    for i in status.pending:
        out[i] = ChunkDetail(index=i, status="queued")
    for i in missing:
        out[i] = ChunkDetail(index=i, status="missing")
    for i, detail in out.items():
        detail.audio_key = status.uploaded.get(i)
        detail.uploaded_at = status.uploaded_at.get(i)
    return [out[i] for i in sorted(out)]


def session_page(bucket: str, *, state: str | None = None, limit: int = 50, cursor: str | None = None,
                 combining: Callable[[str], bool] = lambda _: False, max_scanned: int = 500,
                 settings: Settings | None = None) -> SessionPage:
    """Sessions in key order after `cursor`, at most `limit`, only those in `state` when given.

    A page looks at no more than `max_scanned` sessions (each is a few S3 requests, made for
    `PARALLEL` sessions at once), so with a rare `state` a page may hold fewer than `limit` and still
    have a `next_cursor`."""
    s = settings or get_settings()
    if cursor is not None:
        layout.validate_session_id(cursor)
    found: list[SessionReport] = []
    last: str | None = None
    scanned = 0
    ids = _ids_after(bucket, cursor, s)

    def one(session_id: str) -> SessionReport | None:
        try:
            return session_report(bucket, session_id, combining=combining(session_id), streams=False,
                                  settings=s)
        except NotFoundError:  # deleted meanwhile
            return None

    more = False  # a session follows the last one looked at
    with ThreadPoolExecutor(PARALLEL) as pool:
        while len(found) < limit and scanned < max_scanned:
            # without a filter every session counts: look at no more than the page still needs
            want = min(PARALLEL * 2, max_scanned - scanned, limit - len(found) if state is None else PARALLEL * 2)
            batch = list(islice(ids, want))
            if not batch:
                break
            for n, (session_id, report) in enumerate(zip(batch, pool.map(one, batch), strict=True)):
                scanned += 1
                last = session_id
                if report is not None and (state is None or report.state == state):
                    found.append(report)
                if len(found) >= limit:
                    more = n + 1 < len(batch)
                    break
        else:  # the page is full or looked at enough: is there anything after it?
            more = more or next(ids, None) is not None
    return SessionPage(sessions=found, next_cursor=last if more else None)


def _ids_after(bucket: str, cursor: str | None, s: Settings) -> Iterator[str]:
    # "<id>0" sorts right after every "<id>/..." key ('0' follows '/'): the page goes on after that session
    start = f"sessions/{cursor}0" if cursor else None
    for prefix in storage.list_prefixes(bucket, "sessions/", start_after=start, settings=s):
        session_id = prefix[len("sessions/"):].rstrip("/")
        try:
            yield layout.validate_session_id(session_id)
        except Exception:  # an invalid folder name: `sessions list` warns about it; skip it here
            continue
