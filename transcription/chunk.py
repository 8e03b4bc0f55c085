"""The one function that transcribes a chunk, whoever calls it (server, worker, CLI, repair).

`transcribe_audio` turns audio into a `ChunkTranscript`; `transcribe_s3_chunk` adds the S3 side the
server's `/transcribe-s3` and the queue worker share: read the chunk and its session's manifest,
transcribe, and write the transcript once (a conditional put). With `CHUNK_CONTEXT` on, a session
chunk is prompted with the end of the stored transcript of the nearest earlier chunk, as Whisper
conditions on the previous text over a whole file (`transcription/context.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from transcription import layout, speakers, storage, versions
from transcription.audio import Audio, decode_audio
from transcription.context import Context, context_failure, with_context
from transcription.coverage import cover
from transcription.engines import Engine, get_engine
from transcription.errors import (
    InvalidKeyError,
    NotFoundError,
    PermanentError,
    TranscriptionError,
    UnsupportedMediaError,
)
from transcription.guard import GuardAction, records
from transcription.manifest import load_manifest
from transcription.options import TranscribeOptions, check_language
from transcription.pieces import transcribe_in_pieces
from transcription.settings import Settings, get_settings
from transcription.streams import HEAD_BYTES, continues_stream, find_stream_header, starts_stream
from transcription.transcript import ChunkTranscript

log = logging.getLogger(__name__)

AudioSource = bytes | bytearray | memoryview | str | Path | Audio


def load_audio(source: AudioSource, settings: Settings | None = None, *, header: bytes | None = None,
               hints: tuple[str | None, ...] = ()) -> Audio:
    """Decode with the configured limits (duration, decode time, size); `header` for a stream's piece,
    `hints` (an extension, a Content-Type) for a container its bytes do not name."""
    if isinstance(source, Audio):
        return source
    s = settings or get_settings()
    return decode_audio(
        source, max_seconds=s.max_audio_s, timeout_s=s.decode_timeout_s, max_bytes=s.max_chunk_mb << 20,
        header=header, hints=hints,
    )


@dataclass(frozen=True)
class ChunkAudio:
    audio: Audio
    stream_from: int | None = None  # the chunk that starts the stream this one belongs to (itself, or earlier)


def load_chunk_audio(bucket: str, chunk: layout.ChunkKey | None, data: bytes,
                     settings: Settings | None = None, *, key: str | None = None) -> ChunkAudio:
    """A chunk's audio, the one way every path reads it (transcription, repair): a piece that
    continues a stream (a recorder's timeslice) is decoded with the header of the session's chunk
    that starts the stream, and keeps the stream's timestamps (`transcription/streams.py`).
    `StreamHeaderPending` (retryable) while that chunk is not uploaded yet. When the bytes name no
    container, the key's extension and then the object's Content-Type are hints (`audio.HINTS`)."""
    s = settings or get_settings()
    head = bytes(data[:HEAD_BYTES])
    kind = continues_stream(head)
    if kind is None or chunk is None:  # a whole file (or no session to look in: decode_audio says why)
        try:
            audio = load_audio(data, s)
        except UnsupportedMediaError:
            key = key or (chunk.key if chunk else None)
            if key is None:
                raise
            ext = key.rsplit("/", 1)[-1].rpartition(".")[2].lower()
            audio = load_audio(data, s, hints=(ext, storage.content_type(bucket, key, settings=s)))
        return ChunkAudio(audio, chunk.index if chunk is not None and starts_stream(head) else None)
    found = find_stream_header(bucket, chunk, kind, settings=s)
    return ChunkAudio(load_audio(data, s, header=found.header), found.from_index)


def transcribe_audio(
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
    Speech the decode missed or put in the wrong language is decoded again on its own
    (`transcription/coverage.py`), recorded as `speech_recovered`.
    """
    options = options or TranscribeOptions()
    check_language(options.language)
    check_language(options.languages)
    s = settings or get_settings()
    diarizer_kind = speakers.wanted(options, s)
    diarizer = speakers.get_diarizer(diarizer_kind, s) if diarizer_kind else None  # a missing model fails early
    audio = load_audio(source, settings)
    engine = engine or get_engine(settings)
    piece_s = s.engine_piece_s
    guard, coverage = s.hallucination_guard, s.speech_coverage
    # speakers change inside Whisper's segments: their words' times say where to split them
    run = options.model_copy(update={"word_timestamps": True}) if diarizer is not None else options
    prompted = with_context(run, context)
    transcript, actions = _transcribe(audio, prompted, chunk, engine, piece_s, guard=guard, coverage=coverage)
    record = options.model_dump(exclude_defaults=True)  # the caller's options; a context by its source
    if prompted is not run and context is not None:
        record["context_from"] = -1 if context.from_index is None else context.from_index
        reason = context_failure(transcript, context, prompted.prompt)
        if reason is not None:
            log.warning("context_dropped key=%s reason=%s", chunk.key if chunk else "-", reason)
            spent = transcript.processing_s or 0.0
            transcript, actions = _transcribe(audio, run, chunk, engine, piece_s, guard=guard, coverage=coverage)
            transcript.processing_s = round(spent + (transcript.processing_s or 0.0), 3)
            record["context_dropped"] = reason
    record.update(records(actions))  # what the hallucination guard decoded again or dropped
    if "speech_recovered" in transcript.options:  # what the coverage guard decoded again (coverage.py)
        record["speech_recovered"] = transcript.options["speech_recovered"]
    transcript.options = record
    if diarizer is not None:
        _diarize(transcript, audio, diarizer, options, chunk)
    return transcript


def transcribe_named(
    source: AudioSource,
    options: TranscribeOptions,
    clips: Sequence[tuple[str, bytes, str]] = (),
    *,
    engine: Engine | None = None,
    settings: Settings | None = None,
) -> ChunkTranscript:
    """`transcribe_audio` with known speakers: each (name, reference clip, where) is embedded first (a
    bad clip fails before any transcription), and the transcript's speakers whose voices match are
    named (`transcription/speakers/names.py`). Names need the offline diarizer's voices (CAM++), so a
    request with clips is diarized by it whatever `DIARIZE` says."""
    from transcription.speakers.names import DIARIZER, embed_clips, name_chunk_speakers

    s = settings or get_settings()
    references = embed_clips(clips, settings=s)
    if references and speakers.wanted(options, s) not in (None, DIARIZER):
        s = s.model_copy(update={"diarize": DIARIZER})
    transcript = transcribe_audio(source, options, engine=engine, settings=s)
    return name_chunk_speakers(transcript, references, s)


def _diarize(transcript: ChunkTranscript, audio: Audio, diarizer: speakers.Diarizer, options: TranscribeOptions,
             chunk: layout.ChunkKey | None) -> None:
    """Chunk-local speakers on the transcript: turns, labels on segments and words, voice centroids."""
    from transcription.speakers.label import label_segments

    started = time.perf_counter()
    result = diarizer.diarize(audio.samples, min_speakers=options.min_speakers, max_speakers=options.max_speakers)
    elapsed = time.perf_counter() - started
    log.info("diarize diarizer=%s audio_s=%.2f wall_s=%.2f speakers=%d key=%s", diarizer.name, audio.duration,
             elapsed, len(result.speakers), chunk.key if chunk else "-")
    transcript.segments = label_segments(transcript.segments, result.turns, keep_words=options.word_timestamps)
    transcript.turns = result.turns
    transcript.speakers = result.speakers
    transcript.diarizer = diarizer.name
    transcript.processing_s = round((transcript.processing_s or 0.0) + elapsed, 3)


def _transcribe(audio: Audio, options: TranscribeOptions, chunk: layout.ChunkKey | None,
                engine: Engine, piece_s: float, *, guard: bool,
                coverage: bool) -> tuple[ChunkTranscript, list[GuardAction]]:
    started = time.perf_counter()
    # memory bounded by the piece; each engine call through the hallucination guard
    guarded = transcribe_in_pieces(engine, audio.samples, options, piece_s, guard=guard)
    # no speech vanishes: speech missed or in another language decoded again (coverage.py)
    result, recovered = (cover(engine, audio.samples, options, guarded.result, guard=guard) if coverage
                         else (guarded.result, []))
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
        options={**options.model_dump(exclude_defaults=True),
                 **({"speech_recovered": [r.record() for r in recovered]} if recovered else {})},
        processing_s=round(elapsed, 3),
    ), guarded.actions


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
            listing = storage.list_keys(bucket, layout.transcripts_prefix(chunk.session_id), settings=settings)
            earlier = [d.index for d in layout.done_keys(listing) if d.index < chunk.index]
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


