"""`POST /v1/audio/transcriptions`: OpenAI's transcription API, so the `openai` client works unchanged."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from app.chunking import bracketed, vad_options
from app.respond import AUDIO_ERRORS, AUDIO_FILE, TEXT_CONTENT, counted, server_of, transcript_response, upload_bytes
from app.schemas import OpenAIResponseFormat, build_options
from transcription.chunk import transcribe_named
from transcription.errors import SpeakerReferenceError
from transcription.speakers.diarized import diarized_json
from transcription.speakers.names import request_clips

router = APIRouter(tags=["openai"])


@router.post("/v1/audio/transcriptions", response_class=Response, responses={
    200: {"description": "json: {text}; verbose_json: segments (and words); diarized_json: segments with speakers; "
                         "text, srt, vtt as text", "content": {
        "application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/TranscriptionText"},
                                                  {"$ref": "#/components/schemas/VerboseTranscription"},
                                                  {"$ref": "#/components/schemas/DiarizedTranscription"}]}},
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
    known_speaker_names: Annotated[list[str] | None, Form(alias="known_speaker_names[]", description=(
        "names of known speakers (up to 4; diarized_json only), one per reference clip"))] = None,
    known_speaker_references: Annotated[list[str] | None, Form(alias="known_speaker_references[]", description=(
        "a clip of each known speaker talking alone, 2 to 10 s, as a data URL (data:audio/wav;base64,...)"))]
    = None,
    chunking_strategy: Annotated[str | None, Form(max_length=500, description=(
        '"auto" (the usual decode) or a server_vad object as JSON, {"type": "server_vad", "prefix_padding_ms", '
        '"silence_duration_ms", "threshold"}: decode only where voice activity detection hears speech. The '
        "`openai` client sends the object as chunking_strategy[type], chunking_strategy[threshold], ..."))] = None,
) -> Response:
    """Transcribe an uploaded file, answering as OpenAI's API does. `diarized_json` gives speakers (the
    offline diarizer whatever `DIARIZE` says), named where a known speaker's reference clip matches."""
    server = server_of(request)
    diarized = response_format == "diarized_json"
    if (known_speaker_names or known_speaker_references) and not diarized:
        raise SpeakerReferenceError("known_speaker_names[] and known_speaker_references[] need "
                                    "response_format=diarized_json")
    clips = request_clips(known_speaker_names, known_speaker_references)  # a bad one is a 400 before any work
    vad = vad_options(chunking_strategy, bracketed((await request.form()).multi_items()))  # likewise
    words = "word" in (timestamp_granularities or [])
    options = build_options(language=language or None, prompt=prompt or None, temperature=temperature,
                            word_timestamps=words, diarize=True if diarized else None, vad=vad)
    t = await server.infer(lambda eng: transcribe_named(upload_bytes(server, file), options, clips, engine=eng,
                                                        settings=server.settings))
    counted(server, t, "/v1/audio/transcriptions")
    if diarized:
        return JSONResponse(diarized_json(t))
    if response_format == "json":
        return JSONResponse({"text": t.text})
    return transcript_response(t, response_format)
