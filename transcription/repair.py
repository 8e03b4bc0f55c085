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
- Windows and pieces are given the words before them as context (`transcription/context.py`),
  which drops a prompted hallucination and transcribes again without it.

Word timestamps in the chunk transcripts are *not* required (a piece asks for them only when the
chunks have them). This is a deliberate choice: with `ENGINE=whisperx` asking for word timestamps leaves the batched
pipeline for the sequential one, which would slow every chunk on the GPU fleet by about 40% to
help a few seconds around each cut. Where a chunk transcript has words their times are used; where
it has only segments, the segment's time is spread over its words by their length. The splice is
anchored on text, so these approximate times only need to be good enough to tell repeated words
apart, and the window, which always has word timestamps, supplies the times around the cut.

Chunk transcripts stay as they are (they are the per-chunk truth); only the returned session
transcript is repaired, and its `repair` field records that it was. A session transcript whose
`repair` field is set is returned unchanged (idempotent); `BOUNDARY_REPAIR=false` returns the naive
concatenation. The S3 side stays with the caller: chunk audio comes from a callable
(`s3_audio_loader` builds the production one).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

from transcription.audio import SAMPLE_RATE, Audio
from transcription.context import Context
from transcription.engines import Engine, get_engine
from transcription.errors import ModelError, PermanentError
from transcription.options import TranscribeOptions
from transcription.settings import Settings, get_settings
from transcription.transcript import ChunkEntry, Segment, SessionTranscript, Word

log = logging.getLogger(__name__)

AudioLoader = Callable[[ChunkEntry], Audio]

MARGIN_FRACTION = 1 / 3  # of the window side: window words this close to its edges are not trusted
WORD_TIME_TOLERANCE_S = 0.6  # an anchor's two words may differ this much in time (word timestamps)
SEGMENT_TIME_TOLERANCE_S = 2.0  # ... and this much where times were spread over a segment
CONTEXT_WORDS = 150  # words before a window or piece offered as its context (the prompt keeps its end)
MAX_SEGMENT_S = 30.0  # a rebuilt segment without a sentence end is split here
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "km", "yue", "bo"}
_SENTENCE_END = re.compile(r"[.!?。！？]['\")\]]*$")


@dataclass
class _Tok:
    """One word of the session transcript while it is being repaired."""

    start: float
    end: float
    text: str
    seg: int | None  # index of the session segment it came from; None for window words
    timed: bool  # True: its own word timestamp; False: spread over its segment
    probability: float | None = None
    speaker: str | None = None
    fixed: bool = False  # a gap marker: never replaced, never moved

    @property
    def mid(self) -> float:
        return (self.start + self.end) / 2

    @property
    def norm(self) -> str:
        return normalize_word(self.text)


def normalize_word(text: str) -> str:
    """What two transcriptions of the same word share: lowercase, no punctuation or digit grouping."""
    t = text.lower().replace("-", "")
    t = re.sub(r"(?<=\d)[,.](?=\d)", "", t)
    return re.sub(r"[^\w']+", "", t)


