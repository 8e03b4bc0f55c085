"""`POST /v1/audio/transcriptions`: OpenAI's transcription API, so the `openai` client works unchanged."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from app.respond import AUDIO_ERRORS, AUDIO_FILE, TEXT_CONTENT, counted, server_of, transcript_response, upload_bytes
from app.schemas import OpenAIResponseFormat, build_options
from transcription.chunk import transcribe_audio

router = APIRouter(tags=["openai"])


@router.post("/v1/audio/transcriptions", response_class=Response, responses={
    200: {"description": "json: {text}; verbose_json: segments (and words); text, srt, vtt as text", "content": {
        "application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/TranscriptionText"},
                                                  {"$ref": "#/components/schemas/VerboseTranscription"}]}},
        **TEXT_CONTENT,
    }},
    **AUDIO_ERRORS,
})
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description=AUDIO_FILE)],
    model: Annotated[str, Form(max_length=200, description="accepted for compatibility; the server's MODEL runs")]
    = "whisper-1",
    language: Annotated[str | None, Form(max_length=16)] = None,
    prompt: Annotated[str | None, Form(max_length=2000)] = None,
    response_format: Annotated[OpenAIResponseFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
    timestamp_granularities: Annotated[list[Literal["segment", "word"]] | None,
                                       Form(alias="timestamp_granularities[]")] = None,
) -> Response:
    """Transcribe an uploaded file, answering as OpenAI's API does."""
    server = server_of(request)
    words = "word" in (timestamp_granularities or [])
    options = build_options(language=language or None, prompt=prompt or None, temperature=temperature,
                            word_timestamps=words)
    t = await server.infer(lambda eng: transcribe_audio(upload_bytes(server, file), options, engine=eng,
                                                        settings=server.settings))
    counted(server, t, "/v1/audio/transcriptions")
    if response_format == "json":
        return JSONResponse({"text": t.text})
    return transcript_response(t, response_format)
