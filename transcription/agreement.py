"""Does a re-transcription agree with the chunks' own words beyond what the cuts explain?

Regrouping (a run of short chunks transcribed again as one piece) and repair windows replace the
chunks' words with the words of another engine call. At a cut a word is split in two, so the two
may differ there by a word or a few; anywhere else they should say the same. A piece that adds a
sentence the chunks do not have (Whisper writing an earlier sentence out again), or leaves out a
run of words they have, makes the session worse than its own chunks: `disagreement` says so, and
the caller keeps the chunks' words for that span and records why in the session's `repair` record.
Words added that repeat nothing are what the chunks lost at their edges, the reason to regroup.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

MAX_EDIT_WORDS = 5  # a cut explains a changed run of a few words, never more than this many at once
REPEAT_MIN_WORDS = 4  # an added run this long whose word pairs mostly occur in the rest: a repeated sentence
# ... or this share of its words: a piece that goes on over a silent tail with "Well, there's men.
# Well, there is not much difference. So we'll come." (seen from a real worker) reshuffles earlier words
WORDS_SHARED = 0.75
NGRAM = 2  # word pairs: a repeat Whisper shortens ("don't hear that new jersey now") still shares most
EDGE_WORDS = 2  # words a piece may add before its chunks' first word or after their last (a split word)


def _ngrams(words: Sequence[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def disagreement(chunk_words: Sequence[str], new_words: Sequence[str], *, same_edges: bool = False) -> str | None:
    """Why `new_words` (normalised) may not replace `chunk_words` (normalised), or None when it may.

    `same_edges`: the new words are of exactly the chunks' audio (a regrouped piece starts where its
    first chunk starts and ends where its last ends), so no cut lies at either edge, and more than
    `EDGE_WORDS` added before the chunks' first word or after their last are not what a cut lost:
    Whisper's tail over the end of its input ("... new jersey now. So we'll come back there.", an
    earlier sentence heard again, seen from a real server) is the usual such addition."""
    ops = SequenceMatcher(None, list(chunk_words), list(new_words), autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            continue
        added = list(new_words[j1:j2])
        if len(added) >= REPEAT_MIN_WORDS:
            rest = [*new_words[:j1], "\0", *new_words[j2:]]
            grams = _ngrams(added)
            pairs = len(grams & _ngrams(rest)) / len(grams) if grams else 0.0
            words = sum(w in set(rest) for w in added) / len(added)
            if pairs >= 0.6 or words >= WORDS_SHARED:
                return f"adds {len(added)} words repeating its own text ({' '.join(added[:12])!r})"
        at_edge = (i1 == 0 and j1 == 0) or (i2 == len(chunk_words) and j2 == len(new_words))
        if same_edges and at_edge and len(added) - (i2 - i1) > EDGE_WORDS:
            where = "before the chunks' first word" if j1 == 0 else "after the chunks' last word"
            return f"adds {len(added) - (i2 - i1)} words {where} ({' '.join(added[:12])!r})"
        if tag == "delete" and i2 - i1 > MAX_EDIT_WORDS:
            return f"leaves out {i2 - i1} of the chunks' words ({' '.join(chunk_words[i1:i1 + 12])!r})"
        if tag == "replace" and min(i2 - i1, j2 - j1) > MAX_EDIT_WORDS:
            return (f"replaces {i2 - i1} of the chunks' words with {j2 - j1} others "
                    f"({' '.join(chunk_words[i1:i1 + 8])!r} -> {' '.join(added[:8])!r})")
        # words added that repeat nothing: what the chunks lost at a cut (the reason to regroup)
    return None
