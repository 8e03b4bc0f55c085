"""Session runs: a queued chunk and its session's backlog after it, transcribed in one engine call.

When the server is down or the midnight drain runs, a session's chunks wait in a row. Transcribed one
by one, each pays Whisper's 30 s window (a 5 s chunk costs about as much as a 30 s one) and its cuts
need boundary repair afterwards. A run joins the chunk a worker took with the consecutive chunks
after it that have neither a transcript nor a failed record (`backlog_after`), up to `RUN_MAX_S`
seconds of audio, transcribes the joined audio once, and splits the result back into chunk
transcripts (`split_run`):

- a word belongs to the chunk holding its midpoint, and its times become chunk-relative; a segment
  whose words all fall in one chunk keeps its own times; one that spans a cut is split there (with
  word timestamps by their times, without them by its time spread over its words by their length,
  as boundary repair does);
- each chunk transcript records `run: [first, last]` (combining does not repair inside a run: there
  is no cut there) and its share of the engine time by duration, and is written once with the
  conditional put, like any chunk transcript;
- a chunk that cannot be decoded fails alone: the run is split around it, the pieces on either side
  are transcribed as runs of their own, and the caller records the bad chunk as failed;
- if the engine refuses a joined piece as bad input, its chunks are transcribed one by one, so a
  bad one fails alone there too;
- a piece of a recorder's stream (a timeslice decoded with its stream's header, `streams.py`) is
  never in a run: a run ends before one, and one that a delivery took itself goes the chunk
  function's way (`StreamNotRun`).

Which chunks join is the caller's to decide under its leases: `claim(chunk)` is asked for each
following chunk in order and the run stops at the first it refuses (another worker holds it, or it
was done meanwhile). The core knows nothing of Redis or Celery (`tasks/transcribe.py` holds the
leases).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from transcription import layout, storage, versions
from transcription.audio import Audio
from transcription.chunk import load_chunk_audio, previous_context, transcribe_audio
from transcription.engines import Engine, get_engine
from transcription.errors import PermanentError, RetryableError
from transcription.manifest import load_manifest
from transcription.options import TranscribeOptions
from transcription.settings import Settings, get_settings
from transcription.storage import Version
from transcription.transcript import ChunkTranscript, Segment, Word

log = logging.getLogger(__name__)

Claim = Callable[[layout.ChunkKey], bool]


def backlog_after(bucket: str, chunk: layout.ChunkKey, *, last: int | None = None,
                  settings: Settings | None = None) -> list[layout.ChunkKey]:
    """The chunks right after `chunk` in its session, in index order, each uploaded and with neither
    a transcript nor a failed record, up to the first that is not (or up to index `last`).

    Three listings of the session's prefixes (chunks, transcripts, failed records).
    """
    s = settings or get_settings()
    uploaded = _uploaded(bucket, chunk.session_id, s)
    done = _done(bucket, chunk.session_id, s)
    out: list[layout.ChunkKey] = []
    index = chunk.index + 1
    while index in uploaded and index not in done and (last is None or index <= last):
        out.append(uploaded[index])
        index += 1
    return out


def next_pending(bucket: str, session_id: str, *, after: int, last: int,
                 settings: Settings | None = None) -> layout.ChunkKey | None:
    """The first chunk of the session with an index in (after, last] that is neither transcribed nor failed."""
    s = settings or get_settings()
    uploaded = _uploaded(bucket, session_id, s)
    done = _done(bucket, session_id, s)
    pending = sorted(i for i in uploaded if after < i <= last and i not in done)
    return uploaded[pending[0]] if pending else None


def _uploaded(bucket: str, session_id: str, s: Settings) -> dict[int, layout.ChunkKey]:
    uploaded: dict[int, layout.ChunkKey] = {}
    for c in layout.chunk_keys(storage.list_keys(bucket, layout.chunks_prefix(session_id), settings=s)):
        uploaded.setdefault(c.index, c)  # the first key listed for an index is the chunk (as sessions.py)
    return uploaded


def _done(bucket: str, session_id: str, s: Settings) -> set[int]:
    return {d.index for prefix in (layout.transcripts_prefix(session_id), layout.failed_prefix(session_id))
            for d in layout.done_keys(storage.list_keys(bucket, prefix, settings=s))}


class StreamNotRun(Exception):
    """The delivery's own chunk is a piece of a stream: transcribe it alone (the chunk function)."""