def s3_audio_loader(bucket: str, keys: Mapping[int, str] | None = None,
                    settings: Settings | None = None) -> AudioLoader:
    """The production loader: a chunk's audio from S3 (its uploaded key, else the transcript's source key)."""
    from transcription import storage
    from transcription.chunk import load_audio
    from transcription.errors import NotFoundError

    s = settings or get_settings()

    def load(entry: ChunkEntry) -> Audio:
        key = (keys or {}).get(entry.index) or entry.source_key
        if not key:
            raise NotFoundError(f"chunk {entry.index} has no audio key")
        data = storage.get_bytes(bucket, key, max_bytes=s.max_chunk_mb << 20, settings=s)
        return load_audio(data, s)

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
    window_s = float(s.boundary_window_s)
    opts = (options or TranscribeOptions()).model_copy(
        update={"word_timestamps": True, "language": (options.language if options else None) or session.language}
    )
    with_words = all(seg.words is not None for seg in session.segments if not seg.gap)
    segments = list(session.segments)  # grows by the segments of regrouped pieces
    tokens = _flatten(segments, session.language)
    touched: set[int] = set()
    cache: dict[int, Audio] = {}
    repaired = 0
    regrouped: list[list[int]] = []
    inside: set[int] = set()  # chunk indices whose boundary with the next chunk a piece covered
    anchored = 0
    extra_audio = 0.0
    skipped: list[dict[str, object]] = []
    engine_error: list[str] = []

    def get() -> Engine | None:
        nonlocal engine
        if engine is None and not engine_error:
            try:
                engine = get_engine(s)
            except (ModelError, ImportError) as e:  # no model here: the naive transcript still stands
                engine_error.append(f"engine unavailable: {getattr(e, 'reason', None) or e}")
                log.error("boundary_repair_skipped session=%s reason=%s", session.session_id, engine_error[0])
        return engine

    # 1. runs of short chunks: transcribed again as one piece (cheaper than a window per boundary)
    for run in _runs(session.chunks, float(s.boundary_regroup_below_s), float(s.boundary_regroup_span_s)):
        if get() is None:
            break  # the windows below record why
        for piece in _loaded(run, load_audio):
            first, last = piece[0][0], piece[-1][0]
            start, end = first.offset, last.offset + last.duration
            samples = np.concatenate([audio.samples for _, audio in piece])
            try:
                result = _transcribe(samples, opts.model_copy(update={"word_timestamps": with_words}),
                                     _context_before(tokens, start), engine, s)
            except PermanentError as e:  # the windows below still try each boundary
                log.warning("regroup_skipped chunks=%s-%s reason=%s", first.index, last.index, e.reason)
                continue
            tokens = _replace_span(tokens, segments, touched, result.segments, start, end, session.language)
            extra_audio += len(samples) / SAMPLE_RATE
            regrouped.append([first.index, last.index])
            inside.update(entry.index for entry, _ in piece[:-1])
            repaired += len(piece) - 1

    # 2. the other boundaries: a window spanning each
    boundaries = 0
    for a, b in itertools.pairwise(session.chunks):
        if a.status != "transcribed" or b.status != "transcribed":
            continue  # a failed or missing chunk's gap: nothing to join across
        boundaries += 1
        if a.index in inside:
            continue
        if a.duration <= 0 or b.duration <= 0:
            skipped.append({"after_chunk": a.index, "reason": "empty chunk"})
            continue
        try:
            audio_a = _cached(cache, a, load_audio)
            audio_b = _cached(cache, b, load_audio)
        except PermanentError as e:
            log.warning("boundary_repair_skipped after_chunk=%s reason=%s", a.index, e.reason)
            skipped.append({"after_chunk": a.index, "reason": e.reason})
            continue
        boundary = b.offset
        n_a = min(len(audio_a.samples), round(min(window_s, a.duration) * SAMPLE_RATE))
        n_b = min(len(audio_b.samples), round(min(window_s, b.duration) * SAMPLE_RATE))
        samples = np.concatenate([audio_a.samples[len(audio_a.samples) - n_a:], audio_b.samples[:n_b]])
        start = boundary - n_a / SAMPLE_RATE
        if get() is None:
            skipped.append({"after_chunk": a.index, "reason": engine_error[0]})
            break
        try:
            window = _transcribe(samples, opts, _context_before(tokens, start), engine, s)
        except PermanentError as e:  # e.g. a language the model does not know: the chunks stand as they are
            log.warning("boundary_repair_skipped after_chunk=%s reason=%s", a.index, e.reason)
            skipped.append({"after_chunk": a.index, "reason": e.reason})
            continue
        extra_audio += len(samples) / SAMPLE_RATE
        win = []
        for seg in window.segments:
            words = [w for w in (seg.words or []) if w.word.strip()]
            win.extend(_Tok(start + w.start, start + w.end, text, None, True, w.probability, w.speaker)
                       for w, text in zip(words, _spaced(words, session.language), strict=True))
        spliced = _splice(tokens, win, touched, start=start, boundary=boundary,
                          end=boundary + n_b / SAMPLE_RATE, lo=a.offset, hi=b.offset + b.duration)
        if spliced is None:
            skipped.append({"after_chunk": a.index, "reason": "no usable window words"})
            continue
        tokens, n_anchored = spliced
        anchored += n_anchored
        repaired += 1
    if engine_error and not any(r["reason"] == engine_error[0] for r in skipped):
        skipped.append({"after_chunk": None, "reason": engine_error[0]})
    out = session.model_copy(deep=True)
    if repaired:
        out.segments = _rebuild(segments, tokens, touched, with_words)
    out.repair = {
        "boundaries": boundaries,
        "boundaries_repaired": repaired,
        "boundaries_skipped": skipped,
        "seams_anchored": anchored,
        "window_s": window_s,
        "regrouped": regrouped,  # [first, last] chunk indices of each run transcribed again as one piece
        "extra_audio_s": round(extra_audio, 3),
        "engine": engine.name if engine is not None else None,
    }
    log.info("boundary_repair session=%s boundaries=%d repaired=%d regrouped=%d extra_audio_s=%.1f",
             session.session_id, boundaries, repaired, len(regrouped), extra_audio)
    return out


