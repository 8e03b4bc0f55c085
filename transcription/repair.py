"""Boundary repair: make a session transcript read as if the session were transcribed in one piece.

Recorders cut audio every N seconds regardless of words, so the word at a cut is split in two and
Whisper garbles or drops it, and it also tends to drop or invent words at the very edges of a clip.

Runs of consecutive transcribed chunks each shorter than `BOUNDARY_REGROUP_BELOW_S` are first
transcribed again as one piece (at most `BOUNDARY_REGROUP_SPAN_S` long), whose words replace the
chunks' words: inside a piece there are no cuts left, as in a whole-file transcription. This is the
cheaper repair for short chunks, because Whisper pads every call to 30 s: a window per 5 s cut
costs more engine time than the whole run once (bench/boundaries.py measures both).

For each other boundary between two consecutive *transcribed* chunks (including the joints between
pieces), `repair_boundaries` transcribes a window spanning it (the last W s of one chunk and the
first W s of the next, W = `BOUNDARY_WINDOW_S`, with word timestamps) through the one chunk
function, and splices the window's words into the session transcript in place of the chunks'
words there:

- The window's own edges are unreliable for the same reason the chunks' are, so only window words
  at least a margin (W/3) away from them are used.
- Each side of the splice is anchored on a word the window and the chunk transcript agree on
  (the same normalised word, at nearly the same time, found by sequence alignment): the chunk's
  words are kept up to that word and the window's words follow it, so no word is duplicated or
  dropped at the seam. Without such an anchor (silence, no common word), the seam is cut by time
  at the quietest point of the allowed range and words straddling it are assigned by midpoint.
- Segments untouched by a splice are kept as they were; touched ones are rebuilt from their words
  (split at sentence ends), and a final pass keeps segment and word times monotonic.
- No repair across a failed or missing chunk: its gap stays marked and the boundary is skipped.
- No piece or window across chunks whose detected languages differ (a recording that switches
  language): a run is split at the change, the window across it is skipped (`language changes`),
  and each piece and window is decoded in its own chunks' language (or the manifest's fixed one),
  with context only from words in that language; rebuilt segments keep their chunk's language.
- No repair inside a run (chunks the queued path transcribed in one engine call, `run` in their
  transcripts, `transcription/runs.py`): there is no cut there. Their chunks are not regrouped, and
  only the boundaries between runs, or between a run and a chunk transcribed alone, get windows.
- Windows and pieces are given the words before them as context (`transcription/context.py`),
  which drops a prompted hallucination and transcribes again without it.

Word timestamps in the chunk transcripts are *not* required (a piece asks for them only when the
chunks have them, or when the session has speakers: a diarized chunk was transcribed with them,
and a piece's words get their speakers from the session's turns by time). This is a deliberate
choice: with `ENGINE=whisperx` asking for word timestamps leaves the batched pipeline for the
sequential one, which would slow every chunk on the GPU fleet by about 40% to
help a few seconds around each cut. Where a chunk transcript has words their times are used; where
it has only segments, the segment's time is spread over its words by their length. The splice is
anchored on text, so these approximate times only need to be good enough to tell repeated words
apart, and the window, which always has word timestamps, supplies the times around the cut.

Chunk transcripts stay as they are (they are the per-chunk truth); only the returned session
transcript is repaired, and its `repair` field records that it was. A session transcript whose
`repair` field is set is returned unchanged (idempotent); `BOUNDARY_REPAIR=false` returns the naive
concatenation. The S3 side stays with the caller: chunk audio comes from a callable
(`s3_audio_loader` builds the production one).

A piece or window whose words disagree with the chunks' own beyond what a cut explains (it adds a
sentence they do not have, or leaves out a run of theirs: `transcription/agreement.py`) is not
used: the chunks' words stay for its span, and the record's `rejected` lists it with the reason, so
a session is never worse than its chunks.

This module decides what to transcribe again and runs the engine; what is done with the words
that come back (anchors, seams, segment rebuilding) is `transcription/splice.py`, pure and
unit-tested on synthetic words.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from transcription import chunk, layout, storage
from transcription.agreement import disagreement
from transcription.audio import SAMPLE_RATE, Audio
from transcription.context import Context
from transcription.engines import Engine, get_engine
from transcription.errors import ModelError, NotFoundError, PermanentError
from transcription.options import TranscribeOptions
from transcription.settings import Settings, get_settings
from transcription.splice import (
    Seam,
    Token,
    normalize_word,
    rebuild_segments,
    replace_piece,
    splice_window,
    text_before,
    tokens_from_segments,
    window_tokens,
)
from transcription.transcript import ChunkEntry, Segment, SessionTranscript, Transcript

log = logging.getLogger(__name__)

AudioLoader = Callable[[ChunkEntry], Audio]

CONTEXT_WORDS = 150  # words before a window or piece offered as its context (the prompt keeps its end)


def s3_audio_loader(bucket: str, keys: Mapping[int, str] | None = None,
                    settings: Settings | None = None) -> AudioLoader:
    """The production loader: a chunk's audio from S3 (its uploaded key, else the transcript's source key).

    Where the session transcript records the audio version a chunk's transcript was made from, that
    version is read (by VersionId, or while the ETag still matches): a chunk uploaded again since
    raises `ChangedError` and its boundaries are skipped, never repaired with other audio's words."""
    s = settings or get_settings()

    def load(entry: ChunkEntry) -> Audio:
        version = storage.Version(entry.source_etag, entry.source_version) if entry.source_etag else None
        key = (entry.source_key if version else None) or (keys or {}).get(entry.index) or entry.source_key
        if not key:
            raise NotFoundError(f"chunk {entry.index} has no audio key")
        data, _ = storage.get_version(bucket, key, max_bytes=s.max_chunk_mb << 20, version=version, settings=s)
        # as it was transcribed: a piece of a recorder's stream with its stream's header
        return chunk.load_chunk_audio(bucket, next(layout.chunk_keys([key]), None), data, s).audio

    return load