@dataclass
class RunResult:
    """What a run did, chunk by chunk."""

    transcribed: list[int] = field(default_factory=list)  # chunk transcripts this run wrote
    duplicates: list[int] = field(default_factory=list)  # another execution wrote first (refused)
    failed: list[tuple[layout.ChunkKey, PermanentError]] = field(default_factory=list)  # each fails alone
    runs: list[list[int]] = field(default_factory=list)  # [first, last] of each engine call over several chunks
    audio_s: float = 0.0
    engine_s: float = 0.0

    @property
    def covered(self) -> int:
        """The highest chunk index this run ended (transcribed, refused as a duplicate or failed)."""
        return max([*self.transcribed, *self.duplicates, *(c.index for c, _ in self.failed)], default=-1)


@dataclass
class _Part:
    chunk: layout.ChunkKey
    audio: Audio
    source: Version | None = None  # the audio version read (issue 14, hole 9: recorded on its transcript)


def transcribe_run(bucket: str, first: layout.ChunkKey, following: Sequence[layout.ChunkKey], *, claim: Claim,
                   engine: Engine | None = None, settings: Settings | None = None) -> RunResult:
    """Transcribe `first` (held by the caller) with as many of `following` as `claim` grants and
    `RUN_MAX_S` allows; write each chunk transcript once. Raises a `RetryableError` (S3, memory)
    for the caller to retry; chunks written before it stay written."""
    s = settings or get_settings()
    options = TranscribeOptions()
    manifest = load_manifest(bucket, first.session_id, settings=s)
    if manifest is not None:
        options = manifest.apply(options)
    result = RunResult()
    pieces: list[list[_Part]] = [[]]
    total = 0.0
    for c in [first, *following]:
        if c is not first and (total >= s.run_max_s or not claim(c)):
            break
        try:
            data, source = storage.get_version(bucket, c.key, max_bytes=s.max_chunk_mb << 20, settings=s)
            loaded = load_chunk_audio(bucket, c, data, s)
            audio = loaded.audio
        except PermanentError as e:  # a bad chunk fails alone: the run is split around it
            log.warning("run_split key=%s reason=%s", c.key, e.reason)
            result.failed.append((c, e))
            pieces.append([])
            continue
        except RetryableError as e:
            if c is first:
                raise
            log.warning("run_deferred key=%s reason=%s", c.key, e.reason)
            break  # its own delivery (or the drain's backlog loop) tries it again
        if loaded.stream_from is not None or audio.continuation:  # stream pieces keep their own way
            if c is first:
                raise StreamNotRun(c.key)
            break
        if c is not first and total + audio.duration > s.run_max_s:
            break
        pieces[-1].append(_Part(c, audio, source))
        total += audio.duration
    engine = engine or get_engine(s)
    for piece in pieces:
        if piece:
            _transcribe_piece(bucket, piece, options, engine, s, result)
    return result


def _transcribe_piece(bucket: str, piece: list[_Part], options: TranscribeOptions, engine: Engine, s: Settings,
                      result: RunResult) -> None:
    head = piece[0].chunk
    context = previous_context(bucket, head, options, settings=s) if s.chunk_context else None
    if len(piece) == 1:
        try:
            transcript = transcribe_audio(piece[0].audio, options, chunk=head, engine=engine, settings=s,
                                          context=context)
        except PermanentError as e:
            result.failed.append((head, e))
            return
        transcript.source_key, transcript.via = head.key, "queued"
        _write(bucket, [transcript], piece, result, s)
        return
    samples = np.concatenate([p.audio.samples for p in piece])
    try:
        whole = transcribe_audio(Audio(samples, "wav"), options, chunk=head, engine=engine, settings=s,
                                 context=context)
    except PermanentError as e:  # the engine refused the joined audio: one by one, so a bad chunk fails alone
        log.warning("run_refused chunks=%s-%s reason=%s", head.index, piece[-1].chunk.index, e.reason)
        for part in piece:
            _transcribe_piece(bucket, [part], options, engine, s, result)
        return
    span = [head.index, piece[-1].chunk.index]
    log.info("run_done session=%s chunks=%d-%d audio_s=%.2f engine_s=%.2f", head.session_id, span[0], span[1],
             whole.duration, whole.processing_s or 0.0)
    result.runs.append(span)
    _write(bucket, split_run(whole, [(p.chunk, p.audio.duration) for p in piece]), piece, result, s)