def _context_before(tokens: list[_Tok], start: float) -> Context:
    """The words before `start`: what Whisper would have conditioned on over the whole session.

    A window or piece of a few seconds without them loses the thread of the sentence; the session's
    own prompt goes first (`transcription/context.py`), and a prompted hallucination is dropped.
    """
    before = [t for t in tokens if not t.fixed and t.mid < start][-CONTEXT_WORDS:]
    return Context("".join(t.text for t in before).strip())


def _runs(entries: list[ChunkEntry], below: float, span: float) -> list[list[ChunkEntry]]:
    """Runs of two or more consecutive transcribed chunks each shorter than `below`, at most `span` s long."""
    runs: list[list[ChunkEntry]] = [[]]
    for e in entries:
        if e.status == "transcribed" and 0 < e.duration < below:
            if runs[-1] and sum(x.duration for x in runs[-1]) + e.duration > span:
                runs.append([])
            runs[-1].append(e)
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if len(r) > 1]


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


def _replace_span(tokens: list[_Tok], segments: list[Segment], touched: set[int], new: list[Segment],
                  start: float, end: float, language: str | None) -> list[_Tok]:
    """The words of the chunks in [start, end] replaced by a piece's (its segments appended to `segments`)."""
    own = {i for i, seg in enumerate(segments)
           if not seg.gap and start - 1e-6 <= (seg.start + seg.end) / 2 <= end + 1e-6}
    base = len(segments)
    segments.extend(_clamped(seg.shifted(start), start, end) for seg in new)
    # the piece's own segments are rebuilt too: Whisper may give a long piece as one segment of
    # several sentences, and a session transcript reads (and subtitles) better a sentence at a time
    touched.update(own, range(base, len(segments)))
    inserted = _flatten(segments[base:], language, base)
    kept = [i for i, t in enumerate(tokens) if t.seg not in own]
    at = next((k for k, i in enumerate(kept) if tokens[i].mid >= start), len(kept))
    kept_tokens = [tokens[i] for i in kept]
    return kept_tokens[:at] + inserted + kept_tokens[at:]


def _clamped(seg: Segment, lo: float, hi: float) -> Segment:
    def c(x: float) -> float:
        return round(min(max(x, lo), hi), 3)

    words = None if seg.words is None else [
        w.model_copy(update={"start": c(w.start), "end": c(max(w.end, w.start))}) for w in seg.words]
    return seg.model_copy(update={"start": c(seg.start), "end": c(max(seg.end, seg.start)), "words": words})