def repair_from_s3(
    bucket: str,
    session: SessionTranscript,
    options: TranscribeOptions | None = None,
    *,
    keys: Mapping[int, str] | None = None,
    engine: Engine | None = None,
    settings: Settings | None = None,
) -> SessionTranscript:
    """`repair_boundaries` with the chunks' audio read from S3 (what `build_session_transcript` calls).

    `keys` maps chunk index to its audio key (the session's uploaded chunks); `options` are the
    session's (the manifest's language and prompt).
    """
    s = settings or get_settings()
    if not s.boundary_repair or session.repair is not None:
        return session
    return repair_boundaries(session, s3_audio_loader(bucket, keys, s), options, engine=engine, settings=s)


def repair_boundaries(
    session: SessionTranscript,
    load_audio: AudioLoader,
    options: TranscribeOptions | None = None,
    *,
    engine: Engine | None = None,
    settings: Settings | None = None,
) -> SessionTranscript:
    """The session transcript with every boundary between consecutive transcribed chunks repaired.

    `options` are the session's (manifest language and prompt); the window is transcribed with
    word timestamps and the session's language. Retryable errors (S3, memory) propagate so the
    caller's task retries; a chunk whose audio is gone or undecodable only skips its boundaries.
    """
    s = settings or get_settings()
    if not s.boundary_repair or session.repair is not None:
        return session
    repair = _Repair(session, load_audio, options, _LazyEngine(engine, s, session.session_id), s)
    repair.regroup_short_runs()
    repair.windows_across_cuts()
    return repair.result()


class _LazyEngine:
    """The engine, loaded only when something is to be transcribed; if it cannot load, why."""

    def __init__(self, engine: Engine | None, settings: Settings, session_id: str) -> None:
        self.engine, self.settings, self.session_id = engine, settings, session_id
        self.error: str | None = None

    def get(self) -> Engine | None:
        if self.engine is None and self.error is None:
            try:
                self.engine = get_engine(self.settings)
            except (ModelError, ImportError) as e:  # no model here: the naive transcript still stands
                self.error = f"engine unavailable: {getattr(e, 'reason', None) or e}"
                log.error("boundary_repair_skipped session=%s reason=%s", self.session_id, self.error)
        return self.engine


