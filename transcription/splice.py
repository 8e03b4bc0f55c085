"""The pure word logic of boundary repair: words in, words and segments out.

`transcription/repair.py` decides what to transcribe again (runs of short chunks as one piece, a
window across each other cut) and runs the engine; everything it then does with the words it got
back is here, with no engine, no audio and no S3, so every rule is unit-tested on synthetic words
(tests/core/test_splice.py):

- `tokens_from_segments` lays the session transcript out as one list of words (`Token`); segments
  without word timestamps spread their time over their words by length.
- `splice_window` puts a window's words in place of the chunks' words around one cut, anchored on
  a word both transcriptions agree on (else cut by time at the quietest point).
- `replace_piece` puts a regrouped piece's words in place of the chunks it covers.
- `rebuild_segments` turns the words back into segments: untouched segments as they were, touched
  ones rebuilt a sentence (or pause, or subtitle length) at a time, times kept monotonic.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import NamedTuple

from transcription.transcript import Segment, Word

MARGIN_FRACTION = 1 / 3  # of the window side: window words this close to its edges are not trusted
WORD_TIME_TOLERANCE_S = 0.6  # an anchor's two words may differ this much in time (word timestamps)
SEGMENT_TIME_TOLERANCE_S = 2.0  # ... and this much where times were spread over a segment
NEAR_WINDOW_S = 2.0  # chunk words this far outside the window may still be replaced by its words
# A rebuilt segment ends at a sentence end, else at a pause, else at a subtitle's length: Whisper
# leaves punctuation out of some pieces, and one 20 s line is neither readable nor a usable cue.
PAUSE_SPLIT_S = 0.5  # silence between two words that ends a segment ...
MIN_SEGMENT_S = 1.0  # ... once the segment holds at least this much
MAX_SEGMENT_S = 7.0  # a segment never spans more than a subtitle cue (guides say at most 6-7 s) ...
MAX_SEGMENT_CHARS = 84  # ... nor holds more than its two lines of 42 characters
QUIET_POINT_STEPS = 25  # evenly spaced cut times tried (besides word edges) when no anchor is found
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "km", "yue", "bo"}
_SENTENCE_END = re.compile(r"[.!?。！？]['\")\]]*$")
_CLAUSE_END = re.compile(r"[,;:、，；：]['\")\]]*$")
_EPS = 1e-6


@dataclass
class Token:
    """One word of the session transcript while it is being repaired.

    `text` keeps Whisper's spacing convention (a leading space starts a word), so joining the
    texts of a segment's tokens gives back its text.
    """

    start: float
    end: float
    text: str
    segment: int | None  # index of the session segment it came from; None for a window's words
    timed: bool  # True: its own word timestamp; False: a share of its segment's time
    probability: float | None = None
    speaker: str | None = None
    fixed: bool = False  # a gap marker (failed or missing chunk): never replaced, never moved

    @property
    def mid(self) -> float:
        return (self.start + self.end) / 2

    @property
    def norm(self) -> str:
        return normalize_word(self.text)

    @property
    def tolerance(self) -> float:
        """How far apart in time two transcriptions of this word may be and still be the same word."""
        return WORD_TIME_TOLERANCE_S if self.timed else SEGMENT_TIME_TOLERANCE_S


def normalize_word(text: str) -> str:
    """What two transcriptions of the same word share: lowercase, no punctuation or digit grouping."""
    t = text.lower().replace("-", "")
    t = re.sub(r"(?<=\d)[,.](?=\d)", "", t)
    return re.sub(r"[^\w']+", "", t)


def same_word(a: Token, b: Token) -> bool:
    """The same normalised word at about the same time (the looser of the two tolerances)."""
    return bool(a.norm) and a.norm == b.norm and abs(a.mid - b.mid) <= max(a.tolerance, b.tolerance)


# --- from segments to tokens ----------------------------------------------------------------------


def spaced_texts(words: list[Word], language: str | None) -> list[str]:
    """Word texts in Whisper's own convention: a leading space starts a new word (",217" goes on).

    Aligned (wav2vec2) words carry no spaces at all; in a language written with spaces each of
    them starts a word.
    """
    texts = [w.word for w in words]
    if language in NO_SPACE_LANGUAGES or any(t[:1].isspace() for t in texts):
        return texts
    return [" " + t for t in texts]


def tokens_from_segments(segments: list[Segment], language: str | None, first_index: int = 0) -> list[Token]:
    """The session's words in order, each tagged with its segment's index (from `first_index`).

    A gap marker is one fixed token. A segment without word timestamps (what the GPU fleet stores)
    spreads its time over its words by their length: good enough to tell repeated words apart,
    since the splice is anchored on text and the window supplies exact times around the cut.
    """
    tokens: list[Token] = []
    space = "" if language in NO_SPACE_LANGUAGES else " "
    for index, seg in enumerate(segments, start=first_index):
        if seg.gap:
            tokens.append(Token(seg.start, seg.end, seg.text, index, True, fixed=True))
        elif seg.words is not None:
            words = [w for w in seg.words if w.word.strip()]
            tokens.extend(Token(w.start, w.end, text, index, True, w.probability, w.speaker or seg.speaker)
                          for w, text in zip(words, spaced_texts(words, language), strict=True))
        else:
            plain = seg.text.split()
            weights = [len(w) + 1 for w in plain]
            total = sum(weights) or 1
            t = seg.start
            for text, weight in zip(plain, weights, strict=True):
                end = t + (seg.end - seg.start) * weight / total
                tokens.append(Token(t, end, space + text, index, False, speaker=seg.speaker))
                t = end
    return tokens


def window_tokens(segments: list[Segment], offset: float, language: str | None) -> list[Token]:
    """A window's words on the session's time line (`offset`: where the window starts)."""
    tokens: list[Token] = []
    for seg in segments:
        words = [w for w in (seg.words or []) if w.word.strip()]
        tokens.extend(Token(offset + w.start, offset + w.end, text, None, True, w.probability, w.speaker)
                      for w, text in zip(words, spaced_texts(words, language), strict=True))
    return tokens


def text_before(tokens: list[Token], start: float, max_words: int) -> str:
    """The last `max_words` words before `start`: what Whisper would have conditioned on over the
    whole session (a window or piece of a few seconds without them loses the thread)."""
    before = [t for t in tokens if not t.fixed and t.mid < start][-max_words:]
    return "".join(t.text for t in before).strip()


# --- a window across one cut ----------------------------------------------------------------------


@dataclass(frozen=True)
class Seam:
    """Where a window lies on the session's time line, and the two chunks it joins."""

    start: float  # the window's start (inside the first chunk)
    cut: float  # the boundary between the two chunks
    end: float  # the window's end (inside the second chunk)
    chunks_start: float  # the first chunk's start: no word before it is replaced ...
    chunks_end: float  # ... nor any after the second chunk's end

    @property
    def trusted_start(self) -> float:
        """The window's words before this are too close to its edge, where Whisper drops or invents."""
        return self.start + min((self.cut - self.start) * MARGIN_FRACTION, self.cut - self.start)

    @property
    def trusted_end(self) -> float:
        return self.end - min((self.end - self.cut) * MARGIN_FRACTION, self.end - self.cut)