def _transcribe(samples: np.ndarray, options: TranscribeOptions, context: Context, engine: Engine,
                settings: Settings):
    from transcription.chunk import transcribe_chunk

    return transcribe_chunk(Audio(samples.astype(np.float32, copy=False), "wav"), options,
                            engine=engine, settings=settings, context=context)


def _cached(cache: dict[int, Audio], entry: ChunkEntry, load: AudioLoader) -> Audio:
    """Each chunk is needed by two boundaries in a row: keep the last two decoded."""
    if entry.index not in cache:
        while len(cache) >= 2:
            cache.pop(next(iter(cache)))
        cache[entry.index] = load(entry)
    return cache[entry.index]


def _spaced(words: list[Word], language: str | None) -> list[str]:
    """Word texts in Whisper's own convention: a leading space starts a new word (",217" goes on).

    Aligned (wav2vec2) words carry no spaces at all; in a language written with spaces each of
    them starts a word.
    """
    texts = [w.word for w in words]
    if language in NO_SPACE_LANGUAGES or any(t[:1].isspace() for t in texts):
        return texts
    return [" " + t for t in texts]


def _flatten(segments: list[Segment], language: str | None, base: int = 0) -> list[_Tok]:
    """The session's words in order; a segment without word timestamps spreads its time over its words."""
    tokens: list[_Tok] = []
    space = "" if language in NO_SPACE_LANGUAGES else " "
    for i, seg in enumerate(segments, start=base):
        if seg.gap:
            tokens.append(_Tok(seg.start, seg.end, seg.text, i, True, fixed=True))
        elif seg.words is not None:
            words = [w for w in seg.words if w.word.strip()]
            tokens.extend(_Tok(w.start, w.end, text, i, True, w.probability, w.speaker or seg.speaker)
                          for w, text in zip(words, _spaced(words, language), strict=True))
        else:
            words = seg.text.split()
            weights = [len(w) + 1 for w in words]
            total = sum(weights) or 1
            t = seg.start
            for w, weight in zip(words, weights, strict=True):
                end = t + (seg.end - seg.start) * weight / total
                tokens.append(_Tok(t, end, space + w, i, False, speaker=seg.speaker))
                t = end
    return tokens


def _splice(
    tokens: list[_Tok], win: list[_Tok], touched: set[int], *,
    start: float, boundary: float, end: float, lo: float, hi: float,
) -> tuple[list[_Tok], int] | None:
    """Replace the tokens around `boundary` with the window's; None when the window gives nothing."""
    margin_l = min((boundary - start) * MARGIN_FRACTION, boundary - start)
    margin_r = min((end - boundary) * MARGIN_FRACTION, end - boundary)
    zl, zr = start + margin_l, end - margin_r  # the window's trusted span
    if not win or zr <= zl:
        return None
    # the session's words the window could replace: this boundary's two chunks, near the window
    near = [i for i, t in enumerate(tokens)
            if not t.fixed and lo - 1e-6 <= t.mid <= hi + 1e-6 and start - 2.0 <= t.mid <= end + 2.0]
    if near and near[-1] - near[0] + 1 != len(near):
        return None  # something fixed in between (cannot happen between adjacent chunks)
    left_seam = _left_anchor(tokens, near, win, zl, boundary)
    right_seam = _right_anchor(tokens, near, win, zr, boundary, left_seam)
    anchored = (left_seam is not None) + (right_seam is not None)
    first = near[0] if near else _insertion_point(tokens, boundary)
    last = near[-1] + 1 if near else first
    if left_seam is None:
        t_l = _quiet_point(tokens[first:last], win, zl, (zl + boundary) / 2)
        keep_to = first + sum(1 for t in tokens[first:last] if t.mid < t_l)
        win_from = sum(1 for w in win if w.mid < t_l)
    else:
        keep_to, win_from = left_seam[0] + 1, left_seam[1] + 1
    if right_seam is None:
        t_r = _quiet_point(tokens[first:last], win, (boundary + zr) / 2, zr)
        resume = first + sum(1 for t in tokens[first:last] if t.mid < t_r)
        win_to = sum(1 for w in win if w.mid < t_r)
    else:
        win_to, resume = right_seam[1], right_seam[0]
    resume = max(resume, keep_to)
    inserted = win[win_from:max(win_from, win_to)]
    # a seam cut by time may still see one word twice (window and chunk both kept it): drop one
    if left_seam is None and inserted and keep_to > 0 and _same_word(tokens[keep_to - 1], inserted[0]):
        inserted = inserted[1:]
    if right_seam is None and inserted and resume < len(tokens) and _same_word(inserted[-1], tokens[resume]):
        inserted = inserted[:-1]
    removed = tokens[keep_to:resume]
    touched.update(t.seg for t in removed if t.seg is not None)
    if not removed and inserted:
        # inserted inside a segment without removing any of its words: it is touched all the same
        for t in (tokens[keep_to - 1] if keep_to > 0 else None, tokens[resume] if resume < len(tokens) else None):
            if t is not None and t.seg is not None and not t.fixed:
                touched.add(t.seg)
    return tokens[:keep_to] + inserted + tokens[resume:], anchored