@dataclass
class _Record:
    """What the repair did, for the session transcript's `repair` field."""

    boundaries: int = 0  # between two transcribed chunks
    repaired: int = 0
    skipped: list[dict[str, object]] = field(default_factory=list)
    anchored: int = 0  # seams placed on an agreed word (two per window at most)
    regrouped: list[list[int]] = field(default_factory=list)  # [first, last] chunk index of each piece
    extra_audio_s: float = 0.0
    # pieces and windows whose words disagreed with their chunks' beyond what a cut explains
    rejected: list[dict[str, object]] = field(default_factory=list)

    def skip(self, after_chunk: int | None, reason: str) -> None:
        self.skipped.append({"after_chunk": after_chunk, "reason": reason})


class _Repair:
    """One session's repair: the words being repaired, the segments they index, what was done."""

    def __init__(self, session: SessionTranscript, load_audio: AudioLoader, options: TranscribeOptions | None,
                 engine: _LazyEngine, settings: Settings) -> None:
        self.session, self.load_audio, self.engine, self.settings = session, load_audio, engine, settings
        # windows always with word timestamps (they place the seams); a fixed language (the
        # manifest's) for all, else each piece and window in its own chunks' language
        self.fixed_language = options.language if options else None
        self.options = (options or TranscribeOptions()).model_copy(update={"word_timestamps": True})
        # pieces ask for word timestamps only where the chunks had them (no invented word times), or
        # where the session has speakers: the chunks were transcribed with word times for them (the
        # diarizer asks), and a piece's words are given speakers by the session's turns at their times
        self.with_words = session.turns is not None or all(
            seg.words is not None for seg in session.segments if not seg.gap)
        self.segments: list[Segment] = list(session.segments)  # grows by the segments of regrouped pieces
        self.tokens: list[Token] = tokens_from_segments(self.segments, session.language)
        self.touched: set[int] = set()
        self.covered: set[int] = set()  # chunks whose boundary with the next one a piece covered
        self.record = _Record()
        self.audio: dict[int, Audio] = {}

    def regroup_short_runs(self) -> None:
        """Each run of short chunks transcribed again as one piece (cheaper than a window per cut)."""
        s = self.settings
        for run in _short_runs(self.session.chunks, float(s.boundary_regroup_below_s),
                               float(s.boundary_regroup_span_s), by_language=self.fixed_language is None):
            if (engine := self.engine.get()) is None:
                return  # the windows record why
            for piece in _loaded(run, self.load_audio):
                self._regroup(piece, engine)

    def _regroup(self, piece: list[tuple[ChunkEntry, Audio]], engine: Engine) -> None:
        first, last = piece[0][0], piece[-1][0]
        start, end = first.offset, last.offset + last.duration
        samples = np.concatenate([audio.samples for _, audio in piece])
        options = self._in_language(first).model_copy(update={"word_timestamps": self.with_words})
        try:
            result = self._transcribe(engine, samples, options, start)
        except PermanentError as e:  # the windows still try each boundary
            log.warning("regroup_skipped chunks=%s-%s reason=%s", first.index, last.index, e.reason)
            return
        self.record.extra_audio_s += len(samples) / SAMPLE_RATE
        reason = disagreement(_words(self.tokens, start, end),
                              [w for seg in result.segments for w in map(normalize_word, seg.text.split()) if w],
                              same_edges=True)
        if reason is not None:  # the chunks' words stay; their boundaries get windows
            log.warning("regroup_rejected chunks=%s-%s reason=%s", first.index, last.index, reason)
            self.record.rejected.append({"chunks": [first.index, last.index], "reason": reason})
            return
        self.tokens, self.segments, touched = replace_piece(self.tokens, self.segments, result.segments,
                                                            start, end, self.session.language)
        self.touched |= touched
        self.record.regrouped.append([first.index, last.index])
        self.covered.update(entry.index for entry, _ in piece[:-1])
        self.record.repaired += len(piece) - 1

    def windows_across_cuts(self) -> None:
        """A window across each boundary between transcribed chunks that no piece covered."""
        for a, b in itertools.pairwise(self.session.chunks):
            if a.status != "transcribed" or b.status != "transcribed":
                continue  # a failed or missing chunk's gap: nothing to join across
            if _same_run(a, b):
                continue  # transcribed in one engine call (transcription/runs.py): there is no cut here
            self.record.boundaries += 1
            if a.index in self.covered:
                continue
            if a.duration <= 0 or b.duration <= 0:
                self.record.skip(a.index, "empty chunk")
                continue
            if self.fixed_language is None and a.language and b.language and a.language != b.language:
                # one window would decode both languages in one: each chunk's words stand
                self.record.skip(a.index, f"language changes ({a.language} to {b.language})")
                continue
            if not self._window(a, b):
                break  # no engine: the remaining boundaries stay as they are

    def _window(self, a: ChunkEntry, b: ChunkEntry) -> bool:
        """Repair the cut between chunks `a` and `b` (or record why not); False when there is no engine."""
        try:
            samples, seam = self._window_audio(a, b)
        except PermanentError as e:
            log.warning("boundary_repair_skipped after_chunk=%s reason=%s", a.index, e.reason)
            self.record.skip(a.index, e.reason)
            return True
        if (engine := self.engine.get()) is None:
            self.record.skip(a.index, str(self.engine.error))
            return False
        try:
            window = self._transcribe(engine, samples, self._in_language(a), seam.start)
        except PermanentError as e:  # e.g. a language the model does not know: the chunks stand as they are
            log.warning("boundary_repair_skipped after_chunk=%s reason=%s", a.index, e.reason)
            self.record.skip(a.index, e.reason)
            return True
        self.record.extra_audio_s += len(samples) / SAMPLE_RATE
        spliced = splice_window(self.tokens, window_tokens(window.segments, seam.start, self.session.language), seam)
        if spliced is None:
            self.record.skip(a.index, "no usable window words")
            return True
        reason = disagreement(_words(self.tokens, seam.chunks_start, seam.chunks_end),
                              _words(spliced.tokens, seam.chunks_start, seam.chunks_end))
        if reason is not None:  # the chunks' words stay at this cut
            log.warning("window_rejected after_chunk=%s reason=%s", a.index, reason)
            self.record.rejected.append({"after_chunk": a.index, "reason": reason})
            return True
        self.tokens = spliced.tokens
        self.touched |= spliced.touched
        self.record.anchored += spliced.anchored
        self.record.repaired += 1
        return True

    def _window_audio(self, a: ChunkEntry, b: ChunkEntry) -> tuple[np.ndarray, Seam]:
        """The last W s of chunk `a` and the first W s of `b` (W = BOUNDARY_WINDOW_S), and where they lie."""
        window_s = float(self.settings.boundary_window_s)
        before, after = self._chunk_audio(a).samples, self._chunk_audio(b).samples
        n_before = min(len(before), round(min(window_s, a.duration) * SAMPLE_RATE))
        n_after = min(len(after), round(min(window_s, b.duration) * SAMPLE_RATE))
        samples = np.concatenate([before[len(before) - n_before:], after[:n_after]])
        cut = b.offset
        seam = Seam(start=cut - n_before / SAMPLE_RATE, cut=cut, end=cut + n_after / SAMPLE_RATE,
                    chunks_start=a.offset, chunks_end=b.offset + b.duration)
        return samples, seam

    def _chunk_audio(self, entry: ChunkEntry) -> Audio:
        """Each chunk is needed by two boundaries in a row: the last two decoded are kept."""
        if entry.index not in self.audio:
            while len(self.audio) >= 2:
                self.audio.pop(next(iter(self.audio)))
            self.audio[entry.index] = self.load_audio(entry)
        return self.audio[entry.index]

    def _in_language(self, entry: ChunkEntry) -> TranscribeOptions:
        """The options for audio starting in chunk `entry`: the fixed language, else the chunk's own
        (never one chunk's language imposed on another's audio), else detection."""
        language = self.fixed_language or entry.language or (None if self.options.languages else self.session.language)
        return self.options.model_copy(update={"language": language})

    def _language_since(self, start: float) -> float:
        """Where the stretch of chunks in the language of the chunk at `start` begins."""
        since = 0.0
        language = None
        for entry in self.session.chunks:
            if entry.offset > start:
                break
            if entry.language != language:
                since, language = entry.offset, entry.language
        return since

    def _transcribe(self, engine: Engine, samples: np.ndarray, options: TranscribeOptions, start: float) -> Transcript:
        """Through the one chunk function, with the session's words before `start` (in the same
        language) as context (`transcription/context.py`: a prompted hallucination is dropped and
        transcribed again)."""
        since = 0.0 if self.fixed_language else self._language_since(start)
        context = Context(text_before([t for t in self.tokens if t.mid >= since], start, CONTEXT_WORDS))
        return chunk.transcribe_audio(Audio(samples.astype(np.float32, copy=False), "wav"), options,
                                engine=engine, settings=self.settings, context=context)

    def _with_language(self, seg: Segment) -> Segment:
        """A rebuilt segment gets the language of the chunk it lies in (no piece or window spans a change)."""
        if seg.language is not None or seg.gap:
            return seg
        mid = (seg.start + seg.end) / 2
        entry = next((e for e in reversed(self.session.chunks) if e.offset <= mid), None)
        return seg.model_copy(update={"language": (entry.language if entry else None) or self.session.language})

    def result(self) -> SessionTranscript:
        """A copy of the session with the rebuilt segments (if anything was repaired) and the record."""
        record, error = self.record, self.engine.error
        if error and not any(r["reason"] == error for r in record.skipped):
            record.skip(None, error)
        out = self.session.model_copy(deep=True)
        if record.repaired:
            out.segments = [self._with_language(seg) for seg in
                            rebuild_segments(self.segments, self.tokens, self.touched, self.with_words)]
        out.repair = {
            "boundaries": record.boundaries,
            "boundaries_repaired": record.repaired,
            "boundaries_skipped": record.skipped,
            "seams_anchored": record.anchored,
            "window_s": float(self.settings.boundary_window_s),
            "regrouped": record.regrouped,  # [first, last] chunk indices of each run transcribed again as one piece
            "extra_audio_s": round(record.extra_audio_s, 3),
            "rejected": record.rejected,  # [{"chunks": [first, last] | "after_chunk": i, "reason": ...}]
            "engine": self.engine.engine.name if self.engine.engine is not None else None,
        }
        log.info("boundary_repair session=%s boundaries=%d repaired=%d regrouped=%d extra_audio_s=%.1f",
                 self.session.session_id, record.boundaries, record.repaired, len(record.regrouped),
                 record.extra_audio_s)
        return out


