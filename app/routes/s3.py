"""`POST /transcribe-s3`: the router's call. Reads the chunk from S3, writes its transcript once."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse

from app.completion import after_chunk_transcribed
from app.respond import AUDIO_ERRORS, counted, server_of
from app.schemas import ErrorResponse, TranscribeS3Request
from transcription import layout
from transcription.chunk import transcribe_s3_chunk
from transcription.transcript import ChunkTranscript

router = APIRouter(tags=["transcribe"])

HEADERS = {
    "X-Transcript-Written": {"description": "true if this call stored the transcript", "schema": {"type": "string"}},
    "X-Transcript-Skipped": {"description": "true if a stored transcript was returned as it was",
                             "schema": {"type": "string"}},
}


@router.post("/transcribe-s3", response_model=ChunkTranscript, responses={
    200: {"description": "the chunk transcript (also stored in S3)", "headers": HEADERS},
    403: {"model": ErrorResponse, "description": "outside the configured bucket, input prefixes or output prefix"},
    404: {"model": ErrorResponse, "description": "no such object"},
    **AUDIO_ERRORS,
})
async def transcribe_s3(request: Request, body: TranscribeS3Request, background: BackgroundTasks) -> JSONResponse:
    """Transcribe `s3_input_path`. For `sessions/<id>/chunks/<n>.<ext>` the transcript is written to
    `transcripts/<id>/chunks/<n>.json` (or `s3_output_path`) with `If-None-Match: *`; an existing
    transcript is returned, not recomputed. Only `S3_BUCKET` is read and written: chunk keys and
    `S3_INPUT_PREFIXES` in, the chunk's own place or `S3_OUTPUT_PREFIX` out (403 otherwise).
    4xx: bad audio or key (do not retry); 5xx: retry."""
    server = server_of(request)
    bucket, key = layout.parse_s3_uri(body.s3_input_path)
    output = layout.parse_s3_uri(body.s3_output_path) if body.s3_output_path else None
    s = server.settings
    layout.check_s3_access((bucket, key), output, bucket=s.s3_bucket, input_prefixes=s.s3_input_prefixes,
                           output_prefix=s.s3_output_prefix)
    options = body.options()
    result = await server.infer(lambda eng: transcribe_s3_chunk(
        bucket, key, options, output=output, engine=eng, settings=server.settings, via="direct"))
    if not result.skipped:
        counted(server, result.transcript, "/transcribe-s3")
    if layout.classify_key(key)[0] == "chunk":
        background.add_task(after_chunk_transcribed, bucket, layout.parse_chunk_key(key), server.settings)
    return JSONResponse(result.transcript.model_dump(mode="json"), headers={
        "X-Transcript-Written": str(result.written).lower(), "X-Transcript-Skipped": str(result.skipped).lower()})
