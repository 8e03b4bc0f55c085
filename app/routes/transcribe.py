"""`POST /transcribe` (multipart upload) and `POST /transcribe-url` (the server fetches the audio)."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from app.fetch import fetch_url
from app.respond import AUDIO_ERRORS, TEXT_CONTENT, counted, read_upload, server_of, transcript_response
from app.schemas import ResponseFormat, TranscribeUrlRequest, VerboseTranscription, build_options
from transcription.chunk import transcribe_chunk
from transcription.transcript import ChunkTranscript

router = APIRouter(tags=["transcribe"])

RESPONSES = {
    200: {"description": "the transcript in the requested format", "content": {
        "application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/ChunkTranscript"},
                                                  {"$ref": "#/components/schemas/VerboseTranscription"}]}},
        **TEXT_CONTENT,
    }},
    **AUDIO_ERRORS,
}
_EXTRA_MODELS = (ChunkTranscript, VerboseTranscription)  # referenced above; registered in main.py


@router.post("/transcribe", response_class=Response, responses=RESPONSES)
async def transcribe_upload(
    request: Request,
    file: Annotated[UploadFile, File(description="audio: wav, mp3, flac, m4a, ogg or webm")],
    language: Annotated[str | None, Form(max_length=16, description="ISO 639-1 code; detected if empty")] = None,
    prompt: Annotated[str | None, Form(max_length=2000, description="names and terms to bias the model")] = None,
    word_timestamps: Annotated[bool, Form()] = False,
    response_format: Annotated[ResponseFormat, Form()] = "json",
) -> Response:
    """Transcribe an uploaded file."""
    server = server_of(request)
    options = build_options(language=language or None, prompt=prompt or None, word_timestamps=word_timestamps)
    data = await read_upload(server, file)
    t = await server.infer(lambda eng: transcribe_chunk(data, options, engine=eng, settings=server.settings))
    return transcript_response(counted(server, t, "/transcribe"), response_format)


@router.post("/transcribe-url", response_class=Response, responses=RESPONSES)
async def transcribe_url(request: Request, body: TranscribeUrlRequest) -> Response:
    """Fetch audio from a public http(s) URL and transcribe it."""
    server = server_of(request)
    s = server.settings
    server.engines.require()  # no download while the model is not there to use it
    data = await anyio.to_thread.run_sync(lambda: fetch_url(
        body.url, max_bytes=s.max_upload_mb << 20, timeout_s=s.url_fetch_timeout_s,
        allowlist=s.url_fetch_allowlist, max_redirects=s.url_fetch_max_redirects))
    options = body.options()
    t = await server.infer(lambda eng: transcribe_chunk(data, options, engine=eng, settings=s))
    return transcript_response(counted(server, t, "/transcribe-url"), body.response_format)