def _write(bucket: str, transcripts: list[ChunkTranscript], parts: list[_Part], result: RunResult,
           s: Settings) -> None:
    """Each chunk transcript stored by the rule of `versions.py`: it records the audio version it was
    made from, and one of audio uploaded again since is not written (that upload's delivery runs)."""
    for t, part in zip(transcripts, parts, strict=True):
        assert t.session_id is not None and t.chunk_index is not None
        key = layout.chunk_transcript_key(t.session_id, t.chunk_index)
        source = part.source or Version(None)
        t.source_etag, t.source_version = source.etag, source.version_id
        stored = versions.store_transcript((bucket, key), t.model_dump_json().encode(), source,
                                           (bucket, part.chunk.key), settings=s)
        if stored in ("written", "replaced"):
            result.transcribed.append(t.chunk_index)
        else:
            log.warning("duplicate_write_refused key=%s (%s)", key, stored)
            result.duplicates.append(t.chunk_index)
        result.audio_s += t.duration
        result.engine_s += t.processing_s or 0.0


def split_run(whole: ChunkTranscript, spans: Sequence[tuple[layout.ChunkKey, float]]) -> list[ChunkTranscript]:
    """The run's transcript (times on the joined audio) as one transcript per chunk (chunk-relative
    times, `run` set); `spans` are the chunks and their durations, in order."""
    offsets: list[float] = []
    t = 0.0
    for _, duration in spans:
        offsets.append(t)
        t += duration
    total = t
    per_chunk: list[list[Segment]] = [[] for _ in spans]

    def which(x: float) -> int:
        return min(len(spans) - 1, max(0, bisect.bisect_right(offsets, x) - 1))

    for seg in whole.segments:
        for i, part in _split_segment(seg, which):
            lo, hi = offsets[i], offsets[i] + spans[i][1]
            per_chunk[i].append(_clamp(part.shifted(-lo), hi - lo))
    span = [spans[0][0].index, spans[-1][0].index]
    out = []
    for (chunk, duration), segments in zip(spans, per_chunk, strict=True):
        share = (whole.processing_s or 0.0) * duration / total if total else 0.0
        out.append(ChunkTranscript(
            session_id=chunk.session_id, chunk_index=chunk.index, source_key=chunk.key, duration=round(duration, 3),
            language=whole.language, language_probability=whole.language_probability, engine=whole.engine,
            model=whole.model, segments=segments, options=dict(whole.options), processing_s=round(share, 3),
            run=span, via="queued"))
    return out


def _split_segment(seg: Segment, which: Callable[[float], int]) -> list[tuple[int, Segment]]:
    """The segment's parts by chunk: whole when its words (or its span) lie in one chunk."""
    words = [w for w in (seg.words or []) if w.word.strip()]
    if not words:
        if which(seg.start) == which(max(seg.start, seg.end - 1e-3)) or not seg.text.strip():
            return [(which((seg.start + seg.end) / 2), seg)]
        words = _spread(seg)  # no word times: the segment's time over its words by their length
        timed = False
    else:
        timed = True
    groups: dict[int, list[Word]] = {}
    for w in words:
        groups.setdefault(which((w.start + w.end) / 2), []).append(w)
    if len(groups) == 1:
        return [(next(iter(groups)), seg)]
    parts = []
    for i, group in groups.items():
        text = "".join(w.word for w in group).strip() if timed else " ".join(w.word for w in group)
        parts.append((i, seg.model_copy(update={"start": group[0].start, "end": group[-1].end, "text": text,
                                               "words": group if timed else None})))
    return parts


def _spread(seg: Segment) -> list[Word]:
    plain = seg.text.split()
    weights = [len(w) + 1 for w in plain]
    total = sum(weights) or 1
    out, t = [], seg.start
    for text, weight in zip(plain, weights, strict=True):
        end = t + (seg.end - seg.start) * weight / total
        out.append(Word(start=t, end=end, word=text))
        t = end
    return out


def _clamp(seg: Segment, duration: float) -> Segment:
    def c(x: float) -> float:
        return round(min(max(x, 0.0), duration), 3)

    words = None if seg.words is None else [
        w.model_copy(update={"start": c(w.start), "end": c(max(w.end, w.start))}) for w in seg.words]
    return seg.model_copy(update={"start": c(seg.start), "end": c(max(seg.end, seg.start)), "words": words})
