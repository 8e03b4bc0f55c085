"""`POST /transcribe` (multipart upload) and `POST /transcribe-url` (the server fetches the audio)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from app.fetch import fetch_url
from app.respond import AUDIO_ERRORS, AUDIO_FILE, TEXT_CONTENT, counted, server_of, transcript_response, upload_bytes
from app.schemas import ResponseFormat, TranscribeUrlRequest, build_options
from transcription.chunk import transcribe_audio

router = APIRouter(tags=["transcribe"])

RESPONSES = {
    200: {"description": "the transcript in the requested format", "content": {
        "application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/ChunkTranscript"},
                                                  {"$ref": "#/components/schemas/VerboseTranscription"}]}},
        **TEXT_CONTENT,
    }},
    **AUDIO_ERRORS,
}  # the referenced models are added to the schema in main.py


@router.post("/transcribe", response_class=Response, responses=RESPONSES)
async def transcribe_upload(
    request: Request,
    file: Annotated[UploadFile, File(description=AUDIO_FILE)],
    language: Annotated[str | None, Form(max_length=16, description="ISO 639-1 code; detected if empty")] = None,
    prompt: Annotated[str | None, Form(max_length=2000, description="names and terms to bias the model")] = None,
    word_timestamps: Annotated[bool, Form()] = False,
    response_format: Annotated[ResponseFormat, Form()] = "json",
) -> Response:
    """Transcribe an uploaded file."""
    server = server_of(request)
    options = build_options(language=language or None, prompt=prompt or None, word_timestamps=word_timestamps)
    t = await server.infer(lambda eng: transcribe_audio(upload_bytes(server, file), options, engine=eng,
                                                        settings=server.settings))
    return transcript_response(counted(server, t, "/transcribe"), response_format)


@router.post("/transcribe-url", response_class=Response, responses=RESPONSES)
async def transcribe_url(request: Request, body: TranscribeUrlRequest) -> Response:
    """Fetch audio from a public http(s) URL and transcribe it."""
    server = server_of(request)
    s = server.settings
    server.engines.require()  # no download while the model is not there to use it
    data = await server.fetch(lambda: fetch_url(
        body.url, max_bytes=s.max_upload_mb << 20, timeout_s=s.url_fetch_timeout_s,
        allowlist=s.url_fetch_allowlist, max_redirects=s.url_fetch_max_redirects))
    options = body.options()
    t = await server.infer(lambda eng: transcribe_audio(data, options, engine=eng, settings=s))
    return transcript_response(counted(server, t, "/transcribe-url"), body.response_format)
