"""The one function that transcribes a chunk, whoever calls it (server, worker, CLI, repair).

`transcribe_chunk` turns audio into a `ChunkTranscript`; `transcribe_s3_chunk` adds the S3 side the
server's `/transcribe-s3` and the queue worker share: read the chunk and its session's manifest,
transcribe, and write the transcript once (a conditional put). With `CHUNK_CONTEXT` on, a session
chunk is prompted with the end of the stored transcript of the nearest earlier chunk, as Whisper
conditions on the previous text over a whole file (`transcription/context.py`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from transcription import layout, storage
from transcription.audio import Audio, decode_audio
from transcription.context import Context, context_failure, with_context
from transcription.engines import Engine, get_engine
from transcription.errors import InvalidKeyError, NotFoundError, TranscriptionError
from transcription.manifest import load_manifest
from transcription.options import TranscribeOptions, check_language
from transcription.settings import Settings, get_settings
from transcription.transcript import ChunkTranscript

log = logging.getLogger(__name__)

AudioSource = bytes | bytearray | memoryview | str | Path | Audio


def load_audio(source: AudioSource, settings: Settings | None = None) -> Audio:
    """Decode with the configured limits (duration, decode time, size)."""
    if isinstance(source, Audio):
        return source
    s = settings or get_settings()
    return decode_audio(
        source, max_seconds=s.max_audio_s, timeout_s=s.decode_timeout_s, max_bytes=s.max_chunk_mb << 20
    )


def transcribe_chunk(
    source: AudioSource,
    options: TranscribeOptions | None = None,
    *,
    chunk: layout.ChunkKey | None = None,
    engine: Engine | None = None,
    settings: Settings | None = None,
    context: Context | None = None,
) -> ChunkTranscript:
    """Transcribe one piece of audio. Raises `AudioError` for bad input, never crashes on it.

    With a `context` (the text spoken before this audio) its end follows `options.prompt` as the
    prompt. An output that looks like a prompted hallucination (a copied context, a repetition
    loop, a segment that is probably not speech) is thrown away and the audio transcribed again
    without the context. `options` of the transcript records `context_from` (the chunk index the
    context came from, -1 for other text before it) and, when it was dropped, `context_dropped`.
    """
    options = options or TranscribeOptions()
    check_language(options.language)
    audio = load_audio(source, settings)
    engine = engine or get_engine(settings)
    prompted = with_context(options, context)
    transcript = _transcribe(audio, prompted, chunk, engine)
    record = options.model_dump(exclude_defaults=True)  # the caller's options; a context by its source
    if prompted is not options and context is not None:
        record["context_from"] = -1 if context.from_index is None else context.from_index
        reason = context_failure(transcript, context, prompted.prompt)
        if reason is not None:
            log.warning("context_dropped key=%s reason=%s", chunk.key if chunk else "-", reason)
            spent = transcript.processing_s or 0.0
            transcript = _transcribe(audio, options, chunk, engine)
            transcript.processing_s = round(spent + (transcript.processing_s or 0.0), 3)
            record["context_dropped"] = reason
    transcript.options = record
    return transcript


def _transcribe(audio: Audio, options: TranscribeOptions, chunk: layout.ChunkKey | None,
                engine: Engine) -> ChunkTranscript:
    started = time.perf_counter()
    result = engine.transcribe(audio.samples, options)
    elapsed = time.perf_counter() - started
    log.info(
        "engine_run engine=%s audio_s=%.2f wall_s=%.2f key=%s",
        engine.name, audio.duration, elapsed, chunk.key if chunk else "-",
    )
    return ChunkTranscript(
        session_id=chunk.session_id if chunk else None,
        chunk_index=chunk.index if chunk else None,
        source_key=chunk.key if chunk else None,
        duration=round(audio.duration, 3),
        language=result.language,
        language_probability=result.language_probability,
        engine=engine.name,
        model=engine.model_name,
        segments=result.segments,
        options=options.model_dump(exclude_defaults=True),
        processing_s=round(elapsed, 3),
    )


def previous_context(bucket: str, chunk: layout.ChunkKey, options: TranscribeOptions, *,
                     settings: Settings | None = None) -> Context | None:
    """The stored transcript of the nearest earlier chunk of the session, as a context.

    One GET when the chunk before exists (the direct path, chunks arriving in order); otherwise a
    listing of the session's transcripts. None when there is none, when it was made in another
    language or task, or when it cannot be read (the context is a help, never a reason to fail).
    """
    try:
        try:
            index = chunk.index - 1
            data = storage.get_json(bucket, layout.chunk_transcript_key(chunk.session_id, index), settings=settings)
        except NotFoundError:
            prefix = layout.transcripts_prefix(chunk.session_id)
            earlier = [int(n) for n in (k[len(prefix):].removesuffix(".json")
                                        for k in storage.list_keys(bucket, prefix, settings=settings))
                       if n.isdigit() and int(n) < chunk.index]
            if not earlier:
                return None
            index = max(earlier)
            data = storage.get_json(bucket, layout.chunk_transcript_key(chunk.session_id, index), settings=settings)
        before = ChunkTranscript.model_validate(data)
    except (TranscriptionError, ValueError) as e:
        log.warning("context_unavailable key=%s reason=%s", chunk.key, getattr(e, "reason", None) or e)
        return None
    if options.language and before.language and before.language != options.language:
        return None
    if before.options.get("task", "transcribe") != options.task:
        return None
    return Context(before.text, index) if before.text else None


@dataclass
class S3ChunkResult:
    transcript: ChunkTranscript
    written: bool  # False when a transcript already existed (skipped, or a duplicate's write refused)
    skipped: bool = False


def transcribe_s3_chunk(
    bucket: str,
    key: str,
    options: TranscribeOptions | None = None,
    *,
    output: tuple[str, str] | None = None,
    engine: Engine | None = None,
    settings: Settings | None = None,
) -> S3ChunkResult:
    """Transcribe `s3://bucket/key` and store the result once.

    For a `sessions/<id>/chunks/<n>` key the transcript goes to the layout's place (unless
    `output` names another) and the session manifest's language and prompt apply, followed, with
    `CHUNK_CONTEXT` on, by the end of the nearest earlier chunk's transcript (`previous_context`).
    A transcript that already exists is returned as it is, not recomputed.
    """
    s = settings or get_settings()
    options = options or TranscribeOptions()
    if output is not None and output[1].startswith("sessions/"):  # the router would take it for an upload
        raise InvalidKeyError("a transcript may not be written under sessions/ (the recorders' folder)")
    chunk: layout.ChunkKey | None = None
    kind, what = layout.classify_key(key)
    if kind == "chunk":
        chunk = layout.parse_chunk_key(key)
        out_bucket, out_key = output or (bucket, chunk.transcript_key)
        manifest = load_manifest(bucket, chunk.session_id, settings=s)
        if manifest is not None:
            options = manifest.apply(options)
    elif key.startswith("sessions/"):  # a recorder's folder holds chunks and manifests, nothing else
        raise InvalidKeyError(f"{what}: keys under sessions/ must be chunk keys (sessions/<id>/chunks/<index>.<ext>)")
    elif output is not None:
        out_bucket, out_key = output
    else:
        out_bucket, out_key = bucket, None
    if out_key is not None and storage.exists(out_bucket, out_key, settings=s):
        existing = ChunkTranscript.model_validate(storage.get_json(out_bucket, out_key, settings=s))
        return S3ChunkResult(existing, written=False, skipped=True)
    data = storage.get_bytes(bucket, key, max_bytes=s.max_chunk_mb << 20, settings=s)
    context = previous_context(bucket, chunk, options, settings=s) if chunk and s.chunk_context else None
    transcript = transcribe_chunk(data, options, chunk=chunk, engine=engine, settings=s, context=context)
    if transcript.source_key is None:
        transcript.source_key = key
    written = False
    if out_key is not None:
        written = storage.put_json(out_bucket, out_key, transcript.model_dump_json().encode(), if_absent=True,
                                   settings=s)
        if not written:
            log.warning("duplicate_write_refused key=%s", out_key)
            existing = ChunkTranscript.model_validate(storage.get_json(out_bucket, out_key, settings=s))
            return S3ChunkResult(existing, written=False)
    return S3ChunkResult(transcript, written=written)
