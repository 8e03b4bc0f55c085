"""`GET /sessions`, `GET /sessions/{id}`, `GET /sessions/{id}/transcript`: sessions as an API.

Thin: the report is the core's (`transcription.session_report`, the same one `stt-router sessions
status` prints); whether a combine is running is its Redis lease (`tasks.locks`). Sync handlers, so
the S3 requests run in FastAPI's thread pool, off the event loop.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from app.errors import error_response
from app.respond import UNAUTHORIZED, _error, server_of
from tasks import locks
from transcription import layout, storage
from transcription.errors import NotFoundError
from transcription.formats import MEDIA_TYPES
from transcription.session_report import SessionPage, SessionReport, session_page, session_report
from transcription.session_report import State as StateName
from transcription.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["sessions"])

SESSION_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SessionId = Annotated[str, Path(pattern=SESSION_ID, max_length=128, examples=["meet1"],
                                description="the session id of `sessions/<id>/chunks/...`")]
TranscriptFormat = Literal["json", "verbose_json", "txt", "text", "srt", "vtt", "tsv"]

ERRORS: dict[int | str, dict[str, Any]] = {
    **UNAUTHORIZED,
    422: _error("invalid session id, cursor or parameter"),
    503: _error("S3 failed: retry later"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _error("no such session")}


def combining(settings: Settings, bucket: str, session_id: str) -> bool:
    """A combine of the session holds its lease now; False when Redis cannot say (logged)."""
    try:
        return locks.is_held(locks.combine_name(bucket, session_id), settings)
    except Exception as e:
        log.warning("combine lease unknown for session %s: %s", session_id, e)
        return False


@router.get("/sessions/{session_id}", response_model=SessionReport, responses={**NOT_FOUND, **ERRORS})
def get_session(request: Request, session_id: SessionId,
                chunks: Annotated[bool, Query(description="also list each chunk: status, path, times")] = False,
                ) -> JSONResponse:
    """The session's state (open, in progress, manifest invalid, complete, combining, combined, partial),
    its chunks transcribed / failed (with reasons) / queued / missing, progress and times."""
    s = server_of(request).settings
    report = session_report(s.s3_bucket, session_id, combining=combining(s, s.s3_bucket, session_id),
                            chunks=chunks, settings=s)
    return JSONResponse(report.model_dump(mode="json"))


@router.get("/sessions/{session_id}/transcript", response_class=Response, responses={
    200: {"description": "the session transcript in the requested format", "content": {
        "application/json": {"schema": {"type": "object"}},
        **{media.split(";")[0]: {"schema": {"type": "string"}} for fmt, media in MEDIA_TYPES.items()
           if fmt not in ("json", "verbose_json")},
    }},
    **NOT_FOUND,
    409: _error("the session is not combined yet (the reason gives its state and progress)"),
    **ERRORS,
})
def get_session_transcript(
    request: Request, session_id: SessionId,
    format: Annotated[TranscriptFormat, Query(description="json, verbose_json, txt (or text), srt, vtt, tsv")] = "json",
) -> Response:
    """The combined session transcript, as written when the session was combined (409 until then)."""
    s = server_of(request).settings
    fmt = "text" if format == "txt" else format
    try:
        body = storage.get_bytes(s.s3_bucket, layout.session_transcript_key(session_id, fmt), settings=s)
    except NotFoundError:
        report = session_report(s.s3_bucket, session_id, combining=combining(s, s.s3_bucket, session_id),
                                settings=s)  # 404 when there is no such session at all
        done = report.counts.transcribed + report.counts.failed
        of = report.total_chunks if report.total_chunks is not None else "?"
        return error_response(request.url.path, 409, "not_ready",
                              f"session {session_id} is not combined yet (state: {report.state}; "
                              f"{done} of {of} chunks done)")
    return Response(body, media_type=MEDIA_TYPES[fmt])


@router.get("/sessions", response_model=SessionPage, responses=ERRORS)
def list_sessions(
    request: Request,
    state: Annotated[StateName | None, Query(description="only sessions in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="sessions per page")] = 50,
    cursor: Annotated[str | None, Query(pattern=SESSION_ID, max_length=128,
                                        description="`next_cursor` of the previous page")] = None,
) -> JSONResponse:
    """Sessions in id order, a page at a time. A page looks at no more than 500 sessions, so with a
    rare `state` it may hold fewer than `limit` and still give a `next_cursor`."""
    s = server_of(request).settings
    page = session_page(s.s3_bucket, state=state, limit=limit, cursor=cursor,
                        combining=lambda sid: combining(s, s.s3_bucket, sid), settings=s)
    return JSONResponse(page.model_dump(mode="json"))