def _stored(bucket: str, key: str, s: Settings) -> ChunkTranscript:
    """The transcript stored at the output key; an object that is none is a clear error that
    names it (a pydantic error would carry its contents into a traceback)."""
    try:
        return ChunkTranscript.model_validate(storage.get_json(bucket, key, settings=s))
    except ValidationError:
        raise PermanentError(f"s3://{bucket}/{key} exists and is not a chunk transcript") from None


@dataclass
class S3ChunkResult:
    transcript: ChunkTranscript
    written: bool  # False when a transcript already existed (skipped, or a duplicate's write refused)
    skipped: bool = False
    replaced: bool = False  # written over the transcript of an earlier upload of the chunk
    superseded: bool = False  # the chunk was uploaded again while this ran: not written


def transcribe_s3_chunk(
    bucket: str,
    key: str,
    options: TranscribeOptions | None = None,
    *,
    output: tuple[str, str] | None = None,
    engine: Engine | None = None,
    settings: Settings | None = None,
    via: Literal["direct", "queued"] | None = None,
) -> S3ChunkResult:
    """Transcribe `s3://bucket/key` and store the result once per audio version.

    For a `sessions/<id>/chunks/<n>` key the transcript goes to the layout's place (unless
    `output` names another) and the session manifest's language and prompt apply, followed, with
    `CHUNK_CONTEXT` on, by the end of the nearest earlier chunk's transcript (`previous_context`).
    A transcript of the audio's current version is returned as it is, not recomputed; one of an
    earlier upload is replaced (`transcription/versions.py` holds the rule).
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
        raise InvalidKeyError(f"{what}: keys under sessions/ must be chunk keys (sessions/<id>/chunks/<n>.<ext>)")
    elif output is not None:
        out_bucket, out_key = output
    else:
        out_bucket, out_key = bucket, None
    if out_key is not None and versions.transcript_is_current((bucket, key), (out_bucket, out_key), settings=s):
        return S3ChunkResult(_stored(out_bucket, out_key, s), written=False, skipped=True)
    data, source = storage.get_version(bucket, key, max_bytes=s.max_chunk_mb << 20, settings=s)
    loaded = load_chunk_audio(bucket, chunk, data, s, key=key)
    context = previous_context(bucket, chunk, options, settings=s) if chunk and s.chunk_context else None
    transcript = transcribe_audio(loaded.audio, options, chunk=chunk, engine=engine, settings=s, context=context)
    if loaded.stream_from is not None:  # its place on the stream's timeline (combine uses it)
        transcript.stream_from, transcript.stream_start = loaded.stream_from, loaded.audio.start
    if transcript.source_key is None:
        transcript.source_key = key
    transcript.via = via  # which path transcribed it, for the session report
    transcript.source_etag, transcript.source_version = source.etag, source.version_id
    if out_key is None:
        return S3ChunkResult(transcript, written=False)
    outcome = versions.store_transcript((out_bucket, out_key), transcript.model_dump_json().encode(), source,
                                        (bucket, key), settings=s)
    if outcome in ("written", "replaced"):
        return S3ChunkResult(transcript, written=True, replaced=outcome == "replaced")
    if outcome == "superseded":  # the newer upload's own event transcribes it
        return S3ChunkResult(transcript, written=False, superseded=True)
    log.warning("duplicate_write_refused key=%s", out_key)
    return S3ChunkResult(_stored(out_bucket, out_key, s), written=False)
