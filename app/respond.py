"""What the transcribe routes share: reading an upload, rendering a transcript, documenting errors."""

from __future__ import annotations

from typing import Any

from fastapi import Request, UploadFile
from fastapi.responses import JSONResponse, Response

from app.errors import TooLarge
from app.schemas import ErrorResponse
from app.state import Server
from transcription.formats import MEDIA_TYPES, render
from transcription.layout import AUDIO_EXTENSIONS
from transcription.transcript import ChunkTranscript


def server_of(request: Request) -> Server:
    return request.app.state.server


def upload_bytes(server: Server, file: UploadFile) -> bytes:
    """The uploaded file's bytes; 413 over `MAX_UPLOAD_MB`. Called inside the inference slot, so
    only `SERVER_CAPACITY` uploads are in memory at once (the others wait spooled on disk)."""
    limit = server.settings.max_upload_mb << 20
    file.file.seek(0)
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"upload is over the limit of {server.settings.max_upload_mb} MB")
    return data


def transcript_response(transcript: ChunkTranscript, fmt: str, headers: dict[str, str] | None = None) -> Response:
    """`json` is the project's chunk transcript; other formats are rendered by the core."""
    if fmt == "json":
        return JSONResponse(transcript.model_dump(mode="json"), headers=headers)
    return Response(render(transcript, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)


def counted(server: Server, transcript: ChunkTranscript, route: str) -> ChunkTranscript:
    server.metrics.audio_seconds.inc(transcript.duration)
    server.metrics.transcripts.labels(route).inc()
    return transcript


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": ErrorResponse, "description": description}
    if headers:
        doc["headers"] = headers
    return doc


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "string"}}}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: _error("missing or invalid API key")}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("malformed request (e.g. a broken multipart body)"),
    **UNAUTHORIZED,
    413: _error("body, upload or download over its size limit"),
    422: _error("invalid request, options, key or audio (the reason says which)"),
    500: _error("server-side error (e.g. a model the request needs is missing)"),
    503: _error("the model is loading, every inference slot is busy, or S3 failed: retry later", RETRY_AFTER),
}
AUDIO_FILE = f"audio: {', '.join(AUDIO_EXTENSIONS)} (the container is sniffed from the bytes)"
AUDIO_ERRORS = {**ERRORS, 415: _error(f"not a supported audio format ({', '.join(AUDIO_EXTENSIONS)})")}
TEXT_CONTENT = {media.split(";")[0]: {"schema": {"type": "string"}} for fmt, media in MEDIA_TYPES.items()
                if fmt not in ("json", "verbose_json")}
