"""Context carry-over: prompt a transcription with the text spoken just before its audio.

Transcribing a whole file, Whisper conditions each 30 s window on the text before it; a chunk (or
a repair window) transcribed alone has lost that thread, and Whisper mishears words it would have
got in context ("maker" for "baker"). Giving it the tail of the preceding text as its prompt (after
the session's own prompt) brings that context back at no extra compute.

Prompts have Whisper's known failure: on silence, noise or a very short tail of speech it may
write the prompt out again, or invent a polite closing ("Thank you very much"), instead of
returning nothing. `context_failure` recognises those outputs; the caller then transcribes the
same audio again without the context (only then does the context cost anything) and records why.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from difflib import SequenceMatcher

from transcription.options import TranscribeOptions
from transcription.transcript import Transcript

log = logging.getLogger(__name__)

# Whisper keeps the last 223 prompt tokens and cuts from the left, which would drop the session's
# own prompt first. One token is at least ~3 bytes of UTF-8 in every script (English: ~4.5), so
# prompts are kept to this many bytes in all, session prompt first.
PROMPT_MAX_BYTES = 600
COPY_RUN_WORDS = 4  # this many words in a row taken from the context: a copied prompt
COMPRESSION_RATIO_MAX = 2.4  # Whisper's own threshold for a repetition loop
# A segment Whisper doubts is speech, or is unsure of every token of: kept only because of the
# prompt. With a context, speech segments of the benchmark stay below 0.35 and above -0.85; prompted
# hallucinations on silence and noise measured 0.43-0.92 and -0.4 to -1.3 (tests/core/test_context.py).
NO_SPEECH_MAX = 0.5
LOGPROB_MIN = -1.0  # Whisper's own log_prob_threshold


@dataclass(frozen=True)
class Context:
    """The text before the audio, and where it came from (a chunk index, or None for the session)."""

    text: str
    from_index: int | None = None


def _words(text: str) -> list[str]:
    return [w for w in (re.sub(r"[^\w']+", "", t.lower()) for t in text.split()) if w]


def fit_prompt(own: str | None, context: str) -> str | None:
    """The session's prompt, then as much of the end of `context` as the prompt budget allows."""
    own = (own or "").strip()
    budget = PROMPT_MAX_BYTES - len(own.encode()) - 1
    tail = ""
    if budget > 0:
        data = context.strip().encode()[-budget:]
        tail = data.decode(errors="ignore")
        if len(data) == budget and " " in tail:  # cut at a word start, not inside a word
            tail = tail.split(" ", 1)[1]
    return f"{own} {tail.strip()}".strip() or None


def with_context(options: TranscribeOptions, context: Context | None) -> TranscribeOptions:
    """`options` with the context after its prompt; `options` itself when no context fits."""
    if context is None or not context.text.strip():
        return options
    prompt = fit_prompt(options.prompt, context.text)
    if prompt is None or prompt == (options.prompt or "").strip():
        return options  # the session's prompt alone fills the budget
    return options.model_copy(update={"prompt": prompt})


def copied_run(output: str, context: str) -> int:
    """The longest run of words the output shares with the context (normalised words)."""
    a, b = _words(output), _words(context)
    if not a or not b:
        return 0
    return SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b)).size


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def context_failure(transcript: Transcript, context: Context, prompt: str | None) -> str | None:
    """Why a transcript made with `context` cannot be trusted, or None when it looks like speech."""
    text = transcript.text
    if not text:
        return None
    run = copied_run(text, prompt or context.text)
    if run >= COPY_RUN_WORDS:
        return f"copied {run} words of the context"
    ratio = compression_ratio(text)
    if ratio > COMPRESSION_RATIO_MAX:
        return f"repetitive output (compression ratio {ratio:.1f})"
    doubt = max((s.no_speech_prob or 0.0 for s in transcript.segments), default=0.0)
    if doubt > NO_SPEECH_MAX:
        return f"a segment that is probably not speech (no_speech_prob {doubt:.2f})"
    unsure = min((s.avg_logprob for s in transcript.segments if s.avg_logprob is not None), default=0.0)
    if unsure < LOGPROB_MIN:
        return f"a segment of improbable words (avg_logprob {unsure:.2f})"
    return None