def _tolerance(t: _Tok) -> float:
    return WORD_TIME_TOLERANCE_S if t.timed else SEGMENT_TIME_TOLERANCE_S


def _pairs(tokens: list[_Tok], near: list[int], win: list[_Tok]) -> list[tuple[int, int, int]]:
    """Aligned (token index, window index, run length) pairs of the same word at about the same time."""
    if not near:
        return []
    a = [tokens[i].norm for i in near]
    b = [w.norm for w in win]
    out = []
    for block in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            ti, wi = near[block.a + k], block.b + k
            if a[block.a + k] and abs(tokens[ti].mid - win[wi].mid) <= _tolerance(tokens[ti]):
                out.append((ti, wi, block.size))
    return out


def _left_anchor(tokens, near, win, zl, boundary) -> tuple[int, int] | None:
    """The earliest trusted window word before the cut that the first chunk also has.

    Within the window's trusted span a run of two or more agreeing words beats a lone one; only if
    the trusted span has no agreement at all, the agreeing word in the margin closest to it.
    """
    pairs = [(ti, wi, n) for ti, wi, n in _pairs(tokens, near, win)
             if win[wi].mid < boundary and tokens[ti].mid < boundary + _tolerance(tokens[ti])]
    trusted = [p for p in pairs if win[p[1]].mid >= zl]
    if trusted:
        ti, wi, _ = min([p for p in trusted if p[2] > 1] or trusted, key=lambda p: p[1])
    elif pairs:
        ti, wi, _ = max(pairs, key=lambda p: p[1])
    else:
        return None
    return ti, wi


def _right_anchor(tokens, near, win, zr, boundary, left) -> tuple[int, int] | None:
    """The last trusted window word after the cut that the second chunk also has (the same rules)."""
    pairs = [(ti, wi, n) for ti, wi, n in _pairs(tokens, near, win)
             if win[wi].mid >= boundary and tokens[ti].mid > boundary - _tolerance(tokens[ti])
             and (left is None or (ti > left[0] and wi > left[1]))]
    trusted = [p for p in pairs if win[p[1]].mid <= zr]
    if trusted:
        ti, wi, _ = max([p for p in trusted if p[2] > 1] or trusted, key=lambda p: p[1])
    elif pairs:
        ti, wi, _ = min(pairs, key=lambda p: p[1])
    else:
        return None
    return ti, wi


def _insertion_point(tokens: list[_Tok], t: float) -> int:
    return next((i for i, tok in enumerate(tokens) if tok.mid >= t), len(tokens))