def _words(tokens: list[Token], start: float, end: float) -> list[str]:
    """The normalised words of the tokens in [start, end] (gap markers left out)."""
    return [t.norm for t in tokens if not t.fixed and start <= t.mid <= end and t.norm]


def _short_runs(entries: list[ChunkEntry], below: float, span: float, *,
                by_language: bool = True) -> list[list[ChunkEntry]]:
    """Runs of two or more consecutive transcribed chunks each shorter than `below`, at most `span` s
    long, and (`by_language`) split where the chunks' detected language changes."""
    runs: list[list[ChunkEntry]] = [[]]
    for e in entries:
        if e.status == "transcribed" and 0 < e.duration < below and e.run is None:  # a run has no cuts
            if runs[-1] and (sum(x.duration for x in runs[-1]) + e.duration > span
                             or (by_language and e.language != runs[-1][-1].language)):
                runs.append([])
            runs[-1].append(e)
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if len(r) > 1]


def _same_run(a: ChunkEntry, b: ChunkEntry) -> bool:
    """Both chunks came from one run (one engine call over both): nothing to repair between them."""
    return a.run is not None and a.run == b.run


def _loaded(run: list[ChunkEntry], load: AudioLoader) -> list[list[tuple[ChunkEntry, Audio]]]:
    """The run's audio, split where a chunk's audio is gone or undecodable (its windows report it)."""
    pieces: list[list[tuple[ChunkEntry, Audio]]] = [[]]
    for e in run:
        try:
            pieces[-1].append((e, load(e)))
        except PermanentError as err:
            log.warning("regroup_split chunk=%s reason=%s", e.index, err.reason)
            pieces.append([])
    return [p for p in pieces if len(p) > 1]