class Anchor(NamedTuple):
    """A word both transcriptions agree on: its index in the session tokens and in the window."""

    token: int
    window: int


class _Match(NamedTuple):
    token: int
    window: int
    run: int  # length of the run of agreeing words it belongs to


@dataclass(frozen=True)
class Spliced:
    tokens: list[Token]
    anchored: int  # how many of the two seams sit on an agreed word (0-2); the rest were cut by time
    touched: set[int]  # session segments that lost or gained words: to be rebuilt


def splice_window(tokens: list[Token], window: list[Token], seam: Seam) -> Spliced | None:
    """The session tokens with those around `seam.cut` replaced by the window's; None when the
    window gives nothing usable (no words, no trusted span, or a gap marker in the way).

    Each side is anchored on a word both agree on: the chunk's words are kept up to it and the
    window's follow it, so nothing is duplicated or dropped. Without an anchor the side is cut by
    time at the quietest point of its half of the trusted span, and a word both kept is dropped once.
    """
    lo, hi = seam.trusted_start, seam.trusted_end
    if not window or hi <= lo:
        return None
    near = [i for i, t in enumerate(tokens)
            if not t.fixed and seam.chunks_start - _EPS <= t.mid <= seam.chunks_end + _EPS
            and seam.start - NEAR_WINDOW_S <= t.mid <= seam.end + NEAR_WINDOW_S]
    if near and near[-1] - near[0] + 1 != len(near):
        return None  # something fixed in between (cannot happen between adjacent chunks)
    left = left_anchor(tokens, near, window, seam)
    right = right_anchor(tokens, near, window, seam, left)
    first = near[0] if near else insertion_point(tokens, seam.cut)
    last = near[-1] + 1 if near else first
    replaceable = tokens[first:last]
    if left is None:
        at = quiet_point(replaceable, window, lo, (lo + seam.cut) / 2)
        keep_until = first + sum(1 for t in replaceable if t.mid < at)
        take_from = sum(1 for w in window if w.mid < at)
    else:
        keep_until, take_from = left.token + 1, left.window + 1
    if right is None:
        at = quiet_point(replaceable, window, (seam.cut + hi) / 2, hi)
        resume_at = first + sum(1 for t in replaceable if t.mid < at)
        take_to = sum(1 for w in window if w.mid < at)
    else:
        take_to, resume_at = right.window, right.token
    resume_at = max(resume_at, keep_until)
    inserted = window[take_from:max(take_from, take_to)]
    # a seam cut by time may still see one word twice (window and chunk both kept it): drop one
    if left is None and inserted and keep_until > 0 and same_word(tokens[keep_until - 1], inserted[0]):
        inserted = inserted[1:]
    if right is None and inserted and resume_at < len(tokens) and same_word(inserted[-1], tokens[resume_at]):
        inserted = inserted[:-1]
    removed = tokens[keep_until:resume_at]
    touched = {t.segment for t in removed if t.segment is not None}
    if not removed and inserted:
        # inserted inside a segment without removing any of its words: it is touched all the same
        for neighbour in (tokens[keep_until - 1] if keep_until > 0 else None,
                          tokens[resume_at] if resume_at < len(tokens) else None):
            if neighbour is not None and neighbour.segment is not None and not neighbour.fixed:
                touched.add(neighbour.segment)
    anchored = (left is not None) + (right is not None)
    return Spliced(tokens[:keep_until] + inserted + tokens[resume_at:], anchored, touched)