def _quiet_point(chunk_words: list[_Tok], win: list[_Tok], lo: float, hi: float) -> float:
    """A cut time in [lo, hi] inside as few words as possible and far from their midpoints."""
    if hi <= lo:
        return lo
    words = [t for t in (*chunk_words, *win) if t.end >= lo - 1.0 and t.start <= hi + 1.0]
    candidates = {lo, hi, *np.linspace(lo, hi, 25).tolist()}
    candidates |= {x for t in words for x in (t.start, t.end) if lo <= x <= hi}

    def score(x: float) -> tuple[int, float]:
        inside = sum(1 for t in words if t.start < x < t.end)
        distance = min((abs(x - t.mid) for t in words), default=hi - lo)
        return -inside, distance

    return max(sorted(candidates), key=score)


def _same_word(a: _Tok, b: _Tok) -> bool:
    return bool(a.norm) and a.norm == b.norm and abs(a.mid - b.mid) <= max(_tolerance(a), _tolerance(b))


def _rebuild(segments: list[Segment], tokens: list[_Tok], touched: set[int], with_words: bool) -> list[Segment]:
    """Session segments from the repaired words: untouched segments as they were, the rest rebuilt."""
    out: list[Segment] = []
    pending: list[_Tok] = []
    emitted: set[int] = set()

    def flush() -> None:
        if pending:
            out.extend(_segments_from(pending, with_words))
            pending.clear()

    for t in tokens:
        if t.seg is not None and t.seg not in touched:
            if t.seg not in emitted:
                flush()
                emitted.add(t.seg)
                out.append(segments[t.seg])
        else:
            pending.append(t)
    flush()
    # segments that had no words at all (empty text) and were not touched keep their place by time
    for i, seg in enumerate(segments):
        if i not in emitted and i not in touched and not seg.text.strip() and not seg.words:
            out.append(seg)
    out.sort(key=lambda s: s.start)  # stable: only moves the empty ones back into place
    return _monotonic(out)


def _segments_from(tokens: list[_Tok], with_words: bool) -> list[Segment]:
    groups: list[list[_Tok]] = [[]]
    for t in tokens:
        if groups[-1] and t.start - groups[-1][0].start > MAX_SEGMENT_S:
            groups.append([])
        groups[-1].append(t)
        if _SENTENCE_END.search(t.text.strip()):
            groups.append([])
    out = []
    for g in groups:
        if not g:
            continue
        speakers = Counter(t.speaker for t in g if t.speaker)
        words = [Word(start=t.start, end=t.end, word=t.text, probability=t.probability, speaker=t.speaker)
                 for t in g] if with_words else None
        out.append(Segment(start=g[0].start, end=g[-1].end, text="".join(t.text for t in g).strip(),
                           words=words, speaker=speakers.most_common(1)[0][0] if speakers else None))
    return out


def _monotonic(segments: list[Segment]) -> list[Segment]:
    """Times that never run backwards: each word and segment starts no earlier than the last ended."""
    out = []
    last = 0.0
    for seg in segments:
        if seg.gap:
            out.append(seg)
            last = max(last, seg.end)
            continue
        words = None
        if seg.words is not None:
            words = []
            t = max(last, seg.start)
            for w in seg.words:
                start = round(max(w.start, t), 3)
                end = round(max(w.end, start), 3)
                words.append(w if (start, end) == (w.start, w.end) else
                             w.model_copy(update={"start": start, "end": end}))
                t = end
        start = round(max(seg.start, last), 3)
        if words:
            start = min(start, words[0].start)
            end = max(seg.end, words[-1].end, start)
        else:
            end = max(seg.end, start)
        end = round(end, 3)
        if words != seg.words or (start, end) != (seg.start, seg.end):
            seg = seg.model_copy(update={"start": start, "end": end, "words": words})
        out.append(seg)
        last = end
    return out
