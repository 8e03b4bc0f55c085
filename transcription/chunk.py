"""The one function that transcribes a chunk, whoever calls it (server, worker, CLI, repair).

`transcribe_chunk` turns audio into a `ChunkTranscript`; `transcribe_s3_chunk` adds the S3 side the
server's `/transcribe-s3` and the queue worker share: read the chunk and its session's manifest,
transcribe, and write the transcript once (a conditional put).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from transcription import layout, storage
from transcription.audio import Audio, decode_audio
from transcription.engines import Engine, get_engine
from transcription.errors import InvalidKeyError
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
) -> ChunkTranscript:
    """Transcribe one piece of audio. Raises `AudioError` for bad input, never crashes on it."""
    options = options or TranscribeOptions()
    check_language(options.language)
    audio = load_audio(source, settings)
    engine = engine or get_engine(settings)
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
    `output` names another) and the session manifest's language and prompt apply. A transcript
    that already exists is returned as it is, not recomputed.
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
    transcript = transcribe_chunk(data, options, chunk=chunk, engine=engine, settings=s)
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