def _matches(tokens: list[Token], near: list[int], window: list[Token]) -> list[_Match]:
    """Aligned pairs of the same word at about the same time (sequence alignment on the words)."""
    if not near:
        return []
    ours = [tokens[i].norm for i in near]
    theirs = [w.norm for w in window]
    out = []
    for block in SequenceMatcher(None, ours, theirs, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            token, win = near[block.a + k], block.b + k
            if ours[block.a + k] and abs(tokens[token].mid - window[win].mid) <= tokens[token].tolerance:
                out.append(_Match(token, win, block.size))
    return out


def left_anchor(tokens: list[Token], near: list[int], window: list[Token], seam: Seam) -> Anchor | None:
    """The earliest trusted window word before the cut that the first chunk also has.

    Within the window's trusted span a run of two or more agreeing words beats a lone one (a lone
    short word agrees by chance); only if the trusted span has no agreement at all, the agreeing
    word in the margin closest to it.
    """
    matches = [m for m in _matches(tokens, near, window)
               if window[m.window].mid < seam.cut and tokens[m.token].mid < seam.cut + tokens[m.token].tolerance]
    trusted = [m for m in matches if window[m.window].mid >= seam.trusted_start]
    if trusted:
        best = min([m for m in trusted if m.run > 1] or trusted, key=lambda m: m.window)
    elif matches:
        best = max(matches, key=lambda m: m.window)
    else:
        return None
    return Anchor(best.token, best.window)


def right_anchor(tokens: list[Token], near: list[int], window: list[Token], seam: Seam,
                 left: Anchor | None) -> Anchor | None:
    """The last trusted window word after the cut that the second chunk also has (the same rules),
    strictly after the left anchor in both transcriptions."""
    matches = [m for m in _matches(tokens, near, window)
               if window[m.window].mid >= seam.cut and tokens[m.token].mid > seam.cut - tokens[m.token].tolerance
               and (left is None or (m.token > left.token and m.window > left.window))]
    trusted = [m for m in matches if window[m.window].mid <= seam.trusted_end]
    if trusted:
        best = max([m for m in trusted if m.run > 1] or trusted, key=lambda m: m.window)
    elif matches:
        best = min(matches, key=lambda m: m.window)
    else:
        return None
    return Anchor(best.token, best.window)


def insertion_point(tokens: list[Token], at: float) -> int:
    """The index of the first token whose midpoint is at or after `at`."""
    return next((i for i, t in enumerate(tokens) if t.mid >= at), len(tokens))


def quiet_point(chunk_words: list[Token], window: list[Token], lo: float, hi: float) -> float:
    """A cut time in [lo, hi] inside as few words as possible and far from their midpoints."""
    if hi <= lo:
        return lo
    words = [t for t in (*chunk_words, *window) if t.end >= lo - 1.0 and t.start <= hi + 1.0]
    step = (hi - lo) / (QUIET_POINT_STEPS - 1)
    candidates = {lo, hi, *(k * step + lo for k in range(QUIET_POINT_STEPS - 1))}
    candidates |= {x for t in words for x in (t.start, t.end) if lo <= x <= hi}

    def score(x: float) -> tuple[int, float]:
        inside = sum(1 for t in words if t.start < x < t.end)
        distance = min((abs(x - t.mid) for t in words), default=hi - lo)
        return -inside, distance

    return max(sorted(candidates), key=score)


# --- a regrouped piece ----------------------------------------------------------------------------


class Replaced(NamedTuple):
    tokens: list[Token]
    segments: list[Segment]  # the session's segments with the piece's appended (tokens index them)
    touched: set[int]  # the chunks' replaced segments and the piece's own: to be rebuilt


def replace_piece(tokens: list[Token], segments: list[Segment], piece: list[Segment],
                  start: float, end: float, language: str | None) -> Replaced:
    """The words of the segments in [start, end] replaced by a piece's (`piece`: its segments with
    times from the piece's start), which is what transcribing those chunks as one would have given.

    The piece's own segments are rebuilt too: Whisper may give a long piece as one segment of
    several sentences, and a session transcript reads (and subtitles) better a sentence at a time.
    """
    own = {i for i, seg in enumerate(segments)
           if not seg.gap and start - _EPS <= (seg.start + seg.end) / 2 <= end + _EPS}
    first_new = len(segments)
    segments = [*segments, *(seg.shifted(start).clamped(start, end) for seg in piece)]
    inserted = tokens_from_segments(segments[first_new:], language, first_new)
    kept = [t for t in tokens if t.segment not in own]
    at = insertion_point(kept, start)
    return Replaced(kept[:at] + inserted + kept[at:], segments, own | set(range(first_new, len(segments))))


# --- back to segments -----------------------------------------------------------------------------


def rebuild_segments(segments: list[Segment], tokens: list[Token], touched: set[int],
                     with_words: bool) -> list[Segment]:
    """Session segments from the repaired words: untouched segments as they were, the rest rebuilt
    (`segments_from_tokens`), with word times only if the chunks had them (`with_words`)."""
    out: list[Segment] = []
    pending: list[Token] = []
    emitted: set[int] = set()

    def flush() -> None:
        if pending:
            out.extend(segments_from_tokens(pending, with_words))
            pending.clear()

    for t in tokens:
        if t.segment is not None and t.segment not in touched:
            if t.segment not in emitted:
                flush()
                emitted.add(t.segment)
                out.append(segments[t.segment])
        else:
            pending.append(t)
    flush()
    # segments that had no words at all (empty text) and were not touched keep their place by time
    for i, seg in enumerate(segments):
        if i not in emitted and i not in touched and not seg.text.strip() and not seg.words:
            out.append(seg)
    out.sort(key=lambda s: s.start)  # stable: only moves the empty ones back into place
    return monotonic(out)


def segments_from_tokens(tokens: list[Token], with_words: bool) -> list[Segment]:
    """Segments that end at a sentence end, else at a pause once they hold a second of speech, else
    before they exceed a subtitle cue (`MAX_SEGMENT_S`, `MAX_SEGMENT_CHARS`: `split_at_clause`)."""
    groups: list[list[Token]] = [[]]
    for t in tokens:
        group = groups[-1]
        if group and (t.start - group[-1].end >= PAUSE_SPLIT_S and group[-1].end - group[0].start >= MIN_SEGMENT_S):
            groups.append([])
        elif group and (t.end - group[0].start > MAX_SEGMENT_S
                        or len("".join(x.text for x in group).strip()) + len(t.text) > MAX_SEGMENT_CHARS):
            groups[-1:] = split_at_clause(group)
        groups[-1].append(t)
        if _SENTENCE_END.search(t.text.strip()):
            groups.append([])
    return [_segment_of(group, with_words) for group in groups if group]


def _segment_of(group: list[Token], with_words: bool) -> Segment:
    """One segment of these words; its speaker is the one most of them have."""
    speakers = Counter(t.speaker for t in group if t.speaker)
    words = [Word(start=t.start, end=t.end, word=t.text, probability=t.probability, speaker=t.speaker)
             for t in group] if with_words else None
    return Segment(start=group[0].start, end=group[-1].end, text="".join(t.text for t in group).strip(),
                   words=words, speaker=speakers.most_common(1)[0][0] if speakers else None)


def split_at_clause(group: list[Token]) -> list[list[Token]]:
    """A full group closed at its last clause end (a comma) in its second half, else where it is."""
    cut = next((k + 1 for k in range(len(group) - 1, len(group) // 2 - 1, -1)
                if _CLAUSE_END.search(group[k].text.strip())), len(group))
    return [group[:cut], group[cut:]]


def monotonic(segments: list[Segment]) -> list[Segment]:
    """Times that never run backwards: each word and segment starts no earlier than the last ended
    (a window's times and the chunk's around a seam may overlap by a few milliseconds)."""
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
